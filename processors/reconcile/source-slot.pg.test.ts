import { Client } from 'pg';
import { silentLogger } from '../../core/logger';
import { createTestDatabase } from '../../test/support/pg';
import { metricsFor } from '../shared/metrics';
import { publishSourceSlot, SOURCE_SLOT_METRICS } from './source-slot';

let client: Client;
const SLOT = `reconcile_slot_${process.pid}`;

beforeAll(async () => {
  client = new Client({ connectionString: await createTestDatabase('reconcile_source_slot') });
  await client.connect();
});

afterAll(async () => {
  await client.query(
    'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1',
    [SLOT],
  );
  await client.end();
});

it('publishes the slot as the source sees it (retained WAL, lag, inactive), and nothing for a missing slot', async () => {
  const lines: Record<string, unknown>[] = [];
  const metrics = () => metricsFor({ stage: 'reconcile', write: (l) => lines.push(JSON.parse(l)) })();

  expect(await publishSourceSlot(client, SLOT, metrics(), silentLogger)).toBeNull();
  expect(lines).toEqual([]);

  await client.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [SLOT]);
  // WAL written after the slot's position is retained for it and not yet confirmed.
  await client.query('CREATE TABLE filler AS SELECT g FROM generate_series(1, 10000) g');
  const published = await publishSourceSlot(client, SLOT, metrics(), silentLogger);

  expect(published).toMatchObject({ active: false });
  expect(published!.retainedWalBytes).toBeGreaterThan(0);
  expect(published!.lagBytes).toBeGreaterThan(0);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatchObject({
    Stage: 'reconcile',
    [SOURCE_SLOT_METRICS.active]: 0,
    [SOURCE_SLOT_METRICS.retainedWalBytes]: published!.retainedWalBytes,
    [SOURCE_SLOT_METRICS.lagBytes]: published!.lagBytes,
  });
});
