import { createHash } from 'node:crypto';
import type { Change, Column } from './change-event';
import { isLsn, normaliseLsn } from './lsn';
import { HEARTBEAT_SOURCE_TABLE } from './pipeline-heartbeat';
import type { TotesysTable } from './totesys-tables';
import {
  CURRENCY_NAMES,
  TARGET_OF_SOURCE,
  WAREHOUSE_TABLES,
  type WarehouseRow,
  type WarehouseTableName,
  type WarehouseType,
  type WarehouseValue,
} from './warehouse-model';

/**
 * Source changes → warehouse rows: the pure half of the transform stage (no I/O, no AWS SDK).
 * Column names and meanings follow ../shared/reference/totesys.md §2; the target tables and their
 * bookkeeping columns are core/warehouse-model.ts. Rows are in the canonical in-memory form the
 * Parquet codec writes (int → number, boolean → boolean, the rest exact text).
 *
 * Decisions, each because the warehouse must be able to hold every version and never guess:
 * - One row per change. `_op` says what it is: `upsert` (insert, update), `snapshot` (a row read by
 *   a snapshot: a state, which the load adds only when it differs from what it holds), `delete`
 *   (carries only the key: dimensions mark the row deleted, facts record the delete beside their
 *   history), `truncate` (no key: every row of the table older than it is deleted) and
 *   `snapshot_end` (no key: the table's snapshot is complete, `_rows` rows were sent; the load
 *   then marks deleted what the snapshot no longer holds).
 * - Every upsert and snapshot row carries `_row_hash`, a hash of the whole source row (also the
 *   columns the warehouse drops), so a re-read row can be recognised as unchanged.
 * - A value the warehouse cannot hold exactly (a date that is not a calendar date, `2.0` for an
 *   int, a sub-millisecond time, money with three decimals, NULL in a NOT NULL column) rejects that
 *   change with a reason, never the batch: the transform quarantines it and the rest flows.
 *   Reasons name the column and the rule, never the value, so they are safe to log.
 * - Schema evolution: source columns the warehouse does not use are ignored; a column the mapping
 *   needs missing from the layout throws MissingSourceColumnError (the whole batch is unusable).
 * - Unchanged TOASTed values (Change.unchanged) become NULL plus their warehouse column names in
 *   `_unchanged`, so the load keeps what it has instead of writing NULL over a real value.
 */

/** Base class of every error this module throws. */
export class StarMappingError extends Error {
  override name = 'StarMappingError';
}

/** A source table no warehouse table is built from (see TARGET_OF_SOURCE). */
export class UnknownSourceTableError extends StarMappingError {
  override name = 'UnknownSourceTableError';
  constructor(readonly sourceTable: string) {
    super(`no warehouse table is built from source table ${JSON.stringify(sourceTable)}`);
  }
}

/** The column layout lacks columns the mapping needs: no change of the batch can be mapped. */
export class MissingSourceColumnError extends StarMappingError {
  override name = 'MissingSourceColumnError';
  constructor(
    readonly sourceTable: string,
    readonly missing: readonly string[],
  ) {
    super(`layout of ${sourceTable} lacks column(s) the warehouse needs: ${missing.join(', ')}`);
  }
}

/** dimDateRow was given something that is not a calendar date in YYYY-MM-DD form. */
export class InvalidDateError extends StarMappingError {
  override name = 'InvalidDateError';
  constructor(readonly value: string) {
    super(`${JSON.stringify(value)} is not a calendar date in YYYY-MM-DD form`);
  }
}

export interface RejectedChange {
  change: Change;
  /** Names the column and the rule broken; never quotes the value (safe to log). */
  reason: string;
}

export interface StarMappingResult {
  table: WarehouseTableName;
  rows: WarehouseRow[];
  rejected: RejectedChange[];
}

type Converted = { ok: true; values: WarehouseValue[] } | { ok: false; reason: string };

/** One source column → one or more warehouse columns (a timestamp feeds a date and a time). */
interface FieldSpec {
  from: string;
  to: readonly string[];
  /** The warehouse type of each `to` column, checked against the model by the tests. */
  produces: readonly WarehouseType[];
  convert(text: string): Converted;
}

interface SourceSpec {
  target: WarehouseTableName;
  /** `fields[0]` is always the natural key. */
  fields: readonly FieldSpec[];
}

const ok = (...values: WarehouseValue[]): Converted => ({ ok: true, values });
const bad = (reason: string): Converted => ({ ok: false, reason });

const INT4_MIN = -2_147_483_648;
const INT4_MAX = 2_147_483_647;
// Postgres renders integers without sign, leading zeros, fraction or exponent; anything else
// (notably `2.0` from a float round trip, totesys.md §3) is a corrupted value, not an integer.
const INT_TEXT = /^-?(?:0|[1-9]\d*)$/;
// numeric(10,2): at most 8 integer and 2 fraction digits. Kept as text: floats would lose cents.
const NUMERIC_10_2_TEXT = /^-?\d{1,8}(?:\.\d{1,2})?$/;
const DATE_TEXT = /^(\d{4})-(\d{2})-(\d{2})$/;
// timestamp(3) as Postgres' ISO DateStyle renders it: trailing zeros of the fraction are dropped,
// so `.18` is 180 ms and a whole second has no fraction at all.
const TIMESTAMP_TEXT = /^(\d{4}-\d{2}-\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$/;

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** `[year, month, day]` of a real proleptic-Gregorian date `YYYY-MM-DD` (years 1–9999), else undefined. */
function parseCalendarDate(text: string): [number, number, number] | undefined {
  const m = DATE_TEXT.exec(text);
  if (!m) return undefined;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
  return [year, month, day];
}

const asInt = (text: string): Converted => {
  if (!INT_TEXT.test(text)) return bad('not an integer');
  const n = Number(text);
  return n < INT4_MIN || n > INT4_MAX ? bad('integer out of the int4 range') : ok(n);
};

const asText = (text: string): Converted => ok(text);

const asNumeric = (text: string): Converted =>
  NUMERIC_10_2_TEXT.test(text)
    ? ok(text)
    : bad('not a numeric(10,2) value (at most 8 integer and 2 fraction digits)');

const asBoolean = (text: string): Converted => {
  // pgoutput sends `t`/`f`; exports and REPLICA IDENTITY FULL tooling sometimes say true/false.
  if (text === 't' || text === 'true') return ok(true);
  if (text === 'f' || text === 'false') return ok(false);
  return bad('not a boolean (t/f)');
};

const asDate = (text: string): Converted =>
  parseCalendarDate(text) ? ok(text) : bad('not a calendar date in YYYY-MM-DD form');

const asDateAndTime = (text: string): Converted => {
  const m = TIMESTAMP_TEXT.exec(text);
  if (!m || !parseCalendarDate(m[1])) return bad('not a timestamp in YYYY-MM-DD HH:MM:SS[.fff] form');
  const [hh, mm, ss] = [Number(m[2]), Number(m[3]), Number(m[4])];
  if (hh > 23 || mm > 59 || ss > 59) return bad('not a valid time of day');
  const fraction = m[5] ?? '';
  // The warehouse keeps milliseconds; a finer source value would silently lose its tail.
  if (/[1-9]/.test(fraction.slice(3))) return bad('has sub-millisecond precision the warehouse cannot keep');
  return ok(m[1], `${m[2]}:${m[3]}:${m[4]}.${fraction.slice(0, 3).padEnd(3, '0')}`);
};

const asCurrency = (code: string): Converted =>
  // hasOwn, not `in`: a code such as `constructor` must not find Object.prototype's members.
  ok(code, Object.hasOwn(CURRENCY_NAMES, code) ? CURRENCY_NAMES[code] : code);

const int = (from: string, to = from): FieldSpec => ({ from, to: [to], produces: ['int'], convert: asInt });
const text = (from: string, type: 'text' | 'varchar' = 'text'): FieldSpec => ({
  from,
  to: [from],
  produces: [type],
  convert: asText,
});
const numeric = (from: string): FieldSpec => ({
  from,
  to: [from],
  produces: ['numeric(10,2)'],
  convert: asNumeric,
});
const boolean = (from: string): FieldSpec => ({
  from,
  to: [from],
  produces: ['boolean'],
  convert: asBoolean,
});
const date = (from: string): FieldSpec => ({ from, to: [from], produces: ['date'], convert: asDate });
/** `created_at` → `created_date`, `created_time`; `last_updated` → `last_updated_date`, `…_time`. */
const dateAndTime = (from: string, prefix: string): FieldSpec => ({
  from,
  to: [`${prefix}_date`, `${prefix}_time`],
  produces: ['date', 'time'],
  convert: asDateAndTime,
});

/** How each captured table becomes its warehouse table (totesys.md §2). */
export const SOURCE_SPECS: Readonly<Record<TotesysTable | typeof HEARTBEAT_SOURCE_TABLE, SourceSpec>> = {
  address: {
    target: 'dim_location',
    fields: [
      int('address_id', 'location_id'),
      text('address_line_1'),
      text('address_line_2'),
      text('district'),
      text('city'),
      text('postal_code'),
      text('country'),
      text('phone'),
    ],
  },
  currency: {
    target: 'dim_currency',
    fields: [
      int('currency_id'),
      {
        from: 'currency_code',
        to: ['currency_code', 'currency_name'],
        produces: ['varchar', 'varchar'],
        convert: asCurrency,
      },
    ],
  },
  design: {
    target: 'dim_design',
    fields: [int('design_id'), text('design_name'), text('file_location'), text('file_name')],
  },
  payment_type: {
    target: 'dim_payment_type',
    fields: [int('payment_type_id'), text('payment_type_name', 'varchar')],
  },
  transaction: {
    target: 'dim_transaction',
    fields: [
      int('transaction_id'),
      text('transaction_type', 'varchar'),
      int('sales_order_id'),
      int('purchase_order_id'),
    ],
  },
  department: {
    target: 'stg_department',
    fields: [int('department_id'), text('department_name'), text('location'), text('manager')],
  },
  staff: {
    target: 'stg_staff',
    fields: [
      int('staff_id'),
      text('first_name'),
      text('last_name'),
      int('department_id'),
      text('email_address'),
    ],
  },
  counterparty: {
    target: 'stg_counterparty',
    fields: [int('counterparty_id'), text('counterparty_legal_name'), int('legal_address_id')],
  },
  sales_order: {
    target: 'fact_sales_order',
    fields: [
      int('sales_order_id'),
      dateAndTime('created_at', 'created'),
      dateAndTime('last_updated', 'last_updated'),
      int('staff_id', 'sales_staff_id'),
      int('counterparty_id'),
      int('units_sold'),
      numeric('unit_price'),
      int('currency_id'),
      int('design_id'),
      date('agreed_payment_date'),
      date('agreed_delivery_date'),
      int('agreed_delivery_location_id'),
    ],
  },
  purchase_order: {
    target: 'fact_purchase_order',
    fields: [
      int('purchase_order_id'),
      dateAndTime('created_at', 'created'),
      dateAndTime('last_updated', 'last_updated'),
      int('staff_id'),
      int('counterparty_id'),
      text('item_code'),
      int('item_quantity'),
      numeric('item_unit_price'),
      int('currency_id'),
      date('agreed_delivery_date'),
      date('agreed_payment_date'),
      int('agreed_delivery_location_id'),
    ],
  },
  payment: {
    target: 'fact_payment',
    fields: [
      int('payment_id'),
      dateAndTime('created_at', 'created'),
      dateAndTime('last_updated', 'last_updated'),
      int('transaction_id'),
      int('counterparty_id'),
      numeric('payment_amount'),
      int('currency_id'),
      int('payment_type_id'),
      boolean('paid'),
      date('payment_date'),
    ],
  },
  // Capture's heartbeat (core/pipeline-heartbeat.ts): its commit time is the row's `_commit_ts`.
  [HEARTBEAT_SOURCE_TABLE]: {
    target: 'pipeline_heartbeat',
    fields: [int('slot_id'), text('slot_name'), text('emitted_at')],
  },
};

function specOf(sourceTable: string): SourceSpec {
  if (!Object.hasOwn(SOURCE_SPECS, sourceTable)) throw new UnknownSourceTableError(sourceTable);
  return SOURCE_SPECS[sourceTable as keyof typeof SOURCE_SPECS];
}

/** True when toWarehouseRows knows the table (the 11 totesys tables and the heartbeat). */
export function isMappedSourceTable(sourceTable: string): boolean {
  return Object.hasOwn(SOURCE_SPECS, sourceTable) && Object.hasOwn(TARGET_OF_SOURCE, sourceTable);
}

/** The warehouse table a source table feeds. Throws UnknownSourceTableError. */
export function targetTableOf(sourceTable: string): WarehouseTableName {
  return specOf(sourceTable).target;
}

/** Source columns the mapping reads; a layout without one of them cannot be mapped. */
export function requiredSourceColumns(sourceTable: string): string[] {
  return specOf(sourceTable).fields.map((f) => f.from);
}

type RowOutcome = { row: WarehouseRow } | { reason: string };

/** One field of the spec, resolved against a batch's layout once rather than per change. */
interface PlannedField {
  field: FieldSpec;
  /** Its index in the layout, i.e. in Change.values and Change.unchanged. */
  index: number;
  /** The first NOT NULL warehouse column it feeds, if any: a NULL source value is then rejected. */
  notNull: string | undefined;
}

interface BatchPlan {
  target: WarehouseTableName;
  /** The batch's source column layout (the whole source row, for its hash). */
  columns: readonly Pick<Column, 'name'>[];
  width: number;
  /** `fields[0]` is the key. */
  fields: readonly PlannedField[];
  /** The row every change starts from: every warehouse column NULL, in warehouse order. */
  empty: WarehouseRow;
  /** Commit LSNs repeat across a transaction's changes: normalise each once. */
  lsns: Map<string, string>;
}

function planBatch(
  sourceTable: string,
  spec: SourceSpec,
  columns: readonly Pick<Column, 'name'>[],
): BatchPlan {
  const indexOf = new Map(columns.map((c, i) => [c.name, i]));
  const missing = spec.fields.map((f) => f.from).filter((name) => !indexOf.has(name));
  if (missing.length) throw new MissingSourceColumnError(sourceTable, missing);
  const target = WAREHOUSE_TABLES[spec.target];
  const nullable = new Map(target.columns.map((c) => [c.name, c.nullable]));
  const empty: WarehouseRow = {};
  for (const c of target.columns) empty[c.name] = null;
  return {
    target: spec.target,
    columns,
    width: columns.length,
    fields: spec.fields.map((field) => ({
      field,
      index: indexOf.get(field.from)!,
      notNull: field.to.find((c) => !nullable.get(c)),
    })),
    empty,
    lsns: new Map(),
  };
}

function canonicalLsn(plan: BatchPlan, lsn: string): string | undefined {
  let canonical = plan.lsns.get(lsn);
  if (canonical === undefined && isLsn(lsn)) {
    canonical = normaliseLsn(lsn);
    plan.lsns.set(lsn, canonical);
  }
  return canonical;
}

/**
 * Hash of a whole source row: SHA-256 (first 16 bytes, hex) over its non-NULL columns as
 * name/value pairs sorted by name. Column order and columns that are NULL do not matter, so adding a
 * nullable column or reordering columns does not make every re-read row look changed. Undefined when
 * a value was not sent (an unchanged TOAST value): the row is then not known whole.
 */
export function sourceRowHash(columns: readonly Pick<Column, 'name'>[], change: Change): string | undefined {
  if (change.unchanged?.length) return undefined;
  const pairs: [string, string][] = [];
  columns.forEach((c, i) => {
    const value = change.values[i];
    if (value !== null && value !== undefined) pairs.push([c.name, value]);
  });
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return createHash('sha256').update(JSON.stringify(pairs)).digest('hex').slice(0, 32);
}

/** The bookkeeping every row carries, whatever its op. */
function bookkeeping(change: Change, lsn: string, op: string): WarehouseRow {
  return {
    _op: op,
    _epoch: change.epoch ?? 0,
    _lsn: lsn,
    _seq: change.seq,
    _commit_ts: change.ts,
    _unchanged: '',
    _row_hash: null,
    _rows: change.rows ?? null,
  };
}

/** A `truncate` or `snapshot_end`: a row of the table with no key and no values. */
function mapTableEvent(plan: BatchPlan, change: Change): RowOutcome {
  const lsn = canonicalLsn(plan, change.lsn);
  if (lsn === undefined) return { reason: 'lsn is not an LSN' };
  if (change.op === 'snapshot_end' && change.rows === undefined)
    return { reason: 'snapshot_end without a row count' };
  return { row: { ...plan.empty, ...bookkeeping(change, lsn, change.op) } };
}

function mapChange(plan: BatchPlan, change: Change): RowOutcome {
  if (change.op === 'truncate' || change.op === 'snapshot_end') return mapTableEvent(plan, change);
  if (change.values.length !== plan.width)
    return { reason: `has ${change.values.length} values, the layout has ${plan.width} columns` };
  const lsn = canonicalLsn(plan, change.lsn);
  if (lsn === undefined) return { reason: 'lsn is not an LSN' };
  const unchangedIndices = change.unchanged?.length ? new Set(change.unchanged) : undefined;
  const row: WarehouseRow = { ...plan.empty };
  const unchanged: string[] = [];
  // A delete carries only the key under the default replica identity: map just that.
  const count = change.op === 'delete' ? 1 : plan.fields.length;
  for (let i = 0; i < count; i++) {
    const { field, index, notNull } = plan.fields[i];
    if (unchangedIndices?.has(index)) {
      if (i === 0) return { reason: `${field.from}: the key cannot be an unchanged TOAST value` };
      unchanged.push(...field.to);
      continue;
    }
    const value = change.values[index];
    if (value === null) {
      if (notNull) return { reason: `${field.from}: NULL, but ${notNull} is NOT NULL in the warehouse` };
      continue;
    }
    const converted = field.convert(value);
    if (!converted.ok) return { reason: `${field.from}: ${converted.reason}` };
    for (let j = 0; j < field.to.length; j++) row[field.to[j]] = converted.values[j];
  }
  const op = change.op === 'delete' || change.op === 'snapshot' ? change.op : 'upsert';
  Object.assign(row, bookkeeping(change, lsn, op));
  row._unchanged = unchanged.join(',');
  if (op !== 'delete') row._row_hash = sourceRowHash(plan.columns, change) ?? null;
  return { row };
}

/**
 * Maps one batch of changes of `sourceTable` (laid out as `columns`) to rows of its warehouse table,
 * in input order. Per-change problems land in `rejected`; a layout that lacks a needed column throws
 * MissingSourceColumnError, an unknown table UnknownSourceTableError.
 */
export function toWarehouseRows(
  sourceTable: string,
  columns: readonly Pick<Column, 'name'>[],
  changes: readonly Change[],
): StarMappingResult {
  const spec = specOf(sourceTable);
  const plan = planBatch(sourceTable, spec, columns);
  const result: StarMappingResult = { table: spec.target, rows: [], rejected: [] };
  for (const change of changes) {
    const outcome = mapChange(plan, change);
    if ('reason' in outcome) result.rejected.push({ change, reason: outcome.reason });
    else result.rows.push(outcome.row);
  }
  return result;
}

/**
 * Every date the rows refer to through a dim_date foreign key (created, last updated, agreed and
 * payment dates), distinct and sorted: the load inserts these into dim_date before the rows.
 */
export function datesReferenced(table: WarehouseTableName, rows: readonly WarehouseRow[]): string[] {
  const dateColumns = WAREHOUSE_TABLES[table].columns
    .filter((c) => c.type === 'date' && c.references === 'dim_date')
    .map((c) => c.name);
  const dates = new Set<string>();
  for (const row of rows)
    for (const name of dateColumns) {
      const value = row[name];
      if (typeof value === 'string') dates.add(value);
    }
  return [...dates].sort();
}

const DAY_NAMES = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'];
const MONTH_NAMES = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
];

/** The dim_date row of a date `YYYY-MM-DD` (ISO day_of_week: 1 = Monday … 7 = Sunday). */
export function dimDateRow(dateText: string): WarehouseRow {
  const parts = parseCalendarDate(dateText);
  if (!parts) throw new InvalidDateError(dateText);
  const [year, month, day] = parts;
  // setUTCFullYear, not Date.UTC, which would read years 0–99 as 1900–1999.
  const at = new Date(0);
  at.setUTCFullYear(year, month - 1, day);
  const dayOfWeek = ((at.getUTCDay() + 6) % 7) + 1;
  return {
    date_id: dateText,
    year,
    month,
    day,
    day_of_week: dayOfWeek,
    day_name: DAY_NAMES[dayOfWeek - 1],
    month_name: MONTH_NAMES[month - 1],
    quarter: Math.floor((month - 1) / 3) + 1,
  };
}
