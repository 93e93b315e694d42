import type { Logger } from '../../core/logger';
import type { MetricSet } from './metrics';
import { decodeS3ObjectKey, parseObjectEvent, type QueuedMessage, type S3EventRecord } from './s3-event';

/**
 * The envelope both S3-triggered functions (transform, load) share: parse the event, handle each
 * object in turn, count outcomes, and report failures a retry can fix the way the invoker retries:
 *
 * - S3's own notification (an asynchronous invocation, which has no partial-batch response): throw
 *   at the end when some object failed retryably, so Lambda's retries redo just those (finished
 *   objects are skipped as duplicates).
 * - SQS messages that each wrap an S3 notification (an event source mapping with
 *   `ReportBatchItemFailures`): never throw; return the ids of the messages with a failed object in
 *   `batchItemFailures`, so only those return to the queue (after its visibility timeout) and the
 *   rest are deleted. A message whose body is not an S3 notification fails too: it can never
 *   succeed, and the queue's redrive policy takes it to the dead-letter queue.
 *   https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html
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
  /**
   * Called with the record handled next as each record's handling starts, so that reading its
   * object can overlap the current one's work; the handler keeps what it starts for processRecord.
   * Must not throw.
   */
  lookAhead?(next: S3EventRecord, logger: Logger): void;
  invalidEvent(issues: string[]): Error;
  retryable(failures: ObjectFailure[]): Error;
  /**
   * SQS only: seconds until a message whose object threw `error` should be handed out again, or
   * undefined for the queue's visibility timeout. Used with `changeVisibility`.
   */
  retryDelaySeconds?(error: unknown, receiveCount: number | undefined): number | undefined;
  /** SQS's ChangeMessageVisibility for the message of this receive. */
  changeVisibility?(receiptHandle: string, seconds: number): Promise<void>;
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

/** The partial batch response of an SQS event source mapping. */
export interface BatchItemFailures {
  batchItemFailures: { itemIdentifier: string }[];
}

export type S3ObjectReport<O> = { objects: O[] } & Partial<BatchItemFailures>;

export function s3ObjectHandler<O extends S3ObjectOutcome>(
  options: S3ObjectHandlerOptions<O>,
): (payload: unknown, context?: { awsRequestId?: string }) => Promise<S3ObjectReport<O>> {
  return async (payload, context) => {
    const logger = context?.awsRequestId
      ? options.logger.child({ requestId: context.awsRequestId })
      : options.logger;
    const envelope = parseObjectEvent(payload);
    if (envelope.kind === 's3-test-event') {
      logger.info('S3 test event ignored');
      return { objects: [] };
    }
    if (envelope.kind === 'invalid') throw options.invalidEvent(envelope.issues);
    const started = Date.now();
    const metrics = options.newMetrics();
    for (const name of options.zeroMetrics) metrics.add(name, 0);
    const objects: O[] = [];
    // Every record in the order it is handled, for lookAhead.
    const inOrder =
      envelope.kind === 's3'
        ? envelope.event.Records
        : envelope.messages.flatMap((m) => (m.kind === 'objects' ? m.event.Records : []));
    let handled = 0;

    // One object at a time: memory stays one object's, and a load holds one warehouse connection.
    // `errors` gets what each failed object threw.
    const handle = async (
      records: readonly S3EventRecord[],
      log: Logger,
      errors: unknown[] = [],
    ): Promise<O[]> => {
      const outcomes: O[] = [];
      for (const record of records) {
        handled += 1;
        const next = inOrder[handled];
        if (next && options.lookAhead) options.lookAhead(next, log);
        let outcome: O;
        try {
          outcome = await options.processRecord(record, metrics, log);
        } catch (e) {
          errors.push(e);
          let key = record.s3.object.key;
          try {
            key = decodeS3ObjectKey(key);
          } catch {
            // Reported with the raw key.
          }
          log.error('object failed; the invocation will be retried', {
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
        outcomes.push(outcome);
      }
      objects.push(...outcomes);
      return outcomes;
    };
    const finish = () => {
      metrics.add(options.durationMetric, Date.now() - started, 'Milliseconds');
      metrics.flush(context?.awsRequestId ? { requestId: context.awsRequestId } : undefined);
    };

    if (envelope.kind === 's3') {
      await handle(envelope.event.Records, logger);
      finish();
      const failures = objects.filter((o) => o.status === 'failed');
      if (failures.length)
        throw options.retryable(
          failures.map((f) => ({ bucket: f.bucket, key: f.key, reason: f.reason ?? 'unknown' })),
        );
      return { objects };
    }

    /**
     * A failed message comes back after the queue's visibility timeout, unless every object that
     * failed in it says it can be retried sooner: then after the longest of their delays.
     */
    const retrySooner = async (message: QueuedMessage, errors: unknown[], log: Logger): Promise<void> => {
      const { retryDelaySeconds, changeVisibility } = options;
      if (!retryDelaySeconds || !changeVisibility || !message.receiptHandle || errors.length === 0) return;
      const delays = errors.map((e) => retryDelaySeconds(e, message.receiveCount));
      if (delays.some((d) => d === undefined)) return;
      const seconds = Math.max(...(delays as number[]));
      try {
        await changeVisibility(message.receiptHandle, seconds);
        log.info('message returns to the queue sooner than its visibility timeout', {
          retryInSeconds: seconds,
        });
      } catch (err) {
        // It still comes back, after the queue's own visibility timeout.
        log.warn('could not shorten the failed message’s visibility; it returns after the queue’s timeout', {
          err,
        });
      }
    };

    envelope.kind satisfies 'sqs';
    const batchItemFailures: { itemIdentifier: string }[] = [];
    for (const message of envelope.messages) {
      const log = logger.child({ messageId: message.messageId, receiveCount: message.receiveCount });
      if (message.kind === 'test-event') continue;
      if (message.kind === 'invalid') {
        log.error('queue message is not an S3 event notification; left for the dead-letter queue', {
          issues: message.issues.slice(0, 3),
        });
        batchItemFailures.push({ itemIdentifier: message.messageId });
        continue;
      }
      const errors: unknown[] = [];
      const outcomes = await handle(message.event.Records, log, errors);
      if (outcomes.some((o) => o.status === 'failed')) {
        batchItemFailures.push({ itemIdentifier: message.messageId });
        await retrySooner(message, errors, log);
      }
    }
    finish();
    return { objects, batchItemFailures };
  };
}
