import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import {
  decodeChangeBatch,
  encodeChangeBatch,
  InvalidChangeBatchError,
  type ChangeBatch,
} from './change-event';
import {
  compressRecord,
  inflateRecord,
  InvalidCompressedRecordError,
  isGzip,
  MAX_INFLATED_RECORD_BYTES,
  MAX_RECORD_EXPANSION,
} from './record-compression';

/** A change batch shaped like capture's: distinct rows, so it compresses as real tables do. */
function batch(rows: number): ChangeBatch {
  return {
    v: 1,
    schema: 'public',
    table: 'sales_order',
    columns: [
      { name: 'sales_order_id', type: 'int4', key: true },
      { name: 'design_id', type: 'int4', key: false },
      { name: 'unit_price', type: 'numeric', key: false },
      { name: 'agreed_delivery_date', type: 'varchar', key: false },
    ],
    changes: Array.from({ length: rows }, (_, i) => ({
      op: 'insert' as const,
      lsn: `0/${(0x16b3748 + i * 0x1a0).toString(16).toUpperCase()}`,
      seq: i % 50,
      ts: `2026-12-01T12:00:00.${String(i).padStart(6, '0')}Z`,
      values: [
        String(i),
        String((i * 7919) % 541),
        (((i * 104729) % 100000) / 100).toFixed(2),
        `2025-0${1 + (i % 9)}-1${i % 10}`,
      ],
    })),
  };
}

describe('compressRecord', () => {
  it('gzips a change batch, which decodes to the same batch', async () => {
    const raw = encodeChangeBatch(batch(2_000));
    const compressed = await compressRecord(raw);
    expect(isGzip(compressed)).toBe(true);
    expect(compressed.length).toBeLessThan(raw.length / 2);
    expect(Buffer.from(inflateRecord(compressed)).equals(raw)).toBe(true);
    expect(decodeChangeBatch(compressed)).toEqual(decodeChangeBatch(raw));
  });

  it('sends as built a record gzip would not shrink', async () => {
    const raw = randomBytes(4_096);
    expect(await compressRecord(raw)).toBe(raw);
  });

  it(`sends as built a record that would shrink more than ${MAX_RECORD_EXPANSION}× (the bound on what the Firehose transformation answers)`, async () => {
    const change = batch(1).changes[0];
    const repeated = encodeChangeBatch({ ...batch(1), changes: Array.from({ length: 2_000 }, () => change) });
    expect(zlib.gzipSync(repeated, { level: 1 }).length * MAX_RECORD_EXPANSION).toBeLessThan(repeated.length);
    expect(await compressRecord(repeated)).toBe(repeated);
  });
});

describe('inflateRecord', () => {
  it('leaves a record that is not gzip as it is (records written uncompressed)', () => {
    const raw = encodeChangeBatch(batch(3));
    expect(inflateRecord(raw)).toBe(raw);
    expect(isGzip(Buffer.from('{'))).toBe(false);
    expect(isGzip(Buffer.alloc(0))).toBe(false);
  });

  it('names a gzip record that does not inflate, and decodeChangeBatch says so', () => {
    const truncated = zlib.gzipSync(encodeChangeBatch(batch(50))).subarray(0, 40);
    expect(() => inflateRecord(truncated)).toThrow(InvalidCompressedRecordError);
    expect(() => inflateRecord(truncated)).toThrow(/starts as gzip but does not inflate/);
    expect(() => decodeChangeBatch(truncated)).toThrow(InvalidChangeBatchError);
    expect(() => decodeChangeBatch(truncated)).toThrow(/does not inflate/);
  });

  it('stops at its limit instead of inflating a record capture never writes', () => {
    const bomb = zlib.gzipSync(Buffer.alloc(MAX_INFLATED_RECORD_BYTES + 1, 0x20));
    expect(() => inflateRecord(bomb)).toThrow(`inflates past ${MAX_INFLATED_RECORD_BYTES} bytes`);
  });
});
