import type { S3Client } from '@aws-sdk/client-s3';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { Client, Pool } from 'pg';
import { createLogger } from '../../core/logger';
import { useLocalS3 } from '../../test/support/local-s3';
import { createTestDatabase, waitFor } from '../../test/support/pg';
import { s3EventFactory } from '../../test/support/s3-events';
import { objectOf, parquetOf, rowOf, at } from '../../test/support/warehouse-rows';
import { metricsFor } from '../shared/metrics';
import { createLoadHandler } from './create-handler';
import { migrateWarehouse } from './migrate';

// Found by `npm run chaos` (restart-warehouse): a restart ends the session of a load in flight. The
// query fails (handled: the load is retried), and the checked-out client also emits 'error', which
// with no listener ended the whole process (`totes up`; a Lambda's runtime likewise). The load is
// held on a lock so that its session is surely mid-load when pg_terminate_backend ends it, as a
// restart does (57P01).
const BUCKET = 'processed';
const local = useLocalS3([BUCKET]);
let client: S3Client;
beforeAll(() => ({ client } = local));

it('survives its warehouse session ending mid-load, and says so', async () => {
  const url = await createTestDatabase('load_connection_lost');
  const database = new URL(url).pathname.slice(1);
  const pool = new Pool({ connectionString: url, max: 2 });
  pool.on('error', () => undefined); // the idle side, covered by local-stack.pg.test.ts
  const blocker = new Client({ connectionString: url });
  await blocker.connect();
  const logs: Record<string, unknown>[] = [];
  try {
    const c = await pool.connect();
    await migrateWarehouse(c);
    c.release();
    const object = objectOf('dim_location', [rowOf('dim_location', 1, {}, at(1))]);
    await client.send(
      new PutObjectCommand({ Bucket: BUCKET, Key: object.key, Body: await parquetOf(object) }),
    );
    const handler = createLoadHandler({
      s3: client,
      warehouse: pool,
      logger: createLogger({ service: 'load', write: (line) => logs.push(JSON.parse(line)) }),
      metrics: metricsFor({ stage: 'load', write: () => undefined }),
    });
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE dim_location IN ACCESS EXCLUSIVE MODE');
    const loading = handler(s3EventFactory([{ bucket: BUCKET, key: object.key }])).catch((e: unknown) => e);
    const waiting = await waitFor('the load to wait on the lock', async () => {
      const { rows } = await blocker.query(
        `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`,
        [database],
      );
      return rows[0]?.pid as number | undefined;
    });
    await blocker.query('SELECT pg_terminate_backend($1)', [waiting]);
    await loading;
    await blocker.query('ROLLBACK');
    expect(logs.some((l) => l.msg === 'warehouse connection lost during a load')).toBe(true);
  } finally {
    await blocker.end();
    await pool.end();
  }
});
