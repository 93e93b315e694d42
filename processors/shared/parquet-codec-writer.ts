import type { Writable } from 'node:stream';
import { ParquetEnvelopeWriter, type ParquetSchema } from '@dsnp/parquetjs';
import * as thrift from '@dsnp/parquetjs/dist/gen-nodejs/parquet_types';
import * as codec from '@dsnp/parquetjs/dist/lib/codec';
import type { ParquetField } from '@dsnp/parquetjs/dist/lib/declare';
import { toPrimitive } from '@dsnp/parquetjs/dist/lib/types';
import { cloneInteger, getBitWidth, serializeThrift } from '@dsnp/parquetjs/dist/lib/util';
import Int64 from 'node-int64';
import type { WarehouseRow, WarehouseValue } from '../../core/warehouse-model';
import { serializeCompact } from './parquet-codec-thrift';

const serialize = (obj: Thrift): Buffer => serializeCompact(obj, serializeThrift);

/**
 * A column-at-a-time Parquet writer for the codec's flat files (every column an OPTIONAL leaf,
 * PLAIN, uncompressed, data page v2 — what @dsnp/parquetjs writes for the schemas of
 * parquet-codec.ts), byte for byte the file the library writes from the same rows.
 *
 * The library holds a row group as a JS array per column of converted values (a Date per date, a
 * Buffer per money value, a BigInt per 64-bit integer), a Set of distinct values per column
 * (objects included), and a definition and a repetition level per value; at a page it spreads the
 * Set to find the statistics, makes a Buffer per text value and copies them all into another, and
 * at a row group it concatenates the column chunks one by one (quadratic in the columns). In the
 * 1M-row cold start that was the transform's Parquet encoding (4.9 s) and much of the garbage
 * collector's 8.6 s (bench/README.md, bench:transform section).
 *
 * Here each column's values are written straight into one reused byte buffer in their PLAIN form,
 * the page's minimum and maximum are kept as the values arrive, and the distinct count (which the
 * statistics carry) is counted the way the library's Set counts it: by value for numbers, text and
 * booleans; for dates and money, where the library's Set holds a new object per value, it is the
 * number of values. Only the page and column-chunk metadata is built with the library's own Thrift
 * types, the same way as lib/writer.js (encodePages, encodeDataPageV2, encodeColumnChunk,
 * encodeRowGroup), and the file's header, page indexes and footer are the library's
 * ParquetEnvelopeWriter's. parquet-codec.write.test.ts holds the two to identical bytes.
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
const RLE = codec.RLE as unknown as {
  encodeValues(type: string, values: number[], opts: Record<string, unknown>): Buffer;
};
const PLAIN = codec.PLAIN as unknown as {
  encodeValues(type: string, values: unknown[], opts: Record<string, unknown>): Buffer;
};

const MS_PER_DAY = 86_400_000;
const TWO_32 = 2 ** 32;
const TWO_40 = 2 ** 40;
const DECIMAL_BYTES = 5;

/** What the library's statistics hold for a page (lib/writer.js encodePages). */
interface PageStatistics {
  max_value?: unknown;
  min_value?: unknown;
  null_count: Int64;
  distinct_count: Int64;
}

interface Page {
  page: Buffer;
  statistics: PageStatistics;
  first_row_index: number;
  /** The page's distinct values (a Set, as the library's), or their number when each value is distinct. */
  distinct: Set<unknown> | number;
  num_values: number;
}

/** One column of the open row group. */
class ColumnBuffer {
  private bytes = Buffer.allocUnsafe(4096);
  private at = 0;
  private readonly dlevels: number[] = [];
  private values = 0;
  private distinct: Set<unknown> | undefined;
  private last: unknown = undefined;
  /** Minimum and maximum of the page in comparable form (DECIMAL: its bytes as an unsigned number). */
  private min: number | string | boolean | undefined;
  private max: number | string | boolean | undefined;
  pages: Page[] = [];
  private readonly byValue: boolean;

  constructor(
    readonly spec: ColumnSpec,
    readonly field: ParquetField,
  ) {
    this.byValue = spec.kind !== 'DATE' && spec.kind !== 'DECIMAL';
    if (this.byValue) this.distinct = new Set();
  }

  private room(bytes: number): void {
    if (this.at + bytes <= this.bytes.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.at + bytes));
    this.bytes.copy(grown, 0, 0, this.at);
    this.bytes = grown;
  }

  /** Counts a distinct value and keeps the minimum and maximum (by `>`, as the library compares). */
  private see(key: number | string | boolean, distinctKey: unknown): void {
    if (this.byValue) {
      if (distinctKey === this.last && this.values > 0) return;
      this.last = distinctKey;
      const set = this.distinct!;
      const size = set.size;
      set.add(distinctKey);
      if (set.size === size) return;
    }
    if (this.min === undefined) {
      this.min = key;
      this.max = key;
    } else {
      if (key > this.max!) this.max = key;
      if (this.min > key) this.min = key;
    }
  }

  add(value: WarehouseValue | undefined): void {
    if (value === null || value === undefined) {
      this.dlevels.push(0);
      return;
    }
    const { spec } = this;
    switch (spec.kind) {
      case 'UTF8': {
        if (typeof value !== 'string') return spec.refuse(spec.name, value, 'text');
        this.room(4 + value.length * 3);
        const n = this.bytes.write(value, this.at + 4);
        this.bytes.writeUInt32LE(n, this.at);
        this.at += 4 + n;
        this.see(value, value);
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
        this.see(value, value);
        break;
      }
      case 'DATE':
      case 'TIME_MILLIS': {
        const n = spec.toNumber!(value, spec.name);
        this.room(4);
        this.bytes.writeInt32LE(n, this.at);
        this.at += 4;
        this.see(n, n);
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
        this.see(value, value);
        break;
      }
      case 'DECIMAL': {
        const cents = spec.toNumber!(value, spec.name);
        this.room(DECIMAL_BYTES);
        this.bytes.writeIntBE(cents, this.at, DECIMAL_BYTES);
        this.at += DECIMAL_BYTES;
        // The library compares money as bytes (Buffer.compare): two's complement, unsigned.
        this.see(cents < 0 ? cents + TWO_40 : cents, cents);
        break;
      }
      case 'BOOLEAN': {
        if (typeof value !== 'boolean') return spec.refuse(spec.name, value, 'a boolean');
        // PLAIN booleans are bits; kept one per byte here and packed at the page.
        this.room(1);
        this.bytes[this.at++] = value ? 1 : 0;
        this.see(value, value);
        break;
      }
    }
    this.values += 1;
    this.dlevels.push(1);
  }

  /** A comparable minimum or maximum back in the form the library's statistics hold. */
  private libraryValue(key: number | string | boolean): unknown {
    switch (this.spec.kind) {
      case 'DATE':
        return new Date((key as number) * MS_PER_DAY);
      case 'INT64':
        return BigInt(key as number);
      case 'DECIMAL': {
        const bytes = Buffer.alloc(DECIMAL_BYTES);
        bytes.writeUIntBE(key as number, 0, DECIMAL_BYTES);
        return bytes;
      }
      default:
        return key;
    }
  }

  /** lib/writer.js encodePages and encodeDataPageV2, for this column: the page, kept until its row group. */
  endPage(rows: number): void {
    const { field } = this;
    const statistics: PageStatistics = {} as PageStatistics;
    if (this.min !== undefined) {
      statistics.max_value = this.libraryValue(this.max!);
      statistics.min_value = this.libraryValue(this.min);
    }
    const count = this.dlevels.length;
    statistics.null_count = new Int64(count - this.values);
    const distinct = this.byValue ? this.distinct! : this.values;
    statistics.distinct_count = new Int64(typeof distinct === 'number' ? distinct : distinct.size);

    const valuesBuf = this.spec.kind === 'BOOLEAN' ? this.packedBooleans() : this.bytes.subarray(0, this.at);
    const dLevelsBuf = RLE.encodeValues('INT32', this.dlevels, {
      bitWidth: getBitWidth(field.dLevelMax),
      disableEnvelope: true,
    });
    const header = new T.PageHeader();
    header.type = T.PageType.DATA_PAGE_V2;
    const v2 = new T.DataPageHeaderV2();
    header.data_page_header_v2 = v2;
    v2.num_values = count;
    v2.num_nulls = count - this.values;
    v2.num_rows = rows;
    v2.statistics = encodeStatistics(statistics, field);
    header.uncompressed_page_size = dLevelsBuf.length + valuesBuf.length;
    header.compressed_page_size = dLevelsBuf.length + valuesBuf.length;
    v2.encoding = T.Encoding[field.encoding!];
    v2.definition_levels_byte_length = dLevelsBuf.length;
    v2.repetition_levels_byte_length = 0;
    v2.is_compressed = false;
    const page = Buffer.concat([serialize(header), dLevelsBuf, valuesBuf]);

    const lastPage = this.pages[this.pages.length - 1];
    this.pages.push({
      page,
      statistics,
      // As the library computes it (its pages have no `count`: NaN after the first page).
      first_row_index: lastPage
        ? lastPage.first_row_index + (lastPage as unknown as { count: number }).count
        : 0,
      distinct,
      num_values: count,
    });
    this.at = 0;
    this.values = 0;
    this.dlevels.length = 0;
    this.min = undefined;
    this.max = undefined;
    this.last = undefined;
    if (this.byValue) this.distinct = new Set();
  }

  private packedBooleans(): Buffer {
    const packed = Buffer.alloc(Math.ceil(this.at / 8));
    for (let i = 0; i < this.at; i++) if (this.bytes[i]) packed[i >> 3] |= 1 << (i & 7);
    return packed;
  }

  /** lib/writer.js encodeColumnChunk: the chunk's pages and its metadata, at `baseOffset` of the file. */
  endChunk(baseOffset: number): { body: Buffer[]; length: number; metadata: Thrift; metadataOffset: number } {
    const { field, pages } = this;
    this.pages = [];
    let pagesLength = 0;
    for (const p of pages) pagesLength += p.page.length;
    let numValues = 0;
    for (const p of pages) numValues += p.num_values;
    let offset = baseOffset;
    const metadata = new T.ColumnMetaData();
    metadata.path_in_schema = field.path;
    metadata.num_values = new Int64(numValues);
    metadata.data_page_offset = new Int64(baseOffset);
    const encodings: number[] = [];
    metadata.encodings = encodings;
    metadata.total_uncompressed_size = new Int64(pagesLength);
    metadata.total_compressed_size = new Int64(pagesLength);
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
    const statistics = {} as PageStatistics;
    statistics.null_count = new Int64(0);
    statistics.distinct_count = new Int64(0);
    for (let i = 0; i < pages.length; i++) {
      const page = pages[i];
      if (i === 0) {
        statistics.max_value = page.statistics.max_value;
        statistics.min_value = page.statistics.min_value;
      } else {
        if (page.statistics.min_value !== undefined) {
          const { min_value } = compareStatistics(page.statistics.min_value, statistics);
          if (min_value !== undefined) statistics.min_value = min_value;
        }
        if (page.statistics.max_value !== undefined) {
          const { max_value } = compareStatistics(page.statistics.max_value, statistics);
          if (max_value !== undefined) statistics.max_value = max_value;
        }
      }
      statistics.null_count.setValue(
        statistics.null_count.valueOf() + (page.statistics.null_count?.valueOf() || 0),
      );
      nullPages.push(page.num_values === statistics.null_count.valueOf());
      maxValues.push(encodeStatisticsValue(page.statistics.max_value, field));
      minValues.push(encodeStatisticsValue(page.statistics.min_value, field));
      const location = new T.PageLocation();
      location.offset = new Int64(offset);
      offset += page.page.length;
      location.compressed_page_size = page.page.length;
      location.first_row_index = new Int64(page.first_row_index);
      locations.push(location);
    }
    metadata.offsetIndex = offsetIndex;
    statistics.distinct_count = new Int64(distinctCount(pages));
    metadata.statistics = encodeStatistics(statistics, field);
    metadata.columnIndex = columnIndex;
    encodings.push(T.Encoding.RLE);
    encodings.push(T.Encoding[field.encoding!]);
    const metadataBuf = serialize(metadata);
    const body = [...pages.map((p) => p.page), metadataBuf];
    return {
      body,
      length: pagesLength + metadataBuf.length,
      metadata,
      metadataOffset: baseOffset + pagesLength,
    };
  }
}

/** The number of distinct values of a column chunk: the union of its pages' (lib/writer.js). */
function distinctCount(pages: readonly Page[]): number {
  if (pages.length === 1) {
    const only = pages[0].distinct;
    return typeof only === 'number' ? only : only.size;
  }
  let sum = 0;
  const union = new Set<unknown>();
  for (const { distinct } of pages)
    if (typeof distinct === 'number') sum += distinct;
    else for (const value of distinct) union.add(value);
  return sum + union.size;
}

// lib/writer.js' statistics helpers, as they are there.
function compareStatistics(potential: unknown, statistics: PageStatistics): Partial<PageStatistics> {
  const result: Partial<PageStatistics> = {};
  if (potential instanceof Uint8Array) {
    if (statistics.max_value !== undefined && Buffer.compare(potential, statistics.max_value as Buffer) === 1)
      result.max_value = potential;
    if (statistics.min_value !== undefined && Buffer.compare(statistics.min_value as Buffer, potential) === 1)
      result.min_value = potential;
    return result;
  }
  const p = potential as number;
  if (statistics.max_value !== undefined && p > (statistics.max_value as number))
    result.max_value = potential;
  if (statistics.min_value !== undefined && (statistics.min_value as number) > p)
    result.min_value = potential;
  return result;
}

function encodeStatisticsValue(value: unknown, column: ParquetField): Buffer {
  if (value === undefined) return Buffer.alloc(0);
  let v = value;
  if (column.originalType) v = toPrimitive(column.originalType, v, column);
  if (column.primitiveType !== 'BYTE_ARRAY')
    v = PLAIN.encodeValues(column.primitiveType!, [v], { bitWidth: column.typeLength, ...column });
  return v as Buffer;
}

function encodeStatistics(statistics: PageStatistics, column: ParquetField): Thrift {
  const s: Record<string, unknown> = { ...statistics };
  s.min_value =
    statistics.min_value === undefined ? null : encodeStatisticsValue(statistics.min_value, column);
  s.max_value =
    statistics.max_value === undefined ? null : encodeStatisticsValue(statistics.max_value, column);
  s.max = s.max_value;
  s.min = s.min_value;
  return new (thrift.Statistics as unknown as new (args: unknown) => Thrift)(s);
}

const SUPPORTED: Record<ColumnKind, { primitive: string; original?: string }> = {
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
    offset: Int64;
    rowCount: Int64;
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
    metadata.num_rows = new Int64(groupRows);
    const chunks: Thrift[] = [];
    metadata.columns = chunks;
    const base = internal.offset.valueOf();
    const body: Buffer[] = [];
    let length = 0;
    for (const column of columns) {
      const chunk = column.endChunk(base + length);
      const cchunk = new T.ColumnChunk();
      cchunk.file_offset = new Int64(chunk.metadataOffset);
      cchunk.meta_data = chunk.metadata;
      chunks.push(cchunk);
      for (const b of chunk.body) body.push(b);
      length += chunk.length;
    }
    metadata.total_byte_size = new Int64(length);
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
    offset: Int64;
    rowCount: Int64;
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
        column[`${prefix}_offset`] = cloneInteger(new Int64(base + length));
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
  const encoded = serialize(metadata);
  const footer = Buffer.alloc(encoded.length + 8);
  encoded.copy(footer);
  footer.writeUInt32LE(encoded.length, encoded.length);
  footer.write('PAR1', encoded.length + 4);
  await envelope.writeSection(footer);
}
