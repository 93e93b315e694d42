import { Client } from 'pg';
import { dimDateRow } from '../../core/star-mapping';
import {
  textArrayLiteral,
  dimDateInsert,
  dimensionLoadLock,
  factInheritance,
  factInsert,
  factLock,
  placeholderInsert,
  snapshotMarkReconciled,
  snapshotProgress,
  snapshotPartInsert,
  snapshotTableUpsert,
} from '../../core/warehouse-sql';
import { createTestDatabase, waitFor } from '../../test/support/pg';
import { oneStatementAtATime, roundTrips } from '../../test/support/statement-batches';
import {
  at,
  deleteOf,
  dumpWarehouse,
  objectOf,
  parquetOf,
  resetWarehouse,
  rowOf,
  scenarioObjects,
  shuffled,
  tableEventOf,
  type TestObject,
} from '../../test/support/warehouse-rows';
import { decodeParquet } from '../shared/parquet-codec';
import {
  applyBatch,
  applyObject,
  WarehouseDataError,
  WarehouseUnavailableError,
  type ApplyOutcome,
} from './apply-batch';
import { findReferences } from './verify-references';
import { ClaimsBuilder, MalformedObjectError, prepareBatch, type PreparedBatch } from './load-batch';
import { migrateWarehouse } from './migrate';

let url: string;
let client: Client;
/** Extra connections for the concurrency tests. */
const others: Client[] = [];

async function connect(): Promise<Client> {
  const c = new Client({ connectionString: url });
  await c.connect();
  return c;
}

/** Through the real codec, as the handler does. */
async function load(c: Client, object: TestObject, key = object.key): Promise<ApplyOutcome> {
  const batch = prepareBatch(await decodeParquet(await parquetOf(object)));
  return applyBatch(c, batch, { objectKey: key });
}

async function loadAll(c: Client, objects: readonly TestObject[]): Promise<ApplyOutcome[]> {
  const outcomes: ApplyOutcome[] = [];
  for (const object of objects) outcomes.push(await load(c, object));
  return outcomes;
}

async function rowsOf(sql: string, values: unknown[] = []): Promise<Record<string, unknown>[]> {
  return (await client.query(sql, values)).rows;
}

let inOrder: Record<string, unknown[]>;

beforeAll(async () => {
  url = await createTestDatabase('apply_batch');
  client = await connect();
  await migrateWarehouse(client);
  for (let i = 0; i < 4; i += 1) others.push(await connect());
  await loadAll(client, scenarioObjects());
  inOrder = await dumpWarehouse(client);
});

afterAll(async () => {
  await Promise.all([client, ...others].map((c) => c.end()));
});

describe('applyBatch (real Postgres): the scenario loaded in delivery order', () => {
  it('follows the department rename and the staff move into dim_staff', () => {
    const staff = inOrder.dim_staff as Record<string, unknown>[];
    expect(staff.map((s) => [s.staff_id, s.department_name, s.location, s._inferred])).toEqual([
      [1, 'Sales & Marketing', 'Manchester', false],
      [2, 'Purchasing', null, false],
      [3, 'Purchasing', null, false],
      [9, '(unknown)', null, true],
    ]);
    // Hostile text survives exactly; the derived row's position is the newer of its parts.
    expect(staff[1]).toMatchObject({ first_name: 'O\'Brien "Bob", Jr.\n\\x', _lsn: '0/E00', _seq: 0 });
    expect(staff[0]).toMatchObject({ _lsn: '0/A00' }); // the rename (10) is newer than staff 1 (3)
  });

  it('follows the address change into every dim_counterparty whose legal address it is', () => {
    const counterparties = inOrder.dim_counterparty as Record<string, unknown>[];
    expect(
      counterparties.map((c) => [
        c.counterparty_id,
        c.counterparty_legal_name,
        c.counterparty_legal_address_line_2,
        c.counterparty_legal_city,
        c.counterparty_legal_phone_number,
      ]),
    ).toEqual([
      [1, 'Leannon, Predovic & Morar', 'Unit 7', 'Bradford', '0113 496 0000'],
      [2, 'Kub, Bode and Kertzmann', 'Unit 7', 'Bradford', '0113 496 0000'],
      [9, '(unknown)', null, '(unknown)', '(unknown)'],
    ]);
  });

  it('keeps every fact version once, exact types included, with dim_date rows for every date', async () => {
    const versions = await rowsOf(
      `SELECT "sales_order_id", "units_sold", "unit_price"::text, "created_time"::text, "_lsn"::text
         FROM "fact_sales_order" ORDER BY "sales_order_id", "_lsn"`,
    );
    expect(versions).toEqual([
      {
        sales_order_id: 1,
        units_sold: 42_972,
        unit_price: '3.94',
        created_time: '14:20:52.186',
        _lsn: '0/800',
      },
      {
        sales_order_id: 1,
        units_sold: 50_000,
        unit_price: '3.94',
        created_time: '14:20:52.186',
        _lsn: '0/C00',
      },
      {
        sales_order_id: 2,
        units_sold: 42_972,
        unit_price: '3.94',
        created_time: '14:20:52.186',
        _lsn: '0/C00',
      },
      {
        sales_order_id: 3,
        units_sold: 42_972,
        unit_price: '3.94',
        created_time: '14:20:52.186',
        _lsn: '0/1400',
      },
    ]);
    const payments = await rowsOf('SELECT "paid" FROM "fact_payment" ORDER BY "_lsn"');
    expect(payments).toEqual([{ paid: false }, { paid: true }]);
    const dates = await rowsOf(
      `SELECT "date_id"::text, "year", "month", "day", "day_of_week", "day_name", "month_name", "quarter"
         FROM "dim_date" ORDER BY "date_id"`,
    );
    expect(dates.map((d) => d.date_id)).toEqual([
      '2022-11-03',
      '2022-11-04',
      '2022-11-07',
      '2022-11-08',
      '2022-11-09',
      '2022-11-10',
      '2022-12-25',
      '2023-01-02',
    ]);
    // The warehouse's calendar agrees with the transform's dimDateRow (ISO weekday, English names).
    for (const d of dates) expect(d).toEqual(dimDateRow(d.date_id as string));
  });

  it('inserts placeholders for dimension keys facts refer to before (or without) their rows', async () => {
    const placeholders = await rowsOf(
      `SELECT 'dim_location' AS t, "location_id" AS id, "address_line_1" AS text, "_lsn"::text FROM "dim_location" WHERE "_inferred"
       UNION ALL SELECT 'dim_design', "design_id", "design_name", "_lsn"::text FROM "dim_design" WHERE "_inferred"
       UNION ALL SELECT 'dim_staff', "staff_id", "first_name", "_lsn"::text FROM "dim_staff" WHERE "_inferred"
       UNION ALL SELECT 'dim_counterparty', "counterparty_id", "counterparty_legal_name", "_lsn"::text FROM "dim_counterparty" WHERE "_inferred"
       ORDER BY 1`,
    );
    expect(placeholders).toEqual([
      { t: 'dim_counterparty', id: 9, text: '(unknown)', _lsn: '0/0' },
      { t: 'dim_design', id: 9, text: '(unknown)', _lsn: '0/0' },
      { t: 'dim_location', id: 9, text: '(unknown)', _lsn: '0/0' },
      { t: 'dim_staff', id: 9, text: '(unknown)', _lsn: '0/0' },
    ]);
  });

  it('keeps unchanged TOAST values: a dimension keeps its value, a fact version inherits it', async () => {
    expect(
      await rowsOf(
        'SELECT "design_name", "file_name", "_toast_pending" FROM "dim_design" WHERE "design_id" = 1',
      ),
    ).toEqual([{ design_name: 'Granite', file_name: 'wooden-20220717-1.json', _toast_pending: [] }]);
    expect(
      await rowsOf(
        'SELECT "item_code", "item_quantity", "_unchanged" FROM "fact_purchase_order" ORDER BY "_lsn"',
      ),
    ).toEqual([
      { item_code: 'ITEM-ORIGINAL', item_quantity: 371, _unchanged: [] },
      { item_code: 'ITEM-ORIGINAL', item_quantity: 999, _unchanged: ['item_code'] },
    ]);
  });

  it('marks deletes, never erasing, even when the delete arrives before the row', async () => {
    expect(
      await rowsOf('SELECT "design_id", "_deleted", "design_name" FROM "dim_design" WHERE "design_id" = 2'),
    ).toEqual([{ design_id: 2, _deleted: true, design_name: 'Wooden' }]);
    expect(
      await rowsOf(
        `SELECT "department_name", "_deleted", "_inferred", "_lsn"::text, "_deleted_lsn"::text
           FROM "stg_department" WHERE "department_id" = 3`,
      ),
    ).toEqual([
      { department_name: 'Closed', _deleted: true, _inferred: false, _lsn: '0/900', _deleted_lsn: '0/1300' },
    ]);
  });

  it('records per-table progress (forward only) and every object in load_log', async () => {
    expect(
      await rowsOf(
        `SELECT "warehouse_table", "_lsn"::text, "_seq", "newest_commit_ts" FROM "pipeline_progress"
          WHERE "source_table" = 'department'`,
      ),
    ).toEqual([
      {
        warehouse_table: 'stg_department',
        _lsn: '0/1300',
        _seq: '0',
        newest_commit_ts: new Date('2025-02-28T09:00:19.000Z'),
      },
    ]);
    // o21 (position 9) came after o20 (position 19): progress did not move back.
    expect(inOrder.load_log).toHaveLength(scenarioObjects().length);
  });
});

describe('applyBatch (real Postgres): round trips', () => {
  beforeEach(() => resetWarehouse(client));

  // Each statement was a round trip of its own (10–16 an object); on a machine whose cores are
  // busy each waits to be scheduled (bench/README.md, session 11). Statements now go in batches,
  // sent when a result is needed (statement-batch.ts).
  it('loads an object of one part in a few round trips, and a duplicate in two', async () => {
    const c = others[3]!;
    const trips = roundTrips(c);
    async function tripsOf(object: TestObject, factCopyMinRows?: number) {
      const before = trips();
      const batch = prepareBatch(await decodeParquet(await parquetOf(object)));
      const outcome = await applyBatch(c, batch, { objectKey: object.key, factCopyMinRows });
      return { trips: trips() - before, written: outcome.written, duplicate: outcome.duplicate };
    }
    const designs = objectOf('dim_design', [
      rowOf('dim_design', 1, {}, at(1)),
      rowOf('dim_design', 2, {}, at(2)),
    ]);
    // BEGIN and the lookup (while the part is prepared); everything up to the late-row check's
    // read; load_log and COMMIT.
    expect(await tripsOf(designs)).toEqual({ trips: 3, written: 2, duplicate: false });
    // BEGIN and the lookup; everything up to the fact's settling reads (whether a TRUNCATE or a
    // reconciled snapshot left work); the settling, progress, load_log and COMMIT.
    expect(await tripsOf(objectOf('fact_payment', [rowOf('fact_payment', 1, {}, at(3))]))).toEqual({
      trips: 3,
      written: 1,
      duplicate: false,
    });
    // A COPY is one of its own.
    expect(await tripsOf(objectOf('fact_payment', [rowOf('fact_payment', 2, {}, at(4))]), 1)).toEqual({
      trips: 4,
      written: 1,
      duplicate: false,
    });
    // The first batch finds it loaded; ROLLBACK.
    expect(await tripsOf(designs)).toEqual({ trips: 2, written: 0, duplicate: true });
    expect(await rowsOf('SELECT "design_id", "_deleted" FROM "dim_design" ORDER BY 1')).toEqual([
      { design_id: 1, _deleted: false },
      { design_id: 2, _deleted: false },
    ]);
    expect(await rowsOf('SELECT "payment_id" FROM "fact_payment" ORDER BY 1')).toEqual([
      { payment_id: 1 },
      { payment_id: 2 },
    ]);
  });
});

describe('applyObject (real Postgres): round trips of an object in parts', () => {
  beforeEach(() => resetWarehouse(client));

  it("sends a fact part's settling with the next part's COPY, a dimension part's rows before its next part", async () => {
    const c = others[3]!;
    const trips = roundTrips(c);
    async function tripsOf(object: TestObject) {
      const rows = (await decodeParquet(await parquetOf(object))).rows;
      const claims = new ClaimsBuilder(object.table, 2);
      claims.add(rows);
      const parts = () =>
        [0, 2, 4].map((at) =>
          prepareBatch({ table: object.table, rows: rows.slice(at, at + 2) }, { firstRow: at }),
        );
      const before = trips();
      await applyObject(c, object.table, parts, {
        objectKey: object.key,
        factCopyMinRows: 1,
        claims: claims.finish(),
      });
      return trips() - before;
    }
    // BEGIN, the lookup and the claims; per part its reads with the part before's settling, and its
    // COPY; the last part's settling, progress, load_log and COMMIT.
    const payments = objectOf(
      'fact_payment',
      [1, 2, 3, 4, 5, 6].map((id) => rowOf('fact_payment', id, {}, at(id))),
    );
    expect(await tripsOf(payments)).toBe(1 + 3 * 2 + 1);
    // A dimension part's upsert carries its rows: sent before the next part is taken (as before).
    const designs = objectOf(
      'dim_design',
      [1, 2, 3, 4, 5, 6].map((id) => rowOf('dim_design', id, {}, at(10 + id))),
    );
    expect(await tripsOf(designs)).toBe(1 + 3 + 1);
    expect((await rowsOf('SELECT count(*)::int AS n FROM "fact_payment"'))[0]).toEqual({ n: 6 });
  });
});

describe('applyObject (real Postgres): an object already loaded', () => {
  beforeEach(() => resetWarehouse(client));

  const designs = () => objectOf('dim_design', [rowOf('dim_design', 1, {}, at(1))], 'already-loaded');

  it('is found before it waits on a lock: a redelivery during a reconciliation returns at once', async () => {
    // Review (session 12): with the lookup sent with the part's statements, a redelivered object
    // first waited for the table's load lock, held exclusively by a reconciling load, and failed
    // after lock_timeout (55P03) instead of being skipped.
    await load(client, designs());
    const holder = others[2]!;
    await holder.query('BEGIN');
    const lock = dimensionLoadLock('dim_design', true);
    await holder.query(lock.text, lock.values);
    const c = others[3]!;
    await c.query("SET lock_timeout = '300ms'");
    try {
      expect(await load(c, designs())).toMatchObject({ duplicate: true });
    } finally {
      await c.query('RESET lock_timeout');
      await holder.query('ROLLBACK');
    }
  });

  it('is skipped, not refused, when its part no longer passes the checks', async () => {
    // A redelivery read by code whose checks are stricter than the code that loaded it.
    await load(client, designs());
    const stricter = (): Iterable<PreparedBatch> => ({
      [Symbol.iterator]: () => {
        throw new MalformedObjectError('dim_design', ['row 1: refused by a newer check']);
      },
    });
    expect(await applyObject(client, 'dim_design', stricter, { objectKey: designs().key })).toMatchObject({
      duplicate: true,
    });
  });
});

describe('applyBatch (real Postgres): delivery does not matter', () => {
  beforeEach(() => resetWarehouse(client));

  it('loads the same object twice into the same warehouse (skipped by key, and idempotent without it)', async () => {
    const objects = scenarioObjects();
    await loadAll(client, objects);
    const again = await loadAll(client, objects);
    expect(again.every((o) => o.duplicate)).toBe(true);
    expect(await dumpWarehouse(client)).toEqual(inOrder);
    // Forget the keys: every statement must be idempotent on its own.
    await client.query('DELETE FROM "load_log"');
    const replayed = await loadAll(client, objects);
    expect(replayed.some((o) => o.duplicate)).toBe(false);
    expect(replayed.filter((o) => o.table.startsWith('fact_')).map((o) => o.written)).toEqual([
      0, 0, 0, 0, 0, 0, 0,
    ]);
    expect(await dumpWarehouse(client)).toEqual(inOrder);
  });

  it.each([1, 2, 3, 4, 5, 6, 7, 8])(
    'ends identical to the in-order load when shuffled (seed %i)',
    async (seed) => {
      await loadAll(client, shuffled(scenarioObjects(), seed));
      expect(await dumpWarehouse(client)).toEqual(inOrder);
    },
  );

  it('ends identical when delivered in reverse, and when every object is replayed under a new key', async () => {
    await loadAll(client, [...scenarioObjects()].reverse());
    expect(await dumpWarehouse(client)).toEqual(inOrder);
    await resetWarehouse(client);
    const objects = scenarioObjects();
    const replays = objects.map((o) => ({ ...o, key: `replay/${o.key}` }));
    await loadAll(client, shuffled([...objects, ...replays], 99));
    const { load_log: log, ...dump } = await dumpWarehouse(client);
    const { load_log: _expectedLog, ...expected } = inOrder;
    expect(dump).toEqual(expected);
    expect(log).toHaveLength(2 * objects.length);
  });

  it('keeps every reference when facts arrive first: placeholders, then replaced by the real rows', async () => {
    const objects = scenarioObjects();
    const facts = objects.filter((o) => o.table.startsWith('fact_'));
    await loadAll(client, facts);
    // No foreign key makes the load write them (migration 007): verify's reference check must pass.
    expect(
      (await findReferences(client, ['fact_sales_order', 'fact_purchase_order', 'fact_payment'], 5)).report,
    ).toEqual({ checked: 24, dangling: [] });
    const before = await rowsOf('SELECT "staff_id", "_inferred", "first_name" FROM "dim_staff" ORDER BY 1');
    expect(before.length).toBeGreaterThan(0);
    expect(before.every((r) => r._inferred && r.first_name === '(unknown)')).toBe(true);
    await loadAll(
      client,
      objects.filter((o) => !o.table.startsWith('fact_')),
    );
    expect(await dumpWarehouse(client)).toEqual(inOrder);
  });

  it('gives the same result with four loads at a time, without a deadlock', async () => {
    for (const seed of [11, 12, 13]) {
      await resetWarehouse(client);
      const queues: TestObject[][] = [[], [], [], []];
      shuffled(scenarioObjects(), seed).forEach((o, i) => queues[i % 4].push(o));
      const outcomes = await Promise.all(queues.map((queue, i) => loadAll(others[i], queue)));
      expect(outcomes.flat().map((o) => o.attempts)).toEqual(outcomes.flat().map(() => 1));
      expect(await dumpWarehouse(client)).toEqual(inOrder);
    }
  });

  it('races a department rename against new staff of that department: dim_staff always follows', async () => {
    for (let i = 0; i < 15; i += 1) {
      await resetWarehouse(client);
      const department = objectOf('stg_department', [
        rowOf('stg_department', 1, { department_name: 'Old' }, at(1)),
      ]);
      const rename = objectOf('stg_department', [
        rowOf('stg_department', 1, { department_name: 'New' }, at(3)),
      ]);
      const staff = objectOf('stg_staff', [rowOf('stg_staff', 1, { department_id: 1 }, at(2))]);
      await load(client, department);
      await Promise.all([load(others[0], rename), load(others[1], staff)]);
      expect(await rowsOf('SELECT "department_name", "_lsn"::text FROM "dim_staff"')).toEqual([
        { department_name: 'New', _lsn: '0/300' },
      ]);
    }
  });

  it('makes a version that inherits a TOAST value wait for concurrent loads of that fact table', async () => {
    // One connection holds a load of the inheriting version open (its lock taken, rows written,
    // not committed); the load of the version it inherits from must wait, then resolve it.
    const second = objectOf('fact_purchase_order', [
      rowOf(
        'fact_purchase_order',
        5,
        // Other dimension keys and dates than `first`: the two loads share no placeholder row, so only
        // the fact-table lock can make the second wait.
        {
          item_quantity: 2,
          staff_id: 2,
          counterparty_id: 2,
          currency_id: 2,
          agreed_delivery_location_id: 2,
          created_date: '2023-01-01',
          last_updated_date: '2023-01-02',
          agreed_delivery_date: '2023-01-03',
          agreed_payment_date: '2023-01-04',
        },
        at(2),
        { unchanged: ['item_code'] },
      ),
    ]);
    const first = objectOf('fact_purchase_order', [
      rowOf('fact_purchase_order', 5, { item_code: 'LONG' }, at(1)),
    ]);
    const held = others[0];
    const batch = prepareBatch({ table: second.table, rows: second.rows });
    await held.query('BEGIN');
    for (const table of ['dim_staff', 'dim_counterparty', 'dim_currency', 'dim_location'] as const) {
      const insert = placeholderInsert(table, batch.references[table]!);
      await held.query(insert.text, insert.values);
    }
    const dates = dimDateInsert(batch.dates);
    await held.query(dates.text, dates.values);
    for (const statement of [factLock(batch.table, true), factInsert(batch.table, batch.upserts)])
      await held.query(statement.text, statement.values);
    const pid = (await others[1].query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    const loading = load(others[1], first);
    await waitFor('the second load to wait on the fact-table lock', async () => {
      const { rows } = await client.query(
        `SELECT 1 FROM pg_locks WHERE pid = $1 AND locktype = 'advisory' AND NOT granted`,
        [pid],
      );
      return rows.length ? true : undefined;
    });
    const inheritance = factInheritance(batch.table, batch.keys)!;
    await held.query(inheritance.text, inheritance.values);
    await held.query('COMMIT');
    await loading;
    expect(await rowsOf('SELECT "item_code" FROM "fact_purchase_order" ORDER BY "_lsn"')).toEqual([
      { item_code: 'LONG' },
      { item_code: 'LONG' },
    ]);
  });
});

describe('applyBatch (real Postgres): dimension rules in detail', () => {
  beforeEach(() => resetWarehouse(client));

  const design = (n: number, overrides: Record<string, string>, options = {}) =>
    objectOf('dim_design', [rowOf('dim_design', 7, overrides, at(n), options)]);
  const designRow = async () =>
    (
      await rowsOf(
        'SELECT "design_name", "file_name", "_toast_pending", "_deleted", "_lsn"::text FROM "dim_design"',
      )
    )[0];

  it('never lets an older change overwrite a newer one', async () => {
    await load(client, design(5, { design_name: 'Newer' }));
    await load(client, design(4, { design_name: 'Older' }));
    expect(await designRow()).toMatchObject({ design_name: 'Newer', _lsn: '0/500' });
  });

  it('keeps the latest of several changes of one key inside one object, filling its unchanged columns', async () => {
    await load(
      client,
      objectOf('dim_design', [
        rowOf('dim_design', 7, { design_name: 'C' }, at(3), { unchanged: ['file_name'] }),
        rowOf('dim_design', 7, { design_name: 'A', file_name: 'a.json' }, at(1)),
        rowOf('dim_design', 7, { design_name: 'B', file_name: 'b.json' }, at(2)),
      ]),
    );
    expect(await designRow()).toMatchObject({ design_name: 'C', file_name: 'b.json', _toast_pending: [] });
  });

  it('holds an unchanged TOAST column as pending until an older change supplies it', async () => {
    await load(client, design(5, { design_name: 'Newer' }, { unchanged: ['file_name'] }));
    expect(await designRow()).toMatchObject({ file_name: '(unknown)', _toast_pending: ['file_name'] });
    await load(client, design(4, { design_name: 'Older', file_name: 'real.json' }));
    expect(await designRow()).toMatchObject({
      design_name: 'Newer',
      file_name: 'real.json',
      _toast_pending: [],
    });
  });

  it('resurrects a deleted key only with a change newer than the delete', async () => {
    await load(client, design(2, { design_name: 'First' }));
    await load(client, objectOf('dim_design', [deleteOf('dim_design', 7, at(4))]));
    await load(client, design(3, { design_name: 'Between' }));
    expect(await designRow()).toMatchObject({ design_name: 'Between', _deleted: true });
    await load(client, design(6, { design_name: 'Again' }));
    expect(await designRow()).toMatchObject({ design_name: 'Again', _deleted: false });
    await load(client, objectOf('dim_design', [deleteOf('dim_design', 7, at(5))]));
    expect(await designRow()).toMatchObject({ design_name: 'Again', _deleted: false });
  });

  it('loads dim_date objects and empty objects', async () => {
    const dates = objectOf('dim_date', [{ date_id: '2024-02-29' }, { date_id: '2024-02-29' }]);
    expect(await load(client, dates)).toMatchObject({ datesInserted: 1, duplicate: false });
    expect(await rowsOf('SELECT "day_name", "day_of_week", "quarter" FROM "dim_date"')).toEqual([
      { day_name: 'Thursday', day_of_week: 4, quarter: 1 },
    ]);
    expect(await load(client, objectOf('dim_currency', []))).toMatchObject({ rows: 0, written: 0 });
  });

  it('turns data Postgres refuses into WarehouseDataError, leaving nothing behind', async () => {
    // A calendar date to JavaScript, but Postgres has no year 0.
    const far = objectOf('fact_sales_order', [
      rowOf('fact_sales_order', 1, { agreed_payment_date: '0000-01-01' }, at(1)),
    ]);
    const batch = prepareBatch({ table: far.table, rows: far.rows });
    await expect(applyBatch(client, batch, { objectKey: far.key })).rejects.toBeInstanceOf(
      WarehouseDataError,
    );
    expect(await rowsOf('SELECT count(*)::int AS n FROM "dim_staff"')).toEqual([{ n: 0 }]);
    expect(await rowsOf('SELECT count(*)::int AS n FROM "load_log"')).toEqual([{ n: 0 }]);
  });
});

describe('applyBatch (real Postgres): fact versions through COPY, straight or through a staging table', () => {
  beforeEach(() => resetWarehouse(client));

  /** Every fact row with its surrogate key (the insert order), all but `_loaded_at`. */
  async function factsWithIds(): Promise<Record<string, unknown[]>> {
    const out: Record<string, unknown[]> = {};
    for (const [table, id] of [
      ['fact_sales_order', 'sales_record_id'],
      ['fact_purchase_order', 'purchase_record_id'],
      ['fact_payment', 'payment_record_id'],
    ])
      out[table] = await rowsOf(
        `SELECT to_jsonb(t) - '_loaded_at' AS row FROM "${table}" AS t ORDER BY "${id}"`,
      );
    return out;
  }

  async function loadWith(
    objects: readonly TestObject[],
    factCopyMinRows: number,
    factDirectCopy = true,
  ): Promise<ApplyOutcome[]> {
    const outcomes: ApplyOutcome[] = [];
    for (const object of objects) {
      const batch = prepareBatch(await decodeParquet(await parquetOf(object)));
      outcomes.push(
        await applyBatch(client, batch, { objectKey: object.key, factCopyMinRows, factDirectCopy }),
      );
    }
    return outcomes;
  }

  /**
   * Loads `objects` by the parameter path, then (reset) by COPY through the staging table, then
   * (reset) by COPY straight into the facts: each warehouse's dump and facts.
   */
  async function bothPaths(objects: readonly TestObject[]) {
    const viaParameters = await loadWith(objects, Number.POSITIVE_INFINITY);
    const parameters = { dump: await dumpWarehouse(client), facts: await factsWithIds() };
    await resetWarehouse(client);
    const viaStage = await loadWith(objects, 0, false);
    const staged = { dump: await dumpWarehouse(client), facts: await factsWithIds() };
    await resetWarehouse(client);
    const viaCopy = await loadWith(objects, 0);
    const copied = { dump: await dumpWarehouse(client), facts: await factsWithIds() };
    return { viaParameters, viaStage, viaCopy, parameters, staged, copied };
  }

  it('builds the warehouse the parameter arrays build, surrogate keys included, in order and shuffled', async () => {
    for (const objects of [scenarioObjects(), shuffled(scenarioObjects(), 7)]) {
      await resetWarehouse(client);
      const { viaParameters, viaStage, viaCopy, parameters, staged, copied } = await bothPaths(objects);
      expect(copied.dump).toEqual(inOrder);
      expect(copied).toEqual(parameters);
      expect(staged).toEqual(parameters);
      expect(viaCopy.map((o) => o.written)).toEqual(viaParameters.map((o) => o.written));
      expect(viaStage.map((o) => o.written)).toEqual(viaParameters.map((o) => o.written));
      expect(viaStage.some((o) => o.factCopyFallback)).toBe(false);
      await resetWarehouse(client);
    }
    // A replay under new keys inserts nothing through COPY either (ON CONFLICT on the version).
    await loadWith(scenarioObjects(), 0);
    const replays = scenarioObjects().map((o) => ({ ...o, key: `replay/${o.key}` }));
    const replayed = await loadWith(replays, 0);
    expect(replayed.filter((o) => o.table.startsWith('fact_')).every((o) => o.written === 0)).toBe(true);
    const { load_log: _log, ...dump } = await dumpWarehouse(client);
    const { load_log: _expectedLog, ...expected } = inOrder;
    expect(dump).toEqual(expected);
  });

  it('carries hostile text, NULLs, unchanged marks, snapshot versions and repeats exactly as the parameters do', async () => {
    const hostile = [
      'a\tb',
      'c\nd\re',
      'back\\slash',
      '\\N',
      '',
      'Zoë – 東京 🚚',
      `it's "x", {y}, NULL`,
      'NULL',
    ];
    const rows = hostile.map((itemCode, i) =>
      rowOf('fact_purchase_order', 100 + (i % 3), { item_code: itemCode }, at(30 + i, i % 2)),
    );
    rows.push(
      rowOf('fact_purchase_order', 100, { item_quantity: 7 }, at(50), { unchanged: ['item_code'] }),
      rowOf('fact_purchase_order', 101, { item_code: 'snap' }, at(51), { op: 'snapshot' }),
      // An exact repeat of a version (same key and position): one row.
      rowOf('fact_purchase_order', 100, { item_code: hostile[0] }, at(30)),
    );
    const objects = [
      objectOf('fact_purchase_order', rows, 'hostile'),
      objectOf('fact_purchase_order', rows, 'again'),
    ];
    const { viaCopy, viaStage, parameters, staged, copied } = await bothPaths(objects);
    expect(copied).toEqual(parameters);
    expect(staged).toEqual(parameters);
    expect(viaCopy.map((o) => o.written)).toEqual([hostile.length + 2, 0]);
    expect(viaStage.map((o) => o.written)).toEqual([hostile.length + 2, 0]);
    // The second object's versions are all there: its direct COPY fell back to the staging table.
    expect(viaCopy.map((o) => o.factCopyFallback)).toEqual([false, true]);
    const codes = (copied.facts.fact_purchase_order as { row: { item_code: string } }[]).map(
      (r) => r.row.item_code,
    );
    expect(codes).toEqual(expect.arrayContaining(hostile));
  });

  it('turns data Postgres refuses in the COPY into WarehouseDataError, leaving nothing behind', async () => {
    const far = objectOf('fact_sales_order', [
      rowOf('fact_sales_order', 1, {}, at(1)),
      rowOf('fact_sales_order', 2, { agreed_payment_date: '0000-01-01' }, at(2)),
    ]);
    const batch = prepareBatch({ table: far.table, rows: far.rows });
    await expect(
      applyBatch(client, batch, { objectKey: far.key, factCopyMinRows: 0 }),
    ).rejects.toBeInstanceOf(WarehouseDataError);
    expect(await rowsOf('SELECT count(*)::int AS n FROM "fact_sales_order"')).toEqual([{ n: 0 }]);
    expect(await rowsOf('SELECT count(*)::int AS n FROM "load_log"')).toEqual([{ n: 0 }]);
    // The connection is usable at once, and so is the staging table's name.
    await loadWith([objectOf('fact_sales_order', [rowOf('fact_sales_order', 1, {}, at(1))], 'fine')], 0);
    expect(await rowsOf('SELECT count(*)::int AS n FROM "fact_sales_order"')).toEqual([{ n: 1 }]);
    // The same through the staging table: a data error is never taken for a version already there.
    await expect(
      applyBatch(client, batch, { objectKey: far.key, factCopyMinRows: 0, factDirectCopy: false }),
    ).rejects.toBeInstanceOf(WarehouseDataError);
    expect(await rowsOf('SELECT count(*)::int AS n FROM "fact_sales_order"')).toEqual([{ n: 1 }]);
  });

  it('writes text[] literals Postgres reads back as the same elements', async () => {
    const values = ['item_code', 'NULL', 'a,b', 'say "hi"', 'back\\slash', '', '{x}', ' sp '];
    const { rows } = await client.query('SELECT $1::text[] AS a', [textArrayLiteral(values)]);
    expect(rows[0].a).toEqual(values);
  });

  /** The fact's versions as [key, position] in record-id order: the order the serial ids were drawn in. */
  async function salesOrderIdOrder(): Promise<unknown[]> {
    const rows = await rowsOf(
      `SELECT "sales_order_id" AS key, (("_lsn" - '0/0') / 256)::int AS n FROM "fact_sales_order" ORDER BY "sales_record_id"`,
    );
    return rows.map((r) => [r.key, r.n]);
  }

  it('loads a mixed object (versions already there and new ones) again through the staging table', async () => {
    const first = objectOf(
      'fact_sales_order',
      [rowOf('fact_sales_order', 1, {}, at(1)), rowOf('fact_sales_order', 2, {}, at(2))],
      'first',
    );
    const mixed = objectOf(
      'fact_sales_order',
      [
        rowOf('fact_sales_order', 3, {}, at(3)),
        rowOf('fact_sales_order', 2, {}, at(2)),
        rowOf('fact_sales_order', 1, { units_sold: 9 }, at(4)),
      ],
      'mixed',
    );
    const viaParameters = await loadWith([first, mixed], Number.POSITIVE_INFINITY);
    const parameters = await dumpWarehouse(client);
    await resetWarehouse(client);
    const viaCopy = await loadWith([first, mixed], 0);
    expect(viaCopy.map((o) => o.factCopyFallback)).toEqual([false, true]);
    expect(viaCopy.map((o) => o.written)).toEqual([2, 2]);
    expect(viaCopy.map((o) => o.written)).toEqual(viaParameters.map((o) => o.written));
    // Not a conflict retry.
    expect(viaCopy.map((o) => o.attempts)).toEqual([1, 1]);
    expect(await dumpWarehouse(client)).toEqual(parameters);
    // Record ids in (key, position) order inside each object, the first object's first.
    expect(await salesOrderIdOrder()).toEqual([
      [1, 1],
      [2, 2],
      [1, 4],
      [3, 3],
    ]);
  });

  it('rolls back every part when a later part repeats a version of an earlier one, then loads the object whole', async () => {
    const part1 = [rowOf('fact_sales_order', 2, {}, at(1)), rowOf('fact_sales_order', 1, {}, at(2))];
    // A version of part 1 again (a redelivered change in the same object), and a new one.
    const part2 = [rowOf('fact_sales_order', 1, {}, at(2)), rowOf('fact_sales_order', 4, {}, at(3))];
    const parts = () => [
      prepareBatch({ table: 'fact_sales_order', rows: part1 }),
      prepareBatch({ table: 'fact_sales_order', rows: part2 }, { firstRow: part1.length }),
    ];
    const viaParameters = await applyObject(client, 'fact_sales_order', parts, {
      objectKey: 'parts',
      factCopyMinRows: Number.POSITIVE_INFINITY,
    });
    const parameters = await dumpWarehouse(client);
    await resetWarehouse(client);
    let reads = 0;
    const outcome = await applyObject(
      client,
      'fact_sales_order',
      () => {
        reads += 1;
        return parts();
      },
      { objectKey: 'parts', factCopyMinRows: 0 },
    );
    expect(reads).toBe(2);
    expect(outcome).toMatchObject({ factCopyFallback: true, attempts: 1, rows: 4, written: 3 });
    expect(viaParameters.written).toBe(3);
    expect(await dumpWarehouse(client)).toEqual(parameters);
    expect(await salesOrderIdOrder()).toEqual([
      [1, 2],
      [2, 1],
      [4, 3],
    ]);
    expect(await rowsOf('SELECT "rows" FROM "load_log"')).toEqual([{ rows: 4 }]);
  });

  it('waits for a concurrent load of the same version: falls back if it commits, COPYs if it rolls back', async () => {
    const lone = rowOf('fact_sales_order', 1, {}, at(1));
    const object = objectOf('fact_sales_order', [lone, rowOf('fact_sales_order', 2, {}, at(2))], 'raced');
    const held = others[0];
    for (const end of ['COMMIT', 'ROLLBACK'] as const) {
      await resetWarehouse(client);
      // Another load's insert of one of the object's versions, not yet committed (its shared lock held).
      const versions = prepareBatch({ table: 'fact_sales_order', rows: [lone] });
      await held.query('BEGIN');
      for (const statement of [
        factLock('fact_sales_order', false),
        factInsert('fact_sales_order', versions.upserts),
      ])
        await held.query(statement.text, statement.values);
      const pid = (await others[1].query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      const batch = prepareBatch({ table: object.table, rows: object.rows });
      const loading = applyBatch(others[1], batch, { objectKey: `${object.key}/${end}`, factCopyMinRows: 0 });
      await waitFor('the COPY to wait on the uncommitted version', async () => {
        const { rows } = await client.query(
          `SELECT 1 FROM pg_locks WHERE pid = $1 AND locktype = 'transactionid' AND NOT granted`,
          [pid],
        );
        return rows.length ? true : undefined;
      });
      await held.query(end);
      const outcome = await loading;
      expect(outcome).toMatchObject(
        end === 'COMMIT' ? { factCopyFallback: true, written: 1 } : { factCopyFallback: false, written: 2 },
      );
      // Once either way: the committed version, or the object's own.
      expect(await salesOrderIdOrder()).toEqual([
        [1, 1],
        [2, 2],
      ]);
    }
  });
});

describe('snapshot progress (real Postgres)', () => {
  it("counts a snapshot's loaded rows only once its marker has arrived and until it is reconciled", async () => {
    // Every load holding snapshot rows checks progress; counting the rows so far at each check cost
    // ~50–75 ms at 333,000 rows, for a number only a snapshot whose marker is in can use.
    const id = { sourceTable: 'progress_probe', epoch: 7, lsn: '0/10' };
    const progress = async () => {
      const statement = snapshotProgress(id);
      const { rows } = await client.query(statement.text, statement.values);
      return { expected: rows[0].expected_rows, loaded: rows[0].loaded_rows };
    };
    await client.query('BEGIN');
    try {
      for (const statement of [
        snapshotTableUpsert(id, null),
        snapshotPartInsert(
          id,
          [1, 2, 3].map((seq) => ({ seq, key: seq * 10 })),
        ),
        // Rows 2 and 3 delivered again (in another object): stored twice, counted once.
        snapshotPartInsert(
          id,
          [2, 3].map((seq) => ({ seq, key: seq * 10 })),
        ),
      ])
        await client.query(statement.text, statement.values);
      expect(await progress()).toEqual({ expected: null, loaded: null });
      const marker = snapshotTableUpsert(id, { seq: 4, rows: 3, commitTs: '2026-12-02T00:00:00Z' });
      await client.query(marker.text, marker.values);
      expect(await progress()).toEqual({ expected: '3', loaded: '3' });
      const reconciled = snapshotMarkReconciled(id);
      await client.query(reconciled.text, reconciled.values);
      expect(await progress()).toEqual({ expected: '3', loaded: null });
    } finally {
      await client.query('ROLLBACK');
    }
  });
});

describe('a dimension load racing the reconciliation of its snapshot (real Postgres)', () => {
  // dim_design feeds no derived dimension, whose lock would serialise the two loads by itself.
  const snapshotOf = (id: number, seq: number) =>
    objectOf('dim_design', [rowOf('dim_design', id, {}, at(9, seq), { op: 'snapshot' })]);
  /** A row older than the snapshot, which did not hold it: the snapshot ends it, whenever it loads. */
  const late = () => objectOf('dim_design', [rowOf('dim_design', 3, {}, at(5))]);

  /** `c`, whose transaction stops before its COMMIT until `release` (to interleave two loads). */
  const pausedAtCommit = (c: Client) => pausedAt(c, 'COMMIT');

  /** `c`, whose transaction stops before its first statement starting `text` until `release`. */
  function pausedAt(
    c: Client,
    text: string,
  ): { client: Client; reached: Promise<void>; release: () => void } {
    let reach = () => {};
    let release = () => {};
    const reached = new Promise<void>((resolve) => (reach = resolve));
    const gate = new Promise<void>((resolve) => (release = resolve));
    const client = new Proxy(c, {
      get(target, prop, receiver) {
        if (prop !== 'query') {
          const value = Reflect.get(target, prop, receiver);
          return typeof value === 'function' ? value.bind(target) : value;
        }
        return oneStatementAtATime(async (...args: unknown[]) => {
          const statement = typeof args[0] === 'string' ? args[0] : (args[0] as { text?: string })?.text;
          if (statement?.startsWith(text)) {
            reach();
            await gate;
          }
          return (target.query as (...a: unknown[]) => unknown)(...args);
        });
      },
    });
    return { client, reached, release };
  }

  /** Waits until `running` settled or its connection waits on a lock (it may do either). */
  async function settledOrBlocked(c: Client, running: Promise<unknown>): Promise<void> {
    let settled = false;
    running.then(
      () => (settled = true),
      () => (settled = true),
    );
    const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    await waitFor('the load to finish or to wait on a lock', async () => {
      if (settled) return true;
      const { rows } = await client.query('SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted', [pid]);
      return rows.length ? true : undefined;
    });
  }

  beforeEach(async () => {
    await resetWarehouse(client);
    // The snapshot (two rows, marker in) lacks one row: the load that brings it reconciles.
    await load(client, objectOf('dim_design', [tableEventOf('dim_design', 'snapshot_end', at(9, 2), 2)]));
    await load(client, snapshotOf(1, 0));
  });

  async function expectLateRowDeleted(): Promise<void> {
    expect(
      await rowsOf('SELECT "design_id", "_deleted", "_deleted_lsn"::text FROM "dim_design" ORDER BY 1'),
    ).toEqual([
      { design_id: 1, _deleted: false, _deleted_lsn: null },
      { design_id: 2, _deleted: false, _deleted_lsn: null },
      { design_id: 3, _deleted: true, _deleted_lsn: '0/900' },
    ]);
  }

  // With the table's load lock (shared for the late row, exclusive for the snapshot object) the two
  // no longer overlap: each test checks that whichever starts first, the other sees its work.
  it('deletes the late row when its check ran before the reconciliation, which committed before the row', async () => {
    const loading = pausedAtCommit(others[0]);
    const row = load(loading.client, late());
    await loading.reached;
    const reconciling = load(others[1], snapshotOf(2, 1));
    await settledOrBlocked(others[1], reconciling);
    loading.release();
    await Promise.all([row, reconciling]);
    await expectLateRowDeleted();
  });

  it('deletes the late row when the reconciliation ran first and committed after the row was checked', async () => {
    const reconciling = pausedAtCommit(others[0]);
    const reconciled = load(reconciling.client, snapshotOf(2, 1));
    await reconciling.reached;
    const row = load(others[1], late());
    await settledOrBlocked(others[1], row);
    reconciling.release();
    await Promise.all([row, reconciled]);
    expect((await reconciled).reconciled).toHaveLength(1);
    await expectLateRowDeleted();
  });

  it('does not deadlock a reconciliation with a load holding a row the snapshot lacked', async () => {
    // Found in review: the reconciling load took the progress row, then its whole-table pass waited
    // for row 3, which a load of the same table held while it waited for that progress row (40P01,
    // one of them retried). Row 3 exists before the snapshot; the load updates it, older than it.
    await load(client, objectOf('dim_design', [rowOf('dim_design', 3, {}, at(1))]));
    const loading = pausedAt(others[0], 'INSERT INTO "pipeline_progress"');
    const row = load(loading.client, late());
    await loading.reached;
    const reconciling = load(others[1], snapshotOf(2, 1));
    await settledOrBlocked(others[1], reconciling);
    loading.release();
    const outcomes = await Promise.all([row, reconciling]);
    expect(outcomes.map((o) => o.attempts)).toEqual([1, 1]);
    expect(outcomes[1].reconciled).toHaveLength(1);
    await expectLateRowDeleted();
  });

  it('rolls an object back whole, to retry later, when a load older than migration 009 finds no snapshot_row', async () => {
    // What the code before 009 sent (core/warehouse-sql.ts snapshotRowInsert, up to 008).
    const older = new Proxy(others[2], {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver);
        if (prop !== 'query') return typeof value === 'function' ? value.bind(target) : value;
        return oneStatementAtATime((...args: unknown[]) =>
          typeof args[0] === 'string' && args[0].startsWith('INSERT INTO "snapshot_part"')
            ? target.query(
                `INSERT INTO "snapshot_row" ("source_table", "snapshot_epoch", "snapshot_lsn", "seq", "key")
                 SELECT $1, $2::bigint, $3::pg_lsn, 1, 2`,
                (args[1] as unknown[]).slice(0, 3),
              )
            : (target.query as (...a: unknown[]) => unknown)(...args),
        );
      },
    });
    const error = await load(older, snapshotOf(2, 1)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WarehouseUnavailableError);
    expect((error as WarehouseUnavailableError).cause).toMatchObject({ code: '42P01' });
    expect(await rowsOf('SELECT "design_id" FROM "dim_design" ORDER BY 1')).toEqual([{ design_id: 1 }]);
    expect(await rowsOf('SELECT count(*)::int AS n FROM "load_log"')).toEqual([{ n: 2 }]);
    // A load of the code now, later, loads it.
    expect((await load(others[2], snapshotOf(2, 1))).reconciled).toHaveLength(1);
    expect(await rowsOf('SELECT "design_id" FROM "dim_design" ORDER BY 1')).toEqual([
      { design_id: 1 },
      { design_id: 2 },
    ]);
  });
});
