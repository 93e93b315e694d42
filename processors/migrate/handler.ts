import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { Client, type ClientConfig } from 'pg';
import type { Logger } from '../../core/logger';
import { lambdaLogger } from '../shared/lambda-logger';
import { resolveWarehouseConnection, SSL_MODES, type LoadConfig, type SslMode } from '../load/load-config';
import { migrateWarehouse, type MigrationResult } from '../load/migrate';
import { ensureWarehouseRoles, WAREHOUSE_ROLES, type WarehouseRole } from './roles';
import { awsClientConfig } from '../../aws/request-handler';

/**
 * The migration step of a deployment (a CDK Trigger runs it before the load function is updated:
 * infra/stacks/pipeline-stack.ts), and the only code that uses the warehouse's master user:
 *
 * 1. as the master user (WAREHOUSE_ADMIN_SECRET_ARN): create or update the login roles
 *    totes_owner, totes_load and totes_reporting, each with the password of its own secret;
 * 2. as totes_owner (WAREHOUSE_OWNER_SECRET_ARN): apply the pending migrations, which own the
 *    tables and grant the other roles their rights (migrations/004_roles.sql).
 *
 * Without role secrets (an existing warehouse, `totes:warehouse=existing`) it applies the
 * migrations with the one secret it has. A failure fails the invocation, and so the deployment.
 * The `migrations/` directory is bundled beside this handler.
 */

export interface MigrateEnvironment {
  adminSecretArn: string;
  /** Absent: no roles, migrations run as the admin secret's user. */
  roleSecretArns?: Record<WarehouseRole, string>;
  ssl: SslMode;
  defaultDatabase: string;
}

export function readMigrateEnvironment(env: NodeJS.ProcessEnv): MigrateEnvironment {
  const adminSecretArn = env.WAREHOUSE_ADMIN_SECRET_ARN?.trim();
  if (!adminSecretArn) throw new Error('environment variable WAREHOUSE_ADMIN_SECRET_ARN is required');
  const ssl = (env.WAREHOUSE_SSL?.trim() || 'verify') as SslMode;
  if (!SSL_MODES.includes(ssl))
    throw new Error(`environment variable WAREHOUSE_SSL must be one of ${SSL_MODES.join(', ')}`);
  const roles = {
    owner: env.WAREHOUSE_OWNER_SECRET_ARN?.trim(),
    load: env.WAREHOUSE_LOAD_SECRET_ARN?.trim(),
    reporting: env.WAREHOUSE_REPORTING_SECRET_ARN?.trim(),
  };
  const given = Object.values(roles).filter(Boolean).length;
  if (given !== 0 && given !== 3)
    throw new Error(
      'WAREHOUSE_OWNER_SECRET_ARN, WAREHOUSE_LOAD_SECRET_ARN and WAREHOUSE_REPORTING_SECRET_ARN go together',
    );
  return {
    adminSecretArn,
    ...(given === 3 ? { roleSecretArns: roles as Record<WarehouseRole, string> } : {}),
    ssl,
    defaultDatabase: env.WAREHOUSE_DATABASE?.trim() || 'postgres',
  };
}

export interface MigrateDeps {
  secrets: Pick<SecretsManagerClient, 'send'>;
  env: MigrateEnvironment;
  logger: Logger;
  /** Opens a connection (tests point it elsewhere). */
  connect?: (config: ClientConfig) => Promise<Client>;
}

async function open(config: ClientConfig): Promise<Client> {
  const client = new Client({
    ...config,
    application_name: 'totes-migrate',
    connectionTimeoutMillis: 10_000,
  });
  await client.connect();
  return client;
}

async function passwordOf(secrets: MigrateDeps['secrets'], arn: string): Promise<string> {
  const response = await secrets.send(new GetSecretValueCommand({ SecretId: arn }));
  const password = (JSON.parse(response.SecretString ?? '{}') as { password?: unknown }).password;
  if (typeof password !== 'string' || password === '') throw new Error(`secret ${arn} has no password`);
  return password;
}

export function createMigrateHandler(
  deps: MigrateDeps,
): () => Promise<MigrationResult & { roles: string[] }> {
  const connect = deps.connect ?? open;
  const configFor = (secretArn: string): LoadConfig => ({
    warehouse: { kind: 'secret', secretArn, ssl: deps.env.ssl },
    defaultDatabase: deps.env.defaultDatabase,
  });
  const withClient = async <T>(secretArn: string, fn: (c: Client) => Promise<T>): Promise<T> => {
    const client = await connect(await resolveWarehouseConnection(configFor(secretArn), deps.secrets));
    try {
      return await fn(client);
    } finally {
      await client.end().catch(() => undefined);
    }
  };
  return async () => {
    const { env, logger } = deps;
    let runAs = env.adminSecretArn;
    const roles: string[] = [];
    if (env.roleSecretArns) {
      const arns = env.roleSecretArns;
      const passwords = {
        owner: await passwordOf(deps.secrets, arns.owner),
        load: await passwordOf(deps.secrets, arns.load),
        reporting: await passwordOf(deps.secrets, arns.reporting),
      };
      await withClient(env.adminSecretArn, async (admin) => {
        const database = (await admin.query<{ db: string }>('SELECT current_database() AS db')).rows[0].db;
        await ensureWarehouseRoles(admin, passwords, database);
      });
      roles.push(...Object.values(WAREHOUSE_ROLES));
      runAs = arns.owner;
    }
    const result = await withClient(runAs, (c) => migrateWarehouse(c, { logger }));
    logger.info('warehouse migrated', {
      applied: result.applied,
      alreadyApplied: result.alreadyApplied.length,
      roles,
    });
    return { ...result, roles };
  };
}

function notInLambda(): never {
  throw new Error(
    'processors/migrate/handler.ts `handler` runs in AWS Lambda only; use createMigrateHandler',
  );
}

export const handler = process.env.AWS_LAMBDA_FUNCTION_NAME
  ? createMigrateHandler({
      secrets: new SecretsManagerClient(awsClientConfig()),
      env: readMigrateEnvironment(process.env),
      logger: lambdaLogger('migrate'),
    })
  : notInLambda;
