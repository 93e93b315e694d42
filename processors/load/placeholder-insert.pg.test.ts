import { Client } from 'pg';
import { PLACEHOLDER_LSN, PLACEHOLDER_TEXT, placeholderInsert } from '../../core/warehouse-sql';
import { createTestDatabase, waitFor } from '../../test/support/pg';
import { migrateWarehouse } from './migrate';

/**
 * placeholderInsert against Postgres: the same rows whether it drops the keys it sees rows of
 * first (many keys over a narrow range) or leaves every key to ON CONFLICT.
 */

let url: string;
const clients: Client[] = [];

async function connect(): Promise<Client> {
  const c = new Client({ connectionString: url });
  await c.connect();
  clients.push(c);
  return c;
}

beforeAll(async () => {
  url = await createTestDatabase('placeholder_insert');
  const c = await connect();
  await migrateWarehouse(c);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end()));
});

async function run(c: Client, keys: readonly number[]): Promise<number> {
  const statement = placeholderInsert('dim_transaction', keys);
  return (await c.query(statement.text, statement.values)).rowCount ?? 0;
}

/** A real (loaded) transaction row of each key. */
async function loadTransactions(c: Client, keys: readonly number[]): Promise<void> {
  await c.query(
    `INSERT INTO "dim_transaction" ("transaction_id", "transaction_type", "sales_order_id", "_lsn", "_seq", "_commit_ts")
     SELECT k, 'SALE', k + 1, '0/10', 1, '2025-02-28T09:15:02Z' FROM unnest($1::integer[]) AS k`,
    [keys],
  );
}

async function rowsFrom(c: Client, low: number, high: number) {
  const { rows } = await c.query(
    `SELECT "transaction_id" AS id, "transaction_type" AS type, "sales_order_id" AS so, "_lsn"::text AS lsn,
            "_seq"::int AS seq, "_inferred" AS inferred
       FROM "dim_transaction" WHERE "transaction_id" BETWEEN $1 AND $2 ORDER BY 1`,
    [low, high],
  );
  return rows as {
    id: number;
    type: string;
    so: number | null;
    lsn: string;
    seq: number;
    inferred: boolean;
  }[];
}

const range = (from: number, count: number, step = 1) =>
  Array.from({ length: count }, (_, i) => from + i * step);

describe('placeholderInsert', () => {
  it.each([
    ['many keys over a narrow range (existing rows skipped first)', 100_000, 1, true],
    ['sparse keys (ON CONFLICT alone)', 200_000, 5, false],
  ])('inserts a placeholder for exactly the keys without a row: %s', async (_, from, step, skipsFirst) => {
    const c = clients[0];
    const keys = range(from, 2_000, step);
    await loadTransactions(c, keys.slice(0, 500));
    expect(await run(c, keys.slice(500, 600))).toBe(100); // placeholders already there
    const asked = [...keys.slice(0, 1_000), ...keys].reverse(); // repeats, descending
    expect(placeholderInsert('dim_transaction', asked).text.includes('NOT EXISTS')).toBe(skipsFirst);

    expect(await run(c, asked)).toBe(1_400);

    const rows = await rowsFrom(c, from, keys[keys.length - 1]);
    expect(rows.map((r) => r.id)).toEqual(keys);
    for (const [i, row] of rows.entries())
      expect(row).toEqual(
        i < 500
          ? { id: row.id, type: 'SALE', so: row.id + 1, lsn: '0/10', seq: 1, inferred: false }
          : { id: row.id, type: PLACEHOLDER_TEXT, so: null, lsn: PLACEHOLDER_LSN, seq: 0, inferred: true },
      );
    expect(await run(c, asked)).toBe(0);
  });

  it.each([
    ['commits', 'COMMIT', 1_999],
    ['rolls back', 'ROLLBACK', 2_000],
  ])(
    'waits for a placeholder of a concurrent load it cannot see yet, then inserts the rest (%s)',
    async (_, end, inserted) => {
      const [c, other] = [clients[0], await connect()];
      const keys = range(end === 'COMMIT' ? 300_000 : 400_000, 2_000);
      const held = keys[1_234];
      await other.query('BEGIN');
      expect(await run(other, [held])).toBe(1);
      const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      const running = run(c, keys);
      await waitFor('the statement to wait on the uncommitted placeholder', async () => {
        const { rows } = await other.query(
          `SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'`,
          [pid],
        );
        return rows.length ? true : undefined;
      });
      await other.query(end);
      expect(await running).toBe(inserted);
      expect((await rowsFrom(c, keys[0], keys[keys.length - 1])).length).toBe(2_000);
    },
  );
});
