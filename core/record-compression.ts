import { promisify } from 'node:util';
import zlib from 'node:zlib';

/**
 * Capture's stream records may be gzip-compressed (RFC 1952); consumers tell them apart by their
 * first two bytes. A change batch is JSON and starts with `{`, gzip with 0x1f 0x8b, so a reader
 * accepts both (and records written before compression, or with it turned off, still decode).
 *
 * Why: everything the stream carries is paid per byte. Kinesis shards take 1 MiB/s of writes each
 * (docs/scaling.md), and locally kinesalite spends ~150 ms of CPU per MiB put and read (base64 and
 * JSON both ways, measured in bench/README.md); capture's records compress about 5× at gzip level 1
 * (totesys' tables, 256 KiB records), at ~12 ms of CPU per MiB in capture and ~3 ms per MiB to
 * inflate in the Firehose record transformation.
 *
 * The bound that makes compression safe with Firehose: the record transformation answers Firehose
 * synchronously, and Lambda's response is at most 6 MB. Its input is the processor's buffer
 * (BufferSizeInMBs, infra/constructs/delivery-stream.ts) of compressed records, its output is the
 * CSV of the inflated records, base64-encoded (× 4/3), and the CSV is no larger than the JSON it
 * comes from (a row's line has ~21 bytes of position against the JSON's ~46, NULL is empty; only a
 * `truncate` or `snapshot_end` line of a table over ~25 columns is longer, by a byte per column
 * beyond that, once per table). So a record may shrink at most MAX_RECORD_EXPANSION times: one that would shrink more
 * (very regular rows: totesys' real tables shrink 4–6.4×, test fixtures of near-identical rows
 * over 8×) goes on the stream uncompressed, and the output stays below the buffer's 0.25 MiB × 8 ×
 * 4/3 plus one whole record past the hint (≤ 1 MiB × 4/3): ≈ 4 MiB, with room for the hint being
 * only a hint.
 */

export type RecordCompression = 'gzip' | 'none';
export const RECORD_COMPRESSIONS: readonly RecordCompression[] = ['gzip', 'none'];

/** The most a compressed record may expand to (raw bytes ÷ compressed bytes). */
export const MAX_RECORD_EXPANSION = 8;

/**
 * The largest record a reader inflates: a stream record is at most 1 MiB, so anything that
 * inflates past MAX_RECORD_EXPANSION MiB was not written by capture (a corrupt or hostile record),
 * and the reader stops there instead of filling its memory.
 */
export const MAX_INFLATED_RECORD_BYTES = MAX_RECORD_EXPANSION * 1024 * 1024;

/** gzip level 1: 4.9× against 5.9× at level 6 on capture's records, at 40% of the CPU. */
const GZIP_LEVEL = 1;

const gzip = promisify(zlib.gzip);

export function isGzip(data: Uint8Array): boolean {
  return data.length >= 2 && data[0] === 0x1f && data[1] === 0x8b;
}

/**
 * The bytes to put on the stream for `raw`: gzip, unless that does not shrink it or shrinks it
 * more than MAX_RECORD_EXPANSION times (then `raw` itself). Compresses on libuv's thread pool, so
 * capture's event loop keeps reading the replication stream meanwhile.
 */
export async function compressRecord(raw: Uint8Array): Promise<Uint8Array> {
  const compressed = await gzip(raw, { level: GZIP_LEVEL });
  if (compressed.length >= raw.length) return raw;
  if (compressed.length * MAX_RECORD_EXPANSION < raw.length) return raw;
  return compressed;
}

/** A compressed record that could not be inflated. */
export class InvalidCompressedRecordError extends Error {
  override name = 'InvalidCompressedRecordError';
}

/** The record's bytes as capture built them: inflated when gzip, else `data` itself. */
export function inflateRecord(data: Uint8Array): Uint8Array {
  if (!isGzip(data)) return data;
  try {
    return zlib.gunzipSync(data, { maxOutputLength: MAX_INFLATED_RECORD_BYTES });
  } catch (e) {
    const tooBig = (e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE';
    throw new InvalidCompressedRecordError(
      tooBig
        ? `the record is gzip that inflates past ${MAX_INFLATED_RECORD_BYTES} bytes; capture never writes such a record`
        : `the record starts as gzip but does not inflate: ${(e as Error).message}`,
      { cause: e },
    );
  }
}
