import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import {
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { Client } from 'pg';
import type { Logger } from '../../core/logger';
import { lambdaLogger } from '../shared/lambda-logger';
import { normalizeETag, WORK_STAGES, type WorkItem, type WorkStage } from '../../core/outstanding-work';
import { readLoadConfig, resolveWarehouseConnection } from '../load/load-config';
import { metricsFor, type MetricSet } from '../shared/metrics';
import { decodeS3ObjectKey, S3EventSchema, type S3Event } from '../shared/s3-event';
import {
  reconcile,
  RECONCILE_DEFAULTS,
  redriveEventFor,
  redriveDeadLetters,
  loadedVersionsIn,
  type DeadLetter,
  type ReconcileDeps,
} from './reconcile';
import { awsClientConfig } from '../../aws/request-handler';

/**
 * Lambda entry of the reconciler, run by an EventBridge schedule (infra/stacks/pipeline-stack.ts):
 * re-drives loads as messages on the load queue and transforms as asynchronous invocations of the
 * transform function (as S3 would), reads `load_log` with the read-only reporting role, and
 * publishes `OutstandingObjects` (EMF, Stage=reconcile) for the alarm.
 *
 * Invoked with `{"redriveDeadLetters": true}` (docs/deploy.md) it redrives both dead-letter queues
 * through the same model instead. `{"dryRun": true}` counts and sends nothing.
 */

export interface ReconcileEvent {
  redriveDeadLetters?: boolean;
  dryRun?: boolean;
}

export interface ReconcileEnvironment {
  ingestionBucket: string;
  processedBucket: string;
  loadQueueUrl: string;
  loadDeadLetterQueueUrl: string;
  transformFunctionName: string;
  transformDeadLetterQueueUrl: string;
  graceMs: number;
  lookbackDays: number;
}

export function readReconcileEnvironment(env: NodeJS.ProcessEnv): ReconcileEnvironment {
  const required = (name: string): string => {
    const value = env[name]?.trim();
    if (!value) throw new Error(`environment variable ${name} is required`);
    return value;
  };
  const number = (name: string, fallback: number): number => {
    const value = Number(env[name] ?? fallback);
    if (!Number.isInteger(value) || value < 0)
      throw new Error(`environment variable ${name} must be a whole number`);
    return value;
  };
  return {
    ingestionBucket: required('INGESTION_BUCKET'),
    processedBucket: required('PROCESSED_BUCKET'),
    loadQueueUrl: required('LOAD_QUEUE_URL'),
    loadDeadLetterQueueUrl: required('LOAD_DEAD_LETTER_QUEUE_URL'),
    transformFunctionName: required('TRANSFORM_FUNCTION_NAME'),
    transformDeadLetterQueueUrl: required('TRANSFORM_DEAD_LETTER_QUEUE_URL'),
    graceMs: number('RECONCILE_GRACE_SECONDS', RECONCILE_DEFAULTS.graceMs / 1000) * 1000,
    lookbackDays: number('RECONCILE_LOOKBACK_DAYS', RECONCILE_DEFAULTS.lookbackDays),
  };
}

export interface AwsClients {
  s3: Pick<S3Client, 'send'>;
  sqs: Pick<SQSClient, 'send'>;
  lambda: Pick<LambdaClient, 'send'>;
}

const eventFor = (item: WorkItem): S3Event => redriveEventFor(item, process.env.AWS_REGION);

/** The reconciler's re-drive paths in AWS: the load queue, and asynchronous invocations of transform. */
export function awsRedrivers(
  clients: Pick<AwsClients, 'sqs' | 'lambda'>,
  env: Pick<ReconcileEnvironment, 'loadQueueUrl' | 'transformFunctionName'>,
): ReconcileDeps['redrive'] {
  return {
    async load(items) {
      for (let i = 0; i < items.length; i += 10) {
        const entries = items
          .slice(i, i + 10)
          .map((item, j) => ({ Id: String(j), MessageBody: JSON.stringify(eventFor(item)) }));
        const result = await clients.sqs.send(
          new SendMessageBatchCommand({ QueueUrl: env.loadQueueUrl, Entries: entries }),
        );
        if (result.Failed?.length)
          throw new Error(`${result.Failed.length} message(s) not sent to the load queue`);
      }
    },
    async transform(items) {
      for (const item of items)
        await clients.lambda.send(
          new InvokeCommand({
            FunctionName: env.transformFunctionName,
            InvocationType: 'Event',
            Payload: Buffer.from(JSON.stringify(eventFor(item))),
          }),
        );
    },
  };
}

/** The messages of a dead-letter queue, read (and hidden for a while) until it looks empty. */
async function receiveAll(sqs: Pick<SQSClient, 'send'>, queueUrl: string, max = 1_000) {
  const messages: { body: string; receiptHandle: string }[] = [];
  while (messages.length < max) {
    const page = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        VisibilityTimeout: 300,
        WaitTimeSeconds: 1,
      }),
    );
    if (!page.Messages?.length) break;
    for (const m of page.Messages)
      if (m.Body && m.ReceiptHandle) messages.push({ body: m.Body, receiptHandle: m.ReceiptHandle });
  }
  return messages;
}

function itemsOf(stage: WorkStage, event: S3Event): WorkItem[] {
  return event.Records.map((r) => ({
    stage,
    bucket: r.s3.bucket.name,
    key: decodeS3ObjectKey(r.s3.object.key),
    eTag: normalizeETag(r.s3.object.eTag),
    lastModified: new Date(r.eventTime),
  }));
}

/**
 * Both dead-letter queues as DeadLetters: the load queue's (its messages are S3 notifications) and
 * transform's on-failure destination (each message's `requestPayload` is the S3 event).
 * https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html
 */
export async function awsDeadLetters(
  clients: AwsClients,
  env: ReconcileEnvironment,
  logger: Logger,
): Promise<DeadLetter[]> {
  const letters: DeadLetter[] = [];
  const redrivers = awsRedrivers(clients, env);
  const collect = async (stage: WorkStage, queueUrl: string, eventOf: (body: unknown) => unknown) => {
    for (const m of await receiveAll(clients.sqs, queueUrl)) {
      const parsed = S3EventSchema.safeParse(eventOf(JSON.parse(m.body)));
      if (!parsed.success) {
        logger.warn('dead letter is not an S3 event; left in its queue', { stage });
        continue;
      }
      const remove = async () => {
        await clients.sqs.send(
          new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.receiptHandle }),
        );
      };
      for (const item of itemsOf(stage, parsed.data))
        letters.push({
          item,
          drop: remove,
          redrive: async () => {
            await redrivers[stage]([item]);
            await remove();
          },
        });
    }
  };
  await collect('load', env.loadDeadLetterQueueUrl, (body) => body);
  await collect(
    'transform',
    env.transformDeadLetterQueueUrl,
    (body) => (body as { requestPayload?: unknown })?.requestPayload,
  );
  return letters;
}

export interface ReconcileHandlerDeps {
  clients: AwsClients;
  env: ReconcileEnvironment;
  /** A connected warehouse client per invocation (the reporting role: it only reads load_log). */
  connectWarehouse(): Promise<Pick<Client, 'query' | 'end'>>;
  logger: Logger;
  metrics?: () => MetricSet;
}

export function createReconcileHandler(deps: ReconcileHandlerDeps) {
  const newMetrics = deps.metrics ?? metricsFor({ stage: 'reconcile' });
  return async (event: ReconcileEvent = {}) => {
    const { clients, env, logger } = deps;
    const warehouse = await deps.connectWarehouse();
    try {
      const reconcileDeps: ReconcileDeps = {
        s3: clients.s3,
        ingestionBucket: env.ingestionBucket,
        processedBucket: env.processedBucket,
        loadedVersions: (keys) => loadedVersionsIn(warehouse, keys),
        redrive: awsRedrivers(clients, env),
        async loadQueueBusy() {
          const { Attributes: a = {} } = await clients.sqs.send(
            new GetQueueAttributesCommand({
              QueueUrl: env.loadQueueUrl,
              AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
            }),
          );
          return (
            Number(a.ApproximateNumberOfMessages ?? 0) +
              Number(a.ApproximateNumberOfMessagesNotVisible ?? 0) >
            0
          );
        },
        logger,
      };
      const metrics = newMetrics();
      if (event.redriveDeadLetters) {
        const result = await redriveDeadLetters(reconcileDeps, await awsDeadLetters(clients, env, logger));
        metrics.add('DeadLettersRedriven', result.redriven).add('DeadLettersDropped', result.dropped);
        metrics.flush();
        return result;
      }
      const result = await reconcile(reconcileDeps, {
        graceMs: env.graceMs,
        lookbackDays: env.lookbackDays,
        dryRun: event.dryRun === true,
      });
      // Published on every run, zeros included: the alarm treats a missing run as breaching.
      metrics.add('OutstandingObjects', result.counts.transform.outstanding + result.counts.load.outstanding);
      for (const stage of WORK_STAGES)
        metrics
          .add(`OutstandingObjects.${stage}`, result.counts[stage].outstanding)
          .add(`QuarantinedObjects.${stage}`, result.counts[stage].quarantined)
          .add(`ObjectsRedriven.${stage}`, result.redriven[stage]);
      metrics.flush();
      return {
        counts: result.counts,
        redriven: result.redriven,
        loadRedriveSkipped: result.loadRedriveSkipped,
      };
    } finally {
      await warehouse.end().catch(() => undefined);
    }
  };
}

function notInLambda(): never {
  throw new Error(
    'processors/reconcile/handler.ts `handler` runs in AWS Lambda only; use createReconcileHandler',
  );
}

function lambdaDeps(env: NodeJS.ProcessEnv): ReconcileHandlerDeps {
  const config = readLoadConfig(env);
  const secrets = new SecretsManagerClient(awsClientConfig());
  return {
    clients: {
      s3: new S3Client(awsClientConfig()),
      sqs: new SQSClient(awsClientConfig()),
      lambda: new LambdaClient(awsClientConfig()),
    },
    env: readReconcileEnvironment(env),
    logger: lambdaLogger('reconcile'),
    async connectWarehouse() {
      const client = new Client({
        ...(await resolveWarehouseConnection(config, secrets)),
        application_name: 'totes-reconcile',
        connectionTimeoutMillis: 10_000,
        statement_timeout: 60_000,
      });
      await client.connect();
      return client;
    },
  };
}

export const handler = process.env.AWS_LAMBDA_FUNCTION_NAME
  ? createReconcileHandler(lambdaDeps(process.env))
  : notInLambda;
