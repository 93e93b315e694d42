import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { PoolClient } from 'pg';
import { silentLogger, type Logger } from '../../core/logger';
import { normalizeETag } from '../../core/outstanding-work';
import { pullAhead, type AheadLimits } from '../../core/pull-ahead';
import type { WarehouseTableName } from '../../core/warehouse-model';
import { metricsFor, type MetricSet } from '../shared/metrics';
import { openParquetReader, ParquetCodecError, type ParquetTableReader } from '../shared/parquet-codec';
import { decodeS3ObjectKey, type S3EventRecord } from '../shared/s3-event';
import {
  describeInvalidEvent,
  describeRetryableFailures,
  s3ObjectHandler,
  type ObjectFailure,
} from '../shared/s3-object-handler';
import {
  applyObject,
  emptyOutcome,
  FACT_COPY_MIN_ROWS,
  WarehouseDataError,
  type ApplyOutcome,
} from './apply-batch';
import { loadLogLookup } from '../../core/warehouse-sql';
import {
  BatchBuilder,
  claimColumns,
  ClaimsBuilder,
  factCopyChunks,
  MalformedObjectError,
  type ObjectClaims,
  type PreparedBatch,
} from './load-batch';
import { loadRetryDelaySeconds } from './retry-delay';

/**
 * The load stage: each Parquet object the transform writes to the processed bucket is applied to
 * the warehouse in one transaction (apply-batch.ts). Parse the event — SQS messages wrapping S3
 * notifications (S3 → SQS → load, how it runs in AWS and locally), or S3's own notification — load
 * each object on its own (a bad object fails alone), report.
 *
 * Idempotent, because S3 events are at-least-once and Lambda retries: every write is idempotent on
 * the source position (see core/warehouse-sql.ts), and a version already in `load_log` is skipped.
 * A version is the key and the ETag of the bytes read (migration 006): a corrected object that
 * replaced a loaded one under the same key loads; a redelivery of the same bytes does not.
 *
 * Failure policy (the envelope is processors/shared/s3-object-handler.ts):
 * - An object that can never load as it is (not Parquet, a table the load does not accept, a row
 *   breaking the contract, data Postgres refuses: SQLSTATE class 22/23) is copied to
 *   `quarantine/load/<key>` with `<key>.reason.json` beside it; an error is logged with its key,
 *   `ObjectsQuarantined` is incremented (the alarm metric), and the invocation goes on. The
 *   original stays where it is (the processed bucket is immutable), so re-driving it after a fix
 *   is one event away.
 * - Anything else (S3 or warehouse unavailable, a lock timeout) is retryable. From SQS: the message
 *   of that object is reported in `batchItemFailures`, returns to the queue after its visibility
 *   timeout, and is tried again until the queue's redrive policy gives up (many receives: a
 *   warehouse outage of hours waits in the queue). From S3 directly: after every record was tried
 *   the handler throws LoadRetryableError, so Lambda's async retries take over. Either way, objects
 *   loaded meanwhile are skipped on retry (load_log).
 * Logs carry keys, tables, positions and counts; never row values or connection secrets.
 */

/** Base class of every error this module throws. */
export class LoadHandlerError extends Error {
  override name = 'LoadHandlerError';
}

export class InvalidS3EventError extends LoadHandlerError {
  override name = 'InvalidS3EventError';
  constructor(readonly issues: string[]) {
    super(describeInvalidEvent(issues));
  }
}

/** Thrown at the end of an invocation in which some objects failed retryably, so Lambda retries. */
export class LoadRetryableError extends LoadHandlerError {
  override name = 'LoadRetryableError';
  constructor(readonly failures: readonly ObjectFailure[]) {
    super(describeRetryableFailures(failures));
  }
}

export interface LoadHandlerDeps {
  s3: Pick<S3Client, 'send'>;
  /** Hands out the connection one object's transaction runs on: a pg Pool, or a lazy wrapper. */
  warehouse: { connect(): Promise<PoolClient> };
  logger?: Logger;
  /** A fresh MetricSet per use; default: EMF lines on stdout, stage `load`. */
  metrics?: () => MetricSet;
  now?: () => Date;
  /** Rows prepared and applied at a time inside an object's transaction; default LOAD_PART_ROWS. */
  partRows?: number;
  /** An object in parts COPYs a dimension's placeholders from this many; default apply-batch.ts PLACEHOLDER_COPY_MIN_KEYS. */
  placeholderCopyMinKeys?: number;
  /**
   * SQS's ChangeMessageVisibility on the load queue: a message whose load failed because the
   * warehouse was busy comes back after `loadRetryDelaySeconds`, not the queue's 30 minutes.
   */
  changeVisibility?: (receiptHandle: string, seconds: number) => Promise<void>;
  /** The load queue's redrive maxReceiveCount: only the first half of the receives come back sooner. */
  maxReceiveCount?: number;
}

/**
 * An object of more rows than this is prepared and applied in parts of this many rows, inside its
 * one transaction, so the load's memory is bounded by a part, not by the object (a 128 MiB Firehose
 * object of payments is ~730,000 rows: bench/README.md, `bench:streaming`), and every row is
 * decoded once. Most objects are one part.
 */
export const LOAD_PART_ROWS = 10_000;

/**
 * V8 flags the load function runs with (infra's NODE_OPTIONS; the benches that stand for it use
 * them too). A part of LOAD_PART_ROWS decoded rows outlives V8's default 16 MiB semi-space and is
 * copied and promoted: 32 MiB took 19% off the load's CPU on a 727,821-row object and its peak RSS
 * from 305 to 385 MiB (`npm run bench:streaming -- --heap-mib 384`); 64 MiB came within 40 MB of
 * the 512 MB the streaming target allows.
 */
export const LOAD_V8_FLAGS: readonly string[] = ['--max-semi-space-size=32'];

/**
 * An S3 body in one buffer, filled as its chunks arrive: the object is held once, where
 * `Buffer.from(await Body.transformToByteArray())` held it three times at its peak (the SDK's
 * chunks, their concatenation, and the copy) — 350 MB for a 115 MiB object.
 */
async function bodyBytes(body: AsyncIterable<Uint8Array>, length: number | undefined): Promise<Buffer> {
  if (length === undefined) {
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(Buffer.from(chunk));
    return Buffer.concat(chunks);
  }
  const bytes = Buffer.allocUnsafe(length);
  let at = 0;
  for await (const chunk of body) {
    if (at + chunk.length > length) throw new Error(`S3 sent more than its ContentLength (${length} bytes)`);
    bytes.set(chunk, at);
    at += chunk.length;
  }
  if (at !== length) throw new Error(`S3 sent ${at} of ${length} bytes`);
  return bytes;
}

/**
 * Rows checked (and, for facts, folded) between two turns of the event loop: a row group (4,096
 * rows) is decoded a column chunk at a time and checked in slices of this many, with a turn
 * between each, so a reply of the warehouse to the part being applied waits for a slice (a
 * millisecond or two), not a row group, before its next statement is sent. With parts prepared
 * ahead the load process is rarely idle: a row group decoded in one piece (~20 ms) had delayed
 * each of a part's round trips by up to that (bench:load, bench/README.md "Session 14").
 */
const CHECK_SLICE_ROWS = 1024;

/** Lets the event loop run: the warehouse's replies to the part being applied are handled, its next statement sent. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * A later fact part's COPY text, built while the part before it is applied (a turn of the event
 * loop between chunks), so that applying it only sends bytes: the warehouse is not kept waiting
 * while its text is built (bench:load, "cores busy"). The first part has nothing to overlap with:
 * its text is built as the COPY sends it, the warehouse parsing one chunk while the next is built.
 */
async function withFactCopy(batch: PreparedBatch, firstRow: number): Promise<PreparedBatch> {
  if (firstRow === 0 || batch.kind !== 'fact' || batch.upserts.length < FACT_COPY_MIN_ROWS) return batch;
  const chunks: Buffer[] = [];
  for (const chunk of factCopyChunks(batch)) {
    chunks.push(chunk);
    await nextTurn();
  }
  return { ...batch, factCopy: chunks };
}

/**
 * The object's parts in order, each prepared (checked, folded, its COPY text built) while the part before it is
 * being applied (an empty object is one empty part). Decoding and checking are synchronous, so
 * they run a row group at a time, giving the event loop a turn between slices: the statements of
 * the part in flight go on meanwhile, and the warehouse works while this process does (bench:load).
 * A malformed row throws MalformedObjectError from its part: the object's transaction rolls back
 * every part before it (apply-batch.ts `applyObject`).
 */
async function* preparedParts(reader: ParquetTableReader, partRows: number): AsyncGenerator<PreparedBatch> {
  let firstRow = 0;
  let inPart = 0;
  let builder = new BatchBuilder(reader.table, firstRow);
  for await (const rows of reader.batches(CHECK_SLICE_ROWS, undefined, nextTurn)) {
    for (let at = 0; at < rows.length;) {
      const take = Math.min(rows.length - at, partRows - inPart);
      builder.add(take === rows.length ? rows : rows.slice(at, at + take));
      at += take;
      inPart += take;
      if (inPart === partRows) {
        await nextTurn();
        yield await withFactCopy(builder.finish(), firstRow);
        firstRow += inPart;
        inPart = 0;
        builder = new BatchBuilder(reader.table, firstRow);
      }
    }
    await nextTurn();
  }
  if (inPart > 0 || firstRow === 0) yield await withFactCopy(builder.finish(), firstRow);
}

/**
 * How far an object's parts are prepared ahead of the one being applied: while its claims'
 * placeholders were written (1.2 s for a 200,000-row payments object, 0.46 s by COPY) the load
 * process had nothing to do, and then kept the warehouse waiting part by part (bench:load,
 * bench/README.md "Session 14"). Memory: a 10,000-row payments part held ~1.9 MiB of COPY text
 * and ~5.4 MiB of rows (measured), so the four ahead, the one taken and the one applied hold ~44
 * MiB. Only a fact part's COPY text is counted in `bytes`; other parts (a dimension's, a fact
 * part under FACT_COPY_MIN_ROWS) are bounded by the count alone.
 */
const PARTS_AHEAD: AheadLimits<PreparedBatch> = {
  items: 4,
  bytes: 8 * 1024 * 1024,
  bytesOf: (part) => part.factCopy?.reduce((sum, chunk) => sum + chunk.length, 0) ?? 0,
};

/**
 * What an object of more than one part locks outside its fact, read before its first part: only
 * the columns that needs (load-batch.ts `claimColumns`: references, or the key), a row group's
 * column chunks at a time. Its parts lock those rows first, in key order (`ObjectClaims`).
 */
async function objectClaims(reader: ParquetTableReader, partRows: number): Promise<ObjectClaims> {
  const builder = new ClaimsBuilder(reader.table, partRows);
  for await (const rows of reader.batches(CHECK_SLICE_ROWS, claimColumns(reader.table), nextTurn)) {
    builder.add(rows);
    await nextTurn();
  }
  return builder.finish();
}

export const LOAD_OBJECT_STATUSES = ['loaded', 'duplicate', 'ignored', 'quarantined', 'failed'] as const;
export type LoadObjectStatus = (typeof LOAD_OBJECT_STATUSES)[number];

export interface LoadObjectOutcome {
  bucket: string;
  key: string;
  status: LoadObjectStatus;
  table?: WarehouseTableName;
  rows?: number;
  quarantineKey?: string;
  /** Why the object was ignored, quarantined or failed (safe to log). */
  reason?: string;
  load?: ApplyOutcome;
}

export interface LoadReport {
  objects: LoadObjectOutcome[];
  /** With an SQS event: the messages to return to the queue (a partial batch response). */
  batchItemFailures?: { itemIdentifier: string }[];
}

export const LOAD_QUARANTINE_ROOT = 'quarantine/load';

/** Where a quarantined object's copy goes; its reason is `<that>.reason.json`. */
export function loadQuarantineKeyFor(key: string): string {
  return `${LOAD_QUARANTINE_ROOT}/${key}`;
}

/** A failure that quarantines the object: `reason` is safe to log. */
class Unloadable {
  constructor(
    readonly reason: string,
    readonly details: Record<string, unknown>,
  ) {}
}

function httpStatusOf(e: unknown): number | undefined {
  const status = (e as { $metadata?: { httpStatusCode?: unknown } })?.$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

/** The object is gone (a missing bucket is a configuration problem: retry, and alarm). */
function isNotFound(e: unknown): boolean {
  const name = (e as { name?: unknown })?.name;
  if (name === 'NoSuchBucket') return false;
  return name === 'NotFound' || name === 'NoSuchKey' || httpStatusOf(e) === 404;
}

/** Why an object cannot load, from what decoding, checking or the warehouse said. */
function unloadableFrom(e: unknown): Unloadable | null {
  if (e instanceof ParquetCodecError) return new Unloadable(e.message, { error: e.name });
  if (e instanceof MalformedObjectError)
    return new Unloadable(e.message, { error: e.name, table: e.table, issues: e.issues });
  if (e instanceof WarehouseDataError)
    return new Unloadable(e.message, { error: e.name, table: e.table, sqlState: e.sqlState });
  return null;
}

/**
 * Objects up to this size are read while the object before them in the invocation is loaded: at
 * 10k changes/s an object's GET waited 20–40 ms for the local S3 (bench/README.md, session 13).
 */
const READ_AHEAD_MAX_BYTES = 16 * 1024 * 1024;

/** Why a record is not loaded, and what to log beside the debug line every ignored record gets. */
interface IgnoredRecord {
  bucket: string;
  ignored: string;
  reason: string;
  say?: { level: 'error' | 'warn'; message: string };
}

/** The key of the object a record asks to load, or why the record is ignored. */
function keyToLoad(record: S3EventRecord): string | IgnoredRecord {
  const bucket = record.s3.bucket.name;
  const rawKey = record.s3.object.key;
  if (!record.eventName.startsWith('ObjectCreated:'))
    return { bucket, ignored: rawKey, reason: `event ${record.eventName}` };
  let key: string;
  try {
    key = decodeS3ObjectKey(rawKey);
  } catch {
    const say = { level: 'error', message: 'object key is not URL-encoded; S3 never sends that' } as const;
    return { bucket, ignored: rawKey, reason: 'object key is not URL-encoded', say };
  }
  // Our own quarantine copies, and the transform's, land in this bucket too.
  if (key.startsWith('quarantine/')) return { bucket, ignored: key, reason: 'quarantine object' };
  if (!key.endsWith('.parquet'))
    return {
      bucket,
      ignored: key,
      reason: 'not a .parquet object',
      say: { level: 'warn', message: 'not a Parquet object; ignored' },
    };
  return key;
}

/** True when this version of the object (key and ETag) is in load_log: every part of it loaded. */
async function isLoaded(client: PoolClient, key: string, eTag: string): Promise<boolean> {
  const lookup = loadLogLookup(key, eTag);
  return ((await client.query(lookup.text, lookup.values)).rowCount ?? 0) > 0;
}

export function createLoadHandler(
  deps: LoadHandlerDeps,
): (event: unknown, context?: { awsRequestId?: string }) => Promise<LoadReport> {
  const rootLogger = deps.logger ?? silentLogger;
  const newMetrics = deps.metrics ?? metricsFor({ stage: 'load' });
  const now = deps.now ?? (() => new Date());

  /** Runs `work` on a warehouse connection, which goes back to the pool unless the failure was its. */
  async function withWarehouse<T>(
    key: string,
    logger: Logger,
    work: (client: PoolClient) => Promise<T>,
  ): Promise<T> {
    const client = await deps.warehouse.connect();
    // A session ended under a running load (a warehouse restart) fails the query, handled by the
    // caller; the client also emits 'error', which must not go unheard or it ends the process (npm run chaos).
    const lost = (err: Error) => logger.warn('warehouse connection lost during a load', { key, err });
    client.on('error', lost);
    try {
      const result = await work(client);
      client.off('error', lost);
      client.release();
      return result;
    } catch (e) {
      // A failed connection must not go back to the pool; a data error leaves it healthy.
      client.off('error', lost);
      client.release(unloadableFrom(e) ? undefined : (e as Error));
      throw e;
    }
  }

  async function quarantine(
    record: S3EventRecord,
    key: string,
    eTag: string,
    body: Buffer,
    why: Unloadable,
    logger: Logger,
  ): Promise<LoadObjectOutcome> {
    const bucket = record.s3.bucket.name;
    const quarantineKey = loadQuarantineKeyFor(key);
    const reasonKey = `${quarantineKey}.reason.json`;
    const eTagOf = async (k: string): Promise<string | null | undefined> => {
      try {
        return normalizeETag((await deps.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: k }))).ETag);
      } catch (e) {
        if (!isNotFound(e)) throw e;
        return undefined;
      }
    };
    // Already quarantined when the mark is complete (the reason is written last) and its copy holds
    // THESE bytes (equal content, equal ETag: one PutObject each, SSE-S3). A replaced version that
    // fails too is marked in its turn, or the reconciler would send it again on every run.
    const done = (await eTagOf(reasonKey)) !== undefined && (await eTagOf(quarantineKey)) === eTag;
    if (!done) {
      await deps.s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: quarantineKey,
          Body: body,
          ContentType: 'application/octet-stream',
        }),
      );
      // The reason goes last: its presence says the quarantine is complete.
      const reason = {
        stage: 'load',
        reason: why.reason,
        ...why.details,
        quarantinedAt: now().toISOString(),
        source: {
          bucket,
          key,
          size: record.s3.object.size,
          eTag: eTag || record.s3.object.eTag,
          sequencer: record.s3.object.sequencer,
          eventTime: record.eventTime,
        },
      };
      await deps.s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: reasonKey,
          Body: `${JSON.stringify(reason, null, 2)}\n`,
          ContentType: 'application/json',
        }),
      );
    }
    logger.error('object quarantined: it cannot be loaded', {
      bucket,
      key,
      quarantineKey,
      reason: why.reason,
      ...why.details,
    });
    return {
      bucket,
      key,
      status: 'quarantined',
      table: why.details.table as WarehouseTableName | undefined,
      quarantineKey,
      reason: why.reason,
    };
  }

  function recordLoadMetrics(outcome: ApplyOutcome): number | undefined {
    const perObject = newMetrics();
    const table = outcome.table;
    perObject.add('RowsLoaded', outcome.rows).add(`RowsLoaded.${table}`, outcome.rows);
    perObject
      .add('LoadDuration', outcome.durationMs, 'Milliseconds')
      .add(`LoadDuration.${table}`, outcome.durationMs, 'Milliseconds');
    let freshnessSeconds: number | undefined;
    if (outcome.newestCommitTs) {
      // Commit on the source → committed in the warehouse, for the newest change of the object.
      freshnessSeconds = Math.max(0, (now().getTime() - Date.parse(outcome.newestCommitTs)) / 1000);
      perObject
        .add('WarehouseFreshness', freshnessSeconds, 'Seconds')
        .add(`WarehouseFreshness.${table}`, freshnessSeconds, 'Seconds');
    }
    if (outcome.attempts > 1) perObject.add('LoadConflictRetries', outcome.attempts - 1);
    // One document per object: freshness is a gauge, which a per-invocation sum would distort.
    perObject.flush({ table });
    return freshnessSeconds;
  }

  /** The object's bytes and the ETag of the version read (the event's may be an older one's), or null when it is gone. */
  async function readObject(
    record: S3EventRecord,
    key: string,
  ): Promise<{ body: Buffer; eTag: string } | null> {
    try {
      const response = await deps.s3.send(new GetObjectCommand({ Bucket: record.s3.bucket.name, Key: key }));
      const body = await bodyBytes(response.Body as AsyncIterable<Uint8Array>, response.ContentLength);
      return { body, eTag: normalizeETag(response.ETag) ?? normalizeETag(record.s3.object.eTag) ?? '' };
    } catch (e) {
      if (isNotFound(e)) return null;
      throw e;
    }
  }

  /**
   * Reads started one record ahead (lookAhead), taken by that record's turn. Weak: a read whose
   * turn never comes (the invocation failed first) goes with its record.
   */
  const readsAhead = new WeakMap<S3EventRecord, Promise<{ body: Buffer; eTag: string } | null>>();

  function lookAhead(next: S3EventRecord): void {
    const key = keyToLoad(next);
    // Small objects only: memory holds the one being loaded and the one read ahead.
    if (typeof key !== 'string' || (next.s3.object.size ?? Infinity) > READ_AHEAD_MAX_BYTES) return;
    const read = readObject(next, key);
    read.catch(() => undefined); // its own turn reports a failure
    readsAhead.set(next, read);
  }

  async function loadObject(record: S3EventRecord, key: string, logger: Logger): Promise<LoadObjectOutcome> {
    const bucket = record.s3.bucket.name;
    const read = await (readsAhead.get(record) ?? readObject(record, key));
    readsAhead.delete(record);
    if (!read) {
      logger.warn('object no longer exists; nothing to load', { bucket, key });
      return { bucket, key, status: 'ignored', reason: 'object does not exist' };
    }
    // eTag: the version actually read, which is what load_log records.
    const { body, eTag } = read;
    let reader: ParquetTableReader;
    try {
      reader = await openParquetReader(body);
    } catch (e) {
      // Whatever decoding throws is a property of these bytes, so retrying cannot help.
      const why =
        unloadableFrom(e) ??
        new Unloadable('not a readable Parquet file', { error: (e as Error)?.name ?? 'unknown' });
      return quarantine(record, key, eTag, body, why, logger);
    }
    const partRows = deps.partRows ?? LOAD_PART_ROWS;
    let outcome: ApplyOutcome;
    // An object in parts already loaded is skipped before any row is decoded: a redelivery costs
    // one lookup, not a decode and check of every row (bench:load). An object of one part is not
    // looked up first: its transaction's first round trip carries the same lookup, and a
    // redelivery costs the decode of at most one part; a round trip and a connection less for
    // every object loaded (at 10k changes/s, ~9 objects every 0.7 s: bench/README.md, session 12).
    let loaded = false;
    if (reader.rowCount > partRows)
      try {
        loaded = await withWarehouse(key, logger, (client) => isLoaded(client, key, eTag));
      } catch (e) {
        await reader.close();
        throw e;
      }
    if (loaded) {
      await reader.close();
      outcome = emptyOutcome(key, reader.table, reader.rowCount, { duplicate: true });
    } else
      try {
        const claims = reader.rowCount > partRows ? await objectClaims(reader, partRows) : undefined;
        outcome = await withWarehouse(key, logger, (client) =>
          applyObject(client, reader.table, () => pullAhead(preparedParts(reader, partRows), PARTS_AHEAD), {
            objectKey: key,
            eTag,
            logger,
            claims,
            placeholderCopyMinKeys: deps.placeholderCopyMinKeys,
          }),
        );
      } catch (e) {
        // Damaged pages, a malformed row, data Postgres refuses: properties of these bytes. The
        // object's transaction was rolled back: nothing of it is loaded.
        const why = unloadableFrom(e);
        if (!why) throw e;
        return quarantine(record, key, eTag, body, why, logger);
      } finally {
        await reader.close();
      }
    outcome = { ...outcome, rows: reader.rowCount };
    if (outcome.duplicate) {
      logger.info('object already loaded; skipped', { key, table: outcome.table });
      return { bucket, key, status: 'duplicate', table: outcome.table, rows: outcome.rows, load: outcome };
    }
    const freshnessSeconds = recordLoadMetrics(outcome);
    logger.info('object loaded', {
      key,
      table: outcome.table,
      rows: outcome.rows,
      written: outcome.written,
      deletes: outcome.deletes,
      truncated: outcome.truncated,
      rereadVersionsDropped: outcome.rereadVersionsDropped,
      // A fact version was already there: loaded again through the staging table (apply-batch.ts).
      factCopyFallback: outcome.factCopyFallback || undefined,
      reconciled: outcome.reconciled.length ? outcome.reconciled : undefined,
      datesInserted: outcome.datesInserted,
      placeholdersInserted: outcome.placeholdersInserted,
      derived: outcome.derived,
      attempts: outcome.attempts,
      durationMs: outcome.durationMs,
      epoch: outcome.maxPosition?.epoch,
      lsn: outcome.maxPosition?.lsn,
      seq: outcome.maxPosition?.seq,
      freshnessSeconds,
    });
    return { bucket, key, status: 'loaded', table: outcome.table, rows: outcome.rows, load: outcome };
  }

  async function processRecord(record: S3EventRecord, logger: Logger): Promise<LoadObjectOutcome> {
    const key = keyToLoad(record);
    if (typeof key === 'string') return loadObject(record, key, logger);
    const { bucket, ignored, reason, say } = key;
    if (say) logger[say.level](say.message, { bucket, key: ignored });
    logger.debug('object ignored', { bucket, key: ignored, reason });
    return { bucket, key: ignored, status: 'ignored', reason };
  }

  return s3ObjectHandler<LoadObjectOutcome>({
    logger: rootLogger,
    newMetrics,
    zeroMetrics: ['ObjectsLoaded', 'ObjectsQuarantined', 'ObjectsFailed'],
    statusMetrics: {
      loaded: 'ObjectsLoaded',
      duplicate: 'ObjectsDuplicate',
      ignored: 'ObjectsIgnored',
      quarantined: 'ObjectsQuarantined',
      failed: 'ObjectsFailed',
    },
    durationMetric: 'InvocationDuration',
    processRecord: (record, _metrics, logger) => processRecord(record, logger),
    lookAhead,
    invalidEvent: (issues) => new InvalidS3EventError(issues),
    retryable: (failures) => new LoadRetryableError(failures),
    retryDelaySeconds: (error, receiveCount) =>
      loadRetryDelaySeconds(error, receiveCount, deps.maxReceiveCount),
    changeVisibility: deps.changeVisibility,
  });
}
