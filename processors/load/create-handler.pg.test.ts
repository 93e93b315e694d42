import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Pool } from 'pg';
import { WAREHOUSE_LOCK_IDS, WAREHOUSE_LOCK_NAMESPACE } from '../../core/warehouse-sql';
import { createLogger } from '../../core/logger';
import { s3ClientFor, startS3rver, type LocalS3 } from '../../local/s3rver';
import { createTestDatabase, waitFor } from '../../test/support/pg';
import { s3EventFactory, sqsEventFactory, type S3ObjectSpec } from '../../test/support/s3-events';
import {
  at,
  dumpWarehouse,
  objectOf,
  parquetOf,
  rowOf,
  scenarioObjects,
  type TestObject,
} from '../../test/support/warehouse-rows';
import { metricsFor } from '../shared/metrics';
import {
  createLoadHandler,
  InvalidS3EventError,
  loadQuarantineKeyFor,
  LoadRetryableError,
  type LoadHandlerDeps,
} from './create-handler';
import { migrateWarehouse } from './migrate';
import { BUSY_RETRY_FIRST_SECONDS } from './retry-delay';

/** A real s3rver (the processed bucket) and a real warehouse database. */
const BUCKET = 'processed';

let s3: LocalS3;
let client: S3Client;
let dataDir: string;
let url: string;
let pool: Pool;

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-load-s3-'));
  s3 = await startS3rver({ dataDir, buckets: [BUCKET] });
  client = s3ClientFor(s3.endpoint);
  url = await createTestDatabase('load_handler');
  pool = new Pool({ connectionString: url, max: 3 });
  const c = await pool.connect();
  await migrateWarehouse(c);
  c.release();
});

afterAll(async () => {
  client.destroy();
  await s3.stop();
  await pool.end();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

interface Harness {
  handler: ReturnType<typeof createLoadHandler>;
  logs: Record<string, unknown>[];
  logText: () => string;
  metrics: Record<string, unknown>[];
}

function harness(overrides: Partial<LoadHandlerDeps> = {}): Harness {
  const lines: string[] = [];
  const logs: Record<string, unknown>[] = [];
  const metrics: Record<string, unknown>[] = [];
  const handler = createLoadHandler({
    s3: client,
    warehouse: pool,
    logger: createLogger({
      service: 'load',
      level: 'debug',
      write: (line) => {
        lines.push(line);
        logs.push(JSON.parse(line));
      },
    }),
    metrics: metricsFor({ stage: 'load', write: (line) => metrics.push(JSON.parse(line)) }),
    now: () => new Date('2025-02-28T09:01:00.000Z'),
    ...overrides,
  });
  return { handler, logs, logText: () => lines.join(''), metrics };
}

async function put(key: string, body: Buffer | string): Promise<S3ObjectSpec> {
  await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
  return { bucket: BUCKET, key, size: Buffer.byteLength(body) };
}

async function putObject(object: TestObject): Promise<S3ObjectSpec> {
  return put(object.key, await parquetOf(object));
}

async function read(key: string): Promise<Buffer> {
  const response = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return Buffer.from(await response.Body!.transformToByteArray());
}

/** The test pool, with each connection checkout noted as 'connect' in `events`. */
function checkoutsInto(events: string[]): Pool {
  return {
    connect: async () => {
      events.push('connect');
      return pool.connect();
    },
  } as unknown as Pool;
}

async function count(table: string): Promise<number> {
  return (await pool.query(`SELECT count(*)::int AS n FROM "${table}"`)).rows[0].n;
}

describe('load handler (s3rver + real Postgres)', () => {
  it('loads good objects and quarantines bad ones from the same event, the rest flowing', async () => {
    const good = objectOf('dim_design', [rowOf('dim_design', 1, { design_name: 'SECRET-DESIGN' }, at(1))]);
    // A space and a plus in the key make the event's URL encoding matter.
    good.key = 'dim_design/2025/02/28/09/a b+c.parquet';
    const facts = objectOf('fact_payment', [rowOf('fact_payment', 1, {}, at(2))]);
    const invalidRow = objectOf('fact_payment', [rowOf('fact_payment', 2, { paid: null }, at(3))]);
    const refused = objectOf('fact_payment', [
      rowOf('fact_payment', 3, { payment_date: '0000-01-01' }, at(4)),
    ]);
    // A real Parquet file with damaged pages: the reader fails with its own error types.
    const damaged = await parquetOf(objectOf('dim_design', [rowOf('dim_design', 9, {}, at(5))]));
    damaged.fill(0, 10, 30);
    const specs = [
      await putObject(good),
      await put('fact_payment/2025/02/28/09/not-parquet.parquet', 'PAR1 this is not parquet'),
      await putObject(facts),
      await putObject(invalidRow),
      await putObject(refused),
      await put('dim_design/2025/02/28/09/damaged.parquet', damaged),
      await put('quarantine/transform/x.object.jsonl', '{}'),
      await put('dim_design/_manifest.json', '{}'),
      { bucket: BUCKET, key: 'dim_design/2025/02/28/09/vanished.parquet' },
    ];
    const { handler, logs, logText, metrics } = harness();

    const report = await handler(s3EventFactory(specs), { awsRequestId: 'req-1' });

    expect(report.objects.map((o) => [o.key, o.status])).toEqual([
      [good.key, 'loaded'],
      ['fact_payment/2025/02/28/09/not-parquet.parquet', 'quarantined'],
      [facts.key, 'loaded'],
      [invalidRow.key, 'quarantined'],
      [refused.key, 'quarantined'],
      ['dim_design/2025/02/28/09/damaged.parquet', 'quarantined'],
      ['quarantine/transform/x.object.jsonl', 'ignored'],
      ['dim_design/_manifest.json', 'ignored'],
      ['dim_design/2025/02/28/09/vanished.parquet', 'ignored'],
    ]);
    expect(await count('fact_payment')).toBe(1);
    expect((await pool.query('SELECT "design_name" FROM "dim_design"')).rows).toEqual([
      { design_name: 'SECRET-DESIGN' },
    ]);
    // The quarantine holds a copy and the reason; the original stays.
    expect(await read(loadQuarantineKeyFor(invalidRow.key))).toEqual(await read(invalidRow.key));
    const reason = JSON.parse((await read(`${loadQuarantineKeyFor(invalidRow.key)}.reason.json`)).toString());
    expect(reason).toMatchObject({
      stage: 'load',
      error: 'MalformedObjectError',
      table: 'fact_payment',
      issues: ['row 0: paid is NULL but NOT NULL in the warehouse'],
      source: { bucket: BUCKET, key: invalidRow.key },
    });
    const refusedReason = JSON.parse(
      (await read(`${loadQuarantineKeyFor(refused.key)}.reason.json`)).toString(),
    );
    expect(refusedReason).toMatchObject({ error: 'WarehouseDataError', sqlState: '22008' });
    // Errors are logged with the key; row values never are.
    const errors = logs.filter((l) => l.level === 'error');
    expect(errors.map((e) => e.key)).toEqual([
      'fact_payment/2025/02/28/09/not-parquet.parquet',
      invalidRow.key,
      refused.key,
      'dim_design/2025/02/28/09/damaged.parquet',
    ]);
    expect(errors.every((e) => e.requestId === 'req-1')).toBe(true);
    expect(logText()).not.toContain('SECRET-DESIGN');
    expect(logText()).not.toContain('0000-01-01');
    // Metrics: per object (freshness is a gauge), then the invocation's counters.
    const invocation = metrics.at(-1)!;
    expect(invocation).toMatchObject({
      Stage: 'load',
      ObjectsLoaded: 2,
      ObjectsQuarantined: 4,
      ObjectsIgnored: 3,
      ObjectsFailed: 0,
      requestId: 'req-1',
    });
    const perObject = metrics.find((m) => m.table === 'fact_payment')!;
    expect(perObject).toMatchObject({
      RowsLoaded: 1,
      'RowsLoaded.fact_payment': 1,
      // Committed at 09:00:02.000123, loaded at 09:01:00 (measured to the millisecond).
      WarehouseFreshness: 58,
      'WarehouseFreshness.fact_payment': 58,
    });
  });

  it('skips objects already loaded and quarantines only once when an event is redelivered', async () => {
    const object = objectOf('dim_currency', [rowOf('dim_currency', 1, {}, at(1))]);
    const broken = 'dim_currency/2025/02/28/09/broken.parquet';
    const specs = [await putObject(object), await put(broken, 'nope')];
    const { handler } = harness();
    await handler(s3EventFactory(specs));
    const reasonBefore = await read(`${loadQuarantineKeyFor(broken)}.reason.json`);
    const again = await handler(s3EventFactory(specs));
    expect(again.objects.map((o) => o.status)).toEqual(['duplicate', 'quarantined']);
    expect(await read(`${loadQuarantineKeyFor(broken)}.reason.json`)).toEqual(reasonBefore);
  });

  it('looks an object in parts up before decoding it, and one of a single part only in its transaction', async () => {
    const checkouts: string[] = [];
    const counted = checkoutsInto(checkouts);
    const { handler } = harness({ warehouse: counted, partRows: 2 });
    const small = objectOf('dim_design', [
      rowOf('dim_design', 41, {}, at(1)),
      rowOf('dim_design', 42, {}, at(2)),
    ]);
    const inParts = objectOf(
      'dim_design',
      [41, 42, 43].map((id) => rowOf('dim_design', id, {}, at(id + 2))),
    );
    const specs = [await putObject(small), await putObject(inParts)];
    expect((await handler(s3EventFactory(specs))).objects.map((o) => o.status)).toEqual(['loaded', 'loaded']);
    // One connection for the object of one part (its transaction); two for the object in parts.
    expect(checkouts).toHaveLength(3);
    checkouts.length = 0;
    expect((await handler(s3EventFactory(specs))).objects.map((o) => o.status)).toEqual([
      'duplicate',
      'duplicate',
    ]);
    // The one-part object's transaction found it; the object in parts was found before any decode.
    expect(checkouts).toHaveLength(2);
  });

  it('reads the next object of an invocation while the one before it loads, unless it is large', async () => {
    const events: string[] = [];
    const counted = checkoutsInto(events);
    const watched = {
      send: (command: Parameters<S3Client['send']>[0]) => {
        if (command instanceof GetObjectCommand) events.push(`get ${command.input.Key}`);
        return client.send(command);
      },
    } as unknown as S3Client;
    const { handler } = harness({ warehouse: counted, s3: watched });
    const [first, second, large] = [51, 52, 53].map((id) => {
      const object = objectOf('dim_design', [rowOf('dim_design', id, {}, at(id))]);
      object.key = `dim_design/2025/02/28/09/ahead-${id}.parquet`;
      return object;
    });
    const specs = [await putObject(first!), await putObject(second!), await putObject(large!)];
    specs[2] = { ...specs[2]!, size: 64 * 1024 * 1024 }; // as the event says: too large to read ahead

    const report = await handler(s3EventFactory(specs));

    expect(report.objects.map((o) => o.status)).toEqual(['loaded', 'loaded', 'loaded']);
    // The second object's GET went out before the first object's transaction took its connection;
    // the third's (large) only in its own turn, after the second's transaction.
    expect(events).toEqual([
      `get ${second!.key}`,
      `get ${first!.key}`,
      'connect',
      'connect',
      `get ${large!.key}`,
      'connect',
    ]);
  });

  it('loads a corrected object that replaced a loaded one under the same key; the same bytes stay a duplicate', async () => {
    // Prepare: an object loaded once.
    const key = 'dim_currency/2025/02/28/09/corrected.parquet';
    const first = objectOf('dim_currency', [rowOf('dim_currency', 21, {}, at(1))]);
    first.key = key;
    const { handler } = harness();
    expect((await handler(s3EventFactory(await putObject(first)))).objects[0].status).toBe('loaded');

    // Act: a corrected version (new content, so a new ETag) lands under the same key.
    const corrected = objectOf('dim_currency', [
      rowOf('dim_currency', 21, {}, at(1)),
      rowOf('dim_currency', 22, {}, at(2)),
    ]);
    corrected.key = key;
    const spec = await putObject(corrected);
    const report = await handler(s3EventFactory(spec));
    const redelivered = await handler(s3EventFactory(spec));

    // Assess: the corrected version loaded; its redelivery is a duplicate; load_log holds both versions.
    expect(report.objects[0].status).toBe('loaded');
    expect(
      (await pool.query('SELECT "currency_id" FROM "dim_currency" WHERE "currency_id" > 20 ORDER BY 1')).rows,
    ).toEqual([{ currency_id: 21 }, { currency_id: 22 }]);
    expect(redelivered.objects[0].status).toBe('duplicate');
    expect(
      (await pool.query('SELECT count(*)::int AS n FROM "load_log" WHERE "object_key" = $1', [key])).rows,
    ).toEqual([{ n: 2 }]);
  });

  it('throws LoadRetryableError after trying every record when the warehouse is unavailable', async () => {
    const object = objectOf('dim_currency', [rowOf('dim_currency', 2, {}, at(1))]);
    const specs = [await putObject(object), await put('dim_currency/2025/02/28/09/junk.parquet', 'junk')];
    const { handler, metrics, logs } = harness({
      warehouse: { connect: () => Promise.reject(new Error('connect ECONNREFUSED 10.0.0.1:5432')) },
    });
    const failure = await handler(s3EventFactory(specs)).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(LoadRetryableError);
    expect((failure as LoadRetryableError).failures).toEqual([
      { bucket: BUCKET, key: object.key, reason: 'connect ECONNREFUSED 10.0.0.1:5432' },
    ]);
    // The unloadable object was still quarantined; the metrics still went out.
    expect(
      await read(`${loadQuarantineKeyFor('dim_currency/2025/02/28/09/junk.parquet')}.reason.json`),
    ).toBeTruthy();
    expect(metrics.at(-1)).toMatchObject({ ObjectsFailed: 1, ObjectsQuarantined: 1 });
    expect(logs.find((l) => l.msg === 'object failed; the invocation will be retried')).toMatchObject({
      key: object.key,
    });
  });

  it('from SQS: loads each message, returns only the failed ones as batchItemFailures, never throws', async () => {
    // Prepare: one loadable object, one unloadable, one in a bucket that does not exist, a test
    // event and a message that is not an S3 notification at all.
    const good = await putObject(objectOf('dim_currency', [rowOf('dim_currency', 7, {}, at(1))]));
    const junk = await put('dim_currency/2025/02/28/09/sqs-junk.parquet', 'junk');
    const event = sqsEventFactory(
      [
        s3EventFactory(good),
        s3EventFactory(junk),
        s3EventFactory({ bucket: 'no-such-bucket', key: 'dim_design/x.parquet' }),
        { Service: 'Amazon S3', Event: 's3:TestEvent' },
        'not json',
      ],
      { receiveCount: 3 },
    );
    const { handler, logs } = harness();

    // Act
    const report = await handler(event);

    // Assess: the loaded and the quarantined message are done; the retryable and the unreadable come back.
    expect(report.objects.map((o) => o.status)).toEqual(['loaded', 'quarantined', 'failed']);
    expect(report.batchItemFailures).toEqual([
      { itemIdentifier: event.Records[2].messageId },
      { itemIdentifier: event.Records[4].messageId },
    ]);
    expect(logs.find((l) => l.level === 'error' && l.key === 'dim_design/x.parquet')).toMatchObject({
      messageId: event.Records[2].messageId,
      receiveCount: 3,
    });
    // A redelivered message finds its object loaded.
    expect((await handler(sqsEventFactory([s3EventFactory(good)]))).objects[0].status).toBe('duplicate');
  });

  it('treats a missing bucket as retryable, not as a vanished object', async () => {
    const { handler } = harness();
    await expect(
      handler(s3EventFactory({ bucket: 'no-such-bucket', key: 'dim_design/x.parquet' })),
    ).rejects.toBeInstanceOf(LoadRetryableError);
  });

  it('accepts S3 test events, ignores removals and undecodable keys, refuses what is not an S3 event', async () => {
    const { handler, logs } = harness();
    expect(await handler({ Service: 'Amazon S3', Event: 's3:TestEvent' })).toEqual({ objects: [] });
    const removed = s3EventFactory({ bucket: BUCKET, key: 'x.parquet', eventName: 'ObjectRemoved:Delete' });
    const undecodable = s3EventFactory({ bucket: BUCKET, key: 'x.parquet' });
    undecodable.Records[0].s3.object.key = '%E0%A4%A.parquet';
    expect((await handler(removed)).objects[0]).toMatchObject({
      status: 'ignored',
      reason: 'event ObjectRemoved:Delete',
    });
    expect((await handler(undecodable)).objects[0]).toMatchObject({ status: 'ignored' });
    expect(logs.some((l) => l.level === 'error' && l.key === '%E0%A4%A.parquet')).toBe(true);
    await expect(handler({ Records: [{ nope: true }] })).rejects.toBeInstanceOf(InvalidS3EventError);
  });

  it("loads the whole scenario from s3rver's own notifications, ignoring its quarantine copies", async () => {
    const database = await createTestDatabase('load_handler_events');
    const warehouse = new Pool({ connectionString: database, max: 2 });
    const c = await warehouse.connect();
    await migrateWarehouse(c);
    c.release();
    const { handler } = harness({ warehouse });
    const reports: string[] = [];
    const unsubscribe = s3.onObjectCreated(async (event) => {
      const report = await handler(event);
      reports.push(...report.objects.map((o) => `${o.status} ${o.key}`));
    });
    try {
      const objects = scenarioObjects().map((o) => ({ ...o, key: `events/${o.key}` }));
      for (const object of objects) await putObject(object);
      await put('events/broken.parquet', 'nope');
      // The quarantine copies' own events can be handled (ignored) before the invocation that wrote
      // them reports the broken object quarantined: wait for all three, in any order.
      await waitFor('every object loaded, the broken one quarantined and its copies ignored', () =>
        reports.filter((r) => r.startsWith('loaded ')).length === objects.length &&
        reports.includes('quarantined events/broken.parquet') &&
        reports.filter((r) => r.startsWith('ignored quarantine/load/events/broken.parquet')).length === 2
          ? true
          : undefined,
      );
      const reader = await warehouse.connect();
      const dump = await dumpWarehouse(reader);
      reader.release();
      expect(dump.load_log).toHaveLength(objects.length);
      expect((dump.dim_staff as { department_name: string }[]).map((s) => s.department_name)).toContain(
        'Sales & Marketing',
      );
    } finally {
      unsubscribe();
      await warehouse.end();
    }
  });
});

/**
 * A load that waits behind another transaction's lock until its lock timeout must come back within
 * seconds, not after the load queue's 30-minute visibility timeout (retry-delay.ts). The other
 * transaction is a session holding the fact table's lock, as a large object's transaction does.
 */
describe('a busy warehouse', () => {
  // As the load function's pool (a lock timeout below the statement timeout), short enough for a test.
  let lockedOut: Pool;
  beforeAll(() => {
    lockedOut = new Pool({ connectionString: url, max: 2, statement_timeout: 10_000, lock_timeout: 500 });
  });
  afterAll(() => lockedOut.end());

  /** Another session holding fact_sales_order's lock; returns its release. */
  async function holdFactLock(): Promise<() => Promise<void>> {
    const holder = new Client({ connectionString: url });
    await holder.connect();
    await holder.query('SELECT pg_advisory_lock($1, $2)', [
      WAREHOUSE_LOCK_NAMESPACE,
      WAREHOUSE_LOCK_IDS.fact_sales_order,
    ]);
    return () => holder.end();
  }

  const oneRow = (table: 'fact_sales_order' | 'dim_currency', id: number) =>
    putObject(objectOf(table, [rowOf(table, id, {}, at(id))]));

  it('shortens the visibility of a message whose load timed out behind a lock, and only of that one', async () => {
    // Prepare: another session holds the fact table's lock.
    const release = await holdFactLock();
    const blocked = await oneRow('fact_sales_order', 9001);
    const loadable = await oneRow('dim_currency', 9002);
    const event = sqsEventFactory(
      [
        s3EventFactory(blocked),
        s3EventFactory(loadable),
        s3EventFactory({ bucket: 'no-such-bucket', key: 'dim_design/x.parquet' }),
      ],
      { receiveCount: 1 },
    );
    const changed: [string, number][] = [];
    const { handler } = harness({
      warehouse: lockedOut,
      changeVisibility: async (receiptHandle, seconds) => {
        changed.push([receiptHandle, seconds]);
      },
    });

    try {
      // Act
      const report = await handler(event);

      // Assess: the blocked load failed and comes back in seconds; the missing bucket (not a busy
      // warehouse) is left to the queue's visibility timeout; the loadable one loaded.
      expect(report.objects.map((o) => o.status)).toEqual(['failed', 'loaded', 'failed']);
      expect(report.objects[0].reason).toMatch(/lock timeout/);
      expect(report.batchItemFailures).toEqual([
        { itemIdentifier: event.Records[0].messageId },
        { itemIdentifier: event.Records[2].messageId },
      ]);
      expect(changed).toHaveLength(1);
      expect(changed[0][0]).toBe(event.Records[0].receiptHandle);
      expect(changed[0][1]).toBeGreaterThanOrEqual(BUSY_RETRY_FIRST_SECONDS);
      expect(changed[0][1]).toBeLessThanOrEqual(BUSY_RETRY_FIRST_SECONDS * 1.5);
    } finally {
      await release();
    }

    // Once the lock is gone, the message's next receive loads the object.
    const again = await handler(sqsEventFactory([s3EventFactory(blocked)], { receiveCount: 2 }));
    expect(again.objects.map((o) => o.status)).toEqual(['loaded']);
    expect(again.batchItemFailures).toEqual([]);
    const { rows } = await pool.query(
      'SELECT count(*)::int AS n FROM fact_sales_order WHERE sales_order_id = 9001',
    );
    expect(rows[0].n).toBe(1);
  });

  it('still reports the message failed when the visibility cannot be changed', async () => {
    const release = await holdFactLock();
    const blocked = await oneRow('fact_sales_order', 9003);
    const event = sqsEventFactory([s3EventFactory(blocked)]);
    const { handler, logs } = harness({
      warehouse: lockedOut,
      changeVisibility: async () => {
        throw new Error('AccessDenied: not authorized to perform sqs:ChangeMessageVisibility');
      },
    });
    try {
      const report = await handler(event);
      expect(report.batchItemFailures).toEqual([{ itemIdentifier: event.Records[0].messageId }]);
      expect(logs.find((l) => l.level === 'warn' && String(l.msg).includes('visibility'))).toBeTruthy();
    } finally {
      await release();
    }
  });
});
