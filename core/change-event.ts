import { z } from 'zod';
import { isLsn, lsnToBigInt } from './lsn';
import { inflateRecord, InvalidCompressedRecordError } from './record-compression';

/**
 * The change-event contract: what capture writes to Kinesis and every later stage reads.
 *
 * One Kinesis record carries one `ChangeBatch`: changes of ONE table that share one column layout,
 * as JSON, gzip-compressed on the stream unless capture was told not to (core/record-compression.ts:
 * readers accept both). Batching many small events per record is what lifts Kinesis' 1,000 records/s per-shard
 * ceiling (https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html), and
 * keeping a batch to one table lets Firehose partition records by table.
 *
 * Delivery is at-least-once: a change may arrive more than once and out of order. Its position is
 * `(epoch, lsn, seq)`, compared in that order; consumers keep, per row, the change with the highest
 * position and drop repeats (a fact version is the same change when its key, lsn and seq are).
 *
 * The epoch is the capture generation (milliseconds since 1970 when it began): a new one starts
 * whenever positions may stop being comparable or a snapshot must be told apart — a new slot, lost
 * capture state, a new source cluster or timeline. LSNs of a restored or promoted cluster repeat
 * old ones; the epoch in front keeps the order truthful. Batches written before epochs existed
 * read as epoch 0.
 */

/**
 * `snapshot` rows come from a snapshot (a state read, not a WAL change); `snapshot_end` closes one
 * table's part of a snapshot and says how many rows it sent (`rows`); the rest come from the WAL.
 */
export const CHANGE_OPS = ['snapshot', 'insert', 'update', 'delete', 'truncate', 'snapshot_end'] as const;
export type ChangeOp = (typeof CHANGE_OPS)[number];

/** Current version of the ChangeBatch wire format; bump on incompatible change. */
export const CHANGE_BATCH_VERSION = 1;
/**
 * The version a batch carrying a pointer change (`ref`, core/oversized-change.ts) is written with.
 * Version 1 readers strip unknown fields, so they would load a pointer's empty columns as NULLs;
 * they reject `v: 2` instead, loudly (Firehose's processing-failed prefix), and lose nothing.
 */
export const POINTER_BATCH_VERSION = 2;

const lsnString = z.string().refine(isLsn, { message: 'not an LSN (expected XXXXXXXX/XXXXXXXX)' });

export const ColumnSchema = z.object({
  /** Column name as in the source table. */
  name: z.string().min(1),
  /** Source type name without schema (`int4`, `numeric`, `timestamp`, `PaymentTypeName`, …). */
  type: z.string().min(1),
  /** Part of the primary key (the replica identity). */
  key: z.boolean(),
});
export type Column = z.infer<typeof ColumnSchema>;

export const ChangeSchema = z.object({
  /** See CHANGE_OPS. */
  op: z.enum(CHANGE_OPS),
  /**
   * The capture generation. Capture sets it once per batch (`ChangeBatch.epoch`); decoders copy it
   * onto each change. Absent = 0 (written before epochs existed).
   */
  epoch: z.number().int().nonnegative().optional(),
  /**
   * Commit LSN of the source transaction (pgoutput's final LSN). Snapshot rows carry the slot's
   * consistent point minus one, which sorts before every transaction the stream delivers after it.
   */
  lsn: lsnString,
  /** Ordinal of this change inside its transaction (or inside the snapshot), from 0. */
  seq: z.number().int().nonnegative(),
  /** Commit time, ISO 8601 UTC with microseconds (`2025-02-28T09:15:02.123456Z`). */
  ts: z.string().min(20),
  /**
   * Column values in `columns` order, exactly as Postgres rendered them as text (numerics,
   * timestamps and enums untouched), `null` for SQL NULL. `insert`/`update`/`snapshot`: the new row.
   * `delete`: the old row as far as the replica identity carries it (the key columns under the
   * default identity, every column under REPLICA IDENTITY FULL; the rest `null`). `truncate` and
   * `snapshot_end`: empty.
   */
  values: z.array(z.string().nullable()),
  /** `snapshot_end` only: how many `snapshot` rows of this table the snapshot sent. */
  rows: z.number().int().nonnegative().optional(),
  /**
   * Indices of columns whose value was NOT sent because it is a TOASTed value the update did not
   * change. Their `values` entry is `null` but means "keep what you have", never SQL NULL.
   */
  unchanged: z.array(z.number().int().nonnegative()).optional(),
  /**
   * A pointer change: the change was too big for one stream record, so its full event (a
   * one-change ChangeBatch) is stored at this key of the ingestion bucket, and `values` here carry
   * only the key columns (the rest `null`). Transform reads it back before anything else
   * (core/oversized-change.ts); no stage after transform ever sees one.
   */
  ref: z.string().min(1).optional(),
});
export type Change = z.infer<typeof ChangeSchema>;

export const ChangeBatchSchema = z
  .object({
    v: z.union([z.literal(CHANGE_BATCH_VERSION), z.literal(POINTER_BATCH_VERSION)]),
    /** The capture generation of every change in the batch (absent = 0). */
    epoch: z.number().int().nonnegative().optional(),
    schema: z.string().min(1),
    table: z.string().min(1),
    columns: z.array(ColumnSchema).min(1),
    changes: z.array(ChangeSchema).min(1),
  })
  .superRefine((batch, ctx) => {
    batch.changes.forEach((change, i) => {
      const expected = carriesNoValues(change.op) ? 0 : batch.columns.length;
      if (change.values.length !== expected) {
        ctx.addIssue({
          code: 'custom',
          path: ['changes', i, 'values'],
          message: `has ${change.values.length} values, expected ${expected}`,
        });
      }
      if (change.ref !== undefined && (batch.v !== POINTER_BATCH_VERSION || carriesNoValues(change.op)))
        ctx.addIssue({
          code: 'custom',
          path: ['changes', i, 'ref'],
          message: `a pointer needs a v${POINTER_BATCH_VERSION} batch and a row op`,
        });
      for (const index of change.unchanged ?? []) {
        if (index >= batch.columns.length) {
          ctx.addIssue({
            code: 'custom',
            path: ['changes', i, 'unchanged'],
            message: `index ${index} out of range`,
          });
        }
      }
    });
  });
export type ChangeBatch = z.infer<typeof ChangeBatchSchema>;

/** Ops that describe a whole table, not a row: they carry no values. */
export function carriesNoValues(op: ChangeOp): boolean {
  return op === 'truncate' || op === 'snapshot_end';
}

export class InvalidChangeBatchError extends Error {
  override readonly name = 'InvalidChangeBatchError';
  constructor(
    message: string,
    readonly issues: string[],
    options?: { cause: unknown },
  ) {
    super(message, options);
  }
}

export function encodeChangeBatch(batch: ChangeBatch): Buffer {
  return Buffer.from(JSON.stringify(batch), 'utf8');
}

/**
 * Parses and validates one Kinesis record's data, gzip or not (core/record-compression.ts). Throws
 * InvalidChangeBatchError with each issue.
 */
export function decodeChangeBatch(data: Uint8Array | string): ChangeBatch {
  let json: unknown;
  try {
    json = JSON.parse(typeof data === 'string' ? data : Buffer.from(inflateRecord(data)).toString('utf8'));
  } catch (e) {
    if (e instanceof InvalidCompressedRecordError)
      throw new InvalidChangeBatchError(e.message, [], { cause: e });
    throw new InvalidChangeBatchError(`not JSON: ${(e as Error).message}`, []);
  }
  const parsed = ChangeBatchSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new InvalidChangeBatchError(`not a change batch: ${issues.slice(0, 3).join('; ')}`, issues);
  }
  const batch = parsed.data;
  // Each change carries its epoch from here on, so CSV lines and warehouse rows can name it.
  if (batch.epoch !== undefined) for (const change of batch.changes) change.epoch ??= batch.epoch;
  return batch;
}

/** Orders changes by source position: epoch, commit LSN, then ordinal inside the transaction. */
export function compareChangePosition(
  a: Pick<Change, 'epoch' | 'lsn' | 'seq'>,
  b: Pick<Change, 'epoch' | 'lsn' | 'seq'>,
): number {
  const ea = a.epoch ?? 0;
  const eb = b.epoch ?? 0;
  if (ea !== eb) return ea < eb ? -1 : 1;
  const x = lsnToBigInt(a.lsn);
  const y = lsnToBigInt(b.lsn);
  if (x !== y) return x < y ? -1 : 1;
  return a.seq - b.seq;
}

/**
 * Postgres commit timestamps are microseconds since the Unix epoch (pgoutput sends them as
 * microseconds since 2000-01-01; pg-logical-replication rebases them). JS Dates hold only
 * milliseconds, so render the text by hand.
 */
export function microsToIso(micros: bigint): string {
  const millis = micros / 1000n;
  const fraction = (((micros % 1_000_000n) + 1_000_000n) % 1_000_000n).toString().padStart(6, '0');
  const base = new Date(Number(millis)).toISOString(); // 2025-02-28T09:15:02.123Z
  return `${base.slice(0, 19)}.${fraction}Z`;
}
