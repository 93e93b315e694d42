import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { silentLogger, type Logger } from '../core/logger';
import { MAX_INLINE_CHANGE_BYTES } from '../core/oversized-change';
import type { OversizedPayload, PutResult, RecordSink, SinkRecord } from './kinesis-sink';

/**
 * The claim-check half of capture's sink (core/oversized-change.ts): before a put sends records
 * that point to oversized changes, it stores each change's whole event in the bucket for oversized
 * changes, then hands the records on to the stream. `put` still resolves only once everything is
 * durable, so capture confirms no LSN past a change whose event is not stored: a failure here
 * stops capture at its last confirmed position, and the restart stores the same bytes under the
 * same key (content-addressed), so nothing is lost or doubled.
 */

/** Where oversized events are stored. */
export interface PayloadStore {
  /** `s3://bucket`, for logs and errors. */
  readonly location: string;
  put(key: string, body: Uint8Array): Promise<void>;
}

/** Base class of every error this module throws. */
export class OversizedSinkError extends Error {
  override name = 'OversizedSinkError';
}

/** An oversized change arrived and capture has nowhere to store it. */
export class NoOversizedBucketError extends OversizedSinkError {
  override name = 'NoOversizedBucketError';
  constructor(readonly change: string) {
    super(
      `the change ${change} is too big for one stream record (over ${MAX_INLINE_CHANGE_BYTES} bytes) and no ` +
        'bucket is set for oversized changes: set TOTES_OVERSIZED_BUCKET (the ingestion bucket); nothing after ' +
        'the last confirmed LSN is confirmed',
    );
  }
}

/** Storing an oversized event failed (after the S3 client's own retries). */
export class PayloadStoreError extends OversizedSinkError {
  override name = 'PayloadStoreError';
  constructor(
    readonly change: string,
    readonly location: string,
    readonly key: string,
    options: { cause: unknown },
  ) {
    super(
      `could not store the oversized change ${change} at ${location}/${key}: ` +
        `${(options.cause as Error)?.message ?? String(options.cause)}; nothing after the last confirmed LSN is confirmed`,
      options,
    );
  }
}

export interface OversizedPayloadSinkOptions {
  /** Where the records go once their payloads are stored (the Kinesis sink). */
  sink: RecordSink;
  /** null: no bucket configured; an oversized change then stops capture with NoOversizedBucketError. */
  store: PayloadStore | null;
  logger?: Logger;
  /** Objects stored at once for one put. */
  maxConcurrentPuts?: number;
}

export class OversizedPayloadSink implements RecordSink {
  private readonly logger: Logger;
  private readonly maxConcurrentPuts: number;

  constructor(private readonly options: OversizedPayloadSinkOptions) {
    this.logger = options.logger ?? silentLogger;
    this.maxConcurrentPuts = options.maxConcurrentPuts ?? 4;
  }

  async put(records: readonly SinkRecord[]): Promise<PutResult> {
    const payloads = records.flatMap((r) => r.oversized ?? []);
    if (payloads.length === 0) return this.options.sink.put(records);
    const store = this.options.store;
    if (!store) throw new NoOversizedBucketError(payloads[0].change);
    let next = 0;
    const worker = async () => {
      while (next < payloads.length) await this.store(store, payloads[next++]);
    };
    await Promise.all(Array.from({ length: Math.min(this.maxConcurrentPuts, payloads.length) }, worker));
    return this.options.sink.put(records.map(({ partitionKey, data }) => ({ partitionKey, data })));
  }

  private async store(store: PayloadStore, payload: OversizedPayload): Promise<void> {
    try {
      await store.put(payload.key, payload.body);
    } catch (e) {
      throw new PayloadStoreError(payload.change, store.location, payload.key, { cause: e });
    }
    this.logger.info('oversized change stored; a pointer goes through the stream', {
      change: payload.change,
      recordBytes: payload.bytes,
      objectBytes: payload.body.byteLength,
      location: `${store.location}/${payload.key}`,
    });
  }
}

/** Stores payloads as S3 objects. Content-addressed keys: rewriting one writes identical bytes. */
export class S3PayloadStore implements PayloadStore {
  readonly location: string;

  constructor(
    private readonly s3: Pick<S3Client, 'send'>,
    private readonly bucket: string,
  ) {
    this.location = `s3://${bucket}`;
  }

  async put(key: string, body: Uint8Array): Promise<void> {
    await this.s3.send(
      new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: 'application/json' }),
    );
  }
}
