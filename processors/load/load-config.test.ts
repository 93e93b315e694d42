import { GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import {
  InvalidConfigurationError,
  MissingConfigurationError,
  readLoadConfig,
  resolveWarehouseConnection,
  WarehouseSecretError,
} from './load-config';

const ARN = 'arn:aws:secretsmanager:eu-west-2:123456789012:secret:totes-warehouse-AbCdEf';
const PASSWORD = 'pa55-$ecret';

function secretsReturning(value: string | undefined | Error) {
  const calls: unknown[] = [];
  return {
    calls,
    send: async (command: unknown) => {
      calls.push(command);
      if (value instanceof Error) throw value;
      return { SecretString: value };
    },
  };
}

describe('readLoadConfig', () => {
  it('prefers WAREHOUSE_URL, then WAREHOUSE_SECRET_ARN, and fails loudly without either', () => {
    expect(readLoadConfig({ WAREHOUSE_URL: 'postgres://u:p@h/db', WAREHOUSE_SECRET_ARN: ARN })).toEqual({
      warehouse: { kind: 'url', url: 'postgres://u:p@h/db' },
      defaultDatabase: 'postgres',
    });
    expect(readLoadConfig({ WAREHOUSE_SECRET_ARN: ARN, WAREHOUSE_DATABASE: 'totes' })).toEqual({
      warehouse: { kind: 'secret', secretArn: ARN, ssl: 'verify' },
      defaultDatabase: 'totes',
    });
    expect(() => readLoadConfig({})).toThrow(MissingConfigurationError);
    expect(() => readLoadConfig({})).toThrow('WAREHOUSE_URL or WAREHOUSE_SECRET_ARN is required');
  });

  it('refuses a URL that is not postgres:// and an unknown TLS mode', () => {
    expect(() => readLoadConfig({ WAREHOUSE_URL: 'mysql://x' })).toThrow(InvalidConfigurationError);
    expect(() => readLoadConfig({ WAREHOUSE_SECRET_ARN: ARN, WAREHOUSE_SSL: 'maybe' })).toThrow(
      /WAREHOUSE_SSL/,
    );
  });
});

describe('resolveWarehouseConnection', () => {
  it('uses the URL as it is', async () => {
    const secrets = secretsReturning(undefined);
    expect(
      await resolveWarehouseConnection(readLoadConfig({ WAREHOUSE_URL: 'postgres://u:p@h/db' }), secrets),
    ).toEqual({ connectionString: 'postgres://u:p@h/db' });
    expect(secrets.calls).toEqual([]);
  });

  it('reads an RDS-shaped secret, with TLS verified by default', async () => {
    const secrets = secretsReturning(
      JSON.stringify({
        username: 'totes',
        password: PASSWORD,
        host: 'db.example',
        port: 6543,
        dbname: 'wh',
        engine: 'postgres',
      }),
    );
    const config = await resolveWarehouseConnection(readLoadConfig({ WAREHOUSE_SECRET_ARN: ARN }), secrets);
    expect(config).toEqual({
      host: 'db.example',
      port: 6543,
      user: 'totes',
      password: PASSWORD,
      database: 'wh',
      ssl: { rejectUnauthorized: true },
    });
    expect(secrets.calls[0]).toBeInstanceOf(GetSecretValueCommand);
    expect((secrets.calls[0] as GetSecretValueCommand).input).toEqual({ SecretId: ARN });
  });

  it('defaults port and database, and honours the TLS mode', async () => {
    const secrets = secretsReturning(
      JSON.stringify({ username: 'u', password: 'p', host: 'h', port: '5433' }),
    );
    const noVerify = await resolveWarehouseConnection(
      readLoadConfig({ WAREHOUSE_SECRET_ARN: ARN, WAREHOUSE_SSL: 'no-verify', WAREHOUSE_DATABASE: 'totes' }),
      secrets,
    );
    expect(noVerify).toMatchObject({ port: 5433, database: 'totes', ssl: { rejectUnauthorized: false } });
    const plain = await resolveWarehouseConnection(
      readLoadConfig({ WAREHOUSE_SECRET_ARN: ARN, WAREHOUSE_SSL: 'disable' }),
      secretsReturning(JSON.stringify({ username: 'u', password: 'p', host: 'h' })),
    );
    expect(plain).toMatchObject({ port: 5432, database: 'postgres', ssl: false });
  });

  it('explains a missing, unreadable or misshapen secret without ever quoting it', async () => {
    const config = readLoadConfig({ WAREHOUSE_SECRET_ARN: ARN });
    const failures = await Promise.all(
      [
        secretsReturning(new Error('AccessDenied')),
        secretsReturning(undefined),
        secretsReturning(`{"password":"${PASSWORD}"`),
        secretsReturning(JSON.stringify({ password: PASSWORD })),
      ].map((s) =>
        resolveWarehouseConnection(config, s).then(
          () => undefined,
          (e: Error) => e,
        ),
      ),
    );
    expect(failures.map((e) => e?.message)).toEqual([
      `warehouse secret ${ARN}: could not be read`,
      `warehouse secret ${ARN}: has no SecretString`,
      `warehouse secret ${ARN}: is not JSON`,
      `warehouse secret ${ARN}: lacks username, host (expected the RDS secret shape)`,
    ]);
    for (const e of failures) {
      expect(e).toBeInstanceOf(WarehouseSecretError);
      expect(JSON.stringify({ message: e?.message, cause: String(e?.cause) })).not.toContain(PASSWORD);
    }
  });
});
