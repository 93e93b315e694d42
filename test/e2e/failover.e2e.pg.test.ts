import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CaptureService } from '../../capture/capture-service';
import { KinesisSink } from '../../capture/kinesis-sink';
import { MemoryStateStore } from '../../capture/state-store';
import { createLogger } from '../../core/logger';
import { compareLsn } from '../../core/lsn';
import { ensureStream, kinesisClientFor, startKinesalite } from '../../local/kinesalite';
import { removeDataDir } from '../../local/postgres-placement';
import { StreamCollector, type FlatChange } from '../support/kinesis';
import { startOwnCluster } from '../support/own-cluster';
import { waitFor, withClient, withDatabase } from '../support/pg';
import { startStandby } from '../support/standby';

// Failover to a promoted standby, for real: a primary, a standby built from a low-level base backup
// that streams from it, pg_promote(), and capture pointed at the promoted node. The promoted node
// has the primary's system identifier but a new timeline, and reuses the LSNs past the switch point
// for other changes than the old primary wrote there. Capture must see it (IDENTIFY_SYSTEM against
// its state: `capture.source_changed`), resync under a newer epoch, and the stream folded the way the
// warehouse folds it (position order, a completed snapshot deleting what it no longer holds) must
// equal the new primary — with the old primary's last writes, at colliding LSNs, never winning.

jest.setTimeout(240_000);

type Row = Record<string, string | null>;

/**
 * What the load makes of the stream: changes applied in (epoch, LSN, ordinal) order; a table's
 * snapshot end marker deletes the keys no change of its epoch (the snapshot's rows) has touched.
 */
function foldLikeTheWarehouse(changes: FlatChange[], key: string): Map<string, Row> {
  const sorted = [...changes].sort((a, b) => a.epoch - b.epoch || compareLsn(a.lsn, b.lsn) || a.seq - b.seq);
  const rows = new Map<string, Row>();
  const epochOf = new Map<string, number>();
  for (const c of sorted) {
    if (c.op === 'snapshot_end') {
      for (const k of [...rows.keys()]) if (epochOf.get(k)! < c.epoch) rows.delete(k);
      continue;
    }
    const k = c.row[key]!;
    if (c.op === 'delete') rows.delete(k);
    else rows.set(k, { ...c.row });
    epochOf.set(k, c.epoch);
  }
  return rows;
}

async function itemsOf(url: string): Promise<Map<string, Row>> {
  return withClient(url, async (c) => {
    const { rows } = await c.query('SELECT id::text, name, qty::text FROM item ORDER BY id');
    return new Map(rows.map((r) => [r.id as string, r as Row]));
  });
}

it('detects a promoted standby, resyncs under a new epoch and never lets the old positions win', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-failover-'));
  // The primary keeps its WAL for the standby, which streams it from the backup's start.
  const primary = await startOwnCluster(path.join(root, 'primary'), { wal_keep_size: '1GB' });
  const kinesis = await startKinesalite();
  const client = kinesisClientFor(kinesis.endpoint);
  const lines: string[] = [];
  const logger = createLogger({
    service: 'capture',
    write: (l) => (lines.push(l), process.env.DEBUG_CAPTURE && console.log(l)),
  });
  let standby: Awaited<ReturnType<typeof startStandby>> | undefined;
  let primaryDir: string | undefined;
  try {
    await withClient(primary.url, (c) => c.query('CREATE DATABASE shop'));
    const primaryUrl = withDatabase(primary.url, 'shop');
    primaryDir = await withClient(primaryUrl, async (c) => {
      await c.query('CREATE TABLE item (id int PRIMARY KEY, name text NOT NULL, qty int NOT NULL)');
      await c.query('CREATE TABLE filler (id int)');
      await c.query("INSERT INTO item SELECT i, 'item ' || i, i FROM generate_series(1, 20) i");
      return (await c.query('SHOW data_directory')).rows[0].data_directory as string;
    });
    await ensureStream(client, 'failover', 1);
    const collector = new StreamCollector(client, 'failover');
    const state = new MemoryStateStore();
    const capture = (url: string) => {
      const service = new CaptureService(
        {
          sourceUrl: url,
          tables: ['item'],
          slot: 'failover_slot',
          publication: 'failover_pub',
          heartbeatIntervalMs: 200,
          statsIntervalMs: 1000,
        },
        { sink: new KinesisSink({ client, streamName: 'failover' }), state, logger },
      );
      const running = service.run();
      running.catch(() => undefined);
      return { service, running };
    };
    const until = (what: string, done: () => boolean) =>
      waitFor(
        what,
        async () => {
          await collector.poll();
          return done() ? true : undefined;
        },
        60_000,
      );

    // 1. Capture on the primary: the snapshot, then streamed changes.
    const first = capture(primaryUrl);
    await until('the first snapshot', () => collector.markersOf('item').length === 1);
    await withClient(primaryUrl, (c) => c.query("UPDATE item SET name = 'streamed' WHERE id = 1"));
    await until('a streamed change', () => collector.ofTable('item').some((c) => c.row.name === 'streamed'));
    const before = (await state.load())!;
    expect(before.timeline).toBe(1);

    // 2. A standby from a low-level base backup, caught up, then promoted: timeline 2.
    standby = await startStandby(primaryUrl);
    await withClient(primaryUrl, (c) => c.query("UPDATE item SET name = 'replicated' WHERE id = 2"));
    await standby.caughtUp();
    await standby.promote();

    // 3. The old primary goes on for a moment (the writes a failover loses), capture still on it:
    //    enough WAL first that these changes sit at LSNs the new primary will use for others.
    await withClient(primaryUrl, async (c) => {
      await c.query('INSERT INTO filler SELECT generate_series(1, 50000)');
      await c.query("UPDATE item SET qty = qty + 1000, name = 'lost write' WHERE id <= 5");
      await c.query('DELETE FROM item WHERE id = 20');
      await c.query("INSERT INTO item VALUES (100, 'only on the old primary', 1)");
    });
    await until('the old primary’s last writes', () =>
      collector.ofTable('item').some((c) => c.row.id === '100'),
    );
    first.service.stop();
    await first.running;
    const oldEpoch = before.epoch;

    // 4. The promoted node: the logical slot did not come along (PostgreSQL 17 synchronises only
    //    failover slots, and only when configured), and its own writes on the new timeline.
    const slots = await withClient(
      standby.url,
      async (c) => (await c.query('SELECT slot_name FROM pg_replication_slots')).rows,
    );
    expect(slots).toEqual([]);
    await withClient(standby.url, async (c) => {
      await c.query("UPDATE item SET name = 'new primary' WHERE id IN (6, 7)");
      await c.query('DELETE FROM item WHERE id = 19');
      await c.query("INSERT INTO item VALUES (200, 'only on the new primary', 2)");
    });

    // 5. Capture pointed at the promoted standby.
    const second = capture(standby.url);
    await until('the resync snapshot', () => collector.markersOf('item').length === 2);
    await withClient(standby.url, (c) =>
      c.query("UPDATE item SET qty = 0, name = 'after failover' WHERE id = 3"),
    );
    await until('a change streamed from the new primary', () =>
      collector.ofTable('item').some((c) => c.row.name === 'after failover'),
    );
    second.service.stop();
    await second.running;

    const changed = lines.map((l) => JSON.parse(l)).find((l) => l.event === 'capture.source_changed');
    expect(changed).toMatchObject({
      before: { systemIdentifier: before.systemIdentifier, timeline: 1 },
      // A promoted standby keeps the primary's system identifier; the timeline tells them apart.
      now: { systemIdentifier: before.systemIdentifier, timeline: 2 },
    });
    const after = (await state.load())!;
    expect(after.timeline).toBe(2);
    expect(after.epoch).toBeGreaterThan(oldEpoch);
    const items = collector.ofTable('item');
    const newEpochChanges = items.filter((c) => c.epoch === after.epoch);
    expect(new Set(items.map((c) => c.epoch))).toEqual(new Set([oldEpoch, after.epoch]));
    // The collision is real: the old primary's last writes sit at LSNs at or past the new epoch's
    // first position, so ordering by position alone would let them win over the new primary.
    const lostWrites = items.filter((c) => c.epoch === oldEpoch && c.row.name === 'lost write');
    const newestLost = lostWrites
      .map((c) => c.lsn)
      .sort(compareLsn)
      .at(-1)!;
    const firstNew = newEpochChanges.map((c) => c.lsn).sort(compareLsn)[0]!;
    expect(compareLsn(newestLost, firstNew)).toBeGreaterThanOrEqual(0);

    expect(
      foldLikeTheWarehouse(
        collector.changes.filter((c) => c.table === 'item'),
        'id',
      ),
    ).toEqual(await itemsOf(standby.url));
  } finally {
    await standby?.stop();
    client.destroy();
    await kinesis.stop();
    await primary.stop();
    if (primaryDir) fs.rmSync(`${primaryDir}-standby`, { recursive: true, force: true });
    removeDataDir(root);
  }
});
