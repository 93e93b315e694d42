import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Pool } from 'pg';
import { createLogger } from '../../core/logger';
import { WAREHOUSE_LOCK_IDS, WAREHOUSE_LOCK_NAMESPACE } from '../../core/warehouse-sql';
import { s3ClientFor, startS3rver, type LocalS3 } from '../../local/s3rver';
import { createTestDatabase } from '../../test/support/pg';
import { s3EventFactory, sqsEventFactory, type S3ObjectSpec } from '../../test/support/s3-events';
import { at, objectOf, parquetOf, rowOf } from '../../test/support/warehouse-rows';
import { metricsFor } from '../shared/metrics';
import { createLoadHandler } from './create-handler';
import { migrateWarehouse } from './migrate';
import { BUSY_RETRY_FIRST_SECONDS } from './retry-delay';

/**
 * A load that waits behind another transaction's lock until its lock timeout must come back
 * within seconds, not after the load queue's 30-minute visibility timeout (processors/load/retry-delay.ts).
 * Real s3rver, real warehouse; the other transaction is a session holding the fact table's lock.
 */
const BUCKET = 'processed';
const quietMetrics = metricsFor({ stage: 'load', write: () => undefined });

let s3: LocalS3;
let client: S3Client;
let dataDir: string;
let url: string;
let pool: Pool;

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-load-retry-'));
  s3 = await startS3rver({ dataDir, buckets: [BUCKET] });
  client = s3ClientFor(s3.endpoint);
  url = await createTestDatabase('load_retry_sooner');
  // As the load function's pool (a lock timeout below the statement timeout), short enough for a test.
  pool = new Pool({ connectionString: url, max: 2, statement_timeout: 10_000, lock_timeout: 500 });
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

async function putObject(table: 'fact_sales_order' | 'dim_currency', id: number): Promise<S3ObjectSpec> {
  const object = objectOf(table, [rowOf(table, id, {}, at(id))]);
  const body = await parquetOf(object);
  await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: object.key, Body: body }));
  return { bucket: BUCKET, key: object.key, size: body.length };
}

/** Another session holding fact_sales_order's lock, as a large object's transaction does; returns its release. */
async function holdFactLock(): Promise<() => Promise<void>> {
  const holder = new Client({ connectionString: url });
  await holder.connect();
  await holder.query('SELECT pg_advisory_lock($1, $2)', [
    WAREHOUSE_LOCK_NAMESPACE,
    WAREHOUSE_LOCK_IDS.fact_sales_order,
  ]);
  return () => holder.end();
}

it('shortens the visibility of a message whose load timed out behind a lock, and only of that one', async () => {
  // Prepare: another session holds the fact table's lock.
  const release = await holdFactLock();
  const blocked = await putObject('fact_sales_order', 1);
  const loadable = await putObject('dim_currency', 2);
  const event = sqsEventFactory(
    [
      s3EventFactory(blocked),
      s3EventFactory(loadable),
      s3EventFactory({ bucket: 'no-such-bucket', key: 'dim_design/x.parquet' }),
    ],
    { receiveCount: 1 },
  );
  const changed: [string, number][] = [];
  const handler = createLoadHandler({
    s3: client,
    warehouse: pool,
    metrics: quietMetrics,
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
  const { rows } = await pool.query('SELECT count(*)::int AS n FROM fact_sales_order');
  expect(rows[0].n).toBe(1);
});

it('still reports the message failed when the visibility cannot be changed', async () => {
  const release = await holdFactLock();
  const blocked = await putObject('fact_sales_order', 3);
  const event = sqsEventFactory([s3EventFactory(blocked)]);
  const logs: Record<string, unknown>[] = [];
  const handler = createLoadHandler({
    s3: client,
    warehouse: pool,
    metrics: quietMetrics,
    logger: createLogger({ service: 'load', level: 'debug', write: (line) => logs.push(JSON.parse(line)) }),
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
