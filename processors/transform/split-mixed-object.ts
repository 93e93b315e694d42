import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { INGESTION_ROOT, isLayoutSafeTableName } from '../../core/csv-codec';
import type { Logger } from '../../core/logger';
import { MixedCsvError, splitMixedCsv } from '../../core/mixed-csv';
import type { S3EventRecord } from '../shared/s3-event';

/**
 * Fast mode's first step in transform: a mixed-table object Firehose wrote
 * (`totesys/_mixed/yyyy/MM/dd/HH/<name>`, core/mixed-csv.ts) is split by layout into the ordinary
 * per-table objects, `totesys/<table>/schema=<fingerprint>/yyyy/MM/dd/HH/<name>`, in the same
 * bucket. Their ObjectCreated events bring each one back to transform, which treats it exactly as
 * a default-mode object (Parquet, quarantine, reconcile). The cost is one more S3 event hop, about
 * a second, against a minute of Firehose buffering saved.
 *
 * Idempotent: a part's key is a function of the mixed key and its layout, and parts are written
 * with If-None-Match, so a redelivered event rewrites nothing. A mixed object that cannot be split
 * (no layout record first, a malformed one, a table name unfit for a key) throws MixedCsvError:
 * the caller quarantines it, as any unreadable object.
 */

export interface SplitOutcome {
  /** The per-table objects, written now or found written by an earlier delivery. */
  parts: { table: string; fingerprint: string; key: string; written: boolean }[];
}

function isPreconditionFailed(e: unknown): boolean {
  const err = e as { name?: unknown; $metadata?: { httpStatusCode?: unknown } };
  return err?.name === 'PreconditionFailed' || err?.$metadata?.httpStatusCode === 412;
}

/** The key of one layout's part of a mixed object. */
export function mixedPartKey(
  mixed: { hour: string; name: string },
  table: string,
  fingerprint: string,
): string {
  return `${INGESTION_ROOT}/${table}/schema=${fingerprint}/${mixed.hour}/${mixed.name}`;
}

export async function splitMixedObject(
  s3: Pick<S3Client, 'send'>,
  record: S3EventRecord,
  key: string,
  mixed: { hour: string; name: string },
  logger: Logger,
): Promise<SplitOutcome> {
  const bucket = record.s3.bucket.name;
  const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const text = Buffer.from(await response.Body!.transformToByteArray()).toString('utf8');
  const segments = splitMixedCsv(text);
  for (const s of segments)
    if (!isLayoutSafeTableName(s.table))
      throw new MixedCsvError('a layout record names a table unfit for a key');
  const parts: SplitOutcome['parts'] = [];
  for (const segment of segments) {
    const partKey = mixedPartKey(mixed, segment.table, segment.fingerprint);
    let written = true;
    try {
      await s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: partKey,
          Body: segment.text,
          ContentType: 'text/csv',
          Metadata: { 'source-key': key },
          // Never overwrite: https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html
          IfNoneMatch: '*',
        }),
      );
    } catch (e) {
      if (!isPreconditionFailed(e)) throw e;
      written = false;
    }
    parts.push({ table: segment.table, fingerprint: segment.fingerprint, key: partKey, written });
  }
  logger.info('mixed object split by table', {
    key,
    parts: parts.length,
    written: parts.filter((p) => p.written).length,
    tables: [...new Set(parts.map((p) => p.table))],
  });
  return { parts };
}
