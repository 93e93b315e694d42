import { Writable } from 'node:stream';
import { ParquetReader, ParquetSchema, ParquetWriter } from '@dsnp/parquetjs';
import * as thrift from '@dsnp/parquetjs/dist/gen-nodejs/parquet_types';
import { decodeThrift } from '@dsnp/parquetjs/dist/lib/util';
import {
  SOURCE_POSITION_COLUMNS,
  WAREHOUSE_TABLES,
  type WarehouseColumn,
  type WarehouseRow,
  type WarehouseTableName,
  type WarehouseValue,
} from '../../core/warehouse-model';
import { numericCents } from '../../core/star-mapping';
import { openColumnarWriter, SUPPORTED, type ColumnSpec } from './parquet-codec-writer';

// The row types moved to core/warehouse-model.ts (the pure mapping needs them); re-exported here so
// existing imports keep working.
export type { WarehouseRow, WarehouseValue } from '../../core/warehouse-model';

/**
 * Parquet files of the processed bucket: one warehouse table per object, the table's columns (see
 * core/warehouse-model.ts) followed by the bookkeeping columns (SOURCE_POSITION_COLUMNS there).
 * Every column is OPTIONAL (delete rows carry only the key; unchanged TOAST values are null plus a
 * mark in `_unchanged`).
 *
 * In memory a row holds canonical values: int → number, boolean → boolean, and text for the rest —
 * date `YYYY-MM-DD`, time `HH:MM:SS.mmm`, numeric(10,2) as Postgres prints it (`12.30`). Physical
 * types: INT32, BOOLEAN, DATE (days since epoch), TIME_MILLIS, UTF8, and money as
 * DECIMAL(10,2) so Athena, DuckDB or Spark reading the lake get numbers. The DECIMAL is stored as
 * a 5-byte FIXED_LEN_BYTE_ARRAY (big-endian two's complement of the unscaled value, enough for 11
 * digits), which the codec builds and reads itself from the text: exact, never through a float.
 * https://github.com/apache/parquet-format/blob/master/LogicalTypes.md#decimal
 *
 * Written with @dsnp/parquetjs, the maintained fork of parquetjs; it replaced parquetjs-lite when
 * `npm run bench:parquet` measured it faster on the same rows (bench/README.md).
 */

export interface ParquetTable {
  table: WarehouseTableName;
  rows: WarehouseRow[];
}

export class ParquetCodecError extends Error {
  override readonly name = 'ParquetCodecError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Money: numeric(10,2) in totesys (../shared/reference/totesys.md). */
const MONEY = { precision: 10, scale: 2, bytes: 5 } as const;

export type Physical = 'INT32' | 'INT64' | 'UTF8' | 'DATE' | 'TIME_MILLIS' | 'BOOLEAN' | 'DECIMAL';

const PHYSICAL: Record<WarehouseColumn['type'], Physical> = {
  int: 'INT32',
  text: 'UTF8',
  varchar: 'UTF8',
  'numeric(10,2)': 'DECIMAL',
  date: 'DATE',
  time: 'TIME_MILLIS',
  boolean: 'BOOLEAN',
};

const BOOKKEEPING_TYPES: Record<(typeof SOURCE_POSITION_COLUMNS)[number], Physical> = {
  _op: 'UTF8',
  _epoch: 'INT64',
  _lsn: 'UTF8',
  _seq: 'INT64',
  _commit_ts: 'UTF8',
  _unchanged: 'UTF8',
  _row_hash: 'UTF8',
  _rows: 'INT64',
};

/** Metadata key naming the warehouse table inside the file. */
const TABLE_METADATA_KEY = 'totes.table';

/**
 * Rows per row group. A row group is what a writer holds before writing and what a reader
 * decodes at once, so it bounds the memory of both; 4,096 rows of a fact table are ~1 MiB.
 */
export const ROW_GROUP_ROWS = 4096;

function columnTypes(table: WarehouseTableName): [string, Physical][] {
  return [
    ...WAREHOUSE_TABLES[table].columns.map((c) => [c.name, PHYSICAL[c.type]] as [string, Physical]),
    ...Object.entries(BOOKKEEPING_TYPES),
  ];
}

/** Each table's schema, built once (the writers only read it): fast mode writes many small files. */
const schemas = new Map<WarehouseTableName, ParquetSchema>();
function schemaFor(table: WarehouseTableName): ParquetSchema {
  let schema = schemas.get(table);
  if (!schema) {
    schema = buildSchema(table);
    schemas.set(table, schema);
  }
  return schema;
}

function buildSchema(table: WarehouseTableName): ParquetSchema {
  const fields: ConstructorParameters<typeof ParquetSchema>[0] = {};
  for (const [name, type] of columnTypes(table))
    fields[name] =
      type === 'DECIMAL'
        ? {
            type,
            typeLength: MONEY.bytes,
            precision: MONEY.precision,
            scale: MONEY.scale,
            optional: true,
          }
        : { type, optional: true };
  return new ParquetSchema(fields);
}

const DATE_TEXT = /^(\d{4})-(\d{2})-(\d{2})$/;
const TIME_TEXT = /^(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?$/;
/** numeric(10,2) text: at most 8 integer and 2 fraction digits. */
const MONEY_TEXT = /^(-?)(\d{1,8})(?:\.(\d{1,2}))?$/;

/** The number of the 2 ASCII digits at `at`, or NaN. */
function twoDigits(text: string, at: number): number {
  const a = text.charCodeAt(at) - 48;
  const b = text.charCodeAt(at + 1) - 48;
  return a >= 0 && a <= 9 && b >= 0 && b <= 9 ? a * 10 + b : NaN;
}

/**
 * `HH:MM:SS.mmm`, the form the star mapping writes, in milliseconds by character position (no
 * regex match per value); undefined for anything else, which the regex then reads or refuses.
 */
function canonicalTimeMillis(text: string): number | undefined {
  if (
    text.length !== 12 ||
    text.charCodeAt(2) !== 0x3a ||
    text.charCodeAt(5) !== 0x3a ||
    text.charCodeAt(8) !== 0x2e
  )
    return undefined;
  const last = text.charCodeAt(11) - 48;
  const ms = twoDigits(text, 9) * 10 + (last >= 0 && last <= 9 ? last : NaN);
  const millis = ((twoDigits(text, 0) * 60 + twoDigits(text, 3)) * 60 + twoDigits(text, 6)) * 1000 + ms;
  return Number.isNaN(millis) ? undefined : millis;
}

/** `YYYY-MM-DD` read by character position: the same values DATE_TEXT accepts, NaN for anything else. */
function canonicalDateParts(text: string): [number, number, number] | undefined {
  if (text.length !== 10 || text.charCodeAt(4) !== 0x2d || text.charCodeAt(7) !== 0x2d) return undefined;
  const year = twoDigits(text, 0) * 100 + twoDigits(text, 2);
  const month = twoDigits(text, 5);
  const day = twoDigits(text, 8);
  return Number.isNaN(year + month + day) ? undefined : [year, month, day];
}

/** A non-NULL canonical value as the writer takes it, per physical type (see toPhysical). */
type ToPhysical = (value: Exclude<WarehouseValue, null | undefined>, column: string) => unknown;

/** `YYYY-MM-DD` (or what DATE_TEXT reads) → its date; throws the codec's error for anything else. */
function dateOf(value: Exclude<WarehouseValue, null | undefined>, column: string): Date {
  const text = String(value);
  const parts = canonicalDateParts(text);
  const m = parts ? undefined : DATE_TEXT.exec(text);
  if (!parts && !m)
    throw new ParquetCodecError(`column ${column}: ${JSON.stringify(value)} is not a YYYY-MM-DD date`);
  const [year, month, day] = parts ?? [Number(m![1]), Number(m![2]), Number(m![3])];
  // Not Date.UTC: it maps years 0–99 to 1900–1999, which would move `0099-01-01` by 1900 years.
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  return date;
}

const MS_PER_DAY = 86_400_000;
/** Days since the epoch of a date text (the columnar writer's DATE); a few thousand distinct, so cached. */
const daysOfText = new Map<string, number>();
function dateDays(value: Exclude<WarehouseValue, null | undefined>, column: string): number {
  const cached = typeof value === 'string' ? daysOfText.get(value) : undefined;
  if (cached !== undefined) return cached;
  const days = dateOf(value, column).getTime() / MS_PER_DAY;
  if (typeof value === 'string' && daysOfText.size < 100_000) daysOfText.set(value, days);
  return days;
}

/** numeric(10,2) text → its unscaled value (cents), never through a float: at most 10 digits. */
function moneyCents(value: Exclude<WarehouseValue, null | undefined>, column: string): number {
  // The mapping's text, by character codes (the same values MONEY_TEXT reads, without a match array).
  const fast = typeof value === 'string' ? numericCents(value) : undefined;
  if (fast !== undefined) return fast;
  const m = MONEY_TEXT.exec(String(value));
  if (!m) throw new ParquetCodecError(`column ${column}: ${JSON.stringify(value)} is not a numeric(10,2)`);
  const cents = Number(m[2] + (m[3] ?? '').padEnd(MONEY.scale, '0'));
  return m[1] ? -cents : cents;
}

const TO_PHYSICAL: Record<Physical, ToPhysical> = {
  DATE: dateOf,
  TIME_MILLIS(value, column) {
    const millis = typeof value === 'string' ? canonicalTimeMillis(value) : undefined;
    if (millis !== undefined) return millis;
    const m = TIME_TEXT.exec(String(value));
    if (!m)
      throw new ParquetCodecError(`column ${column}: ${JSON.stringify(value)} is not an HH:MM:SS.mmm time`);
    return (
      ((Number(m[1]) * 60 + Number(m[2])) * 60 + Number(m[3])) * 1000 + Number((m[4] ?? '0').padEnd(3, '0'))
    );
  },
  DECIMAL(value, column) {
    const bytes = Buffer.allocUnsafe(MONEY.bytes);
    bytes.writeIntBE(moneyCents(value, column), 0, MONEY.bytes);
    return bytes;
  },
  INT64: (value) => BigInt(value as number),
  INT32: (value) => value,
  UTF8: (value) => value,
  BOOLEAN: (value) => value,
};

function toPhysical(type: Physical, value: WarehouseValue, column: string): unknown {
  if (value === null || value === undefined) return undefined;
  return TO_PHYSICAL[type](value, column);
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** `00`…`99` and `000`…`999`: a time's parts without a padStart per part. */
const DIGITS_2 = Array.from({ length: 100 }, (_, i) => String(i).padStart(2, '0'));
const DIGITS_3 = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, '0'));

/** Milliseconds since midnight → `HH:MM:SS.mmm` (anything else as padStart prints it, for the checks to refuse). */
function timeText(ms: number): string {
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor(ms / 60_000) % 60;
  const s = Math.floor(ms / 1000) % 60;
  if (ms >= 0 && ms < MS_PER_DAY && Number.isInteger(ms))
    return `${DIGITS_2[h]}:${DIGITS_2[m]}:${DIGITS_2[s]}.${DIGITS_3[ms % 1000]}`;
  return `${pad(h)}:${pad(m)}:${pad(s)}.${pad(ms % 1000, 3)}`;
}

/** numeric(10,2) as Postgres prints it, from its unscaled value. */
function centsText(cents: number): string {
  const abs = Math.abs(cents);
  return `${cents < 0 ? '-' : ''}${Math.floor(abs / 100)}.${pad(abs % 100)}`;
}

function fromPhysical(type: Physical, value: unknown): WarehouseValue {
  if (value === null || value === undefined) return null;
  switch (type) {
    case 'DATE':
      return (value as Date).toISOString().slice(0, 10);
    case 'TIME_MILLIS':
      return timeText(Number(value));
    case 'DECIMAL':
      return centsText((value as Buffer).readIntBE(0, MONEY.bytes));
    case 'INT64':
    case 'INT32':
      return Number(value);
    default:
      return value as WarehouseValue;
  }
}

/** The Parquet column names and physical types of a table, in file order (bench/parquet.ts uses it). */
export function parquetColumns(table: WarehouseTableName): readonly [string, Physical][] {
  return columnTypes(table);
}

/** A row's values as the writer takes them (absent = NULL). */
export function physicalRow(
  types: readonly [string, Physical][],
  row: WarehouseRow,
): Record<string, unknown> {
  const physical: Record<string, unknown> = {};
  for (const [name, type] of types) {
    const value = toPhysical(type, row[name] ?? null, name);
    if (value !== undefined) physical[name] = value;
  }
  return physical;
}

/** A row as the reader returns it, back in canonical form. */
export function warehouseRowOf(
  types: readonly [string, Physical][],
  raw: Record<string, unknown>,
): WarehouseRow {
  const row: WarehouseRow = {};
  for (const [name, type] of types) row[name] = fromPhysical(type, raw[name]);
  return row;
}

/**
 * Writes one warehouse table's rows to `sink` as they come, a row group at a time: what it holds
 * is at most one row group, whatever the file's size.
 */
export interface ParquetTableWriter {
  append(row: WarehouseRow): Promise<void>;
  /** append for each row, in order, waiting only when a row group is written. */
  appendRows(rows: readonly WarehouseRow[]): Promise<void>;
  /** Rows appended so far. */
  readonly rows: number;
  /** Writes the last row group and the footer. */
  close(): Promise<void>;
}

function refuse(column: string, value: unknown, what: string): never {
  throw new ParquetCodecError(`column ${column}: ${JSON.stringify(value)} is not ${what}`);
}

/** The columnar writer's view of a table's columns (parquet-codec-writer.ts). */
function columnSpecs(types: readonly [string, Physical][]): ColumnSpec[] {
  return types.map(([name, kind]) => ({
    name,
    kind,
    refuse,
    toNumber:
      kind === 'DATE'
        ? dateDays
        : kind === 'DECIMAL'
          ? moneyCents
          : kind === 'TIME_MILLIS'
            ? (value, column) => TO_PHYSICAL.TIME_MILLIS(value, column) as number
            : undefined,
  }));
}

export async function openParquetWriter(
  table: WarehouseTableName,
  sink: Writable,
  /** `libraryShredding`: every row through the library's appendRow (the columnar writer's reference). */
  options: { rowGroupRows?: number; libraryShredding?: boolean } = {},
): Promise<ParquetTableWriter> {
  const types = columnTypes(table);
  const rowGroupRows = options.rowGroupRows ?? ROW_GROUP_ROWS;
  const schema = schemaFor(table);
  const columnar = options.libraryShredding
    ? undefined
    : await openColumnarWriter(schema, columnSpecs(types), sink, { rowGroupRows });
  let rows = 0;
  if (columnar) {
    let closed = false;
    const appendRows = async (list: readonly WarehouseRow[]) => {
      if (closed) throw new Error('writer was closed');
      for (const row of list) {
        rows += 1;
        if (columnar.add(row)) await columnar.flush();
      }
    };
    return {
      append: (row) => appendRows([row]),
      appendRows,
      get rows() {
        return rows;
      },
      async close() {
        if (closed) throw new Error('writer was closed');
        closed = true;
        await columnar.close({ [TABLE_METADATA_KEY]: table });
      },
    };
  }
  // Typed as a file stream, but only write() and end() are used.
  const stream = sink as unknown as Parameters<typeof ParquetWriter.openStream>[1];
  const writer = await ParquetWriter.openStream(schema, stream, { rowGroupSize: rowGroupRows });
  writer.setMetadata(TABLE_METADATA_KEY, table);
  const append = async (row: WarehouseRow) => {
    await writer.appendRow(physicalRow(types, row));
    rows += 1;
  };
  return {
    append,
    async appendRows(list) {
      for (const row of list) await append(row);
    },
    get rows() {
      return rows;
    },
    close: () => writer.close(),
  };
}

/** Encodes rows of one warehouse table as a Parquet file (in memory). */
export async function encodeParquet(
  table: WarehouseTableName,
  rows: readonly WarehouseRow[],
  options: Parameters<typeof openParquetWriter>[2] = {},
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      chunks.push(Buffer.from(chunk));
      done();
    },
  });
  const writer = await openParquetWriter(table, sink, options);
  await writer.appendRows(rows);
  await writer.close();
  return Buffer.concat(chunks);
}

/**
 * A Parquet file of the processed bucket opened for reading: its table, row count, and its rows
 * in batches of at most one row group (decoded only when asked for), so a reader's memory is
 * bounded by a row group, not by the file.
 */
export interface ParquetTableReader {
  table: WarehouseTableName;
  rowCount: number;
  /**
   * The rows in order, `size` (default ROW_GROUP_ROWS) at a time. With `columns`, only those
   * column chunks are read and decoded, and the rows carry only them (the load reads an object's
   * keys and references before its rows: processors/load/create-handler.ts). With `pace`, it is
   * awaited after each column chunk decoded and every ROW_GROUP_SLICE rows made: a caller that
   * gives the event loop a turn there (setImmediate) keeps its other work (the warehouse's
   * replies) waiting a millisecond or two, not a whole row group's decoding.
   */
  batches(
    size?: number,
    columns?: readonly string[],
    pace?: () => Promise<void>,
  ): AsyncGenerator<WarehouseRow[]>;
  close(): Promise<void>;
}

export async function openParquetReader(buffer: Buffer): Promise<ParquetTableReader> {
  let reader;
  try {
    reader = await ParquetReader.openBuffer(buffer);
  } catch (e) {
    throw new ParquetCodecError('not a readable Parquet file', { cause: e });
  }
  const table = reader.getMetadata()[TABLE_METADATA_KEY] as WarehouseTableName | undefined;
  if (!table || !Object.hasOwn(WAREHOUSE_TABLES, table)) {
    await reader.close();
    throw new ParquetCodecError(
      `Parquet file names no known warehouse table (${TABLE_METADATA_KEY}=${table})`,
    );
  }
  const types = columnTypes(table);
  const opened = reader;
  const file = buffer;
  return {
    table,
    rowCount: Number(opened.getRowCount()),
    async *batches(size = ROW_GROUP_ROWS, columns?: readonly string[], pace?: () => Promise<void>) {
      const read = columns ? types.filter(([name]) => columns.includes(name)) : types;
      let batch: WarehouseRow[] = [];
      for (const rowGroup of envelopeOf(opened).metadata.row_groups) {
        for (const row of await readRowGroupRows(opened, file, rowGroup, read, pace)) {
          batch.push(row);
          if (batch.length >= size) {
            yield batch;
            batch = [];
          }
        }
      }
      if (batch.length) yield batch;
    },
    close: () => opened.close(),
  };
}

// ---------------------------------------------------------------------------------------------
// Reading a row group column by column. The library's cursor materializes a record per row
// (`materializeRecords`, a generic walk of nested schemas) and converts each value through its
// type table; the files here are flat, every column OPTIONAL (definition level 1 = a value, 0 =
// NULL, no repetition), so a column chunk's values and definition levels map straight to one
// canonical value per row. `npm run bench:load` measured the difference (bench/README.md).
// https://github.com/apache/parquet-format/blob/master/README.md#nested-encoding

/** What a column chunk decodes to inside the library: its definition levels and its non-null values. */
interface ColumnData {
  dlevels: number[];
  values: unknown[];
  count: number;
}

/** The parts of @dsnp/parquetjs' reader the columnar path uses (its typings keep them internal). */
interface EnvelopeAccess {
  metadata: { row_groups: unknown[] };
  envelopeReader: {
    readRowGroup(
      schema: unknown,
      rowGroup: unknown,
      columnList: unknown[],
    ): Promise<{ rowCount: number; columnData: Record<string, ColumnData> }>;
  };
  schema: unknown;
}

function envelopeOf(reader: ParquetReader): EnvelopeAccess {
  return reader as unknown as EnvelopeAccess;
}

/** Days since the epoch → `YYYY-MM-DD`; a few thousand distinct dates at most, so cached. */
const dateTexts = new Map<number, string>();
function dateText(days: number): string {
  let text = dateTexts.get(days);
  if (text === undefined) {
    text = new Date(days * MS_PER_DAY).toISOString().slice(0, 10);
    if (dateTexts.size < 100_000) dateTexts.set(days, text);
  }
  return text;
}

/** A converter from a column chunk's raw value (as the library decodes it) to the canonical value. */
function rawConverter(type: Physical): (raw: unknown) => WarehouseValue {
  switch (type) {
    case 'UTF8':
      return (raw) => (raw as Buffer).toString('utf8');
    case 'DATE':
      return (raw) => dateText(raw as number);
    case 'TIME_MILLIS':
      return (raw) => fromPhysical('TIME_MILLIS', raw);
    case 'DECIMAL':
      return (raw) => fromPhysical('DECIMAL', raw);
    case 'INT64':
    case 'INT32':
      return (raw) => Number(raw);
    case 'BOOLEAN':
      return (raw) => raw as boolean;
  }
}

/** One column of a row group as one canonical value (or null) per row. */
function columnValues(data: ColumnData | undefined, type: Physical, rowCount: number): WarehouseValue[] {
  const out: WarehouseValue[] = new Array(rowCount).fill(null);
  // A column missing from the file (an older writer) is NULL throughout, as the cursor gave it.
  if (!data) return out;
  if (data.count !== rowCount || data.dlevels.length !== rowCount)
    throw new ParquetCodecError('not a readable Parquet file (a column chunk does not match its row group)');
  const convert = rawConverter(type);
  const { dlevels, values } = data;
  let next = 0;
  for (let row = 0; row < rowCount; row += 1) if (dlevels[row] === 1) out[row] = convert(values[next++]);
  if (next !== values.length)
    throw new ParquetCodecError('not a readable Parquet file (a column chunk does not match its levels)');
  return out;
}

/**
 * One row group's rows, in canonical form, decoded column by column: each column chunk straight
 * from its pages when they are what the processed bucket's writers make (`chunkValues`), else
 * through the library's page decoding (`columnValues`).
 */
async function readRowGroupRows(
  reader: ParquetReader,
  file: Buffer,
  rowGroup: unknown,
  types: readonly [string, Physical][],
  pace?: () => Promise<void>,
): Promise<WarehouseRow[]> {
  const access = envelopeOf(reader);
  const group = rowGroup as RowGroupMeta;
  const rowCount = Number(group.num_rows);
  const columns: WarehouseValue[][] = new Array(types.length);
  const chunks = new Map<string, ColumnChunkMeta>();
  const slow: number[] = [];
  try {
    for (const chunk of group.columns) chunks.set(chunk.meta_data.path_in_schema.join(','), chunk);
  } catch (e) {
    throw unreadableRowGroup(e);
  }
  for (const [c, [name, type]] of types.entries()) {
    try {
      const chunk = chunks.get(name);
      // A column missing from the file (an older writer) is NULL throughout, as the cursor gave it.
      const values = chunk
        ? chunkValues(file, chunk, access.schema as SchemaAccess, type, rowCount)
        : new Array<WarehouseValue>(rowCount).fill(null);
      if (values) columns[c] = values;
      else slow.push(c);
    } catch (e) {
      throw unreadableRowGroup(e);
    }
    // Outside the try: what the caller's pace throws is its own, not a damaged file's.
    await pace?.();
  }
  if (slow.length)
    try {
      const list = slow.map((c) => [types[c][0]]);
      const buffer = await access.envelopeReader.readRowGroup(access.schema, rowGroup, list);
      if (Number(buffer.rowCount) !== rowCount)
        throw new ParquetCodecError('not a readable Parquet file (a row group does not match its count)');
      for (const c of slow) columns[c] = columnValues(buffer.columnData[types[c][0]], types[c][1], rowCount);
    } catch (e) {
      throw unreadableRowGroup(e);
    }
  const make = rowMaker(types);
  const rows: WarehouseRow[] = new Array(rowCount);
  for (let r = 0; r < rowCount; r += 1) {
    rows[r] = make(columns, r);
    if (pace && (r + 1) % ROW_GROUP_SLICE === 0) await pace();
  }
  return rows;
}

/**
 * What reading a row group threw, as the load reports it: the library throws its own errors
 * (TProtocolException, TypeError, RangeError) from damaged pages, possibly quoting bytes — named,
 * not passed on.
 */
function unreadableRowGroup(e: unknown): ParquetCodecError {
  if (e instanceof ParquetCodecError) return e;
  return new ParquetCodecError(
    `not a readable Parquet file (${(e as Error)?.name ?? 'error'} reading a row group)`,
    { cause: e },
  );
}

/** Rows made between two `pace` calls of a row group being read. */
const ROW_GROUP_SLICE = 1024;

/** Row `r` of decoded columns (one array of values per column, in `types`' order) as a row object. */
type RowMaker = (columns: readonly WarehouseValue[][], r: number) => WarehouseRow;

const rowMakers = new Map<string, RowMaker>();

/**
 * A function returning `{ "<name 0>": columns[0][r], … }` for these columns, compiled once per list
 * of columns (a table's, or the load's claim columns). An object literal of fixed names is made in
 * one step in the shape V8 keeps for that literal; a row of NULLs copied and then set column by
 * column (a store by a name read from an array, per value) was most of readRowGroupRows' own time,
 * ~8% of the load process at 10k changes/s (bench/README.md, session 13). The names are the
 * codec's own (WAREHOUSE_TABLES and the bookkeeping columns), written as JSON string literals.
 */
function rowMaker(types: readonly [string, Physical][]): RowMaker {
  const names = types.map(([name]) => name);
  const id = names.join(',');
  let make = rowMakers.get(id);
  if (!make) {
    // `"__proto__": …` in a literal would set the prototype, not a property.
    if (names.includes('__proto__')) throw new ParquetCodecError('a column named __proto__');
    const fields = names.map((name, c) => `${JSON.stringify(name)}: columns[${c}][r]`);
    // Compiled from the codec's own column names, quoted as JSON strings: no value reaches the code.
    make = new Function('columns', 'r', `return { ${fields.join(', ')} };`) as RowMaker;
    rowMakers.set(id, make);
  }
  return make;
}

// ---------------------------------------------------------------------------------------------
// A column chunk's pages decoded here. The library's decoding makes a Buffer per text value, an
// array per page for levels it then copies value by value, and decodes each page's statistics
// (bench:load: the load's decoding was a fifth of its CPU, much of it garbage). The processed
// bucket's files hold flat OPTIONAL columns (definition level 1 = a value, 0 = NULL), PLAIN,
// uncompressed, in data pages v2 (parquet-codec-writer.ts, and the library's writer): for those,
// the definition levels (the RLE / bit-packed hybrid, bit width 1) and the values are read
// straight into canonical values. Anything else (another page type, encoding, compression or
// nesting) is left to the library: `chunkValues` returns undefined.
// https://github.com/apache/parquet-format/blob/master/Encodings.md

interface RowGroupMeta {
  num_rows: unknown;
  columns: ColumnChunkMeta[];
}

interface ColumnChunkMeta {
  file_path?: string | null;
  meta_data: {
    path_in_schema: string[];
    type: number;
    codec: number;
    num_values: unknown;
    data_page_offset: unknown;
    dictionary_page_offset?: unknown;
    total_compressed_size: unknown;
  };
}

interface SchemaAccess {
  findField(path: string[]): { rLevelMax: number; dLevelMax: number; typeLength?: number | string };
}

interface PageHeaderAccess {
  type: number;
  compressed_page_size: number;
  data_page_header_v2: {
    num_values: number;
    num_nulls: number;
    num_rows: number;
    encoding: number;
    definition_levels_byte_length: number;
    repetition_levels_byte_length: number;
    is_compressed: boolean | null;
  } | null;
}

const T = thrift as unknown as {
  PageHeader: new () => PageHeaderAccess;
  Type: Record<string, number>;
  PageType: Record<string, number>;
  Encoding: Record<string, number>;
  CompressionCodec: Record<string, number>;
};

/** The physical type (Thrift enum) each canonical type is stored as: the writer's. */
const storedType = (type: Physical): number => T.Type[SUPPORTED[type].primitive];

const TWO_32 = 2 ** 32;

/** The chunk's values, one per row (null = NULL); undefined when its pages are not of the form read here. */
function chunkValues(
  file: Buffer,
  chunk: ColumnChunkMeta,
  schema: SchemaAccess,
  type: Physical,
  rowCount: number,
): WarehouseValue[] | undefined {
  const meta = chunk.meta_data;
  if (chunk.file_path || meta.codec !== T.CompressionCodec.UNCOMPRESSED || meta.type !== storedType(type))
    return undefined;
  if (meta.dictionary_page_offset != null && Number(meta.dictionary_page_offset) > 0) return undefined;
  const field = schema.findField(meta.path_in_schema);
  if (field.rLevelMax !== 0 || field.dLevelMax !== 1) return undefined;
  if (type === 'DECIMAL' && Number(field.typeLength) !== MONEY.bytes) return undefined;
  if (Number(meta.num_values) !== rowCount) return undefined;
  let at = Number(meta.data_page_offset);
  const end = Math.min(file.length, at + Number(meta.total_compressed_size));
  const out: WarehouseValue[] = new Array(rowCount);
  let row = 0;
  while (row < rowCount) {
    if (at >= end) return undefined;
    const header = new T.PageHeader();
    const headerBytes = decodeThrift(header as never, file, at) as number;
    const v2 = header.data_page_header_v2;
    if (
      header.type !== T.PageType.DATA_PAGE_V2 ||
      !v2 ||
      v2.encoding !== T.Encoding.PLAIN ||
      v2.repetition_levels_byte_length !== 0 ||
      v2.is_compressed === true
    )
      return undefined;
    const levels = at + headerBytes;
    const values = levels + v2.definition_levels_byte_length;
    const pageEnd = levels + header.compressed_page_size;
    const count = v2.num_values;
    // Sizes and counts from the file: negative or empty ones would not move the reader forward.
    if (count <= 0 || v2.definition_levels_byte_length < 0 || header.compressed_page_size < 0)
      throw new ParquetCodecError(
        'not a readable Parquet file (a page header has negative sizes or no rows)',
      );
    if (pageEnd > end || values > pageEnd || row + count > rowCount)
      throw new ParquetCodecError('not a readable Parquet file (a page does not fit its column chunk)');
    const page: PageRows = { file, out, first: row, count };
    if (definedRows(page, levels, values) !== count - v2.num_nulls)
      throw new ParquetCodecError('not a readable Parquet file (a page does not match its levels)');
    if (readPlain(page, values, pageEnd, type) !== pageEnd)
      throw new ParquetCodecError('not a readable Parquet file (a page does not match its values)');
    row += count;
    at = pageEnd;
  }
  return out;
}

/** A page's rows: `count` of them from row `first` of the chunk's values `out`, read from `file`. */
interface PageRows {
  file: Buffer;
  out: WarehouseValue[];
  first: number;
  count: number;
}

/**
 * Definition levels of `count` rows (RLE / bit-packed hybrid, bit width 1, no length prefix in a
 * v2 page) from `file[at, end)`: `out[first + i]` is set to null where the row has no value and
 * left undefined where it has one. Returns the rows with a value.
 */
function definedRows({ file, out, first, count }: PageRows, at: number, end: number): number {
  let i = 0;
  let defined = 0;
  let p = at;
  while (i < count) {
    if (p >= end) throw new ParquetCodecError('not a readable Parquet file (definition levels end early)');
    let header = 0;
    for (let shift = 0; ; shift += 7) {
      if (p >= end || shift > 28)
        throw new ParquetCodecError('not a readable Parquet file (a damaged definition level run)');
      const b = file[p++];
      header += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) break;
    }
    if (header & 1) {
      // Bit-packed: (header >> 1) groups of 8 levels, one byte each at bit width 1.
      const groups = Math.floor(header / 2);
      if (p + groups > end)
        throw new ParquetCodecError('not a readable Parquet file (definition levels end early)');
      for (let g = 0; g < groups; g += 1) {
        const byte = file[p++];
        for (let bit = 0; bit < 8 && i < count; bit += 1, i += 1) {
          if ((byte >> bit) & 1) defined += 1;
          else out[first + i] = null;
        }
      }
    } else {
      // A run: (header >> 1) repeats of one level, in one byte.
      const run = Math.min(Math.floor(header / 2), count - i);
      if (p >= end) throw new ParquetCodecError('not a readable Parquet file (definition levels end early)');
      const level = file[p++];
      if (level > 1) throw new ParquetCodecError('not a readable Parquet file (a definition level above 1)');
      if (level === 1) defined += run;
      else for (let k = 0; k < run; k += 1) out[first + i + k] = null;
      i += run;
    }
  }
  return defined;
}

/** `length` bytes at `a` and at `b` of `file` are the same. */
function sameBytes(file: Buffer, a: number, b: number, length: number): boolean {
  if (length > 48) return file.compare(file, a, a + length, b, b + length) === 0;
  for (let i = 0; i < length; i += 1) if (file[a + i] !== file[b + i]) return false;
  return true;
}

/**
 * The PLAIN values of the rows `definedRows` left undefined, from `file[at, end)`, as canonical
 * values; returns where they ended (the page's end, for a sound page).
 */
function readPlain({ file, out, first, count }: PageRows, at: number, end: number, type: Physical): number {
  let p = at;
  const last = first + count;
  const need = (bytes: number) => {
    if (p + bytes > end)
      throw new ParquetCodecError('not a readable Parquet file (a page ends inside a value)');
  };
  switch (type) {
    case 'UTF8': {
      // A value equal to the one before it (`_op`, `_commit_ts` of one transaction, `_unchanged`)
      // is that string again, not another copy of it: fewer strings to collect, and to hold for a part.
      let previous: string | undefined;
      let previousAt = 0;
      let previousLength = -1;
      for (let r = first; r < last; r += 1)
        if (out[r] === undefined) {
          need(4);
          const length = file.readUInt32LE(p);
          p += 4;
          need(length);
          if (length === previousLength && sameBytes(file, previousAt, p, length)) out[r] = previous!;
          else {
            previous = file.toString('utf8', p, p + length);
            out[r] = previous;
            previousAt = p;
            previousLength = length;
          }
          p += length;
        }
      return p;
    }
    case 'INT32':
    case 'DATE':
    case 'TIME_MILLIS':
      for (let r = first; r < last; r += 1)
        if (out[r] === undefined) {
          need(4);
          const value = file.readInt32LE(p);
          p += 4;
          out[r] = type === 'INT32' ? value : type === 'DATE' ? dateText(value) : fromPhysical(type, value);
        }
      return p;
    case 'INT64':
      for (let r = first; r < last; r += 1)
        if (out[r] === undefined) {
          need(8);
          // Exactly Number(BigInt) of the value: the high word times 2^32 is exact, the sum rounded once.
          out[r] = file.readInt32LE(p + 4) * TWO_32 + file.readUInt32LE(p);
          p += 8;
        }
      return p;
    case 'DECIMAL':
      for (let r = first; r < last; r += 1)
        if (out[r] === undefined) {
          need(MONEY.bytes);
          out[r] = centsText(file.readIntBE(p, MONEY.bytes));
          p += MONEY.bytes;
        }
      return p;
    case 'BOOLEAN': {
      // Bit-packed, least significant bit first, padded to a whole byte.
      let bit = 0;
      for (let r = first; r < last; r += 1)
        if (out[r] === undefined) {
          need(Math.floor(bit / 8) + 1);
          out[r] = ((file[p + (bit >> 3)] >> (bit & 7)) & 1) === 1;
          bit += 1;
        }
      return p + Math.ceil(bit / 8);
    }
  }
}

/** Decodes a file written by encodeParquet; the table comes from the file's own metadata. */
export async function decodeParquet(buffer: Buffer): Promise<ParquetTable> {
  const reader = await openParquetReader(buffer);
  try {
    const rows: WarehouseRow[] = [];
    for await (const batch of reader.batches()) for (const row of batch) rows.push(row);
    return { table: reader.table, rows };
  } finally {
    await reader.close();
  }
}
