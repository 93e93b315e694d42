import {
  GetRecordsCommand,
  GetShardIteratorCommand,
  ListShardsCommand,
  type _Record,
  type GetRecordsCommandOutput,
  type GetShardIteratorCommandInput,
  type KinesisClient,
  type ListShardsCommandOutput,
} from '@aws-sdk/client-kinesis';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { randomBytes, randomUUID } from 'node:crypto';
import { isRetryablePutError } from '../capture/kinesis-sink';
import { INGESTION_ERROR_PREFIX, INGESTION_PREFIX } from '../core/csv-codec';
import { silentLogger, type Logger } from '../core/logger';
import {
  FirehoseTransformationResultSchema,
  type FirehoseTransform,
  type FirehoseTransformationEvent,
  type FirehoseTransformationResultRecord,
} from '../processors/firehose-transform/firehose-types';
import {
  DeliveryBuffers,
  ShardCheckpoints,
  type BufferingHints,
  type PendingRecord,
  type SealedBuffer,
} from './delivery-stream-buffers';
import { CheckpointStore } from './delivery-stream-checkpoint';
import { checkPrefix, evaluatePrefix, formatUtc, MissingPartitionKeyError } from './delivery-stream-prefix';

/**
 * The local stand-in for a Firehose delivery stream with a Kinesis source, dynamic partitioning and
 * a Lambda record transformation: it reads the stream shard by shard, invokes the SAME
 * transformation function with Firehose-shaped events, buffers the results per partition under
 * Firehose's buffering hints, and writes each buffer as one S3 object under the same prefix
 * expressions Firehose is configured with. Records the function fails go, as in Firehose, to the
 * error output prefix as JSON lines.
 *
 * Delivery contract: at-least-once. A shard's checkpoint (a file under `checkpointDir`) advances
 * only past records that are in S3 together with every record before them; after a crash the shard
 * is read again from there, so nothing is lost and a record delivered twice carries the same change
 * identities (in a new, uniquely named object). Service contract: `run()` resolves when stopped (or,
 * with `end`, when every shard reached it); `stop()` writes what is buffered, checkpoints, and
 * resolves once `run()` has.
 */

/**
 * Where a shard with no checkpoint starts.
 * https://docs.aws.amazon.com/kinesis/latest/APIReference/API_GetShardIterator.html
 *
 * `LATEST` is Firehose's: "Amazon Data Firehose starts reading data from the LATEST position of your
 * Kinesis stream" (https://docs.aws.amazon.com/firehose/latest/dev/writing-with-kinesis-streams.html),
 * i.e. where the stream is when the delivery stream is created, and from its own position after
 * that. So here it means: from the moment this delivery stream FIRST started, as recorded durably in
 * its checkpoint file before `ready()` resolves — a restart that comes before anything was delivered
 * still starts there, and records written before the first start are never delivered. Whatever
 * writes to the stream must wait for `ready()`, in AWS as here (infra/stacks/pipeline-stack.ts).
 */
export type StartingPosition =
  | { type: 'TRIM_HORIZON' }
  | { type: 'LATEST' }
  | { type: 'AT_TIMESTAMP'; timestamp: Date }
  | { type: 'AT_SEQUENCE_NUMBER'; sequenceNumber: string };

/** Where a bounded run (a replay) stops: a shard is done at the first record past this, or at its tip. */
export interface DeliveryEnd {
  /** Records that arrived in the stream after this are not delivered. */
  arrivedBy: Date;
  /** On this one shard, stop after this sequence number instead of by time. */
  lastSequence?: { shardId: string; sequenceNumber: string };
}

export interface DeliveryStreamOptions {
  kinesis: Pick<KinesisClient, 'send'>;
  streamName: string;
  s3: Pick<S3Client, 'send'>;
  bucket: string;
  /** The record-transformation function (the Lambda handler from create-handler.ts). */
  transform: FirehoseTransform;
  /** Holds `checkpoint.json`; give every delivery stream its own. */
  checkpointDir: string;
  /** Names objects and the checkpoint, like a Firehose stream name. */
  name?: string;
  bufferingHints?: Partial<BufferingHints>;
  /** Firehose `Prefix` / `ErrorOutputPrefix` expressions. */
  prefix?: string;
  errorOutputPrefix?: string;
  /** Appended to data object names (Firehose's `FileExtension`). */
  fileExtension?: string;
  /** For shards without a checkpoint (default LATEST, as Firehose: see StartingPosition). */
  startingPosition?: StartingPosition | ((shardId: string) => StartingPosition);
  /**
   * How to honour AT_TIMESTAMP: `native` asks Kinesis for an AT_TIMESTAMP iterator; `scan` reads from
   * TRIM_HORIZON and skips older records, because kinesalite 3.3's GetShardIterator(AT_TIMESTAMP)
   * never answers when no record at or after the timestamp exists (it waits for the first match).
   */
  atTimestamp?: 'native' | 'scan';
  end?: DeliveryEnd;
  /** Wait between polls of an idle stream (Kinesis allows 5 GetRecords per shard per second). */
  pollIntervalMs?: number;
  getRecordsLimit?: number;
  /** Largest event handed to the function (Lambda's synchronous payload limit is 6 MB). */
  maxInvocationBytes?: number;
  /** Retries of a failed invocation before its records go to the error prefix (Firehose: 3). */
  transformRetries?: number;
  region?: string;
  logger?: Logger;
  now?: () => number;
}

const MiB = 1024 * 1024;

export const DELIVERY_STREAM_DEFAULTS = {
  name: 'totes-ingestion',
  /**
   * Size as Firehose's default (5 MiB); the interval far below it. AWS accepts 0–900 s (default
   * 300 s) and, with dynamic partitioning, has no zero buffering and may take about 1.5× the
   * interval; locally one second keeps the pipeline's latency at the second level.
   * https://docs.aws.amazon.com/firehose/latest/dev/buffering.html
   */
  bufferingHints: { sizeBytes: 5 * MiB, intervalMs: 1_000 } satisfies BufferingHints,
  fileExtension: '.csv',
  pollIntervalMs: 200,
  getRecordsLimit: 1_000,
  /** The processor's buffer, BufferSizeInMBs as infra/constructs/delivery-stream.ts sets it (and why). */
  maxInvocationBytes: MiB / 4,
  transformRetries: 3,
  listShardsIntervalMs: 30_000,
  baseBackoffMs: 100,
  maxBackoffMs: 5_000,
  /** Attempts per object once stopping: a stop must end even if S3 is gone (the checkpoint did not move). */
  shutdownWriteAttempts: 3,
  warnIntervalMs: 60_000,
} as const;

/** Firehose names the error output folder for transformation failures so. */
const PROCESSING_FAILED = 'processing-failed';

/**
 * `errorCode`s in error objects. Firehose documents the error object's fields but not its code
 * strings, so these are the project's own; readers should key on them, not on AWS's.
 */
export const DELIVERY_ERROR_CODES = {
  processingFailed: 'Lambda.ProcessingFailed',
  invocationFailed: 'Lambda.InvocationFailed',
  invalidResponse: 'Lambda.InvalidResponse',
  missingPartitionKey: 'DynamicPartitioning.MissingPartitionKey',
} as const;
export type DeliveryErrorCode = (typeof DELIVERY_ERROR_CODES)[keyof typeof DELIVERY_ERROR_CODES];

/**
 * One line of an error object, as Firehose writes transformation failures.
 * https://docs.aws.amazon.com/firehose/latest/dev/data-transformation-failure-handling.html
 */
export interface ProcessingFailedRecord {
  attemptsMade: number;
  arrivalTimestamp: number;
  errorCode: DeliveryErrorCode;
  errorMessage: string;
  attemptEndingTimestamp: number;
  /** The source record, base64. */
  rawData: string;
  lambdaArn: string;
}

export interface ShardMetrics {
  shardId: string;
  recordsIn: number;
  /** Arrival time of the last record read. */
  lastArrivalMs: number | undefined;
  checkpoint: string | undefined;
  millisBehindLatest: number;
  finished: boolean;
}

export interface DeliveryStreamMetrics {
  recordsIn: number;
  /**
   * Records read and passed over because they arrived before the starting position (LATEST's first
   * start, or AT_TIMESTAMP's time): with LATEST, anything here was written before the delivery
   * stream was ready, and is not delivered.
   */
  recordsBeforeStart: number;
  recordsOk: number;
  recordsDropped: number;
  recordsFailed: number;
  invocations: number;
  /** GetRecords calls made, over shards (Kinesis allows 5 per shard per second). */
  getRecordsCalls: number;
  objectsOut: number;
  errorObjectsOut: number;
  bytesOut: number;
  bufferedRecords: number;
  bufferedBytes: number;
  /** Open buffers, one per evaluated prefix (table, layout and hour; or error hour): active partitions. */
  bufferedPartitions: number;
  /** Age of the oldest open buffer: how stale the freshest data in S3 may be. */
  oldestBufferedAgeMs: number;
  /** The largest over shards, from GetRecords. */
  millisBehindLatest: number;
  shards: ShardMetrics[];
}

/** Base class of every error this module throws. */
export class DeliveryStreamError extends Error {
  override name = 'DeliveryStreamError';
}

export class DeliveryStreamAlreadyRunningError extends DeliveryStreamError {
  override name = 'DeliveryStreamAlreadyRunningError';
  constructor(readonly deliveryStreamName: string) {
    super(`delivery stream ${deliveryStreamName} is already running`);
  }
}

/** Kinesis refused a read for a reason retrying cannot fix (missing stream, permissions, bad position). */
export class KinesisReadError extends DeliveryStreamError {
  override name = 'KinesisReadError';
  constructor(
    readonly streamName: string,
    readonly shardId: string | undefined,
    readonly operation: string,
    options: { cause: unknown },
  ) {
    super(
      `${operation} on stream ${streamName}${shardId ? ` shard ${shardId}` : ''} failed: ${errorName(options.cause)}`,
      options,
    );
  }
}

/** S3 refused a write for a reason retrying cannot fix (missing bucket, permissions). */
export class ObjectWriteError extends DeliveryStreamError {
  override name = 'ObjectWriteError';
  constructor(
    readonly bucket: string,
    readonly key: string,
    options: { cause: unknown },
  ) {
    super(`PutObject s3://${bucket}/${key} failed: ${errorName(options.cause)}`, options);
  }
}

function errorName(e: unknown): string {
  return (e as { name?: unknown })?.name ? String((e as { name: unknown }).name) : String(e);
}

interface ShardState {
  shardId: string;
  iterator: string | undefined;
  /** Last sequence number read (not necessarily durable): where a renewed iterator resumes. */
  lastRead: string | undefined;
  /** AT_TIMESTAMP in `scan` mode: records that arrived before this are skipped. */
  skipBeforeMs: number | undefined;
  lastArrivalMs: number | undefined;
  millisBehindLatest: number;
  recordsIn: number;
  failures: number;
  finished: boolean;
  /** When it was last read (the stream's clock): it is read again a poll interval later, not sooner. */
  lastPolledMs: number | undefined;
}

interface InFlight {
  record: _Record;
  arrivalMs: number;
  pending: PendingRecord;
}

export class DeliveryStream {
  readonly name: string;
  private readonly o: DeliveryStreamOptions;
  private readonly hints: BufferingHints;
  private readonly prefix: string;
  private readonly errorOutputPrefix: string;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly store: CheckpointStore;
  private readonly buffers: DeliveryBuffers;
  private readonly shards = new Map<string, ShardState>();
  private readonly region: string;
  private checkpoints = new ShardCheckpoints();
  private checkpointDirty = false;
  private running: Promise<void> | undefined;
  /** When this delivery stream first started (undefined in a checkpoint written before it was kept). */
  private firstStartedAtMs: number | undefined;
  private readonly started: { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void };
  private stopping = false;
  private wake: (() => void) | undefined;
  private lastListShardsMs = Number.NEGATIVE_INFINITY;
  private lastWarnMs = Number.NEGATIVE_INFINITY;
  private readonly counters = {
    recordsIn: 0,
    recordsBeforeStart: 0,
    recordsOk: 0,
    recordsDropped: 0,
    recordsFailed: 0,
    invocations: 0,
    objectsOut: 0,
    errorObjectsOut: 0,
    bytesOut: 0,
    getRecordsCalls: 0,
  };

  constructor(options: DeliveryStreamOptions) {
    this.o = options;
    this.name = options.name ?? DELIVERY_STREAM_DEFAULTS.name;
    this.hints = { ...DELIVERY_STREAM_DEFAULTS.bufferingHints, ...options.bufferingHints };
    this.prefix = options.prefix ?? INGESTION_PREFIX;
    this.errorOutputPrefix = options.errorOutputPrefix ?? INGESTION_ERROR_PREFIX;
    const keyNames = [...this.prefix.matchAll(/!\{partitionKeyFromLambda:([^}]*)\}/g)].map((m) => m[1]);
    checkPrefix(this.prefix, keyNames);
    checkPrefix(this.errorOutputPrefix, [], PROCESSING_FAILED);
    this.logger = (options.logger ?? silentLogger).child({
      deliveryStream: this.name,
      stream: options.streamName,
    });
    this.now = options.now ?? Date.now;
    this.region = options.region ?? 'local';
    this.store = new CheckpointStore(options.checkpointDir, options.streamName, this.name, this.now);
    this.buffers = new DeliveryBuffers(this.hints);
    let resolve!: () => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // A run that fails before it is ready rejects ready(); nobody need be listening.
    promise.catch(() => undefined);
    this.started = { promise, resolve, reject };
  }

  /**
   * Resolves once `run()` has fixed where it reads from, durably: with the default LATEST, records
   * put on the stream before this resolved are never delivered (as with Firehose), records put after
   * it always are. Rejects if `run()` failed first.
   */
  ready(): Promise<void> {
    return this.started.promise;
  }

  run(): Promise<void> {
    if (this.running) throw new DeliveryStreamAlreadyRunningError(this.name);
    this.running = this.loop();
    return this.running;
  }

  /** Writes what is buffered, saves the checkpoint, and resolves once `run()` has finished. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await this.running?.catch(() => undefined);
  }

  metrics(): DeliveryStreamMetrics {
    const buffered = this.buffers.stats(this.now());
    const shards = [...this.shards.values()].map((s): ShardMetrics => ({
      shardId: s.shardId,
      recordsIn: s.recordsIn,
      lastArrivalMs: s.lastArrivalMs,
      checkpoint: this.checkpoints.position(s.shardId),
      millisBehindLatest: s.millisBehindLatest,
      finished: s.finished,
    }));
    return {
      ...this.counters,
      bufferedRecords: buffered.records,
      bufferedBytes: buffered.bytes,
      bufferedPartitions: buffered.partitions,
      oldestBufferedAgeMs: buffered.oldestAgeMs,
      millisBehindLatest: Math.max(0, ...shards.map((s) => s.millisBehindLatest)),
      shards,
    };
  }

  private async loop(): Promise<void> {
    let state;
    try {
      state = await this.store.begin();
    } catch (e) {
      this.started.reject(e);
      throw e;
    }
    this.checkpoints = new ShardCheckpoints(state.shards);
    this.firstStartedAtMs = state.firstStartedAt?.getTime();
    this.started.resolve();
    this.logger.info('delivery stream started', {
      bucket: this.o.bucket,
      checkpoint: this.store.file,
      bufferSizeBytes: this.hints.sizeBytes,
      bufferIntervalMs: this.hints.intervalMs,
      bounded: this.o.end !== undefined,
    });
    let failure: { error: unknown } | undefined;
    try {
      while (!this.stopping) {
        await this.refreshShards();
        for (const shard of this.shards.values()) {
          if (this.stopping) break;
          if (!shard.finished && this.isDue(shard)) await this.pollShard(shard);
        }
        await this.writeAll(this.buffers.due(this.now()));
        await this.saveCheckpoint();
        if (this.o.end && this.shards.size > 0 && [...this.shards.values()].every((s) => s.finished)) break;
        await this.sleep(this.idleWaitMs());
      }
    } catch (error) {
      failure = { error };
    }
    this.stopping = true;
    try {
      await this.writeAll(this.buffers.drain());
      await this.saveCheckpoint();
    } catch (error) {
      this.logger.error('delivery stream could not write its buffers on the way out', { err: error });
      failure ??= { error };
    }
    const m = this.metrics();
    this.logger.info('delivery stream stopped', {
      recordsIn: m.recordsIn,
      objectsOut: m.objectsOut,
      errorObjectsOut: m.errorObjectsOut,
      unwrittenRecords: this.checkpoints.pending(),
    });
    if (failure) throw failure.error;
  }

  private get pollMs(): number {
    return this.o.pollIntervalMs ?? DELIVERY_STREAM_DEFAULTS.pollIntervalMs;
  }

  /**
   * A shard is read at most once per poll interval, busy or not: Kinesis allows 5 GetRecords per
   * shard per second (more are throttled), so a reader that re-reads a busy shard at once gets small
   * pages at a cost per call, then throttling. What arrived meanwhile comes in the next, larger page.
   * (AWS Firehose reads once a second per shard, docs/deploy.md; the default here, 200 ms, is the
   * Kinesis limit, the sub-second end of what the fast mode models.)
   */
  private isDue(shard: ShardState): boolean {
    if (shard.lastPolledMs === undefined) return true;
    const since = this.now() - shard.lastPolledMs;
    // A wall clock stepped back (NTP): read now rather than wait out the step.
    return since >= this.pollMs || since < 0;
  }

  /** Until the next shard read or buffer flush is due (at most a poll interval). */
  private idleWaitMs(): number {
    const now = this.now();
    let wait = this.pollMs;
    const due = this.buffers.nextDueMs();
    if (due !== undefined) wait = Math.min(wait, due - now);
    for (const shard of this.shards.values())
      if (!shard.finished)
        wait = Math.min(wait, shard.lastPolledMs === undefined ? 0 : shard.lastPolledMs + this.pollMs - now);
    return Math.max(0, wait);
  }

  /** Waits, but wakes at once for `stop()`. */
  private sleep(ms: number): Promise<void> {
    if (this.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }

  private backoffMs(attempt: number): number {
    return Math.min(
      DELIVERY_STREAM_DEFAULTS.maxBackoffMs,
      DELIVERY_STREAM_DEFAULTS.baseBackoffMs * 2 ** Math.max(0, attempt - 1),
    );
  }

  /** Warnings about retries, at most one a minute whatever their cause. */
  private warn(msg: string, fields: Record<string, unknown>): void {
    if (this.now() - this.lastWarnMs < DELIVERY_STREAM_DEFAULTS.warnIntervalMs) {
      this.logger.debug(msg, fields);
      return;
    }
    this.lastWarnMs = this.now();
    this.logger.warn(msg, fields);
  }

  /** Where a shard without a checkpoint starts, LATEST resolved to the first start's time. */
  private startFor(shardId: string): StartingPosition & { fromLatest?: true } {
    const option = this.o.startingPosition ?? { type: 'LATEST' };
    const start = typeof option === 'function' ? option(shardId) : option;
    if (start.type !== 'LATEST') return start;
    // A checkpoint file from before the first start was recorded: everything retained, as before.
    if (this.firstStartedAtMs === undefined) return { type: 'TRIM_HORIZON' };
    return { type: 'AT_TIMESTAMP', timestamp: new Date(this.firstStartedAtMs), fromLatest: true };
  }

  /** New shards appear after a reshard; a bounded run keeps the shards it started with. */
  private async refreshShards(): Promise<void> {
    if (this.o.end && this.shards.size > 0) return;
    if (this.now() - this.lastListShardsMs < DELIVERY_STREAM_DEFAULTS.listShardsIntervalMs) return;
    const ids: string[] = [];
    try {
      let token: string | undefined;
      do {
        const page: ListShardsCommandOutput = await this.o.kinesis.send(
          new ListShardsCommand(token ? { NextToken: token } : { StreamName: this.o.streamName }),
        );
        for (const s of page.Shards ?? []) if (s.ShardId) ids.push(s.ShardId);
        token = page.NextToken;
      } while (token);
    } catch (e) {
      if (!isRetryablePutError(e))
        throw new KinesisReadError(this.o.streamName, undefined, 'ListShards', { cause: e });
      this.warn('ListShards failed; retrying', { errorCode: errorName(e) });
      return;
    }
    this.lastListShardsMs = this.now();
    for (const shardId of ids) {
      if (this.shards.has(shardId)) continue;
      const start = this.startFor(shardId);
      const hasCheckpoint = this.checkpoints.position(shardId) !== undefined;
      this.shards.set(shardId, {
        shardId,
        iterator: undefined,
        lastRead: undefined,
        skipBeforeMs: !hasCheckpoint && start.type === 'AT_TIMESTAMP' ? start.timestamp.getTime() : undefined,
        lastArrivalMs: undefined,
        millisBehindLatest: 0,
        recordsIn: 0,
        failures: 0,
        lastPolledMs: undefined,
        finished: false,
      });
      this.logger.info('reading shard', {
        shardId,
        from: hasCheckpoint
          ? `after ${this.checkpoints.position(shardId)}`
          : start.type === 'AT_TIMESTAMP' && start.fromLatest
            ? `LATEST as of the first start, ${start.timestamp.toISOString()}`
            : start.type,
      });
    }
  }

  private iteratorRequest(shard: ShardState): GetShardIteratorCommandInput {
    const base = { StreamName: this.o.streamName, ShardId: shard.shardId };
    const after = shard.lastRead ?? this.checkpoints.position(shard.shardId);
    if (after !== undefined)
      return { ...base, ShardIteratorType: 'AFTER_SEQUENCE_NUMBER', StartingSequenceNumber: after };
    const start = this.startFor(shard.shardId);
    switch (start.type) {
      case 'TRIM_HORIZON':
      case 'LATEST':
        return { ...base, ShardIteratorType: start.type };
      case 'AT_SEQUENCE_NUMBER':
        return {
          ...base,
          ShardIteratorType: 'AT_SEQUENCE_NUMBER',
          StartingSequenceNumber: start.sequenceNumber,
        };
      case 'AT_TIMESTAMP':
        // From LATEST, the first start usually has no record after it: scan unless told otherwise.
        return this.o.atTimestamp === 'scan' || (start.fromLatest && this.o.atTimestamp !== 'native')
          ? { ...base, ShardIteratorType: 'TRIM_HORIZON' }
          : { ...base, ShardIteratorType: 'AT_TIMESTAMP', Timestamp: start.timestamp };
      default:
        return start satisfies never;
    }
  }

  /** Reads one page of a shard and hands it on. */
  private async pollShard(shard: ShardState): Promise<void> {
    shard.lastPolledMs = this.now();
    const page = await this.readPage(shard);
    if (page === undefined) return;
    const records = page.Records ?? [];
    shard.millisBehindLatest = page.MillisBehindLatest ?? 0;
    const accepted: InFlight[] = [];
    for (const record of records) {
      const arrivalMs = record.ApproximateArrivalTimestamp?.getTime() ?? this.now();
      const sequenceNumber = record.SequenceNumber!;
      if (this.isBeyondEnd(shard.shardId, sequenceNumber, arrivalMs)) {
        shard.finished = true;
        break;
      }
      const pending = this.checkpoints.track(shard.shardId, sequenceNumber);
      shard.lastRead = sequenceNumber;
      shard.lastArrivalMs = arrivalMs;
      if (shard.skipBeforeMs !== undefined && arrivalMs < shard.skipBeforeMs) {
        pending.done = true;
        this.counters.recordsBeforeStart += 1;
      } else accepted.push({ record, arrivalMs, pending });
    }
    shard.recordsIn += accepted.length;
    this.counters.recordsIn += accepted.length;
    if (accepted.length > 0) await this.deliver(shard, accepted);
    shard.iterator = page.NextShardIterator;
    // No next iterator: the shard was closed by a reshard and is read to its end.
    if (page.NextShardIterator === undefined) shard.finished = true;
    else if (this.o.end && records.length === 0 && shard.millisBehindLatest === 0) shard.finished = true;
  }

  /** One GetRecords call (taking an iterator first if needed); undefined when there is nothing to read now. */
  private async readPage(shard: ShardState): Promise<GetRecordsCommandOutput | undefined> {
    let operation = 'GetShardIterator';
    try {
      if (shard.iterator === undefined) {
        const res = await this.o.kinesis.send(new GetShardIteratorCommand(this.iteratorRequest(shard)));
        shard.iterator = res.ShardIterator;
        if (shard.iterator === undefined) {
          shard.finished = true;
          return undefined;
        }
      }
      operation = 'GetRecords';
      this.counters.getRecordsCalls += 1;
      const page = await this.o.kinesis.send(
        new GetRecordsCommand({
          ShardIterator: shard.iterator,
          Limit: this.o.getRecordsLimit ?? DELIVERY_STREAM_DEFAULTS.getRecordsLimit,
        }),
      );
      shard.failures = 0;
      return page;
    } catch (e) {
      if (errorName(e) === 'ExpiredIteratorException') {
        // Iterators live five minutes; take a new one from the last record read.
        shard.iterator = undefined;
        return undefined;
      }
      if (!isRetryablePutError(e))
        throw new KinesisReadError(this.o.streamName, shard.shardId, operation, { cause: e });
      shard.failures += 1;
      this.warn('reading Kinesis failed; retrying with backoff', {
        shardId: shard.shardId,
        operation,
        errorCode: errorName(e),
        attempt: shard.failures,
      });
      await this.sleep(this.backoffMs(shard.failures));
      return undefined;
    }
  }

  private isBeyondEnd(shardId: string, sequenceNumber: string, arrivalMs: number): boolean {
    const end = this.o.end;
    if (!end) return false;
    if (end.lastSequence?.shardId === shardId)
      return BigInt(sequenceNumber) > BigInt(end.lastSequence.sequenceNumber);
    return arrivalMs > end.arrivedBy.getTime();
  }

  /** Splits records into invocations no larger than `maxInvocationBytes` (at least one record each). */
  private async deliver(shard: ShardState, items: InFlight[]): Promise<void> {
    const maxBytes = this.o.maxInvocationBytes ?? DELIVERY_STREAM_DEFAULTS.maxInvocationBytes;
    let chunk: InFlight[] = [];
    let bytes = 0;
    for (const item of items) {
      const size = Math.ceil((item.record.Data?.byteLength ?? 0) / 3) * 4;
      if (chunk.length > 0 && bytes + size > maxBytes) {
        await this.invokeAndRoute(shard, chunk);
        chunk = [];
        bytes = 0;
      }
      chunk.push(item);
      bytes += size;
    }
    if (chunk.length > 0) await this.invokeAndRoute(shard, chunk);
  }

  private event(shard: ShardState, chunk: InFlight[]): FirehoseTransformationEvent {
    const account = '000000000000';
    return {
      invocationId: randomUUID(),
      deliveryStreamArn: `arn:aws:firehose:${this.region}:${account}:deliverystream/${this.name}`,
      sourceKinesisStreamArn: `arn:aws:kinesis:${this.region}:${account}:stream/${this.o.streamName}`,
      region: this.region,
      records: chunk.map(({ record, arrivalMs }) => ({
        // Firehose's record ids for a Kinesis source: the sequence number, then the subsequence.
        recordId: `${record.SequenceNumber}000000`,
        approximateArrivalTimestamp: arrivalMs,
        data: Buffer.from(record.Data ?? new Uint8Array()).toString('base64'),
        kinesisRecordMetadata: {
          shardId: shard.shardId,
          partitionKey: record.PartitionKey ?? '',
          approximateArrivalTimestamp: arrivalMs,
          sequenceNumber: record.SequenceNumber!,
          subsequenceNumber: 0,
        },
      })),
    };
  }

  private async invokeAndRoute(shard: ShardState, chunk: InFlight[]): Promise<void> {
    const event = this.event(shard, chunk);
    const retries = this.o.transformRetries ?? DELIVERY_STREAM_DEFAULTS.transformRetries;
    let outcome:
      | { kind: 'results'; results: Map<string, FirehoseTransformationResultRecord> }
      | { kind: 'failed'; code: DeliveryErrorCode; message: string }
      | undefined;
    let attempts = 0;
    while (outcome === undefined && !this.stopping) {
      attempts += 1;
      this.counters.invocations += 1;
      try {
        const parsed = FirehoseTransformationResultSchema.safeParse(await this.o.transform(event));
        outcome = parsed.success
          ? { kind: 'results', results: new Map(parsed.data.records.map((r) => [r.recordId, r])) }
          : // Firehose fails every record of a response it cannot read.
            {
              kind: 'failed',
              code: DELIVERY_ERROR_CODES.invalidResponse,
              message: `malformed response: ${parsed.error.issues[0]?.message}`,
            };
      } catch (e) {
        this.warn('record transformation failed; retrying', {
          invocationId: event.invocationId,
          attempt: attempts,
          err: e,
        });
        if (attempts > retries)
          outcome = {
            kind: 'failed',
            code: DELIVERY_ERROR_CODES.invocationFailed,
            message: e instanceof Error ? e.message : String(e),
          };
        else await this.sleep(this.backoffMs(attempts));
      }
    }
    // Stopped while retrying: leave the records unwritten (not checkpointed) for the next run.
    if (outcome === undefined) return;
    for (const [i, item] of chunk.entries()) {
      const input = event.records[i];
      if (outcome.kind === 'failed') await this.routeError(item, input.data, attempts, outcome);
      else await this.route(item, input.data, input.recordId, outcome.results.get(input.recordId), attempts);
    }
  }

  private async route(
    item: InFlight,
    rawData: string,
    recordId: string,
    result: FirehoseTransformationResultRecord | undefined,
    attempts: number,
  ): Promise<void> {
    if (result === undefined) {
      await this.routeError(item, rawData, attempts, {
        code: DELIVERY_ERROR_CODES.invalidResponse,
        message: `the response has no record ${recordId}`,
      });
      return;
    }
    switch (result.result) {
      case 'Ok': {
        let prefix: string;
        try {
          prefix = evaluatePrefix(this.prefix, {
            timestampMs: item.arrivalMs,
            partitionKeys: result.metadata?.partitionKeys,
          });
        } catch (e) {
          if (!(e instanceof MissingPartitionKeyError)) throw e;
          await this.routeError(item, rawData, attempts, {
            code: DELIVERY_ERROR_CODES.missingPartitionKey,
            message: e.message,
          });
          return;
        }
        this.counters.recordsOk += 1;
        const data = Buffer.from(result.data, 'base64');
        await this.writeAll(this.buffers.add(prefix, 'data', data, item.pending, this.now()));
        return;
      }
      case 'Dropped':
        this.counters.recordsDropped += 1;
        item.pending.done = true;
        return;
      case 'ProcessingFailed':
        await this.routeError(item, rawData, attempts, {
          code: DELIVERY_ERROR_CODES.processingFailed,
          message: 'the transformation function returned ProcessingFailed (its log names the reason)',
        });
        return;
      default:
        result.result satisfies never;
    }
  }

  private async routeError(
    item: InFlight,
    rawData: string,
    attemptsMade: number,
    error: { code: DeliveryErrorCode; message: string },
  ): Promise<void> {
    this.counters.recordsFailed += 1;
    const line: ProcessingFailedRecord = {
      attemptsMade,
      arrivalTimestamp: item.arrivalMs,
      errorCode: error.code,
      errorMessage: error.message,
      attemptEndingTimestamp: this.now(),
      rawData,
      lambdaArn: `arn:aws:lambda:${this.region}:000000000000:function:${this.name}-transform`,
    };
    const prefix = evaluatePrefix(this.errorOutputPrefix, {
      timestampMs: item.arrivalMs,
      errorOutputType: PROCESSING_FAILED,
    });
    const body = Buffer.from(`${JSON.stringify(line)}\n`, 'utf8');
    await this.writeAll(this.buffers.add(prefix, 'error', body, item.pending, this.now()));
  }

  /**
   * `<name>-1-<write time>-<first shard>-<first sequence number>-<random>`: unique (a redelivery or a
   * replay never overwrites an object), sortable by write time, traceable to the stream position.
   */
  private objectKey(buffer: SealedBuffer): string {
    const time = formatUtc('yyyy-MM-dd-HH-mm-ss', this.now());
    const random = randomBytes(4).toString('hex');
    const ext =
      buffer.kind === 'data' ? (this.o.fileExtension ?? DELIVERY_STREAM_DEFAULTS.fileExtension) : '';
    return `${buffer.prefix}${this.name}-1-${time}-${buffer.first.shardId}-${buffer.first.sequenceNumber}-${random}${ext}`;
  }

  private async writeAll(buffers: SealedBuffer[]): Promise<void> {
    for (const buffer of buffers) await this.write(buffer);
  }

  /**
   * Writes one object, retrying transient failures until it lands (Firehose retries S3 for up to a
   * day) or, once stopping, a few times; what is not written is not checkpointed, so it is read again.
   */
  private async write(buffer: SealedBuffer): Promise<void> {
    const key = this.objectKey(buffer);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.o.s3.send(
          new PutObjectCommand({
            Bucket: this.o.bucket,
            Key: key,
            Body: buffer.body,
            ContentType: buffer.kind === 'data' ? 'text/csv; charset=utf-8' : 'application/x-ndjson',
          }),
        );
        break;
      } catch (e) {
        if (!isRetryablePutError(e)) throw new ObjectWriteError(this.o.bucket, key, { cause: e });
        if (this.stopping && attempt >= DELIVERY_STREAM_DEFAULTS.shutdownWriteAttempts) {
          this.logger.error('giving up on an object while stopping; its records will be read again', {
            key,
            records: buffer.records.length,
            errorCode: errorName(e),
          });
          return;
        }
        this.warn('writing to S3 failed; retrying with backoff', { key, attempt, errorCode: errorName(e) });
        await this.sleep(this.backoffMs(attempt));
      }
    }
    for (const record of buffer.records) record.done = true;
    if (buffer.kind === 'data') this.counters.objectsOut += 1;
    else this.counters.errorObjectsOut += 1;
    this.counters.bytesOut += buffer.body.byteLength;
    this.checkpointDirty = this.checkpoints.advance() || this.checkpointDirty;
    this.logger.debug('object written', {
      key,
      records: buffer.records.length,
      bytes: buffer.body.byteLength,
    });
  }

  private async saveCheckpoint(): Promise<void> {
    this.checkpointDirty = this.checkpoints.advance() || this.checkpointDirty;
    if (!this.checkpointDirty) return;
    await this.store.save(this.checkpoints.snapshot());
    this.checkpointDirty = false;
  }
}
