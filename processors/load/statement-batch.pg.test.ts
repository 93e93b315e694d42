import { Client } from 'pg';
import { createTestDatabase } from '../../test/support/pg';
import { roundTrips } from '../../test/support/statement-batches';
import { runStatements } from './statement-batch';

let client: Client;

beforeAll(async () => {
  client = new Client({ connectionString: await createTestDatabase('statement_batch') });
  await client.connect();
  await client.query('CREATE TABLE t (a integer PRIMARY KEY, b text, c bigint, d integer[])');
  // A sequence's nextval is not rolled back: it shows whether a statement ran.
  await client.query('CREATE SEQUENCE ran');
});

afterAll(() => client.end());

beforeEach(() => client.query('TRUNCATE t'));

const rowsOfT = async () => (await client.query('SELECT a, b FROM t ORDER BY a')).rows;

describe('runStatements', () => {
  it('runs every statement in order in one round trip and returns each result, parsed as a query would', async () => {
    const syncs = roundTrips(client);
    const before = syncs();
    const results = await runStatements(client, [
      {
        text: 'INSERT INTO t (a, b, c, d) SELECT k, $2, $3, $4 FROM unnest($1::int[]) AS k',
        values: [[3, 1, 2], 'x', '9007199254740993', [1, null]],
      },
      { text: 'UPDATE t SET b = $1 WHERE a > $2', values: ['y', 1] },
      { text: 'SELECT a, b, c, d FROM t WHERE a = ANY($1) ORDER BY a', values: [[1, 2]] },
      { text: 'SELECT 1 WHERE false', values: [] },
    ]);
    expect(syncs() - before).toBe(1);
    expect(results).toEqual([
      { rowCount: 3, rows: [] },
      { rowCount: 2, rows: [] },
      {
        rowCount: 2,
        rows: [
          { a: 1, b: 'x', c: '9007199254740993', d: [1, null] },
          { a: 2, b: 'y', c: '9007199254740993', d: [1, null] },
        ],
      },
      { rowCount: 0, rows: [] },
    ]);
    // And the same rows through a plain query: the batch parses as node-postgres does.
    expect(
      (await client.query('SELECT a, b, c, d FROM t WHERE a = ANY($1) ORDER BY a', [[1, 2]])).rows,
    ).toEqual(results[2]!.rows);
  });

  it("binds array parameters to the values node-postgres' own binding gives, for every type the load sends", async () => {
    const cases: [string, unknown[]][] = [
      ['integer[]', [3, -1, 0, 2_147_483_647, -2_147_483_648, null]],
      ['bigint[]', [1_764_600_000_000, 0, 9_007_199_254_740_991, null]],
      [
        'text[]',
        ['plain', '', 'NULL', 'null', 'a,b', '{x}', 'say "hi"', 'back\\slash', '\\"', ' sp ', 'é ✓', null],
      ],
      ['date[]', ['2025-02-28', '0099-01-01', null]],
      ['time[]', ['09:15:02.123', null]],
      ['numeric[]', ['12.30', '-0.01', '99999999.99', null]],
      ['pg_lsn[]', ['0/0', '1/1A2B3C', 'FFFFFFFF/FFFFFFFF', null]],
      ['timestamptz[]', ['2025-02-28T09:15:02.123456Z', '2025-02-28 09:15:02+01:30', null]],
      ['boolean[]', [true, false, null]],
      ['integer[]', []],
    ];
    for (const [type, values] of cases) {
      const text = `SELECT $1::${type}::text AS a, $1::${type} IS NULL AS n, cardinality($1::${type}) AS c`;
      const [batch] = await runStatements(client, [{ text, values: [values] }]);
      expect(batch!.rows).toEqual((await client.query(text, [values])).rows);
    }
  });

  it('stops at a failing statement: rejects with its error, runs none after it, and the connection stays usable', async () => {
    await client.query('BEGIN');
    const failing = runStatements(client, [
      { text: 'INSERT INTO t (a, b) VALUES ($1, $2)', values: [1, 'first'] },
      { text: 'INSERT INTO t (a, b) VALUES ($1, $2)', values: [1, 'again'] },
      { text: 'INSERT INTO t (a, b) VALUES ($1, $2)', values: [2, 'after'] },
      { text: "SELECT nextval('ran')", values: [] },
    ]);
    await expect(failing).rejects.toMatchObject({ code: '23505' });
    // The transaction is aborted, as after a failing query.
    await expect(client.query('SELECT 1')).rejects.toMatchObject({ code: '25P02' });
    await client.query('ROLLBACK');
    expect(await rowsOfT()).toEqual([]);
    expect((await client.query('SELECT is_called FROM ran')).rows).toEqual([{ is_called: false }]);
    // Outside a transaction block, what the batch wrote before its error is one implicit transaction, rolled back too.
    await expect(
      runStatements(client, [
        { text: 'INSERT INTO t (a, b) VALUES ($1, $2)', values: [5, 'first'] },
        { text: 'SELECT 1 / $1::int', values: [0] },
      ]),
    ).rejects.toMatchObject({ code: '22012' });
    expect(await rowsOfT()).toEqual([]);
    expect(
      await runStatements(client, [{ text: 'INSERT INTO t (a, b) VALUES ($1, $2)', values: [7, 'fine'] }]),
    ).toEqual([{ rowCount: 1, rows: [] }]);
    expect(await rowsOfT()).toEqual([{ a: 7, b: 'fine' }]);
  });

  it('runs BEGIN and COMMIT inside a batch: a transaction in one round trip', async () => {
    await runStatements(client, [
      { text: 'BEGIN', values: [] },
      { text: 'INSERT INTO t (a, b) VALUES ($1, $2)', values: [1, 'one'] },
      { text: 'COMMIT', values: [] },
    ]);
    expect(await rowsOfT()).toEqual([{ a: 1, b: 'one' }]);
  });

  it('throws before sending anything when a parameter cannot be converted', async () => {
    const unconvertible = {
      toPostgres() {
        throw new Error('no wire form');
      },
    };
    await expect(
      runStatements(client, [
        { text: 'INSERT INTO t (a, b) VALUES ($1, $2)', values: [1, 'sent?'] },
        { text: 'INSERT INTO t (a, b) VALUES ($1, $2)', values: [2, unconvertible] },
      ]),
    ).rejects.toThrow('no wire form');
    expect(await rowsOfT()).toEqual([]);
    expect(await runStatements(client, [])).toEqual([]);
    expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });

  it('refuses a COPY before sending anything; the connection stays usable', async () => {
    const trips = roundTrips(client);
    const before = trips();
    await expect(
      runStatements(client, [
        { text: 'COPY t (a, b) FROM STDIN', values: [] },
        { text: 'SELECT 1', values: [] },
      ]),
    ).rejects.toThrow(/COPY cannot run inside a statement batch/);
    expect(trips() - before).toBe(0);
    // One that gets past the check (a comment first), as the batch's last statement, is failed by
    // the server's CopyInResponse handler; the connection survives that.
    await expect(
      runStatements(client, [{ text: '/* x */ COPY t (a, b) FROM STDIN', values: [] }]),
    ).rejects.toThrow(/COPY cannot run inside a statement batch/);
    expect((await client.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
  });
});
