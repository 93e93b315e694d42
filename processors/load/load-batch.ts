import { isLsn, normaliseLsn } from '../../core/lsn';
import { numericCents } from '../../core/star-mapping';
import {
  ROW_OPS,
  WAREHOUSE_TABLES,
  type RowOp,
  type WarehouseColumn,
  type WarehouseRow,
  type WarehouseTableKind,
  type WarehouseTableName,
} from '../../core/warehouse-model';
import {
  factVersionCopyFields,
  factVersionsInOrder,
  isTextType,
  type DeleteMark,
  type Position,
  type SnapshotId,
  type TableEvent,
  type VersionedRow,
} from '../../core/warehouse-sql';
import type { ParquetTable } from '../shared/parquet-codec';
import { copyChunks } from './copy-in';
import { copyTextField, copyTextLine } from './copy-text';

/**
 * One decoded Parquet object → what the load writes: checked row by row, then folded. Pure (no I/O).
 *
 * Checks (a failure makes the whole object malformed: it is quarantined, never half-loaded):
 * - `_op` is one of ROW_OPS; `_epoch` (null = 0) and `_seq` non-negative integers; `_lsn` an LSN;
 *   `_commit_ts` ISO 8601; `snapshot_end` carries `_rows`;
 * - the key is a 32-bit integer (`truncate` and `snapshot_end` concern the whole table: no key);
 *   every NOT NULL column of an upsert or snapshot row has a value unless unchanged;
 * - values are canonical for their type (the codec guarantees dates and times; money has at most
 *   two decimals and eight integer digits, ints fit int4, text has no NUL byte, which Postgres text
 *   cannot hold);
 * - `_unchanged` names only text columns of the table, never the key. Postgres moves a value out of
 *   line (TOAST) only when it is larger than a TOAST pointer, so an int, a date or a numeric(10,2)
 *   can never arrive "unchanged"; such a mark is a bug upstream, not something to guess around.
 *   https://www.postgresql.org/docs/current/storage-toast.html
 *
 * Folding (dimensions and staging tables): one upsert and one delete per key, as ON CONFLICT cannot
 * touch a row twice in one statement. The latest upsert wins; a column it carried as unchanged takes
 * the value of the nearest earlier upsert of the same object that had it. Facts are not folded:
 * every version is a row; only exact repeats (same key and position) are dropped. Snapshot rows are
 * upserts (facts: versions marked `snapshot`) and are also listed per snapshot, for reconciliation.
 */

/** Base class of every error this module throws. */
export class LoadBatchError extends Error {
  override name = 'LoadBatchError';
}

/** The object cannot be loaded as it is: quarantine it. `issues` never quote values (safe to log). */
export class MalformedObjectError extends LoadBatchError {
  override name = 'MalformedObjectError';
  constructor(
    readonly table: WarehouseTableName,
    readonly issues: readonly string[],
  ) {
    super(
      `${table} object is malformed: ${issues.slice(0, 3).join('; ')}${issues.length > 3 ? ` (+${issues.length - 3} more)` : ''}`,
    );
  }
}

export type { Position } from '../../core/warehouse-sql';

/** One snapshot's part of an object: the rows it read (ordinal and key) and its end marker. */
export interface SnapshotPart {
  id: SnapshotId;
  rows: { seq: number; key: number }[];
  end: { seq: number; rows: number; commitTs: string } | null;
}

export interface PreparedBatch {
  table: WarehouseTableName;
  kind: WarehouseTableKind;
  /** The totesys table the rows come from (null for dim_date). */
  sourceTable: string | null;
  /** Rows in the object. */
  rowCount: number;
  /** Dimension/staging: one per key, folded. Fact: every distinct version. */
  upserts: VersionedRow[];
  /** Dimension/staging: the newest delete per key. Fact: every distinct delete. */
  deletes: DeleteMark[];
  /** TRUNCATEs of the source table. */
  truncates: TableEvent[];
  /** Snapshot rows and end markers, per snapshot. */
  snapshots: SnapshotPart[];
  /** Keys of every row (upserts and deletes), distinct, ascending. */
  keys: number[];
  /** Fact: dates its rows reference (dim_date); dim_date object: its dates. Ascending. */
  dates: string[];
  /** Fact: dimension keys its rows reference, per dimension, distinct, ascending. */
  references: Partial<Record<WarehouseTableName, number[]>>;
  /** Highest position in the object (null for dim_date or an empty object). */
  maxPosition: Position | null;
  /** Lowest position in the object (null for dim_date or an empty object). */
  minPosition: Position | null;
  /** Newest `_commit_ts` in the object, as written there. */
  newestCommitTs: string | null;
  /**
   * Fact: `factCopyChunks` of this part, built while the part before it was applied
   * (create-handler.ts), so the COPY only sends them; absent = built when the COPY asks.
   */
  factCopy?: readonly Buffer[];
}

/**
 * A fact part's versions as COPY text (`factCopy` / `factStageCopy`), in the order every fact
 * statement takes them (key, then position), in chunks of about COPY_CHUNK_BYTES.
 */
export function* factCopyChunks(batch: PreparedBatch): Generator<Buffer> {
  yield* copyChunks(factCopyLines(batch.table, factVersionsInOrder(batch.table, batch.upserts)));
}

/**
 * `copyTextLine(factVersionCopyFields(table, row))` for each version, written field by field: no
 * array of fields per row, and a number needs no escaping. A version with unchanged columns (its
 * fields placeholders and a text[] literal) takes the general path. bench:load: the COPY text was
 * ~3 µs/row of the load process, its arrays of fields part of the garbage.
 */
function* factCopyLines(name: WarehouseTableName, versions: Iterable<VersionedRow>): Generator<string> {
  const table = WAREHOUSE_TABLES[name];
  const columns = table.columns.map((c) => c.name);
  // A date, time or amount was checked canonical (checkRow: digits, '-', ':' and '.'): nothing in it
  // to escape, so it is written without copyTextField's search for characters to escape.
  const canonical = table.columns.map(
    (c) => c.type === 'date' || c.type === 'time' || c.type === 'numeric(10,2)',
  );
  for (const row of versions) {
    if (row.unchanged.length) {
      yield copyTextLine(factVersionCopyFields(table, row));
      continue;
    }
    const values = row.values;
    let line = '';
    for (let i = 0; i < columns.length; i += 1) {
      const value = values[columns[i]];
      line +=
        typeof value === 'number' || (canonical[i] && typeof value === 'string')
          ? `${value}\t`
          : `${copyTextField(value)}\t`;
    }
    // _epoch, _lsn (normalised hex), _seq, _commit_ts (checked: ISO 8601), _unchanged (none),
    // _row_hash, _snapshot: the first four have nothing to escape.
    line += `${row.epoch}\t${row.lsn}\t${row.seq}\t${row.commitTs}\t{}\t${copyTextField(row.rowHash)}\t${row.snapshot ? 't' : 'f'}\n`;
    yield line;
  }
}

/** Issues collected per object before giving up: enough to diagnose, bounded for logs. */
const MAX_ISSUES = 20;

const INT4_MIN = -2_147_483_648;
const INT4_MAX = 2_147_483_647;
const DATE = /^\d{4}-\d{2}-\d{2}$/;

/*
 * The checks every row of a fact meets (a time or two, an amount, its LSN), written out a character
 * at a time: the regular expressions they replace (kept in load-batch.test.ts, which compares the
 * two) were ~9% of the load process on 200k payments (bench/README.md, sessions 11 and 12).
 */
const ZERO = 48;
const NINE = 57;

/** The decimal digit at `at`, or -1. */
function digitAt(text: string, at: number): number {
  const c = text.charCodeAt(at);
  return c >= ZERO && c <= NINE ? c - ZERO : -1;
}

/** Two decimal digits at `at` as a number up to `max`, or -1. */
function twoDigitsAt(text: string, at: number, max: number): number {
  const tens = digitAt(text, at);
  const ones = digitAt(text, at + 1);
  const value = tens * 10 + ones;
  return tens < 0 || ones < 0 || value > max ? -1 : value;
}

/** `HH:MM:SS.mmm`, a time of day (what the codec writes): /^([01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}$/. */
function isTime3(text: string): boolean {
  return (
    text.length === 12 &&
    text.charCodeAt(2) === 58 && // :
    text.charCodeAt(5) === 58 &&
    text.charCodeAt(8) === 46 && // .
    twoDigitsAt(text, 0, 23) >= 0 &&
    twoDigitsAt(text, 3, 59) >= 0 &&
    twoDigitsAt(text, 6, 59) >= 0 &&
    digitAt(text, 9) >= 0 &&
    digitAt(text, 10) >= 0 &&
    digitAt(text, 11) >= 0
  );
}

/** An upper-case hex digit: 0-9, A-F. */
function isUpperHex(c: number): boolean {
  return (c >= ZERO && c <= NINE) || (c >= 65 && c <= 70);
}

/** Canonical LSN text (what the transform writes): /^[0-9A-F]{8}\/[0-9A-F]{8}$/, valid and normalised. */
function isCanonicalLsn(text: string): boolean {
  if (text.length !== 17 || text.charCodeAt(8) !== 47) return false; // /
  for (let at = 0; at < 17; at += 1) if (at !== 8 && !isUpperHex(text.charCodeAt(at))) return false;
  return true;
}
/** RFC 3339 / ISO 8601 with a zone; up to microseconds (what capture writes). */
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}(:?\d{2})?)$/;

function valueIssue(c: WarehouseColumn, value: unknown): string | null {
  switch (c.type) {
    case 'int':
      return typeof value === 'number' && Number.isInteger(value) && value >= INT4_MIN && value <= INT4_MAX
        ? null
        : 'not a 32-bit integer';
    case 'boolean':
      return typeof value === 'boolean' ? null : 'not a boolean';
    case 'numeric(10,2)':
      return typeof value === 'string' && numericCents(value) !== undefined
        ? null
        : 'not a numeric(10,2) (at most 8 integer digits and 2 decimals)';
    case 'date':
      return typeof value === 'string' && isDateText(value) ? null : 'not a YYYY-MM-DD calendar date';
    case 'time':
      return typeof value === 'string' && isTime3(value) ? null : 'not an HH:MM:SS.mmm time';
    case 'text':
    case 'varchar':
      return typeof value !== 'string'
        ? 'not text'
        : value.includes('\u0000')
          ? 'text with a NUL byte'
          : null;
  }
}

/**
 * Dates seen valid: an object's rows share a few thousand dates at most, and checking one builds a
 * Date (bench:load: 6% of the load process). Bounded, so a stream of distinct dates cannot grow it.
 */
const validDates = new Set<string>();
function isDateText(text: string): boolean {
  if (validDates.has(text)) return true;
  if (!DATE.test(text) || !isCalendarDate(text)) return false;
  if (validDates.size < 100_000) validDates.add(text);
  return true;
}

/** The last commit time found valid: the rows of one transaction share it. */
let lastValidCommitTs = '';
function isCommitTs(value: unknown): value is string {
  if (value === lastValidCommitTs) return true;
  if (typeof value !== 'string' || !TIMESTAMP.test(value) || Number.isNaN(Date.parse(value))) return false;
  lastValidCommitTs = value;
  return true;
}

function isCalendarDate(text: string): boolean {
  const [y, m, d] = text.split('-').map(Number);
  const at = new Date(0);
  at.setUTCFullYear(y, m - 1, d);
  return at.getUTCFullYear() === y && at.getUTCMonth() === m - 1 && at.getUTCDate() === d;
}

/**
 * comparePosition for positions of checked rows, whose LSNs are canonical (fixed-width upper-case
 * hex, checkRow normalises them): those compare as text, without parsing (bench:load profiled
 * comparePosition at 4% of the load process, most of it splitting and parsing LSNs).
 */
function compareChecked(a: Position, b: Position): number {
  return a.epoch - b.epoch || (a.lsn === b.lsn ? a.seq - b.seq : a.lsn < b.lsn ? -1 : 1);
}

/** No column unchanged: one shared list (never mutated), not an empty array per row. */
const NONE_UNCHANGED: readonly string[] = Object.freeze([]);

function newestTimestamp(a: string | null, b: string): string {
  return a === null || Date.parse(b) > Date.parse(a) ? b : a;
}

interface CheckedRow {
  op: RowOp;
  row: VersionedRow;
  /** NaN for the whole-table ops (`truncate`, `snapshot_end`). */
  key: number;
  /** `snapshot_end`: the rows the table's snapshot sent. */
  rows: number | null;
}

const isTableOp = (op: unknown) => op === 'truncate' || op === 'snapshot_end';
const carriesValues = (op: unknown) => op === 'upsert' || op === 'snapshot';
const isCount = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function checkRow(
  table: WarehouseTableName,
  row: WarehouseRow,
  index: number,
  issues: string[],
  build = true,
): CheckedRow | null {
  const spec = WAREHOUSE_TABLES[table];
  const start = issues.length;
  const op = row._op;
  if (!(ROW_OPS as readonly unknown[]).includes(op))
    issues.push(`row ${index}: _op is not one of ${ROW_OPS.join(', ')}`);
  const epoch = row._epoch ?? 0;
  if (!isCount(epoch)) issues.push(`row ${index}: _epoch is not a non-negative integer`);
  if (op === 'snapshot_end' && !isCount(row._rows)) issues.push(`row ${index}: snapshot_end without _rows`);
  const lsn = row._lsn;
  const canonicalLsn = typeof lsn === 'string' && isCanonicalLsn(lsn);
  if (!canonicalLsn && (typeof lsn !== 'string' || !isLsn(lsn)))
    issues.push(`row ${index}: _lsn is not an LSN`);
  const seq = row._seq;
  if (!isCount(seq)) issues.push(`row ${index}: _seq is not a non-negative integer`);
  const commitTs = row._commit_ts;
  if (!isCommitTs(commitTs)) issues.push(`row ${index}: _commit_ts is not an ISO 8601 timestamp`);
  const unchangedText = row._unchanged ?? '';
  const unchanged =
    typeof unchangedText === 'string' && unchangedText !== '' ? unchangedText.split(',') : NONE_UNCHANGED;
  if (typeof unchangedText !== 'string') issues.push(`row ${index}: _unchanged is not text`);
  for (const name of unchanged) {
    const c = spec.columns.find((col) => col.name === name);
    if (!c) issues.push(`row ${index}: _unchanged names ${JSON.stringify(name)}, not a column of ${table}`);
    else if (name === spec.key) issues.push(`row ${index}: _unchanged names the key ${name}`);
    else if (!isTextType(c.type))
      issues.push(`row ${index}: _unchanged names ${name}, a ${c.type} column (never TOASTed)`);
  }
  const rowHash = row._row_hash ?? null;
  if (rowHash !== null && typeof rowHash !== 'string') issues.push(`row ${index}: _row_hash is not text`);
  let complete = true;
  for (const c of spec.columns) {
    const value = row[c.name];
    if (value === undefined) complete = false;
    const isKey = c.name === spec.key;
    // A whole-table op names no row: whatever its columns hold is not used.
    if (isTableOp(op)) continue;
    if (value === null || value === undefined) {
      if (isKey) issues.push(`row ${index}: key ${c.name} is NULL`);
      else if (carriesValues(op) && !c.nullable && !unchanged.includes(c.name))
        issues.push(`row ${index}: ${c.name} is NULL but NOT NULL in the warehouse`);
      continue;
    }
    // A delete carries the key; anything else it carries (REPLICA IDENTITY FULL) is not used.
    if (op === 'delete' && !isKey) continue;
    const problem = valueIssue(c, value);
    if (problem) issues.push(`row ${index}: ${c.name} is ${problem}`);
  }
  if (issues.length > start || !build) return null;
  // The decoded row itself, when it has every column (the decoder gives NULLs as null): its
  // bookkeeping columns ride along unread, and no copy per row is made (bench:load: the garbage
  // collector was a third of the load process). Never mutated (foldUpserts copies).
  let values = row;
  if (!complete) {
    values = {};
    for (const c of spec.columns) values[c.name] = row[c.name] ?? null;
  }
  return {
    op: op as RowOp,
    key: isTableOp(op) ? NaN : (row[spec.key] as number),
    rows: op === 'snapshot_end' ? (row._rows as number) : null,
    row: {
      values,
      epoch: epoch as number,
      lsn: canonicalLsn ? (lsn as string) : normaliseLsn(lsn as string),
      seq: seq as number,
      commitTs: commitTs as string,
      unchanged,
      rowHash: rowHash as string | null,
      snapshot: op === 'snapshot',
    },
  };
}

/** Groups snapshot rows and end markers by snapshot (source table, epoch, lsn). */
function snapshotParts(sourceTable: string, checked: readonly CheckedRow[]): SnapshotPart[] {
  const parts = new Map<string, SnapshotPart>();
  const partOf = (row: VersionedRow) => {
    const name = `${row.epoch}@${row.lsn}`;
    let part = parts.get(name);
    if (!part) {
      part = { id: { sourceTable, epoch: row.epoch, lsn: row.lsn }, rows: [], end: null };
      parts.set(name, part);
    }
    return part;
  };
  for (const c of checked) {
    if (c.op === 'snapshot') partOf(c.row).rows.push({ seq: c.row.seq, key: c.key });
    else if (c.op === 'snapshot_end')
      partOf(c.row).end = { seq: c.row.seq, rows: c.rows!, commitTs: c.row.commitTs };
  }
  return [...parts.values()];
}

/** The latest upsert of one key, its unchanged columns filled from earlier upserts where possible. */
function foldUpserts(versions: VersionedRow[]): VersionedRow {
  const sorted = [...versions].sort(compareChecked);
  const latest = sorted[sorted.length - 1];
  if (latest.unchanged.length === 0) return latest;
  const values = { ...latest.values };
  const stillUnchanged = latest.unchanged.filter((name) => {
    for (let i = sorted.length - 2; i >= 0; i -= 1) {
      if (!sorted[i].unchanged.includes(name)) {
        values[name] = sorted[i].values[name];
        return false;
      }
    }
    return true;
  });
  return { ...latest, values, unchanged: stillUnchanged };
}

const ascending = (a: number, b: number) => a - b;

/**
 * Integers, each once, read ascending. While they arrive rising (the keys and references of new
 * source rows mostly do) they are a list, read as it is; the first out of order turns it into a
 * Set, sorted when read. bench:load, 200k payments: the Sets of each part's keys and of every
 * version's references, and sorting them, were ~1 µs/row of the load process.
 */
class DistinctKeys {
  private rising: number[] = [];
  private set: Set<number> | null = null;

  get size(): number {
    return this.set ? this.set.size : this.rising.length;
  }

  add(key: number): void {
    if (this.set) this.set.add(key);
    else {
      const last = this.rising.length ? this.rising[this.rising.length - 1] : -Infinity;
      if (key > last) this.rising.push(key);
      else if (key !== last) this.set = new Set(this.rising).add(key);
    }
  }

  clear(): void {
    this.rising = [];
    this.set = null;
  }

  /** Ascending, a new array. */
  sorted(): number[] {
    return this.set ? [...this.set].sort(ascending) : this.rising.slice();
  }
}

function prepareDates(parquet: ParquetTable, firstRow: number): PreparedBatch {
  const issues: string[] = [];
  const dates = new Set<string>();
  parquet.rows.forEach((row, i) => {
    const value = row.date_id;
    if (typeof value !== 'string' || !isDateText(value))
      issues.push(`row ${firstRow + i}: date_id is not a YYYY-MM-DD calendar date`);
    else dates.add(value);
  });
  if (issues.length) throw new MalformedObjectError('dim_date', issues.slice(0, MAX_ISSUES));
  return {
    table: 'dim_date',
    kind: 'date',
    sourceTable: null,
    rowCount: parquet.rows.length,
    upserts: [],
    deletes: [],
    truncates: [],
    snapshots: [],
    keys: [],
    dates: [...dates].sort(),
    references: {},
    maxPosition: null,
    minPosition: null,
    newestCommitTs: null,
  };
}

/**
 * Checks and folds one decoded object, or one part of it: `firstRow` is the index of its first row
 * in the object (issues name rows by their index in the object). Throws MalformedObjectError.
 */
export function prepareBatch(parquet: ParquetTable, options: { firstRow?: number } = {}): PreparedBatch {
  const builder = new BatchBuilder(parquet.table, options.firstRow ?? 0);
  builder.add(parquet.rows);
  return builder.finish();
}

/**
 * prepareBatch in steps: rows checked as they are added (a row group at a time, say), folded by
 * `finish`. Lets the load decode and check the next part in slices while the warehouse applies
 * the current one (create-handler.ts). Throws MalformedObjectError from `add` or `finish`.
 */
export class BatchBuilder {
  private readonly checked: CheckedRow[] = [];
  /** Fact tables: folded as rows are added, so `finish` is short (the event loop turns between `add`s). */
  private readonly fact: FactFold | null;
  /** dim_date objects are checked whole by prepareDates (a few thousand rows at most). */
  private readonly dateRows: WarehouseRow[] = [];
  /** Collected over every slice, up to MAX_ISSUES: the first ones of the part, as a whole check gives. */
  private readonly issues: string[] = [];
  private rowCount = 0;

  constructor(
    readonly table: WarehouseTableName,
    private readonly firstRow = 0,
  ) {
    const spec = WAREHOUSE_TABLES[table];
    if (spec.kind !== 'date' && spec.source === null)
      throw new MalformedObjectError(table, [
        `${table} is computed in the warehouse, never loaded from objects`,
      ]);
    this.fact = spec.kind === 'fact' ? new FactFold(table) : null;
  }

  add(rows: readonly WarehouseRow[]): void {
    if (WAREHOUSE_TABLES[this.table].kind === 'date') for (const row of rows) this.dateRows.push(row);
    else
      for (let i = 0; i < rows.length && this.issues.length < MAX_ISSUES; i += 1) {
        // Once an issue is found, rows are only checked: the part will not be folded.
        const ok = checkRow(
          this.table,
          rows[i],
          this.firstRow + this.rowCount + i,
          this.issues,
          !this.issues.length,
        );
        if (ok && !this.issues.length) {
          if (this.fact) this.fact.add(ok);
          else this.checked.push(ok);
        }
      }
    this.rowCount += rows.length;
  }

  finish(): PreparedBatch {
    if (WAREHOUSE_TABLES[this.table].kind === 'date')
      return prepareDates({ table: this.table, rows: this.dateRows }, this.firstRow);
    if (this.issues.length) throw new MalformedObjectError(this.table, this.issues.slice(0, MAX_ISSUES));
    return this.fact ? this.fact.finish(this.rowCount) : foldChecked(this.table, this.checked, this.rowCount);
  }
}

/**
 * What every part carries whatever its table, gathered a row at a time: its lowest and highest
 * position, newest commit time, keys, TRUNCATEs and snapshot rows (foldChecked and FactFold).
 */
class PartCommon {
  private maxPosition: Position | null = null;
  private minPosition: Position | null = null;
  private newestCommitTs: string | null = null;
  private readonly keys = new DistinctKeys();
  private readonly truncates = new Map<string, TableEvent>();
  /** Snapshot rows and end markers, in order (snapshotParts). */
  private readonly snapshotRows: CheckedRow[] = [];

  add(c: CheckedRow): void {
    const row = c.row;
    // The rows themselves (their positions copied in finish): rising positions made a new object per row.
    if (!this.maxPosition || compareChecked(row, this.maxPosition) > 0) this.maxPosition = row;
    if (!this.minPosition || compareChecked(row, this.minPosition) < 0) this.minPosition = row;
    if (row.commitTs !== this.newestCommitTs)
      this.newestCommitTs = newestTimestamp(this.newestCommitTs, row.commitTs);
    if (c.op === 'snapshot' || c.op === 'snapshot_end') this.snapshotRows.push(c);
    if (c.op === 'truncate')
      this.truncates.set(`${row.epoch}@${row.lsn}#${row.seq}`, {
        epoch: row.epoch,
        lsn: row.lsn,
        seq: row.seq,
        commitTs: row.commitTs,
      });
    if (!isTableOp(c.op)) this.keys.add(c.key);
  }

  finish(table: WarehouseTableName, rowCount: number) {
    const spec = WAREHOUSE_TABLES[table];
    return {
      table,
      kind: spec.kind,
      sourceTable: spec.source,
      rowCount,
      keys: this.keys.sorted(),
      truncates: [...this.truncates.values()],
      snapshots: snapshotParts(spec.source!, this.snapshotRows),
      maxPosition: positionOf(this.maxPosition),
      minPosition: positionOf(this.minPosition),
      newestCommitTs: this.newestCommitTs,
    };
  }
}

const positionOf = (p: Position | null): Position | null => p && { epoch: p.epoch, lsn: p.lsn, seq: p.seq };

/** The dates and dimension keys fact versions refer to, each once; ascending when read. */
class Referenced {
  private readonly dates = new Set<string>();
  private readonly keys: Partial<Record<WarehouseTableName, DistinctKeys>> = {};

  /** A non-null value of a column that `references` a table. */
  add(c: WarehouseColumn, value: unknown): void {
    if (c.references === 'dim_date') this.addDate(value as string);
    else (this.keys[c.references!] ??= new DistinctKeys()).add(value as number);
  }

  addDate(date: string): void {
    this.dates.add(date);
  }

  clear(): void {
    this.dates.clear();
    for (const keys of Object.values(this.keys)) keys.clear();
  }

  sorted(): Pick<PreparedBatch, 'dates' | 'references'> {
    return {
      dates: [...this.dates].sort(),
      references: Object.fromEntries(
        Object.entries(this.keys)
          .filter(([, keys]) => keys.size > 0)
          .map(([t, keys]) => [t, keys.sorted()]),
      ),
    };
  }
}

/**
 * foldChecked for a fact, a row at a time: the same batch, its work spread over the slices a part
 * is added in rather than done in one piece when the part is finished (while the warehouse waits
 * for its next statement: bench:load).
 */
class FactFold {
  private readonly common = new PartCommon();
  /** Every distinct version, in the order first seen (a repeat takes its place). */
  private readonly versions: VersionedRow[] = [];
  /** Per key, where its versions are in `versions` (one index, or several). */
  private readonly versionsOfKey = new Map<number, number | number[]>();
  private readonly deletes = new Map<string, DeleteMark>();
  private readonly referenced = new Referenced();
  /** A version replaced by a repeat of it: dates and references are gathered again from the versions kept. */
  private replaced = false;
  private readonly referring: readonly WarehouseColumn[];

  constructor(private readonly table: WarehouseTableName) {
    this.referring = WAREHOUSE_TABLES[table].columns.filter((c) => c.references);
  }

  add(c: CheckedRow): void {
    this.common.add(c);
    if (isTableOp(c.op)) return;
    const row = c.row;
    // The same change is the same (key, lsn, seq), whatever epoch it was redelivered under.
    if (c.op === 'delete') {
      this.deletes.set(`${c.key}@${row.lsn}#${row.seq}`, {
        key: c.key,
        epoch: row.epoch,
        lsn: row.lsn,
        seq: row.seq,
        commitTs: row.commitTs,
      });
      return;
    }
    const known = this.versionsOfKey.get(c.key);
    const at = known === undefined ? -1 : this.versionAt(known, row);
    if (at >= 0) {
      this.replaced = true;
      this.versions[at] = row;
    } else {
      const index = this.versions.push(row) - 1;
      if (known === undefined) this.versionsOfKey.set(c.key, index);
      else if (typeof known === 'number') this.versionsOfKey.set(c.key, [known, index]);
      else known.push(index);
    }
    if (!this.replaced) this.refer(row);
  }

  /**
   * Which of a key's versions (`known`) is the same change (same lsn and seq), or -1: looked up
   * by key, not by a text of key, lsn and seq made and hashed for every version (bench:load).
   */
  private versionAt(known: number | number[], row: VersionedRow): number {
    for (const at of typeof known === 'number' ? [known] : known) {
      const v = this.versions[at];
      if (v.lsn === row.lsn && v.seq === row.seq) return at;
    }
    return -1;
  }

  private refer(row: VersionedRow): void {
    for (const c of this.referring) {
      const value = row.values[c.name];
      if (value !== null) this.referenced.add(c, value);
    }
  }

  finish(rowCount: number): PreparedBatch {
    const upserts = this.versions;
    if (this.replaced) {
      this.referenced.clear();
      for (const row of upserts) this.refer(row);
    }
    return {
      ...this.common.finish(this.table, rowCount),
      upserts,
      deletes: [...this.deletes.values()],
      ...this.referenced.sorted(),
    };
  }
}

/** Folds the checked rows of a dimension or staging table (facts: FactFold). */
function foldChecked(
  table: WarehouseTableName,
  checked: readonly CheckedRow[],
  rowCount: number,
): PreparedBatch {
  const common = new PartCommon();
  for (const c of checked) common.add(c);
  const base = common.finish(table, rowCount);
  const rowsOfKeys = checked.filter((c) => !isTableOp(c.op));

  const upsertsByKey = new Map<number, VersionedRow[]>();
  const deletesByKey = new Map<number, DeleteMark>();
  for (const c of rowsOfKeys) {
    if (c.op !== 'delete') {
      const list = upsertsByKey.get(c.key) ?? [];
      list.push(c.row);
      upsertsByKey.set(c.key, list);
    } else {
      const mark = { key: c.key, epoch: c.row.epoch, lsn: c.row.lsn, seq: c.row.seq };
      const current = deletesByKey.get(c.key);
      if (!current || compareChecked(mark, current) > 0) deletesByKey.set(c.key, mark);
    }
  }
  return {
    ...base,
    upserts: [...upsertsByKey.values()].map(foldUpserts),
    deletes: [...deletesByKey.values()],
    dates: [],
    references: {},
  };
}

/**
 * What an object loaded in parts locks outside the fact it loads, gathered over the whole object
 * before its first part (create-handler.ts `objectClaims`) and taken before it, in key order
 * (apply-batch.ts `applyObject`). Why: every load takes its row locks in one global order — dim_date,
 * then each dimension (placeholders or upserts) by key, then the fact's advisory lock — so two loads
 * cannot wait on each other in a cycle. One part keeps that order by itself (one sorted statement
 * per table); parts did not: part 2's dates and placeholders came after part 1's placeholders and
 * fact lock, a dimension object's part 2 keys after part 1's higher ones, and a concurrent load
 * taking the same rows in order deadlocked with it (40P01; `npm run bench:coldstart` met it twice a
 * run, each costing the retry of a large object). Reading the few columns this needs costs a part
 * of the object's decoding (Parquet is columnar: only their column chunks are read).
 *
 * Alternatives not taken: inserting the dates and placeholders in a short transaction of their own
 * before the object's (a placeholder without its fact would be harmless — `_inferred`, replaced by
 * the real row — but that short transaction still waits on a dimension object's rows taken out of
 * order, so the dimension side needs this anyway); filling dim_date with a calendar up front
 * (covers dates only, and a calendar bounded in advance cannot hold every date a source may send).
 */
export interface ObjectClaims {
  /** Fact: every date its versions refer to; dim_date object: its dates. Ascending. */
  dates: string[];
  /** Fact: every dimension key its versions refer to, per dimension, ascending. */
  references: Partial<Record<WarehouseTableName, number[]>>;
  /**
   * Dimension or staging table: the keys whose rows its parts would otherwise lock out of key
   * order, ascending; locked (a placeholder row inserted where there is none) before the first part.
   * Empty when the parts already lock in order (keys rising from part to part, as inserts of new
   * source rows do).
   */
  keys: number[];
  /** Fact: some part takes the fact lock exclusively, so every part takes it so (apply-batch.ts). */
  factExclusive: boolean;
  /**
   * Dimension or staging table: some part carries snapshot rows, an end marker or a TRUNCATE, so
   * the object takes its table's load lock exclusively (core/warehouse-sql.ts `dimensionLoadLock`).
   */
  dimensionExclusive: boolean;
}

/** The columns `ClaimsBuilder` reads: all other column chunks of the object are skipped. */
export function claimColumns(table: WarehouseTableName): string[] {
  const spec = WAREHOUSE_TABLES[table];
  if (spec.kind === 'date') return ['date_id'];
  if (spec.kind === 'fact')
    return ['_op', '_unchanged', ...spec.columns.filter((c) => c.references).map((c) => c.name)];
  return ['_op', spec.key];
}

/**
 * Gathers an object's ObjectClaims from its rows in order (only `claimColumns` are needed), given
 * the rows per part. Values that break the contract are left out: the object's parts refuse them
 * (MalformedObjectError), rolling back what was claimed. Every version's references are claimed,
 * also of a version a repeat of it replaces (FactFold keeps one): at worst one placeholder more.
 */
export class ClaimsBuilder {
  private readonly spec: (typeof WAREHOUSE_TABLES)[WarehouseTableName];
  private readonly referring: readonly WarehouseColumn[];
  private readonly referenced = new Referenced();
  private factExclusive = false;
  private dimensionExclusive = false;
  /** Dimension or staging table: the order its parts lock keys in; the part being read's keys. */
  private readonly order = new KeyOrder();
  private readonly partUpserts = new Set<number>();
  private readonly partDeletes = new Set<number>();
  private rowsInPart = 0;

  constructor(
    readonly table: WarehouseTableName,
    private readonly partRows: number,
  ) {
    this.spec = WAREHOUSE_TABLES[table];
    this.referring = this.spec.columns.filter((c) => c.references);
  }

  add(rows: readonly WarehouseRow[]): void {
    // A table computed in the warehouse is refused by the parts (BatchBuilder): nothing to claim.
    if (this.spec.kind !== 'date' && this.spec.source === null) return;
    for (const row of rows) {
      if (this.spec.kind === 'date') this.addDate(row.date_id);
      else if (this.spec.kind === 'fact') this.addVersion(row);
      else this.addKey(row);
    }
  }

  private addDate(value: unknown): void {
    if (typeof value === 'string' && isDateText(value)) this.referenced.addDate(value);
  }

  private addVersion(row: WarehouseRow): void {
    const op = row._op;
    // What makes applyPart take the fact lock exclusively, found in any row of the object.
    if (op === 'delete' || isTableOp(op) || op === 'snapshot') this.factExclusive = true;
    if (!carriesValues(op)) return;
    if (typeof row._unchanged === 'string' && row._unchanged !== '') this.factExclusive = true;
    for (const c of this.referring) {
      const value = row[c.name];
      if (value !== null && value !== undefined && valueIssue(c, value) === null)
        this.referenced.add(c, value);
    }
  }

  private addKey(row: WarehouseRow): void {
    const key = row[this.spec.key];
    const op = row._op;
    if (op === 'snapshot' || isTableOp(op)) this.dimensionExclusive = true;
    if (
      typeof key === 'number' &&
      Number.isInteger(key) &&
      key >= INT4_MIN &&
      key <= INT4_MAX &&
      !isTableOp(op)
    )
      (op === 'delete' ? this.partDeletes : this.partUpserts).add(key);
    this.rowsInPart += 1;
    if (this.rowsInPart === this.partRows) this.endPart();
  }

  /** A part locks its upserts' keys, then its deletes' (apply-batch.ts applyPart). */
  private endPart(): void {
    this.order.statement(this.partUpserts);
    this.order.statement(this.partDeletes);
    this.partUpserts.clear();
    this.partDeletes.clear();
    this.rowsInPart = 0;
  }

  finish(): ObjectClaims {
    this.endPart();
    return {
      ...this.referenced.sorted(),
      keys: this.order.claims(),
      factExclusive: this.factExclusive,
      dimensionExclusive: this.dimensionExclusive,
    };
  }
}

/**
 * The row locks of a dimension or staging table's statements, in the order they run (each
 * statement takes its keys in key order). A key first locked below one an earlier statement locked
 * must be claimed before them all, and with it every lower key, so that the claimed keys, then the
 * statements' other keys, are first locked in ascending order (a row the transaction holds already
 * is not waited for again).
 */
export class KeyOrder {
  private readonly locked = new Set<number>();
  /** The highest key locked so far; every key up to `claimUpTo` is claimed. */
  private highest = -Infinity;
  private claimUpTo = -Infinity;

  statement(keys: Iterable<number>): void {
    let top = this.highest;
    for (const key of keys) {
      if (this.locked.has(key)) continue;
      if (key < this.highest && key > this.claimUpTo) this.claimUpTo = key;
      this.locked.add(key);
      if (key > top) top = key;
    }
    this.highest = top;
  }

  /** The keys to claim, ascending: usually none. */
  claims(): number[] {
    return [...this.locked].filter((k) => k <= this.claimUpTo).sort(ascending);
  }
}

/**
 * A one-part dimension or staging batch's keys to claim before its statements (`KeyOrder`): its
 * upsert locks its keys in order, then its delete its own, so a deleted key below an upserted one
 * would be locked out of order.
 */
export function batchKeyClaims(batch: PreparedBatch): number[] {
  if (!batch.upserts.length || !batch.deletes.length) return [];
  const key = WAREHOUSE_TABLES[batch.table].key;
  const order = new KeyOrder();
  order.statement(batch.upserts.map((u) => u.values[key] as number));
  order.statement(batch.deletes.map((d) => d.key));
  return order.claims();
}
