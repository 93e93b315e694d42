import crypto from 'node:crypto';
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

/**
 * A converter writes the warehouse value(s) of one source text into `row` under `to`, and returns
 * undefined, or the reason the text is rejected (then `row` may hold some of its columns: the
 * change is rejected whole). Writing in place, not returning arrays, keeps the per-field path free
 * of allocations: bench:transform found the mapping at ~34 µs of CPU per change with them.
 */
type Convert = (text: string, row: WarehouseRow, to: readonly string[]) => string | undefined;

/** One source column → one or more warehouse columns (a timestamp feeds a date and a time). */
interface FieldSpec {
  from: string;
  to: readonly string[];
  /** The warehouse type of each `to` column, checked against the model by the tests. */
  produces: readonly WarehouseType[];
  convert: Convert;
}

interface SourceSpec {
  target: WarehouseTableName;
  /** `fields[0]` is always the natural key. */
  fields: readonly FieldSpec[];
}

const INT4_MIN = -2_147_483_648;
const INT4_MAX = 2_147_483_647;
// Integers (intTextValue): Postgres renders them without sign, leading zeros, fraction or exponent,
// /^-?(?:0|[1-9]\d*)$/; anything else (notably `2.0` from a float round trip, totesys.md §3) is a
// corrupted value, not an integer. numeric(10,2) (numericCents): at most 8 integer and 2 fraction
// digits, /^-?\d{1,8}(?:\.\d{1,2})?$/, kept as text: floats would lose cents.
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

/**
 * The value of an integer in its Postgres form (above), read by character codes (a regex test and a Number
 * call per field were most of the converters' time); NaN for any other text. Beyond 15 digits the
 * value is approximate, which only the range check reads (it is out of range either way).
 */
function intTextValue(text: string): number {
  const n = text.length;
  const negative = n > 0 && text.charCodeAt(0) === 0x2d;
  const start = negative ? 1 : 0;
  if (start === n) return NaN;
  // A leading zero only as the whole number (`0`, `-0`).
  if (text.charCodeAt(start) === 0x30 && n > start + 1) return NaN;
  let value = 0;
  for (let i = start; i < n; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return NaN;
    value = value * 10 + d;
  }
  return negative ? -value : value;
}

const asInt: Convert = (text, row, to) => {
  const n = intTextValue(text);
  if (Number.isNaN(n)) return 'not an integer';
  if (n < INT4_MIN || n > INT4_MAX) return 'integer out of the int4 range';
  row[to[0]] = n;
  return undefined;
};

/**
 * The unscaled value (cents) of numeric(10,2) text in its form above (at most 8 integer and 2
 * fraction digits, optional minus), read by character codes, exact; undefined for any other
 * text. `-0.00` is -0, as Number('-000') is. The Parquet writer stores money by it.
 */
export function numericCents(text: string): number | undefined {
  const n = text.length;
  const negative = n > 0 && text.charCodeAt(0) === 0x2d;
  let i = negative ? 1 : 0;
  let units = 0;
  const unitsStart = i;
  for (; i < n; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) break;
    units = units * 10 + d;
  }
  const unitDigits = i - unitsStart;
  if (unitDigits < 1 || unitDigits > 8) return undefined;
  let cents = units * 100;
  if (i < n) {
    if (text.charCodeAt(i) !== 0x2e || n - i - 1 < 1 || n - i - 1 > 2) return undefined;
    const tens = text.charCodeAt(i + 1) - 48;
    const ones = n - i - 1 === 2 ? text.charCodeAt(i + 2) - 48 : 0;
    if (tens < 0 || tens > 9 || ones < 0 || ones > 9) return undefined;
    cents += tens * 10 + ones;
  }
  return negative ? -cents : cents;
}

const asText: Convert = (text, row, to) => {
  row[to[0]] = text;
  return undefined;
};

const asNumeric: Convert = (text, row, to) => {
  if (numericCents(text) === undefined)
    return 'not a numeric(10,2) value (at most 8 integer and 2 fraction digits)';
  row[to[0]] = text;
  return undefined;
};

const asBoolean: Convert = (text, row, to) => {
  // pgoutput sends `t`/`f`; exports and REPLICA IDENTITY FULL tooling sometimes say true/false.
  if (text === 't' || text === 'true') row[to[0]] = true;
  else if (text === 'f' || text === 'false') row[to[0]] = false;
  else return 'not a boolean (t/f)';
  return undefined;
};

/** The value of the ASCII digits of `text` in [from, to), or -1 when one is not a digit. */
function digitsAt(text: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/**
 * True when `text` holds a real calendar date `YYYY-MM-DD` at `at`: what parseCalendarDate
 * accepts, read from the character codes (no regex match array, no Number calls).
 */
function isCalendarDateAt(text: string, at: number): boolean {
  if (text.charCodeAt(at + 4) !== 0x2d || text.charCodeAt(at + 7) !== 0x2d) return false;
  const year = digitsAt(text, at, at + 4);
  const month = digitsAt(text, at + 5, at + 7);
  const day = digitsAt(text, at + 8, at + 10);
  return year >= 1 && month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth(year, month);
}

const asDate: Convert = (text, row, to) => {
  if (text.length !== 10 || !isCalendarDateAt(text, 0)) return 'not a calendar date in YYYY-MM-DD form';
  row[to[0]] = text;
  return undefined;
};

/**
 * `YYYY-MM-DD HH:MM:SS[.f…]` read by position: the common, valid case. Undefined sends the text to
 * the regex path, which gives the reason it is rejected (or accepts the rarer forms, 4–6 digits).
 */
function fastDateAndTime(text: string, row: WarehouseRow, to: readonly string[]): boolean {
  const n = text.length;
  if (n !== 19 && (n < 21 || n > 23)) return false;
  if (text.charCodeAt(10) !== 0x20 || text.charCodeAt(13) !== 0x3a || text.charCodeAt(16) !== 0x3a)
    return false;
  if (n > 19 && text.charCodeAt(19) !== 0x2e) return false;
  const hh = digitsAt(text, 11, 13);
  const mm = digitsAt(text, 14, 16);
  const ss = digitsAt(text, 17, 19);
  if (hh < 0 || hh > 23 || mm < 0 || mm > 59 || ss < 0 || ss > 59) return false;
  if (n > 19 && digitsAt(text, 20, n) < 0) return false;
  if (!isCalendarDateAt(text, 0)) return false;
  row[to[0]] = text.slice(0, 10);
  row[to[1]] =
    n === 23 ? text.slice(11) : n === 19 ? `${text.slice(11)}.000` : text.slice(11).padEnd(12, '0');
  return true;
}

const asDateAndTime: Convert = (text, row, to) => {
  if (fastDateAndTime(text, row, to)) return undefined;
  const m = TIMESTAMP_TEXT.exec(text);
  if (!m || !parseCalendarDate(m[1])) return 'not a timestamp in YYYY-MM-DD HH:MM:SS[.fff] form';
  const [hh, mm, ss] = [Number(m[2]), Number(m[3]), Number(m[4])];
  if (hh > 23 || mm > 59 || ss > 59) return 'not a valid time of day';
  const fraction = m[5] ?? '';
  // The warehouse keeps milliseconds; a finer source value would silently lose its tail.
  if (/[1-9]/.test(fraction.slice(3))) return 'has sub-millisecond precision the warehouse cannot keep';
  row[to[0]] = m[1];
  row[to[1]] = `${m[2]}:${m[3]}:${m[4]}.${fraction.slice(0, 3).padEnd(3, '0')}`;
  return undefined;
};

const asCurrency: Convert = (code, row, to) => {
  row[to[0]] = code;
  // hasOwn, not `in`: a code such as `constructor` must not find Object.prototype's members.
  row[to[1]] = Object.hasOwn(CURRENCY_NAMES, code) ? CURRENCY_NAMES[code] : code;
  return undefined;
};

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
  /** The batch's source column layout, in the order sourceRowHash hashes it. */
  hashOrder: HashOrder;
  width: number;
  /** `fields[0]` is the key. */
  fields: readonly PlannedField[];
  /** The row every change starts from: every warehouse column NULL, in warehouse order. */
  empty: WarehouseRow;
  /** Commit LSNs repeat across a transaction's changes: normalise each once. */
  lsns: Map<string, string>;
  /** The last LSN looked up, and what it gave (undefined: not an LSN). */
  lastLsn: string | undefined;
  lastCanonical: string | undefined;
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
  // Every column the row will have, bookkeeping included, in order: a change's row is a copy that
  // only overwrites, so rows share one shape (adding the bookkeeping per row cost a third of the
  // mapping's CPU: bench:transform).
  const empty: WarehouseRow = {};
  for (const c of target.columns) empty[c.name] = null;
  setBookkeeping(empty, { epoch: 0, seq: 0, ts: '' }, '', '');
  return {
    target: spec.target,
    hashOrder: hashOrderOf(columns),
    width: columns.length,
    fields: spec.fields.map((field) => ({
      field,
      index: indexOf.get(field.from)!,
      notNull: field.to.find((c) => !nullable.get(c)),
    })),
    empty,
    lsns: new Map(),
    lastLsn: undefined,
    lastCanonical: undefined,
  };
}

function canonicalLsn(plan: BatchPlan, lsn: string): string | undefined {
  // A transaction's changes are consecutive and share their commit LSN.
  if (lsn === plan.lastLsn) return plan.lastCanonical;
  let canonical = plan.lsns.get(lsn);
  if (canonical === undefined && isLsn(lsn)) {
    canonical = normaliseLsn(lsn);
    plan.lsns.set(lsn, canonical);
  }
  plan.lastLsn = lsn;
  plan.lastCanonical = canonical;
  return canonical;
}

/**
 * The layout's columns sorted by name (a stable sort, as the hash's pairs were sorted), each with
 * the UTF-8 of the JSON text that opens its pair: the per-change hash then only copies bytes.
 */
type HashOrder = readonly { index: number; open: Uint8Array }[];

function hashOrderOf(columns: readonly Pick<Column, 'name'>[]): HashOrder {
  return columns
    .map((c, index) => ({ name: c.name, index, open: `[${JSON.stringify(c.name)},` }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map(({ index, open }) => ({ index, open: new TextEncoder().encode(open) }));
}

// crypto.hash (Node ≥ 20.12) is the one-shot form: no Hash object per row.
// https://nodejs.org/api/crypto.html#cryptohashalgorithm-data-outputencoding
const sha256Hex: (bytes: Uint8Array) => string =
  typeof crypto.hash === 'function'
    ? (bytes) => crypto.hash('sha256', bytes, 'hex')
    : (bytes) => crypto.createHash('sha256').update(bytes).digest('hex');

/** The row hash's text is written here, row after row (grown when a row needs more). */
let hashText = new Uint8Array(4096);
const utf8 = new TextEncoder();

/** `hashText` with room for `bytes` bytes, its first `keep` kept. */
function hashTextRoom(keep: number, bytes: number): Uint8Array {
  if (bytes <= hashText.length) return hashText;
  const grown = new Uint8Array(Math.max(bytes, hashText.length * 2));
  grown.set(hashText.subarray(0, keep));
  hashText = grown;
  return grown;
}

/**
 * Writes JSON.stringify(value)'s UTF-8 at `at` of hashText; returns where it ends. A value of
 * printable ASCII without a quote or a backslash (nearly all) is copied by character code; any
 * other (escapes, non-ASCII, lone surrogates, which JSON.stringify escapes) goes through
 * JSON.stringify and TextEncoder, so the bytes are those of the JSON text whatever the value.
 */
function writeJsonString(value: string, at: number): number {
  let out = hashTextRoom(at, at + value.length + 2);
  let i = at;
  out[i++] = 0x22;
  for (let k = 0; k < value.length; k++) {
    const c = value.charCodeAt(k);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) {
      const json = JSON.stringify(value);
      out = hashTextRoom(at, at + json.length * 3);
      return at + utf8.encodeInto(json, out.subarray(at)).written;
    }
    out[i++] = c;
  }
  out[i++] = 0x22;
  return i;
}

/**
 * The hash over a layout already in hash order: SHA-256 of the UTF-8 of the same text as
 * JSON.stringify of the sorted name/value pairs, `[["name","value"],…]`, written as bytes (one
 * buffer for every row) rather than built as a string: building the string by concatenation and
 * flattening it cost twice the hash itself (bench:transform, "Transform CPU, session 13").
 */
function rowHash(order: HashOrder, change: Change): string | undefined {
  if (change.unchanged?.length) return undefined;
  const values = change.values;
  let at = 1;
  hashText[0] = 0x5b;
  for (let i = 0; i < order.length; i++) {
    const { index, open } = order[i];
    const value = values[index];
    if (value === null || value === undefined) continue;
    const out = hashTextRoom(at, at + open.length + 1);
    if (at > 1) out[at++] = 0x2c;
    out.set(open, at);
    at = writeJsonString(value, at + open.length);
    hashTextRoom(at, at + 2)[at++] = 0x5d;
  }
  hashTextRoom(at, at + 1)[at++] = 0x5d;
  return sha256Hex(hashText.subarray(0, at)).slice(0, 32);
}

/**
 * Hash of a whole source row: SHA-256 (first 16 bytes, hex) over its non-NULL columns as
 * name/value pairs sorted by name (the JSON text of `[[name, value], …]`). Column order and columns
 * that are NULL do not matter, so adding a nullable column or reordering columns does not make every
 * re-read row look changed. Undefined when a value was not sent (an unchanged TOAST value): the row
 * is then not known whole.
 */
export function sourceRowHash(columns: readonly Pick<Column, 'name'>[], change: Change): string | undefined {
  return rowHash(hashOrderOf(columns), change);
}

/** Sets the bookkeeping every row carries, whatever its op, in the model's column order. */
function setBookkeeping(
  row: WarehouseRow,
  change: Pick<Change, 'epoch' | 'seq' | 'ts' | 'rows'>,
  lsn: string,
  op: string,
): WarehouseRow {
  row._op = op;
  row._epoch = change.epoch ?? 0;
  row._lsn = lsn;
  row._seq = change.seq;
  row._commit_ts = change.ts;
  row._unchanged = '';
  row._row_hash = null;
  row._rows = change.rows ?? null;
  return row;
}

/** A `truncate` or `snapshot_end`: a row of the table with no key and no values. */
function mapTableEvent(plan: BatchPlan, change: Change): RowOutcome {
  const lsn = canonicalLsn(plan, change.lsn);
  if (lsn === undefined) return { reason: 'lsn is not an LSN' };
  if (change.op === 'snapshot_end' && change.rows === undefined)
    return { reason: 'snapshot_end without a row count' };
  return { row: setBookkeeping({ ...plan.empty }, change, lsn, change.op) };
}

/** The warehouse row of a change, or the reason it is rejected. */
function mapChange(plan: BatchPlan, change: Change): WarehouseRow | string {
  if (change.op === 'truncate' || change.op === 'snapshot_end') {
    const outcome = mapTableEvent(plan, change);
    return 'reason' in outcome ? outcome.reason : outcome.row;
  }
  if (change.values.length !== plan.width)
    return `has ${change.values.length} values, the layout has ${plan.width} columns`;
  const lsn = canonicalLsn(plan, change.lsn);
  if (lsn === undefined) return 'lsn is not an LSN';
  const unchangedIndices = change.unchanged?.length ? new Set(change.unchanged) : undefined;
  const row: WarehouseRow = { ...plan.empty };
  let unchanged = '';
  // A delete carries only the key under the default replica identity: map just that.
  const count = change.op === 'delete' ? 1 : plan.fields.length;
  const values = change.values;
  for (let i = 0; i < count; i++) {
    const { field, index, notNull } = plan.fields[i];
    if (unchangedIndices?.has(index)) {
      if (i === 0) return `${field.from}: the key cannot be an unchanged TOAST value`;
      for (const to of field.to) unchanged = unchanged ? `${unchanged},${to}` : to;
      continue;
    }
    const value = values[index];
    if (value === null) {
      if (notNull) return `${field.from}: NULL, but ${notNull} is NOT NULL in the warehouse`;
      continue;
    }
    const reason = field.convert(value, row, field.to);
    if (reason !== undefined) return `${field.from}: ${reason}`;
  }
  const op = change.op === 'delete' || change.op === 'snapshot' ? change.op : 'upsert';
  setBookkeeping(row, change, lsn, op);
  row._unchanged = unchanged;
  if (op !== 'delete') row._row_hash = rowHash(plan.hashOrder, change) ?? null;
  return row;
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
    if (typeof outcome === 'string') result.rejected.push({ change, reason: outcome });
    else result.rows.push(outcome);
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
