import { DuckDBInstance } from '@duckdb/node-api';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ParquetReader, ParquetSchema, ParquetWriter } from '@dsnp/parquetjs';
import {
  decodeParquet,
  encodeParquet,
  openParquetReader,
  openParquetWriter,
  ParquetCodecError,
  parquetColumns,
  physicalRow,
  warehouseRowOf,
  type WarehouseRow,
} from './parquet-codec';
import { Writable } from 'node:stream';
import * as thrift from '@dsnp/parquetjs/dist/gen-nodejs/parquet_types';
import { decodeThrift, serializeThrift } from '@dsnp/parquetjs/dist/lib/util';

/** A stream that keeps what is written to it, in `chunks`. */
function collectingSink(): { chunks: Buffer[]; sink: Writable } {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      chunks.push(Buffer.from(chunk));
      done();
    },
  });
  return { chunks, sink };
}

const row = (overrides: Partial<WarehouseRow> = {}): WarehouseRow => ({
  payment_id: 1,
  created_date: '2022-11-03',
  created_time: '14:20:52.186',
  last_updated_date: '2024-02-29',
  last_updated_time: '00:00:00.001',
  transaction_id: 1,
  counterparty_id: 17,
  payment_amount: '56925.44',
  currency_id: 2,
  payment_type_id: 3,
  paid: true,
  payment_date: '2022-11-07',
  _op: 'upsert',
  _epoch: 1_764_600_000_000,
  _lsn: '00000000/016B3748',
  _seq: 4_000_000_000,
  _commit_ts: '2025-02-28T09:15:02.123456Z',
  _unchanged: '',
  _row_hash: '0123456789abcdef0123456789abcdef',
  _rows: null,
  ...overrides,
});

describe('parquet codec', () => {
  it('round-trips every column type exactly, money as DECIMAL, with NULLs', async () => {
    const rows = [
      row(),
      row({ payment_id: 2, payment_amount: '-99999999.99', paid: false, created_time: '23:59:59.999' }),
      row({
        payment_id: 3,
        payment_amount: null,
        paid: null,
        payment_date: null,
        _unchanged: 'payment_amount',
      }),
      row({ payment_id: 4, _op: 'delete', created_date: null, created_time: null, counterparty_id: null }),
      row({ payment_id: null, _op: 'snapshot_end', _rows: 12_345, _row_hash: null }),
    ];
    const decoded = await decodeParquet(await encodeParquet('fact_payment', rows));
    expect(decoded.table).toBe('fact_payment');
    expect(decoded.rows).toEqual(rows);
  });

  it('keeps dates before year 100 and before 1970 (no Date.UTC 19xx shift)', async () => {
    const dates = ['0099-01-01', '0001-01-01', '1969-12-31', '9999-12-31'];
    const rows = dates.map((d) => row({ payment_date: d }));
    const decoded = await decodeParquet(await encodeParquet('fact_payment', rows));
    expect(decoded.rows.map((r) => r.payment_date)).toEqual(dates);
  });

  it('writes an empty file that reads back empty', async () => {
    expect(await decodeParquet(await encodeParquet('dim_currency', []))).toEqual({
      table: 'dim_currency',
      rows: [],
    });
  });

  it('refuses values that are not in canonical form, naming the column', async () => {
    await expect(encodeParquet('fact_payment', [row({ created_date: '03/11/2022' })])).rejects.toThrow(
      /created_date/,
    );
    // Ten characters with the dashes in place, read by position: still refused.
    for (const date of ['2024-1x-01', '2024-01-0 ', '+024-01-01'])
      await expect(encodeParquet('fact_payment', [row({ created_date: date })])).rejects.toThrow(
        'created_date: ' + JSON.stringify(date) + ' is not a YYYY-MM-DD date',
      );
    await expect(encodeParquet('fact_payment', [row({ created_time: 'noon' })])).rejects.toThrow(
      /created_time/,
    );
  });

  it('prints money as Postgres prints numeric(10,2), whatever text it was given', async () => {
    const amounts = ['3.9', '0', '-0.05', '7.00', '12345678.9'];
    const decoded = await decodeParquet(
      await encodeParquet(
        'fact_payment',
        amounts.map((payment_amount) => row({ payment_amount })),
      ),
    );
    expect(decoded.rows.map((r) => r.payment_amount)).toEqual([
      '3.90',
      '0.00',
      '-0.05',
      '7.00',
      '12345678.90',
    ]);
  });

  it('refuses money that is not a numeric(10,2), naming the column', async () => {
    for (const payment_amount of ['123456789.00', '1.234', '1e3', ''])
      await expect(encodeParquet('fact_payment', [row({ payment_amount })])).rejects.toThrow(
        /payment_amount/,
      );
  });

  it('declares money DECIMAL(10,2) in the file schema, and DuckDB reads numbers', async () => {
    const amounts = ['56925.44', '-99999999.99', '0.01'];
    const file = await encodeParquet(
      'fact_payment',
      amounts.map((payment_amount, i) => row({ payment_id: i + 1, payment_amount })),
    );
    const reader = await ParquetReader.openBuffer(file);
    const element = reader.metadata!.schema.find((e) => e.name === 'payment_amount')!;
    await reader.close();
    expect({ precision: element.precision, scale: element.scale, type: element.converted_type }).toEqual({
      precision: 10,
      scale: 2,
      type: 5, // ConvertedType.DECIMAL in parquet.thrift
    });

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-parquet-'));
    try {
      const at = path.join(dir, 'fact_payment.parquet');
      fs.writeFileSync(at, file);
      const duck = await (await DuckDBInstance.create(':memory:')).connect();
      const result = await duck.runAndReadAll(
        `SELECT any_value(typeof(payment_amount)) AS type, sum(payment_amount)::VARCHAR AS total,
                min(payment_amount)::VARCHAR AS least FROM read_parquet('${at}')`,
      );
      expect(result.getRowObjectsJson()).toEqual([
        { type: 'DECIMAL(10,2)', total: '-99943074.54', least: '-99999999.99' },
      ]);
      duck.closeSync();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes and reads a file a row group at a time', async () => {
    const { chunks, sink } = collectingSink();
    const writer = await openParquetWriter('fact_payment', sink, { rowGroupRows: 3 });
    const rows = Array.from({ length: 8 }, (_, i) => row({ payment_id: i + 1, _seq: i }));
    for (const r of rows) await writer.append(r);
    expect(writer.rows).toBe(8);
    await writer.close();
    const reader = await openParquetReader(Buffer.concat(chunks));
    expect({ table: reader.table, rowCount: reader.rowCount }).toEqual({
      table: 'fact_payment',
      rowCount: 8,
    });
    const batches: WarehouseRow[][] = [];
    for await (const batch of reader.batches(3)) batches.push(batch);
    await reader.close();
    expect(batches.map((b) => b.length)).toEqual([3, 3, 2]);
    expect(batches.flat()).toEqual(rows);
  });

  it('paces a row group: awaits `pace` after each column chunk and every 1,024 rows made, the same rows', async () => {
    const { chunks, sink } = collectingSink();
    const writer = await openParquetWriter('fact_payment', sink, { rowGroupRows: 2_500 });
    const rows = Array.from({ length: 3_000 }, (_, i) => row({ payment_id: i + 1, _seq: i }));
    for (const r of rows) await writer.append(r);
    await writer.close();
    const reader = await openParquetReader(Buffer.concat(chunks));
    const columns = ['payment_id', 'transaction_id', 'payment_date'];
    const events: string[] = [];
    const read: WarehouseRow[] = [];
    for await (const batch of reader.batches(1_000, columns, async () => void events.push('pace'))) {
      events.push(`batch ${batch.length}`);
      read.push(...batch);
    }
    await reader.close();
    // Row group 1 (2,500 rows): 3 chunks, 2 slices made; row group 2 (500 rows): 3 chunks.
    const paces = (n: number) => Array<string>(n).fill('pace');
    expect(events).toEqual([...paces(5), 'batch 1000', 'batch 1000', ...paces(3), 'batch 1000']);
    expect(read).toEqual(rows.map((r) => Object.fromEntries(columns.map((c) => [c, r[c]]))));

    // What `pace` throws is the caller's, not a damaged file's: passed on as it is.
    const again = await openParquetReader(Buffer.concat(chunks));
    const refused = new Error('no turn');
    const batches = again.batches(1_000, columns, () => Promise.reject(refused));
    await expect(batches.next()).rejects.toBe(refused);
    await again.close();
  });

  it("reads column by column exactly what the library's record cursor reads, every type, NULLs, several row groups", async () => {
    const { chunks, sink } = collectingSink();
    const writer = await openParquetWriter('fact_payment', sink, { rowGroupRows: 4 });
    const rows = Array.from({ length: 11 }, (_, i) =>
      row({
        payment_id: i + 1,
        payment_amount: ['0.01', '-0.29', '99999999.99', null][i % 4],
        paid: [true, false, null][i % 3],
        created_date: ['1970-01-01', '0099-12-31', '2024-02-29', null][i % 4],
        created_time: ['00:00:00.000', '23:59:59.999', null][i % 3],
        _row_hash: i % 2 ? null : `h\t"é"東${i}`,
        _rows: i === 10 ? 2 ** 40 : null,
        _seq: 2 ** 50 + i,
      }),
    );
    for (const r of rows) await writer.append(r);
    await writer.close();
    const bytes = Buffer.concat(chunks);

    const library = await ParquetReader.openBuffer(bytes);
    const cursor = library.getCursor();
    const byRecord: WarehouseRow[] = [];
    for (let raw = await cursor.next(); raw; raw = await cursor.next())
      byRecord.push(warehouseRowOf(parquetColumns('fact_payment'), raw as Record<string, unknown>));
    await library.close();

    const reader = await openParquetReader(bytes);
    const byColumn: WarehouseRow[] = [];
    for await (const batch of reader.batches(5)) byColumn.push(...batch);
    await reader.close();
    expect(byColumn).toEqual(byRecord);
    expect(byColumn).toEqual(rows);
  });

  it('reads pages it does not decode itself (compressed, data page v1) through the library, the same rows', async () => {
    const rows = Array.from({ length: 9 }, (_, i) =>
      row({
        payment_id: i + 1,
        payment_amount: ['0.01', '-0.29', null][i % 3],
        paid: [true, false, null][i % 3],
        _row_hash: i % 2 ? null : `h\t"é"東${i}`,
        _seq: 2 ** 50 + i,
      }),
    );
    const types = parquetColumns('fact_payment');
    for (const variant of [{ compression: 'GZIP' }, { useDataPageV2: false }]) {
      const fields: ConstructorParameters<typeof ParquetSchema>[0] = {};
      for (const [name, type] of types)
        fields[name] =
          type === 'DECIMAL'
            ? { type, typeLength: 5, precision: 10, scale: 2, optional: true }
            : {
                type,
                optional: true,
                ...('compression' in variant ? { compression: variant.compression as 'GZIP' } : {}),
              };
      const { chunks, sink } = collectingSink();
      const writer = await ParquetWriter.openStream(
        new ParquetSchema(fields),
        sink as unknown as Parameters<typeof ParquetWriter.openStream>[1],
        { rowGroupSize: 4, ...('useDataPageV2' in variant ? { useDataPageV2: false } : {}) },
      );
      writer.setMetadata('totes.table', 'fact_payment');
      for (const r of rows) await writer.appendRow(physicalRow(types, r));
      await writer.close();
      expect((await decodeParquet(Buffer.concat(chunks))).rows).toEqual(rows);
    }
  });

  it('refuses a page header that would not move the reader forward (negative sizes), instead of spinning', async () => {
    const file = await encodeParquet('fact_payment', [row()]);
    // The first column chunk's first page header, decoded, made to point back at itself (a page of
    // no rows whose size and level bytes cancel its own header), and spliced in.
    const reader = await ParquetReader.openBuffer(file);
    const chunk = (
      reader as unknown as {
        metadata: { row_groups: { columns: { meta_data: { data_page_offset: unknown } }[] }[] };
      }
    ).metadata.row_groups[0].columns[0];
    await reader.close();
    const offset = Number(chunk.meta_data.data_page_offset);
    const header = new thrift.PageHeader();
    const length = decodeThrift(header, file, offset);
    const v2 = header.data_page_header_v2!;
    v2.num_values = 0;
    v2.num_nulls = 0;
    v2.num_rows = 0;
    let spliced = serializeThrift(header);
    // The header's own length, which the sizes must cancel, depends on them: settle it.
    for (let i = 0; i < 4; i += 1) {
      header.compressed_page_size = -spliced.length;
      header.uncompressed_page_size = -spliced.length;
      v2.definition_levels_byte_length = -spliced.length;
      spliced = serializeThrift(header);
    }
    expect(header.compressed_page_size).toBe(-spliced.length);
    const damaged = Buffer.concat([file.subarray(0, offset), spliced, file.subarray(offset + length)]);
    await expect(decodeParquet(damaged)).rejects.toThrow(ParquetCodecError);
  });

  it('refuses a file whose pages are damaged, without quoting them', async () => {
    const rows = Array.from({ length: 50 }, (_, i) => row({ payment_id: i + 1 }));
    const bytes = await encodeParquet('fact_payment', rows);
    // The footer stays intact (the file opens); the first column chunk's page header does not.
    bytes.fill(0xff, 4, 200);
    const reader = await openParquetReader(bytes);
    const read = async () => {
      for await (const batch of reader.batches()) void batch;
    };
    await expect(read()).rejects.toThrow(ParquetCodecError);
    await reader.close();
  });

  it('refuses a file that is not Parquet', async () => {
    await expect(decodeParquet(Buffer.from('PAR1 nope'))).rejects.toThrow(ParquetCodecError);
  });

  it('refuses, as a codec error, a file naming an object property rather than a warehouse table', async () => {
    for (const table of ['constructor', 'toString', '__proto__']) {
      const { chunks, sink } = collectingSink();
      const writer = await ParquetWriter.openStream(
        new ParquetSchema({ id: { type: 'INT32' } }),
        sink as unknown as Parameters<typeof ParquetWriter.openStream>[1],
      );
      writer.setMetadata('totes.table', table);
      await writer.appendRow({ id: 1 });
      await writer.close();
      await expect(openParquetReader(Buffer.concat(chunks))).rejects.toThrow(ParquetCodecError);
    }
  });
});
