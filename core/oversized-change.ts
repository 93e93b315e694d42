import { createHash } from 'node:crypto';
import {
  CHANGE_BATCH_VERSION,
  decodeChangeBatch,
  InvalidChangeBatchError,
  type Change,
  type ChangeBatch,
  type Column,
} from './change-event';
import { encodeChangeBatchAsCsv, schemaFingerprint } from './csv-codec';

/**
 * Changes too big for one stream record travel by claim check
 * (https://developer.confluent.io/patterns/event-processing/claim-check): capture stores the whole
 * change event in the ingestion bucket under `oversized/…` and sends a small *pointer change*
 * through Kinesis and Firehose in its place; transform reads the event back before decoding
 * anything else. Pure: no AWS SDK, no I/O (capture/oversized-sink.ts and
 * processors/transform/oversized-changes.ts do the S3 calls).
 *
 * Why not split the change into parts: Firehose partitions, buffers and retries records on its own,
 * so the parts of one change can land in different objects that transform and load see in any
 * order, or one part alone. A pointer is one line: whichever object holds it holds all of it.
 *
 * The stored object is exactly the one-change ChangeBatch capture would have put on the stream,
 * and its key is named by the SHA-256 of its bytes: a replay of the same change (same position,
 * same values) writes the same key with the same bytes, so a retry is idempotent, and the reader
 * checks the bytes it got against the name.
 */

/** Top folder of the stored events in the ingestion bucket (apart from data and schemas). */
export const OVERSIZED_ROOT = 'oversized';

/**
 * The smallest per-record limit on the path: Firehose takes a record of at most 1,000 KiB
 * (https://docs.aws.amazon.com/firehose/latest/APIReference/API_Record.html), below Kinesis' 1 MiB
 * (https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html).
 */
export const FIREHOSE_MAX_RECORD_BYTES = 1_000 * 1024;

/**
 * A change whose record, alone, would be bigger than this goes by claim check. A tenth under
 * Firehose's limit: room for the partition key and for what the transformation adds to the line.
 */
export const MAX_INLINE_CHANGE_BYTES = 900 * 1024;

/** Base class of every error this module throws. */
export class OversizedChangeError extends Error {
  override name = 'OversizedChangeError';
}

/** A stored event that cannot stand in for its pointer (wrong bytes, another change, another layout). */
export class InvalidOversizedObjectError extends OversizedChangeError {
  override name = 'InvalidOversizedObjectError';
  constructor(
    /** Safe to log: never quotes values. */
    readonly reason: string,
    options?: { cause: unknown },
  ) {
    super(reason, options);
  }
}

/** Where the event with these bytes is stored: `oversized/<table>/<sha256 of the bytes>.json`. */
export function oversizedObjectKey(table: string, body: Uint8Array): string {
  return `${OVERSIZED_ROOT}/${table}/${createHash('sha256').update(body).digest('hex')}.json`;
}

const OVERSIZED_KEY = new RegExp(`^${OVERSIZED_ROOT}/([^/]+)/([0-9a-f]{64})\\.json$`);

/** The table and content hash an oversized key names; undefined for any other key. */
export function parseOversizedObjectKey(key: string): { table: string; sha256: string } | undefined {
  const m = OVERSIZED_KEY.exec(key);
  return m ? { table: m[1], sha256: m[2] } : undefined;
}

/**
 * Bytes of a change's CSV line, as the Firehose transformation renders it (core/csv-codec.ts).
 * It is never much longer than the change's JSON (both spend two bytes on a quote; JSON escapes
 * more), but it is the record Firehose writes, so it is measured rather than assumed.
 */
export function csvLineBytes(batch: Omit<ChangeBatch, 'changes' | 'v'>, change: Change): number {
  return Buffer.byteLength(encodeChangeBatchAsCsv({ ...batch, v: CHANGE_BATCH_VERSION, changes: [change] }));
}

/**
 * Whether a change must go by claim check. `recordBytes`: its record alone on the stream (batch
 * header, the change's JSON and the partition key); `csvBytes` is asked only when that record is
 * past half the limit, so ordinary changes cost no extra encoding.
 */
export function isOversized(
  recordBytes: number,
  csvBytes: () => number,
  limitBytes: number = MAX_INLINE_CHANGE_BYTES,
): boolean {
  if (recordBytes > limitBytes) return true;
  return recordBytes > limitBytes / 2 && csvBytes() > limitBytes;
}

/**
 * The pointer that travels in a change's place: the same op and position, the key columns' values
 * (so logs and errors can name the row), every other column NULL, and `ref`, the stored event's key.
 */
export function pointerChange(columns: readonly Column[], change: Change, ref: string): Change {
  const pointer: Change = {
    op: change.op,
    lsn: change.lsn,
    seq: change.seq,
    ts: change.ts,
    values: change.values.map((v, i) => (columns[i]?.key ? v : null)),
    ref,
  };
  if (change.epoch !== undefined) pointer.epoch = change.epoch;
  return pointer;
}

/** `design_id=7` (the key columns the change carries), or `no key` for a change that has none. */
export function describeRowKey(columns: readonly Column[], change: Pick<Change, 'values'>): string {
  const parts = columns.flatMap((c, i) =>
    c.key && change.values[i] != null ? [`${c.name}=${change.values[i]}`] : [],
  );
  return parts.length ? parts.join(',') : 'no key';
}

/** `epoch 1764600000000, lsn 0/16B3748, seq 3`: a change's position, as every error names it. */
export function describePosition(change: Pick<Change, 'epoch' | 'lsn' | 'seq'>): string {
  return `epoch ${change.epoch ?? 0}, lsn ${change.lsn}, seq ${change.seq}`;
}

/** `design (design_id=7) at epoch …, lsn …, seq …`. */
export function describeChange(table: string, columns: readonly Column[], change: Change): string {
  return `${table} (${describeRowKey(columns, change)}) at ${describePosition(change)}`;
}

/**
 * The full change a pointer stands for, from the stored object's bytes. Checks that the bytes are
 * the ones the key names, that they hold one change of the same table and column layout, and that
 * it is the pointer's own change (op and position); throws InvalidOversizedObjectError otherwise.
 */
export function resolvePointer(
  pointer: Change,
  expected: { table: string; columns: readonly Column[]; formatVersion: number },
  body: Uint8Array,
): Change {
  const named = pointer.ref === undefined ? undefined : parseOversizedObjectKey(pointer.ref);
  if (!named || named.table !== expected.table)
    throw new InvalidOversizedObjectError(
      `pointer ${pointer.ref} is not an oversized key of ${expected.table}`,
    );
  const sha256 = createHash('sha256').update(body).digest('hex');
  if (sha256 !== named.sha256)
    throw new InvalidOversizedObjectError(
      `${pointer.ref} holds other bytes than its name says (sha256 ${sha256})`,
    );
  let batch: ChangeBatch;
  try {
    batch = decodeChangeBatch(body);
  } catch (e) {
    const issues = e instanceof InvalidChangeBatchError ? e.issues.slice(0, 3).join('; ') : '';
    throw new InvalidOversizedObjectError(
      `${pointer.ref} is not a change batch${issues ? `: ${issues}` : ''}`,
      {
        cause: e,
      },
    );
  }
  if (batch.table !== expected.table || batch.changes.length !== 1)
    throw new InvalidOversizedObjectError(`${pointer.ref} does not hold one change of ${expected.table}`);
  if (
    schemaFingerprint(batch.columns, expected.formatVersion) !==
    schemaFingerprint(expected.columns, expected.formatVersion)
  )
    throw new InvalidOversizedObjectError(`${pointer.ref} has another column layout than its pointer`);
  const [full] = batch.changes;
  if (
    full.ref !== undefined ||
    full.op !== pointer.op ||
    (full.epoch ?? 0) !== (pointer.epoch ?? 0) ||
    full.lsn !== pointer.lsn ||
    full.seq !== pointer.seq
  )
    throw new InvalidOversizedObjectError(`${pointer.ref} holds another change than its pointer`);
  return full;
}
