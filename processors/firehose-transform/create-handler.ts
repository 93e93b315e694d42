import { HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { InvalidChangeBatchError, type ChangeBatch, type Column } from '../../core/change-event';
import {
  encodeSchemaObject,
  isLayoutSafeTableName,
  schemaFingerprint,
  schemaObjectFor,
  schemaObjectKey,
  writeChangeBatchAsCsv,
  type IngestionPartitionKeys,
} from '../../core/csv-codec';
import { silentLogger, type Logger } from '../../core/logger';
import { writeChangeBatchAsMixedCsv } from '../../core/mixed-csv';
import { InvalidCompressedRecordError } from '../../core/record-compression';
import { decodeRecordData, decodeStrictBase64 } from './decode-record';
import { ScratchBuffer } from './scratch-buffer';
import {
  FirehoseTransformationEventSchema,
  type FirehoseTransformationEventRecord,
  type FirehoseTransformationResult,
  type FirehoseTransformationResultRecord,
} from './firehose-types';

/**
 * Firehose record transformation: each record is one ChangeBatch (JSON) and becomes its CSV lines,
 * partitioned by table and column-layout fingerprint. Three steps, as in any batch handler: parse the
 * envelope, transform each record on its own (a bad record fails alone, as `ProcessingFailed`, never
 * dropped), then make sure every layout's schema object is in the bucket before Firehose writes data
 * that needs it.
 */

/** Base class of every error this module throws. */
export class FirehoseTransformError extends Error {
  override name = 'FirehoseTransformError';
}

/** The invocation payload is not a Firehose transformation event: fail the invocation, not records. */
export class InvalidTransformationEventError extends FirehoseTransformError {
  override name = 'InvalidTransformationEventError';
  constructor(readonly issues: string[]) {
    super(`not a Firehose transformation event: ${issues.slice(0, 3).join('; ')}`);
  }
}

/**
 * A schema object could not be checked or written. The invocation fails so Firehose retries it:
 * delivering data whose layout nobody can read would be worse than a delay.
 */
export class SchemaObjectWriteError extends FirehoseTransformError {
  override name = 'SchemaObjectWriteError';
  constructor(
    readonly bucket: string,
    readonly key: string,
    options: { cause: unknown },
  ) {
    super(`could not ensure schema object s3://${bucket}/${key}`, options);
  }
}

export class MissingConfigurationError extends FirehoseTransformError {
  override name = 'MissingConfigurationError';
  constructor(readonly variable: string) {
    super(`environment variable ${variable} is required`);
  }
}

export interface TransformConfig {
  /** Bucket the schema objects go to: the one Firehose delivers the CSV objects to. */
  ingestionBucket: string;
  /**
   * Fast mode (FRESHNESS_MODE=fast): Firehose does no dynamic partitioning and writes every table
   * into one object, so each record's lines start with its layout record (core/mixed-csv.ts).
   */
  mixedObjects: boolean;
}

/** Reads the function's configuration; the Lambda entry calls it at cold start so a gap fails loudly. */
export function readTransformConfig(env: NodeJS.ProcessEnv): TransformConfig {
  const ingestionBucket = env.INGESTION_BUCKET?.trim();
  if (!ingestionBucket) throw new MissingConfigurationError('INGESTION_BUCKET');
  return { ingestionBucket, mixedObjects: env.FRESHNESS_MODE?.trim() === 'fast' };
}

export interface TransformHandlerDeps {
  s3: Pick<S3Client, 'send'>;
  bucket: string;
  logger?: Logger;
  /** Fast mode: mixed-table objects (TransformConfig.mixedObjects). */
  mixedObjects?: boolean;
}

/** Why one record could not be transformed; codes are stable, for dashboards and alarms. */
export const RECORD_FAILURE_CODES = [
  'InvalidBase64',
  'NotJson',
  'NotAChangeBatch',
  'UnsafeTableName',
  'InvalidGzip',
] as const;
export type RecordFailureCode = (typeof RECORD_FAILURE_CODES)[number];

interface RecordFailure {
  code: RecordFailureCode;
  /** Safe to log: says what is wrong, never quotes the data. */
  reason: string;
  issues: string[];
}

type RecordOutcome =
  { ok: true; batch: ChangeBatch; fingerprint: string; data: string } | { ok: false; failure: RecordFailure };

/**
 * One record: its data decoded and checked, its layout's fingerprint (`fingerprintOf`), and its CSV
 * lines in base64. `scratch` holds the decoded bytes, then the CSV's bytes (written in pieces: no
 * string of the whole CSV is made).
 */
function transformRecord(
  data: string,
  mixedObjects: boolean,
  scratch: ScratchBuffer,
  fingerprintOf: (table: string, columns: readonly Column[]) => string,
): RecordOutcome {
  const bytes = decodeStrictBase64(data, scratch);
  if (!bytes)
    return { ok: false, failure: { code: 'InvalidBase64', reason: 'data is not base64', issues: [] } };
  let batch: ChangeBatch;
  try {
    batch = decodeRecordData(bytes);
  } catch (e) {
    // Capture gzips its records by default (core/record-compression.ts): its own code for one that
    // does not inflate, rather than "not JSON". The reason names the inflate error, never the data.
    if (e instanceof InvalidChangeBatchError && e.cause instanceof InvalidCompressedRecordError)
      return { ok: false, failure: { code: 'InvalidGzip', reason: e.cause.message, issues: [] } };
    // InvalidChangeBatchError's message may quote the input (JSON.parse does): log only its issues.
    const issues = e instanceof InvalidChangeBatchError ? e.issues : [];
    return issues.length === 0
      ? { ok: false, failure: { code: 'NotJson', reason: 'data is not JSON', issues } }
      : { ok: false, failure: { code: 'NotAChangeBatch', reason: 'data is not a change batch', issues } };
  }
  if (!isLayoutSafeTableName(batch.table))
    return {
      ok: false,
      failure: { code: 'UnsafeTableName', reason: 'table name cannot be an S3 key segment', issues: [] },
    };
  const fingerprint = fingerprintOf(batch.table, batch.columns);
  scratch.clear();
  const append = (piece: string) => scratch.append(piece);
  if (mixedObjects) writeChangeBatchAsMixedCsv(batch, append, fingerprint);
  else writeChangeBatchAsCsv(batch, append);
  return { ok: true, batch, fingerprint, data: scratch.toBase64() };
}

function sameColumns(a: readonly Column[], b: readonly Column[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++)
    if (a[i].name !== b[i].name || a[i].type !== b[i].type || a[i].key !== b[i].key) return false;
  return true;
}

/**
 * schemaFingerprint with the last layout of each table remembered: a record of a layout seen before
 * costs a comparison of its columns instead of JSON and SHA-256, which were 5–7% of the handler's
 * CPU on 10-change records (bench/firehose-worker.ts). Any difference in a name, type or key flag
 * hashes again.
 */
function fingerprintMemo(): (table: string, columns: readonly Column[]) => string {
  const last = new Map<string, { columns: Column[]; fingerprint: string }>();
  return (table, columns) => {
    const seen = last.get(table);
    if (seen && sameColumns(seen.columns, columns)) return seen.fingerprint;
    const fingerprint = schemaFingerprint(columns);
    last.set(table, { columns: columns.map(({ name, type, key }) => ({ name, type, key })), fingerprint });
    return fingerprint;
  };
}

function isNotFound(e: unknown): boolean {
  const err = e as { name?: unknown; $metadata?: { httpStatusCode?: unknown } };
  return err?.name === 'NotFound' || err?.name === 'NoSuchKey' || err?.$metadata?.httpStatusCode === 404;
}

/**
 * Builds the handler. `ensured` lives as long as the handler (a warm Lambda container), so each
 * layout's schema object costs one HEAD per container, not one per invocation.
 */
export function createHandler(
  deps: TransformHandlerDeps,
): (event: unknown) => Promise<FirehoseTransformationResult> {
  const logger = deps.logger ?? silentLogger;
  const ensured = new Set<string>();
  const fingerprintOf = fingerprintMemo();
  const scratch = new ScratchBuffer();

  async function ensureSchemaObject(batch: ChangeBatch, fingerprint: string): Promise<boolean> {
    const key = schemaObjectKey(batch.table, fingerprint);
    if (ensured.has(key)) return false;
    const schema = schemaObjectFor(batch);
    let written = false;
    try {
      try {
        await deps.s3.send(new HeadObjectCommand({ Bucket: deps.bucket, Key: key }));
      } catch (e) {
        if (!isNotFound(e)) throw e;
        // Content-addressed: two containers racing here write identical bytes.
        await deps.s3.send(
          new PutObjectCommand({
            Bucket: deps.bucket,
            Key: key,
            Body: encodeSchemaObject(schema),
            ContentType: 'application/json',
          }),
        );
        written = true;
        logger.info('schema object written', { table: batch.table, fingerprint: schema.fingerprint, key });
      }
    } catch (e) {
      throw new SchemaObjectWriteError(deps.bucket, key, { cause: e });
    }
    ensured.add(key);
    return written;
  }

  return async (payload: unknown) => {
    const parsed = FirehoseTransformationEventSchema.safeParse(payload);
    if (!parsed.success)
      throw new InvalidTransformationEventError(
        parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`),
      );
    const event = parsed.data;
    const layouts = new Map<string, { batch: ChangeBatch; fingerprint: string }>();
    let failed = 0;
    const records = event.records.map((record): FirehoseTransformationResultRecord => {
      const outcome = transformRecord(record.data, deps.mixedObjects === true, scratch, fingerprintOf);
      if (!outcome.ok) {
        failed += 1;
        logFailure(logger, event.invocationId, record, outcome.failure);
        return { recordId: record.recordId, result: 'ProcessingFailed', data: record.data };
      }
      const { batch, data } = outcome;
      const partitionKeys: IngestionPartitionKeys = { table: batch.table, schema: outcome.fingerprint };
      layouts.set(`${partitionKeys.table}/${partitionKeys.schema}`, {
        batch,
        fingerprint: partitionKeys.schema,
      });
      return {
        recordId: record.recordId,
        result: 'Ok',
        data,
        // Partition keys are for dynamic partitioning, which fast mode has not: its lines say it.
        ...(deps.mixedObjects ? {} : { metadata: { partitionKeys: { ...partitionKeys } } }),
      };
    });
    let schemaObjectsWritten = 0;
    for (const { batch, fingerprint } of layouts.values())
      if (await ensureSchemaObject(batch, fingerprint)) schemaObjectsWritten += 1;
    logger.debug('transformed', {
      invocationId: event.invocationId,
      records: records.length,
      failed,
      layouts: layouts.size,
      schemaObjectsWritten,
    });
    return { records };
  };
}

function logFailure(
  logger: Logger,
  invocationId: string,
  record: FirehoseTransformationEventRecord,
  failure: RecordFailure,
): void {
  logger.error('record failed transformation; Firehose sends it to the processing-failed prefix', {
    invocationId,
    recordId: record.recordId,
    errorCode: failure.code,
    reason: failure.reason,
    issues: failure.issues.slice(0, 5),
    shardId: record.kinesisRecordMetadata?.shardId,
    sequenceNumber: record.kinesisRecordMetadata?.sequenceNumber,
    bytes: Math.floor((record.data.length * 3) / 4),
  });
}
