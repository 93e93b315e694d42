/* eslint-disable security/detect-non-literal-fs-filename -- watermark and dead-letter files under --data-dir, named after the trigger, never after an object key */
import fs from 'node:fs';
import path from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Logger } from '../core/logger';
import type { DurableQueue } from './durable-queue';
import { decodeS3ObjectKey } from '../processors/shared/s3-event';
import { isAbandoned } from './stage-workers';
import { encodeS3EventKey, listObjectsSince, type LocalS3, type S3Event, type S3EventRecord } from './s3rver';
import { writeOver } from './write-over';

/**
 * An S3 bucket notification on the local stack, to one of the two destinations AWS offers:
 * - a function (`handler`): what AWS does between a notification and an asynchronous Lambda
 *   invocation. The handler gets the event shape S3 sends; a failed invocation is retried twice
 *   with backoff (Lambda's async retry policy), then the event goes to a dead-letter file, as it
 *   would go to the function's on-failure destination (transform);
 * - a queue (`queue`): each notification becomes one message whose body is the S3 event, as S3 →
 *   SQS does; the queue's consumer (local/queue-event-source.ts) takes it from there (load).
 *
 * s3rver's notifications are in-memory, so a stack that was stopped (or killed) misses objects
 * created while it was down or not yet handled. The trigger therefore keeps a watermark file: on
 * start it lists objects modified since the watermark and invokes the handler for them. Handlers are
 * idempotent (they must be in AWS too: S3 events are at-least-once), so a repeat is harmless.
 */
export interface S3TriggerOptions {
  name: string;
  s3: LocalS3;
  client: Pick<S3Client, 'send'>;
  bucket: string;
  /** Only keys under this prefix / with this suffix fire (the notification's filter rules). */
  prefix?: string;
  suffix?: string;
  /** Invoked asynchronously with each notification (give this or `queue`). */
  handler?: (event: S3Event) => Promise<unknown>;
  /** Receives each notification as a message (give this or `handler`). */
  queue?: Pick<DurableQueue, 'send'>;
  /** Invocations (or sends) running at once (a function's concurrency). */
  concurrency: number;
  stateDir: string;
  logger: Logger;
  retryDelaysMs?: readonly number[];
}

/** Lambda retries a failed asynchronous invocation twice. https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html */
const DEFAULT_RETRY_DELAYS_MS = [1000, 2000] as const;

export interface S3TriggerStats {
  invocations: number;
  failures: number;
  deadLettered: number;
  inFlight: number;
  queued: number;
}

export class S3Trigger {
  private readonly queue: S3EventRecord[] = [];
  private readonly inFlight = new Map<number, S3EventRecord>();
  /** Invocations the stack stopped waiting for (a stage worker ended while stopping): not handled. */
  private readonly abandoned: S3EventRecord[] = [];
  private nextId = 0;
  private unsubscribe: (() => void) | null = null;
  private stopped = false;
  private idle: (() => void)[] = [];
  private watermarkTimer: NodeJS.Timeout | null = null;
  /** The watermark file's length as this trigger last read or wrote it. */
  private watermarkBytes: number | undefined;
  readonly stats: S3TriggerStats = { invocations: 0, failures: 0, deadLettered: 0, inFlight: 0, queued: 0 };

  constructor(private readonly options: S3TriggerOptions) {}

  private get watermarkFile(): string {
    return path.join(this.options.stateDir, `${this.options.name}.watermark.json`);
  }

  private matches(key: string): boolean {
    const { prefix = '', suffix = '' } = this.options;
    return key.startsWith(prefix) && key.endsWith(suffix);
  }

  /** Subscribes to new objects, then catches up on what was created since the last watermark. */
  async start(): Promise<void> {
    fs.mkdirSync(this.options.stateDir, { recursive: true });
    this.unsubscribe = this.options.s3.onObjectCreated((event) => {
      for (const record of event.Records) {
        if (record.s3.bucket.name !== this.options.bucket) continue;
        if (!this.matches(decodeS3ObjectKey(record.s3.object.key))) continue;
        this.enqueue(record);
      }
    });
    const since = this.readWatermark();
    const missed = await listObjectsSince(this.options.client, this.options.bucket, since, {
      prefix: this.options.prefix,
    });
    const due = missed.filter((o) => this.matches(o.key));
    if (due.length > 0)
      this.options.logger.info('catching up on objects created while stopped', {
        trigger: this.options.name,
        objects: due.length,
      });
    for (const o of due) this.enqueue(this.recordFor(o.key, o.size, o.lastModified));
    this.watermarkTimer = setInterval(() => this.saveWatermark(), 1000);
    this.watermarkTimer.unref();
  }

  /** Resolves once nothing is queued or running. */
  drained(): Promise<void> {
    if (this.queue.length === 0 && this.inFlight.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.stopped = true;
    if (this.watermarkTimer) clearInterval(this.watermarkTimer);
    // Let running invocations finish; queued ones are picked up by the next start's catch-up.
    await new Promise<void>((resolve) => {
      if (this.inFlight.size === 0) resolve();
      else this.idle.push(resolve);
    });
    this.saveWatermark();
  }

  private recordFor(key: string, size: number, at: Date): S3EventRecord {
    return {
      eventVersion: '2.1',
      eventSource: 'aws:s3',
      awsRegion: 'us-east-1',
      eventTime: at.toISOString(),
      eventName: 'ObjectCreated:Put',
      s3: {
        s3SchemaVersion: '1.0',
        configurationId: `${this.options.name}-catch-up`,
        bucket: { name: this.options.bucket, arn: `arn:aws:s3:::${this.options.bucket}` },
        object: { key: encodeS3EventKey(key), size, sequencer: at.getTime().toString(16).toUpperCase() },
      },
    };
  }

  private enqueue(record: S3EventRecord): void {
    if (this.stopped) return;
    this.queue.push(record);
    this.stats.queued = this.queue.length;
    this.pump();
  }

  private pump(): void {
    while (!this.stopped && this.inFlight.size < this.options.concurrency && this.queue.length > 0) {
      const record = this.queue.shift()!;
      const id = this.nextId++;
      this.inFlight.set(id, record);
      this.stats.queued = this.queue.length;
      this.stats.inFlight = this.inFlight.size;
      void this.invoke(record).finally(() => {
        this.inFlight.delete(id);
        this.stats.inFlight = this.inFlight.size;
        this.pump();
        if (this.inFlight.size === 0 && (this.queue.length === 0 || this.stopped))
          for (const w of this.idle.splice(0)) w();
      });
    }
  }

  private async invoke(record: S3EventRecord): Promise<void> {
    const delays = this.options.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS;
    const { handler, queue } = this.options;
    for (let attempt = 0; ; attempt++) {
      this.stats.invocations += 1;
      try {
        if (queue) await queue.send(JSON.stringify({ Records: [record] }));
        else await handler!({ Records: [record] });
        return;
      } catch (e) {
        // Stopping, the stack gave up waiting for it (local/stage-workers.ts): neither done nor
        // failed. The watermark stays before it, so the next start's catch-up invokes it again.
        if (this.stopped && isAbandoned(e)) {
          this.abandoned.push(record);
          return;
        }
        this.stats.failures += 1;
        if (attempt >= delays.length || this.stopped) {
          this.deadLetter(record, e);
          return;
        }
        this.options.logger.warn('invocation failed; retrying', {
          trigger: this.options.name,
          key: record.s3.object.key,
          attempt: attempt + 1,
          err: e,
        });
        await new Promise((r) => setTimeout(r, delays[attempt]));
      }
    }
  }

  private deadLetter(record: S3EventRecord, e: unknown): void {
    this.stats.deadLettered += 1;
    const file = path.join(this.options.stateDir, `${this.options.name}.dead-letter.jsonl`);
    fs.appendFileSync(
      file,
      `${JSON.stringify({ at: new Date().toISOString(), error: String(e), record })}\n`,
    );
    this.options.logger.error('invocation failed after retries; event written to the dead-letter file', {
      trigger: this.options.name,
      key: record.s3.object.key,
      file,
      err: e,
    });
  }

  /**
   * Everything created before the oldest event still queued or running has been handled, so that is
   * where a restart must look from (minus a second: LastModified has second resolution).
   */
  private saveWatermark(): void {
    const pending = [...this.inFlight.values(), ...this.queue, ...this.abandoned].map((r) =>
      Date.parse(r.eventTime),
    );
    const at = pending.length > 0 ? Math.min(...pending) : Date.now();
    const text = JSON.stringify({ handledBefore: new Date(at - 1000).toISOString() });
    // Every second: rewritten in place when its length is unchanged (an ISO time's always is), as one
    // write() within a page, whole after a kill -9; a new file renamed over it would create a file
    // (an inode allocation: 0.02–1 ms of kernel CPU on this ext4) and free one each time.
    if (this.watermarkBytes === text.length) {
      try {
        writeOver(this.watermarkFile, text);
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
    const tmp = `${this.watermarkFile}.tmp`;
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, this.watermarkFile);
    this.watermarkBytes = text.length;
  }

  private readWatermark(): Date {
    try {
      const text = fs.readFileSync(this.watermarkFile, 'utf8');
      this.watermarkBytes = text.length;
      return new Date(JSON.parse(text).handledBefore);
    } catch {
      return new Date(0);
    }
  }
}
