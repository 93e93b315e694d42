import { formatBytes } from './pipeline-health';

/**
 * What a person watching `totes up` needs, read from the JSON log lines the pipeline already writes
 * (core/logger.ts): `capture.stats` and the snapshot lines from capture, `local.stats` from the local
 * stack (delivery stream and trigger queues), `object loaded` from load. Pure: a log record in,
 * plain-words lines and one status line out; the terminal side (local/terminal-status.ts) only
 * draws them. Every number shown is in the JSON log too, so the terminal and a log query agree.
 */
export interface LogRecord {
  time?: string;
  level?: string;
  msg?: string;
  [field: string]: unknown;
}

export type Phase = 'starting' | 'seeding' | 'snapshot' | 'catching up' | 'streaming' | 'stopping';

/** A line to keep in the scrollback: what happened, in plain words. */
export interface StatusEvent {
  kind: 'progress' | 'done' | 'note' | 'warning' | 'error';
  text: string;
}

interface StageStats {
  queued?: number;
  inFlight?: number;
}

interface LocalStats {
  delivery?: {
    millisBehindLatest?: number;
    oldestBufferedAgeMs?: number;
    bufferedRecords?: number;
  };
  transform?: StageStats;
  load?: StageStats;
}

/** Repeats of one warning inside this window are counted, not printed. */
export const REPEAT_WINDOW_MS = 30_000;
/** Caught up: the delivery stream is at most this far behind the stream's tip, and the queues are empty. */
const CAUGHT_UP_BEHIND_MS = 5_000;
/** Warehouse freshness is the worst among tables loaded this long before the newest load. */
const FRESHNESS_WINDOW_MS = 60_000;

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** 0.4 s, 12 s, 3 min 20 s, 2 h 5 min. */
export function formatDuration(seconds: number): string {
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) {
    const m = Math.floor(seconds / 60);
    const s = Math.round(seconds - m * 60);
    return s ? `${m} min ${s} s` : `${m} min`;
  }
  const h = Math.floor(seconds / 3600);
  const m = Math.round((seconds - h * 3600) / 60);
  return m ? `${h} h ${m} min` : `${h} h`;
}

/** Fields worth naming when a warning or an error is shown in plain words, in this order. */
const DETAIL_FIELDS = [
  'table',
  'key',
  'trigger',
  'shardId',
  'code',
  'signal',
  'errorCode',
  'attempt',
  'restarts',
  'inMs',
  'file',
] as const;

function errorText(err: unknown): string | undefined {
  if (!err || typeof err !== 'object') return typeof err === 'string' ? err : undefined;
  const e = err as { message?: unknown; code?: unknown; cause?: unknown };
  const message = typeof e.message === 'string' ? e.message : undefined;
  const cause = errorText(e.cause);
  return [message, cause && cause !== message ? `caused by: ${cause}` : undefined].filter(Boolean).join('; ');
}

/** A warning or an error log line in plain words: its message, the error, then what it concerns. */
export function describeProblem(record: LogRecord): string {
  const who = typeof record.stage === 'string' ? `${record.stage}: ` : '';
  const parts = [`${who}${record.msg ?? '(no message)'}`];
  const err = errorText(record.err);
  if (err) parts.push(`— ${err}`);
  const details = DETAIL_FIELDS.filter((f) => record[f] !== undefined && record[f] !== null).map(
    (f) => `${f} ${typeof record[f] === 'object' ? JSON.stringify(record[f]) : String(record[f])}`,
  );
  if (details.length) parts.push(`(${details.join(', ')})`);
  if (typeof record.fix === 'string') parts.push(`Fix: ${record.fix}`);
  return parts.join(' ');
}

export class PipelineStatus {
  phase: Phase = 'starting';
  private seeding?: { done: number; total: number };
  private snapshot?: { startedMs: number; rows: number; atMs: number; tables?: number };
  private expectedRows?: number;
  private capture?: {
    changesPerSecond?: number;
    lagSeconds?: number;
    lagBytes?: number;
    retainedWalBytes?: number;
    atMs: number;
  };
  private local?: LocalStats & { atMs: number };
  private freshness = new Map<string, { seconds: number; atMs: number }>();
  private lastLoadMs?: number;
  /** When this run's snapshot finished: catching up then means until it is loaded. */
  private snapshotDoneMs?: number;
  private idleSamples = 0;
  private warnings = 0;
  private errors = 0;
  private recent = new Map<string, { atMs: number; suppressed: number }>();

  /** Takes one log record; returns the lines to keep in the scrollback (often none). */
  observe(record: LogRecord): StatusEvent[] {
    const atMs = record.time ? Date.parse(record.time) : NaN;
    const at = Number.isFinite(atMs) ? atMs : 0;
    const events: StatusEvent[] = [];
    const msg = record.msg ?? '';
    if (record.level === 'warn' || record.level === 'error') {
      const problem = this.problem(record, at);
      if (problem) events.push(problem);
    }
    if (record.notice === true) events.push({ kind: 'note', text: msg });
    switch (msg) {
      case 'seeding the source with totesys':
        this.phase = 'seeding';
        events.push({
          kind: 'progress',
          text: `Seeding the source with totesys (scale ${record.scale ?? 1})…`,
        });
        break;
      case 'seeding':
        this.phase = 'seeding';
        this.seeding = { done: num(record.rowsDone) ?? 0, total: num(record.rowsTotal) ?? 0 };
        break;
      case 'source seeded':
        this.seeding = undefined;
        this.expectedRows = num(record.rows) ?? this.expectedRows;
        events.push({ kind: 'done', text: `Source seeded: ${formatCount(num(record.rows) ?? 0)} rows` });
        break;
      case 'source rows estimated':
        this.expectedRows ??= num(record.rows);
        break;
      case 'source ready':
        events.push({ kind: 'done', text: 'Source Postgres ready' });
        break;
      case 'warehouse ready':
        if (record.stage === undefined) events.push({ kind: 'done', text: 'Warehouse Postgres ready' });
        break;
      case 'kinesis ready':
        events.push({ kind: 'done', text: `Kinesis stream ${record.stream ?? ''} ready`.replace('  ', ' ') });
        break;
      case 'snapshot started':
        this.phase = 'snapshot';
        this.snapshot = { startedMs: at, rows: 0, atMs: at, tables: num(record.tables) };
        events.push({
          kind: 'progress',
          text: `Snapshot: copying ${record.tables ?? 'the'} tables in one consistent read…`,
        });
        break;
      case 'snapshot progress':
        this.snapshotRows(num(record.rows), at);
        break;
      case 'snapshot finished': {
        const rows = num(record.rows) ?? this.snapshot?.rows ?? 0;
        const seconds = num(record.seconds) ?? 0;
        this.phase = 'catching up';
        this.snapshot = undefined;
        this.snapshotDoneMs = at;
        const rate = seconds > 0 ? ` (${formatCount(rows / seconds)} rows/s)` : '';
        events.push({
          kind: 'done',
          text: `Snapshot: ${formatCount(rows)} rows in ${formatDuration(seconds)}${rate}; catching up`,
        });
        break;
      }
      case 'streaming started':
        if (this.phase !== 'catching up') this.phase = 'catching up';
        events.push({ kind: 'done', text: 'Capture is streaming changes from the replication slot' });
        break;
      case 'capture.stats':
        if (this.phase === 'snapshot') this.snapshotRows(num(record.snapshotRows), at);
        this.capture = {
          changesPerSecond: num(record.changesPerSecond),
          lagSeconds: num(record.lagSeconds),
          lagBytes: num(record.lagBytes),
          retainedWalBytes: num(record.retainedWalBytes),
          atMs: at,
        };
        break;
      case 'local.stats':
        this.local = { ...(record as LocalStats), atMs: at };
        this.idleSamples = this.idle() ? this.idleSamples + 1 : 0;
        if (this.phase === 'catching up' && this.caughtUp()) {
          this.phase = 'streaming';
          const fresh = this.worstFreshness();
          events.push({
            kind: 'done',
            text:
              'Caught up: every stage is idle' +
              (fresh ? `; the warehouse was ${formatDuration(fresh.seconds)} behind the source` : ''),
          });
        }
        break;
      case 'object loaded':
        this.lastLoadMs = at;
        if (typeof record.table === 'string' && num(record.freshnessSeconds) !== undefined)
          this.freshness.set(record.table, { seconds: num(record.freshnessSeconds)!, atMs: at });
        break;
      case 'stopping':
        this.phase = 'stopping';
        events.push({ kind: 'progress', text: 'Stopping: draining capture, then every stage…' });
        break;
    }
    return events;
  }

  private snapshotRows(rows: number | undefined, atMs: number): void {
    if (rows === undefined) return;
    this.snapshot ??= { startedMs: atMs, rows: 0, atMs };
    if (rows >= this.snapshot.rows) Object.assign(this.snapshot, { rows, atMs });
  }

  private problem(record: LogRecord, atMs: number): StatusEvent | undefined {
    const kind = record.level === 'error' ? 'error' : 'warning';
    if (kind === 'error') this.errors++;
    else this.warnings++;
    const key = `${record.level}\0${record.stage ?? ''}\0${record.msg}`;
    const seen = this.recent.get(key);
    if (seen && atMs - seen.atMs < REPEAT_WINDOW_MS) {
      seen.suppressed++;
      return undefined;
    }
    this.recent.set(key, { atMs, suppressed: 0 });
    const again = seen?.suppressed ? ` [${seen.suppressed} more like it before this one]` : '';
    return { kind, text: `${kind}: ${describeProblem(record)}${again}` };
  }

  /** Nothing buffered or queued in any stage, and the delivery stream near the stream's tip. */
  private idle(): boolean {
    const l = this.local;
    if (!l) return false;
    const empty = (s?: StageStats) => (s?.queued ?? 0) + (s?.inFlight ?? 0) === 0;
    return (
      empty(l.transform) &&
      empty(l.load) &&
      (l.delivery?.bufferedRecords ?? 0) === 0 &&
      (l.delivery?.millisBehindLatest ?? 0) <= CAUGHT_UP_BEHIND_MS &&
      (this.capture?.lagSeconds ?? 0) <= CAUGHT_UP_BEHIND_MS / 1000
    );
  }

  /**
   * Idle twice in a row (an object between two stages shows in neither for a moment), and, after a
   * snapshot in this run, something loaded since it finished.
   */
  private caughtUp(): boolean {
    const loadedSinceSnapshot =
      this.snapshotDoneMs === undefined || (this.lastLoadMs ?? -Infinity) >= this.snapshotDoneMs;
    return this.idleSamples >= 2 && loadedSinceSnapshot;
  }

  /** The stalest table among those loaded in the minute before the newest load. */
  private worstFreshness(): { table: string; seconds: number } | undefined {
    let worst: { table: string; seconds: number } | undefined;
    for (const [table, f] of this.freshness) {
      if (this.lastLoadMs !== undefined && f.atMs < this.lastLoadMs - FRESHNESS_WINDOW_MS) continue;
      if (!worst || f.seconds > worst.seconds) worst = { table, seconds: f.seconds };
    }
    return worst;
  }

  /** Rows/s and ETA of the snapshot, from its start to the newest count. */
  snapshotProgress():
    { rows: number; total?: number; rowsPerSecond?: number; etaSeconds?: number } | undefined {
    const s = this.snapshot;
    if (!s) return undefined;
    const seconds = (s.atMs - s.startedMs) / 1000;
    const rowsPerSecond = seconds > 0 && s.rows > 0 ? s.rows / seconds : undefined;
    const total = this.expectedRows && this.expectedRows >= s.rows ? this.expectedRows : undefined;
    const etaSeconds = total !== undefined && rowsPerSecond ? (total - s.rows) / rowsPerSecond : undefined;
    return { rows: s.rows, total, rowsPerSecond, etaSeconds };
  }

  /** The one line refreshed in place; `nowMs` ages the newest numbers. */
  statusLine(nowMs: number): string {
    const problems = [
      this.errors ? `${this.errors} error${this.errors > 1 ? 's' : ''}` : '',
      this.warnings ? `${this.warnings} warning${this.warnings > 1 ? 's' : ''}` : '',
    ].filter(Boolean);
    const tail = problems.length ? ` · ${problems.join(', ')}` : '';
    switch (this.phase) {
      case 'starting':
        return `starting…${tail}`;
      case 'stopping':
        return `stopping…${tail}`;
      case 'seeding': {
        const s = this.seeding;
        if (!s || !s.total) return `seeding the source…${tail}`;
        return `seeding ${formatCount(s.done)} / ${formatCount(s.total)} rows (${Math.floor((100 * s.done) / s.total)}%)${tail}`;
      }
      case 'snapshot': {
        const p = this.snapshotProgress();
        if (!p) return `snapshot starting…${tail}`;
        const parts = [
          p.total !== undefined
            ? `snapshot ${formatCount(p.rows)} / ${formatCount(p.total)} rows (${Math.floor((100 * p.rows) / Math.max(1, p.total))}%)`
            : `snapshot ${formatCount(p.rows)} rows`,
        ];
        if (p.rowsPerSecond) parts.push(`${formatCount(p.rowsPerSecond)} rows/s`);
        if (p.etaSeconds !== undefined) parts.push(`ETA ${formatDuration(Math.max(0, p.etaSeconds))}`);
        return parts.join(' · ') + tail;
      }
      case 'catching up':
      case 'streaming':
        return `${this.phase === 'streaming' ? 'streaming' : 'catching up'} · ${this.flowLine(nowMs)}${tail}`;
    }
  }

  private flowLine(nowMs: number): string {
    const parts: string[] = [];
    const c = this.capture;
    if (c?.changesPerSecond !== undefined) parts.push(`${formatCount(c.changesPerSecond)} changes/s`);
    const lag: string[] = [];
    if (c?.lagSeconds !== undefined) lag.push(`capture ${formatDuration(c.lagSeconds)}`);
    const d = this.local?.delivery;
    if (d) {
      const behindMs = Math.max(d.millisBehindLatest ?? 0, d.oldestBufferedAgeMs ?? 0);
      lag.push(`stream→S3 ${formatDuration(behindMs / 1000)}`);
    }
    const queue = (s?: StageStats) => (s ? (s.queued ?? 0) + (s.inFlight ?? 0) : undefined);
    const transform = queue(this.local?.transform);
    const load = queue(this.local?.load);
    if (transform !== undefined) lag.push(`transform ${transform} queued`);
    if (load !== undefined) lag.push(`load ${load} queued`);
    if (lag.length) parts.push(`lag: ${lag.join(', ')}`);
    const worst = this.worstFreshness();
    if (worst && this.lastLoadMs !== undefined) {
      const age = Math.max(0, (nowMs - this.lastLoadMs) / 1000);
      parts.push(
        `warehouse freshness ${formatDuration(worst.seconds)} at worst (${worst.table}), last load ${formatDuration(age)} ago`,
      );
    } else parts.push('warehouse: nothing loaded yet');
    if (c?.retainedWalBytes !== undefined && c.retainedWalBytes >= 1024 ** 3)
      parts.push(`slot retains ${formatBytes(c.retainedWalBytes)} of WAL`);
    return parts.join(' · ');
  }
}
