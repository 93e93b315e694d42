import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'pg';
import { silentLogger } from '../core/logger';
import { createLoadHandler } from '../processors/load/create-handler';
import { decodeS3ObjectKey } from '../processors/shared/s3-event';
import { migrateWarehouse } from '../processors/load/migrate';
import { createTestDatabase, waitFor, withClient } from '../test/support/pg';
import { parquetOf, scenarioObjects } from '../test/support/warehouse-rows';
import { startQueuedS3Trigger, type QueuedS3Trigger } from './queue-event-source';
import { s3ClientFor, startS3rver, type LocalS3 } from './s3rver';

// S3 → queue → load on the local stack, against a warehouse that goes away: the objects wait in
// the on-disk queue for as long as the outage lasts, and all load once it is back.

const BUCKET = 'processed';
let s3: LocalS3;
let client: S3Client;
let root: string;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-load-queue-'));
  s3 = await startS3rver({ dataDir: path.join(root, 's3'), buckets: [BUCKET] });
  client = s3ClientFor(s3.endpoint);
});
afterAll(async () => {
  client.destroy();
  await s3.stop();
  fs.rmSync(root, { recursive: true, force: true });
});

/** A TCP relay to the warehouse that can refuse connections (and cut open ones), like a server that is down. */
async function switchableRelay(
  target: URL,
): Promise<{ port: number; down(): Promise<void>; up(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [socket, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    socket.pipe(upstream).pipe(socket);
  });
  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
    });
  const port = await listen(0);
  return {
    port,
    down: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
    up: async () => {
      await listen(port);
    },
  };
}

it('waits out a warehouse outage in the queue, then loads every object by itself', async () => {
  // Prepare: a migrated warehouse reached through a relay, the queued load path in front of it.
  const warehouseUrl = new URL(await createTestDatabase('load_queue_outage'));
  await withClient(warehouseUrl.toString(), (c) => migrateWarehouse(c));
  const relay = await switchableRelay(warehouseUrl);
  const viaRelay = new URL(warehouseUrl);
  viaRelay.hostname = '127.0.0.1';
  viaRelay.port = String(relay.port);
  const pool = new Pool({ connectionString: viaRelay.toString(), max: 2, connectionTimeoutMillis: 2_000 });
  pool.on('error', () => undefined);
  let load: QueuedS3Trigger | undefined;
  try {
    load = await startQueuedS3Trigger({
      name: 'load',
      s3,
      client,
      bucket: BUCKET,
      suffix: '.parquet',
      handler: createLoadHandler({ s3: client, warehouse: pool }),
      concurrency: 2,
      dir: path.join(root, 'queues', 'load'),
      logger: silentLogger,
      visibilityTimeoutMs: 150,
      maxReceiveCount: 1_000,
      batchSize: 3,
      pollIntervalMs: 20,
    });
    const queue = load.queue;

    // Act 1: the warehouse refuses connections while the objects arrive.
    await relay.down();
    // Ten objects (dimensions, staging and facts): every one is tried and refused three times, and
    // under a loaded CI machine the whole scenario's 22 took longer than the wait (seen in CI).
    const objects = scenarioObjects().slice(0, 10);
    for (const object of objects)
      await client.send(
        new PutObjectCommand({ Bucket: BUCKET, Key: object.key, Body: await parquetOf(object) }),
      );

    // Assess 1: every object waits in the queue and has been tried, and failed, several times.
    await waitFor(
      'every message tried at least 3 times',
      async () => {
        // A notification may come twice (S3 events are at-least-once, and the trigger's catch-up
        // listing can overlap its subscription): count objects, not messages.
        const messages = fs
          .readdirSync(queue.messagesDir)
          .filter((f) => f.endsWith('.json'))
          .map((f) => JSON.parse(fs.readFileSync(path.join(queue.messagesDir, f), 'utf8')));
        const keys = new Set(
          messages.map((m) => decodeS3ObjectKey(JSON.parse(m.body).Records[0].s3.object.key)),
        );
        // A receive is counted when it starts, a failure when it ends: wait for both.
        return keys.size === objects.length &&
          messages.every((m) => m.receiveCount >= 3) &&
          load!.stats.messagesFailed >= 3 * objects.length
          ? true
          : undefined;
      },
      120_000,
    );
    expect(load.stats.messagesFailed).toBeGreaterThanOrEqual(3 * objects.length);
    expect(await withClient(warehouseUrl.toString(), (c) => c.query('SELECT 1 FROM load_log'))).toMatchObject(
      {
        rowCount: 0,
      },
    );
    expect(load.stats.deadLettered).toBe(0);

    // Act 2: the warehouse comes back; nobody intervenes.
    await relay.up();

    // Assess 2: everything loads, and the queue empties.
    await waitFor(
      'every object loaded',
      () =>
        withClient(warehouseUrl.toString(), async (c) => {
          const { rows } = await c.query('SELECT count(*)::int AS n FROM load_log');
          return rows[0].n === objects.length ? true : undefined;
        }),
      120_000,
    );
    await waitFor('the queue to empty', async () => {
      const depth = await queue.depth();
      return depth.visible + depth.inFlight === 0 ? depth : undefined;
    });
    expect((await queue.depth()).deadLetters).toBe(0);
  } finally {
    await load?.stop();
    await pool.end();
    await relay.down().catch(() => undefined);
  }
}, 300_000);
