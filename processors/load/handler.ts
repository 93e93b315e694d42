import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { Pool, type PoolClient } from 'pg';
import { createLogger, type Logger, type LogLevel } from '../../core/logger';
import { createLoadHandler, type LoadHandlerDeps } from './create-handler';
import { readLoadConfig, resolveWarehouseConnection, type LoadConfig } from './load-config';
import { migrateWarehouse } from './migrate';

export { createLoadHandler } from './create-handler';

/**
 * Lambda entry for the load stage. At cold start: configuration read (a missing WAREHOUSE_URL /
 * WAREHOUSE_SECRET_ARN fails loudly), logger and S3 client built. The warehouse pool is built on the
 * first invocation (the secret is read then: module scope cannot await in CommonJS), and migrations
 * run once per container before the first object. If that fails, the next invocation tries again.
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
 * A function killed mid-transaction (timeout, out of memory) leaves its connection open until TCP
 * notices, holding its row and advisory locks; the server ends such a session after this long.
 * https://www.postgresql.org/docs/current/runtime-config-client.html#GUC-IDLE-IN-TRANSACTION-SESSION-TIMEOUT
 */
const IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000;

export interface LazyWarehouse {
  connect(): Promise<PoolClient>;
  /** For tests and local runs: closes the pool if it was built. */
  end(): Promise<void>;
}

/**
 * A pool built on first use: connection settings resolved (Secrets Manager when configured), pool
 * created, migrations applied. Concurrent first uses share one attempt; a failed attempt is
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
      idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_TIMEOUT_MS,
      application_name: 'totes-load',
    });
    // An idle client's socket error is emitted on the pool; unhandled, it would crash the process.
    pool.on('error', (err) => deps.logger.warn('idle warehouse connection failed; dropped', { err }));
    try {
      const client = await pool.connect();
      try {
        const result = await migrateWarehouse(client, { logger: deps.logger });
        deps.logger.info('warehouse ready', {
          applied: result.applied,
          alreadyApplied: result.alreadyApplied.length,
        });
      } finally {
        client.release();
      }
    } catch (e) {
      await pool.end().catch(() => undefined);
      throw e;
    }
    return pool;
  };
  return {
    async connect() {
      ready ??= build().catch((e) => {
        ready = undefined;
        throw e;
      });
      return (await ready).connect();
    },
    async end() {
      const pool = ready;
      ready = undefined;
      if (pool) await (await pool.catch(() => undefined))?.end();
    },
  };
}

const LEVELS: readonly string[] = ['debug', 'info', 'warn', 'error'] satisfies LogLevel[];

/** Everything the Lambda entry builds from the environment; exported for tests. */
export function lambdaDeps(env: NodeJS.ProcessEnv): LoadHandlerDeps & { warehouse: LazyWarehouse } {
  const config = readLoadConfig(env);
  const logger = createLogger({
    service: 'load',
    level: LEVELS.includes(env.LOG_LEVEL ?? '') ? (env.LOG_LEVEL as LogLevel) : 'info',
  });
  return {
    s3: new S3Client({}),
    warehouse: lazyWarehouse(config, { secrets: new SecretsManagerClient({}), logger }),
    logger,
  };
}

function notInLambda(): never {
  throw new Error('processors/load/handler.ts `handler` runs in AWS Lambda only; use createLoadHandler');
}

/**
 * The Lambda handler, built at cold start. Only inside Lambda (AWS_LAMBDA_FUNCTION_NAME is always
 * set there): importing this module elsewhere, for `createLoadHandler`, must not need the env.
 */
export const handler: ReturnType<typeof createLoadHandler> = process.env.AWS_LAMBDA_FUNCTION_NAME
  ? createLoadHandler(lambdaDeps(process.env))
  : notInLambda;
