import type { Logger } from '../../core/logger';
import type { MetricSet } from './metrics';
import { decodeS3ObjectKey, isS3TestEvent, S3EventSchema, type S3EventRecord } from './s3-event';

/**
 * The envelope both S3-triggered functions (transform, load) share: parse the event, handle each
 * object in turn, count outcomes, and — because an S3-triggered (asynchronous) invocation has no
 * partial-batch response — throw at the end only when some object failed in a way a retry can fix,
 * so Lambda's retries redo just those (finished objects are skipped as duplicates).
 */
export interface S3ObjectOutcome {
  bucket: string;
  key: string;
  status: string;
  reason?: string;
}

export interface S3ObjectHandlerOptions<O extends S3ObjectOutcome> {
  logger: Logger;
  /** A fresh MetricSet per invocation. */
  newMetrics: () => MetricSet;
  /** Published as 0 on every invocation, so alarms on them always have data. */
  zeroMetrics: readonly string[];
  /** The counter each outcome adds to. */
  statusMetrics: Record<O['status'] | 'failed', string>;
  durationMetric: string;
  /** Handles one object; throws only for failures a retry can fix. */
  processRecord(record: S3EventRecord, metrics: MetricSet, logger: Logger): Promise<O>;
  invalidEvent(issues: string[]): Error;
  retryable(failures: ObjectFailure[]): Error;
}

export type ObjectFailure = { bucket: string; key: string; reason: string };

/** The message of each handler's "not an S3 event" error. */
export function describeInvalidEvent(issues: readonly string[]): string {
  return `not an S3 event notification: ${issues.slice(0, 3).join('; ')}`;
}

/** The message of each handler's end-of-invocation "retry these" error. */
export function describeRetryableFailures(failures: readonly ObjectFailure[]): string {
  return `${failures.length} object(s) failed and should be retried: ${failures
    .slice(0, 3)
    .map((f) => f.key)
    .join(', ')}`;
}

export function s3ObjectHandler<O extends S3ObjectOutcome>(
  options: S3ObjectHandlerOptions<O>,
): (payload: unknown, context?: { awsRequestId?: string }) => Promise<{ objects: O[] }> {
  return async (payload, context) => {
    const logger = context?.awsRequestId
      ? options.logger.child({ requestId: context.awsRequestId })
      : options.logger;
    if (isS3TestEvent(payload)) {
      logger.info('S3 test event ignored');
      return { objects: [] };
    }
    const parsed = S3EventSchema.safeParse(payload);
    if (!parsed.success)
      throw options.invalidEvent(
        parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`),
      );
    const started = Date.now();
    const metrics = options.newMetrics();
    for (const name of options.zeroMetrics) metrics.add(name, 0);
    const objects: O[] = [];
    // One object at a time: memory stays one object's, and a load holds one warehouse connection.
    for (const record of parsed.data.Records) {
      let outcome: O;
      try {
        outcome = await options.processRecord(record, metrics, logger);
      } catch (e) {
        let key = record.s3.object.key;
        try {
          key = decodeS3ObjectKey(key);
        } catch {
          // Reported with the raw key.
        }
        logger.error('object failed; the invocation will be retried', {
          bucket: record.s3.bucket.name,
          key,
          err: e,
        });
        outcome = {
          bucket: record.s3.bucket.name,
          key,
          status: 'failed',
          reason: e instanceof Error ? e.message : String(e),
        } as O;
      }
      metrics.add(options.statusMetrics[outcome.status as O['status']]);
      objects.push(outcome);
    }
    metrics.add(options.durationMetric, Date.now() - started, 'Milliseconds');
    metrics.flush(context?.awsRequestId ? { requestId: context.awsRequestId } : undefined);
    const failures = objects.filter((o) => o.status === 'failed');
    if (failures.length)
      throw options.retryable(
        failures.map((f) => ({ bucket: f.bucket, key: f.key, reason: f.reason ?? 'unknown' })),
      );
    return { objects };
  };
}
