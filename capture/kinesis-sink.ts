import { PutRecordsCommand, type KinesisClient, type PutRecordsResultEntry } from '@aws-sdk/client-kinesis';
import { silentLogger, type Logger } from '../core/logger';

/**
 * Delivery contract: `put` resolves only once Kinesis has accepted every record, so a caller may
 * acknowledge its source (a Postgres LSN, a replay cursor) on resolution. Delivery is at-least-once:
 * a whole-call failure (timeout, connection reset) can hide a write that did land, and resending
 * only the failed entries of a partial failure reorders them. Consumers must tolerate duplicates and
 * order by the identity carried inside each record, never by Kinesis sequence number.
 */
export interface SinkRecord {
  /** Chooses the shard (MD5 of the key); 1–256 characters. */
  partitionKey: string;
  data: Uint8Array;
  /**
   * Events of oversized changes this record only points to (core/oversized-change.ts). A sink
   * that sends the record must have stored them first: capture/oversized-sink.ts does, and hands
   * the record on without them; KinesisSink refuses a record that still carries any.
   */
  oversized?: readonly OversizedPayload[];
}

/** One oversized change's whole event, and where it must be stored before its pointer is sent. */
export interface OversizedPayload {
  /** Key in the bucket for oversized changes (`oversized/<table>/<sha256>.json`). */
  key: string;
  body: Uint8Array;
  /** `design (design_id=7) at epoch …, lsn …, seq …`: what logs and errors name. */
  change: string;
  /** The record the change would have been on its own: why it went by claim check. */
  bytes: number;
}

export interface RecordSink {
  put(records: readonly SinkRecord[]): Promise<PutResult>;
}

export interface PutResult {
  records: number;
  /** Data plus partition-key bytes, counted once per input record (retries are not re-counted). */
  bytes: number;
  /** PutRecords calls made, retries included. */
  calls: number;
  /** Calls that resent entries after a throttle or a transient failure. */
  retries: number;
  /** One per input record, in input order. */
  sequenceNumbers: string[];
}

const MiB = 1024 * 1024;

/**
 * The PutRecords quotas: ≤ 500 entries and ≤ 5 MiB per call, each entry ≤ 1 MiB, all counting the
 * data blob plus the partition key; partition keys are 1–256 characters.
 * https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html
 * A stream can be configured for records up to 10 MiB (MaxRecordSizeInKiB); the project's streams
 * keep the 1 MiB default, so `maxRecordBytes` only changes if the stack does.
 */
export interface PutRecordsLimits {
  maxRecordsPerCall: number;
  maxBytesPerCall: number;
  maxRecordBytes: number;
  maxPartitionKeyLength: number;
}

export const KINESIS_PUT_RECORDS_LIMITS = {
  maxRecordsPerCall: 500,
  maxBytesPerCall: 5 * MiB,
  maxRecordBytes: 1 * MiB,
  maxPartitionKeyLength: 256,
} as const satisfies PutRecordsLimits;

/** Base class of every error this module throws. */
export class KinesisSinkError extends Error {
  override name = 'KinesisSinkError';
}

/**
 * A single record above the per-record quota: no split can make it fit, so it is rejected upfront.
 * Capture sends a change too big for a record by claim check (core/oversized-change.ts) with only
 * its key columns, so a record still too big has key values over the limit: the message names the
 * row by its partition key (`<table>:<key values>`) and says what can be done.
 */
export class RecordTooLargeError extends KinesisSinkError {
  override name = 'RecordTooLargeError';
  constructor(
    readonly recordIndex: number,
    readonly recordBytes: number,
    readonly limitBytes: number,
    readonly partitionKey = '',
  ) {
    super(
      `record ${recordIndex}${partitionKey ? ` (partition key ${JSON.stringify(partitionKey.slice(0, 100))})` : ''} is ${recordBytes} bytes (data + partition key); Kinesis accepts at most ${limitBytes}. ` +
        'Changes too big for a record travel by claim check with only their key columns, so these key values alone are too big: ' +
        'shorten them in the source, or leave the table out of capture (TOTES_TABLES)',
    );
  }
}

/** A record points to oversized changes nobody stored: sending it would lose them. */
export class UnstoredPayloadError extends KinesisSinkError {
  override name = 'UnstoredPayloadError';
  constructor(
    readonly recordIndex: number,
    readonly change: string,
  ) {
    super(
      `record ${recordIndex} points to the oversized change ${change}, which was not stored first ` +
        '(capture/oversized-sink.ts stores it)',
    );
  }
}

export class InvalidPartitionKeyError extends KinesisSinkError {
  override name = 'InvalidPartitionKeyError';
  constructor(
    readonly recordIndex: number,
    readonly partitionKeyLength: number,
    readonly maxLength: number,
  ) {
    super(
      `record ${recordIndex} has a partition key of ${partitionKeyLength} characters; Kinesis needs 1–${maxLength}`,
    );
  }
}

/** Kinesis refused the call for a reason that retrying cannot fix (missing stream, permissions, KMS, validation). */
export class PutRecordsRejectedError extends KinesisSinkError {
  override name = 'PutRecordsRejectedError';
  constructor(
    readonly streamName: string,
    readonly errorName: string,
    options: { cause: unknown },
  ) {
    super(`PutRecords to stream ${streamName} was rejected with ${errorName} (not retryable)`, options);
  }
}

/**
 * Some records were still not accepted after `attempts` calls. Nothing was acknowledged for this
 * put, so stopping here is safe: the caller restarts from its last durable position.
 */
export class SinkRetriesExhaustedError extends KinesisSinkError {
  override name = 'SinkRetriesExhaustedError';
  constructor(
    readonly streamName: string,
    readonly attempts: number,
    readonly failedRecords: number,
    readonly acceptedRecords: number,
    readonly lastErrorCode: string,
    options?: { cause: unknown },
  ) {
    super(
      `PutRecords to stream ${streamName}: ${failedRecords} record(s) still failing (${lastErrorCode}) after ` +
        `${attempts} attempts; ${acceptedRecords} record(s) of this put were accepted`,
      options,
    );
  }
}

/** One PutRecords call: the input records `start … start + count - 1`, totalling `bytes`. */
export interface PlannedCall {
  start: number;
  count: number;
  bytes: number;
}

/** Bytes a record counts against the quotas: data blob plus the UTF-8 partition key. */
export function recordBytes(record: SinkRecord): number {
  return record.data.byteLength + Buffer.byteLength(record.partitionKey, 'utf8');
}

/**
 * Splits records, in order, into the fewest consecutive PutRecords calls that respect the limits
 * (greedy packing is optimal when order must be kept). Throws before anything is sent if a record
 * can never be accepted, so a bad record cannot leave half a transaction in the stream.
 */
export function planPutRecordsCalls(
  records: readonly SinkRecord[],
  limits: PutRecordsLimits = KINESIS_PUT_RECORDS_LIMITS,
): PlannedCall[] {
  const calls: PlannedCall[] = [];
  let current: PlannedCall | undefined;
  records.forEach((record, index) => {
    if (record.oversized?.length) throw new UnstoredPayloadError(index, record.oversized[0].change);
    // `.length` counts UTF-16 code units: for keys outside the BMP it is the stricter reading of
    // "256 characters", which errs on the side of rejecting here rather than at the service.
    const keyLength = record.partitionKey.length;
    if (keyLength < 1 || keyLength > limits.maxPartitionKeyLength)
      throw new InvalidPartitionKeyError(index, keyLength, limits.maxPartitionKeyLength);
    const bytes = recordBytes(record);
    if (bytes > limits.maxRecordBytes)
      throw new RecordTooLargeError(index, bytes, limits.maxRecordBytes, record.partitionKey);
    if (
      current === undefined ||
      current.count === limits.maxRecordsPerCall ||
      current.bytes + bytes > limits.maxBytesPerCall
    ) {
      current = { start: index, count: 0, bytes: 0 };
      calls.push(current);
    }
    current.count += 1;
    current.bytes += bytes;
  });
  return calls;
}

/**
 * Whole-call errors worth retrying: throttling and server-side or transport failures. Everything
 * else (ResourceNotFound, AccessDenied, KMS*, InvalidArgument, ValidationException, credentials) needs
 * a human. https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html#API_PutRecords_Errors
 * https://docs.aws.amazon.com/kinesis/latest/APIReference/CommonErrors.html
 */
const RETRYABLE_ERROR_NAMES: ReadonlySet<string> = new Set([
  'ProvisionedThroughputExceededException',
  'LimitExceededException',
  'ThrottlingException',
  'KMSThrottlingException',
  'InternalFailureException',
  'InternalFailure',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
]);

/** Socket-level failures (Node `error.code`) where the request may simply be sent again. */
const RETRYABLE_NETWORK_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

interface AwsErrorShape {
  name?: unknown;
  code?: unknown;
  message?: unknown;
  cause?: unknown;
  $fault?: unknown;
  $retryable?: unknown;
  $metadata?: { httpStatusCode?: unknown };
}

// eslint-disable-next-line security/detect-non-literal-regexp -- built from the constant RETRYABLE_NETWORK_CODES
const NETWORK_CODE_IN_MESSAGE = new RegExp(`\\b(${[...RETRYABLE_NETWORK_CODES].join('|')})\\b`);

/**
 * The socket error code, if any. The SDK's retry middleware re-wraps anything that is not
 * `instanceof Error` in its own realm as `new Error("AWS SDK error wrapper for …")`, dropping `code`
 * but keeping the text (seen under jest's VM realm), so the message is the fallback.
 */
function networkCode(err: AwsErrorShape): string | undefined {
  if (typeof err.code === 'string' && RETRYABLE_NETWORK_CODES.has(err.code)) return err.code;
  return typeof err.message === 'string' ? NETWORK_CODE_IN_MESSAGE.exec(err.message)?.[1] : undefined;
}

function errorName(e: unknown): string {
  if (typeof e !== 'object' || e === null) return String(e);
  const err = e as AwsErrorShape;
  return networkCode(err) ?? (typeof err.name === 'string' ? err.name : 'UnknownError');
}

export function isRetryablePutError(e: unknown): boolean {
  if (typeof e !== 'object' || e === null) return false;
  const err = e as AwsErrorShape;
  if (typeof err.name === 'string' && RETRYABLE_ERROR_NAMES.has(err.name)) return true;
  if (networkCode(err) !== undefined) return true;
  // The SDK marks throttling and transient errors it recognises as `$retryable`.
  if (err.$retryable !== undefined || err.$fault === 'server') return true;
  const status = err.$metadata?.httpStatusCode;
  if (typeof status === 'number' && status >= 500) return true;
  return err.cause !== undefined && err.cause !== e && isRetryablePutError(err.cause);
}

export interface KinesisSinkOptions {
  /**
   * Any Kinesis client. The SDK's own retries (3 attempts by default) stack under this sink's; a
   * client built with `maxAttempts: 1` leaves the whole retry budget to `maxAttempts` here.
   */
  client: Pick<KinesisClient, 'send'>;
  streamName: string;
  logger?: Logger;
  /**
   * PutRecords calls per planned call before giving up. Giving up stops capture without
   * acknowledging, which is safe, so the default is generous.
   */
  maxAttempts?: number;
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  /** PutRecords calls in flight at once for one put. */
  maxConcurrentCalls?: number;
  /** Minimum gap between two retry warnings, whatever the episodes. */
  warnIntervalMs?: number;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  now?: () => number;
}

export const KINESIS_SINK_DEFAULTS = {
  maxAttempts: 20,
  baseBackoffMs: 50,
  maxBackoffMs: 5_000,
  // Enough to keep several shards busy without queueing many 5 MiB requests in memory.
  maxConcurrentCalls: 4,
  warnIntervalMs: 60_000,
} as const;

/**
 * Tracks a retry episode: it opens on the first retryable failure and closes when no batch is
 * waiting to retry. A single throttle that the next call clears is normal traffic shaping and is only
 * logged at debug; a batch failing twice in a row is "repeated", and earns one warning per episode
 * (and never more than one per `warnIntervalMs`), with the counts an operator needs.
 */
class RetryEpisodes {
  private batchesRetrying = 0;
  private episode:
    | {
        startedAt: number;
        failedCalls: number;
        failedRecords: number;
        warned: boolean;
        lastErrorCode: string;
      }
    | undefined;
  private lastWarnAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly logger: Logger,
    private readonly now: () => number,
    private readonly warnIntervalMs: number,
  ) {}

  batchStartedRetrying(): void {
    this.batchesRetrying += 1;
  }

  batchStoppedRetrying(): void {
    this.batchesRetrying -= 1;
    if (this.batchesRetrying > 0 || this.episode === undefined) return;
    const { warned, ...counts } = this.episode;
    this.episode = undefined;
    if (warned) this.logger.info('Kinesis retries recovered', this.fields(counts));
  }

  failure(attempt: number, failedRecords: number, errorCode: string): void {
    this.episode ??= {
      startedAt: this.now(),
      failedCalls: 0,
      failedRecords: 0,
      warned: false,
      lastErrorCode: errorCode,
    };
    const ep = this.episode;
    ep.failedCalls += 1;
    ep.failedRecords += failedRecords;
    ep.lastErrorCode = errorCode;
    this.logger.debug('PutRecords call needs a retry', { attempt, failedRecords, errorCode });
    if (attempt < 2 || ep.warned || this.now() - this.lastWarnAt < this.warnIntervalMs) return;
    ep.warned = true;
    this.lastWarnAt = this.now();
    this.logger.warn('Kinesis is throttling or failing PutRecords repeatedly; retrying with backoff', {
      ...this.fields(ep),
      attempt,
    });
  }

  private fields(ep: {
    startedAt: number;
    failedCalls: number;
    failedRecords: number;
    lastErrorCode: string;
  }) {
    return {
      failedCalls: ep.failedCalls,
      failedRecords: ep.failedRecords,
      lastErrorCode: ep.lastErrorCode,
      episodeMs: this.now() - ep.startedAt,
    };
  }
}

interface PutState {
  records: readonly SinkRecord[];
  sequenceNumbers: string[];
  calls: number;
  retries: number;
  accepted: number;
  /** First fatal error; once set, every batch stops at its next step. */
  failure: { error: unknown } | undefined;
}

export class KinesisSink implements RecordSink {
  private readonly client: Pick<KinesisClient, 'send'>;
  private readonly streamName: string;
  private readonly maxAttempts: number;
  private readonly baseBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly maxConcurrentCalls: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly random: () => number;
  private readonly episodes: RetryEpisodes;

  constructor(options: KinesisSinkOptions) {
    this.client = options.client;
    this.streamName = options.streamName;
    this.maxAttempts = options.maxAttempts ?? KINESIS_SINK_DEFAULTS.maxAttempts;
    this.baseBackoffMs = options.baseBackoffMs ?? KINESIS_SINK_DEFAULTS.baseBackoffMs;
    this.maxBackoffMs = options.maxBackoffMs ?? KINESIS_SINK_DEFAULTS.maxBackoffMs;
    this.maxConcurrentCalls = options.maxConcurrentCalls ?? KINESIS_SINK_DEFAULTS.maxConcurrentCalls;
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.random = options.random ?? Math.random;
    const logger = (options.logger ?? silentLogger).child({ stream: options.streamName });
    this.episodes = new RetryEpisodes(
      logger,
      options.now ?? Date.now,
      options.warnIntervalMs ?? KINESIS_SINK_DEFAULTS.warnIntervalMs,
    );
  }

  async put(records: readonly SinkRecord[]): Promise<PutResult> {
    const plan = planPutRecordsCalls(records);
    const state: PutState = {
      records,
      sequenceNumbers: new Array<string>(records.length),
      calls: 0,
      retries: 0,
      accepted: 0,
      failure: undefined,
    };
    let next = 0;
    const worker = async () => {
      while (state.failure === undefined && next < plan.length) {
        const call = plan[next++];
        try {
          await this.sendBatch(call, state);
        } catch (error) {
          state.failure ??= { error };
        }
      }
    };
    // Every worker has stopped before put settles, so no call outlives a rejected put.
    await Promise.all(Array.from({ length: Math.min(this.maxConcurrentCalls, plan.length) }, worker));
    if (state.failure !== undefined) throw state.failure.error;
    return {
      records: records.length,
      bytes: plan.reduce((sum, call) => sum + call.bytes, 0),
      calls: state.calls,
      retries: state.retries,
      sequenceNumbers: state.sequenceNumbers,
    };
  }

  /**
   * Full jitter: a uniform wait in [0, min(cap, base · 2^(retry-1))), which spreads competing
   * producers best. https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
   */
  private backoffMs(retry: number): number {
    return this.random() * Math.min(this.maxBackoffMs, this.baseBackoffMs * 2 ** (retry - 1));
  }

  /** Sends one planned call, then resends only its failed entries until all are accepted. */
  private async sendBatch(call: PlannedCall, state: PutState): Promise<void> {
    let pending = Array.from({ length: call.count }, (_, i) => call.start + i);
    let retrying = false;
    try {
      for (let attempt = 1; ; attempt++) {
        if (attempt > 1) {
          await this.sleep(this.backoffMs(attempt - 1));
          if (state.failure !== undefined) return;
          state.retries += 1;
        }
        state.calls += 1;
        const outcome = await this.sendOnce(pending, state);
        if (outcome.failed.length === 0) return;
        if (!retrying) this.episodes.batchStartedRetrying();
        retrying = true;
        this.episodes.failure(attempt, outcome.failed.length, outcome.errorCode);
        if (attempt >= this.maxAttempts) {
          throw new SinkRetriesExhaustedError(
            this.streamName,
            attempt,
            outcome.failed.length,
            state.accepted,
            outcome.errorCode,
            outcome.error === undefined ? undefined : { cause: outcome.error },
          );
        }
        pending = outcome.failed;
      }
    } finally {
      if (retrying) this.episodes.batchStoppedRetrying();
    }
  }

  /**
   * One PutRecords call. Entries come back in request order; an entry with a SequenceNumber was
   * accepted, anything else (ErrorCode ProvisionedThroughputExceededException or InternalFailure,
   * or a missing entry) is resent. https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecordsResultEntry.html
   */
  private async sendOnce(
    pending: number[],
    state: PutState,
  ): Promise<{ failed: number[]; errorCode: string; error?: unknown }> {
    let entries: PutRecordsResultEntry[];
    try {
      const response = await this.client.send(
        new PutRecordsCommand({
          StreamName: this.streamName,
          Records: pending.map((i) => ({
            PartitionKey: state.records[i].partitionKey,
            Data: state.records[i].data,
          })),
        }),
      );
      entries = response.Records ?? [];
    } catch (error) {
      if (!isRetryablePutError(error))
        throw new PutRecordsRejectedError(this.streamName, errorName(error), { cause: error });
      return { failed: pending, errorCode: errorName(error), error };
    }
    const failed: number[] = [];
    let errorCode = 'MissingResultEntry';
    pending.forEach((recordIndex, j) => {
      const entry = entries[j];
      if (entry?.SequenceNumber) {
        state.sequenceNumbers[recordIndex] = entry.SequenceNumber;
        state.accepted += 1;
      } else {
        failed.push(recordIndex);
        if (entry?.ErrorCode) errorCode = entry.ErrorCode;
      }
    });
    return { failed, errorCode };
  }
}
