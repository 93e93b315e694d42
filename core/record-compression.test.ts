import { createHash, randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { decodeChangeBatch, encodeChangeBatch, InvalidChangeBatchError } from './change-event';
import { staffBatch } from './csv-codec.fixtures';
import {
  compressRecord,
  inflateRecord,
  InvalidCompressedRecordError,
  isGzip,
  MAX_INFLATED_RECORD_BYTES,
  MAX_RECORD_EXPANSION,
} from './record-compression';

/** Staff rows with a hash for a last name: they compress about as capture's records of real tables do (~5×). */
function batch(count: number) {
  const b = staffBatch({ firstId: 0, count });
  for (const c of b.changes)
    c.values[2] = createHash('sha1').update(String(c.values[0])).digest('hex').slice(0, 10);
  return b;
}

describe('compressRecord', () => {
  it('gzips a change batch, which decodes to the same batch', async () => {
    const raw = encodeChangeBatch(batch(2_000));
    const compressed = await compressRecord(raw);
    expect(isGzip(compressed)).toBe(true);
    expect(compressed.length).toBeLessThan(raw.length / 3);
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
