import { KinesisClient, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import net from 'node:net';
import { createLogger, silentLogger, type Logger } from '../core/logger';
import { compareLsn } from '../core/lsn';
import { ensureStream, kinesisClientFor, startKinesalite, type LocalKinesis } from '../local/kinesalite';
import { StreamCollector, replayToState } from '../test/support/kinesis';
import { createTestDatabase, waitFor, withClient } from '../test/support/pg';
import { CaptureService, type CaptureConfig } from './capture-service';
import { KinesisSink, type RecordSink } from './kinesis-sink';
import { awsRequestHandler } from '../aws/request-handler';
import { getSlot } from './slot';
import { MemoryStateStore } from './state-store';

// Real Postgres (logical replication) and real kinesalite: nothing here is mocked.

let kinesis: LocalKinesis;
let client: KinesisClient;
let streamCounter = 0;

beforeAll(async () => {
  kinesis = await startKinesalite();
  client = kinesisClientFor(kinesis.endpoint);
});

afterAll(async () => {
  client.destroy();
  await kinesis.stop();
});

interface Harness {
  url: string;
  service: CaptureService;
  running: Promise<void>;
  collector: StreamCollector;
  state: MemoryStateStore;
}

async function newStream(): Promise<string> {
  const name = `capture-${++streamCounter}`;
  await ensureStream(client, name, 1);
  return name;
}

/** Slots are cluster-wide: each test database gets its own. */
function slotFor(url: string): string {
  return `slot_${new URL(url).pathname.slice(1)}`.slice(0, 63);
}

async function startCapture(
  url: string,
  tables: string[],
  options: {
    stream?: string;
    state?: MemoryStateStore;
    sink?: RecordSink;
    config?: Partial<CaptureConfig>;
    logger?: Logger;
  } = {},
): Promise<Harness> {
  const stream = options.stream ?? (await newStream());
  const state = options.state ?? new MemoryStateStore();
  const sink = options.sink ?? new KinesisSink({ client, streamName: stream });
  const service = new CaptureService(
    {
      sourceUrl: url,
      tables,
      slot: slotFor(url),
      publication: 'test_pub',
      heartbeatIntervalMs: 200,
      statsIntervalMs: 200,
      ...options.config,
    },
    {
      sink,
      state,
      logger:
        options.logger ?? (process.env.DEBUG_CAPTURE ? createLogger({ service: 'capture' }) : silentLogger),
    },
  );
  const running = service.run();
  running.catch(() => undefined); // asserted where a test expects failure
  return { url, service, running, collector: new StreamCollector(client, stream), state };
}

async function stopCapture(h: Harness): Promise<void> {
  await h.service.stop();
  await h.running;
}

/** A sink into a new stream whose puts, once `hang()` is called, never settle. */
async function hangingSink(): Promise<{ stream: string; sink: RecordSink; hang(): void; hung(): number }> {
  const stream = await newStream();
  const real = new KinesisSink({ client, streamName: stream });
  let hanging = false;
  let hung = 0;
  const sink: RecordSink = {
    put: (records) => {
      if (!hanging) return real.put(records);
      hung += 1;
      return new Promise(() => undefined);
    },
  };
  return {
    stream,
    sink,
    hang: () => {
      hanging = true;
    },
    hung: () => hung,
  };
}

async function collectUntil(
  h: Harness,
  what: string,
  done: () => boolean,
  timeoutMs = 30_000,
): Promise<void> {
  await waitFor(
    what,
    async () => {
      await h.collector.poll();
      return done() ? true : undefined;
    },
    timeoutMs,
  );
}

async function sourceRows(url: string, sql: string): Promise<Map<string, Record<string, string | null>>> {
  return withClient(url, async (c) => {
    const { rows } = await c.query(sql);
    return new Map(rows.map((r) => [String(r.id), r]));
  });
}

describe('capture service (real Postgres + kinesalite)', () => {
  it('hands over from snapshot to stream with no gap and no overlap under concurrent writes', async () => {
    const url = await createTestDatabase('capture_handoff');
    await withClient(url, async (c) => {
      await c.query('CREATE TABLE item (id int PRIMARY KEY, n int NOT NULL, note text)');
      await c.query("INSERT INTO item SELECT g, 0, 'seed' FROM generate_series(1, 3000) g");
    });
    // Writers run while the slot is created and the snapshot is read.
    let writing = true;
    let nextId = 3001;
    const writer = withClient(url, async (c) => {
      while (writing) {
        const id = nextId++;
        await c.query("INSERT INTO item VALUES ($1, 0, 'live')", [id]);
        await c.query('UPDATE item SET n = n + 1 WHERE id = $1', [1 + (id % 3000)]);
      }
    });
    const h = await startCapture(url, ['item']);
    await waitFor(
      'snapshot to finish',
      async () => ((await h.state.load())?.snapshotCompletedAt ? true : undefined),
      60_000,
    );
    // Some writes after the snapshot, whatever the pace a loaded machine allows the writer.
    const atSnapshot = nextId;
    await waitFor(
      'stream to pass the snapshot',
      () => (nextId > atSnapshot + 100 ? true : undefined),
      60_000,
    );
    writing = false;
    await writer;

    const expected = await sourceRows(url, 'SELECT id::text AS id, n::text AS n, note FROM item');
    await collectUntil(
      h,
      'every row in the stream',
      () => replayToState(h.collector.ofTable('item'), 'id').size === expected.size,
    );
    // Let in-flight heartbeats and changes settle, then compare the rebuilt table with the source.
    await collectUntil(h, 'final values', () => {
      const state = replayToState(h.collector.ofTable('item'), 'id');
      return [...expected].every(([id, row]) => state.get(id)?.n === row.n);
    });
    const changes = h.collector.ofTable('item');
    const state = replayToState(changes, 'id');
    expect(state.size).toBe(expected.size);
    for (const [id, row] of expected) expect(state.get(id)).toEqual(row);

    // No overlap: a row is either in the snapshot or inserted by the stream, never both; no identity twice.
    const snapshotIds = new Set(changes.filter((c) => c.op === 'snapshot').map((c) => c.row.id));
    const insertedIds = changes.filter((c) => c.op === 'insert').map((c) => c.row.id);
    expect(insertedIds.filter((id) => snapshotIds.has(id))).toEqual([]);
    expect(new Set(insertedIds).size).toBe(insertedIds.length);
    const identities = changes.map((c) => `${c.lsn}/${c.seq}`);
    expect(new Set(identities).size).toBe(identities.length);
    expect(snapshotIds.size).toBeGreaterThanOrEqual(3000);
    await stopCapture(h);
  }, 180_000);

  it('keeps every totesys column type exactly as Postgres sent it, in the snapshot and in the stream', async () => {
    const url = await createTestDatabase('capture_types');
    const ddl = `
      CREATE TYPE "PaymentTypeName" AS ENUM ('SALES_RECEIPT', 'SALES_REFUND', 'PURCHASE_PAYMENT', 'PURCHASE_REFUND');
      CREATE TABLE typed (
        id serial PRIMARY KEY,
        created_at timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
        amount numeric(10,2),
        code varchar(3),
        label text,
        kind "PaymentTypeName",
        paid boolean,
        agreed_date text,
        qty int
      )`;
    const rows = [
      [
        '2022-11-03 14:20:49.962',
        '12345678.91',
        'GBP',
        'Leannon, "Predovic"\nand Morar 🧵',
        'SALES_RECEIPT',
        'true',
        '2022-11-07',
        '0',
      ],
      ['1999-12-31 23:59:59.001', '0.10', 'EUR', '', 'PURCHASE_REFUND', 'false', '2025-02-28', '-2147483648'],
      ['2025-02-28 00:00:00', null, null, null, null, null, null, null],
      [
        '2024-02-29 12:34:56.789',
        '-99999999.99',
        'USD',
        "tab\tback\\slash 'quote' ,comma",
        'SALES_REFUND',
        'true',
        'not a date',
        '2147483647',
      ],
    ];
    const insert =
      'INSERT INTO typed (created_at, amount, code, label, kind, paid, agreed_date, qty) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)';
    await withClient(url, async (c) => {
      await c.query(ddl);
      for (const r of rows.slice(0, 2)) await c.query(insert, r);
    });
    const h = await startCapture(url, ['typed']);
    await waitFor('snapshot', async () => ((await h.state.load())?.snapshotCompletedAt ? true : undefined));
    await withClient(url, async (c) => {
      for (const r of rows.slice(2)) await c.query(insert, r);
    });
    const expected = await sourceRows(
      url,
      'SELECT id::text AS id, created_at::text AS created_at, amount::text AS amount, code, label, kind::text AS kind, paid::text AS paid, agreed_date, qty::text AS qty FROM typed',
    );
    await collectUntil(h, 'all typed rows', () => h.collector.ofTable('typed').length === 4);
    const got = replayToState(h.collector.ofTable('typed'), 'id');
    // The text form is Postgres' own: 't'/'f' for booleans (what pgoutput sends), the rest as ::text.
    for (const [id, row] of expected) {
      expect(got.get(id)).toEqual({
        ...row,
        paid: row.paid === null ? null : row.paid === 'true' ? 't' : 'f',
      });
    }
    expect(got.get('3')!.label).toBeNull();
    expect(got.get('2')!.label).toBe('');
    expect(got.get('1')!.created_at).toBe('2022-11-03 14:20:49.962');
    const ops = h.collector
      .ofTable('typed')
      .map((c) => c.op)
      .sort();
    expect(ops).toEqual(['insert', 'insert', 'snapshot', 'snapshot']);
    const columns = h.collector.ofTable('typed').map((c) => c.columns.join(','));
    expect(new Set(columns).size).toBe(1);
    await stopCapture(h);
  });

  it('reports an unchanged TOASTed value as unchanged, never as NULL, and follows a column added mid-stream', async () => {
    const url = await createTestDatabase('capture_toast');
    await withClient(url, (c) => c.query('CREATE TABLE doc (id int PRIMARY KEY, body text, title text)'));
    const h = await startCapture(url, ['doc']);
    await waitFor('snapshot', async () => ((await h.state.load())?.snapshotCompletedAt ? true : undefined));
    await withClient(url, async (c) => {
      // Random hex does not compress, so 200 kB is stored out of line (TOASTed).
      await c.query(
        "INSERT INTO doc SELECT 1, string_agg(md5(random()::text), '') , 'v1' FROM generate_series(1, 6000)",
      );
      await c.query("UPDATE doc SET title = 'v2' WHERE id = 1");
      await c.query('ALTER TABLE doc ADD COLUMN tags text');
      await c.query("UPDATE doc SET tags = 'new column' WHERE id = 1");
      await c.query('DELETE FROM doc WHERE id = 1');
    });
    await collectUntil(h, 'the four changes', () => h.collector.ofTable('doc').length === 4);
    const [insert, update, afterAlter, del] = h.collector.ofTable('doc');
    expect(insert.op).toBe('insert');
    expect(insert.row.body).toHaveLength(6000 * 32);
    expect(update.op).toBe('update');
    expect(update.row.title).toBe('v2');
    expect(update.unchanged).toEqual(['body']);
    expect(update.row.body).toBeNull();
    expect(afterAlter.columns).toEqual(['id', 'body', 'title', 'tags']);
    expect(afterAlter.row.tags).toBe('new column');
    expect(afterAlter.unchanged).toEqual(['body']);
    expect(del.op).toBe('delete');
    expect(del.row.id).toBe('1');
    expect(del.unchanged).toEqual([]);
    // A consumer merging the marker keeps the real value.
    const merged = replayToState([insert, update], 'id').get('1')!;
    expect(merged.body).toBe(insert.row.body);
    await stopCapture(h);
  });

  it('confirms the slot only after the sink accepted the changes, and resumes from there after a restart', async () => {
    const url = await createTestDatabase('capture_ack');
    await withClient(url, (c) => c.query('CREATE TABLE t (id int PRIMARY KEY)'));
    const stream = await newStream();
    const real = new KinesisSink({ client, streamName: stream });
    let gate: (() => void) | null = null;
    let blocked = 0;
    // A sink that holds puts until the test opens the gate: the slot must not move meanwhile.
    const gated: RecordSink = {
      put: async (records) => {
        if (gate === null) {
          blocked += 1;
          await new Promise<void>((resolve) => (gate = resolve));
        }
        return real.put(records);
      },
    };
    const state = new MemoryStateStore();
    let h = await startCapture(url, ['t'], { stream, state, sink: real });
    await waitFor('snapshot', async () => ((await state.load())?.snapshotCompletedAt ? true : undefined));
    await stopCapture(h);
    const before = await withClient(url, async (c) => (await getSlot(c, slotFor(url)))!.confirmedFlushLsn);

    h = await startCapture(url, ['t'], { stream, state, sink: gated });
    // Heartbeat commits before the insert may be confirmed (a loaded machine lets some through before
    // the first put is held); nothing at or past the insert may be, while its put is held.
    const beforeInsert = await withClient(
      url,
      async (c) => (await c.query('SELECT pg_current_wal_insert_lsn()::text AS lsn')).rows[0].lsn as string,
    );
    await withClient(url, (c) => c.query('INSERT INTO t SELECT generate_series(1, 100)'));
    await waitFor('a put to be held', () => (blocked > 0 ? true : undefined));
    const held = await withClient(url, async (c) => (await getSlot(c, slotFor(url)))!.confirmedFlushLsn);
    expect(compareLsn(held!, beforeInsert)).toBeLessThanOrEqual(0);
    (gate as unknown as () => void)();
    await collectUntil(
      h,
      '100 inserts',
      () => h.collector.ofTable('t').filter((c) => c.op === 'insert').length === 100,
    );
    await waitFor('the slot to move', async () =>
      withClient(url, async (c) =>
        (await getSlot(c, slotFor(url)))!.confirmedFlushLsn !== before ? true : undefined,
      ),
    );
    await stopCapture(h);

    // After a clean stop nothing is re-sent: a restart delivers only new changes.
    h = await startCapture(url, ['t'], { stream, state });
    await withClient(url, (c) => c.query('INSERT INTO t VALUES (101)'));
    await collectUntil(h, 'the 101st row', () => h.collector.ofTable('t').some((c) => c.row.id === '101'));
    const inserts = h.collector.ofTable('t').filter((c) => c.op === 'insert');
    expect(inserts).toHaveLength(101);
    await stopCapture(h);
  });

  it('takes a resync request while streaming: the table is read again and ends with a marker', async () => {
    const url = await createTestDatabase('capture_resync');
    await withClient(url, async (c) => {
      await c.query('CREATE TABLE item (id int PRIMARY KEY, n int NOT NULL)');
      await c.query('CREATE TABLE other (id int PRIMARY KEY)');
      await c.query('INSERT INTO item SELECT g, g FROM generate_series(1, 50) g');
    });
    const h = await startCapture(url, ['item', 'other']);
    await waitFor('snapshot', async () => ((await h.state.load())?.snapshotCompletedAt ? true : undefined));
    await collectUntil(h, 'the first markers', () => h.collector.markersOf('other').length === 1);
    await h.state.saveResyncRequest({ requestedAt: new Date().toISOString(), tables: ['item'] });
    await collectUntil(h, 'the second snapshot of item', () => h.collector.markersOf('item').length === 2);
    const [first, second] = h.collector.markersOf('item');
    expect([first.rows, second.rows]).toEqual([50, 50]);
    // The resync is its own snapshot: a later consistent point, the same epoch.
    expect(second.epoch).toBe(first.epoch);
    expect(second.lsn > first.lsn).toBe(true);
    expect(h.collector.ofTable('item').filter((c) => c.op === 'snapshot')).toHaveLength(100);
    expect(h.collector.markersOf('other')).toHaveLength(1);
    await waitFor('the request to be cleared', async () =>
      (await h.state.loadResyncRequest()) === null ? true : undefined,
    );
    await stopCapture(h);
  });

  it('lets only one capture run per slot, and reports a table that leaves the publication', async () => {
    const url = await createTestDatabase('capture_single');
    await withClient(url, async (c) => {
      await c.query('CREATE TABLE item (id int PRIMARY KEY)');
      await c.query('CREATE TABLE gone (id int PRIMARY KEY)');
    });
    const lines: string[] = [];
    const logger = createLogger({ service: 'capture', write: (l) => lines.push(l) });
    const h = await startCapture(url, ['item', 'gone'], { logger });
    await waitFor('snapshot', async () => ((await h.state.load())?.snapshotCompletedAt ? true : undefined));
    // A second capture of the same slot is refused while the first holds it, even mid-snapshot.
    const second = await startCapture(url, ['item', 'gone']);
    await expect(second.running).rejects.toThrow(/another capture is already running for slot/);
    // A table dropped from the publication while capture runs is reported, not silently lost.
    await withClient(url, (c) => c.query('ALTER PUBLICATION test_pub DROP TABLE gone'));
    await waitFor('the report', () =>
      lines.some((l) => l.includes('"capture.table_not_captured"') && l.includes('"table":"gone"'))
        ? true
        : undefined,
    );
    await stopCapture(h);
  });

  it('resyncs under a new epoch when the source is another cluster or timeline than its state says', async () => {
    const url = await createTestDatabase('capture_moved');
    await withClient(url, async (c) => {
      await c.query('CREATE TABLE item (id int PRIMARY KEY)');
      await c.query('INSERT INTO item SELECT generate_series(1, 5)');
    });
    const stream = await newStream();
    const first = await startCapture(url, ['item'], { stream });
    await waitFor('snapshot', async () =>
      (await first.state.load())?.snapshotCompletedAt ? true : undefined,
    );
    await stopCapture(first);
    const state = (await first.state.load())!;
    expect(state.systemIdentifier).toMatch(/^\d+$/);
    expect(state.timeline).toBe(1);
    // As after a point-in-time restore: the same cluster, a later timeline.
    await first.state.save({ ...state, timeline: 2 });
    const lines: string[] = [];
    const second = await startCapture(url, ['item'], {
      stream,
      state: first.state,
      logger: createLogger({
        service: 'capture',
        write: (l) => (lines.push(l), process.env.DEBUG_CAPTURE && console.log(l)),
      }),
    });
    await collectUntil(second, 'the second snapshot', () => second.collector.markersOf('item').length === 2);
    const [before, after] = second.collector.markersOf('item');
    expect(after.epoch).toBeGreaterThan(before.epoch);
    expect(lines.some((l) => l.includes('"capture.source_changed"'))).toBe(true);
    // The state is saved once the snapshot finished, which can be after its marker is in the stream.
    await waitFor('the state to name the timeline', async () =>
      (await second.state.load())?.timeline === 1 ? true : undefined,
    );
    await stopCapture(second);
  });

  it('keeps an idle slot moving with heartbeats', async () => {
    const url = await createTestDatabase('capture_idle');
    await withClient(url, (c) =>
      c.query('CREATE TABLE quiet (id int PRIMARY KEY); CREATE TABLE busy (id int)'),
    );
    const h = await startCapture(url, ['quiet']);
    await waitFor('snapshot', async () => ((await h.state.load())?.snapshotCompletedAt ? true : undefined));
    // WAL written by a table outside the publication must not stay pinned by our slot.
    await withClient(url, (c) => c.query('INSERT INTO busy SELECT generate_series(1, 20000)'));
    const walAfterWrites = await withClient(
      url,
      async (c) => (await c.query('SELECT pg_current_wal_lsn()::text AS l')).rows[0].l,
    );
    await waitFor('the slot to pass the unrelated writes', () =>
      withClient(url, async (c) => {
        const { rows } = await c.query(
          'SELECT pg_wal_lsn_diff(confirmed_flush_lsn, $1::pg_lsn) >= 0 AS passed FROM pg_replication_slots WHERE slot_name = $2',
          [walAfterWrites, slotFor(url)],
        );
        return rows[0].passed ? true : undefined;
      }),
    );
    expect(h.collector.ofTable('busy')).toEqual([]);
    await stopCapture(h);
  });

  it("sends its heartbeat down the stream as a change of _totes_heartbeat at the commit's position, and no other slot's", async () => {
    const url = await createTestDatabase('capture_heartbeat');
    await withClient(url, (c) => c.query('CREATE TABLE quiet (id int PRIMARY KEY)'));
    const h = await startCapture(url, ['quiet']);
    const slot = slotFor(url);
    await waitFor('snapshot', async () => ((await h.state.load())?.snapshotCompletedAt ? true : undefined));
    // Another capture on the same source (another slot): every slot decodes every message.
    const other = await withClient(url, async (c) => {
      const { rows } = await c.query(
        "SELECT pg_logical_emit_message(true, 'totes.heartbeat', $1)::text AS lsn",
        [JSON.stringify({ slot: 'another_slot', emittedAt: new Date().toISOString() })],
      );
      return rows[0].lsn as string;
    });
    // A heartbeat committed after the other slot's message: that message was decoded before it.
    await collectUntil(h, 'a heartbeat of this slot after the other one', () =>
      h.collector.ofTable('_totes_heartbeat').some((b) => compareLsn(b.lsn, other) > 0),
    );
    const beats = h.collector.ofTable('_totes_heartbeat');
    expect(beats.every((b) => b.row.slot_name === slot && b.op === 'insert')).toBe(true);
    expect(beats.every((b) => !Number.isNaN(Date.parse(b.row.emitted_at ?? '')))).toBe(true);
    // Each one is its own transaction: its position is the commit's, its time the source's commit time.
    expect(new Set(beats.map((b) => b.lsn)).size).toBe(beats.length);
    expect(beats.every((b) => b.ts.endsWith('Z'))).toBe(true);
    await stopCapture(h);
  });

  it('keeps memory bounded on a 100,000-row transaction by pausing replication while the sink is slow', async () => {
    const url = await createTestDatabase('capture_big_txn');
    await withClient(url, (c) => c.query('CREATE TABLE big (id int PRIMARY KEY, pad text)'));
    const stream = await newStream();
    const real = new KinesisSink({ client, streamName: stream });
    let peakBuffered = 0;
    let service: CaptureService | null = null;
    const slow: RecordSink = {
      put: async (records) => {
        await new Promise((r) => setTimeout(r, 30));
        return real.put(records);
      },
    };
    const flushBytes = 256 * 1024;
    const h = await startCapture(url, ['big'], { stream, sink: slow, config: { flushBytes } });
    service = h.service;
    await waitFor('snapshot', async () => ((await h.state.load())?.snapshotCompletedAt ? true : undefined));
    const sampler = setInterval(() => {
      peakBuffered = Math.max(peakBuffered, service!.bufferedBytes);
    }, 1);
    await withClient(url, (c) =>
      c.query("INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 100000) g"),
    );
    await collectUntil(h, '100k rows', () => h.collector.ofTable('big').length >= 100_000, 120_000);
    clearInterval(sampler);
    expect(new Set(h.collector.ofTable('big').map((c) => c.row.id)).size).toBe(100_000);
    // What is buffered never grows past the flush threshold plus what one socket read can add.
    expect(peakBuffered).toBeGreaterThan(0);
    expect(peakBuffered).toBeLessThan(flushBytes + 1024 * 1024);
    await stopCapture(h);
  });
});

describe('capture stays live (real Postgres + kinesalite)', () => {
  it('keeps the connection through a sink held longer than wal_sender_timeout (status updates while paused)', async () => {
    const url = await createTestDatabase('capture_paused');
    await withClient(url, async (c) => {
      await c.query('CREATE TABLE big (id int PRIMARY KEY, pad text)');
      // A replication connection to this database gets a 1 s timeout (it is a user-settable GUC).
      await c.query(`ALTER DATABASE "${new URL(url).pathname.slice(1)}" SET wal_sender_timeout = '1s'`);
    });
    const stream = await newStream();
    const real = new KinesisSink({ client, streamName: stream });
    let held = true;
    const gated: RecordSink = {
      put: async (records) => {
        while (held) await new Promise((r) => setTimeout(r, 20));
        return real.put(records);
      },
    };
    const h = await startCapture(url, ['big'], {
      stream,
      sink: gated,
      config: { flushBytes: 64 * 1024, statusIntervalMs: 200 },
    });
    let failure: unknown = null;
    h.running.catch((e) => (failure = e));
    held = false;
    await waitFor('snapshot', async () => ((await h.state.load())?.snapshotCompletedAt ? true : undefined));
    held = true;
    await withClient(url, (c) =>
      c.query("INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g"),
    );
    // Held for four times the server's timeout while capture has paused its socket: the same
    // walsender must keep receiving status updates (reply_time, capture's own clock) all along.
    await waitFor('reading to pause', () =>
      (h.service as unknown as { stream: { isPaused: boolean } }).stream?.isPaused ? true : undefined,
    );
    const walsender = () =>
      withClient(url, async (c) => {
        const { rows } = await c.query<{ pid: number; replied: Date; now: Date }>(
          `SELECT r.pid, r.reply_time AS replied, now() AS now FROM pg_stat_replication r
             JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.database = current_database()`,
        );
        return rows[0];
      });
    const pausedAt = await walsender();
    const through = await waitFor(
      'status updates 4 s past the pause',
      async () => {
        const now = await walsender();
        return now && now.replied.getTime() >= pausedAt.now.getTime() + 4000 ? now : undefined;
      },
      30_000,
    );
    expect(through.pid).toBe(pausedAt.pid);
    held = false;
    await collectUntil(h, 'every row', () => h.collector.ofTable('big').length >= 20_000, 60_000);
    expect(failure).toBeNull();
    await stopCapture(h);
    // Its own deadlines (snapshot, the 4 s hold, 60 s to collect) add up past jest's default 60 s:
    // under load it timed out at the test's limit instead of at a named wait.
  }, 150_000);

  it('fails (to be restarted) when the sink hangs with work pending', async () => {
    const url = await createTestDatabase('capture_hung');
    await withClient(url, (c) => c.query('CREATE TABLE t (id int PRIMARY KEY)'));
    const { stream, sink, hang } = await hangingSink();
    const h = await startCapture(url, ['t'], { stream, sink, config: { stallTimeoutMs: 1000 } });
    await waitFor('snapshot', async () => ((await h.state.load())?.snapshotCompletedAt ? true : undefined));
    hang();
    await withClient(url, (c) => c.query('INSERT INTO t VALUES (1)'));
    await expect(h.running).rejects.toThrow(/no progress for \d+ s with changes pending/);
  });
});

describe('capture lets go of the source when it fails', () => {
  it('ends its replication connection when the control connection is lost', async () => {
    // A source shutting down ends the control session first. Capture fails — and must close its
    // replication connection too: a walsender left waiting for a client that no longer answers holds
    // a fast shutdown (and capture's own restart) for wal_sender_timeout. Seen in `npm run chaos`.
    const url = await createTestDatabase('capture_control_lost');
    await withClient(url, (c) => c.query('CREATE TABLE t (id int PRIMARY KEY)'));
    const h = await startCapture(url, ['t']);
    await waitFor('streaming', async () => ((await h.state.load())?.snapshotCompletedAt ? true : undefined));
    const slot = slotFor(url);
    await waitFor('the slot in use', () =>
      withClient(url, async (c) => ((await getSlot(c, slot))?.active ? true : undefined)),
    );
    await withClient(url, (c) =>
      c.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()`,
      ),
    );
    await expect(h.running).rejects.toThrow(/control connection failed/);
    await waitFor('the slot to be let go', () =>
      withClient(url, async (c) => ((await getSlot(c, slot))?.active === false ? true : undefined)),
    );
  });
});

describe('capture abandoned (nothing left to deliver to)', () => {
  it('ends its replication connection at once while a put hangs, and run() returns', async () => {
    // capture/main.ts abandons when the `totes up` that started it is gone, its Kinesis with it: a
    // drain would wait on puts that cannot succeed, the walsender holding the source's shutdown.
    const url = await createTestDatabase('capture_abandoned');
    await withClient(url, (c) => c.query('CREATE TABLE t (id int PRIMARY KEY)'));
    const { stream, sink, hang, hung } = await hangingSink();
    const h = await startCapture(url, ['t'], { stream, sink });
    await waitFor('snapshot', async () => ((await h.state.load())?.snapshotCompletedAt ? true : undefined));
    const slot = slotFor(url);
    await waitFor('the slot in use', () =>
      withClient(url, async (c) => ((await getSlot(c, slot))?.active ? true : undefined)),
    );
    hang();
    await withClient(url, (c) => c.query('INSERT INTO t VALUES (1)'));
    await waitFor('a put that hangs', () => (hung() > 0 ? true : undefined));
    const confirmed = await withClient(url, async (c) => (await getSlot(c, slot))!.confirmedFlushLsn);

    await h.service.abandon();

    await h.running;
    await waitFor('the slot to be let go', () =>
      withClient(url, async (c) => ((await getSlot(c, slot))?.active === false ? true : undefined)),
    );
    // Nothing more was confirmed: the next capture re-reads the insert.
    expect(await withClient(url, async (c) => (await getSlot(c, slot))!.confirmedFlushLsn)).toBe(confirmed);
  });
});

describe('AWS calls have deadlines', () => {
  it('ends a PutRecords that never gets an answer', async () => {
    const server = net.createServer(() => undefined); // accepts, never answers
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as net.AddressInfo;
    const hung = new KinesisClient({
      region: 'us-east-1',
      endpoint: `http://127.0.0.1:${port}`,
      credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
      requestHandler: awsRequestHandler({ requestMs: 300 }),
      maxAttempts: 1,
    });
    try {
      await expect(
        hung.send(
          new PutRecordsCommand({
            StreamName: 's',
            Records: [{ Data: Buffer.from('x'), PartitionKey: 'k' }],
          }),
        ),
      ).rejects.toThrow(/timeout/i);
    } finally {
      hung.destroy();
      server.close();
    }
  });
});
