/**
 * The warehouse model: every table the load stage writes, its columns and types, and the source
 * table it comes from. This is the contract between transform (which writes one Parquet object per
 * target table per ingested CSV object) and load (which applies those objects to Postgres). Pure.
 *
 * Column names and meanings follow ../shared/reference/totesys.md §2 exactly. Beside them every
 * table carries bookkeeping columns (`_lsn`, `_seq`, `_commit_ts`, …, see SOURCE_POSITION_COLUMNS)
 * that make loads idempotent and order-proof.
 *
 * Kinds:
 * - `dimension`: one row per natural key, holding the latest values (the change with the highest
 *   source position wins; an older change never overwrites a newer one). Deletes mark the row
 *   deleted; nothing is erased.
 * - `staging`: like a dimension but not part of a star: the current state of a source table that a
 *   joined dimension needs (department for dim_staff; counterparty for dim_counterparty, whose
 *   address half comes from dim_location). The load recomputes the joined dimension rows whenever
 *   either side changes, whatever the arrival order.
 * - `fact`: every committed version of a source row is one row (insert or update), identified by
 *   (natural key, source position) and inserted at most once; a serial surrogate key numbers them.
 */

export const WAREHOUSE_TYPES = [
  'int',
  'text',
  'varchar',
  'numeric(10,2)',
  'date',
  'time',
  'boolean',
] as const;
export type WarehouseType = (typeof WAREHOUSE_TYPES)[number];

export interface WarehouseColumn {
  name: string;
  type: WarehouseType;
  nullable: boolean;
  /** For foreign keys: the dimension table this column references (dim_date for dates). */
  references?: WarehouseTableName;
}

export type WarehouseTableKind = 'dimension' | 'staging' | 'fact' | 'date';

/**
 * One warehouse row in canonical in-memory form (see processors/shared/parquet-codec.ts): int →
 * number, boolean → boolean, everything else text (date `YYYY-MM-DD`, time `HH:MM:SS.mmm`,
 * numeric(10,2) exactly as Postgres wrote it). Defined here so the pure mapping in core/ and the
 * Parquet codec in processors/ share one type without core importing from processors.
 */
export type WarehouseValue = string | number | boolean | null;
export type WarehouseRow = Record<string, WarehouseValue>;

export interface WarehouseTable {
  name: WarehouseTableName;
  kind: WarehouseTableKind;
  /** The totesys table its rows come from (none for dim_date, which is generated). */
  source: string | null;
  /** Dimension/staging: the primary key. Fact: the natural (source) key, not unique alone. */
  key: string;
  /** Fact only: the serial surrogate primary key. */
  surrogateKey?: string;
  columns: readonly WarehouseColumn[];
}

const col = (
  name: string,
  type: WarehouseType,
  nullable = false,
  references?: WarehouseTableName,
): WarehouseColumn => (references ? { name, type, nullable, references } : { name, type, nullable });

export const WAREHOUSE_TABLE_NAMES = [
  'dim_date',
  'dim_location',
  'dim_currency',
  'dim_design',
  'dim_payment_type',
  'dim_transaction',
  'dim_staff',
  'dim_counterparty',
  'stg_department',
  'stg_staff',
  'stg_counterparty',
  'fact_sales_order',
  'fact_purchase_order',
  'fact_payment',
  'pipeline_heartbeat',
] as const;
export type WarehouseTableName = (typeof WAREHOUSE_TABLE_NAMES)[number];

export const WAREHOUSE_TABLES: Readonly<Record<WarehouseTableName, WarehouseTable>> = {
  dim_date: {
    name: 'dim_date',
    kind: 'date',
    source: null,
    key: 'date_id',
    columns: [
      col('date_id', 'date'),
      col('year', 'int'),
      col('month', 'int'),
      col('day', 'int'),
      col('day_of_week', 'int'), // ISO: 1 = Monday … 7 = Sunday
      col('day_name', 'varchar'),
      col('month_name', 'varchar'),
      col('quarter', 'int'),
    ],
  },
  dim_location: {
    name: 'dim_location',
    kind: 'dimension',
    source: 'address',
    key: 'location_id', // ← address.address_id
    columns: [
      col('location_id', 'int'),
      col('address_line_1', 'text'),
      col('address_line_2', 'text', true),
      col('district', 'text', true),
      col('city', 'text'),
      col('postal_code', 'text'),
      col('country', 'text'),
      col('phone', 'text'),
    ],
  },
  dim_currency: {
    name: 'dim_currency',
    kind: 'dimension',
    source: 'currency',
    key: 'currency_id',
    columns: [col('currency_id', 'int'), col('currency_code', 'varchar'), col('currency_name', 'varchar')],
  },
  dim_design: {
    name: 'dim_design',
    kind: 'dimension',
    source: 'design',
    key: 'design_id',
    columns: [
      col('design_id', 'int'),
      col('design_name', 'text'),
      col('file_location', 'text'),
      col('file_name', 'text'),
    ],
  },
  dim_payment_type: {
    name: 'dim_payment_type',
    kind: 'dimension',
    source: 'payment_type',
    key: 'payment_type_id',
    columns: [col('payment_type_id', 'int'), col('payment_type_name', 'varchar')],
  },
  dim_transaction: {
    name: 'dim_transaction',
    kind: 'dimension',
    source: 'transaction',
    key: 'transaction_id',
    columns: [
      col('transaction_id', 'int'),
      col('transaction_type', 'varchar'),
      col('sales_order_id', 'int', true),
      col('purchase_order_id', 'int', true),
    ],
  },
  /** Derived in the warehouse: stg_staff ⋈ stg_department. */
  dim_staff: {
    name: 'dim_staff',
    kind: 'dimension',
    source: null,
    key: 'staff_id',
    columns: [
      col('staff_id', 'int'),
      col('first_name', 'text'),
      col('last_name', 'text'),
      col('department_name', 'text'),
      col('location', 'text', true),
      col('email_address', 'text'),
    ],
  },
  /** Derived in the warehouse: stg_counterparty ⋈ dim_location (the legal address). */
  dim_counterparty: {
    name: 'dim_counterparty',
    kind: 'dimension',
    source: null,
    key: 'counterparty_id',
    columns: [
      col('counterparty_id', 'int'),
      col('counterparty_legal_name', 'text'),
      col('counterparty_legal_address_line_1', 'text'),
      col('counterparty_legal_address_line_2', 'text', true),
      col('counterparty_legal_district', 'text', true),
      col('counterparty_legal_city', 'text'),
      col('counterparty_legal_postal_code', 'text'),
      col('counterparty_legal_country', 'text'),
      col('counterparty_legal_phone_number', 'text'),
    ],
  },
  stg_department: {
    name: 'stg_department',
    kind: 'staging',
    source: 'department',
    key: 'department_id',
    columns: [
      col('department_id', 'int'),
      col('department_name', 'text'),
      col('location', 'text', true),
      col('manager', 'text', true),
    ],
  },
  stg_staff: {
    name: 'stg_staff',
    kind: 'staging',
    source: 'staff',
    key: 'staff_id',
    columns: [
      col('staff_id', 'int'),
      col('first_name', 'text'),
      col('last_name', 'text'),
      col('department_id', 'int'),
      col('email_address', 'text'),
    ],
  },
  stg_counterparty: {
    name: 'stg_counterparty',
    kind: 'staging',
    source: 'counterparty',
    key: 'counterparty_id',
    columns: [
      col('counterparty_id', 'int'),
      col('counterparty_legal_name', 'text'),
      col('legal_address_id', 'int'),
    ],
  },
  fact_sales_order: {
    name: 'fact_sales_order',
    kind: 'fact',
    source: 'sales_order',
    key: 'sales_order_id',
    surrogateKey: 'sales_record_id',
    columns: [
      col('sales_order_id', 'int'),
      col('created_date', 'date', false, 'dim_date'),
      col('created_time', 'time'),
      col('last_updated_date', 'date', false, 'dim_date'),
      col('last_updated_time', 'time'),
      col('sales_staff_id', 'int', false, 'dim_staff'),
      col('counterparty_id', 'int', false, 'dim_counterparty'),
      col('units_sold', 'int'),
      col('unit_price', 'numeric(10,2)'),
      col('currency_id', 'int', false, 'dim_currency'),
      col('design_id', 'int', false, 'dim_design'),
      col('agreed_payment_date', 'date', false, 'dim_date'),
      col('agreed_delivery_date', 'date', false, 'dim_date'),
      col('agreed_delivery_location_id', 'int', false, 'dim_location'),
    ],
  },
  fact_purchase_order: {
    name: 'fact_purchase_order',
    kind: 'fact',
    source: 'purchase_order',
    key: 'purchase_order_id',
    surrogateKey: 'purchase_record_id',
    columns: [
      col('purchase_order_id', 'int'),
      col('created_date', 'date', false, 'dim_date'),
      col('created_time', 'time'),
      col('last_updated_date', 'date', false, 'dim_date'),
      col('last_updated_time', 'time'),
      col('staff_id', 'int', false, 'dim_staff'),
      col('counterparty_id', 'int', false, 'dim_counterparty'),
      col('item_code', 'text'),
      col('item_quantity', 'int'),
      col('item_unit_price', 'numeric(10,2)'),
      col('currency_id', 'int', false, 'dim_currency'),
      col('agreed_delivery_date', 'date', false, 'dim_date'),
      col('agreed_payment_date', 'date', false, 'dim_date'),
      col('agreed_delivery_location_id', 'int', false, 'dim_location'),
    ],
  },
  fact_payment: {
    name: 'fact_payment',
    kind: 'fact',
    source: 'payment',
    key: 'payment_id',
    surrogateKey: 'payment_record_id',
    columns: [
      col('payment_id', 'int'),
      col('created_date', 'date', false, 'dim_date'),
      col('created_time', 'time'),
      col('last_updated_date', 'date', false, 'dim_date'),
      col('last_updated_time', 'time'),
      col('transaction_id', 'int', false, 'dim_transaction'),
      col('counterparty_id', 'int', false, 'dim_counterparty'),
      col('payment_amount', 'numeric(10,2)'),
      col('currency_id', 'int', false, 'dim_currency'),
      col('payment_type_id', 'int', false, 'dim_payment_type'),
      col('paid', 'boolean'),
      col('payment_date', 'date', false, 'dim_date'),
    ],
  },
  // Not business data: capture's heartbeat, one row per slot holding the newest heartbeat loaded
  // (core/pipeline-heartbeat.ts). A dimension, so the load keeps the newest by source position.
  pipeline_heartbeat: {
    name: 'pipeline_heartbeat',
    kind: 'dimension',
    source: '_totes_heartbeat',
    key: 'slot_id',
    columns: [col('slot_id', 'int'), col('slot_name', 'text'), col('emitted_at', 'text', true)],
  },
};

/**
 * Bookkeeping columns every Parquet row carries:
 * - `_op`: `upsert` (insert/update), `snapshot` (a row a snapshot read), `delete`, `truncate` or
 *   `snapshot_end` (the last two name no key: they concern the whole table);
 * - `_epoch`, `_lsn`, `_seq`: the source position (capture generation, commit LSN in canonical
 *   text, ordinal), compared in that order: the change identity;
 * - `_commit_ts`: the source commit time, ISO 8601 UTC with microseconds (freshness metrics);
 * - `_unchanged`: names of columns whose value is an unchanged TOASTed value ("keep what you have"),
 *   joined by `,` (empty when none);
 * - `_row_hash`: hash of the whole source row (upserts and snapshot rows; null when not known whole);
 * - `_rows`: `snapshot_end` only, how many rows the table's snapshot sent.
 * Objects written before a column existed read it as null (`_epoch` null = 0).
 */
export const SOURCE_POSITION_COLUMNS = [
  '_op',
  '_epoch',
  '_lsn',
  '_seq',
  '_commit_ts',
  '_unchanged',
  '_row_hash',
  '_rows',
] as const;

/** What `_op` may say. */
export const ROW_OPS = ['upsert', 'snapshot', 'delete', 'truncate', 'snapshot_end'] as const;
export type RowOp = (typeof ROW_OPS)[number];

/** Which warehouse table each captured source table feeds (transform writes one object for each). */
export const TARGET_OF_SOURCE: Readonly<Record<string, WarehouseTableName>> = {
  address: 'dim_location',
  currency: 'dim_currency',
  design: 'dim_design',
  payment_type: 'dim_payment_type',
  transaction: 'dim_transaction',
  department: 'stg_department',
  staff: 'stg_staff',
  counterparty: 'stg_counterparty',
  sales_order: 'fact_sales_order',
  purchase_order: 'fact_purchase_order',
  payment: 'fact_payment',
  _totes_heartbeat: 'pipeline_heartbeat',
};

/** ISO 4217 English names (decided in totesys.md §2); an unknown code is its own name. */
export const CURRENCY_NAMES: Readonly<Record<string, string>> = {
  GBP: 'Pound Sterling',
  USD: 'US Dollar',
  EUR: 'Euro',
  JPY: 'Yen',
  CHF: 'Swiss Franc',
};
