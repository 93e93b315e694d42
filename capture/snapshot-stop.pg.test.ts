import { silentLogger } from '../core/logger';
import { ChangeBatchSchema, type Change } from '../core/change-event';
import { createTestDatabase, withClient } from '../test/support/pg';
import { CaptureService } from './capture-service';
import type { PutResult, RecordSink, SinkRecord } from './kinesis-sink';
import { MemoryStateStore } from './state-store';

/**
 * Capture stopped in the middle of its initial snapshot (tables read on parallel connections):
 * it fails with the same error as before, leaves the snapshot marked unfinished, and the next run
 * takes the whole snapshot again.
 */

const ROWS = 3000;

/** Keeps the changes it is given; `onPut` runs before each put. */
class MemorySink implements RecordSink {
  changes: (Change & { table: string })[] = [];
  puts = 0;
  constructor(private readonly onPut: () => void = () => undefined) {}

  async put(records: readonly SinkRecord[]): Promise<PutResult> {
    this.puts += 1;
    this.onPut();
    for (const r of records) {
      const batch = ChangeBatchSchema.parse(JSON.parse(Buffer.from(r.data).toString('utf8')));
      this.changes.push(...batch.changes.map((c) => ({ ...c, table: batch.table })));
    }
    return {
      records: records.length,
      bytes: 0,
      calls: 1,
      retries: 0,
      sequenceNumbers: records.map(() => '0'),
    };
  }
}

function capture(url: string, sink: RecordSink, state: MemoryStateStore): CaptureService {
  return new CaptureService(
    {
      sourceUrl: url,
      tables: ['alpha', 'beta'],
      slot: `slot_${new URL(url).pathname.slice(1)}`.slice(0, 63),
      publication: 'stop_pub',
      // Small flushes: the snapshot goes out in many puts.
      flushBytes: 16 * 1024,
    },
    { sink, state, logger: silentLogger },
  );
}

it('stops mid-snapshot with the same error, and takes the whole snapshot again next time', async () => {
  const url = await createTestDatabase('snapshot_stop');
  await withClient(url, async (c) => {
    for (const table of ['alpha', 'beta']) {
      await c.query(`CREATE TABLE ${table} (id int PRIMARY KEY, pad text)`);
      await c.query(`INSERT INTO ${table} SELECT g, md5(g::text) FROM generate_series(1, ${ROWS}) g`);
    }
  });
  const state = new MemoryStateStore();
  let service: CaptureService | null = null;
  const stopping = new MemorySink(() => void service!.stop());
  service = capture(url, stopping, state);
  await expect(service.run()).rejects.toThrow(/stopped during the snapshot/);
  const rows = stopping.changes.filter((c) => c.op === 'snapshot').length;
  expect(rows).toBeGreaterThan(0);
  expect(rows).toBeLessThan(2 * ROWS);
  expect(stopping.puts).toBeLessThanOrEqual(2 + 2); // the put that asked, and one per connection at most
  expect((await state.load())?.snapshotCompletedAt).toBeNull();

  const sink = new MemorySink();
  const again = capture(url, sink, state);
  const running = again.run();
  try {
    const deadline = Date.now() + 60_000;
    while (!(await state.load())?.snapshotCompletedAt) {
      if (Date.now() > deadline) throw new Error('the second snapshot did not complete in 60 s');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    await again.stop();
    await running;
  }
  const ends = sink.changes.filter((c) => c.op === 'snapshot_end').map((c) => [c.table, c.rows]);
  expect(ends.sort()).toEqual([
    ['alpha', ROWS],
    ['beta', ROWS],
  ]);
  for (const table of ['alpha', 'beta']) {
    const ids = new Set(
      sink.changes.filter((c) => c.table === table && c.op === 'snapshot').map((c) => c.values[0]),
    );
    expect(ids.size).toBe(ROWS);
  }
});
