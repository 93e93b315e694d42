import { createLogger, silentLogger } from '../../core/logger';
import { createTestDatabase, waitFor } from '../../test/support/pg';
import { handler, lambdaDeps, lazyWarehouse, queueVisibility } from './handler';
import { MissingConfigurationError, readLoadConfig, WarehouseSecretError } from './load-config';

let url: string;

beforeAll(async () => {
  url = await createTestDatabase('load_entry');
});

describe('load Lambda entry (real Postgres)', () => {
  it('builds the pool on first use, shared by concurrent first uses, and never migrates', async () => {
    const lines: string[] = [];
    const warehouse = lazyWarehouse(readLoadConfig({ WAREHOUSE_URL: url }), {
      secrets: { send: () => Promise.reject(new Error('not used')) },
      logger: createLogger({ service: 'load', write: (l) => lines.push(l) }),
    });
    try {
      const clients = await Promise.all([warehouse.connect(), warehouse.connect()]);
      // The schema is the deployment's migration step's business (processors/migrate), not load's.
      const { rows } = await clients[0].query(`SELECT to_regclass('totes_migrations') AS t`);
      expect(rows).toEqual([{ t: null }]);
      clients.forEach((c) => c.release());
      const ready = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'warehouse ready');
      expect(ready).toEqual([expect.objectContaining({ user: expect.any(String) })]);
    } finally {
      await warehouse.end();
      await warehouse.end();
    }
  });

  it('reads the secret at first use, and tries again after a failure', async () => {
    const u = new URL(url);
    const secret = JSON.stringify({
      username: decodeURIComponent(u.username),
      password: decodeURIComponent(u.password),
      host: u.hostname,
      port: Number(u.port),
      dbname: u.pathname.slice(1),
    });
    let calls = 0;
    const warehouse = lazyWarehouse(
      readLoadConfig({ WAREHOUSE_SECRET_ARN: 'arn:aws:secretsmanager:x', WAREHOUSE_SSL: 'disable' }),
      {
        secrets: {
          send: async () => {
            calls += 1;
            if (calls === 1) throw new Error('throttled');
            return { SecretString: secret };
          },
        },
        logger: silentLogger,
      },
    );
    try {
      await expect(warehouse.connect()).rejects.toBeInstanceOf(WarehouseSecretError);
      const client = await warehouse.connect();
      expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      client.release();
      expect(calls).toBe(2);
    } finally {
      await warehouse.end();
    }
  });

  it('closes the pool again when connecting fails, warming or not', async () => {
    const lines: string[] = [];
    const warehouse = lazyWarehouse(
      readLoadConfig({ WAREHOUSE_URL: url.replace(/\/[^/]*$/, '/no_such_db') }),
      {
        secrets: { send: () => Promise.reject(new Error('not used')) },
        logger: createLogger({ service: 'load', write: (l) => lines.push(l) }),
      },
    );
    warehouse.warm();
    await waitFor('the warm-up to fail', () => (lines.length ? true : undefined));
    expect(JSON.parse(lines[0])).toMatchObject({ level: 'warn', msg: expect.stringContaining('cold start') });
    await expect(warehouse.connect()).rejects.toThrow(/no_such_db/);
    await warehouse.end();
  });

  it('checks the environment at cold start and runs only inside Lambda', async () => {
    expect(() => lambdaDeps({})).toThrow(MissingConfigurationError);
    const deps = lambdaDeps({ WAREHOUSE_URL: url, LOG_LEVEL: 'debug' });
    expect(typeof deps.warehouse.connect).toBe('function');
    expect(deps.changeVisibility).toBeUndefined();
    await deps.warehouse.end();
    const queued = lambdaDeps({
      WAREHOUSE_URL: url,
      LOAD_QUEUE_URL: 'https://sqs.eu-west-2.amazonaws.com/1/totes-load',
      LOAD_MAX_RECEIVE_COUNT: '100',
    });
    expect(typeof queued.changeVisibility).toBe('function');
    expect(queued.maxReceiveCount).toBe(100);
    expect(deps.maxReceiveCount).toBeUndefined();
    await queued.warehouse.end();
    expect(() => handler({})).toThrow(/runs in AWS Lambda only/);
  });

  it('builds the handler when loaded as the Lambda entry', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, {
      AWS_LAMBDA_FUNCTION_NAME: 'totes-load',
      WAREHOUSE_URL: url,
      AWS_REGION: 'eu-west-2',
      LOG_LEVEL: 'error',
    });
    try {
      let entry: typeof import('./handler') | undefined;
      jest.isolateModules(() => {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        entry = require('./handler');
      });
      await expect(entry!.handler({ Service: 'Amazon S3', Event: 's3:TestEvent' })).resolves.toEqual({
        objects: [],
      });
      // Warmed at cold start: the pool is there before any object needed it.
      const client = await entry!.lambdaWarehouse!.connect();
      client.release();
      await entry!.lambdaWarehouse!.end();
    } finally {
      process.env = saved;
    }
  });

  it('shortens a message’s visibility on the load queue with ChangeMessageVisibility', async () => {
    const sent: unknown[] = [];
    const change = queueVisibility(
      { send: async (command: { input: unknown }) => void sent.push(command.input) } as never,
      'https://sqs.eu-west-2.amazonaws.com/123456789012/totes-load',
    );
    await change('AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a0', 17);
    expect(sent).toEqual([
      {
        QueueUrl: 'https://sqs.eu-west-2.amazonaws.com/123456789012/totes-load',
        ReceiptHandle: 'AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a0',
        VisibilityTimeout: 17,
      },
    ]);
  });
});
