import fs from 'node:fs';

/**
 * The stack's log file (every line of the stack process and of capture, JSON, written by
 * pipeline-stack.ts), read as it grows: the moments `bench:coldstart` times come from the lines'
 * own `time` fields — capture's `snapshot started` / `snapshot of table finished` / `snapshot
 * finished`, the transform's `transformed` and the load's `object loaded` lines — so a phase
 * boundary is not late by the bench's polling interval.
 */

/** First and last line of one kind, and what their fields add up to. */
export interface LineSpan {
  count: number;
  /** Lines for an object (`key`) already seen: work done again (a redelivered queue message). */
  repeats: number;
  /** Epoch milliseconds of the first and last such line. */
  firstAt: number | null;
  lastAt: number | null;
  /** Sums of the lines' numeric fields the bench reports (rows, changes, durationMs, bytesIn). */
  sums: Record<string, number>;
  /** The first time each object was done, with `count` (rows or changes) summed over first times. */
  progress: { at: number; total: number }[];
}

export interface SnapshotTable {
  table: string;
  rows: number;
  at: number;
}

const SUMMED = ['rows', 'changes', 'written', 'durationMs', 'bytesIn', 'bytesOut'];

const emptySpan = (): LineSpan => ({
  count: 0,
  repeats: 0,
  firstAt: null,
  lastAt: null,
  sums: {},
  progress: [],
});

/** When a span's distinct objects first added up to `total` (rows or changes), epoch ms; or null. */
export function reachedAt(span: LineSpan, total: number): number | null {
  return span.progress.find((p) => p.total >= total)?.at ?? null;
}

export class StackLogTail {
  private offset = 0;
  private rest = '';
  /** The stack's `capture started` (its process spawned) and `warehouse ready` (migrated) lines. */
  captureStartedAt: number | null = null;
  warehouseReadyAt: number | null = null;
  snapshotStartedAt: number | null = null;
  /** Rows capture had read at its last `snapshot progress` line (every 5 s) or its end. */
  snapshotRows = 0;
  snapshotFinished: { at: number; rows: number; seconds: number } | null = null;
  readonly snapshotTables: SnapshotTable[] = [];
  readonly transformed = emptySpan();
  readonly loaded = emptySpan();
  /** Warnings and errors, by `level: message (table, SQLSTATE)`. */
  readonly problems: Record<string, number> = {};

  constructor(private readonly file: string) {}

  /** Reads what was appended since the last call. */
  read(): void {
    let fd: number;
    try {
      fd = fs.openSync(this.file, 'r');
    } catch {
      return; // not written yet
    }
    try {
      const size = fs.fstatSync(fd).size;
      if (size <= this.offset) return;
      const buffer = Buffer.alloc(size - this.offset);
      fs.readSync(fd, buffer, 0, buffer.length, this.offset);
      this.offset = size;
      const lines = (this.rest + buffer.toString('utf8')).split('\n');
      this.rest = lines.pop() ?? '';
      for (const line of lines) this.take(line);
    } finally {
      fs.closeSync(fd);
    }
  }

  private take(line: string): void {
    if (!line.startsWith('{')) return;
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    const msg = String(record.msg ?? '');
    const at = Date.parse(String(record.time ?? ''));
    const level = String(record.level ?? '');
    if (level === 'warn' || level === 'error') {
      // The table and SQLSTATE when the line names them: a retried deadlock says between which loads.
      const where = [record.table, record.sqlState].filter((x) => typeof x === 'string').join(', ');
      const key = `${level}: ${msg}${where ? ` (${where})` : ''}`;
      this.problems[key] = (this.problems[key] ?? 0) + 1;
    }
    if (!Number.isFinite(at)) return;
    const num = (k: string) => (typeof record[k] === 'number' ? (record[k] as number) : 0);
    if (msg === 'capture started' && record.stage === undefined) this.captureStartedAt ??= at;
    else if (msg === 'warehouse ready' && record.stage === undefined) this.warehouseReadyAt ??= at;
    else if (msg === 'snapshot started') this.snapshotStartedAt ??= at;
    else if (msg === 'snapshot progress') this.snapshotRows = num('rows');
    else if (msg === 'snapshot of table finished')
      this.snapshotTables.push({ table: String(record.table), rows: num('rows'), at });
    else if (msg === 'snapshot finished') {
      this.snapshotFinished ??= { at, rows: num('rows'), seconds: num('seconds') };
      this.snapshotRows = num('rows');
    } else if (msg === 'transformed' && record.stage === 'transform')
      add(this.transformed, at, num, record.key, num('changes'));
    else if (msg === 'object loaded' && record.stage === 'load')
      add(this.loaded, at, num, record.key, num('rows'));
  }
}

const seen = new WeakMap<LineSpan, Set<unknown>>();

function add(span: LineSpan, at: number, num: (k: string) => number, key: unknown, counted: number): void {
  const keys = seen.get(span) ?? new Set<unknown>();
  seen.set(span, keys);
  if (keys.has(key)) span.repeats += 1;
  else {
    keys.add(key);
    span.progress.push({ at, total: (span.progress.at(-1)?.total ?? 0) + counted });
  }
  span.count += 1;
  span.firstAt ??= at;
  span.lastAt = at;
  for (const k of SUMMED) span.sums[k] = (span.sums[k] ?? 0) + num(k);
}
