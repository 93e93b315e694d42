import { lsnToBigInt, type Lsn } from '../core/lsn';
import { createTestDatabase, waitFor, withClient } from '../test/support/pg';
import { ReplicationStream } from './replication-stream';

// What the server records from capture's Standby Status Updates: the confirmed position exactly,
// and a reply_time from the client's clock (same machine, same clock as the server's now()).
const SLOT = 'stream_status_slot';
let url: string;

beforeAll(async () => {
  url = await createTestDatabase('replication_stream');
  await withClient(url, async (c) => {
    await c.query('CREATE TABLE t (id int PRIMARY KEY, v text)');
    await c.query('CREATE PUBLICATION stream_pub FOR TABLE t');
    await c.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [SLOT]);
  });
});

afterAll(async () => {
  await withClient(url, (c) => c.query('SELECT pg_drop_replication_slot($1)', [SLOT]));
});

it('confirms exactly the LSN acknowledged, with a reply_time that is now, not a week ahead', async () => {
  // Arrange: one committed transaction, streamed until its commit arrives.
  const started = await withClient(url, async (c) => {
    await c.query("INSERT INTO t VALUES (1, 'a')");
    return (await c.query<{ now: Date }>('SELECT now() AS now')).rows[0].now;
  });
  let commitEnd: Lsn | undefined;
  const stream = new ReplicationStream(
    { connectionString: url, slot: SLOT, publication: 'stream_pub' },
    {
      onMessage: (m) => {
        if (m.tag === 'commit') commitEnd = m.commitEndLsn as Lsn;
      },
      onKeepalive: () => undefined,
    },
  );
  const running = stream.run();
  try {
    const end = await waitFor('the commit', () => commitEnd);

    // Act
    await stream.acknowledge(end);

    // Assess: the slot is confirmed at the commit's end, and reply_time is between the start and now.
    const status = await waitFor('the status update', () =>
      withClient(url, async (c) => {
        const { rows } = await c.query<{ confirmed: string; replied: Date | null; now: Date }>(
          `SELECT s.confirmed_flush_lsn::text AS confirmed, r.reply_time AS replied, now() AS now
             FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid
            WHERE s.slot_name = $1`,
          [SLOT],
        );
        return rows[0] && lsnToBigInt(rows[0].confirmed) === lsnToBigInt(end) ? rows[0] : undefined;
      }),
    );
    expect(status.replied).not.toBeNull();
    // Milliseconds from the client clock against the server's microseconds: a second's slack below.
    expect(status.replied!.getTime()).toBeGreaterThanOrEqual(started.getTime() - 1000);
    expect(status.replied!.getTime()).toBeLessThanOrEqual(status.now.getTime());
  } finally {
    await stream.stop();
    await running.catch(() => undefined);
  }
});
