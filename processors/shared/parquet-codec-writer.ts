import type { Writable } from 'node:stream';
import { ParquetEnvelopeWriter, type ParquetSchema } from '@dsnp/parquetjs';
import * as thrift from '@dsnp/parquetjs/dist/gen-nodejs/parquet_types';
import type { ParquetField } from '@dsnp/parquetjs/dist/lib/declare';
import { serializeThrift } from '@dsnp/parquetjs/dist/lib/util';
import type { WarehouseRow, WarehouseValue } from '../../core/warehouse-model';
import { serializeCompact } from './parquet-codec-thrift';

const serialize = (obj: Thrift): Buffer => serializeCompact(obj, serializeThrift);

/**
 * A column-at-a-time Parquet writer for the codec's flat files (every column an OPTIONAL leaf,
 * PLAIN, uncompressed, data page v2 — what @dsnp/parquetjs writes for the schemas of
 * parquet-codec.ts), byte for byte the file the library writes from the same rows but for the
 * statistics (see "Statistics" below), which the library gets wrong.
 *
 * The library holds a row group as a JS array per column of converted values (a Date per date, a
 * Buffer per money value, a BigInt per 64-bit integer), a Set of distinct values per column
 * (objects included), and a definition and a repetition level per value; at a page it spreads the
 * Set to find the statistics (its distinct count is not written here: "Statistics"), makes a
 * Buffer per text value and copies them all into another, and at a row group it concatenates the
 * column chunks one by one (quadratic in the columns). In the
 * 1M-row cold start that was the transform's Parquet encoding (4.9 s) and much of the garbage
 * collector's 8.6 s (bench/README.md, bench:transform section).
 *
 * Here each column's values are written straight into one reused byte buffer in their PLAIN form,
 * and the page's minimum and maximum are kept as the values arrive. Only the page and
 * column-chunk metadata is built with the library's own Thrift types, the same way as
 * lib/writer.js (encodePages, encodeDataPageV2, encodeColumnChunk, encodeRowGroup), and the file's
 * header, page indexes and footer are the library's ParquetEnvelopeWriter's.
 * parquet-codec.write.test.ts holds the two to the same file but for the statistics.
 *
 * Statistics (each page's, each column chunk's, the column index's) follow the Parquet spec
 * (parquet.thrift, ColumnOrder): min_value and max_value in the order each column's type defines,
 * and the footer says so (column_orders: TYPE_ORDER for every column), as the spec asks of a file
 * that writes them. The library's are wrong in four ways, which engines that skip row groups or
 * pages by their bounds (Athena/Trino, Spark, DuckDB) would act on, e.g. skip every row group
 * for `payment_amount < 0`:
 * - DECIMAL (money, a FIXED_LEN_BYTE_ARRAY of two's complement) is compared as unsigned bytes, so
 *   -5.00 sorts above 3.00; the spec's order is signed comparison of the represented value. Here
 *   the unscaled value (cents) is compared as a number.
 * - UTF8 is compared by JS `<`, in UTF-16 code units, which puts characters beyond U+FFFF
 *   (surrogate pairs) before U+E000–U+FFFF; the spec's order is unsigned byte-wise comparison of
 *   the UTF-8, the order of code points. Here text of ASCII only (nearly all) is still compared by
 *   `<`, which agrees with that order whenever one side is ASCII (see utf8Before); other text as
 *   the file holds it (decoded from its written bytes) by code point.
 * - The deprecated `min` and `max`, "determined by signed comparison" (parquet.thrift), are set to
 *   the same values for every column, UTF8 too, whose order is unsigned: here they are written
 *   only for the columns whose order is signed (all but UTF8), as parquet-mr and Arrow write them.
 * The column index calls a page a null page (one readers skip) when the chunk's NULLs so far, not
 * the page's, are as many as its values: wrong from a row group's second page on; here the page's.
 * (Not statistics, but read with them to skip pages: the offset index's first_row_index, which the
 * library writes as 0 for every page; here the page's first row.)
 * And no distinct_count is written, for any column (the library's is the number of values for
 * dates and money, whose Set holds a new object per value). It is optional in the spec; Arrow's C++
 * writer never writes it (apache/arrow#36505), arrow-rs only behind an option that is off by
 * default (apache/arrow-rs#10654), DuckDB not (duckdb/duckdb#4182); nothing here reads it: not the codec's reader, the load, or the
 * engines that skip by statistics (they use min, max and null counts). Counting it took a Set of
 * every value per column and page, and the Sets' union per column chunk: ~12% of the transform's
 * CPU and much of its garbage (bench/README.md, "Transform CPU, session 9").
 * INT32, INT64, DATE, TIME_MILLIS (signed) and BOOLEAN (false before true) the library compared
 * as numbers already; they are unchanged.
 */

export type ColumnKind = 'INT32' | 'INT64' | 'UTF8' | 'DATE' | 'TIME_MILLIS' | 'BOOLEAN' | 'DECIMAL';

/** A non-NULL value → what the column stores: see ColumnBuffer.add. */
export interface ColumnSpec {
  name: string;
  kind: ColumnKind;
  /** The canonical value as its PLAIN number (DATE: days, TIME_MILLIS: ms, DECIMAL: cents). */
  toNumber?: (value: Exclude<WarehouseValue, null | undefined>, column: string) => number;
  /** Throws the codec's error for a value of the wrong JS type. */
  refuse: (column: string, value: unknown, what: string) => never;
}

type Thrift = Record<string, unknown>;
const T = thrift as unknown as Record<string, new () => Thrift> & {
  FieldRepetitionType: Record<string, number>;
  ConvertedType: Record<string, number>;
  PageType: Record<string, number>;
  Encoding: Record<string, number>;
  Type: Record<string, number>;
  CompressionCodec: Record<string, number>;
};
const TWO_32 = 2 ** 32;
const DECIMAL_BYTES = 5;
const EMPTY = Buffer.alloc(0);

/** A minimum or maximum in comparable form: see ColumnBuffer.see. */
type Key = number | string | boolean;

interface Page {
  /** The page header, its definition levels and its values: the page's bytes, in order. */
  pieces: [Buffer, Buffer, Buffer];
  length: number;
  /** The page's minimum and maximum (comparable form), undefined when it holds only NULLs. */
  min: Key | undefined;
  max: Key | undefined;
  /** The same as the statistics write them (PLAIN bytes; text: its UTF-8). */
  minBytes: Buffer | undefined;
  maxBytes: Buffer | undefined;
  nulls: number;
  first_row_index: number;
  /** Rows in the page. */
  rows: number;
  num_values: number;
}

/**
 * Whether text `a` comes before `b` in UTF-8 byte order, which is the order of code points (for
 * well-formed text: the writer's is decoded from the UTF-8 it wrote). JS's `<` compares UTF-16
 * code units, which differ from code points only where a surrogate (D800–DFFF, half of a code
 * point above U+FFFF) meets a unit of E000–FFFF: there the surrogate's code point is the greater.
 * Before the first unit where the two differ both strings are alike, so both units are in the
 * same place of a pair; an ASCII unit there, or an end, orders the same both ways.
 */
function utf8Before(a: string, b: string): boolean {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800 && x < 0xe000 !== y < 0xe000) return y < 0xe000;
    return x < y;
  }
  return a.length < b.length;
}

/** Appends `value` as a varint (the `varint` package's encoding, which the library's RLE uses). */
function pushVarint(out: number[], value: number): void {
  let n = value;
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
}

const levelBytes: number[] = [];

/**
 * `levels[0..count)` (each 0 or 1) as lib/codec/rle.js encodeValues writes them for a bit width of
 * 1 without its length envelope (disableEnvelope): byte for byte the same runs, decided the same
 * way (a repeated run starts only where the bit-packed values so far are a multiple of 8 and the
 * next value repeats; bit-packed runs are padded to 8 values with 0), without its per-value
 * arrays and a Buffer.concat per run. parquet-codec.write.test.ts compares the two.
 */
export function encodeLevels(levels: Uint8Array, count: number): Buffer {
  const out = levelBytes;
  out.length = 0;
  // One value throughout (a column without NULLs, or of NULLs only): one repeated run.
  let same = 1;
  while (same < count && levels[same] === levels[0]) same++;
  if (count > 1 && same === count) {
    pushVarint(out, count * 2);
    out.push(levels[0]);
    return Buffer.from(out);
  }
  let runStart = 0;
  let runLength = 0;
  let repeats = 0;
  const bitpacked = () => {
    const groups = Math.ceil(runLength / 8);
    pushVarint(out, (groups << 1) | 1);
    for (let g = 0; g < groups; g++) {
      let byte = 0;
      for (let b = 0; b < 8; b++) {
        const i = g * 8 + b;
        if (i < runLength && levels[runStart + i]) byte |= 1 << b;
      }
      out.push(byte);
    }
  };
  const repeated = (value: number, times: number) => {
    pushVarint(out, times * 2);
    out.push(value & 0xff);
  };
  for (let i = 0; i < count; i++) {
    const value = levels[i];
    if (repeats === 0 && runLength % 8 === 0 && i + 1 < count && value === levels[i + 1]) {
      if (runLength) {
        bitpacked();
        runLength = 0;
      }
      repeats = 1;
    } else if (repeats > 0 && value === levels[i - 1]) repeats += 1;
    else {
      if (repeats) {
        repeated(levels[i - 1], repeats);
        repeats = 0;
      }
      if (runLength === 0) runStart = i;
      runLength += 1;
    }
  }
  if (repeats) repeated(levels[count - 1], repeats);
  else if (runLength) bitpacked();
  return Buffer.from(out);
}

/**
 * `buffer.write(text, at)`, whose room the caller has made. Buffer#write validates its arguments
 * in JS before it calls the buffer's native utf8Write, which Node has always given Buffers
 * (lib/internal/buffer.js) but does not document: that validation was half of the time of
 * writing a text value (bench:transform, "Transform CPU, session 13"). Buffer#write when absent.
 */
const nativeUtf8Write = (
  Buffer.prototype as unknown as {
    utf8Write?: (this: Buffer, text: string, offset: number, length?: number) => number;
  }
).utf8Write;
const utf8Write: (buffer: Buffer, text: string, at: number) => number =
  typeof nativeUtf8Write === 'function'
    ? (buffer, text, at) => nativeUtf8Write.call(buffer, text, at, buffer.length - at)
    : (buffer, text, at) => buffer.write(text, at);

/** One column of the open row group. */
class ColumnBuffer {
  /**
   * The chunk's values, page after page (a page's are in place until the row group is written:
   * flush copies them once, into the row group's bytes).
   */
  private bytes = Buffer.allocUnsafe(4096);
  private at = 0;
  /** Where the open page's values start in `bytes`. */
  private pageStart = 0;
  /** The open page's definition levels, one per value (1) or NULL (0). */
  private levels = new Uint8Array(1024);
  private count = 0;
  private values = 0;
  /**
   * Minimum and maximum of the page in comparable form, in the order of the column's type
   * (Statistics above): numbers (DATE: days, TIME_MILLIS: ms, DECIMAL: cents), booleans, text.
   */
  private min: Key | undefined;
  private max: Key | undefined;
  pages: Page[] = [];
  /** The column's order is signed (all but text): the deprecated min and max are written. */
  private readonly signed: boolean;

  constructor(
    readonly spec: ColumnSpec,
    readonly field: ParquetField,
  ) {
    this.signed = spec.kind !== 'UTF8';
  }

  /** Whether `a` comes before `b` in the column's order. */
  private before(a: Key, b: Key): boolean {
    return this.spec.kind === 'UTF8' ? utf8Before(a as string, b as string) : a < b;
  }

  private level(level: number): void {
    if (this.count === this.levels.length) {
      const grown = new Uint8Array(this.levels.length * 2);
      grown.set(this.levels);
      this.levels = grown;
    }
    this.levels[this.count++] = level;
  }

  private room(bytes: number): void {
    if (this.at + bytes <= this.bytes.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.at + bytes));
    this.bytes.copy(grown, 0, 0, this.at);
    this.bytes = grown;
  }

  /**
   * Keeps the minimum and maximum, by `<` and `>` (which for text of ASCII only agree with UTF-8
   * byte order: utf8Before) unless `text` (other text: utf8Before).
   */
  private see(key: Key, text = false): void {
    if (this.min === undefined) {
      this.min = key;
      this.max = key;
    } else if (!text) {
      if (key > this.max!) this.max = key;
      if (this.min > key) this.min = key;
    } else {
      if (utf8Before(this.max as string, key as string)) this.max = key;
      if (utf8Before(key as string, this.min as string)) this.min = key;
    }
  }

  add(value: WarehouseValue | undefined): void {
    if (value === null || value === undefined) {
      this.level(0);
      return;
    }
    const { spec } = this;
    switch (spec.kind) {
      case 'UTF8': {
        if (typeof value !== 'string') return spec.refuse(spec.name, value, 'text');
        this.room(4 + value.length * 3);
        const n = utf8Write(this.bytes, value, this.at + 4);
        this.bytes.writeUInt32LE(n, this.at);
        this.at += 4 + n;
        if (n === value.length) this.see(value);
        // Not ASCII: as the file holds it (a lone surrogate was written as U+FFFD).
        else this.see(this.bytes.toString('utf8', this.at - n, this.at), true);
        break;
      }
      case 'INT32': {
        if (
          typeof value !== 'number' ||
          !Number.isInteger(value) ||
          value < -0x80000000 ||
          value > 0x7fffffff
        )
          return spec.refuse(spec.name, value, 'an int4');
        this.room(4);
        this.bytes.writeInt32LE(value, this.at);
        this.at += 4;
        this.see(value);
        break;
      }
      case 'DATE':
      case 'TIME_MILLIS': {
        const n = spec.toNumber!(value, spec.name);
        this.room(4);
        this.bytes.writeInt32LE(n, this.at);
        this.at += 4;
        this.see(n);
        break;
      }
      case 'INT64': {
        if (typeof value !== 'number' || !Number.isSafeInteger(value))
          return spec.refuse(spec.name, value, 'a safe integer');
        this.room(8);
        const high = Math.floor(value / TWO_32);
        this.bytes.writeUInt32LE(value - high * TWO_32, this.at);
        this.bytes.writeInt32LE(high, this.at + 4);
        this.at += 8;
        this.see(value);
        break;
      }
      case 'DECIMAL': {
        const cents = spec.toNumber!(value, spec.name);
        this.room(DECIMAL_BYTES);
        this.bytes.writeIntBE(cents, this.at, DECIMAL_BYTES);
        this.at += DECIMAL_BYTES;
        // Signed, by the represented value (the library compared the bytes, unsigned).
        this.see(cents);
        break;
      }
      case 'BOOLEAN': {
        if (typeof value !== 'boolean') return spec.refuse(spec.name, value, 'a boolean');
        // PLAIN booleans are bits; kept one per byte here and packed at the page.
        this.room(1);
        this.bytes[this.at++] = value ? 1 : 0;
        this.see(value);
        break;
      }
    }
    this.values += 1;
    this.level(1);
  }

  /**
   * A minimum or maximum as the statistics hold it: its PLAIN bytes (text: its UTF-8), what
   * lib/writer.js' encodeStatisticsValue makes of the library's values (a Date, a BigInt, a Buffer).
   */
  private keyBytes(key: Key): Buffer {
    switch (this.spec.kind) {
      case 'UTF8':
        return Buffer.from(key as string, 'utf8');
      case 'INT64': {
        const bytes = Buffer.allocUnsafe(8);
        const value = key as number;
        const high = Math.floor(value / TWO_32);
        bytes.writeUInt32LE(value - high * TWO_32, 0);
        bytes.writeInt32LE(high, 4);
        return bytes;
      }
      case 'DECIMAL': {
        const bytes = Buffer.allocUnsafe(DECIMAL_BYTES);
        bytes.writeIntBE(key as number, 0, DECIMAL_BYTES);
        return bytes;
      }
      case 'BOOLEAN':
        return Buffer.from([key ? 1 : 0]);
      default: {
        const bytes = Buffer.allocUnsafe(4);
        bytes.writeInt32LE(key as number, 0);
        return bytes;
      }
    }
  }

  /** lib/writer.js encodePages and encodeDataPageV2, for this column: the page, kept until its row group. */
  endPage(rows: number): void {
    const { field, count } = this;
    const nulls = count - this.values;
    const minBytes = this.min === undefined ? undefined : this.keyBytes(this.min);
    const maxBytes = this.max === undefined ? undefined : this.keyBytes(this.max);
    const valuesBuf =
      this.spec.kind === 'BOOLEAN' ? this.packedBooleans() : this.bytes.subarray(this.pageStart, this.at);
    const dLevelsBuf = encodeLevels(this.levels, count);
    const header = new T.PageHeader();
    header.type = T.PageType.DATA_PAGE_V2;
    const v2 = new T.DataPageHeaderV2();
    header.data_page_header_v2 = v2;
    v2.num_values = count;
    v2.num_nulls = nulls;
    v2.num_rows = rows;
    v2.statistics = statisticsOf(nulls, minBytes, maxBytes, this.signed);
    header.uncompressed_page_size = dLevelsBuf.length + valuesBuf.length;
    header.compressed_page_size = dLevelsBuf.length + valuesBuf.length;
    v2.encoding = T.Encoding[field.encoding!];
    v2.definition_levels_byte_length = dLevelsBuf.length;
    v2.repetition_levels_byte_length = 0;
    v2.is_compressed = false;
    const headerBuf = serialize(header);

    const lastPage = this.pages[this.pages.length - 1];
    this.pages.push({
      pieces: [headerBuf, dLevelsBuf, valuesBuf],
      length: headerBuf.length + dLevelsBuf.length + valuesBuf.length,
      min: this.min,
      max: this.max,
      minBytes,
      maxBytes,
      nulls,
      // The row group's rows before the page. (The library adds a `count` its pages do not have:
      // NaN from the second page on, written as 0, so a reader skipping pages by the offset index
      // would take the second page's rows for the first's.)
      first_row_index: lastPage ? lastPage.first_row_index + lastPage.rows : 0,
      rows,
      num_values: count,
    });
    // A boolean page's values were packed into a buffer of their own; the rest stay in place.
    if (this.spec.kind === 'BOOLEAN') this.at = 0;
    this.pageStart = this.at;
    this.values = 0;
    this.count = 0;
    this.min = undefined;
    this.max = undefined;
  }

  private packedBooleans(): Buffer {
    const packed = Buffer.alloc(Math.ceil(this.at / 8));
    for (let i = 0; i < this.at; i++) if (this.bytes[i]) packed[i >> 3] |= 1 << (i & 7);
    return packed;
  }

  /**
   * lib/writer.js encodeColumnChunk: the chunk's pages and its metadata, at `baseOffset` of the
   * file. The pages' values are views of the column's buffer, valid until the next value is added.
   */
  endChunk(baseOffset: number): { body: Buffer[]; length: number; metadata: Thrift; metadataOffset: number } {
    const { field, pages } = this;
    this.pages = [];
    this.at = 0;
    this.pageStart = 0;
    let pagesLength = 0;
    for (const p of pages) pagesLength += p.length;
    let numValues = 0;
    for (const p of pages) numValues += p.num_values;
    let offset = baseOffset;
    const metadata = new T.ColumnMetaData();
    metadata.path_in_schema = field.path;
    metadata.num_values = numValues;
    metadata.data_page_offset = baseOffset;
    const encodings: number[] = [];
    metadata.encodings = encodings;
    metadata.total_uncompressed_size = pagesLength;
    metadata.total_compressed_size = pagesLength;
    metadata.type = T.Type[field.primitiveType!];
    metadata.codec = T.CompressionCodec[field.compression!];
    const columnIndex = new T.ColumnIndex();
    const nullPages: boolean[] = [];
    const maxValues: Buffer[] = [];
    const minValues: Buffer[] = [];
    columnIndex.null_pages = nullPages;
    columnIndex.max_values = maxValues;
    columnIndex.min_values = minValues;
    columnIndex.boundary_order = 0;
    const offsetIndex = new T.OffsetIndex();
    const locations: Thrift[] = [];
    offsetIndex.page_locations = locations;
    let nulls = 0;
    // The chunk's bounds: its pages' (the library compared their Buffers unsigned, text by `<`).
    let min: Page | undefined;
    let max: Page | undefined;
    const body: Buffer[] = [];
    for (let i = 0; i < pages.length; i++) {
      const page = pages[i];
      if (page.min !== undefined) {
        if (min === undefined || this.before(page.min, min.min!)) min = page;
        if (max === undefined || this.before(max.max!, page.max!)) max = page;
      }
      nulls += page.nulls;
      // The page's own NULLs (the library compared the chunk's so far: from the second page on, a
      // page of values could be called a null page, which readers skip, and a null page not).
      nullPages.push(page.num_values === page.nulls);
      maxValues.push(page.maxBytes ?? EMPTY);
      minValues.push(page.minBytes ?? EMPTY);
      const location = new T.PageLocation();
      location.offset = offset;
      offset += page.length;
      location.compressed_page_size = page.length;
      location.first_row_index = page.first_row_index;
      locations.push(location);
      for (const piece of page.pieces) body.push(piece);
    }
    metadata.offsetIndex = offsetIndex;
    metadata.statistics = statisticsOf(nulls, min?.minBytes, max?.maxBytes, this.signed);
    metadata.columnIndex = columnIndex;
    encodings.push(T.Encoding.RLE);
    encodings.push(T.Encoding[field.encoding!]);
    const metadataBuf = serialize(metadata);
    body.push(metadataBuf);
    return {
      body,
      length: pagesLength + metadataBuf.length,
      metadata,
      metadataOffset: baseOffset + pagesLength,
    };
  }
}

/**
 * lib/writer.js' statistics (encodePages, encodeColumnChunk), but for the deprecated min and max,
 * written only when `signed` (Statistics above). `min` and `max`: PLAIN bytes, undefined when the
 * page or chunk holds only NULLs.
 */
function statisticsOf(
  nulls: number,
  min: Buffer | undefined,
  max: Buffer | undefined,
  signed: boolean,
): Thrift {
  const statistics = new T.Statistics();
  statistics.null_count = nulls;
  if (min !== undefined && max !== undefined) {
    statistics.max_value = max;
    statistics.min_value = min;
    if (signed) {
      statistics.max = max;
      statistics.min = min;
    }
  }
  return statistics;
}

/** Each column kind's physical (primitive) and converted (original) Parquet type, as written. */
export const SUPPORTED: Record<ColumnKind, { primitive: string; original?: string }> = {
  INT32: { primitive: 'INT32' },
  INT64: { primitive: 'INT64' },
  UTF8: { primitive: 'BYTE_ARRAY', original: 'UTF8' },
  DATE: { primitive: 'INT32', original: 'DATE' },
  TIME_MILLIS: { primitive: 'INT32', original: 'TIME_MILLIS' },
  BOOLEAN: { primitive: 'BOOLEAN' },
  DECIMAL: { primitive: 'FIXED_LEN_BYTE_ARRAY', original: 'DECIMAL' },
};

export interface ColumnarWriter {
  /** Adds a row; true when the row group is full (call flush before the next row). */
  add(row: WarehouseRow): boolean;
  /** Writes the open row group, if it has rows. */
  flush(): Promise<void>;
  close(metadata: Record<string, string>): Promise<void>;
}

/**
 * The columnar writer of a schema's file on `sink`, or undefined when the schema is not the flat,
 * PLAIN, uncompressed one it writes (a library upgrade, another schema): the caller then uses the
 * library's writer.
 */
export async function openColumnarWriter(
  schema: ParquetSchema,
  specs: readonly ColumnSpec[],
  sink: Writable,
  options: { rowGroupRows: number },
): Promise<ColumnarWriter | undefined> {
  if (schema.fieldList.length !== specs.length) return undefined;
  const fields: ParquetField[] = [];
  for (const spec of specs) {
    const field = schema.fields[spec.name];
    const expected = SUPPORTED[spec.kind];
    if (
      !field ||
      field.isNested ||
      field.repetitionType !== 'OPTIONAL' ||
      field.rLevelMax !== 0 ||
      field.dLevelMax !== 1 ||
      field.encoding !== 'PLAIN' ||
      field.compression !== 'UNCOMPRESSED' ||
      field.statistics === false ||
      field.primitiveType !== expected.primitive ||
      field.originalType !== expected.original ||
      (spec.kind === 'DECIMAL' && field.typeLength !== DECIMAL_BYTES)
    )
      return undefined;
    fields.push(field);
  }
  const envelope = await ParquetEnvelopeWriter.openStream(
    schema,
    sink as unknown as Parameters<typeof ParquetEnvelopeWriter.openStream>[1],
    {},
  );
  const internal = envelope as unknown as {
    offset: { valueOf(): number };
    rowCount: { valueOf(): number; setValue(n: number): void };
    rowGroups: Thrift[];
    pageSize: number;
    useDataPageV2: boolean;
    pageIndex: boolean | undefined;
    writeSection(buf: Buffer): Promise<unknown>;
  };
  // Nothing is written yet: the caller can still open the library's writer on the sink.
  if (
    internal.useDataPageV2 !== true ||
    internal.pageIndex === false ||
    typeof internal.pageSize !== 'number'
  )
    return undefined;
  await envelope.writeHeader();
  const columns = specs.map((spec, i) => new ColumnBuffer(spec, fields[i]));
  const names = specs.map((s) => s.name);
  const { pageSize } = internal;
  let groupRows = 0;
  let pageRows = 0;

  function endPage(): void {
    if (pageRows === 0) return;
    for (const column of columns) column.endPage(pageRows);
    pageRows = 0;
  }

  return {
    add(row) {
      for (let i = 0; i < columns.length; i++) columns[i].add(row[names[i]]);
      groupRows += 1;
      pageRows += 1;
      if (pageRows >= pageSize) endPage();
      return groupRows >= options.rowGroupRows;
    },
    flush,
    async close(userMetadata) {
      await flush();
      await writeIndexAndFooter(internal, schema, userMetadata);
      await envelope.close();
    },
  };

  async function flush(): Promise<void> {
    if (groupRows === 0) return;
    endPage();
    // lib/writer.js encodeRowGroup, its column chunks concatenated once.
    const metadata = new T.RowGroup();
    metadata.num_rows = groupRows;
    const chunks: Thrift[] = [];
    metadata.columns = chunks;
    const base = internal.offset.valueOf();
    const body: Buffer[] = [];
    let length = 0;
    for (const column of columns) {
      const chunk = column.endChunk(base + length);
      // Not `new ColumnChunk()`: its constructor makes an Int64 for file_offset (set just below),
      // and node-int64 calls the deprecated `new Buffer(8)`, whose check walks the stack.
      const cchunk = Object.create(T.ColumnChunk.prototype) as Thrift;
      cchunk.file_offset = chunk.metadataOffset;
      cchunk.meta_data = chunk.metadata;
      chunks.push(cchunk);
      for (const b of chunk.body) body.push(b);
      length += chunk.length;
    }
    metadata.total_byte_size = length;
    internal.rowCount.setValue(internal.rowCount.valueOf() + groupRows);
    internal.rowGroups.push(metadata);
    groupRows = 0;
    await internal.writeSection(Buffer.concat(body, length));
  }
}

/**
 * lib/writer.js ParquetEnvelopeWriter writeIndex and writeFooter (encodeFooter), with the Thrift
 * serialised by serializeCompact and the indexes written in one piece.
 */
async function writeIndexAndFooter(
  envelope: {
    offset: { valueOf(): number };
    rowCount: unknown;
    rowGroups: Thrift[];
    writeSection(buf: Buffer): Promise<unknown>;
  },
  schema: ParquetSchema,
  userMetadata: Record<string, string>,
): Promise<void> {
  const pieces: Buffer[] = [];
  let length = 0;
  const base = envelope.offset.valueOf();
  schema.fieldList.forEach((_field, i) => {
    for (const group of envelope.rowGroups) {
      const column = (group.columns as Thrift[])[i];
      if (!column) continue;
      const meta = column.meta_data as Thrift | undefined;
      if (!meta) continue;
      for (const [index, prefix] of [
        ['columnIndex', 'column_index'],
        ['offsetIndex', 'offset_index'],
      ] as const) {
        if (!meta[index]) continue;
        const body = serialize(meta[index] as Thrift);
        delete meta[index];
        column[`${prefix}_offset`] = base + length;
        column[`${prefix}_length`] = body.length;
        pieces.push(body);
        length += body.length;
      }
    }
  });
  if (length > 0) await envelope.writeSection(Buffer.concat(pieces, length));

  const metadata = new T.FileMetaData();
  metadata.version = 1;
  metadata.created_by = '@dsnp/parquetjs';
  metadata.num_rows = envelope.rowCount;
  metadata.row_groups = envelope.rowGroups;
  const elements: Thrift[] = [];
  metadata.schema = elements;
  const keyValues: Thrift[] = [];
  metadata.key_value_metadata = keyValues;
  for (const k in userMetadata) {
    const kv = new T.KeyValue();
    kv.key = k;
    kv.value = userMetadata[k];
    keyValues.push(kv);
  }
  const root = new T.SchemaElement();
  root.name = 'root';
  root.num_children = Object.keys(schema.fields).length;
  elements.push(root);
  for (const field of schema.fieldList) {
    const element = new T.SchemaElement();
    element.name = field.name;
    element.repetition_type = T.FieldRepetitionType[field.repetitionType];
    if (field.isNested) element.num_children = field.fieldCount;
    else element.type = T.Type[field.primitiveType!];
    if (field.originalType) element.converted_type = T.ConvertedType[field.originalType];
    if (element.converted_type === T.ConvertedType.DECIMAL) {
      element.precision = field.precision;
      element.scale = field.scale || 0;
    }
    element.type_length = field.typeLength;
    elements.push(element);
  }
  // Every column's min_value and max_value are in its type's order (Statistics above); without
  // column_orders their meaning is undefined (parquet.thrift, FileMetaData). Every field is a leaf.
  const orders: Thrift[] = [];
  metadata.column_orders = orders;
  for (let i = 0; i < schema.fieldList.length; i++) {
    const order = new T.ColumnOrder();
    order.TYPE_ORDER = new T.TypeDefinedOrder();
    orders.push(order);
  }
  const encoded = serialize(metadata);
  const footer = Buffer.alloc(encoded.length + 8);
  encoded.copy(footer);
  footer.writeUInt32LE(encoded.length, encoded.length);
  footer.write('PAR1', encoded.length + 4);
  await envelope.writeSection(footer);
}
