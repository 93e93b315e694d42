import {
  describeProblem,
  formatDuration,
  PipelineStatus,
  REPEAT_WINDOW_MS,
  type LogRecord,
} from './pipeline-status';

const T0 = Date.parse('2026-12-01T10:00:00.000Z');
const at = (ms: number) => new Date(T0 + ms).toISOString();
const line = (ms: number, msg: string, fields: Record<string, unknown> = {}, level = 'info'): LogRecord => ({
  time: at(ms),
  level,
  service: 'totes-up',
  msg,
  ...fields,
});

function feed(status: PipelineStatus, records: LogRecord[]): string[] {
  return records.flatMap((r) => status.observe(r).map((e) => e.text));
}

describe('PipelineStatus: log lines in, human text out', () => {
  it('shows seeding, then snapshot progress with rows/s and an ETA against the seeded row count', () => {
    const status = new PipelineStatus();
    expect(status.statusLine(T0)).toBe('starting…');
    const printed = feed(status, [
      line(0, 'seeding the source with totesys', { scale: 1 }),
      line(2000, 'seeding', { rowsDone: 11_000, rowsTotal: 55_000 }),
    ]);
    expect(printed).toEqual(['Seeding the source with totesys (scale 1)…']);
    expect(status.statusLine(T0 + 2000)).toBe('seeding 11,000 / 55,000 rows (20%)');

    printed.push(
      ...feed(status, [
        line(4000, 'source seeded', { rows: 55_000 }),
        line(4100, 'source ready', { source: 'postgres://postgres:***@127.0.0.1:5/totesys' }),
        { ...line(5000, 'snapshot started', { tables: 11 }), service: 'totes-capture' },
        {
          ...line(7000, 'capture.stats', { snapshotRows: 20_000, changesPerSecond: 0 }),
          service: 'totes-capture',
        },
      ]),
    );
    expect(printed.slice(1)).toEqual([
      'Source seeded: 55,000 rows',
      'Source Postgres ready',
      'Snapshot: copying 11 tables in one consistent read…',
    ]);
    // 20,000 rows in 2 s: 10,000 rows/s, 35,000 to go.
    expect(status.statusLine(T0 + 7000)).toBe(
      'snapshot 20,000 / 55,000 rows (36%) · 10,000 rows/s · ETA 3.5 s',
    );

    // Without a known total (an existing source): rows and rate, no ETA.
    const other = new PipelineStatus();
    feed(other, [
      line(0, 'snapshot started', { tables: 11 }),
      line(4000, 'snapshot progress', { rows: 8000 }),
    ]);
    expect(other.statusLine(T0 + 4000)).toBe('snapshot 8,000 rows · 2,000 rows/s');
  });

  it('announces the end of the snapshot, catches up, then keeps one line of rates, lag per stage and freshness', () => {
    const status = new PipelineStatus();
    const printed = feed(status, [
      line(0, 'snapshot started', { tables: 11 }),
      line(5500, 'snapshot finished', { rows: 55_000, seconds: 5.5 }),
      line(5600, 'streaming started', { from: '0/1' }),
      line(6000, 'capture.stats', { changesPerSecond: 150.4, lagSeconds: 0.4, lagBytes: 0 }),
      line(6000, 'local.stats', {
        delivery: { millisBehindLatest: 2000, oldestBufferedAgeMs: 800 },
        transform: { queued: 3, inFlight: 2 },
        load: { queued: 7, inFlight: 2 },
      }),
      line(6500, 'object loaded', { stage: 'load', table: 'fact_sales_order', freshnessSeconds: 6.2 }),
    ]);
    expect(printed).toEqual([
      'Snapshot: copying 11 tables in one consistent read…',
      'Snapshot: 55,000 rows in 5.5 s (10,000 rows/s); catching up',
      'Capture is streaming changes from the replication slot',
    ]);
    expect(status.statusLine(T0 + 7000)).toBe(
      'catching up · 150 changes/s · lag: capture 0.4 s, stream→S3 2.0 s, transform 5 queued, load 9 queued · ' +
        'warehouse freshness 6.2 s at worst (fact_sales_order), last load 0.5 s ago',
    );

    const idle = (ms: number, bufferedRecords = 0) =>
      line(ms, 'local.stats', {
        delivery: { millisBehindLatest: 0, oldestBufferedAgeMs: 300, bufferedRecords },
        transform: { queued: 0, inFlight: 0 },
        load: { queued: 0, inFlight: 0 },
      });
    // Records still buffered in the delivery stream: not caught up, however empty the queues.
    expect(feed(status, [idle(8000, 40), idle(8500, 40)])).toEqual([]);
    const caughtUp = feed(status, [
      line(9000, 'object loaded', { stage: 'load', table: 'dim_staff', freshnessSeconds: 1.5 }),
      line(9000, 'object loaded', { stage: 'load', table: 'fact_sales_order', freshnessSeconds: 1.2 }),
      idle(9500),
    ]);
    // One idle sample may be an object between two stages.
    expect(caughtUp).toEqual([]);
    expect(feed(status, [idle(10_000)])).toEqual([
      'Caught up: every stage is idle; the warehouse was 1.5 s behind the source',
    ]);
    expect(status.statusLine(T0 + 40_000)).toBe(
      'streaming · 150 changes/s · lag: capture 0.4 s, stream→S3 0.3 s, transform 0 queued, load 0 queued · ' +
        'warehouse freshness 1.5 s at worst (dim_staff), last load 31 s ago',
    );
  });

  it('prints warnings and errors in plain words, counts them, and folds repeats', () => {
    const status = new PipelineStatus();
    const warn = (ms: number) =>
      line(
        ms,
        'invocation failed; retrying',
        { stage: 'load', trigger: 'load', attempt: 1, err: { message: 'boom' } },
        'warn',
      );
    expect(feed(status, [warn(0), warn(1000), warn(2000)])).toEqual([
      'warning: load: invocation failed; retrying — boom (trigger load, attempt 1)',
    ]);
    expect(feed(status, [warn(REPEAT_WINDOW_MS + 1)])).toEqual([
      'warning: load: invocation failed; retrying — boom (trigger load, attempt 1) [2 more like it before this one]',
    ]);
    const error = line(
      3000,
      'capture failed',
      { err: { name: 'Error', message: 'connection lost', cause: { message: 'ECONNRESET' } } },
      'error',
    );
    expect(feed(status, [error])).toEqual(['error: capture failed — connection lost; caused by: ECONNRESET']);
    expect(status.statusLine(T0)).toBe('starting… · 1 error, 4 warnings');
  });

  it('prints notices as notes, and says when it stops', () => {
    const status = new PipelineStatus();
    expect(
      feed(status, [
        line(0, 'the cluster lives elsewhere', { cluster: 'source', notice: true }),
        line(1, 'stopping'),
      ]),
    ).toEqual(['the cluster lives elsewhere', 'Stopping: draining capture, then every stage…']);
    expect(status.statusLine(T0)).toBe('stopping…');
  });

  it('names a slot that retains a lot of WAL', () => {
    const status = new PipelineStatus();
    feed(status, [
      line(0, 'streaming started'),
      line(1, 'capture.stats', { changesPerSecond: 0, lagSeconds: 0.1, retainedWalBytes: 3 * 1024 ** 3 }),
    ]);
    expect(status.statusLine(T0)).toBe(
      'catching up · 0 changes/s · lag: capture 0.1 s · warehouse: nothing loaded yet · slot retains 3.0 GB of WAL',
    );
  });
});

describe('formatting', () => {
  it('renders durations and sizes for people', () => {
    expect([0.42, 12.4, 200, 3600, 7500].map(formatDuration)).toEqual([
      '0.4 s',
      '12 s',
      '3 min 20 s',
      '1 h',
      '2 h 5 min',
    ]);
  });

  it('describes a problem with its fix', () => {
    expect(
      describeProblem({ msg: 'wal_level is replica', fix: 'ALTER SYSTEM SET wal_level = logical' }),
    ).toBe('wal_level is replica Fix: ALTER SYSTEM SET wal_level = logical');
  });
});
