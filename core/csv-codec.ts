import { stringify } from 'csv-stringify/sync';
import { createHash } from 'node:crypto';
import { z } from 'zod';
import {
  carriesNoValues,
  CHANGE_OPS,
  ChangeSchema,
  ColumnSchema,
  type Change,
  type ChangeBatch,
  type Column,
} from './change-event';
import { isLsn } from './lsn';

/**
 * The CSV rendering of change events in the ingestion bucket, and the layout that makes each CSV
 * object self-describing. Pure: no AWS SDK, no I/O.
 *
 * One line per change: the fixed metadata columns `op, epoch, lsn, seq, commit_ts, unchanged, rows,
 * ref` (format 3; format 2 had no `ref`; format 1 had `op, lsn, seq, commit_ts, unchanged` and
 * reads as epoch 0), then the
 * table's columns in the order of the batch's `columns`. There is no header line, because Firehose
 * concatenates the records it receives into one object and cannot write one
 * (https://docs.aws.amazon.com/firehose/latest/dev/basic-deliver.html); instead the column layout
 * lives in a schema object beside the data, named by the layout's fingerprint, and every data
 * object's key names the fingerprint it was written with (see docs/ingestion-layout.md).
 *
 * Field rules (RFC 4180 quoting, `\n` line ends):
 * - SQL NULL is an empty unquoted field; the empty string is `""`. A parser that cannot tell the two
 *   apart loses information, so readers must use `decodeCsvObject` or an equivalent rule.
 * - Values are Postgres' own text rendering, untouched: numerics, timestamps and enums keep their
 *   exact text. Values with quotes, commas, CR or LF, or leading/trailing white space are quoted.
 * - `unchanged` lists the indices (into the table columns) of unchanged TOASTed values, joined by
 *   `;`, or is empty. Such a column's field is empty too, but means "keep what you have", not NULL.
 * - `truncate` and `snapshot_end` lines carry NULL in every table column; `rows` is set only on
 *   `snapshot_end` lines (the table's snapshot row count).
 * - `ref` is set only on a pointer line: a change too big for one record, stored whole under that
 *   key of the ingestion bucket (core/oversized-change.ts). Its table columns hold only the key.
 */

/** Bump when the line format changes incompatibly; it is part of every fingerprint. */
export const CSV_FORMAT_VERSION = 3;
export const CSV_FORMAT_NAME = 'totes-change-csv';

export const CSV_METADATA_COLUMNS = [
  'op',
  'epoch',
  'lsn',
  'seq',
  'commit_ts',
  'unchanged',
  'rows',
  'ref',
] as const;
export type CsvMetadataColumn = (typeof CSV_METADATA_COLUMNS)[number];
/** Format 2's metadata columns: objects written before pointer lines still decode. */
export const CSV_METADATA_COLUMNS_V2 = [
  'op',
  'epoch',
  'lsn',
  'seq',
  'commit_ts',
  'unchanged',
  'rows',
] as const;
/** Format 1's metadata columns: objects written before epochs still decode (as epoch 0). */
export const CSV_METADATA_COLUMNS_V1 = ['op', 'lsn', 'seq', 'commit_ts', 'unchanged'] as const;

const METADATA_COLUMNS_OF_FORMAT = {
  1: CSV_METADATA_COLUMNS_V1,
  2: CSV_METADATA_COLUMNS_V2,
  3: CSV_METADATA_COLUMNS,
} as const;

const UNCHANGED_SEPARATOR = ';';
const QUOTE_WHEN = /^\s|\s$|[\r\n]/;

/** Base class of every error this module throws. */
export class CsvCodecError extends Error {
  override name = 'CsvCodecError';
}

/** A CSV object that does not match its schema object (or is not CSV at all). */
export class CsvDecodeError extends CsvCodecError {
  override name = 'CsvDecodeError';
  constructor(
    readonly table: string,
    readonly fingerprint: string,
    /** 1-based CSV record number, when the problem is in one record. */
    readonly record: number | undefined,
    readonly reason: string,
    options?: { cause: unknown },
  ) {
    super(
      `CSV object of ${table} (schema ${fingerprint})${record === undefined ? '' : `, record ${record}`}: ${reason}`,
      options,
    );
  }
}

export class InvalidSchemaObjectError extends CsvCodecError {
  override name = 'InvalidSchemaObjectError';
  constructor(
    readonly issues: string[],
    options?: { cause: unknown },
  ) {
    super(`not a ${CSV_FORMAT_NAME} schema object: ${issues.slice(0, 3).join('; ')}`, options);
  }
}

/**
 * Short, stable name of a column layout: the first 16 hex digits of SHA-256 over the format version
 * and each column's name, type and key flag, in order (order matters: it is the CSV column order).
 * 64 bits make an accidental collision between the layouts of one table practically impossible.
 */
export function schemaFingerprint(columns: readonly Column[], formatVersion = CSV_FORMAT_VERSION): string {
  const canonical = JSON.stringify([formatVersion, columns.map((c) => [c.name, c.type, c.key])]);
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

const schemaObjectFields = {
  format: z.literal(CSV_FORMAT_NAME),
  fingerprint: z.string().regex(/^[0-9a-f]{16}$/),
  /** Source schema and table. */
  schema: z.string().min(1),
  table: z.string().min(1),
  /** Table columns, in CSV order after the metadata columns. */
  columns: z.array(ColumnSchema).min(1),
};

/** Format 2's metadata columns, which format 3 extends with `ref`. */
const FORMAT_2_METADATA = [
  z.literal('op'),
  z.literal('epoch'),
  z.literal('lsn'),
  z.literal('seq'),
  z.literal('commit_ts'),
  z.literal('unchanged'),
  z.literal('rows'),
] as const;

export const SchemaObjectSchema = z.discriminatedUnion('formatVersion', [
  z.object({
    ...schemaObjectFields,
    formatVersion: z.literal(CSV_FORMAT_VERSION),
    metadataColumns: z.tuple([...FORMAT_2_METADATA, z.literal('ref')]),
  }),
  z.object({
    ...schemaObjectFields,
    formatVersion: z.literal(2),
    metadataColumns: z.tuple([...FORMAT_2_METADATA]),
  }),
  z.object({
    ...schemaObjectFields,
    formatVersion: z.literal(1),
    metadataColumns: z.tuple([
      z.literal('op'),
      z.literal('lsn'),
      z.literal('seq'),
      z.literal('commit_ts'),
      z.literal('unchanged'),
    ]),
  }),
]);
/** What `_schemas/<table>/<fingerprint>.json` holds. */
export type SchemaObject = z.infer<typeof SchemaObjectSchema>;

export function schemaObjectFor(batch: Pick<ChangeBatch, 'schema' | 'table' | 'columns'>): SchemaObject {
  return {
    format: CSV_FORMAT_NAME,
    formatVersion: CSV_FORMAT_VERSION,
    fingerprint: schemaFingerprint(batch.columns),
    schema: batch.schema,
    table: batch.table,
    metadataColumns: [...CSV_METADATA_COLUMNS] as [...typeof CSV_METADATA_COLUMNS],
    columns: batch.columns.map((c) => ({ name: c.name, type: c.type, key: c.key })),
  };
}

/**
 * The schema object's bytes. Deterministic (fixed key order, no timestamps) so that rewriting an
 * existing schema object, which concurrent writers may do, produces the identical object.
 */
export function encodeSchemaObject(schema: SchemaObject): string {
  return `${JSON.stringify(SchemaObjectSchema.parse(schema), null, 2)}\n`;
}

export function decodeSchemaObject(text: string | Uint8Array): SchemaObject {
  let json: unknown;
  try {
    json = JSON.parse(typeof text === 'string' ? text : Buffer.from(text).toString('utf8'));
  } catch (e) {
    throw new InvalidSchemaObjectError(['not JSON'], { cause: e });
  }
  const parsed = SchemaObjectSchema.safeParse(json);
  if (!parsed.success)
    throw new InvalidSchemaObjectError(
      parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`),
    );
  if (parsed.data.fingerprint !== schemaFingerprint(parsed.data.columns, parsed.data.formatVersion))
    throw new InvalidSchemaObjectError(['fingerprint does not match the columns']);
  return parsed.data;
}

/**
 * A field as csv-stringify renders it with the options this format used before this function
 * replaced it (`quoted_match: QUOTE_WHEN`, `record_delimiter: 'unix'`, the empty string quoted):
 * NULL is nothing, the empty string `""`; a value holding a quote, comma, CR or LF, or starting or
 * ending with white space (`\s`: Unicode spaces and the BOM too) is quoted with its quotes doubled;
 * anything else is as it is. Hand-written because csv-stringify's per-field work (cast callback,
 * option merging, separator searches) was most of the Firehose transformation's CPU
 * (bench:transform); core/csv-codec.encoder.test.ts holds it to csv-stringify's exact bytes.
 */
export function csvField(value: string | null | undefined): string {
  if (value === null || value === undefined) return '';
  if (value === '') return '""';
  if (!NEEDS_QUOTES.test(value)) return value;
  return `"${value.includes('"') ? value.replaceAll('"', '""') : value}"`;
}
/** What makes csv-stringify quote a field here: its own rules (quote, comma, CR, LF) and QUOTE_WHEN. */
const NEEDS_QUOTES = /[",\r\n]|^\s|\s$/;

/** One batch's CSV lines, each ending in `\n`, ready to be concatenated with other batches'. */
export function encodeChangeBatchAsCsv(batch: ChangeBatch): string {
  let all = '';
  writeChangeBatchAsCsv(batch, (piece) => {
    all += piece;
  });
  return all;
}

/** About how many characters of whole lines writeChangeBatchAsCsv hands over at a time. */
const CSV_PIECE_CHARS = 16 * 1024;

/**
 * encodeChangeBatchAsCsv's text handed to `write` in pieces of whole lines (about
 * CSV_PIECE_CHARS each; their concatenation is that text). For a caller that turns it into bytes:
 * V8 keeps a string over 128 KiB in a memory mapping of its own, which on the 2-core machine cost
 * ~6 ns per byte to allocate (page faults, mmap/munmap: ~2 ms for 250 KB), 30–60× the cost of
 * smaller strings; a record's CSV flattened whole was one such string per record (bench:transform).
 * A piece ends at a line end, never inside a value, so its UTF-8 bytes are those of its part of
 * the whole text (a surrogate pair is never cut).
 */
export function writeChangeBatchAsCsv(batch: ChangeBatch, write: (piece: string) => void): void {
  const nulls = ','.repeat(batch.columns.length);
  let out = '';
  for (const c of batch.changes) {
    out += csvField(c.op);
    out += ',';
    out += csvField(String(c.epoch ?? batch.epoch ?? 0));
    out += ',';
    out += csvField(c.lsn);
    out += ',';
    out += csvField(String(c.seq));
    out += ',';
    out += csvField(c.ts);
    out += ',';
    if (c.unchanged?.length) out += csvField(c.unchanged.join(UNCHANGED_SEPARATOR));
    out += ',';
    if (c.rows !== undefined) out += csvField(String(c.rows));
    out += ',';
    out += csvField(c.ref);
    if (carriesNoValues(c.op)) out += nulls;
    else for (const value of c.values) out += value === null ? ',' : `,${csvField(value)}`;
    out += '\n';
    if (out.length >= CSV_PIECE_CHARS) {
      write(out);
      out = '';
    }
  }
  if (out) write(out);
}

/**
 * The encoder this format was defined with (csv-stringify), kept as the reference the hand-written
 * one is tested and benchmarked against (core/csv-codec.encoder.test.ts, bench/transform.ts).
 */
export function encodeChangeBatchAsCsvWithStringify(batch: ChangeBatch): string {
  const width = batch.columns.length;
  const rows = batch.changes.map((c) => [
    c.op,
    String(c.epoch ?? batch.epoch ?? 0),
    c.lsn,
    String(c.seq),
    c.ts,
    c.unchanged?.length ? c.unchanged.join(UNCHANGED_SEPARATOR) : null,
    c.rows === undefined ? null : String(c.rows),
    c.ref ?? null,
    ...(carriesNoValues(c.op) ? new Array<null>(width).fill(null) : c.values),
  ]);
  return stringify(rows, {
    eof: true,
    record_delimiter: 'unix',
    quoted_match: QUOTE_WHEN,
    // csv-stringify renders null and '' alike unless told otherwise: quote only the empty *string*.
    cast: { string: (value) => (value === '' ? { value: '', quoted_empty: true } : value) },
  });
}

/**
 * Reads a whole CSV object (any number of concatenated batches) back into changes, with the column
 * layout of its schema object. Every record is validated; the first bad one throws CsvDecodeError.
 */
export function decodeCsvObject(text: string | Uint8Array, schema: SchemaObject): Change[] {
  const decoder = new CsvObjectDecoder(schema);
  return [...decoder.push(text), ...decoder.end()];
}

/**
 * Decodes a CSV object that arrives in pieces (a stream's chunks, cut anywhere, even inside a
 * UTF-8 character or a quoted field) into changes, a whole number of records at a time: what it
 * holds between pieces is at most one partial record. The same validation, errors and record
 * numbers as decodeCsvObject, which is this over one piece.
 */
export class CsvObjectDecoder {
  private readonly utf8 = new TextDecoder('utf-8');
  private pending = '';
  /** How much of `pending` was scanned for record ends, and whether that ends inside quotes. */
  private scanned = 0;
  private inQuotes = false;
  /** Records decoded so far (error messages number records from the object's start). */
  private records = 0;
  private readonly metadataWidth: number;
  private readonly width: number;

  constructor(private readonly schema: SchemaObject) {
    this.metadataWidth = METADATA_COLUMNS_OF_FORMAT[schema.formatVersion].length;
    this.width = this.metadataWidth + schema.columns.length;
  }

  /** The changes of every record that `piece` completes. */
  push(piece: string | Uint8Array): Change[] {
    this.pending += typeof piece === 'string' ? piece : this.utf8.decode(piece, { stream: true });
    // A record ends at a line feed outside quotes; a doubled quote inside a quoted field toggles
    // twice, so counting quotes is enough (RFC 4180).
    // Jumping from quote to quote with indexOf (native), not testing every character in a loop.
    let cut = -1;
    const text = this.pending;
    const n = text.length;
    let i = this.scanned;
    let lineFeed = -2; // the next line feed at or after i; -1: none left; -2: not searched yet
    while (i < n) {
      const quote = text.indexOf('"', i);
      if (this.inQuotes) {
        if (quote < 0) break;
        this.inQuotes = false;
        i = quote + 1;
        continue;
      }
      // The line feeds before that quote end records; each search starts where the last ended, so
      // the scan stays linear however many quoted fields a record has.
      const end = quote < 0 ? n : quote;
      if (lineFeed !== -1 && lineFeed < i) lineFeed = text.indexOf('\n', i);
      while (lineFeed !== -1 && lineFeed < end) {
        cut = lineFeed + 1;
        lineFeed = text.indexOf('\n', cut);
      }
      if (quote < 0) break;
      this.inQuotes = true;
      i = quote + 1;
    }
    this.scanned = n;
    if (cut < 0) return [];
    this.pending = text.slice(cut);
    this.scanned -= cut;
    return this.decode(text.slice(0, cut));
  }

  /** The changes of the last record (one without a final line feed). */
  end(): Change[] {
    const rest = this.pending + this.utf8.decode();
    this.pending = '';
    this.scanned = 0;
    return rest ? this.decode(rest) : [];
  }

  private fail(record: number | undefined, reason: string, cause?: unknown): CsvDecodeError {
    const { table, fingerprint } = this.schema;
    return new CsvDecodeError(table, fingerprint, record, reason, cause ? { cause } : undefined);
  }

  private decode(text: string): Change[] {
    const first = this.records;
    let rows: (string | null)[][];
    try {
      rows = parseCsvRecords(text);
    } catch (e) {
      throw this.fail(e instanceof CsvSyntaxError ? first + e.record : undefined, 'not valid CSV', e);
    }
    this.records += rows.length;
    return rows.map((row, i) => this.change(row, first + i + 1));
  }

  private change(row: (string | null)[], record: number): Change {
    const { schema, metadataWidth, width } = this;
    if (row.length !== width) throw this.fail(record, `has ${row.length} fields, expected ${width}`);
    const v = schema.formatVersion;
    // Format 1 has no epoch (0), rows or ref; format 2 no ref.
    const op = row[0];
    const epoch = v === 1 ? '0' : row[1];
    const lsn = row[v === 1 ? 1 : 2];
    const seq = row[v === 1 ? 2 : 3];
    const ts = row[v === 1 ? 3 : 4];
    const unchanged = row[v === 1 ? 4 : 5];
    const count = v === 1 ? null : row[6];
    const ref = v === 3 ? row[7] : null;
    if (epoch === null || !DIGITS.test(epoch)) throw this.fail(record, 'epoch is not a non-negative integer');
    if (seq === null || !DIGITS.test(seq)) throw this.fail(record, 'seq is not a non-negative integer');
    if (count !== null && !DIGITS.test(count)) throw this.fail(record, 'rows is not a non-negative integer');
    if (unchanged !== null && !UNCHANGED_LIST.test(unchanged))
      throw this.fail(record, 'unchanged is not a ;-separated list of column indices');
    const noValues = carriesNoValues(op as Change['op']);
    // Keys in ChangeSchema's order, absent ones left out: what ChangeSchema.parse returns.
    const change: Record<string, unknown> = {
      op,
      epoch: Number(epoch),
      lsn,
      seq: Number(seq),
      ts,
      values: noValues ? [] : row.slice(metadataWidth),
    };
    if (count !== null) change.rows = Number(count);
    if (unchanged !== null) change.unchanged = unchanged.split(UNCHANGED_SEPARATOR).map(Number);
    if (ref !== null) {
      if (noValues) throw this.fail(record, `a ${op} line cannot be a pointer`);
      change.ref = ref;
    }
    const parsed = isPlainChange(change) ? (change as Change) : this.validated(change, record);
    if (parsed.unchanged)
      for (const index of parsed.unchanged)
        if (index >= schema.columns.length) throw this.fail(record, `unchanged index ${index} out of range`);
    return parsed;
  }

  /** ChangeSchema's verdict on what isPlainChange was not sure of: the change, or its first issue. */
  private validated(change: Record<string, unknown>, record: number): Change {
    const parsed = ChangeSchema.safeParse(change);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw this.fail(record, `${issue.path.join('.')}: ${issue.message}`);
    }
    return parsed.data;
  }
}

const DIGITS = /^\d+$/;
const UNCHANGED_LIST = /^\d+(;\d+)*$/;
const OPS = new Set<string>(CHANGE_OPS);
const isCount = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;

/**
 * True when ChangeSchema would accept a decoded change as it is (the decoder builds it in the
 * schema's key order, with only the keys it sets). Zod walked and copied every change, the largest
 * part of decoding after the CSV parsing itself (bench:transform); what this is unsure of (an
 * integer too large to be safe, an empty ref, an unknown op, a bad LSN or timestamp) still goes
 * to the schema, for the same error.
 */
function isPlainChange(c: Record<string, unknown>): boolean {
  return (
    typeof c.op === 'string' &&
    OPS.has(c.op) &&
    isCount(c.epoch) &&
    typeof c.lsn === 'string' &&
    isLsn(c.lsn) &&
    isCount(c.seq) &&
    typeof c.ts === 'string' &&
    c.ts.length >= 20 &&
    (c.rows === undefined || isCount(c.rows)) &&
    (c.unchanged === undefined || (c.unchanged as number[]).every(isCount)) &&
    (c.ref === undefined || (typeof c.ref === 'string' && c.ref.length > 0))
  );
}

class CsvSyntaxError extends Error {
  override readonly name = 'CsvSyntaxError';
  constructor(
    readonly record: number,
    reason: string,
  ) {
    super(`record ${record}: ${reason}`);
  }
}

/**
 * RFC 4180 records with `\n` (or `\r\n`) line ends, telling an empty unquoted field (NULL) from
 * `""` (the empty string). csv-parse can tell them apart only through its per-field `cast`
 * callback, which made decoding 8× slower (13,000 rows × 17 fields: 5.2 s with the callback, 0.66 s
 * without, measured on the 2-core CI machine), so the codec reads its own format with this loop.
 */
export function parseCsvRecords(text: string): (string | null)[][] {
  const records: (string | null)[][] = [];
  const n = text.length;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0; // a byte-order mark is not data
  let record: (string | null)[] = [];
  // Character codes, not one-character strings; an unquoted field is scanned once (its end and
  // any quote in it together).
  while (i < n) {
    let value: string | null;
    if (text.charCodeAt(i) === QUOTE) {
      let out = '';
      let start = i + 1;
      for (;;) {
        const q = text.indexOf('"', start);
        if (q < 0) throw new CsvSyntaxError(records.length + 1, 'unterminated quoted field');
        if (text.charCodeAt(q + 1) === QUOTE) {
          out += text.slice(start, q + 1);
          start = q + 2;
          continue;
        }
        out += text.slice(start, q);
        i = q + 1;
        break;
      }
      value = out;
    } else {
      let end = i;
      let quoted = false;
      for (; end < n; end++) {
        const c = text.charCodeAt(end);
        if (c === COMMA || c === LF || c === CR) break;
        if (c === QUOTE) quoted = true;
      }
      if (quoted) throw new CsvSyntaxError(records.length + 1, 'quote inside an unquoted field');
      value = end === i ? null : text.slice(i, end);
      i = end;
    }
    record.push(value);
    if (i >= n) break;
    if (text.charCodeAt(i) === COMMA) {
      i++;
      const next = text.charCodeAt(i); // NaN past the end
      if (i >= n || next === LF || next === CR)
        record.push(null); // trailing empty field
      else continue;
    }
    if (text.charCodeAt(i) === CR) i++;
    if (i < n && text.charCodeAt(i) !== LF)
      throw new CsvSyntaxError(records.length + 1, `unexpected ${JSON.stringify(text[i])} after a field`);
    i++;
    records.push(record);
    record = [];
  }
  if (record.length > 0) records.push(record);
  return records;
}

const QUOTE = 0x22;
const COMMA = 0x2c;
const LF = 0x0a;
const CR = 0x0d;

/*
 * Where objects live in the ingestion bucket. The Firehose prefix expressions are the single source
 * of truth: the CDK stack hands them to Firehose, the local delivery stream evaluates them itself.
 * https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html
 */

/** Top folder of the data objects: the source system. */
export const INGESTION_ROOT = 'totesys';
/** Top folder of the schema objects; the underscore sorts it apart from data. */
export const SCHEMA_OBJECT_ROOT = '_schemas';

/** Partition keys the record-transformation function returns for every record. */
export interface IngestionPartitionKeys {
  table: string;
  /** Fingerprint of the column layout (`schemaFingerprint`). */
  schema: string;
}

/** `totesys/<table>/schema=<fingerprint>/yyyy/MM/dd/HH/` (UTC). */
export const INGESTION_PREFIX =
  `${INGESTION_ROOT}/!{partitionKeyFromLambda:table}/schema=!{partitionKeyFromLambda:schema}/` +
  '!{timestamp:yyyy/MM/dd/HH}/';
/** Where Firehose puts records it could not deliver (`processing-failed` for transformation failures). */
export const INGESTION_ERROR_PREFIX = 'errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/';

export function schemaObjectKey(table: string, fingerprint: string): string {
  return `${SCHEMA_OBJECT_ROOT}/${table}/${fingerprint}.json`;
}

const DATA_KEY = new RegExp(
  `^${INGESTION_ROOT}/([^/]+)/schema=([0-9a-f]{16})/(\\d{4})/(\\d{2})/(\\d{2})/(\\d{2})/[^/]+$`,
);

/** The table and fingerprint of a data object, from its key; undefined for any other key. */
export function parseDataObjectKey(key: string): { table: string; fingerprint: string } | undefined {
  const m = DATA_KEY.exec(key);
  return m ? { table: m[1], fingerprint: m[2] } : undefined;
}

/**
 * Table names become one S3 key segment. Postgres allows almost anything in a quoted identifier;
 * a name with `/`, `=`, white space or control characters would corrupt the layout, so such a table
 * is refused (its records fail transformation, loudly) rather than silently renamed.
 */
export function isLayoutSafeTableName(table: string): boolean {
  return /^[A-Za-z0-9_$][A-Za-z0-9_$.-]{0,127}$/.test(table);
}
