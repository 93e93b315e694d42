import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import type { Change } from '../../core/change-event';
import { Writable } from 'node:stream';
import {
  CsvCodecError,
  CsvObjectDecoder,
  decodeSchemaObject,
  INGESTION_ROOT,
  isLayoutSafeTableName,
  parseDataObjectKey,
  schemaObjectKey,
  type SchemaObject,
} from '../../core/csv-codec';
import { silentLogger, type Logger } from '../../core/logger';
import { MIXED_TABLE, MixedCsvError, parseMixedObjectKey } from '../../core/mixed-csv';
import { normalizeETag } from '../../core/outstanding-work';
import { InvalidOversizedObjectError } from '../../core/oversized-change';
import {
  isMappedSourceTable,
  StarMappingError,
  targetTableOf,
  toWarehouseRows,
  type StarMappingResult,
} from '../../core/star-mapping';
import type { WarehouseTableName } from '../../core/warehouse-model';
import { openParquetWriter, ParquetCodecError } from '../shared/parquet-codec';
import { metricsFor, type MetricSet } from '../shared/metrics';
import { decodeS3ObjectKey, type S3EventRecord } from '../shared/s3-event';
import { transformMixedObject, type PartOutcome } from './transform-mixed-object';
import {
  describeInvalidEvent,
  describeRetryableFailures,
  s3ObjectHandler,
  type ObjectFailure,
} from '../shared/s3-object-handler';
import { resolveOversizedChanges } from './oversized-changes';

/**
 * The transform stage: each CSV object Firehose writes to the ingestion bucket becomes ONE Parquet
 * object of its warehouse table in the processed bucket (a fast-mode mixed-table object: one per
 * layout it holds, transform-mixed-object.ts). Three steps, as in any batch handler: parse the S3
 * event, transform each object on its own (a bad object fails alone), report.
 *
 * Idempotent, because S3 events are at-least-once and Lambda retries: the output key is a function
 * of the input key (`outputKeyFor`), an existing output means "done" (skip), and writes are
 * conditional (`If-None-Match: *`) so two concurrent deliveries of one event cannot both write.
 * Objects are never overwritten.
 *
 * Failure policy (S3-triggered Lambdas are invoked asynchronously and have no per-record failure
 * response, https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html):
 * - Changes the mapping rejects (invalid date, `2.0` int, …) go to a quarantine object
 *   (`quarantine/transform/<table>/…/<hash>.rejected.jsonl`, one JSON line per change with its
 *   reason), are logged as errors and counted; the rest of the object is written.
 * - An object that cannot be read at all (bad CSV, missing or invalid schema object, a layout
 *   without a needed column, a key outside the layout) is a *permanent* failure: a pointer record
 *   with the reason goes to `quarantine/transform/<table>/…/<hash>.object.jsonl`, an error is
 *   logged, the object is reported `quarantined`, and the invocation still succeeds — a retry
 *   could not fix it. No Parquet is written, so re-driving the key after a fix works.
 * - S3 errors (throttling, 5xx, network) are *retryable*: after every record was tried, the
 *   handler throws TransformRetryableError so Lambda's async retries (and then its on-failure
 *   destination) take over; the records that succeeded are skipped on retry as duplicates.
 *
 * Logs name keys, tables, positions and counts, never row values (reasons never quote values).
 */

/** Base class of every error this module throws. */
export class TransformError extends Error {
  override name = 'TransformError';
}

export class MissingConfigurationError extends TransformError {
  override name = 'MissingConfigurationError';
  constructor(readonly variable: string) {
    super(`environment variable ${variable} is required`);
  }
}

/** The invocation payload is not an S3 event: nothing can be attributed to an object. */
export class InvalidS3EventError extends TransformError {
  override name = 'InvalidS3EventError';
  constructor(readonly issues: string[]) {
    super(describeInvalidEvent(issues));
  }
}

/** An object that can never be transformed as it is (permanent: quarantined, not retried). */
export class UnreadableObjectError extends TransformError {
  override name = 'UnreadableObjectError';
  constructor(
    readonly bucket: string,
    readonly key: string,
    /** Safe to log: never quotes object content. */
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`s3://${bucket}/${key}: ${reason}`, options);
  }
}

/** An S3 call failed in a way a later attempt may not (throttling, 5xx, network): retryable. */
export class S3AccessError extends TransformError {
  override name = 'S3AccessError';
  constructor(
    readonly operation: string,
    readonly bucket: string,
    readonly key: string,
    options: { cause: unknown },
  ) {
    super(
      `${operation} s3://${bucket}/${key} failed: ${(options.cause as Error)?.message ?? options.cause}`,
      options,
    );
  }
}

/** Thrown at the end of an invocation in which some objects failed retryably, so Lambda retries. */
export class TransformRetryableError extends TransformError {
  override name = 'TransformRetryableError';
  constructor(readonly failures: readonly ObjectFailure[]) {
    super(describeRetryableFailures(failures));
  }
}

export interface TransformConfig {
  /** Where the Parquet and quarantine objects go. */
  processedBucket: string;
}

/** Reads the function's configuration; the Lambda entry calls it at cold start so a gap fails loudly. */
export function readTransformConfig(env: NodeJS.ProcessEnv): TransformConfig {
  const processedBucket = env.PROCESSED_BUCKET?.trim();
  if (!processedBucket) throw new MissingConfigurationError('PROCESSED_BUCKET');
  return { processedBucket };
}

export interface TransformHandlerDeps {
  s3: Pick<S3Client, 'send'>;
  processedBucket: string;
  logger?: Logger;
  /** A fresh MetricSet per invocation; default: EMF lines on stdout, stage `transform`. */
  metrics?: () => MetricSet;
  now?: () => Date;
}

/** What happened to one object of the event. */
export const OBJECT_STATUSES = ['written', 'duplicate', 'ignored', 'quarantined', 'failed'] as const;
export type ObjectStatus = (typeof OBJECT_STATUSES)[number];

export interface ObjectOutcome {
  bucket: string;
  /** Decoded key (the raw one when it could not be decoded). */
  key: string;
  status: ObjectStatus;
  sourceTable?: string;
  targetTable?: WarehouseTableName;
  /** The Parquet object (written, or found already written). */
  outputKey?: string;
  /** The quarantine object holding rejected changes or the pointer to an unreadable object. */
  quarantineKey?: string;
  rows?: number;
  rejected?: number;
  /** Why the object was ignored, quarantined or failed. */
  reason?: string;
  /** A fast-mode mixed object: what became of each of its layouts (transform-mixed-object.ts). */
  parts?: PartOutcome[];
  /** A fast-mode mixed object: its manifest, written once every layout was (it marks it done). */
  manifestKey?: string;
}

/**
 * The handler's result. AWS ignores the return value of an asynchronous invocation; the local
 * pipeline and the tests read it.
 */
export interface TransformReport {
  objects: ObjectOutcome[];
}

export const QUARANTINE_ROOT = 'quarantine/transform';

const sha256Hex = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

/** `yyyy/MM/dd/HH` of a data key (the Firehose delivery hour), or `unpartitioned`. */
function hourPartitionOf(key: string): string {
  if (parseDataObjectKey(key)) return key.split('/').slice(3, 7).join('/');
  // A fast-mode mixed object's quarantine entry sits in its hour too, where the reconciler looks.
  return parseMixedObjectKey(key)?.hour ?? 'unpartitioned';
}

/**
 * Where the Parquet object of a data object goes: `<target>/<yyyy/MM/dd/HH of the input>/<first
 * 32 hex digits of SHA-256(input key)>.parquet`. Deterministic, so a redelivered event finds its
 * output; 128 bits make two input keys sharing one output practically impossible.
 */
export function outputKeyFor(targetTable: WarehouseTableName, inputKey: string): string {
  return `${targetTable}/${hourPartitionOf(inputKey)}/${sha256Hex(inputKey).slice(0, 32)}.parquet`;
}

/** Quarantine object of an input key: `rejected` changes, or the pointer to an unreadable `object`. */
export function quarantineKeyFor(sourceTable: string, inputKey: string, kind: 'rejected' | 'object'): string {
  const table = isLayoutSafeTableName(sourceTable) ? sourceTable : '_unknown';
  return `${QUARANTINE_ROOT}/${table}/${hourPartitionOf(inputKey)}/${sha256Hex(inputKey).slice(0, 32)}.${kind}.jsonl`;
}

/**
 * S3 user metadata travels as HTTP headers, which must be printable ASCII
 * (https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingMetadata.html#UserMetadata): any
 * other value is stored URI-encoded, and `encoded-fields` says which ones.
 */
function userMetadata(fields: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  const encoded: string[] = [];
  for (const [name, value] of Object.entries(fields)) {
    if (/^[\x20-\x7e]*$/.test(value)) out[name] = value;
    else {
      out[name] = encodeURIComponent(value);
      encoded.push(name);
    }
  }
  if (encoded.length) out['encoded-fields'] = encoded.join(',');
  return out;
}

function httpStatusOf(e: unknown): number | undefined {
  const status = (e as { $metadata?: { httpStatusCode?: unknown } })?.$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

function isNotFound(e: unknown): boolean {
  const name = (e as { name?: unknown })?.name;
  return name === 'NotFound' || name === 'NoSuchKey' || httpStatusOf(e) === 404;
}

/** If-None-Match lost: another writer created the object first (S3 answers 412). */
function isAlreadyExists(e: unknown): boolean {
  return (e as { name?: unknown })?.name === 'PreconditionFailed' || httpStatusOf(e) === 412;
}

/** The chunks of an S3 body; a failure while reading is S3's (retryable), not the object's. */
async function* readingFrom(body: AsyncIterable<Uint8Array>, bucket: string, key: string) {
  try {
    for await (const chunk of body) yield chunk;
  } catch (e) {
    throw new S3AccessError('GetObject', bucket, key, { cause: e });
  }
}

/**
 * A mixed object's layout, as the CSV decoder reads an S3 body: in pieces of at most 64 KiB (views,
 * not copies). Given a whole layout of megabytes at once, the decoder would hold it as one string.
 */
function* piecesOf(runs: readonly Buffer[], most = 64 * 1024): Generator<Buffer> {
  for (const run of runs) for (let at = 0; at < run.length; at += most) yield run.subarray(at, at + most);
}

/** A change as it goes to the quarantine: values included (this is the one place they may go). */
function quarantineLine(base: Record<string, unknown>, change: Change, reason: string): string {
  return JSON.stringify({ ...base, reason, change });
}

const MAX_REJECTIONS_LOGGED_PER_OBJECT = 20;

/** One layout's CSV as Parquet, and what the mapping made of its changes. */
interface Encoded {
  parquet: Buffer;
  changes: number;
  rows: number;
  rejected: StarMappingResult['rejected'];
  bytesIn: number;
}

export function createTransformHandler(
  deps: TransformHandlerDeps,
): (event: unknown, context?: { awsRequestId?: string }) => Promise<TransformReport> {
  const rootLogger = deps.logger ?? silentLogger;
  const newMetrics = deps.metrics ?? metricsFor({ stage: 'transform' });
  const now = deps.now ?? (() => new Date());
  const processed = deps.processedBucket;
  // Schema objects are content-addressed (the key is the fingerprint of the bytes that matter), so
  // a warm container reads each one once.
  const schemas = new Map<string, SchemaObject>();

  async function exists(key: string): Promise<boolean> {
    try {
      await deps.s3.send(new HeadObjectCommand({ Bucket: processed, Key: key }));
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw new S3AccessError('HeadObject', processed, key, { cause: e });
    }
  }

  /** Writes an object unless it exists; false when another writer got there first. */
  async function putOnce(
    key: string,
    body: Buffer | string,
    contentType: string,
    metadata: Record<string, string>,
    overwrite = false,
  ): Promise<boolean> {
    try {
      await deps.s3.send(
        new PutObjectCommand({
          Bucket: processed,
          Key: key,
          Body: body,
          ContentType: contentType,
          Metadata: userMetadata(metadata),
          // Conditional write: objects are never overwritten, even by a concurrent duplicate
          // delivery that passed the existence check at the same time (except a quarantine
          // pointer that names another version, below).
          // https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html
          ...(overwrite ? {} : { IfNoneMatch: '*' }),
        }),
      );
      return true;
    } catch (e) {
      if (isAlreadyExists(e)) return false;
      throw new S3AccessError('PutObject', processed, key, { cause: e });
    }
  }

  /** The version (ETag) a quarantine pointer names; undefined: no pointer; null: none named. */
  async function markedVersion(key: string): Promise<string | null | undefined> {
    let text: string;
    try {
      const response = await deps.s3.send(new GetObjectCommand({ Bucket: processed, Key: key }));
      text = await response.Body!.transformToString();
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw new S3AccessError('GetObject', processed, key, { cause: e });
    }
    try {
      return normalizeETag((JSON.parse(text.split('\n')[0]) as { source?: { eTag?: string } }).source?.eTag);
    } catch {
      return null;
    }
  }

  async function read(bucket: string, key: string, what: string): Promise<Buffer> {
    try {
      const response = await deps.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return Buffer.from(await response.Body!.transformToByteArray());
    } catch (e) {
      if (isNotFound(e)) throw new UnreadableObjectError(bucket, key, `${what} does not exist`, { cause: e });
      throw new S3AccessError('GetObject', bucket, key, { cause: e });
    }
  }

  async function schemaFor(bucket: string, dataKey: string, table: string, fingerprint: string) {
    const key = schemaObjectKey(table, fingerprint);
    const cacheKey = `${bucket}/${key}`;
    const cached = schemas.get(cacheKey);
    if (cached) return cached;
    const bytes = await read(bucket, key, `schema object ${key}`);
    let schema: SchemaObject;
    try {
      schema = decodeSchemaObject(bytes);
    } catch (e) {
      throw new UnreadableObjectError(bucket, dataKey, `schema object ${key} is invalid`, { cause: e });
    }
    if (schema.table !== table || schema.fingerprint !== fingerprint)
      throw new UnreadableObjectError(bucket, dataKey, `schema object ${key} describes another layout`);
    schemas.set(cacheKey, schema);
    return schema;
  }

  /**
   * Streams a data object from S3 through the CSV decoder, the star mapping and the Parquet writer,
   * so what is held is a chunk of CSV, the changes it completes, one row group and the Parquet
   * written so far — not the object's changes and rows (a 64–128 MiB Firehose object decodes to
   * gigabytes of them). The Parquet is kept in memory: PutObject needs its length up front, and it is
   * a fraction of the CSV (bench/README.md, `bench:streaming`).
   */
  async function streamToParquet(
    bucket: string,
    key: string,
    schema: SchemaObject,
    targetTable: WarehouseTableName,
  ): Promise<Encoded> {
    let body: AsyncIterable<Uint8Array>;
    try {
      const response = await deps.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      body = response.Body as AsyncIterable<Uint8Array>;
    } catch (e) {
      if (isNotFound(e))
        throw new UnreadableObjectError(bucket, key, 'data object does not exist', { cause: e });
      throw new S3AccessError('GetObject', bucket, key, { cause: e });
    }
    return encodeToParquet(readingFrom(body, bucket, key), bucket, key, schema, targetTable);
  }

  /** CSV chunks of one layout (an S3 body, or a mixed object's part) to Parquet; see streamToParquet. */
  async function encodeToParquet(
    chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    bucket: string,
    key: string,
    schema: SchemaObject,
    targetTable: WarehouseTableName,
  ): Promise<Encoded> {
    const out: Buffer[] = [];
    const sink = new Writable({
      // The Parquet writer hands over fresh buffers it never touches again: kept, not copied.
      write(chunk, _enc, done) {
        out.push(chunk);
        done();
      },
    });
    const decoder = new CsvObjectDecoder(schema);
    const rejected: StarMappingResult['rejected'] = [];
    let changes = 0;
    let bytesIn = 0;
    try {
      const writer = await openParquetWriter(targetTable, sink);
      const take = async (decoded: Change[]) => {
        changes += decoded.length;
        // Pointer lines first: the changes too big for the stream, read back from `oversized/`.
        const batch = await resolveOversizedChanges(decoded, schema, {
          location: `s3://${bucket}`,
          read: (ref) => read(bucket, ref, `oversized event ${ref}`),
          isMissing: (e) => e instanceof UnreadableObjectError,
        });
        const mapped = toWarehouseRows(schema.table, schema.columns, batch);
        for (const r of mapped.rejected) rejected.push(r);
        await writer.appendRows(mapped.rows);
      };
      for await (const chunk of chunks) {
        bytesIn += chunk.length;
        await take(decoder.push(chunk));
      }
      await take(decoder.end());
      await writer.close();
      const parquet = Buffer.concat(out);
      out.length = 0;
      return { parquet, changes, rows: writer.rows, rejected, bytesIn };
    } catch (e) {
      if (e instanceof S3AccessError) throw e;
      // CsvDecodeError / MissingSourceColumnError carry value-free messages; a ParquetCodecError
      // here means the mapping let through a value it should have rejected (a bug), and may quote
      // it, so only its name is kept.
      const reason =
        e instanceof CsvCodecError ||
        e instanceof StarMappingError ||
        e instanceof InvalidOversizedObjectError
          ? e.message
          : e instanceof ParquetCodecError
            ? 'mapped rows could not be encoded as Parquet'
            : `unexpected ${(e as Error)?.name ?? 'error'} while transforming`;
      throw new UnreadableObjectError(bucket, key, reason, { cause: e });
    }
  }

  async function quarantineObject(
    record: S3EventRecord,
    key: string,
    sourceTable: string,
    error: UnreadableObjectError,
    logger: Logger,
  ): Promise<ObjectOutcome> {
    const bucket = record.s3.bucket.name;
    const quarantineKey = quarantineKeyFor(sourceTable, key, 'object');
    const pointer = JSON.stringify({
      kind: 'unreadable-object',
      stage: 'transform',
      reason: error.reason,
      error: error.cause instanceof Error ? error.cause.name : undefined,
      source: {
        bucket,
        key,
        size: record.s3.object.size,
        eTag: record.s3.object.eTag,
        versionId: record.s3.object.versionId,
        sequencer: record.s3.object.sequencer,
        eventTime: record.eventTime,
      },
      quarantinedAt: now().toISOString(),
    });
    // A redelivery of the same unreadable object finds its pointer and leaves it as it is; a
    // replaced version that is unreadable too gets the pointer (its ETag is the mark's), or the
    // reconciler would send it again on every run.
    const marked = await markedVersion(quarantineKey);
    const version = normalizeETag(record.s3.object.eTag);
    if (marked === undefined || (version !== null && marked !== version))
      await putOnce(
        quarantineKey,
        `${pointer}\n`,
        'application/x-ndjson',
        { 'source-bucket': bucket, 'source-key': key },
        marked !== undefined,
      );
    // The cause is not logged: parser messages may quote the object's content.
    logger.error('object quarantined: it cannot be transformed', {
      bucket,
      key,
      table: sourceTable,
      reason: error.reason,
      errorName: error.cause instanceof Error ? error.cause.name : error.name,
      quarantineKey,
    });
    return { bucket, key, status: 'quarantined', sourceTable, quarantineKey, reason: error.reason };
  }

  async function transformObject(
    record: S3EventRecord,
    key: string,
    sourceTable: string,
    fingerprint: string,
    metrics: MetricSet,
    logger: Logger,
  ): Promise<ObjectOutcome> {
    const bucket = record.s3.bucket.name;
    const targetTable = targetTableOf(sourceTable);
    const outputKey = outputKeyFor(targetTable, key);
    const base = { bucket, key, sourceTable, targetTable, outputKey };
    if (await exists(outputKey)) {
      logger.info('already transformed; skipped', { key, table: sourceTable, outputKey });
      return { ...base, status: 'duplicate' };
    }
    const schema = await schemaFor(bucket, key, sourceTable, fingerprint);
    const encoded = await streamToParquet(bucket, key, schema, targetTable);
    return writeTransformed({ ...base, fingerprint }, encoded, metrics, logger);
  }

  /**
   * Writes what one layout's CSV became: its rejected changes to quarantine, then its Parquet
   * (If-None-Match: `duplicate` when it exists). `mixedKey`: the fast-mode object the layout's part
   * (`key`) came from, named in the quarantined lines and the logs.
   */
  async function writeTransformed(
    base: {
      bucket: string;
      key: string;
      sourceTable: string;
      targetTable: WarehouseTableName;
      outputKey: string;
      fingerprint: string;
      mixedKey?: string;
    },
    { parquet, changes, rows, rejected, bytesIn }: Encoded,
    metrics: MetricSet,
    logger: Logger,
  ): Promise<ObjectOutcome> {
    const { bucket, key, sourceTable, targetTable, outputKey, fingerprint, mixedKey } = base;
    const from = mixedKey ? { mixedKey } : {};
    let quarantineKey: string | undefined;
    if (rejected.length) {
      quarantineKey = quarantineKeyFor(sourceTable, key, 'rejected');
      const lineBase = {
        stage: 'transform',
        sourceBucket: bucket,
        sourceKey: key,
        ...from,
        table: sourceTable,
      };
      const body = rejected.map((r) => quarantineLine(lineBase, r.change, r.reason)).join('\n');
      // Before the Parquet object, which marks the input done: a crash in between redoes both (the
      // conditional write keeps the first quarantine object).
      await putOnce(quarantineKey, `${body}\n`, 'application/x-ndjson', {
        'source-bucket': bucket,
        'source-key': key,
        ...(mixedKey ? { 'mixed-key': mixedKey } : {}),
        'rejected-changes': String(rejected.length),
      });
      for (const r of rejected.slice(0, MAX_REJECTIONS_LOGGED_PER_OBJECT))
        logger.error('change rejected and quarantined', {
          key,
          table: sourceTable,
          op: r.change.op,
          lsn: r.change.lsn,
          seq: r.change.seq,
          reason: r.reason,
          quarantineKey,
        });
      if (rejected.length > MAX_REJECTIONS_LOGGED_PER_OBJECT)
        logger.error('more changes rejected than logged individually', {
          key,
          table: sourceTable,
          rejected: rejected.length,
          logged: MAX_REJECTIONS_LOGGED_PER_OBJECT,
          quarantineKey,
        });
    }

    const written = await putOnce(outputKey, parquet, 'application/vnd.apache.parquet', {
      'source-bucket': bucket,
      'source-key': mixedKey ?? key,
      ...(mixedKey ? { 'part-key': key } : {}),
      'source-table': sourceTable,
      'schema-fingerprint': fingerprint,
      rows: String(rows),
      'rejected-changes': String(rejected.length),
    });
    const outcome: ObjectOutcome = {
      bucket,
      key,
      sourceTable,
      targetTable,
      outputKey,
      status: written ? 'written' : 'duplicate',
      quarantineKey,
      rows: rows,
      rejected: rejected.length,
    };
    if (!written) {
      logger.info('already written (by a concurrent or an earlier attempt); skipped', { key, outputKey });
      return outcome;
    }
    metrics.add('RowsWritten', rows);
    metrics.add('ChangesRejected', rejected.length);
    metrics.add('ParquetBytesWritten', parquet.length, 'Bytes');
    logger.info('transformed', {
      key,
      ...from,
      table: sourceTable,
      targetTable,
      outputKey,
      changes,
      rows: rows,
      rejected: rejected.length,
      bytesIn,
      bytesOut: parquet.length,
    });
    return outcome;
  }

  /** Fast mode: a mixed-table object straight to its tables' Parquet (transform-mixed-object.ts). */
  async function transformMixed(
    record: S3EventRecord,
    key: string,
    mixed: { hour: string; name: string },
    metrics: MetricSet,
    logger: Logger,
  ): Promise<ObjectOutcome> {
    const bucket = record.s3.bucket.name;
    const quarantine = (why: UnreadableObjectError) =>
      quarantineObject(record, key, MIXED_TABLE, why, logger);
    try {
      const result = await transformMixedObject(
        {
          exists,
          read: (from, what) => read(from, what, 'mixed object'),
          putOnce,
          transformPart: async ({ table, fingerprint, partKey, csv }) => {
            const targetTable = targetTableOf(table);
            const outputKey = outputKeyFor(targetTable, partKey);
            const base = { bucket, key: partKey, sourceTable: table, targetTable, outputKey };
            // Written by an earlier attempt that did not get to the manifest (a crash midway, rare):
            // encoded again, and the conditional write finds it and leaves it as it is ('duplicate').
            // No HEAD first: it would cost every part of every mixed object a request for that case.
            const schema = await schemaFor(bucket, partKey, table, fingerprint);
            const encoded = await encodeToParquet(piecesOf(csv), bucket, partKey, schema, targetTable);
            const outcome = await writeTransformed(
              { ...base, fingerprint, mixedKey: key },
              encoded,
              metrics,
              logger,
            );
            return outcome as PartOutcome;
          },
          unreadableReason: (e) => (e instanceof UnreadableObjectError ? e.reason : undefined),
        },
        record,
        key,
        mixed,
        logger,
      );
      const { parts, manifestKey } = result;
      if (result.status !== 'unreadable') return { bucket, key, status: result.status, parts, manifestKey };
      return { ...(await quarantine(new UnreadableObjectError(bucket, key, result.reason))), parts };
    } catch (e) {
      if (e instanceof MixedCsvError)
        return quarantine(new UnreadableObjectError(bucket, key, e.message, { cause: e }));
      if (e instanceof UnreadableObjectError) return quarantine(e);
      throw e;
    }
  }

  async function processRecord(
    record: S3EventRecord,
    metrics: MetricSet,
    logger: Logger,
  ): Promise<ObjectOutcome> {
    const bucket = record.s3.bucket.name;
    const rawKey = record.s3.object.key;
    const ignore = (key: string, reason: string): ObjectOutcome => {
      logger.debug('object ignored', { bucket, key, reason });
      return { bucket, key, status: 'ignored', reason };
    };
    if (!record.eventName.startsWith('ObjectCreated:')) return ignore(rawKey, `event ${record.eventName}`);
    if (bucket === processed) {
      // Our own output must never trigger us (a recursive invocation loop); say so loudly.
      logger.warn('event from the processed bucket ignored; check the trigger configuration', { bucket });
      return ignore(rawKey, 'event from the processed bucket');
    }
    let key: string;
    try {
      key = decodeS3ObjectKey(rawKey);
    } catch (e) {
      return quarantineObject(
        record,
        rawKey,
        '_unknown',
        new UnreadableObjectError(bucket, rawKey, 'object key is not URL-encoded', { cause: e }),
        logger,
      );
    }
    if (!key.startsWith(`${INGESTION_ROOT}/`)) return ignore(key, `outside ${INGESTION_ROOT}/`);
    const mixed = parseMixedObjectKey(key);
    if (mixed) return transformMixed(record, key, mixed, metrics, logger);
    const layout = parseDataObjectKey(key);
    if (!layout)
      return quarantineObject(
        record,
        key,
        key.split('/')[1] || '_unknown',
        new UnreadableObjectError(bucket, key, 'key does not follow the ingestion layout'),
        logger,
      );
    if (!isMappedSourceTable(layout.table)) {
      logger.warn('no warehouse table is built from this source table; object ignored', {
        key,
        table: layout.table,
      });
      return ignore(key, `no warehouse table is built from ${layout.table}`);
    }
    try {
      return await transformObject(record, key, layout.table, layout.fingerprint, metrics, logger);
    } catch (e) {
      if (e instanceof UnreadableObjectError) return quarantineObject(record, key, layout.table, e, logger);
      throw e;
    }
  }

  return s3ObjectHandler<ObjectOutcome>({
    logger: rootLogger,
    newMetrics,
    zeroMetrics: ['ObjectsWritten', 'ObjectsQuarantined', 'ObjectsFailed', 'ChangesRejected'],
    statusMetrics: {
      written: 'ObjectsWritten',
      duplicate: 'ObjectsDuplicate',
      ignored: 'ObjectsIgnored',
      quarantined: 'ObjectsQuarantined',
      failed: 'ObjectsFailed',
    },
    durationMetric: 'TransformDuration',
    processRecord,
    invalidEvent: (issues) => new InvalidS3EventError(issues),
    retryable: (failures) => new TransformRetryableError(failures),
  });
}
