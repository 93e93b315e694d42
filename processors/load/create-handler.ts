import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { PoolClient } from 'pg';
import { silentLogger, type Logger } from '../../core/logger';
import { normalizeETag } from '../../core/outstanding-work';
import type { WarehouseTableName } from '../../core/warehouse-model';
import { metricsFor, type MetricSet } from '../shared/metrics';
import {
  openParquetReader,
  ParquetCodecError,
  type ParquetTableReader,
  type WarehouseRow,
} from '../shared/parquet-codec';
import { decodeS3ObjectKey, type S3EventRecord } from '../shared/s3-event';
import {
  describeInvalidEvent,
  describeRetryableFailures,
  s3ObjectHandler,
  type ObjectFailure,
} from '../shared/s3-object-handler';
import { applyBatch, emptyOutcome, WarehouseDataError, type ApplyOutcome } from './apply-batch';
import { comparePosition, loadLogLookup } from '../../core/warehouse-sql';
import { checkBatch, MalformedObjectError, prepareBatch, type PreparedBatch } from './load-batch';

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
  /** Rows applied per transaction of a large object; default LOAD_PART_ROWS. */
  partRows?: number;
  /** Rows up to which an object of several parts is decoded once, its parts held; default LOAD_HELD_ROWS. */
  heldRows?: number;
}

/**
 * An object of more rows than this is applied in parts of this many rows, one transaction each,
 * so the load's memory is bounded by a part, not by the object (a 128 MiB Firehose object of
 * payments is ~730,000 rows: bench/README.md, `bench:streaming`). Most objects are one part, loaded exactly as before.
 */
export const LOAD_PART_ROWS = 10_000;

/**
 * An object of several parts is checked whole before any part is applied. Up to this many rows its
 * parts are prepared (checked and folded) in that first pass and held until applied, so it is
 * decoded once; a larger one is decoded twice (a check-only pass, then part by part), which keeps
 * the load's memory bounded by two parts. Decoding and checking were a third of the load process'
 * cost per row of a 50,000-row object, paid twice (bench:load, bench/README.md). Held, 50,000
 * prepared sales-order rows (an 8.4 MiB object) took 41 MiB of heap, measured after a full GC.
 */
export const LOAD_HELD_ROWS = 50_000;

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

/** One part of an object: its rows, where they start in the object, and whether it is the last. */
interface ObjectPart {
  rows: WarehouseRow[];
  firstRow: number;
  last: boolean;
}

/** The object's parts in order (an empty object is one empty part). Holds at most two parts. */
async function* partsOf(reader: ParquetTableReader, partRows: number): AsyncGenerator<ObjectPart> {
  let held: ObjectPart = { rows: [], firstRow: 0, last: false };
  let next = 0;
  for await (const rows of reader.batches(partRows)) {
    if (next > 0) yield held;
    held = { rows, firstRow: next, last: false };
    next += rows.length;
  }
  yield { ...held, last: true };
}

/**
 * The object's parts, each prepared (checked and folded), in order. Every row of the object is
 * checked before the first part is yielded: a malformed row anywhere throws MalformedObjectError
 * with nothing applied. `heldRows`: see LOAD_HELD_ROWS.
 */
async function* preparedParts(
  reader: ParquetTableReader,
  partRows: number,
  heldRows: number,
): AsyncGenerator<{ part: ObjectPart; batch: PreparedBatch }> {
  const prepare = (part: ObjectPart) => {
    const batch = prepareBatch({ table: reader.table, rows: part.rows }, { firstRow: part.firstRow });
    // load_log records the object's rows under its own key.
    if (part.last) batch.rowCount = reader.rowCount;
    return { part: { ...part, rows: [] }, batch };
  };
  if (reader.rowCount > partRows && reader.rowCount <= heldRows) {
    const held: ({ part: ObjectPart; batch: PreparedBatch } | undefined)[] = [];
    for await (const part of partsOf(reader, partRows)) held.push(prepare(part));
    for (let i = 0; i < held.length; i += 1) {
      const next = held[i]!;
      held[i] = undefined; // applied parts are not kept
      yield next;
    }
    return;
  }
  if (reader.rowCount > partRows)
    for await (const part of partsOf(reader, partRows))
      checkBatch({ table: reader.table, rows: part.rows }, { firstRow: part.firstRow });
  for await (const part of partsOf(reader, partRows)) yield prepare(part);
}

/**
 * The load_log key of a part: the object's own key for the last part, so the object counts as
 * loaded (for duplicates, the reconciler, `totes verify`) only once every part is; the others get
 * `<key>#rows-<first row>`, so a retry after a crash skips the parts already loaded.
 */
function partKey(key: string, part: ObjectPart): string {
  return part.last ? key : `${key}#rows-${part.firstRow}`;
}

function laterPosition(a: ApplyOutcome['maxPosition'], b: ApplyOutcome['maxPosition']) {
  return !a || (b && comparePosition(b, a) > 0) ? b : a;
}

function newerTimestamp(a: string | null, b: string | null): string | null {
  return a === null || (b !== null && Date.parse(b) > Date.parse(a)) ? b : a;
}

/** One outcome for an object applied in parts. */
function mergeOutcomes(a: ApplyOutcome, b: ApplyOutcome): ApplyOutcome {
  const derived = { ...a.derived };
  for (const [table, n] of Object.entries(b.derived) as [WarehouseTableName, number][])
    derived[table] = (derived[table] ?? 0) + n;
  return {
    objectKey: b.objectKey,
    table: b.table,
    duplicate: a.duplicate && b.duplicate,
    rows: a.rows + b.rows,
    written: a.written + b.written,
    deletes: a.deletes + b.deletes,
    truncated: a.truncated + b.truncated,
    rereadVersionsDropped: a.rereadVersionsDropped + b.rereadVersionsDropped,
    reconciled: [...a.reconciled, ...b.reconciled],
    datesInserted: a.datesInserted + b.datesInserted,
    placeholdersInserted: a.placeholdersInserted + b.placeholdersInserted,
    derived,
    attempts: Math.max(a.attempts, b.attempts),
    durationMs: a.durationMs + b.durationMs,
    maxPosition: laterPosition(a.maxPosition, b.maxPosition),
    newestCommitTs: newerTimestamp(a.newestCommitTs, b.newestCommitTs),
  };
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

  async function loadObject(record: S3EventRecord, key: string, logger: Logger): Promise<LoadObjectOutcome> {
    const bucket = record.s3.bucket.name;
    let body: Buffer;
    let eTag: string;
    try {
      const response = await deps.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      body = await bodyBytes(response.Body as AsyncIterable<Uint8Array>, response.ContentLength);
      // The version actually read (the event's ETag may be an older one's): what load_log records.
      eTag = normalizeETag(response.ETag) ?? normalizeETag(record.s3.object.eTag) ?? '';
    } catch (e) {
      if (isNotFound(e)) {
        logger.warn('object no longer exists; nothing to load', { bucket, key });
        return { bucket, key, status: 'ignored', reason: 'object does not exist' };
      }
      throw e;
    }
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
    let outcome: ApplyOutcome | null = null;
    // A version loaded whole (its own key is recorded with its last part) is skipped before any row
    // is decoded: a redelivery costs one lookup, not a decode and check of every row (bench:load).
    let loaded: boolean;
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
        // An object of several parts is checked whole before any part is applied: a malformed row
        // quarantines it with nothing loaded, as it does an object of one part.
        for await (const { part, batch } of preparedParts(
          reader,
          partRows,
          deps.heldRows ?? LOAD_HELD_ROWS,
        )) {
          const applied = await withWarehouse(key, logger, (client) =>
            applyBatch(client, batch, { objectKey: partKey(key, part), eTag, logger }),
          );
          outcome = outcome ? mergeOutcomes(outcome, applied) : applied;
        }
      } catch (e) {
        // Damaged pages, a malformed row, data Postgres refuses: properties of these bytes. Parts
        // before the one refused stay loaded (each is order-proof on its own, like any object);
        // re-driving the object after a fix skips them (load_log).
        const why = unloadableFrom(e);
        if (!why) throw e;
        return quarantine(record, key, eTag, body, why, logger);
      } finally {
        await reader.close();
      }
    if (!outcome) throw new Error('an object always has a part');
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
    const bucket = record.s3.bucket.name;
    const ignore = (key: string, reason: string): LoadObjectOutcome => {
      logger.debug('object ignored', { bucket, key, reason });
      return { bucket, key, status: 'ignored', reason };
    };
    const rawKey = record.s3.object.key;
    if (!record.eventName.startsWith('ObjectCreated:')) return ignore(rawKey, `event ${record.eventName}`);
    let key: string;
    try {
      key = decodeS3ObjectKey(rawKey);
    } catch {
      logger.error('object key is not URL-encoded; S3 never sends that', { bucket, key: rawKey });
      return ignore(rawKey, 'object key is not URL-encoded');
    }
    // Our own quarantine copies, and the transform's, land in this bucket too.
    if (key.startsWith('quarantine/')) return ignore(key, 'quarantine object');
    if (!key.endsWith('.parquet')) {
      logger.warn('not a Parquet object; ignored', { bucket, key });
      return ignore(key, 'not a .parquet object');
    }
    return loadObject(record, key, logger);
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
    invalidEvent: (issues) => new InvalidS3EventError(issues),
    retryable: (failures) => new LoadRetryableError(failures),
  });
}
