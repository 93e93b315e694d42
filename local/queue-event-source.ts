import path from 'node:path';
import type { Logger } from '../core/logger';
import { DurableQueue, type ReceivedMessage } from './durable-queue';
import { S3Trigger, type S3TriggerOptions } from './s3-trigger';

/**
 * Lambda's SQS event source mapping, locally: polls a DurableQueue, hands the function batches of
 * messages in the event shape Lambda sends, and deletes what succeeded. With
 * `ReportBatchItemFailures` (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html):
 * a returned `batchItemFailures` keeps just those messages; a thrown error keeps the whole batch.
 * Kept messages come back after the queue's visibility timeout, until its redrive policy moves them
 * to the dead-letter queue. `maximumConcurrency` caps the invocations at once, as the mapping's
 * setting of that name does: the queue holds the rest, and nothing is throttled or counted as a
 * failed receive. https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html
 */
export interface QueueEventSourceOptions {
  name: string;
  queue: DurableQueue;
  handler: (event: LocalSqsEvent) => Promise<unknown>;
  /** Messages per invocation (AWS default 10). */
  batchSize: number;
  /** Invocations at once (AWS: 2 to 1,000). */
  maximumConcurrency: number;
  /** Wait between polls of an empty queue. */
  pollIntervalMs?: number;
  logger: Logger;
}

export interface LocalSqsEvent {
  Records: {
    messageId: string;
    receiptHandle: string;
    body: string;
    attributes: Record<string, string>;
    messageAttributes: Record<string, never>;
    eventSource: 'aws:sqs';
    eventSourceARN: string;
    awsRegion: string;
  }[];
}

export interface QueueEventSourceStats {
  invocations: number;
  /** Messages returned to the queue (reported failed, or in a batch whose invocation threw). */
  messagesFailed: number;
  messagesDeleted: number;
}

export class QueueEventSource {
  readonly stats: QueueEventSourceStats = { invocations: 0, messagesFailed: 0, messagesDeleted: 0 };
  private readonly running = new Set<Promise<void>>();
  /**
   * Messages whose invocation is running. AWS stops a function at its timeout, a sixth of the
   * queue's visibility timeout, so a message never comes back while its invocation runs; locally
   * the function has no timeout, so the mapping holds its messages for as long as it runs.
   */
  private readonly held = new Set<string>();
  private loop: Promise<void> | undefined;
  private stopped = false;
  private wake: (() => void) | undefined;

  constructor(private readonly o: QueueEventSourceOptions) {}

  start(): void {
    this.loop ??= this.poll();
  }

  /** A message was just sent: poll now rather than after the idle wait (SQS long polling answers at once too). */
  wakeUp(): void {
    this.wake?.();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
    await Promise.all([...this.running]);
  }

  private async poll(): Promise<void> {
    while (!this.stopped) {
      if (this.running.size >= this.o.maximumConcurrency) {
        await Promise.race(this.running);
        continue;
      }
      let batch: ReceivedMessage[] = [];
      try {
        batch = await this.o.queue.receive(this.o.batchSize, this.held);
      } catch (e) {
        this.o.logger.error('receiving from the local queue failed', { queue: this.o.name, err: e });
      }
      if (batch.length === 0) {
        await this.sleep(this.o.pollIntervalMs ?? 200);
        continue;
      }
      const invocation = this.invoke(batch).finally(() => this.running.delete(invocation));
      this.running.add(invocation);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private event(batch: ReceivedMessage[]): LocalSqsEvent {
    return {
      Records: batch.map((m) => ({
        messageId: m.messageId,
        receiptHandle: m.receiptHandle,
        body: m.body,
        attributes: { ApproximateReceiveCount: String(m.receiveCount), SentTimestamp: String(m.sentAt) },
        messageAttributes: {},
        eventSource: 'aws:sqs',
        eventSourceARN: `arn:aws:sqs:local:000000000000:${this.o.name}`,
        awsRegion: 'local',
      })),
    };
  }

  private async invoke(batch: ReceivedMessage[]): Promise<void> {
    for (const message of batch) this.held.add(message.messageId);
    try {
      await this.invokeHeld(batch);
    } finally {
      for (const message of batch) this.held.delete(message.messageId);
    }
  }

  private async invokeHeld(batch: ReceivedMessage[]): Promise<void> {
    this.stats.invocations += 1;
    let failed: Set<string>;
    try {
      const result = (await this.o.handler(this.event(batch))) as {
        batchItemFailures?: { itemIdentifier: string }[];
      } | null;
      failed = new Set((result?.batchItemFailures ?? []).map((f) => f.itemIdentifier));
    } catch (e) {
      this.o.logger.warn('invocation failed; its whole batch returns to the queue', {
        queue: this.o.name,
        messages: batch.length,
        err: e,
      });
      failed = new Set(batch.map((m) => m.messageId));
    }
    for (const message of batch) {
      if (failed.has(message.messageId)) {
        this.stats.messagesFailed += 1;
        continue;
      }
      if (await this.o.queue.delete(message.receiptHandle)) this.stats.messagesDeleted += 1;
    }
  }
}

/** How the local stack runs load: S3 → queue → function, the queue on disk. */
export interface QueuedS3TriggerOptions extends Omit<S3TriggerOptions, 'handler' | 'queue' | 'stateDir'> {
  handler: QueueEventSourceOptions['handler'];
  /** Holds the queue and the notification watermark. */
  dir: string;
  batchSize?: number;
  maximumConcurrency?: number;
  /**
   * Locally the handler has no timeout (AWS sets 6 x the function timeout): a message stays
   * invisible while its invocation runs, and comes back this long after it ends unsuccessfully.
   */
  visibilityTimeoutMs?: number;
  maxReceiveCount?: number;
  pollIntervalMs?: number;
}

export interface QueuedS3Trigger {
  queue: DurableQueue;
  notifications: S3Trigger;
  source: QueueEventSource;
  readonly stats: { invocations: number; messagesFailed: number; deadLettered: number };
  stop(): Promise<void>;
}

export const LOCAL_QUEUE_DEFAULTS = {
  batchSize: 10,
  maximumConcurrency: 2,
  visibilityTimeoutMs: 30_000,
  /** With 30 s between receives: 50 minutes of outage in the queue; `totes reconcile` covers longer. */
  maxReceiveCount: 100,
} as const;

/**
 * `<dir>.dead-letter.jsonl`, beside the queue's directory: a file of the name every local dead-letter
 * file has, in a direct subdirectory of the data directory, where `totes verify` looks.
 */
export function deadLetterFileOf(dir: string): string {
  return `${dir.replace(/\/+$/, '')}.dead-letter.jsonl`;
}

/** The queue path for one stage: notifications into the queue, the event source out of it. */
export async function startQueuedS3Trigger(o: QueuedS3TriggerOptions): Promise<QueuedS3Trigger> {
  const queue = new DurableQueue({
    dir: path.join(o.dir, 'queue'),
    deadLetterFile: deadLetterFileOf(o.dir),
    visibilityTimeoutMs: o.visibilityTimeoutMs ?? LOCAL_QUEUE_DEFAULTS.visibilityTimeoutMs,
    maxReceiveCount: o.maxReceiveCount ?? LOCAL_QUEUE_DEFAULTS.maxReceiveCount,
  });
  const source = new QueueEventSource({
    name: o.name,
    queue,
    handler: o.handler,
    batchSize: o.batchSize ?? LOCAL_QUEUE_DEFAULTS.batchSize,
    maximumConcurrency: o.maximumConcurrency ?? LOCAL_QUEUE_DEFAULTS.maximumConcurrency,
    pollIntervalMs: o.pollIntervalMs,
    logger: o.logger,
  });
  const notifications = new S3Trigger({
    name: o.name,
    s3: o.s3,
    client: o.client,
    bucket: o.bucket,
    prefix: o.prefix,
    suffix: o.suffix,
    concurrency: o.concurrency,
    logger: o.logger,
    // Long polling, locally: a notification sent to the queue wakes the idle consumer at once.
    queue: {
      send: async (body: string) => {
        const sent = await queue.send(body);
        source.wakeUp();
        return sent;
      },
    },
    stateDir: o.dir,
  });
  await notifications.start();
  source.start();
  return {
    queue,
    notifications,
    source,
    get stats() {
      return {
        invocations: source.stats.invocations,
        messagesFailed: source.stats.messagesFailed,
        deadLettered: queue.movedToDeadLetters,
      };
    },
    async stop() {
      await notifications.stop();
      await source.stop();
    },
  };
}
