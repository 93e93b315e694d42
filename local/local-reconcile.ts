import type { S3Client } from '@aws-sdk/client-s3';
import type { ClientBase } from 'pg';
import type { Logger } from '../core/logger';
import type { WorkItem } from '../core/outstanding-work';
import {
  loadedVersionsIn,
  redriveEventFor,
  type DeadLetter,
  type ReconcileDeps,
  type Redrivers,
} from '../processors/reconcile/reconcile';
import { decodeS3ObjectKey, S3EventSchema } from '../processors/shared/s3-event';
import { metricsFor } from '../processors/shared/metrics';
import { createTransformHandler } from '../processors/transform/create-handler';
import { normalizeETag } from '../core/outstanding-work';
import { openLoadQueue } from './load-queue';

/**
 * The reconciler wired to the local stack on `dataDir`: loads are sent again as messages on the
 * on-disk load queue (the running `totes up` consumes them), transforms are invoked in this process
 * with the event S3 would send (the same handler `totes up` runs), `load_log` is read from the
 * warehouse.
 */
export function localReconcileDeps(o: {
  dataDir: string;
  s3: Pick<S3Client, 'send'>;
  ingestionBucket: string;
  processedBucket: string;
  warehouse: Pick<ClientBase, 'query'>;
  logger: Logger;
}): ReconcileDeps {
  const queue = openLoadQueue(o.dataDir);
  return {
    s3: o.s3,
    ingestionBucket: o.ingestionBucket,
    processedBucket: o.processedBucket,
    loadedVersions: (keys) => loadedVersionsIn(o.warehouse, keys),
    redrive: localRedrivers(o),
    async loadQueueBusy() {
      const depth = await queue.depth();
      return depth.visible + depth.inFlight > 0;
    },
    logger: o.logger,
  };
}

/**
 * How the local stack sends an object through a stage again: loads as messages on the on-disk load
 * queue (the running `totes up` consumes them, or the next one), transforms by invoking the handler
 * in this process with the event S3 would send.
 */
export function localRedrivers(o: {
  dataDir: string;
  s3: Pick<S3Client, 'send'>;
  processedBucket: string;
  logger: Logger;
}): Redrivers {
  const queue = openLoadQueue(o.dataDir);
  const transform = createTransformHandler({
    s3: o.s3,
    processedBucket: o.processedBucket,
    logger: o.logger.child({ stage: 'transform' }),
    // As in `totes up`: EMF lines are log lines here, never the command's stdout.
    metrics: metricsFor({
      stage: 'transform',
      write: (line) => o.logger.debug('metrics', { emf: JSON.parse(line) }),
    }),
  });
  const eventFor = (item: WorkItem) => redriveEventFor(item);
  return {
    async transform(items) {
      for (const item of items) await transform(eventFor(item));
    },
    async load(items) {
      for (const item of items) await queue.send(JSON.stringify(eventFor(item)));
    },
  };
}

/** The local load queue's dead letters, each as an object to drop or send again. */
export async function localLoadDeadLetters(dataDir: string): Promise<DeadLetter[]> {
  const queue = openLoadQueue(dataDir);
  const letters: DeadLetter[] = [];
  for (const message of await queue.deadLetters()) {
    let records;
    try {
      records = S3EventSchema.parse(JSON.parse(message.body)).Records;
    } catch {
      continue; // Not an S3 notification: left for a person to look at.
    }
    for (const record of records)
      letters.push({
        item: {
          stage: 'load',
          bucket: record.s3.bucket.name,
          key: decodeS3ObjectKey(record.s3.object.key),
          eTag: normalizeETag(record.s3.object.eTag),
          lastModified: new Date(record.eventTime),
        },
        drop: () => queue.dropDeadLetter(message.id),
        redrive: () => queue.redrive(message.id),
      });
  }
  return letters;
}

/** A reconciler running on a schedule (`totes up`), as EventBridge runs it in AWS. */
export interface ScheduledReconcile {
  /** Runs completed so far (failed ones included). */
  readonly runs: number;
  stop(): Promise<void>;
}

/**
 * Runs `reconcileOnce` every `intervalMs` (the first run one interval after the start), one run at a
 * time (a tick that finds a run going is skipped); a failed run (the warehouse down, say) is logged and the next one comes on schedule. What a
 * stage never finished — an outage longer than the load queue's receives, a lost notification — is
 * sent again without anyone running `totes reconcile`.
 */
export function startScheduledReconcile(
  reconcileOnce: () => Promise<unknown>,
  options: { intervalMs: number; logger: Logger },
): ScheduledReconcile {
  let runs = 0;
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    // A run still going when the next is due: that one is skipped, not queued behind it.
    running ??= (async () => {
      try {
        await reconcileOnce();
      } catch (err) {
        options.logger.warn('scheduled reconcile failed; the next run comes on schedule', { err });
      }
      runs += 1;
      running = undefined;
    })();
  }, options.intervalMs);
  timer.unref();
  return {
    get runs() {
      return runs;
    },
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
