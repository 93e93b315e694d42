import * as thrift from '@dsnp/parquetjs/dist/gen-nodejs/parquet_types';
import { serializeThrift } from '@dsnp/parquetjs/dist/lib/util';
import Int64 from 'node-int64';
import { serializeCompact } from './parquet-codec-thrift';

/** serializeCompact against the `thrift` package's TCompactProtocol, on Parquet metadata of every shape it meets. */

type Thrift = Record<string, unknown>;
const T = thrift as unknown as Record<string, new (args?: unknown) => Thrift> & {
  Type: Record<string, number>;
  Encoding: Record<string, number>;
  PageType: Record<string, number>;
};

const same = (obj: Thrift) => {
  const expected = serializeThrift(obj as never);
  const actual = serializeCompact(obj, () => {
    throw new Error('fell back');
  });
  expect(actual.toString('hex')).toBe(expected.toString('hex'));
};

describe('serializeCompact', () => {
  it('writes statistics, page headers and column metadata as the thrift package does', () => {
    for (const [min, max] of [
      [Buffer.from('a'), Buffer.from('zoë ✓')],
      [Buffer.alloc(0), Buffer.alloc(300, 7)],
    ]) {
      const statistics = new T.Statistics({
        max_value: max,
        min_value: min,
        max,
        min,
        null_count: new Int64(-3),
        distinct_count: new Int64(2 ** 40 + 5),
      });
      same(statistics);
      const header = new T.PageHeader();
      header.type = T.PageType.DATA_PAGE_V2;
      header.uncompressed_page_size = 70_000;
      header.compressed_page_size = 70_000;
      const v2 = new T.DataPageHeaderV2();
      Object.assign(v2, {
        num_values: 4096,
        num_nulls: 0,
        num_rows: -1,
        encoding: T.Encoding.PLAIN,
        definition_levels_byte_length: 3,
        repetition_levels_byte_length: 0,
        is_compressed: false,
        statistics,
      });
      header.data_page_header_v2 = v2;
      same(header);
      v2.is_compressed = true;
      same(header);
    }
    const metadata = new T.ColumnMetaData();
    Object.assign(metadata, {
      path_in_schema: Array.from({ length: 20 }, (_, i) => `column_${i}`),
      num_values: new Int64(123_456),
      data_page_offset: new Int64(4),
      encodings: [3, 0],
      total_uncompressed_size: new Int64(0),
      total_compressed_size: 17,
      type: T.Type.FIXED_LEN_BYTE_ARRAY,
      codec: 0,
    });
    same(metadata);
    const location = new T.PageLocation();
    Object.assign(location, {
      offset: new Int64(9),
      compressed_page_size: 1,
      first_row_index: new Int64(NaN),
    });
    const index = new T.OffsetIndex();
    index.page_locations = Array.from({ length: 16 }, () => location);
    same(index);
    const columnIndex = new T.ColumnIndex();
    Object.assign(columnIndex, {
      null_pages: [true, false, true],
      max_values: [Buffer.from([1, 2]), Buffer.alloc(0), Buffer.from('x')],
      min_values: [Buffer.alloc(0), Buffer.alloc(0), Buffer.from('x')],
      boundary_order: 0,
    });
    same(columnIndex);
    // The footer's column_orders: a list of unions holding an empty struct.
    const footer = new T.FileMetaData();
    Object.assign(footer, {
      version: 1,
      schema: [Object.assign(new T.SchemaElement(), { name: 'root', num_children: 16 })],
      num_rows: new Int64(3),
      row_groups: [],
      created_by: '@dsnp/parquetjs',
      column_orders: Array.from(
        { length: 16 },
        () => new T.ColumnOrder({ TYPE_ORDER: new T.TypeDefinedOrder() }),
      ),
    });
    same(footer);
  });

  it('writes 64-bit fields given as numbers as the package writes them (no Int64 needed)', () => {
    for (const n of [
      0,
      1,
      -1,
      63,
      64,
      -64,
      -65,
      2 ** 31,
      -(2 ** 31),
      2 ** 32 + 7,
      -(2 ** 40) - 3,
      2 ** 53 - 1,
      -(2 ** 53) + 1,
    ])
      for (const value of [n, new Int64(n)]) {
        const statistics = new T.Statistics();
        statistics.null_count = value;
        statistics.distinct_count = value;
        same(statistics);
      }
  });

  it('falls back to the thrift package for what it does not write', () => {
    const fallback = Buffer.from('fallback');
    const statistics = new T.Statistics();
    statistics.null_count = { not: 'an Int64' };
    expect(serializeCompact(statistics, () => fallback)).toBe(fallback);
  });
});
