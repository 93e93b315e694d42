import { Client } from 'pg';
import { silentLogger } from '../../core/logger';
import { createTestDatabase } from '../../test/support/pg';
import { migrateWarehouse } from '../load/migrate';
import { metricsFor } from '../shared/metrics';
import { HEARTBEAT_FRESHNESS_METRIC, publishHeartbeatFreshness } from './heartbeat-freshness';

let client: Client;

beforeAll(async () => {
  client = new Client({ connectionString: await createTestDatabase('heartbeat_freshness') });
  await client.connect();
  await migrateWarehouse(client);
});

afterAll(() => client.end());

it('publishes nothing without a heartbeat (the alarm breaches), then the age of the newest one', async () => {
  const lines: Record<string, unknown>[] = [];
  const metrics = () => metricsFor({ stage: 'reconcile', write: (l) => lines.push(JSON.parse(l)) })();

  expect(await publishHeartbeatFreshness(client, metrics(), silentLogger)).toBeNull();
  expect(lines).toEqual([]);

  await client.query(
    `INSERT INTO "pipeline_heartbeat" ("slot_id", "slot_name", "_lsn", "_seq", "_commit_ts")
     VALUES (1, 'a', '0/10', 0, now() - interval '120 seconds'), (2, 'b', '0/20', 0, now() - interval '1 hour')`,
  );
  const age = await publishHeartbeatFreshness(client, metrics(), silentLogger);
  expect(age).toBeGreaterThanOrEqual(120);
  expect(age).toBeLessThan(3600);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatchObject({ Stage: 'reconcile', [HEARTBEAT_FRESHNESS_METRIC]: age });
  expect(JSON.stringify(lines[0])).toMatch(/"Unit":"Seconds"/);
});
