import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { silentLogger } from '../../core/logger';
import { createTestDatabase, withClient } from '../../test/support/pg';
import { createMigrateHandler, handler, readMigrateEnvironment } from './handler';
import { scramVerifier, WAREHOUSE_ROLES } from './roles';

// The migration step against a real Postgres: the cluster's superuser plays the RDS master user;
// Secrets Manager, which has no local peer, is a map of secret ARN → JSON.

let url: URL;
beforeAll(async () => {
  url = new URL(await createTestDatabase('migrate_step'));
});

const secretOf = (user: string, password: string) =>
  JSON.stringify({
    username: user,
    password,
    host: url.hostname,
    port: Number(url.port),
    dbname: url.pathname.slice(1),
  });

function secretsFor(passwords: Record<string, string>) {
  const values: Record<string, string> = {
    admin: secretOf(decodeURIComponent(url.username), decodeURIComponent(url.password)),
  };
  for (const [role, name] of Object.entries(WAREHOUSE_ROLES)) values[role] = secretOf(name, passwords[role]);
  return {
    send: async (command: { input: { SecretId?: string } }) => ({
      SecretString: values[command.input.SecretId!],
    }),
  } as never;
}

const env = readMigrateEnvironment({
  WAREHOUSE_ADMIN_SECRET_ARN: 'admin',
  WAREHOUSE_OWNER_SECRET_ARN: 'owner',
  WAREHOUSE_LOAD_SECRET_ARN: 'load',
  WAREHOUSE_REPORTING_SECRET_ARN: 'reporting',
  WAREHOUSE_SSL: 'disable',
});

const password = () => randomBytes(12).toString('hex');

async function as<T>(user: string, pw: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const u = new URL(url);
  u.username = user;
  u.password = pw;
  return withClient(u.toString(), fn);
}

it('creates the login roles, migrates as the owner, and gives load DML and reporting reads only', async () => {
  // Prepare
  const passwords = { owner: password(), load: password(), reporting: password() };
  const migrate = createMigrateHandler({ secrets: secretsFor(passwords), env, logger: silentLogger });

  // Act
  const result = await migrate();

  // Assess: applied as the owner, who owns the tables.
  expect(result.applied).toContain('004_roles');
  expect(result.roles).toEqual(['totes_owner', 'totes_load', 'totes_reporting']);
  const owners = await as(
    'totes_owner',
    passwords.owner,
    async (c) =>
      (await c.query(`SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'`)).rows,
  );
  expect(owners).toEqual([{ tableowner: 'totes_owner' }]);
  // Load: rows in and out; no DDL, no bookkeeping of migrations.
  await as('totes_load', passwords.load, async (c) => {
    await c.query(`INSERT INTO load_log (object_key, "table", rows) VALUES ('k', 'dim_date', 0)`);
    expect((await c.query('SELECT count(*)::int AS n FROM load_log')).rows).toEqual([{ n: 1 }]);
    await c.query(`DELETE FROM load_log WHERE object_key = 'k'`);
    await expect(c.query('CREATE TABLE nope (x int)')).rejects.toThrow(/permission denied/);
    await expect(c.query('DROP TABLE load_log')).rejects.toThrow(/must be owner/);
    await expect(c.query('TRUNCATE load_log')).rejects.toThrow(/permission denied/);
    await expect(c.query(`DELETE FROM totes_migrations`)).rejects.toThrow(/permission denied/);
  });
  // Reporting: reads only.
  await as('totes_reporting', passwords.reporting, async (c) => {
    expect((await c.query('SELECT count(*)::int AS n FROM dim_date')).rows).toEqual([{ n: 0 }]);
    await expect(
      c.query(`INSERT INTO load_log (object_key, "table", rows) VALUES ('k', 'x', 0)`),
    ).rejects.toThrow(/permission denied/);
  });

  // Act 2: the next deployment, with rotated secrets: nothing to apply, the new passwords work.
  const rotated = { owner: password(), load: password(), reporting: password() };
  const again = await createMigrateHandler({ secrets: secretsFor(rotated), env, logger: silentLogger })();
  expect(again.applied).toEqual([]);
  await as('totes_load', rotated.load, (c) => c.query('SELECT 1'));
  await expect(as('totes_load', passwords.load, (c) => c.query('SELECT 1'))).rejects.toThrow(/password/);
});

it('never sends a password: Postgres gets a SCRAM verifier', () => {
  const verifier = scramVerifier('pencil', Buffer.from('QSXCR+Q6sek8bf92', 'base64'));
  // The stored form's shape, deterministic for a fixed salt; that Postgres accepts it and lets the
  // password log in is the test above.
  expect(verifier).toMatch(/^SCRAM-SHA-256\$4096:QSXCR\+Q6sek8bf92\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/);
  expect(scramVerifier('pencil', Buffer.from('QSXCR+Q6sek8bf92', 'base64'))).toBe(verifier);
  expect(verifier).not.toContain('pencil');
});

it('checks its environment and runs only inside Lambda', () => {
  expect(() => readMigrateEnvironment({})).toThrow(/WAREHOUSE_ADMIN_SECRET_ARN/);
  expect(() =>
    readMigrateEnvironment({ WAREHOUSE_ADMIN_SECRET_ARN: 'a', WAREHOUSE_OWNER_SECRET_ARN: 'o' }),
  ).toThrow(/go together/);
  expect(() =>
    readMigrateEnvironment({ WAREHOUSE_ADMIN_SECRET_ARN: 'a', WAREHOUSE_SSL: 'sometimes' }),
  ).toThrow(/WAREHOUSE_SSL/);
  expect(readMigrateEnvironment({ WAREHOUSE_ADMIN_SECRET_ARN: 'a' })).toEqual({
    adminSecretArn: 'a',
    ssl: 'verify',
    defaultDatabase: 'postgres',
  });
  expect(() => handler()).toThrow(/runs in AWS Lambda only/);
});
