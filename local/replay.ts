import {
  GetRecordsCommand,
  GetShardIteratorCommand,
  ListShardsCommand,
  type KinesisClient,
  type ListShardsCommandOutput,
} from '@aws-sdk/client-kinesis';
import type { S3Client } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { silentLogger, type Logger } from '../core/logger';
import { createHandler } from '../processors/firehose-transform/create-handler';
import type { FirehoseTransform } from '../processors/firehose-transform/firehose-types';
import type { BufferingHints } from './delivery-stream-buffers';
import { DeliveryStream, type DeliveryEnd, type StartingPosition } from './delivery-stream';

/**
 * Replay: read a window of the Kinesis stream again (within its retention) and deliver it through the
 * same transformation, buffering and S3 layout as the live path, into new, uniquely named objects.
 * The changes keep their identities (commit LSN + ordinal), so the idempotent loads downstream
 * change nothing that is already loaded and fill in whatever is missing.
 *
 * It is a separate delivery stream with a throw-away checkpoint, reading each shard from the start of
 * the window and stopping at its end, which is at most the stream's tip when the replay started:
 * changes captured while it runs are the live path's business.
 */

/** `--from` / `--to`: an ISO 8601 time, or a Kinesis sequence number (decimal digits). */
export type ReplayPoint = { kind: 'time'; at: Date } | { kind: 'sequence'; sequenceNumber: string };

/** Base class of every error this module throws. */
export class ReplayError extends Error {
  override name = 'ReplayError';
}

export class InvalidReplayPointError extends ReplayError {
  override name = 'InvalidReplayPointError';
  constructor(readonly text: string) {
    super(`${JSON.stringify(text)} is neither an ISO 8601 time (2025-02-28T09:15:00Z) nor a sequence number`);
  }
}

export class SequenceNumberNotFoundError extends ReplayError {
  override name = 'SequenceNumberNotFoundError';
  constructor(
    readonly streamName: string,
    readonly sequenceNumber: string,
  ) {
    super(
      `sequence number ${sequenceNumber} is not in stream ${streamName} (past its retention, or another stream's)`,
    );
  }
}

export class EmptyReplayWindowError extends ReplayError {
  override name = 'EmptyReplayWindowError';
  constructor(
    readonly from: Date,
    readonly to: Date,
  ) {
    super(`the replay window is empty: it starts at ${from.toISOString()} and ends at ${to.toISOString()}`);
  }
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

export function parseReplayPoint(text: string): ReplayPoint {
  const trimmed = text.trim();
  if (/^\d{20,}$/.test(trimmed)) return { kind: 'sequence', sequenceNumber: trimmed };
  if (ISO_TIME.test(trimmed)) {
    const at = new Date(trimmed);
    if (!Number.isNaN(at.getTime())) return { kind: 'time', at };
  }
  throw new InvalidReplayPointError(text);
}

/** A window turned into per-shard starting positions and an end, with its span in time for progress. */
export interface ResolvedWindow {
  from: Date;
  to: Date;
  start: (shardId: string) => StartingPosition;
  end: DeliveryEnd;
}

/**
 * Finds the shard holding `sequenceNumber` and when its record arrived. Sequence numbers belong to
 * one shard, and AT_SEQUENCE_NUMBER on another shard is refused, which is how the shard is found.
 */
export async function locateSequenceNumber(
  kinesis: Pick<KinesisClient, 'send'>,
  streamName: string,
  sequenceNumber: string,
): Promise<{ shardId: string; arrival: Date }> {
  for (const shardId of await listShardIds(kinesis, streamName)) {
    let iterator: string | undefined;
    try {
      iterator = (
        await kinesis.send(
          new GetShardIteratorCommand({
            StreamName: streamName,
            ShardId: shardId,
            ShardIteratorType: 'AT_SEQUENCE_NUMBER',
            StartingSequenceNumber: sequenceNumber,
          }),
        )
      ).ShardIterator;
    } catch (e) {
      if ((e as Error).name === 'InvalidArgumentException') continue;
      throw e;
    }
    const page = await kinesis.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 1 }));
    const record = page.Records?.[0];
    if (record?.SequenceNumber === sequenceNumber && record.ApproximateArrivalTimestamp)
      return { shardId, arrival: record.ApproximateArrivalTimestamp };
  }
  throw new SequenceNumberNotFoundError(streamName, sequenceNumber);
}

async function listShardIds(kinesis: Pick<KinesisClient, 'send'>, streamName: string): Promise<string[]> {
  const ids: string[] = [];
  let token: string | undefined;
  do {
    const page: ListShardsCommandOutput = await kinesis.send(
      new ListShardsCommand(token ? { NextToken: token } : { StreamName: streamName }),
    );
    for (const s of page.Shards ?? []) if (s.ShardId) ids.push(s.ShardId);
    token = page.NextToken;
  } while (token);
  return ids;
}

/**
 * A sequence-number bound applies exactly on its own shard and, on the other shards, as the time its
 * record arrived (sequence numbers of different shards do not compare).
 */
export async function resolveReplayWindow(
  kinesis: Pick<KinesisClient, 'send'>,
  streamName: string,
  window: { from: ReplayPoint; to?: ReplayPoint },
  now: Date,
): Promise<ResolvedWindow> {
  let fromAt: Date;
  let fromSequence: { shardId: string; sequenceNumber: string } | undefined;
  if (window.from.kind === 'time') fromAt = window.from.at;
  else {
    const located = await locateSequenceNumber(kinesis, streamName, window.from.sequenceNumber);
    fromAt = located.arrival;
    fromSequence = { shardId: located.shardId, sequenceNumber: window.from.sequenceNumber };
  }
  let end: DeliveryEnd = { arrivedBy: now };
  if (window.to?.kind === 'time') end = { arrivedBy: window.to.at < now ? window.to.at : now };
  if (window.to?.kind === 'sequence') {
    const located = await locateSequenceNumber(kinesis, streamName, window.to.sequenceNumber);
    end = {
      arrivedBy: located.arrival,
      lastSequence: { shardId: located.shardId, sequenceNumber: window.to.sequenceNumber },
    };
  }
  if (fromAt > end.arrivedBy) throw new EmptyReplayWindowError(fromAt, end.arrivedBy);
  return {
    from: fromAt,
    to: end.arrivedBy,
    start: (shardId) =>
      fromSequence?.shardId === shardId
        ? { type: 'AT_SEQUENCE_NUMBER', sequenceNumber: fromSequence.sequenceNumber }
        : { type: 'AT_TIMESTAMP', timestamp: fromAt },
    end,
  };
}

export interface ReplayProgress {
  /** Records re-delivered so far. */
  records: number;
  objects: number;
  errorObjects: number;
  bytes: number;
  /** 0–1: how far through the window, in time, the shards have read on average. */
  fraction: number;
  window: { from: Date; to: Date };
}

export interface ReplayResult extends ReplayProgress {
  durationMs: number;
}

export interface ReplayOptions {
  kinesis: Pick<KinesisClient, 'send'>;
  streamName: string;
  s3: Pick<S3Client, 'send'>;
  bucket: string;
  from: ReplayPoint;
  to?: ReplayPoint;
  /** Defaults to the project's transformation handler writing schema objects to `bucket`. */
  transform?: FirehoseTransform;
  bufferingHints?: Partial<BufferingHints>;
  /** `scan` against kinesalite (see DeliveryStreamOptions.atTimestamp). */
  atTimestamp?: 'native' | 'scan';
  onProgress?: (progress: ReplayProgress) => void;
  progressIntervalMs?: number;
  /** Aborting stops the replay early: what was read is written first (Ctrl-C). */
  signal?: AbortSignal;
  pollIntervalMs?: number;
  logger?: Logger;
  now?: () => number;
}

export const REPLAY_DEFAULTS = {
  /** Names replayed objects apart from live ones (`totes-replay-1-…`). */
  name: 'totes-replay',
  progressIntervalMs: 1_000,
} as const;

export async function replay(options: ReplayOptions): Promise<ReplayResult> {
  const now = options.now ?? Date.now;
  const startedMs = now();
  const logger = (options.logger ?? silentLogger).child({ component: 'replay' });
  const window = await resolveReplayWindow(options.kinesis, options.streamName, options, new Date(startedMs));
  // Throw-away: a replay always covers its whole window, so there is nothing to resume.
  const checkpointDir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'totes-replay-'));
  const stream = new DeliveryStream({
    kinesis: options.kinesis,
    streamName: options.streamName,
    s3: options.s3,
    bucket: options.bucket,
    transform: options.transform ?? createHandler({ s3: options.s3, bucket: options.bucket, logger }),
    checkpointDir,
    name: REPLAY_DEFAULTS.name,
    bufferingHints: options.bufferingHints,
    startingPosition: window.start,
    atTimestamp: options.atTimestamp,
    end: window.end,
    pollIntervalMs: options.pollIntervalMs,
    logger,
    now,
  });
  const span = Math.max(1, window.to.getTime() - window.from.getTime());
  const progress = (): ReplayProgress => {
    const m = stream.metrics();
    const fractions = m.shards.map((s) =>
      s.finished
        ? 1
        : s.lastArrivalMs === undefined
          ? 0
          : Math.min(1, Math.max(0, (s.lastArrivalMs - window.from.getTime()) / span)),
    );
    return {
      records: m.recordsIn,
      objects: m.objectsOut,
      errorObjects: m.errorObjectsOut,
      bytes: m.bytesOut,
      fraction: fractions.length ? fractions.reduce((a, b) => a + b, 0) / fractions.length : 0,
      window: { from: window.from, to: window.to },
    };
  };
  logger.info('replay started', { from: window.from.toISOString(), to: window.to.toISOString() });
  const timer = options.onProgress
    ? setInterval(
        () => options.onProgress?.(progress()),
        options.progressIntervalMs ?? REPLAY_DEFAULTS.progressIntervalMs,
      )
    : undefined;
  const abort = () => void stream.stop();
  options.signal?.addEventListener('abort', abort, { once: true });
  if (options.signal?.aborted) abort();
  try {
    await stream.run();
  } finally {
    options.signal?.removeEventListener('abort', abort);
    if (timer) clearInterval(timer);
    await fs.promises.rm(checkpointDir, { recursive: true, force: true });
  }
  const done = progress();
  const result = {
    ...done,
    fraction: options.signal?.aborted ? done.fraction : 1,
    durationMs: now() - startedMs,
  };
  options.onProgress?.(result);
  logger.info('replay finished', {
    records: result.records,
    objects: result.objects,
    durationMs: result.durationMs,
  });
  return result;
}
