import { Client } from 'pg';
import { createTestDatabase } from '../../test/support/pg';
import {
  at,
  deleteOf,
  dumpWarehouse,
  objectOf,
  parquetOf,
  resetWarehouse,
  rowOf,
  shuffled,
  tableEventOf,
  type TestObject,
} from '../../test/support/warehouse-rows';
import { decodeParquet } from '../shared/parquet-codec';
import { applyBatch, type ApplyOutcome } from './apply-batch';
import { prepareBatch } from './load-batch';
import { migrateWarehouse } from './migrate';

/**
 * Deletes, TRUNCATE and re-snapshots that reconcile, loaded through the real codec into a real
 * warehouse: each scenario is loaded in delivery order and in shuffled orders (objects travel and
 * load in any order), and every order must end in the same warehouse.
 */

let client: Client;

beforeAll(async () => {
  client = new Client({ connectionString: await createTestDatabase('recovery') });
  await client.connect();
  await migrateWarehouse(client);
});

afterAll(async () => {
  await client.end();
});

async function load(object: TestObject): Promise<ApplyOutcome> {
  const batch = prepareBatch(await decodeParquet(await parquetOf(object)));
  return applyBatch(client, batch, { objectKey: object.key });
}

/** Loads the objects in the given order into an empty warehouse; the warehouse dump. */
async function loadInOrder(objects: readonly TestObject[]): Promise<Record<string, unknown[]>> {
  await resetWarehouse(client);
  for (const object of objects) await load(object);
  // Which object keys were loaded differs with redeliveries by design; the data must not.
  const { load_log: _log, ...data } = await dumpWarehouse(client);
  return data;
}

/** The scenario in delivery order, then in shuffled orders with a redelivered object: all equal. */
async function expectOrderProof(objects: readonly TestObject[]): Promise<void> {
  const reference = await loadInOrder(objects);
  for (const seed of [1, 2, 3, 4]) {
    const order = shuffled(objects, seed);
    const redelivered = { ...order[seed % order.length], key: `${order[seed % order.length].key}.again` };
    expect(await loadInOrder([...order, redelivered])).toEqual(reference);
  }
  await loadInOrder(objects);
}

async function query<T = Record<string, unknown>>(sql: string): Promise<T[]> {
  return (await client.query(sql)).rows as T[];
}

const E1 = 1_764_000_000_000;
const E2 = 1_764_600_000_000;

describe('fact deletes (real Postgres)', () => {
  it('takes a deleted order out of the current view and keeps its history, whatever the order', async () => {
    const objects = [
      objectOf('fact_sales_order', [
        rowOf('fact_sales_order', 1, {}, at(1)),
        rowOf('fact_sales_order', 2, {}, at(1, 1)),
      ]),
      objectOf('fact_sales_order', [rowOf('fact_sales_order', 1, { units_sold: 7 }, at(2))]),
      objectOf('fact_sales_order', [deleteOf('fact_sales_order', 1, at(3))]),
    ];
    await expectOrderProof(objects);
    expect(await query('SELECT "sales_order_id" FROM "fact_sales_order_current"')).toEqual([
      { sales_order_id: 2 },
    ]);
    expect(
      await query(
        'SELECT "sales_order_id", "units_sold", "_deleted" FROM "fact_sales_order" ORDER BY "sales_order_id", "_lsn"',
      ),
    ).toEqual([
      { sales_order_id: 1, units_sold: 42972, _deleted: false },
      { sales_order_id: 1, units_sold: 7, _deleted: true },
      { sales_order_id: 2, units_sold: 42972, _deleted: false },
    ]);
  });

  it('shows a row deleted and created again under the same key as its new version', async () => {
    await expectOrderProof([
      objectOf('fact_payment', [rowOf('fact_payment', 5, {}, at(1))]),
      objectOf('fact_payment', [deleteOf('fact_payment', 5, at(2))]),
      objectOf('fact_payment', [rowOf('fact_payment', 5, { paid: true }, at(3))]),
    ]);
    expect(await query('SELECT "payment_id", "paid" FROM "fact_payment_current"')).toEqual([
      { payment_id: 5, paid: true },
    ]);
    expect(await query('SELECT "_deleted" FROM "fact_payment" ORDER BY "_lsn"')).toEqual([
      { _deleted: true },
      { _deleted: false },
    ]);
  });
});

describe('TRUNCATE (real Postgres)', () => {
  it('deletes every payment older than the TRUNCATE, keeps the ones after it, in any order', async () => {
    await expectOrderProof([
      objectOf('fact_payment', [rowOf('fact_payment', 1, {}, at(1)), rowOf('fact_payment', 2, {}, at(2))]),
      objectOf('fact_payment', [rowOf('fact_payment', 2, { paid: true }, at(3))]),
      objectOf('fact_payment', [tableEventOf('fact_payment', 'truncate', at(4))]),
      objectOf('fact_payment', [rowOf('fact_payment', 3, {}, at(5)), rowOf('fact_payment', 1, {}, at(6))]),
    ]);
    expect(await query('SELECT "payment_id" FROM "fact_payment_current" ORDER BY 1')).toEqual([
      { payment_id: 1 },
      { payment_id: 3 },
    ]);
    // History stays: payment 1 before the truncate, then again after it; payment 2's two versions.
    expect(await query('SELECT count(*)::int AS n FROM "fact_payment"')).toEqual([{ n: 5 }]);
    expect(await query(`SELECT "key", "reason" FROM "fact_delete" ORDER BY "key"`)).toEqual([
      { key: 1, reason: 'truncate' },
      { key: 2, reason: 'truncate' },
    ]);
  });

  it('marks dimension rows deleted at the TRUNCATE, rows written after it stay live', async () => {
    await expectOrderProof([
      objectOf('dim_design', [rowOf('dim_design', 1, {}, at(1)), rowOf('dim_design', 2, {}, at(2))]),
      objectOf('dim_design', [tableEventOf('dim_design', 'truncate', at(3))]),
      objectOf('dim_design', [rowOf('dim_design', 2, { design_name: 'Steel' }, at(4))]),
    ]);
    expect(await query('SELECT "design_id", "design_name", "_deleted" FROM "dim_design" ORDER BY 1')).toEqual(
      [
        { design_id: 1, design_name: 'Wooden', _deleted: true },
        { design_id: 2, design_name: 'Steel', _deleted: false },
      ],
    );
  });
});

describe('re-snapshots that reconcile (real Postgres)', () => {
  /** Orders 1–3 streamed in E1; a later snapshot (E2) holds 1 unchanged, 2 changed, not 3. */
  const stream = () => [
    objectOf('fact_sales_order', [
      rowOf('fact_sales_order', 1, {}, at(1, 0, E1)),
      rowOf('fact_sales_order', 2, {}, at(1, 1, E1)),
      rowOf('fact_sales_order', 3, {}, at(1, 2, E1)),
    ]),
  ];
  const snapshotRows = (first: number) =>
    [
      rowOf('fact_sales_order', 1, {}, at(9, first, E2), { op: 'snapshot' }),
      rowOf('fact_sales_order', 2, { units_sold: 5 }, at(9, first + 1, E2), { op: 'snapshot' }),
    ] as const;

  it('adds no version for an unchanged row, one for a changed row, deletes the absent one', async () => {
    const [one, two] = snapshotRows(0);
    await expectOrderProof([
      ...stream(),
      objectOf('fact_sales_order', [one]),
      objectOf('fact_sales_order', [two]),
      objectOf('fact_sales_order', [tableEventOf('fact_sales_order', 'snapshot_end', at(9, 2, E2), 2)]),
    ]);
    expect(
      await query(
        `SELECT "sales_order_id" AS id, count(*)::int AS versions FROM "fact_sales_order" GROUP BY 1 ORDER BY 1`,
      ),
    ).toEqual([
      { id: 1, versions: 1 },
      { id: 2, versions: 2 },
      { id: 3, versions: 1 },
    ]);
    expect(
      await query('SELECT "sales_order_id", "units_sold" FROM "fact_sales_order_current" ORDER BY 1'),
    ).toEqual([
      { sales_order_id: 1, units_sold: 42972 },
      { sales_order_id: 2, units_sold: 5 },
    ]);
    expect(await query('SELECT "key", "reason" FROM "fact_delete"')).toEqual([{ key: 3, reason: 'resync' }]);
    expect(
      await query(
        'SELECT "expected_rows"::int, "deleted_rows", "reconciled_at" IS NOT NULL AS done FROM "snapshot_table"',
      ),
    ).toEqual([{ expected_rows: 2, deleted_rows: 1, done: true }]);
    // Its keys stay: a row that loads late, older than the snapshot, is checked against them.
    expect(await query('SELECT sum("row_count")::int AS n FROM "snapshot_part"')).toEqual([{ n: 2 }]);
  });

  it('waits for every row its marker announced before deleting anything', async () => {
    const [one] = snapshotRows(0);
    await loadInOrder([
      ...stream(),
      objectOf('fact_sales_order', [tableEventOf('fact_sales_order', 'snapshot_end', at(9, 2, E2), 2)]),
      objectOf('fact_sales_order', [one]),
      // A duplicate of a row already counted does not complete the snapshot.
      objectOf('fact_sales_order', [one], 'duplicate-of-one'),
    ]);
    expect(await query('SELECT count(*)::int AS n FROM "fact_delete"')).toEqual([{ n: 0 }]);
    expect(await query('SELECT count(*)::int AS n FROM "fact_sales_order_current"')).toEqual([{ n: 3 }]);
  });

  it('keeps a row created after the snapshot point although the snapshot did not hold it', async () => {
    const [one, two] = snapshotRows(0);
    await expectOrderProof([
      ...stream(),
      objectOf('fact_sales_order', [one, two]),
      objectOf('fact_sales_order', [rowOf('fact_sales_order', 4, {}, at(10, 0, E2))]),
      objectOf('fact_sales_order', [tableEventOf('fact_sales_order', 'snapshot_end', at(9, 2, E2), 2)]),
    ]);
    expect(await query('SELECT "sales_order_id" FROM "fact_sales_order_current" ORDER BY 1')).toEqual([
      { sales_order_id: 1 },
      { sales_order_id: 2 },
      { sales_order_id: 4 },
    ]);
  });

  it('resyncs a late object whose oldest row predates a reconciled snapshot, whatever its newer rows', async () => {
    // Arrange: the snapshot is reconciled first; then an object arrives holding key 3's old
    // version (before the snapshot, which lacked it) beside key 4 created after the snapshot.
    const [one, two] = snapshotRows(0);
    const late = objectOf('fact_sales_order', [
      rowOf('fact_sales_order', 4, {}, at(10, 0, E2)),
      rowOf('fact_sales_order', 3, {}, at(1, 2, E1)),
    ]);

    // Act
    await loadInOrder([
      objectOf('fact_sales_order', [one, two]),
      objectOf('fact_sales_order', [tableEventOf('fact_sales_order', 'snapshot_end', at(9, 2, E2), 2)]),
      late,
    ]);

    // Assess: key 3 ended at the snapshot (only the object's oldest row says it must be checked).
    expect(await query('SELECT "key", "reason" FROM "fact_delete"')).toEqual([{ key: 3, reason: 'resync' }]);
    expect(await query('SELECT "sales_order_id" FROM "fact_sales_order_current" ORDER BY 1')).toEqual([
      { sales_order_id: 1 },
      { sales_order_id: 2 },
      { sales_order_id: 4 },
    ]);
  });

  it('reconciles dimensions: the address the snapshot lacks is deleted, its counterparty follows', async () => {
    await expectOrderProof([
      objectOf('dim_location', [
        rowOf('dim_location', 1, {}, at(1, 0, E1)),
        rowOf('dim_location', 2, {}, at(1, 1, E1)),
      ]),
      objectOf('dim_location', [
        rowOf('dim_location', 1, { city: 'York' }, at(9, 0, E2), { op: 'snapshot' }),
      ]),
      objectOf('dim_location', [tableEventOf('dim_location', 'snapshot_end', at(9, 1, E2), 1)]),
    ]);
    expect(await query('SELECT "location_id", "city", "_deleted" FROM "dim_location" ORDER BY 1')).toEqual([
      { location_id: 1, city: 'York', _deleted: false },
      { location_id: 2, city: 'Leeds', _deleted: true },
    ]);
  });
});

describe('epochs (real Postgres)', () => {
  it('orders a newer epoch after every LSN of an older one', async () => {
    await expectOrderProof([
      objectOf('dim_design', [rowOf('dim_design', 1, { design_name: 'Old' }, at(900, 0, E1))]),
      objectOf('dim_design', [rowOf('dim_design', 1, { design_name: 'New' }, at(1, 0, E2))]),
    ]);
    expect(await query('SELECT "design_name", "_epoch"::text FROM "dim_design"')).toEqual([
      { design_name: 'New', _epoch: String(E2) },
    ]);
  });

  it('treats the same WAL change redelivered under a new epoch as the same fact version', async () => {
    await loadInOrder([
      objectOf('fact_payment', [rowOf('fact_payment', 1, {}, at(5, 0, E1))]),
      objectOf('fact_payment', [rowOf('fact_payment', 1, {}, at(5, 0, E2))]),
    ]);
    expect(await query('SELECT count(*)::int AS n FROM "fact_payment"')).toEqual([{ n: 1 }]);
  });
});
