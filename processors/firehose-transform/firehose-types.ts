import { z } from 'zod';

/**
 * The Firehose record-transformation contract, as schemas (runtime check) and types (compile time).
 * Firehose invokes the function synchronously with a batch of records and expects every recordId
 * back with a result; with dynamic partitioning, `metadata.partitionKeys` names each record's
 * partition. Written here rather than taken from @types/aws-lambda so the one dependency-free
 * definition serves the Lambda and the local delivery stream alike.
 * https://docs.aws.amazon.com/firehose/latest/dev/data-transformation-status-model.html
 * https://docs.aws.amazon.com/firehose/latest/dev/dynamic-partitioning-partitioning-keys.html
 * https://docs.aws.amazon.com/lambda/latest/dg/services-kinesisfirehose.html
 */

/**
 * Present when the delivery stream's source is a Kinesis data stream. AWS's own examples disagree on
 * the timestamp's and subsequence number's types (number in events, ISO text and '' in the Lambda
 * guide's sample), so both are accepted; nothing here depends on them.
 */
export const FirehoseKinesisRecordMetadataSchema = z.object({
  shardId: z.string(),
  partitionKey: z.string(),
  approximateArrivalTimestamp: z.union([z.number(), z.string()]),
  sequenceNumber: z.string(),
  subsequenceNumber: z.union([z.number(), z.string()]).optional(),
});
export type FirehoseKinesisRecordMetadata = z.infer<typeof FirehoseKinesisRecordMetadataSchema>;

export const FirehoseTransformationEventRecordSchema = z.object({
  recordId: z.string().min(1),
  /** Milliseconds since the epoch. */
  approximateArrivalTimestamp: z.number(),
  /** The source record's bytes, base64. */
  data: z.string(),
  kinesisRecordMetadata: FirehoseKinesisRecordMetadataSchema.nullish(),
});
export type FirehoseTransformationEventRecord = z.infer<typeof FirehoseTransformationEventRecordSchema>;

export const FirehoseTransformationEventSchema = z.object({
  invocationId: z.string(),
  deliveryStreamArn: z.string(),
  sourceKinesisStreamArn: z.string().optional(),
  region: z.string(),
  records: z.array(FirehoseTransformationEventRecordSchema),
});
export type FirehoseTransformationEvent = z.infer<typeof FirehoseTransformationEventSchema>;

/**
 * `Ok` and `Dropped` count as processed; `ProcessingFailed` sends the record's original data to the
 * error output prefix (`processing-failed`).
 * https://docs.aws.amazon.com/firehose/latest/dev/data-transformation-failure-handling.html
 */
export const TRANSFORMATION_RESULTS = ['Ok', 'Dropped', 'ProcessingFailed'] as const;
export type TransformationResult = (typeof TRANSFORMATION_RESULTS)[number];

export const FirehoseTransformationResultRecordSchema = z.object({
  recordId: z.string().min(1),
  result: z.enum(TRANSFORMATION_RESULTS),
  /** The transformed bytes, base64 (for `ProcessingFailed`, the original data). */
  data: z.string(),
  metadata: z.object({ partitionKeys: z.record(z.string(), z.string()) }).optional(),
});
export type FirehoseTransformationResultRecord = z.infer<typeof FirehoseTransformationResultRecordSchema>;

export const FirehoseTransformationResultSchema = z.object({
  records: z.array(FirehoseTransformationResultRecordSchema),
});
export type FirehoseTransformationResult = z.infer<typeof FirehoseTransformationResultSchema>;

/** A record-transformation function: the Lambda handler, or anything shaped like it. */
export type FirehoseTransform = (event: FirehoseTransformationEvent) => Promise<FirehoseTransformationResult>;
