import { z } from 'zod';

/**
 * The S3 event notification a Lambda trigger receives, as a schema (runtime check) and types. Only
 * the fields the transform reads are required; the rest (userIdentity, requestParameters, …) pass
 * unchecked. Written here rather than taken from @types/aws-lambda, as for the Firehose contract,
 * and not imported from local/s3rver.ts so the Lambda bundle never pulls in s3rver.
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html
 */

export const S3EventRecordSchema = z.object({
  eventVersion: z.string(),
  eventSource: z.literal('aws:s3'),
  awsRegion: z.string(),
  eventTime: z.string(),
  /** `ObjectCreated:Put`, `ObjectCreated:CompleteMultipartUpload`, … */
  eventName: z.string(),
  s3: z.object({
    s3SchemaVersion: z.string().optional(),
    configurationId: z.string().optional(),
    bucket: z.object({ name: z.string().min(1), arn: z.string().optional() }),
    object: z.object({
      /** URL-encoded, a space as `+`: decode with decodeS3ObjectKey. */
      key: z.string().min(1),
      size: z.number().optional(),
      eTag: z.string().optional(),
      versionId: z.string().optional(),
      sequencer: z.string().optional(),
    }),
  }),
});
export type S3EventRecord = z.infer<typeof S3EventRecordSchema>;

export const S3EventSchema = z.object({ Records: z.array(S3EventRecordSchema) });
export type S3Event = z.infer<typeof S3EventSchema>;

/**
 * S3 sends `{"Service":"Amazon S3","Event":"s3:TestEvent",…}` (no Records) once when a notification
 * is configured; it is not an error. https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html
 */
export function isS3TestEvent(payload: unknown): boolean {
  return (payload as { Event?: unknown } | null)?.Event === 's3:TestEvent';
}

/**
 * The object key of a notification: S3 URL-encodes it with a space as `+` (form encoding), so `+`
 * must become a space before the %XX sequences are decoded (a real `+` arrives as `%2B`). Throws
 * URIError for a malformed %-sequence, which S3 never sends.
 */
export function decodeS3ObjectKey(encoded: string): string {
  return decodeURIComponent(encoded.replace(/\+/g, ' '));
}

/**
 * One message of the event Lambda's SQS event source mapping sends; its body is what the queue
 * received, here an S3 event notification (S3 → SQS → Lambda). Only what the handlers read is
 * checked. https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html
 */
export const SqsRecordSchema = z.object({
  messageId: z.string().min(1),
  receiptHandle: z.string().optional(),
  body: z.string(),
  /** `ApproximateReceiveCount` among them: how often this message was handed out. */
  attributes: z.record(z.string(), z.string()).optional(),
  eventSource: z.literal('aws:sqs'),
  eventSourceARN: z.string().optional(),
  awsRegion: z.string().optional(),
});
export type SqsRecord = z.infer<typeof SqsRecordSchema>;

export const SqsEventSchema = z.object({ Records: z.array(SqsRecordSchema) });
export type SqsEvent = z.infer<typeof SqsEventSchema>;

/** One queue message, its body read as an S3 notification. */
export type QueuedObjectEvent = QueuedMessage &
  ({ kind: 'objects'; event: S3Event } | { kind: 'test-event' } | { kind: 'invalid'; issues: string[] });

/** What every queued message carries besides its body. */
export interface QueuedMessage {
  messageId: string;
  /** For ChangeMessageVisibility on this receive; Lambda always sends it. */
  receiptHandle: string | undefined;
  receiveCount: number | undefined;
}

/**
 * What an S3-object handler was invoked with: S3's own notification (asynchronous invocation), S3's
 * test event, or a batch of SQS messages that each carry an S3 notification.
 */
export type ObjectEventEnvelope =
  | { kind: 's3'; event: S3Event }
  | { kind: 's3-test-event' }
  | { kind: 'sqs'; messages: QueuedObjectEvent[] }
  | { kind: 'invalid'; issues: string[] };

const issuesOf = (error: z.ZodError): string[] =>
  error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);

function isSqsShaped(payload: unknown): boolean {
  const records = (payload as { Records?: unknown } | null)?.Records;
  return Array.isArray(records) && (records[0] as { eventSource?: unknown })?.eventSource === 'aws:sqs';
}

/** Reads either envelope; never throws (an unreadable one is `invalid`, with its issues). */
export function parseObjectEvent(payload: unknown): ObjectEventEnvelope {
  if (isS3TestEvent(payload)) return { kind: 's3-test-event' };
  if (!isSqsShaped(payload)) {
    const parsed = S3EventSchema.safeParse(payload);
    return parsed.success
      ? { kind: 's3', event: parsed.data }
      : { kind: 'invalid', issues: issuesOf(parsed.error) };
  }
  const parsed = SqsEventSchema.safeParse(payload);
  if (!parsed.success) return { kind: 'invalid', issues: issuesOf(parsed.error) };
  return {
    kind: 'sqs',
    messages: parsed.data.Records.map((record): QueuedObjectEvent => {
      const count = Number(record.attributes?.ApproximateReceiveCount);
      const base: QueuedMessage = {
        messageId: record.messageId,
        receiptHandle: record.receiptHandle,
        receiveCount: Number.isInteger(count) ? count : undefined,
      };
      let body: unknown;
      try {
        body = JSON.parse(record.body);
      } catch {
        return { ...base, kind: 'invalid', issues: ['body: not JSON'] };
      }
      if (isS3TestEvent(body)) return { ...base, kind: 'test-event' };
      const event = S3EventSchema.safeParse(body);
      return event.success
        ? { ...base, kind: 'objects', event: event.data }
        : { ...base, kind: 'invalid', issues: issuesOf(event.error).map((i) => `body.${i}`) };
    }),
  };
}

/** The key as S3 writes it into a notification (the inverse of decodeS3ObjectKey). */
export function encodeS3ObjectKey(key: string): string {
  return encodeURIComponent(key).replace(/%2F/g, '/').replace(/%20/g, '+');
}

/**
 * An `ObjectCreated` record for an object that already exists, for sending it through a stage
 * again (the reconciler, dead-letter redrive): the shape S3 sends, marked by its configurationId.
 */
export function objectCreatedRecord(o: {
  bucket: string;
  key: string;
  size?: number;
  eTag?: string | null;
  lastModified: Date;
  region?: string;
  configurationId: string;
}): S3EventRecord {
  return {
    eventVersion: '2.1',
    eventSource: 'aws:s3',
    awsRegion: o.region ?? 'us-east-1',
    eventTime: o.lastModified.toISOString(),
    eventName: 'ObjectCreated:Put',
    s3: {
      s3SchemaVersion: '1.0',
      configurationId: o.configurationId,
      bucket: { name: o.bucket, arn: `arn:aws:s3:::${o.bucket}` },
      object: {
        key: encodeS3ObjectKey(o.key),
        ...(o.size === undefined ? {} : { size: o.size }),
        ...(o.eTag ? { eTag: o.eTag } : {}),
      },
    },
  };
}
