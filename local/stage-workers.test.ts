import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { MessageChannel, threadId } from 'node:worker_threads';
import { createLogger, type Logger } from '../core/logger';
import { waitFor } from '../test/support/pg';
import { S3Trigger } from './s3-trigger';
import { s3ClientFor, startS3rver, type LocalS3 } from './s3rver';
import { serveStage, type HostToWorker, type WorkerToHost } from './stage-worker';
import { isAbandoned, STAGE_WORKER_HEAP_MIB, STAGE_WORKER_YOUNG_MIB, StageWorkers } from './stage-workers';

const FIXTURES = path.join(__dirname, 'stage-worker.fixtures.ts');

/** A logger that keeps its JSON lines. */
function recordingLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ service: 'test', level: 'debug', write: (l) => lines.push(JSON.parse(l)) });
  return { logger, lines };
}

const started: StageWorkers[] = [];
async function workers(failures: number, logger: Logger, threads = 1): Promise<StageWorkers> {
  const w = await StageWorkers.start({
    stage: 'test',
    module: FIXTURES,
    factory: 'testStage',
    options: { failures },
    threads,
    logger,
  });
  started.push(w);
  return w;
}

afterAll(async () => {
  await Promise.all(started.map((w) => w.abandon()));
});

describe('StageWorkers', () => {
  it('runs the stage on worker threads, its logs and metrics arriving in the stack logger as structured lines', async () => {
    const { logger, lines } = recordingLogger();
    const pool = await workers(0, logger, 2);

    const results = (await Promise.all([pool.handler({}), pool.handler({})])) as { threadId: number }[];

    expect(pool.threadIds).toHaveLength(2);
    expect(pool.threadIds).not.toContain(threadId);
    // Two invocations at once go to the two workers (the least busy first).
    expect(new Set(results.map((r) => r.threadId))).toEqual(new Set(pool.threadIds));
    const invoked = lines.filter((l) => l.msg === 'invoked');
    expect(invoked).toHaveLength(2);
    expect(invoked[0]).toMatchObject({ level: 'info', service: 'test', stage: 'test', invocation: 1 });
    const metrics = lines.filter((l) => l.msg === 'metrics');
    expect(metrics).toHaveLength(2);
    expect(metrics[0]).toMatchObject({ level: 'debug', emf: { Stage: 'test', Invocations: 1 } });
    await pool.stop();
  });

  it('caps each worker’s heap (STAGE_WORKER_HEAP_MIB unless told), far below the heap Node gives a thread by default', async () => {
    const heapLimit = async (maxOldGenerationSizeMb?: number) => {
      const pool = await StageWorkers.start({
        stage: 'test',
        module: FIXTURES,
        factory: 'testStage',
        options: { failures: 0 },
        logger: recordingLogger().logger,
        maxOldGenerationSizeMb,
      });
      started.push(pool);
      const { heapLimitBytes } = (await pool.handler({ action: 'heap' })) as { heapLimitBytes: number };
      await pool.stop();
      return heapLimitBytes;
    };

    const byDefault = await heapLimit();

    expect(byDefault).toBe(await heapLimit(STAGE_WORKER_HEAP_MIB));
    // heap_size_limit is the old generation plus the young one: larger semi-spaces than a thread's 48 MiB.
    expect(byDefault).toBe((STAGE_WORKER_HEAP_MIB + STAGE_WORKER_YOUNG_MIB) * 2 ** 20);
    expect(byDefault).toBeLessThan(await heapLimit(4 * STAGE_WORKER_HEAP_MIB));
    expect(byDefault).toBeLessThan(getHeapStatistics().heap_size_limit);
  });

  it('rejects with the handler error, rebuilt with its message and code', async () => {
    const pool = await workers(1, recordingLogger().logger);
    const failure = await pool.handler({}).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(Error);
    expect(failure).toMatchObject({ message: 'failure 1 of 1', code: 'FLAKY' });
    expect(isAbandoned(failure)).toBe(false);
    await expect(pool.handler({})).resolves.toMatchObject({ invocations: 2 });
    await pool.stop();
  });

  it('fails the invocations of a worker that dies, and replaces the worker', async () => {
    const { logger, lines } = recordingLogger();
    const pool = await workers(0, logger);
    const [first] = pool.threadIds;

    await expect(pool.handler({ action: 'exit' })).rejects.toThrow(/exited \(code 3\) while invoked/);

    await waitFor('a new worker', () => (pool.threadIds[0] !== first ? true : undefined));
    expect(pool.restarts).toBe(1);
    await expect(pool.handler({})).resolves.toMatchObject({ invocations: 1 });
    expect(lines.some((l) => l.msg === 'a stage worker exited; starting another')).toBe(true);
    await pool.stop();
  });

  it('abandons what still runs when the stack stops waiting, as not done', async () => {
    const pool = await workers(0, recordingLogger().logger);
    const hanging = pool.handler({ action: 'hang' }).catch((e: unknown) => e);

    await pool.abandon();

    expect(isAbandoned(await hanging)).toBe(true);
    expect(isAbandoned(await pool.handler({}).catch((e: unknown) => e))).toBe(true);
    await pool.stop(); // after abandon: nothing left to close, and it returns
  });

  it('fails to start when the factory cannot be built', async () => {
    await expect(
      StageWorkers.start({
        stage: 'test',
        module: FIXTURES,
        factory: 'notAFactory',
        options: {},
        logger: recordingLogger().logger,
      }),
    ).rejects.toThrow(/exports no notAFactory/);
  });
});

describe('serveStage', () => {
  it('answers invocations on its port and closes the stage when told', async () => {
    const { port1, port2 } = new MessageChannel();
    const messages: WorkerToHost[] = [];
    port1.on('message', (m: WorkerToHost) => messages.push(m));
    const serving = serveStage(port2, {
      stage: 'test',
      module: FIXTURES,
      factory: 'testStage',
      options: { failures: 1 },
      logFields: { stage: 'test' },
    });
    const send = (m: HostToWorker) => port1.postMessage(m);
    await waitFor('ready', () => (messages.some((m) => m.type === 'ready') ? true : undefined));

    send({ type: 'invoke', id: 1, event: {} });
    send({ type: 'invoke', id: 2, event: {} });
    await waitFor('two results', () =>
      messages.filter((m) => m.type === 'result').length === 2 ? true : undefined,
    );
    send({ type: 'close' });
    await serving;

    const results = messages.filter((m) => m.type === 'result');
    expect(results).toEqual([
      {
        type: 'result',
        id: 1,
        ok: false,
        error: expect.objectContaining({ message: 'failure 1 of 1', code: 'FLAKY' }),
      },
      { type: 'result', id: 2, ok: true, value: { threadId, invocations: 2 } },
    ]);
    await waitFor('closed', () => (messages.at(-1)?.type === 'closed' ? true : undefined));
    port1.close();
  });
});

describe('S3Trigger with its handler in a worker', () => {
  let dataDir: string;
  let s3: LocalS3;
  let client: S3Client;

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-stage-workers-'));
    s3 = await startS3rver({ dataDir: path.join(dataDir, 's3'), buckets: ['ingestion'] });
    client = s3ClientFor(s3.endpoint);
  });

  afterAll(async () => {
    client.destroy();
    await s3.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  async function trigger(name: string, pool: StageWorkers, logger: Logger): Promise<S3Trigger> {
    const t = new S3Trigger({
      name,
      s3,
      client,
      bucket: 'ingestion',
      prefix: `${name}/`,
      handler: pool.handler,
      concurrency: 2,
      stateDir: path.join(dataDir, 'triggers'),
      logger,
      retryDelaysMs: [10, 10],
    });
    await t.start();
    return t;
  }

  it('retries a failed invocation as before, and dead-letters one that keeps failing', async () => {
    const { logger, lines } = recordingLogger();
    const flaky = await trigger('flaky', await workers(1, logger), logger);
    const broken = await trigger('broken', await workers(100, logger), logger);

    await client.send(new PutObjectCommand({ Bucket: 'ingestion', Key: 'flaky/a.csv', Body: 'x' }));
    await client.send(new PutObjectCommand({ Bucket: 'ingestion', Key: 'broken/a.csv', Body: 'x' }));
    await flaky.drained();
    await waitFor('the broken trigger to give up', () =>
      broken.stats.deadLettered === 1 ? true : undefined,
    );

    expect(flaky.stats).toMatchObject({ invocations: 2, failures: 1, deadLettered: 0 });
    expect(broken.stats).toMatchObject({ invocations: 3, failures: 3, deadLettered: 1 });
    const dead = fs.readFileSync(path.join(dataDir, 'triggers', 'broken.dead-letter.jsonl'), 'utf8');
    expect(dead).toContain('failure 3 of 100');
    const retry = lines.find((l) => l.msg === 'invocation failed; retrying' && l.trigger === 'flaky');
    expect(retry?.err).toMatchObject({ name: 'Error', message: 'failure 1 of 1', code: 'FLAKY' });
    await flaky.stop();
    await broken.stop();
  });

  it('leaves an invocation abandoned at stop undone: not dead-lettered, and caught up on at the next start', async () => {
    const { logger } = recordingLogger();
    const hanging = await StageWorkers.start({
      stage: 'test',
      module: FIXTURES,
      factory: 'testStage',
      options: { failures: 0, hang: true },
      logger,
    });
    started.push(hanging);
    const first = await trigger('stopping', hanging, logger);
    await client.send(new PutObjectCommand({ Bucket: 'ingestion', Key: 'stopping/a.csv', Body: 'x' }));
    await waitFor('the invocation to start', () => (hanging.inFlight === 1 ? true : undefined));

    const stopping = first.stop();
    await hanging.abandon();
    await stopping;

    expect(first.stats).toMatchObject({ invocations: 1, deadLettered: 0 });
    expect(fs.existsSync(path.join(dataDir, 'triggers', 'stopping.dead-letter.jsonl'))).toBe(false);
    const pool = await workers(0, logger);
    const second = await trigger('stopping', pool, logger);
    await waitFor('the catch-up', () => (second.stats.invocations === 1 ? true : undefined));
    await second.drained();
    expect(second.stats).toMatchObject({ failures: 0, deadLettered: 0 });
    await second.stop();
  });
});
