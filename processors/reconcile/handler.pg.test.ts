import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { changeBatchFactory, changeFactory } from '../../core/csv-codec.fixtures';
import {
  encodeChangeBatchAsCsv,
  encodeSchemaObject,
  schemaObjectFor,
  schemaObjectKey,
} from '../../core/csv-codec';
import { silentLogger } from '../../core/logger';
import { s3ClientFor, startS3rver, type LocalS3 } from '../../local/s3rver';
import { createTestDatabase } from '../../test/support/pg';
import { migrateWarehouse } from '../load/migrate';
import { metricsFor } from '../shared/metrics';
import { objectCreatedRecord } from '../shared/s3-event';
import { createReconcileHandler, readReconcileEnvironment, type ReconcileEnvironment } from './handler';

// The AWS entry of the reconciler: real buckets (s3rver) and a real warehouse; SQS and Lambda,
// which have no local peer, are recorded.

let s3: LocalS3;
let client: S3Client;
let root: string;
let warehouseUrl: string;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-reconcile-aws-'));
  s3 = await startS3rver({ dataDir: root, buckets: ['ingestion', 'processed'] });
  client = s3ClientFor(s3.endpoint);
  warehouseUrl = await createTestDatabase('reconcile_handler');
  const c = new Client({ connectionString: warehouseUrl });
  await c.connect();
  await migrateWarehouse(c);
  await c.end();
});
afterAll(async () => {
  client.destroy();
  await s3.stop();
  fs.rmSync(root, { recursive: true, force: true });
});

const env: ReconcileEnvironment = readReconcileEnvironment({
  INGESTION_BUCKET: 'ingestion',
  PROCESSED_BUCKET: 'processed',
  LOAD_QUEUE_URL: 'https://sqs/load',
  LOAD_DEAD_LETTER_QUEUE_URL: 'https://sqs/load-dlq',
  TRANSFORM_FUNCTION_NAME: 'transform',
  TRANSFORM_DEAD_LETTER_QUEUE_URL: 'https://sqs/transform-dlq',
  RECONCILE_GRACE_SECONDS: '0',
});

interface Sent {
  name: string;
  input: Record<string, unknown>;
}

function recorder(deadLetters: Record<string, string[]> = {}) {
  const sent: Sent[] = [];
  const send = async (command: { constructor: { name: string }; input: Record<string, unknown> }) => {
    sent.push({ name: command.constructor.name, input: command.input });
    switch (command.constructor.name) {
      case 'GetQueueAttributesCommand':
        return {
          Attributes: { ApproximateNumberOfMessages: '0', ApproximateNumberOfMessagesNotVisible: '0' },
        };
      case 'ReceiveMessageCommand': {
        const bodies = deadLetters[command.input.QueueUrl as string] ?? [];
        return { Messages: bodies.splice(0).map((Body, i) => ({ Body, ReceiptHandle: `r${i}` })) };
      }
      default:
        return {};
    }
  };
  return { sent, client: { send } as never };
}

const hour = () => new Date().toISOString().slice(0, 13).replace(/[-T]/g, '/');

it('re-drives what was never transformed or loaded, publishes the count, and redrives dead letters', async () => {
  // Prepare: a currency CSV never transformed, and a Parquet object never loaded.
  const batch = changeBatchFactory({
    table: 'currency',
    columns: [
      { name: 'currency_id', type: 'int4', key: true },
      { name: 'currency_code', type: 'text', key: false },
    ],
    changes: [changeFactory({ values: ['1', 'GBP'] })],
  });
  const schema = schemaObjectFor(batch);
  const csvKey = `totesys/currency/schema=${schema.fingerprint}/${hour()}/a.csv`;
  const parquetKey = `dim_currency/${hour()}/b.parquet`;
  const put = (Bucket: string, Key: string, Body: string) =>
    client.send(new PutObjectCommand({ Bucket, Key, Body }));
  await put('ingestion', schemaObjectKey('currency', schema.fingerprint), encodeSchemaObject(schema));
  await put('ingestion', csvKey, encodeChangeBatchAsCsv(batch));
  await put('processed', parquetKey, 'parquet bytes');
  const deadLetterBody = (key: string) =>
    JSON.stringify({
      Records: [
        objectCreatedRecord({ bucket: 'processed', key, lastModified: new Date(), configurationId: 'x' }),
      ],
    });
  const sqs = recorder({
    'https://sqs/load-dlq': [deadLetterBody(parquetKey)],
    'https://sqs/transform-dlq': [
      JSON.stringify({ requestPayload: JSON.parse(deadLetterBody('totesys/currency/gone.csv')) }),
    ],
  });
  const lambda = recorder();
  const metrics: Record<string, unknown>[] = [];
  const handler = createReconcileHandler({
    clients: { s3: client, sqs: sqs.client, lambda: lambda.client },
    env,
    logger: silentLogger,
    metrics: metricsFor({ stage: 'reconcile', write: (line) => metrics.push(JSON.parse(line)) }),
    async connectWarehouse() {
      const c = new Client({ connectionString: warehouseUrl });
      await c.connect();
      return c;
    },
  });

  // Act 1: the scheduled run.
  const result = await handler({});

  // Assess 1: transform invoked asynchronously with S3's event; the load queue got the Parquet object.
  expect(result.redriven).toEqual({ transform: 1, load: 1 });
  const invoke = lambda.sent.find((c) => c.name === 'InvokeCommand')!;
  expect(invoke.input).toMatchObject({ FunctionName: 'transform', InvocationType: 'Event' });
  expect(
    JSON.parse(Buffer.from(invoke.input.Payload as Uint8Array).toString()).Records[0].s3.object.key,
  ).toBe(csvKey.replace('=', '%3D'));
  const batchSent = sqs.sent.find((c) => c.name === 'SendMessageBatchCommand')!;
  expect(batchSent.input.QueueUrl).toBe('https://sqs/load');
  expect(metrics.at(-1)).toMatchObject({
    Stage: 'reconcile',
    OutstandingObjects: 2,
    'OutstandingObjects.load': 1,
  });

  // Act 2: dead-letter redrive: the Parquet object is still not loaded (sent again); the CSV is gone (dropped).
  const redrive = await handler({ redriveDeadLetters: true });

  expect(redrive).toEqual({ redriven: 1, dropped: 1 });
  expect(sqs.sent.filter((c) => c.name === 'DeleteMessageCommand').map((c) => c.input.QueueUrl)).toEqual([
    'https://sqs/load-dlq',
    'https://sqs/transform-dlq',
  ]);
  expect(metrics.at(-1)).toMatchObject({ DeadLettersRedriven: 1, DeadLettersDropped: 1 });
});

it('refuses an incomplete environment', () => {
  expect(() => readReconcileEnvironment({})).toThrow(/INGESTION_BUCKET/);
  expect(() =>
    readReconcileEnvironment({ ...process.env, ...envVars(), RECONCILE_LOOKBACK_DAYS: 'x' }),
  ).toThrow(/RECONCILE_LOOKBACK_DAYS/);
});

function envVars(): Record<string, string> {
  return {
    INGESTION_BUCKET: 'i',
    PROCESSED_BUCKET: 'p',
    LOAD_QUEUE_URL: 'q',
    LOAD_DEAD_LETTER_QUEUE_URL: 'd',
    TRANSFORM_FUNCTION_NAME: 't',
    TRANSFORM_DEAD_LETTER_QUEUE_URL: 'td',
  };
}
