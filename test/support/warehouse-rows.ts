import type { ClientBase } from 'pg';
import { rawTextClient } from '../../capture/pg-text';
import type { Change } from '../../core/change-event';
import { bigIntToLsn } from '../../core/lsn';
import { toWarehouseRows } from '../../core/star-mapping';
import { TOTESYS_TABLES } from '../../core/totesys-tables';
import {
  WAREHOUSE_TABLES,
  WAREHOUSE_TABLE_NAMES,
  type WarehouseRow,
  type WarehouseTableName,
} from '../../core/warehouse-model';
import { applyBatch } from '../../processors/load/apply-batch';
import { prepareBatch } from '../../processors/load/load-batch';
import { encodeParquet } from '../../processors/shared/parquet-codec';

/**
 * Factories for processed-bucket rows (the Parquet contract of core/warehouse-model.ts) and helpers
 * to look at a warehouse, for the load tests. Positions are small integers turned into LSNs, so a
 * test reads `at(30)` as "the change committed at position 30".
 */

export interface At {
  /** Commit position; becomes the LSN `0/<n * 0x100>`. */
  n: number;
  seq?: number;
  /** Capture generation (default 0). */
  epoch?: number;
}

/** Position `n` (and ordinal `seq` inside that commit), in capture generation `epoch`. */
export const at = (n: number, seq = 0, epoch = 0): At => ({ n, seq, epoch });

/** The commit time a position gets: one second per position after a fixed instant. */
export function commitTsOf(n: number): string {
  return new Date(Date.UTC(2025, 1, 28, 9, 0, 0) + n * 1000).toISOString().replace('Z', '123Z');
}

export function lsnOf(n: number): string {
  return bigIntToLsn(BigInt(n) * 0x100n);
}

export interface RowOptions {
  op?: 'upsert' | 'delete' | 'snapshot';
  /** Columns carried as unchanged TOAST values: their value is dropped (NULL) and listed. */
  unchanged?: readonly string[];
}

/** A row of `table` with the bookkeeping columns of position `when`. */
export function warehouseRow(
  table: WarehouseTableName,
  values: WarehouseRow,
  when: At,
  options: RowOptions = {},
): WarehouseRow {
  const spec = WAREHOUSE_TABLES[table];
  const row: WarehouseRow = {};
  const op = options.op ?? 'upsert';
  for (const c of spec.columns) {
    const dropped = (op === 'delete' && c.name !== spec.key) || options.unchanged?.includes(c.name);
    row[c.name] = dropped ? null : (values[c.name] ?? null);
  }
  return {
    ...row,
    _op: op,
    _epoch: when.epoch ?? 0,
    _lsn: lsnOf(when.n),
    _seq: when.seq ?? 0,
    _commit_ts: commitTsOf(when.n),
    _unchanged: (options.unchanged ?? []).join(','),
    // Stands in for the whole source row's hash: equal values, equal hash.
    _row_hash: op === 'delete' || options.unchanged?.length ? null : JSON.stringify(row),
  };
}

/** A whole-table event of `table` at `when`: a TRUNCATE, or a snapshot's end marker with its count. */
export function tableEventOf(
  table: WarehouseTableName,
  op: 'truncate' | 'snapshot_end',
  when: At,
  rows?: number,
): WarehouseRow {
  const row: WarehouseRow = {};
  for (const c of WAREHOUSE_TABLES[table].columns) row[c.name] = null;
  return {
    ...row,
    _op: op,
    _epoch: when.epoch ?? 0,
    _lsn: lsnOf(when.n),
    _seq: when.seq ?? 0,
    _commit_ts: commitTsOf(when.n),
    _unchanged: '',
    _row_hash: null,
    _rows: rows ?? null,
  };
}

type Overrides = Partial<Record<string, string | number | boolean | null>>;

const DEFAULTS: Partial<Record<WarehouseTableName, (id: number) => WarehouseRow>> = {
  dim_location: (id) => ({
    location_id: id,
    address_line_1: `${id} Leeds Road`,
    address_line_2: null,
    district: 'West Yorkshire',
    city: 'Leeds',
    postal_code: 'LS1 1AA',
    country: 'United Kingdom',
    phone: '0113 496 0000',
  }),
  dim_currency: (id) => ({
    currency_id: id,
    currency_code: ['GBP', 'USD', 'EUR'][(id - 1) % 3],
    currency_name: ['Pound Sterling', 'US Dollar', 'Euro'][(id - 1) % 3],
  }),
  dim_design: (id) => ({
    design_id: id,
    design_name: 'Wooden',
    file_location: '/usr/local/src',
    file_name: `wooden-20220717-${id}.json`,
  }),
  dim_payment_type: (id) => ({
    payment_type_id: id,
    payment_type_name: ['SALES_RECEIPT', 'SALES_REFUND', 'PURCHASE_PAYMENT', 'PURCHASE_REFUND'][(id - 1) % 4],
  }),
  dim_transaction: (id) => ({
    transaction_id: id,
    transaction_type: 'SALE',
    sales_order_id: id,
    purchase_order_id: null,
  }),
  stg_department: (id) => ({
    department_id: id,
    department_name: `Department ${id}`,
    location: 'Manchester',
    manager: 'Richard Roma',
  }),
  stg_staff: (id) => ({
    staff_id: id,
    first_name: 'Jeremie',
    last_name: `Franey${id}`,
    department_id: 1,
    email_address: `jeremie.franey${id}@terrifictotes.com`,
  }),
  stg_counterparty: (id) => ({
    counterparty_id: id,
    counterparty_legal_name: 'Leannon, Predovic and Morar',
    legal_address_id: 1,
  }),
  fact_sales_order: (id) => ({
    sales_order_id: id,
    created_date: '2022-11-03',
    created_time: '14:20:52.186',
    last_updated_date: '2022-11-03',
    last_updated_time: '14:20:52.186',
    sales_staff_id: 1,
    counterparty_id: 1,
    units_sold: 42_972,
    unit_price: '3.94',
    currency_id: 1,
    design_id: 1,
    agreed_payment_date: '2022-11-07',
    agreed_delivery_date: '2022-11-10',
    agreed_delivery_location_id: 1,
  }),
  fact_purchase_order: (id) => ({
    purchase_order_id: id,
    created_date: '2022-11-03',
    created_time: '14:20:52.187',
    last_updated_date: '2022-11-03',
    last_updated_time: '14:20:52.187',
    staff_id: 1,
    counterparty_id: 1,
    item_code: 'ZDOI5EA',
    item_quantity: 371,
    item_unit_price: '361.39',
    currency_id: 1,
    agreed_delivery_date: '2022-11-09',
    agreed_payment_date: '2022-11-07',
    agreed_delivery_location_id: 1,
  }),
  fact_payment: (id) => ({
    payment_id: id,
    created_date: '2022-11-03',
    created_time: '14:20:52.186',
    last_updated_date: '2022-11-03',
    last_updated_time: '14:20:52.186',
    transaction_id: id,
    counterparty_id: 1,
    payment_amount: '56925.44',
    currency_id: 1,
    payment_type_id: 1,
    paid: false,
    payment_date: '2022-11-07',
  }),
};

/** A realistic row of `table` with key `id`, `overrides` applied, at position `when`. */
export function rowOf(
  table: WarehouseTableName,
  id: number,
  overrides: Overrides,
  when: At,
  options: RowOptions = {},
): WarehouseRow {
  const defaults = DEFAULTS[table];
  if (!defaults) throw new Error(`no row factory for ${table}`);
  return warehouseRow(table, { ...defaults(id), ...overrides } as WarehouseRow, when, options);
}

/** A delete of key `id` of `table` at position `when` (only the key travels). */
export function deleteOf(table: WarehouseTableName, id: number, when: At): WarehouseRow {
  return warehouseRow(table, { [WAREHOUSE_TABLES[table].key]: id }, when, { op: 'delete' });
}

/** One processed-bucket object: a table and its rows, with the key it is stored under. */
export interface TestObject {
  key: string;
  table: WarehouseTableName;
  rows: WarehouseRow[];
}

let objectCounter = 0;

export function objectOf(table: WarehouseTableName, rows: WarehouseRow[], name?: string): TestObject {
  objectCounter += 1;
  return { key: `${table}/2025/02/28/09/${name ?? `object-${objectCounter}`}.parquet`, table, rows };
}

export async function parquetOf(object: TestObject): Promise<Buffer> {
  return encodeParquet(object.table, object.rows);
}

/** Empties every warehouse table (schema kept), so one database serves several scenarios. */
export async function resetWarehouse(client: ClientBase): Promise<void> {
  const tables = [
    ...WAREHOUSE_TABLE_NAMES,
    'pipeline_progress',
    'load_log',
    'fact_delete',
    'source_truncate',
    'snapshot_table',
    'snapshot_part',
  ]
    .map((t) => `"${t}"`)
    .join(', ');
  await client.query(`TRUNCATE ${tables} RESTART IDENTITY`);
}

/**
 * Every warehouse table as JSON rows, ordered, without what legitimately depends on load order or
 * time (surrogate keys, `_loaded_at`, `last_loaded_at`, `loaded_at`): two warehouses that hold
 * the same data dump equal.
 */
export async function dumpWarehouse(client: ClientBase): Promise<Record<string, unknown[]>> {
  const dump: Record<string, unknown[]> = {};
  for (const name of WAREHOUSE_TABLE_NAMES) {
    const spec = WAREHOUSE_TABLES[name];
    const drop = ['_loaded_at', ...(spec.surrogateKey ? [spec.surrogateKey] : [])];
    const order = spec.kind === 'fact' ? `"${spec.key}", "_epoch", "_lsn", "_seq"` : `"${spec.key}"`;
    const { rows } = await client.query(
      `SELECT to_jsonb(t) - $1::text[] AS row FROM "${name}" AS t ORDER BY ${order}`,
      [drop],
    );
    dump[name] = rows.map((r) => r.row);
  }
  const progress = await client.query(
    `SELECT to_jsonb(p) - 'last_loaded_at' AS row FROM "pipeline_progress" AS p ORDER BY "source_table"`,
  );
  dump.pipeline_progress = progress.rows.map((r) => r.row);
  const log = await client.query(
    `SELECT to_jsonb(l) - 'loaded_at' AS row FROM "load_log" AS l ORDER BY "object_key"`,
  );
  dump.load_log = log.rows.map((r) => r.row);
  for (const [table, order] of [
    ['fact_delete', '"warehouse_table", "key", "_epoch", "_lsn", "_seq"'],
    ['source_truncate', '"source_table", "_epoch", "_lsn", "_seq"'],
    ['snapshot_table', '"source_table", "snapshot_epoch", "snapshot_lsn"'],
  ]) {
    const { rows } = await client.query(
      // When a snapshot completed, and how many rows it found deleted then, depend on arrival order.
      `SELECT to_jsonb(t) - '_loaded_at' - 'reconciled_at' - 'deleted_rows' AS row FROM "${table}" AS t ORDER BY ${order}`,
    );
    dump[table] = rows.map((r) => r.row);
  }
  return dump;
}

/** Deterministic shuffle (mulberry32), so a failing order can be replayed from its seed. */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  let s = seed >>> 0;
  const random = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = [...items];
  for (let i = out.length - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/**
 * A small business history as processed-bucket objects, in delivery order, touching every loaded
 * table and every ordering hazard: a department rename and an address change after the staff and
 * counterparties that use them; a staff move; order and payment versions; facts referring to
 * dimension rows that never arrive (placeholders); a TOAST-unchanged column in a dimension and in a
 * fact; a delete, and a delete that arrives before the row it deletes.
 */
export function scenarioObjects(): TestObject[] {
  const o = (table: WarehouseTableName, name: string, rows: WarehouseRow[]) => objectOf(table, rows, name);
  return [
    o('dim_location', 'o01', [
      rowOf('dim_location', 1, {}, at(1)),
      rowOf('dim_location', 2, { city: 'York' }, at(1, 1)),
    ]),
    o('stg_department', 'o02', [
      rowOf('stg_department', 1, { department_name: 'Sales' }, at(2)),
      rowOf('stg_department', 2, { department_name: 'Purchasing', location: null }, at(2, 1)),
    ]),
    o('stg_staff', 'o03', [
      rowOf('stg_staff', 1, { department_id: 1 }, at(3)),
      rowOf('stg_staff', 2, { department_id: 1, first_name: 'O\'Brien "Bob", Jr.\n\\x' }, at(3, 1)),
    ]),
    o('stg_counterparty', 'o04', [
      rowOf('stg_counterparty', 1, { legal_address_id: 1 }, at(4)),
      rowOf(
        'stg_counterparty',
        2,
        { legal_address_id: 2, counterparty_legal_name: 'Kub, Bode and Kertzmann' },
        at(4, 1),
      ),
    ]),
    o('dim_currency', 'o05', [rowOf('dim_currency', 1, {}, at(5)), rowOf('dim_currency', 2, {}, at(5, 1))]),
    o('dim_design', 'o06', [rowOf('dim_design', 1, {}, at(6)), rowOf('dim_design', 2, {}, at(6, 1))]),
    o('dim_payment_type', 'o07', [rowOf('dim_payment_type', 1, {}, at(7))]),
    o('dim_transaction', 'o08', [
      rowOf('dim_transaction', 1, {}, at(7, 1)),
      rowOf('dim_transaction', 2, {}, at(7, 2)),
    ]),
    o('fact_sales_order', 'o09', [rowOf('fact_sales_order', 1, {}, at(8))]),
    o('fact_payment', 'o10', [rowOf('fact_payment', 1, {}, at(9))]),
    // The rename and the address change: dim_staff and dim_counterparty must follow.
    o('stg_department', 'o11', [
      rowOf('stg_department', 1, { department_name: 'Sales & Marketing' }, at(10)),
    ]),
    o('dim_location', 'o12', [
      rowOf('dim_location', 1, { city: 'Bradford', address_line_2: 'Unit 7' }, at(11)),
    ]),
    o('fact_sales_order', 'o13', [
      rowOf(
        'fact_sales_order',
        1,
        { units_sold: 50_000, last_updated_date: '2022-11-04', last_updated_time: '09:00:00.001' },
        at(12),
      ),
      rowOf(
        'fact_sales_order',
        2,
        {
          sales_staff_id: 2,
          design_id: 2,
          currency_id: 2,
          created_date: '2022-12-25',
          agreed_delivery_date: '2023-01-02',
          agreed_delivery_location_id: 2,
        },
        at(12, 1),
      ),
    ]),
    o('fact_payment', 'o14', [
      rowOf('fact_payment', 1, { paid: true, last_updated_date: '2022-11-08' }, at(13)),
    ]),
    o('stg_staff', 'o15', [
      rowOf('stg_staff', 2, { department_id: 2, first_name: 'O\'Brien "Bob", Jr.\n\\x' }, at(14)),
      rowOf('stg_staff', 3, { department_id: 2 }, at(14, 1)),
    ]),
    o('dim_design', 'o16', [
      deleteOf('dim_design', 2, at(15)),
      rowOf('dim_design', 1, { design_name: 'Granite' }, at(15, 1), { unchanged: ['file_name'] }),
    ]),
    o('fact_purchase_order', 'o17', [
      rowOf('fact_purchase_order', 1, { item_code: 'ITEM-ORIGINAL' }, at(16)),
    ]),
    o('fact_purchase_order', 'o18', [
      rowOf('fact_purchase_order', 1, { item_quantity: 999, staff_id: 3 }, at(17), {
        unchanged: ['item_code'],
      }),
    ]),
    o('stg_counterparty', 'o19', [
      rowOf('stg_counterparty', 1, { counterparty_legal_name: 'Leannon, Predovic & Morar' }, at(18)),
      rowOf(
        'stg_counterparty',
        2,
        { legal_address_id: 1, counterparty_legal_name: 'Kub, Bode and Kertzmann' },
        at(18, 1),
      ),
    ]),
    // A delete delivered before the insert it follows.
    o('stg_department', 'o20', [deleteOf('stg_department', 3, at(19))]),
    o('stg_department', 'o21', [rowOf('stg_department', 3, { department_name: 'Closed' }, at(9, 5))]),
    // Facts whose dimension rows never arrive: placeholders stay.
    o('fact_sales_order', 'o22', [
      rowOf(
        'fact_sales_order',
        3,
        { sales_staff_id: 9, counterparty_id: 9, design_id: 9, agreed_delivery_location_id: 9 },
        at(20),
      ),
    ]),
  ];
}

/**
 * Loads a snapshot of a totesys source into the warehouse the way the pipeline does, minus the
 * transport: every source row as a `snapshot` change (values as the text Postgres sends), mapped by
 * the transform's pure star mapping, checked and applied by the load. For verify's tests.
 */
export async function loadSourceSnapshot(
  sourceUrl: string,
  warehouse: ClientBase,
  position: At = at(1),
): Promise<void> {
  const source = rawTextClient(sourceUrl);
  await source.connect();
  try {
    for (const table of TOTESYS_TABLES) {
      const result = await source.query(`SELECT * FROM "${table}" ORDER BY 1`);
      const columns = result.fields.map((f) => ({ name: f.name }));
      const changes: Change[] = result.rows.map((row, i) => ({
        op: 'snapshot',
        lsn: lsnOf(position.n),
        seq: (position.seq ?? 0) + i,
        ts: commitTsOf(position.n),
        values: columns.map((c) => row[c.name] as string | null),
      }));
      const mapped = toWarehouseRows(table, columns, changes);
      if (mapped.rejected.length) throw new Error(`${table}: ${mapped.rejected[0].reason}`);
      const batch = prepareBatch({ table: mapped.table, rows: mapped.rows });
      await applyBatch(warehouse, batch, { objectKey: `snapshot/${position.n}/${table}` });
    }
  } finally {
    await source.end();
  }
}
