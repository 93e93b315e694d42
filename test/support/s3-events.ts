import type { S3EventRecord } from '../../processors/shared/s3-event';

/**
 * S3 event notifications exactly as S3 delivers them to a Lambda trigger (cf. powertools' event
 * factories), for the transform and load handler tests.
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html
 */

/** The full notification record, the fields handlers do not read included. */
export interface S3NotificationRecord extends S3EventRecord {
  userIdentity: { principalId: string };
  requestParameters: { sourceIPAddress: string };
  responseElements: Record<'x-amz-request-id' | 'x-amz-id-2', string>;
  s3: S3EventRecord['s3'] & {
    bucket: S3EventRecord['s3']['bucket'] & { ownerIdentity: { principalId: string } };
  };
}

export interface S3Notification {
  Records: S3NotificationRecord[];
}

export interface S3ObjectSpec {
  bucket: string;
  /** The real (decoded) key; the factory URL-encodes it as S3 does. */
  key: string;
  size?: number;
  eTag?: string;
  eventName?: string;
  eventTime?: Date;
  awsRegion?: string;
}

/** S3 URL-encodes notification keys as an HTML form would: a space is `+`, `/` stays. */
export function encodeKeyAsS3Does(key: string): string {
  return encodeURIComponent(key).replace(/%2F/g, '/').replace(/%20/g, '+');
}

// Sequencers are hex strings that grow with each event on one key; only their order means anything.
let sequencer = 0x0055aed6dcd90281e5n;

export function s3EventRecordFactory(spec: S3ObjectSpec): S3NotificationRecord {
  sequencer += 1n;
  const region = spec.awsRegion ?? 'eu-west-2';
  return {
    eventVersion: '2.1',
    eventSource: 'aws:s3',
    awsRegion: region,
    eventTime: (spec.eventTime ?? new Date('2025-02-28T09:16:03.456Z')).toISOString(),
    eventName: spec.eventName ?? 'ObjectCreated:Put',
    userIdentity: { principalId: 'AWS:AROAEXAMPLEFIREHOSE:firehose' },
    requestParameters: { sourceIPAddress: '10.0.12.34' },
    responseElements: {
      'x-amz-request-id': 'C3D13FE58DE4C810',
      'x-amz-id-2': 'FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD',
    },
    s3: {
      s3SchemaVersion: '1.0',
      configurationId: 'totes-transform-trigger',
      bucket: {
        name: spec.bucket,
        ownerIdentity: { principalId: 'A3NL1KOZZKEXAMPLE' },
        arn: `arn:aws:s3:::${spec.bucket}`,
      },
      object: {
        key: encodeKeyAsS3Does(spec.key),
        size: spec.size ?? 1024,
        eTag: spec.eTag ?? 'd41d8cd98f00b204e9800998ecf8427e',
        sequencer: sequencer.toString(16).toUpperCase().padStart(18, '0'),
      },
    },
  };
}

/** One event carrying a record per object, in order. */
export function s3EventFactory(objects: S3ObjectSpec | readonly S3ObjectSpec[]): S3Notification {
  return { Records: (Array.isArray(objects) ? objects : [objects]).map(s3EventRecordFactory) };
}

/**
 * The event Lambda's SQS event source mapping sends when S3 notifies a queue: one message per
 * notification, its body the notification's JSON.
 * https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html
 */
export function sqsEventFactory(
  bodies: readonly (S3Notification | Record<string, unknown> | string)[],
  options: { receiveCount?: number; queueArn?: string } = {},
) {
  const queueArn = options.queueArn ?? 'arn:aws:sqs:eu-west-2:123456789012:totes-load';
  return {
    Records: bodies.map((body, i) => ({
      messageId: `059f36b4-87a3-44ab-83d2-66${String(i).padStart(10, '0')}`,
      receiptHandle: `AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a${i}`,
      body: typeof body === 'string' ? body : JSON.stringify(body),
      attributes: {
        ApproximateReceiveCount: String(options.receiveCount ?? 1),
        SentTimestamp: '1740733563456',
        SenderId: 'AIDAIENQZJOLO23YVJ4VO',
        ApproximateFirstReceiveTimestamp: '1740733563460',
      },
      messageAttributes: {},
      md5OfBody: 'e4e68fb7bd0e697a0ae8f1bb342846b3',
      eventSource: 'aws:sqs',
      eventSourceARN: queueArn,
      awsRegion: queueArn.split(':')[3],
    })),
  };
}
