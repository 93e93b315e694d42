import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger, silentLogger } from '../core/logger';
import { installTotesys } from '../totesys';
import { StreamCollector } from '../test/support/kinesis';
import { createTestDatabase, waitFor, withClient } from '../test/support/pg';
import { findFreePort } from './embedded-postgres';
import { kinesisClientFor } from './kinesalite';
import { INGESTION_BUCKET, PROCESSED_BUCKET, startLocalStack } from './local-stack';
import { localReconcileDeps } from './local-reconcile';
import { reconcile } from '../processors/reconcile/reconcile';
import { MIXED_ROOT } from '../core/mixed-csv';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { s3ClientFor } from './s3rver';

async function s3Keys(endpoint: string, bucket: string, prefix: string): Promise<string[]> {
  const client = s3ClientFor(endpoint);
  try {
    const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    return (listed.Contents ?? []).map((o) => o.Key!);
  } finally {
    client.destroy();
  }
}

// The local stack against an existing Postgres (`totes up --source-url`): kinesalite on disk and
// the capture process, supervised. The embedded-source variant runs end to end in test/e2e.

/** Waits until the warehouse's currency 3 has `code`. */
const currencyInWarehouse = (warehouseUrl: string, code: string, what: string) =>
  waitFor(
    what,
    () =>
      withClient(warehouseUrl, async (c) => {
        const { rows } = await c.query('SELECT currency_code FROM dim_currency WHERE currency_id = 3');
        return rows[0]?.currency_code === code ? true : undefined;
      }),
    60_000,
  );

it('captures a seeded source into the on-disk stream, restarts capture if it dies, outlives the warehouse ending its connections, and carries on after a restart', async () => {
  const url = await createTestDatabase('local_stack');
  const warehouseUrl = await createTestDatabase('local_stack_warehouse');
  await withClient(url, (c) => installTotesys(c, { scale: 0.02 }));
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-stack-'));
  const lines: string[] = [];
  let stack = await startLocalStack({
    dataDir,
    sourceUrl: url,
    warehouseUrl,
    logger: silentLogger,
    onCaptureOutput: (l) => (lines.push(l), process.env.DEBUG_STACK && console.log(Date.now(), l)),
  });
  try {
    let client = kinesisClientFor(stack.kinesisEndpoint);
    let collector = new StreamCollector(client, stack.streamName);
    const sourceRows = await withClient(url, async (c) => {
      const { rows } = await c.query('SELECT count(*)::int AS n FROM sales_order');
      return rows[0].n as number;
    });
    await waitFor(
      'the snapshot in the stream',
      async () => {
        await collector.poll();
        // Tables reach the stream in foreign-key order and on different shards: wait for all of them.
        const tables = new Set(collector.changes.map((c) => c.table));
        // At-least-once: a put that timed out on a loaded machine and was sent again repeats its
        // records on the stream (capture/kinesis-sink.ts), so count keys, not changes.
        const keys = new Set(collector.ofTable('sales_order').map((c) => c.row.sales_order_id));
        return tables.size === 11 && keys.size === sourceRows ? true : undefined;
      },
      60_000,
    ).catch((e: Error) => {
      // What arrived, so a timeout says which part is missing.
      const tables = [...new Set(collector.changes.map((c) => c.table))].sort().join(', ');
      const sales = collector.ofTable('sales_order');
      const keys = new Set(sales.map((c) => c.row.sales_order_id)).size;
      throw new Error(
        `${e.message}; tables seen: ${tables}; sales_order ${sales.length} changes, ${keys} keys of ${sourceRows}; ` +
          `records ${collector.records}; capture said: ${lines.slice(-5).join(' | ')}`,
      );
    });
    expect(new Set(collector.changes.map((c) => c.table)).size).toBe(11);
    // Capture runs as in AWS: its records go on the stream gzip (core/record-compression.ts).
    expect(collector.gzipRecords).toBeGreaterThan(0);

    // The supervisor brings capture back after a crash.
    const firstPid = stack.capture.pid!;
    process.kill(firstPid, 'SIGKILL');
    await waitFor(
      'capture to be restarted',
      () => (stack.capture.pid && stack.capture.pid !== firstPid ? true : undefined),
      30_000,
    );
    await withClient(url, (c) => c.query("UPDATE currency SET currency_code = 'CHF' WHERE currency_id = 3"));
    await waitFor(
      'the update after the restart',
      async () => {
        await collector.poll();
        return collector.ofTable('currency').some((c) => c.op === 'update') ? true : undefined;
      },
      30_000,
    );
    expect(stack.capture.restartCount).toBe(1);
    // …and through the local Firehose, transform and load into the warehouse.
    await currencyInWarehouse(warehouseUrl, 'CHF', 'the update in the warehouse');
    // Objects load in any order (the currency update's object may land before the facts' objects):
    // wait for the facts too, rather than read them the moment the update is there.
    const salesFacts = await waitFor(
      'every sales order in the warehouse',
      () =>
        withClient(warehouseUrl, async (c) => {
          const n = (await c.query('SELECT count(*)::int AS n FROM fact_sales_order')).rows[0].n as number;
          return n >= sourceRows ? n : undefined;
        }),
      60_000,
    );
    expect(salesFacts).toBe(sourceRows);
    expect(stack.transform.stats.invocations).toBeGreaterThan(0);
    // Fast mode by default: mixed-table objects (no dynamic partitioning), each transformed straight
    // into its tables' Parquet (no per-table CSV objects) by transform, which runs with load on
    // worker threads of their own.
    expect(stack.freshness).toBe('fast');
    const mixed = await s3Keys(stack.s3Endpoint, INGESTION_BUCKET, MIXED_ROOT);
    expect(mixed.length).toBeGreaterThan(0);
    expect(await s3Keys(stack.s3Endpoint, INGESTION_BUCKET, 'totesys/sales_order/')).toEqual([]);
    expect(stack.workers?.transform.threadIds[0]).toBeGreaterThan(0);
    expect(stack.workers?.load.threadIds[0]).toBeGreaterThan(0);
    // The reconciler counts a mixed object as done once transform wrote its manifest: with no grace
    // period, nothing of fast mode's is left outstanding (each new heartbeat object is transformed
    // within a second).
    const reconcileS3 = s3ClientFor(stack.s3Endpoint);
    await withClient(warehouseUrl, async (warehouse) => {
      const deps = localReconcileDeps({
        dataDir,
        s3: reconcileS3,
        ingestionBucket: INGESTION_BUCKET,
        processedBucket: PROCESSED_BUCKET,
        warehouse,
        logger: silentLogger,
      });
      await waitFor(
        'no fast-mode object outstanding',
        async () => {
          const result = await reconcile(deps, { dryRun: true, graceMs: 0 });
          return result.counts.transform.done >= mixed.length && result.outstanding.length === 0
            ? true
            : undefined;
        },
        30_000,
      );
    }).finally(() => reconcileS3.destroy());
    expect(stack.load.stats.deadLettered).toBe(0);
    // Capture wrote nothing before the delivery stream's starting position (LATEST) was fixed.
    expect(stack.delivery.metrics().recordsBeforeStart).toBe(0);

    // The warehouse ends every connection (a restart, a failover, an idle timeout): nothing in the
    // stack crashes on its pooled, idle connections, and the next change still lands.
    const ended = await withClient(warehouseUrl, async (c) => {
      const { rowCount } = await c.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()`,
      );
      return rowCount ?? 0;
    });
    expect(ended).toBeGreaterThan(0);
    await withClient(url, (c) => c.query("UPDATE currency SET currency_code = 'SEK' WHERE currency_id = 3"));
    await currencyInWarehouse(warehouseUrl, 'SEK', 'the update after the warehouse ended its connections');
    client.destroy();
    await stack.stop();

    // A new stack on the same data directory finds the stream on disk and the completed snapshot.
    stack = await startLocalStack({ dataDir, sourceUrl: url, warehouseUrl, logger: silentLogger });
    client = kinesisClientFor(stack.kinesisEndpoint);
    collector = new StreamCollector(client, stack.streamName);
    await withClient(url, (c) => c.query("UPDATE currency SET currency_code = 'JPY' WHERE currency_id = 3"));
    await waitFor(
      'the second update',
      async () => {
        await collector.poll();
        return collector.ofTable('currency').some((c) => c.row.currency_code === 'JPY') ? true : undefined;
      },
      30_000,
    );
    expect(collector.ofTable('sales_order').filter((c) => c.op === 'snapshot')).toHaveLength(sourceRows); // not re-snapshotted
    expect(lines.some((l) => l.includes('"snapshot finished"'))).toBe(true);
    client.destroy();
  } finally {
    await stack.stop();
  }
  fs.rmSync(dataDir, { recursive: true, force: true });
}, 120_000);

it('stops every part it started when one part fails, and never starts capture then', async () => {
  // Arrange: a warehouse nobody listens on; the other parts (kinesalite, s3rver, the stage
  // workers) are starting when its connection is refused.
  const url = await createTestDatabase('local_stack_failing');
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-stack-failing-'));
  const servers = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPServerWrap').length;
  const before = servers();
  const lines: { msg: string }[] = [];
  const logger = createLogger({ service: 'test', write: (line) => lines.push(JSON.parse(line)) });

  // Act
  const started = startLocalStack({
    dataDir,
    sourceUrl: url,
    warehouseUrl: `postgres://nobody:nothing@127.0.0.1:${await findFreePort()}/warehouse`,
    logger,
  });

  // Assess: the warehouse's own error; no server of the stack left listening; capture not started.
  await expect(started).rejects.toThrow(/ECONNREFUSED/);
  // (A closed server's handle goes a moment after its close() has called back.)
  await waitFor("the stack's servers closed", () => (servers() === before ? true : undefined), 10_000);
  expect(lines.map((l) => l.msg)).not.toContain('capture started');
  expect(fs.existsSync(path.join(dataDir, 'runtime.json'))).toBe(false);
  fs.rmSync(dataDir, { recursive: true, force: true });
}, 60_000);
