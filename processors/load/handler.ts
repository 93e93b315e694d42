import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { ChangeMessageVisibilityCommand, SQSClient } from '@aws-sdk/client-sqs';
import { Pool, type PoolClient } from 'pg';
import type { Logger } from '../../core/logger';
import { lambdaLogger } from '../shared/lambda-logger';
import type { BatchItemFailures } from '../shared/s3-object-handler';
import { createLoadHandler, type LoadHandlerDeps, type LoadReport } from './create-handler';
import { readLoadConfig, resolveWarehouseConnection, type LoadConfig } from './load-config';
import { awsClientConfig } from '../../aws/request-handler';

export { createLoadHandler } from './create-handler';

/**
 * Lambda entry for the load stage. At cold start: configuration read (a missing WAREHOUSE_URL /
 * WAREHOUSE_SECRET_ARN fails loudly), logger and S3 client built, and the warehouse pool started —
 * secret read, connection made — during the init phase, without blocking it (module scope cannot
 * await in CommonJS). The first invocation waits for it; if it failed, that invocation tries again.
 *
 * Load does not migrate: it connects as totes_load, which may only read and write rows. The schema
 * is the migration step's (processors/migrate, run by the deployment before load is updated;
 * `totes up` locally).
 */

/**
 * One connection is all a container uses (objects load one after another); a second lets a
 * replacement connect while a broken one is still being torn down. Kept small on purpose: every
 * concurrent function instance holds its pool open against the warehouse's max_connections.
 */
const POOL_MAX = 2;
/** Frozen containers' idle sockets are closed by the server or NAT anyway; drop them first. */
const POOL_IDLE_TIMEOUT_MS = 60_000;
const CONNECT_TIMEOUT_MS = 10_000;
/**
 * A statement loads one object (10,000 fact rows take about 1.5 s); one running a minute is stuck
 * behind a lock or a sick server: fail it (retryable) rather than run into the function's timeout.
 */
const STATEMENT_TIMEOUT_MS = 60_000;
/**
 * A wait for a lock (another load's fact-table lock, a row another transaction inserted) ends
 * before the statement timeout, with its own SQLSTATE (55P03), so the load knows it met a busy
 * warehouse, not a slow statement of its own, and comes back in seconds (retry-delay.ts).
 * https://www.postgresql.org/docs/current/runtime-config-client.html#GUC-LOCK-TIMEOUT
 */
const LOCK_TIMEOUT_MS = 45_000;
/**
 * A function killed mid-transaction (timeout, out of memory) leaves its connection open until TCP
 * notices, holding its row and advisory locks; the server ends such a session after this long.
 * https://www.postgresql.org/docs/current/runtime-config-client.html#GUC-IDLE-IN-TRANSACTION-SESSION-TIMEOUT
 */
const IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000;

export interface LazyWarehouse {
  connect(): Promise<PoolClient>;
  /**
   * Starts building the pool now (secret, connection) without waiting: called during
   * the Lambda init phase, so the first invocation usually finds it ready. A failure is forgotten
   * here and surfaces, retried, at the first `connect`.
   */
  warm(): void;
  /** For tests and local runs: closes the pool if it was built. */
  end(): Promise<void>;
}

/**
 * A pool built on first use: connection settings resolved (Secrets Manager when configured), pool
 * created, one connection made. Concurrent first uses share one attempt; a failed attempt is
 * forgotten so the next use retries.
 */
export function lazyWarehouse(
  config: LoadConfig,
  deps: { secrets: Pick<SecretsManagerClient, 'send'>; logger: Logger },
): LazyWarehouse {
  let ready: Promise<Pool> | undefined;
  const build = async (): Promise<Pool> => {
    const connection = await resolveWarehouseConnection(config, deps.secrets);
    const pool = new Pool({
      ...connection,
      max: POOL_MAX,
      idleTimeoutMillis: POOL_IDLE_TIMEOUT_MS,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      statement_timeout: STATEMENT_TIMEOUT_MS,
      lock_timeout: LOCK_TIMEOUT_MS,
      idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_TIMEOUT_MS,
      application_name: 'totes-load',
    });
    // An idle client's socket error is emitted on the pool; unhandled, it would crash the process.
    pool.on('error', (err) => deps.logger.warn('idle warehouse connection failed; dropped', { err }));
    try {
      const client = await pool.connect();
      const { rows } = await client
        .query<{ user: string }>('SELECT current_user AS "user"')
        .finally(() => client.release());
      deps.logger.info('warehouse ready', { user: rows[0].user });
    } catch (e) {
      await pool.end().catch(() => undefined);
      throw e;
    }
    return pool;
  };
  const start = (): Promise<Pool> =>
    (ready ??= build().catch((e) => {
      ready = undefined;
      throw e;
    }));
  return {
    async connect() {
      return (await start()).connect();
    },
    warm() {
      start().catch((err) =>
        deps.logger.warn('warehouse not ready at cold start; retrying on first use', { err }),
      );
    },
    async end() {
      const pool = ready;
      ready = undefined;
      if (pool) await (await pool.catch(() => undefined))?.end();
    },
  };
}

/**
 * ChangeMessageVisibility on the load queue (LOAD_QUEUE_URL, set by the stack with that one
 * permission): how a load that met a busy warehouse comes back in seconds (processors/load/retry-delay.ts).
 * https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html
 */
export function queueVisibility(
  sqs: Pick<SQSClient, 'send'>,
  queueUrl: string,
): NonNullable<LoadHandlerDeps['changeVisibility']> {
  return async (receiptHandle, seconds) => {
    await sqs.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: queueUrl,
        ReceiptHandle: receiptHandle,
        VisibilityTimeout: seconds,
      }),
    );
  };
}

/** Everything the Lambda entry builds from the environment; exported for tests. */
export function lambdaDeps(env: NodeJS.ProcessEnv): LoadHandlerDeps & { warehouse: LazyWarehouse } {
  const config = readLoadConfig(env);
  // Powertools Logger (processors/shared/lambda-logger.ts): level from LOG_LEVEL, set by the stack.
  const logger = lambdaLogger('load', env);
  const queueUrl = env.LOAD_QUEUE_URL?.trim();
  const maxReceiveCount = Number(env.LOAD_MAX_RECEIVE_COUNT);
  return {
    s3: new S3Client(awsClientConfig()),
    warehouse: lazyWarehouse(config, { secrets: new SecretsManagerClient(awsClientConfig()), logger }),
    logger,
    // Without it (S3 invoking the function directly) a failure is retried as the invoker retries.
    changeVisibility: queueUrl ? queueVisibility(new SQSClient(awsClientConfig()), queueUrl) : undefined,
    maxReceiveCount: Number.isInteger(maxReceiveCount) && maxReceiveCount > 0 ? maxReceiveCount : undefined,
  };
}

function notInLambda(): never {
  throw new Error('processors/load/handler.ts `handler` runs in AWS Lambda only; use createLoadHandler');
}

const lambda = process.env.AWS_LAMBDA_FUNCTION_NAME ? lambdaDeps(process.env) : undefined;
lambda?.warehouse.warm();

/** The entry's warehouse (undefined outside Lambda): for tests, and a graceful shutdown. */
export const lambdaWarehouse: LazyWarehouse | undefined = lambda?.warehouse;

/**
 * The Lambda handler, built at cold start. Only inside Lambda (AWS_LAMBDA_FUNCTION_NAME is always
 * set there): importing this module elsewhere, for `createLoadHandler`, must not need the env.
 */
export const handler = lambda ? lambdaHandler(createLoadHandler(lambda)) : notInLambda;

/**
 * What the Lambda returns: for SQS only the partial batch response (the event source mapping reads
 * `batchItemFailures` and nothing else); for a direct S3 invocation the report (nobody reads it).
 */
export function lambdaHandler(
  load: ReturnType<typeof createLoadHandler>,
): (event: unknown, context?: { awsRequestId?: string }) => Promise<LoadReport | BatchItemFailures> {
  return async (event, context) => {
    const report = await load(event, context);
    return report.batchItemFailures ? { batchItemFailures: report.batchItemFailures } : report;
  };
}
