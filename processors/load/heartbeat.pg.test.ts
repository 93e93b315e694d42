import { Client } from 'pg';
import type { Change } from '../../core/change-event';
import { HEARTBEAT_COLUMNS, HEARTBEAT_SOURCE_TABLE, heartbeatChange } from '../../core/pipeline-heartbeat';
import { targetTableOf, toWarehouseRows } from '../../core/star-mapping';
import { createTestDatabase } from '../../test/support/pg';
import { decodeParquet, encodeParquet } from '../shared/parquet-codec';
import { applyBatch } from './apply-batch';
import { prepareBatch } from './load-batch';
import { migrateWarehouse } from './migrate';

// The heartbeat's last two stages against real Postgres: transform's mapping and Parquet, then
// load, into pipeline_heartbeat (migration 005), in any order and with repeats.

let client: Client;

beforeAll(async () => {
  client = new Client({ connectionString: await createTestDatabase('heartbeat_load') });
  await client.connect();
  await migrateWarehouse(client);
});

afterAll(() => client.end());

const beat = (slot: string, lsn: string, ts: string): Change => ({
  ...heartbeatChange({ slot, emittedAt: ts }, { lsn, seq: 0, ts }),
  epoch: 7,
});

/** One heartbeat object as transform writes it, loaded as the load handler does. */
async function loadHeartbeats(key: string, changes: Change[]) {
  const target = targetTableOf(HEARTBEAT_SOURCE_TABLE);
  const mapped = toWarehouseRows(HEARTBEAT_SOURCE_TABLE, HEARTBEAT_COLUMNS, changes);
  expect(mapped.rejected).toEqual([]);
  const batch = prepareBatch(await decodeParquet(await encodeParquet(target, mapped.rows)));
  return applyBatch(client, batch, { objectKey: key });
}

it('keeps the newest heartbeat per slot, whatever the order and repeats of delivery', async () => {
  const a = beat('totes_slot', '0/100', '2026-12-01T10:00:00.000001Z');
  const b = beat('totes_slot', '0/200', '2026-12-01T10:00:10.000002Z');
  const c = beat('totes_slot', '0/300', '2026-12-01T10:00:20.000003Z');
  const other = beat('other_slot', '0/250', '2026-12-01T10:00:15.000000Z');
  await loadHeartbeats('pipeline_heartbeat/k3', [c]);
  await loadHeartbeats('pipeline_heartbeat/k1', [a, other]);
  const repeat = await loadHeartbeats('pipeline_heartbeat/k1', [a, other]);
  await loadHeartbeats('pipeline_heartbeat/k2', [b]);
  expect(repeat.duplicate).toBe(true);
  const { rows } = await client.query(
    `SELECT "slot_name", "newest_commit_ts", "emitted_at" FROM "rpt_pipeline_heartbeat" ORDER BY 1`,
  );
  expect(rows).toEqual([
    { slot_name: 'other_slot', newest_commit_ts: new Date('2026-12-01T10:00:15.000Z'), emitted_at: other.ts },
    { slot_name: 'totes_slot', newest_commit_ts: new Date('2026-12-01T10:00:20.000Z'), emitted_at: c.ts },
  ]);
  // The heartbeat is not a business table: the per-table freshness leaves it out.
  const tables = await client.query(`SELECT "source_table" FROM "rpt_pipeline_tables"`);
  expect(tables.rows).toEqual([]);
  const progress = await client.query(`SELECT "source_table" FROM "pipeline_progress"`);
  expect(progress.rows).toEqual([{ source_table: HEARTBEAT_SOURCE_TABLE }]);
});
