import { Client } from 'pg';
import { silentLogger } from '../core/logger';
import { ensureStream, kinesisClientFor, startKinesalite, type LocalKinesis } from '../local/kinesalite';
import { createTestDatabase, waitFor, withClient } from '../test/support/pg';
import { CaptureService } from './capture-service';
import { KinesisSink } from './kinesis-sink';
import { MemoryStateStore } from './state-store';
import { serialiseQueries } from './serialise-queries';

let url: string;

beforeAll(async () => {
  url = await createTestDatabase('serialise_queries');
});

/**
 * Runs fn while every pg Client's query() is watched, and returns, per client, the most queries it
 * had in flight at once and what it ran. pg 8 warns "Calling client.query() when the client is
 * already executing a query" (a DeprecationWarning; an error in pg 9) on such overlaps; that warning
 * goes to the real process, which jest's sandboxed `process` does not see, so the overlap itself is
 * what is counted.
 */
async function watchQueries(fn: () => Promise<void>): Promise<{ maxInFlight: number; texts: string[] }[]> {
  const watched = new Map<Client, { inFlight: number; maxInFlight: number; texts: string[] }>();
  const original = Object.getOwnPropertyDescriptor(Client.prototype, 'query')!;
  const query = original.value as (this: Client, ...args: unknown[]) => unknown;
  Client.prototype.query = function (this: Client, ...args: unknown[]) {
    const result = query.apply(this, args);
    if (!(result instanceof Promise)) return result;
    let w = watched.get(this);
    if (!w) watched.set(this, (w = { inFlight: 0, maxInFlight: 0, texts: [] }));
    const entry = w;
    entry.texts.push(typeof args[0] === 'string' ? args[0] : String((args[0] as { text?: string })?.text));
    entry.inFlight += 1;
    entry.maxInFlight = Math.max(entry.maxInFlight, entry.inFlight);
    const settled = () => {
      entry.inFlight -= 1;
    };
    result.then(settled, settled);
    return result;
  } as Client['query'];
  try {
    await fn();
  } finally {
    Object.defineProperty(Client.prototype, 'query', original);
  }
  return [...watched.values()];
}

describe('serialiseQueries (real Postgres)', () => {
  it('sends each query only after the previous one settled, in call order, errors included', async () => {
    // Prepare: a real client whose own query method records how many run at once.
    const client = new Client({ connectionString: url });
    await client.connect();
    const original = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
    let running = 0;
    let maxRunning = 0;
    const started: string[] = [];
    client.query = (async (...args: unknown[]) => {
      running += 1;
      maxRunning = Math.max(maxRunning, running);
      started.push(String(args[0]));
      try {
        return await original(...args);
      } finally {
        running -= 1;
      }
    }) as Client['query'];
    const serial = serialiseQueries(client);
    try {
      // Act: five queries at once, the middle one failing.
      const results = await Promise.allSettled([
        serial.query('SELECT pg_sleep(0.02), 1 AS n'),
        serial.query('SELECT 2 AS n'),
        serial.query('SELECT 1/0 AS n'),
        serial.query('SELECT $1::int AS n', [4]),
        serial.query('SELECT 5 AS n'),
      ]);

      // Assess
      expect(maxRunning).toBe(1);
      expect(started).toEqual([
        'SELECT pg_sleep(0.02), 1 AS n',
        'SELECT 2 AS n',
        'SELECT 1/0 AS n',
        'SELECT $1::int AS n',
        'SELECT 5 AS n',
      ]);
      expect(results.map((r) => r.status)).toEqual([
        'fulfilled',
        'fulfilled',
        'rejected',
        'fulfilled',
        'fulfilled',
      ]);
      expect(results.map((r) => (r.status === 'fulfilled' ? Number(r.value.rows[0].n) : null))).toEqual([
        1,
        2,
        null,
        4,
        5,
      ]);
    } finally {
      await client.end();
    }
  });

  it('refuses callback queries, which would run outside the queue', async () => {
    const client = serialiseQueries(new Client({ connectionString: url }));
    expect(() => client.query('SELECT 1', () => undefined)).toThrow(/promise queries only/);
  });
});

describe("capture's control connection", () => {
  it('never overlaps the heartbeat, slot statistics and publication check (no pg deprecation warning)', async () => {
    // Prepare: a table, kinesalite, and capture with every control-connection timer at 5 ms, so
    // heartbeat, statistics and publication check fire together again and again.
    await withClient(url, async (c) => {
      await c.query('CREATE TABLE item (id int PRIMARY KEY, note text)');
    });
    const kinesis: LocalKinesis = await startKinesalite();
    const kinesisClient = kinesisClientFor(kinesis.endpoint);
    await ensureStream(kinesisClient, 'control', 1);
    let samples = 0;
    const slot = `slot_serialise_${process.pid}`;
    const service = new CaptureService(
      {
        sourceUrl: url,
        tables: ['item'],
        slot,
        publication: 'serialise_pub',
        heartbeatIntervalMs: 5,
        statsIntervalMs: 5,
      },
      {
        sink: new KinesisSink({ client: kinesisClient, streamName: 'control' }),
        state: new MemoryStateStore(),
        logger: silentLogger,
        onStats: () => {
          samples += 1;
        },
      },
    );
    try {
      // Act: stream a few writes while the timers run for at least 50 statistics samples.
      const clients = await watchQueries(async () => {
        const running = service.run();
        running.catch(() => undefined);
        await withClient(url, async (c) => {
          for (let i = 0; i < 20; i++) await c.query("INSERT INTO item VALUES ($1, 'x')", [i]);
        });
        const end = await withClient(
          url,
          async (c) => (await c.query('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn as string,
        );
        await waitFor('50 statistics samples', () => (samples >= 50 ? true : undefined), 60_000);
        await waitFor('the writes to be confirmed', async () => {
          const { rows } = await withClient(url, (c) =>
            c.query(
              'SELECT confirmed_flush_lsn >= $2::pg_lsn AS done FROM pg_replication_slots WHERE slot_name = $1',
              [slot, end],
            ),
          );
          return rows[0]?.done === true ? true : undefined;
        });
        await service.stop();
        await running;
      });

      // Assess: the control connection (the one that sent heartbeats) never ran two queries at once.
      const control = clients.filter((c) => c.texts.some((t) => t.includes('pg_logical_emit_message')));
      expect(control).toHaveLength(1);
      expect(
        control[0].texts.filter((t) => t.includes('pg_replication_slots')).length,
      ).toBeGreaterThanOrEqual(50);
      expect(control[0].maxInFlight).toBe(1);
    } finally {
      await service.stop();
      kinesisClient.destroy();
      await kinesis.stop();
    }
  });
});
