import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { PoolConfig } from 'pg';
import { z } from 'zod';

/**
 * The load function's configuration, read once at cold start (a gap fails the first invocation
 * loudly), and the warehouse connection it names:
 * - `WAREHOUSE_URL`: a postgres:// URL (local runs, tests, an existing warehouse), or
 * - `WAREHOUSE_SECRET_ARN`: a Secrets Manager secret in the shape RDS writes
 *   (`{"username","password","host","port","dbname",…}`,
 *   https://docs.aws.amazon.com/secretsmanager/latest/userguide/reference_secret_json_structure.html).
 * `WAREHOUSE_SSL`: `verify` (default with a secret: TLS, certificate checked — for RDS point
 * NODE_EXTRA_CA_CERTS at the RDS CA bundle), `no-verify`, or `disable`. With a URL, its own
 * `sslmode` decides. Secrets never leave this module except inside the pg config.
 */

/** Base class of every error this module throws. */
export class LoadConfigError extends Error {
  override name = 'LoadConfigError';
}

export class MissingConfigurationError extends LoadConfigError {
  override name = 'MissingConfigurationError';
  constructor(readonly variables: readonly string[]) {
    super(`environment variable ${variables.join(' or ')} is required`);
  }
}

export class InvalidConfigurationError extends LoadConfigError {
  override name = 'InvalidConfigurationError';
  constructor(
    readonly variable: string,
    reason: string,
  ) {
    super(`environment variable ${variable}: ${reason}`);
  }
}

/** The secret could not be read or is not an RDS-shaped secret. Its value is never in the message. */
export class WarehouseSecretError extends LoadConfigError {
  override name = 'WarehouseSecretError';
  constructor(
    readonly secretArn: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`warehouse secret ${secretArn}: ${reason}`, options);
  }
}

export const SSL_MODES = ['verify', 'no-verify', 'disable'] as const;
export type SslMode = (typeof SSL_MODES)[number];

export type WarehouseSource =
  { kind: 'url'; url: string } | { kind: 'secret'; secretArn: string; ssl: SslMode };

export interface LoadConfig {
  warehouse: WarehouseSource;
  /** Database name when the secret has none (RDS omits `dbname` when the instance was made without one). */
  defaultDatabase: string;
}

export function readLoadConfig(env: NodeJS.ProcessEnv): LoadConfig {
  const url = env.WAREHOUSE_URL?.trim();
  const secretArn = env.WAREHOUSE_SECRET_ARN?.trim();
  const defaultDatabase = env.WAREHOUSE_DATABASE?.trim() || 'postgres';
  if (url) {
    if (!/^postgres(ql)?:\/\//.test(url))
      throw new InvalidConfigurationError('WAREHOUSE_URL', 'expected a postgres:// URL');
    return { warehouse: { kind: 'url', url }, defaultDatabase };
  }
  if (secretArn) {
    const ssl = (env.WAREHOUSE_SSL?.trim() || 'verify') as SslMode;
    if (!SSL_MODES.includes(ssl))
      throw new InvalidConfigurationError('WAREHOUSE_SSL', `expected one of ${SSL_MODES.join(', ')}`);
    return { warehouse: { kind: 'secret', secretArn, ssl }, defaultDatabase };
  }
  throw new MissingConfigurationError(['WAREHOUSE_URL', 'WAREHOUSE_SECRET_ARN']);
}

const RdsSecretSchema = z.object({
  username: z.string().min(1),
  password: z.string(),
  host: z.string().min(1),
  port: z.union([z.number().int(), z.string().regex(/^\d+$/).transform(Number)]).optional(),
  dbname: z.string().min(1).optional(),
});

/** The pg connection settings (without pool sizing) the configuration names. */
export async function resolveWarehouseConnection(
  config: LoadConfig,
  secrets: Pick<SecretsManagerClient, 'send'>,
): Promise<PoolConfig> {
  const source = config.warehouse;
  if (source.kind === 'url') return { connectionString: source.url };
  let text: string | undefined;
  try {
    const response = await secrets.send(new GetSecretValueCommand({ SecretId: source.secretArn }));
    text = response.SecretString;
  } catch (e) {
    throw new WarehouseSecretError(source.secretArn, 'could not be read', { cause: e });
  }
  if (!text) throw new WarehouseSecretError(source.secretArn, 'has no SecretString');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // No cause: a JSON.parse message may quote the secret.
    throw new WarehouseSecretError(source.secretArn, 'is not JSON');
  }
  const parsed = RdsSecretSchema.safeParse(json);
  if (!parsed.success)
    throw new WarehouseSecretError(
      source.secretArn,
      `lacks ${parsed.error.issues.map((i) => i.path.join('.')).join(', ')} (expected the RDS secret shape)`,
    );
  const s = parsed.data;
  return {
    host: s.host,
    port: s.port ?? 5432,
    user: s.username,
    password: s.password,
    database: s.dbname ?? config.defaultDatabase,
    ssl: source.ssl === 'disable' ? false : { rejectUnauthorized: source.ssl === 'verify' },
  };
}
