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
