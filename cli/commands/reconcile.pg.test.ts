import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { openLoadQueue } from '../../local/load-queue';
import { writeRuntimeInfo } from '../../local/runtime-info';
import { s3ClientFor, startS3rver, type LocalS3 } from '../../local/s3rver';
import { migrateWarehouse } from '../../processors/load/migrate';
import { runTotes } from '../../test/support/cli';
import { createTestDatabase } from '../../test/support/pg';

// `totes reconcile` against a data directory whose runtime.json names a real s3rver, and a real
// warehouse: the command's own wiring (the reconciler is tested in local/local-reconcile.pg.test.ts).

let root: string;
let s3: LocalS3;
let client: S3Client;
let warehouseUrl: string;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-reconcile-cli-'));
  s3 = await startS3rver({ dataDir: path.join(root, 's3'), buckets: ['ingestion', 'processed'] });
  client = s3ClientFor(s3.endpoint);
  await writeRuntimeInfo(root, {
    kinesisEndpoint: 'http://127.0.0.1:1',
    streamName: 'changes',
    s3Endpoint: s3.endpoint,
    ingestionBucket: 'ingestion',
    processedBucket: 'processed',
    pid: process.pid,
  });
  warehouseUrl = await createTestDatabase('reconcile_cli');
  const c = new Client({ connectionString: warehouseUrl });
  await c.connect();
  await migrateWarehouse(c).finally(() => c.end());
});
afterAll(async () => {
  client.destroy();
  await s3.stop();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('totes reconcile', () => {
  it('counts, then sends an unloaded Parquet object to the load queue', async () => {
    const day = new Date().toISOString().slice(0, 10).replace(/-/g, '/');
    const key = `dim_currency/${day}/09/never-loaded.parquet`;
    await client.send(new PutObjectCommand({ Bucket: 'processed', Key: key, Body: 'x' }));
    const base = ['reconcile', '--data-dir', root, '--warehouse-url', warehouseUrl, '--grace', '0'];

    const dry = await runTotes(...base, '--dry-run');
    expect(dry).toMatchObject({ code: 0 });
    expect(dry.out).toContain('load       1 outstanding, 0 done, 0 quarantined, 0 in flight; 0 sent again');
    expect(dry.out).toContain(`outstanding load: ${key}`);

    const real = await runTotes(...base, '--all');
    expect(real.out).toContain('1 sent again');
    const [message] = await openLoadQueue(root).receive(10);
    expect(JSON.parse(message.body).Records[0].s3.object.key).toBe(key);

    expect(await runTotes(...base, '--dead-letters')).toMatchObject({
      code: 0,
      out: '0 load dead letter(s): 0 sent again, 0 dropped (already loaded, or quarantined)\n',
    });
  });

  it('refuses bad usage, and says when the warehouse cannot be reached', async () => {
    expect((await runTotes('reconcile', '--data-dir', root)).code).toBe(2);
    expect((await runTotes('reconcile', '--warehouse-url', warehouseUrl, '--days', '0')).code).toBe(2);
    expect((await runTotes('reconcile', '--warehouse-url', warehouseUrl, '--all', '--days', '2')).code).toBe(
      2,
    );
    expect((await runTotes('reconcile', '--warehouse-url', warehouseUrl, '--grace', 'soon')).code).toBe(2);
    const down = await runTotes(
      'reconcile',
      '--data-dir',
      root,
      '--warehouse-url',
      'postgres://x@127.0.0.1:1/w',
    );
    expect(down.code).toBe(3);
    expect(down.err).toContain('cannot connect to the warehouse');
  });
});
