import { Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as firehose from 'aws-cdk-lib/aws-kinesisfirehose';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { acknowledge, iamResourceFinding } from '../acknowledge';
import { INGESTION_ERROR_PREFIX, INGESTION_PREFIX, INGESTION_ROOT } from '../../core/csv-codec';
import { MIXED_INGESTION_PREFIX } from '../../core/mixed-csv';

/** Data objects end so (the local delivery stream's default too: local/delivery-stream.ts). */
export const INGESTION_FILE_EXTENSION = '.csv';
/**
 * Where fast mode's objects go: no dynamic partitioning, so no table or layout in the key; every
 * object holds the records of all tables, and transform splits them (core/mixed-csv.ts).
 */
export { MIXED_INGESTION_PREFIX };
/** Top folder of INGESTION_ERROR_PREFIX, for the role's grants. */
export const INGESTION_ERROR_ROOT = INGESTION_ERROR_PREFIX.split('/')[0];

export interface DeliveryStreamProps {
  source: kinesis.IStream;
  bucket: s3.IBucket;
  /** The record-transformation function (renders CSV, names each record's partition keys). */
  processor: lambda.IFunction;
  /** `default`: dynamic partitioning by table; `fast`: none, zero buffering (config.ts). */
  freshness: 'default' | 'fast';
  bufferIntervalSeconds: number;
  bufferSizeMiB: number;
  logRetentionDays: logs.RetentionDays;
}

/**
 * Firehose from the change stream to the ingestion bucket: each Kinesis record (one change batch of
 * one table) goes through the transformation function, which returns CSV lines and the `table` and
 * `schema` partition keys; dynamic partitioning then buffers every table and column layout apart and
 * writes objects under INGESTION_PREFIX. Records the function fails go to INGESTION_ERROR_PREFIX.
 */
export class DeliveryStream extends Construct {
  readonly deliveryStream: firehose.CfnDeliveryStream;
  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: DeliveryStreamProps) {
    super(scope, id);
    const stack = Stack.of(this);
    this.logGroup = new logs.LogGroup(this, 'Logs', { retention: props.logRetentionDays });
    const logStream = new logs.LogStream(this, 'DestinationDelivery', {
      logGroup: this.logGroup,
      logStreamName: 'DestinationDelivery',
    });

    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('firehose.amazonaws.com', {
        // Only Firehose acting for this account may assume it (the confused-deputy guard Firehose documents).
        conditions: { StringEquals: { 'sts:ExternalId': stack.account } },
      }),
      description:
        'totes Firehose: read the change stream, call the transformation, write the ingestion bucket',
    });
    // https://docs.aws.amazon.com/firehose/latest/dev/controlling-access.html
    const objectPrefixes = [`${INGESTION_ROOT}/*`, `${INGESTION_ERROR_ROOT}/*`];
    const statements = [
      new iam.PolicyStatement({
        actions: [
          'kinesis:DescribeStream',
          'kinesis:GetShardIterator',
          'kinesis:GetRecords',
          'kinesis:ListShards',
        ],
        resources: [props.source.streamArn],
      }),
      new iam.PolicyStatement({
        actions: ['lambda:InvokeFunction', 'lambda:GetFunctionConfiguration'],
        resources: [props.processor.functionArn],
      }),
      new iam.PolicyStatement({
        actions: ['s3:GetBucketLocation', 's3:ListBucket', 's3:ListBucketMultipartUploads'],
        resources: [props.bucket.bucketArn],
      }),
      new iam.PolicyStatement({
        actions: ['s3:AbortMultipartUpload', 's3:GetObject', 's3:PutObject'],
        resources: objectPrefixes.map((p) => props.bucket.arnForObjects(p)),
      }),
      new iam.PolicyStatement({
        actions: ['logs:PutLogEvents'],
        resources: [this.logGroup.logGroupArn],
      }),
    ];
    for (const s of statements) this.role.addToPolicy(s);
    acknowledge(
      this.role,
      'AwsSolutions-IAM5',
      'Firehose names objects at delivery time (table, layout, hour, random suffix): writes are granted on the ' +
        'data and error prefixes of the ingestion bucket only, with named actions.',
      objectPrefixes.map((p) => iamResourceFinding(this, props.bucket.arnForObjects(p))),
    );

    const fast = props.freshness === 'fast';
    this.deliveryStream = new firehose.CfnDeliveryStream(this, 'Resource', {
      deliveryStreamType: 'KinesisStreamAsSource',
      kinesisStreamSourceConfiguration: {
        kinesisStreamArn: props.source.streamArn,
        roleArn: this.role.roleArn,
      },
      extendedS3DestinationConfiguration: {
        bucketArn: props.bucket.bucketArn,
        roleArn: this.role.roleArn,
        prefix: fast ? MIXED_INGESTION_PREFIX : INGESTION_PREFIX,
        errorOutputPrefix: INGESTION_ERROR_PREFIX,
        fileExtension: INGESTION_FILE_EXTENSION,
        // Transform reads the objects as they are; the local stack writes them uncompressed too.
        compressionFormat: 'UNCOMPRESSED',
        bufferingHints: { intervalInSeconds: props.bufferIntervalSeconds, sizeInMBs: props.bufferSizeMiB },
        // Kinesis keeps the source records for the replay window; a second raw copy in S3 adds nothing.
        s3BackupMode: 'Disabled',
        // Fast mode: no dynamic partitioning, since zero buffering is not available with it.
        // https://docs.aws.amazon.com/firehose/latest/dev/buffering.html
        ...(fast
          ? {}
          : {
              dynamicPartitioningConfiguration: {
                enabled: true,
                // How long Firehose retries a failed S3 write before the batch goes to the error prefix.
                retryOptions: { durationInSeconds: 300 },
              },
            }),
        processingConfiguration: {
          enabled: true,
          processors: [
            {
              type: 'Lambda',
              parameters: [
                { parameterName: 'LambdaArn', parameterValue: props.processor.functionArn },
                // Input per invocation (0.2–3 MB). Capture's records are gzip that inflates at most
                // 8× (core/record-compression.ts) and the CSV is no larger than the JSON it comes
                // from, so a batch of this hint plus one whole record answers in at most
                // (0.25 MiB × 8 + 1 MiB) × 4/3 (base64) ≈ 4 MiB, below Lambda's 6 MB response limit.
                // The local delivery stream uses the same.
                { parameterName: 'BufferSizeInMBs', parameterValue: '0.25' },
                // Firehose's default: a partly filled 1 MiB batch waits at most a minute for the
                // function; the S3 buffering below adds its own interval after that. Fast mode: at
                // once (0 to 900 s: https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html).
                { parameterName: 'BufferIntervalInSeconds', parameterValue: fast ? '0' : '60' },
                // Firehose's default; after that the records go to the processing-failed prefix.
                { parameterName: 'NumberOfRetries', parameterValue: '3' },
              ],
            },
          ],
        },
        cloudWatchLoggingOptions: {
          enabled: true,
          logGroupName: this.logGroup.logGroupName,
          logStreamName: logStream.logStreamName,
        },
      },
    });
    // Firehose checks its permissions when the stream is created: the policy must exist by then.
    this.deliveryStream.node.addDependency(this.role);
    acknowledge(
      this.deliveryStream,
      'AwsSolutions-KDF1',
      'A delivery stream with a Kinesis stream source cannot take server-side encryption of its own; the source ' +
        'stream is encrypted at rest and the bucket encrypts every object.',
    );
  }

  get deliveryStreamName(): string {
    return this.deliveryStream.ref;
  }

  /** A metric of this delivery stream (namespace AWS/Firehose). */
  metric(metricName: string, props: cloudwatch.MetricOptions = {}): cloudwatch.Metric {
    return new cloudwatch.Metric({
      namespace: 'AWS/Firehose',
      metricName,
      dimensionsMap: { DeliveryStreamName: this.deliveryStreamName },
      period: Duration.minutes(1),
      ...props,
    });
  }
}
