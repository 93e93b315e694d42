import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { GetRecordsCommand, GetShardIteratorCommand, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { createTestDatabase, withClient } from '../test/support/pg';
import { seedReportingWarehouse } from '../test/support/reporting-warehouse';
import { embeddedUrl, gatherHealth, gatherLocalFacts, gatherSourceFacts } from './gather-health';
import { ensureStream, kinesisClientFor, startKinesalite, type LocalKinesis } from './kinesalite';
import { writeRuntimeInfo } from './runtime-info';
import { s3ClientFor, startS3rver, type LocalS3 } from './s3rver';

let warehouseUrl: string;
let root: string;

beforeAll(async () => {
  ({ warehouseUrl } = await seedReportingWarehouse('gather_health'));
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-health-'));
}, 120_000);

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('gatherHealth from the warehouse alone (real Postgres)', () => {
  it('reports freshness per table from the bookkeeping; old data is only a warning', async () => {
    const report = await gatherHealth({ warehouseUrl });
    expect(report.scope).toEqual({ warehouse: true, source: false, local: false });
    const expected = await withClient(warehouseUrl, async (c) =>
      (
        await c.query(
          `SELECT "warehouse_table", extract(epoch FROM now() - "newest_commit_ts")::float8 AS age
             FROM "pipeline_progress" ORDER BY "warehouse_table", "source_table"`,
        )
      ).rows.map((r) => r.warehouse_table),
    );
    expect(report.freshness.map((f) => f.warehouseTable)).toEqual(expected);
    expect(report.freshness.every((f) => f.ageSeconds! > 24 * 3600)).toBe(true); // loaded as of 2025-02-28
    expect(report.throughput!.objectsLastHour).toBe(22); // two snapshots of 11 tables, just loaded
    expect(report.problems.map((p) => p.code)).toEqual(['warehouse-stale']);
    expect(report).toMatchObject({ healthy: true, status: 'degraded' });
  });

  it('an unreachable warehouse makes the report unhealthy, with the reason', async () => {
    const bad = new URL(warehouseUrl);
    bad.password = 'wrong';
    const report = await gatherHealth({ warehouseUrl: bad.toString() });
    expect(report.healthy).toBe(false);
    expect(report.problems[0]).toMatchObject({
      code: 'warehouse-unreachable',
      message: /password authentication failed/,
    });
  });
});

describe('gatherSourceFacts (real Postgres)', () => {
  it('reads the slot: inactive, its WAL status and lag in bytes', async () => {
    const url = await createTestDatabase('gather_health_slot');
    const slot = `health_${process.pid}`;
    await withClient(url, async (c: Client) => {
      expect(await gatherSourceFacts(c, slot)).toEqual({ reachable: true, slotName: slot, slot: null });
      await c.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
      try {
        await c.query('CREATE TABLE t AS SELECT generate_series(1, 10000) AS n');
        const facts = await gatherSourceFacts(c, slot);
        expect(facts.slot).toMatchObject({ active: false, walStatus: 'reserved', lagSeconds: null });
        expect(facts.slot!.lagBytes).toBeGreaterThan(100_000);
        expect(facts.slot!.retainedWalBytes).toBeGreaterThanOrEqual(facts.slot!.lagBytes!);
        // Slot names are cluster-wide: from another database it is not capture's slot.
        const elsewhere = await withClient(warehouseUrl, (w: Client) => gatherSourceFacts(w, slot));
        expect(elsewhere.slot).toBeNull();
      } finally {
        await c.query('SELECT pg_drop_replication_slot($1)', [slot]);
      }
    });
  });
});

describe('gatherLocalFacts on a data directory (real s3rver and kinesalite)', () => {
  let s3: LocalS3;
  let kinesis: LocalKinesis;
  let s3Client: S3Client;
  let dataDir: string;

  beforeAll(async () => {
    dataDir = path.join(root, 'data');
    s3 = await startS3rver({ dataDir: path.join(dataDir, 's3'), buckets: ['ingest', 'processed'] });
    kinesis = await startKinesalite();
    s3Client = s3ClientFor(s3.endpoint);
    const kc = kinesisClientFor(kinesis.endpoint);
    await ensureStream(kc, 'changes', 1);
    await kc.send(
      new PutRecordsCommand({
        StreamName: 'changes',
        Records: [1, 2, 3].map((n) => ({ Data: Buffer.from(`r${n}`), PartitionKey: 'k' })),
      }),
    );
    kc.destroy();
  });

  afterAll(async () => {
    s3Client?.destroy();
    await s3?.stop();
    await kinesis?.stop();
  });

  const put = (bucket: string, key: string) =>
    s3Client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: 'x' }));

  it('says the stack is not running when runtime.json is absent, still counting dead letters', async () => {
    fs.mkdirSync(path.join(dataDir, 'triggers'), { recursive: true });
    fs.writeFileSync(
      path.join(dataDir, 'triggers', 'load.dead-letter.jsonl'),
      `${JSON.stringify({ at: '2025-02-28T10:00:00.000Z', error: 'Error: first' })}\n` +
        `${JSON.stringify({ at: '2025-02-28T11:00:00.000Z', error: 'Error: connection refused' })}\n`,
    );
    const facts = await gatherLocalFacts({ dataDir });
    expect(facts).toMatchObject({
      running: false,
      notRunningReason: expect.stringMatching(/runtime\.json does not exist/),
      outstanding: { quarantined: 0, rejected: 0, deadLettered: 2 },
      lastError: { at: '2025-02-28T11:00:00.000Z', stage: 'load', message: 'Error: connection refused' },
      snapshotCompleted: false,
    });
  });

  it('counts the stream backlog, objects waiting per stage and quarantine', async () => {
    await writeRuntimeInfo(dataDir, {
      kinesisEndpoint: kinesis.endpoint,
      streamName: 'changes',
      s3Endpoint: s3.endpoint,
      ingestionBucket: 'ingest',
      processedBucket: 'processed',
      pid: process.pid,
    });
    fs.writeFileSync(path.join(dataDir, 'capture-state.json'), '{}');
    await put('ingest', 'totesys/sales_order/schema=0123456789abcdef/2025/02/28/09/a.csv');
    await put('ingest', 'errors/processing-failed/2025/02/28/09/e1');
    await put('processed', 'fact_sales_order/2025/02/28/09/loaded.parquet');
    await put('processed', 'fact_sales_order/2025/02/28/09/waiting.parquet');
    await put('processed', 'fact_sales_order/2025/02/28/09/refused.parquet');
    await put('processed', 'quarantine/load/fact_sales_order/2025/02/28/09/refused.parquet');
    await put('processed', 'quarantine/load/fact_sales_order/2025/02/28/09/refused.parquet.reason.json');
    await put('processed', 'quarantine/transform/sales_order/2025/02/28/09/abc.rejected.jsonl');
    await put('processed', 'quarantine/transform/sales_order/2025/02/28/09/def.object.jsonl');
    const loadLog = {
      query: async (_sql: string, params: unknown[]) => ({
        rows: (params[0] as string[])
          .filter((k) => k.endsWith('loaded.parquet'))
          .map((k) => ({ object_key: k })),
      }),
    };
    const facts = await gatherLocalFacts({ dataDir, warehouse: loadLog as never });
    expect(facts).toMatchObject({
      running: true,
      snapshotCompleted: true,
      stream: { backlogRecords: 3, backlogCapped: false },
      transform: { waiting: 1 },
      load: { waiting: 1 },
      // As `totes verify` counts them: the transform's two, the load's copy (not its reason file),
      // the delivery stream's error object, the two dead-lettered events.
      outstanding: { quarantined: 3, rejected: 1, deadLettered: 2 },
    });
    expect(Date.parse(facts.stream!.oldestArrivalAt!)).toBeLessThanOrEqual(Date.now());

    // The delivery stream made two records durable: one is left.
    const kc = kinesisClientFor(kinesis.endpoint);
    const it = await kc.send(
      new GetShardIteratorCommand({
        StreamName: 'changes',
        ShardId: 'shardId-000000000000',
        ShardIteratorType: 'TRIM_HORIZON',
      }),
    );
    const { Records = [] } = await kc.send(new GetRecordsCommand({ ShardIterator: it.ShardIterator }));
    kc.destroy();
    fs.mkdirSync(path.join(dataDir, 'delivery-stream'), { recursive: true });
    fs.writeFileSync(
      path.join(dataDir, 'delivery-stream', 'checkpoint.json'),
      JSON.stringify({
        version: 1,
        streamName: 'changes',
        deliveryStreamName: 'local',
        shards: { 'shardId-000000000000': Records[1].SequenceNumber },
        updatedAt: new Date().toISOString(),
      }),
    );
    // The transform trigger has handled everything up to now.
    fs.writeFileSync(
      path.join(dataDir, 'triggers', 'transform.watermark.json'),
      JSON.stringify({ handledBefore: new Date(Date.now() + 2000).toISOString() }),
    );
    const later = await gatherLocalFacts({ dataDir, warehouse: loadLog as never });
    expect(later.stream).toMatchObject({ backlogRecords: 1 });
    expect(later.transform).toEqual({ waiting: 0, oldestWaitingAt: null });
  });

  it('finds an embedded cluster from postmaster.pid and its password file', () => {
    const dir = path.join(root, 'embedded');
    fs.mkdirSync(path.join(dir, 'warehouse'), { recursive: true });
    expect(embeddedUrl(dir, 'warehouse')).toBeNull();
    fs.writeFileSync(path.join(dir, 'warehouse', 'postmaster.pid'), '1234\n/data\n1700000000\n54330\n/tmp\n');
    fs.writeFileSync(path.join(dir, 'warehouse-password'), 'p@ss\n');
    expect(embeddedUrl(dir, 'warehouse')).toBe('postgres://postgres:p%40ss@127.0.0.1:54330/warehouse');
  });
});
