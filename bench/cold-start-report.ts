import type { WindowUsage } from './process-sampler';
import type { Machine } from './report';
import type { SourceBuild } from './cold-start-source';
import type { StageShare, TopFrame } from './profile-stages';

/** What `npm run bench:coldstart` found: the JSON it writes, and the text it prints. */

export interface Phase {
  name: string;
  /** Seconds after the cold start began. */
  startAt: number;
  seconds: number;
  /** Rows the phase moved (read, loaded, compared); null where it moves none. */
  rows: number | null;
  rowsPerSecond: number | null;
  /**
   * CPU and peak RSS per process group. The window is opened and closed when the bench sees the
   * phase boundary (polled every 200 ms), so its seconds can differ slightly from the phase's.
   */
  usage: WindowUsage;
}

export interface StageSpan {
  objects: number;
  rows: number;
  /** Objects done again (the load queue redelivers a message not deleted within its visibility timeout). */
  repeats: number;
  /** Seconds after the cold start when the stage's distinct objects first held every snapshot row. */
  snapshotDoneAt: number | null;
  /** Seconds after the cold start of the stage's first and last object. */
  firstAt: number | null;
  lastAt: number | null;
}

export interface Floor {
  rows: number;
  /** COPY text bytes. */
  bytes: number;
  copyOut: { seconds: number; rowsPerSecond: number };
  copyIn: { seconds: number; rowsPerSecond: number };
  /** Out, then in: the rows moved from one Postgres to another with nothing in between. */
  seconds: number;
}

export interface ColdStartResult {
  machine: Pick<Machine, 'date' | 'cpus' | 'cpuModel' | 'node' | 'os'> & {
    postgres: string;
    loadAverage: { start: number; end: number };
  };
  settings: Record<string, string | number>;
  source: SourceBuild & { prepareSeconds: number };
  phases: Phase[];
  /** When capture finished reading each table, seconds after the cold start. */
  snapshotTables: { table: string; rows: number; at: number }[];
  stages: {
    /**
     * The stack's start, seconds after the cold start: capture's process spawned (its parts: source,
     * Kinesis, S3, the local Firehose), the warehouse migrated, every part up (the load started).
     */
    stack: { captureStartedAt: number | null; warehouseReadyAt: number | null; readyAt: number };
    capture: { rows: number; firstAt: number | null; lastAt: number | null };
    /** Kinesis records capture wrote by the snapshot's end; when Firehose had read them all. */
    firehose: { records: number; objects: number; bytes: number; readAt: number | null };
    transform: StageSpan & { bytesIn: number };
    load: StageSpan & { busySeconds: number };
  };
  /**
   * CPU microseconds per source row from the cold start to the warehouse complete (verify left out),
   * per process group: the figure that moves least with what else runs on the machine.
   */
  cpuPerRowUs: Record<string, number>;
  /** From the snapshot's start to the last object loaded: the source rows per second end to end. */
  pipeline: { seconds: number; rowsPerSecond: number };
  /**
   * A V8 CPU profile of the stack process (kinesalite, s3rver, the local Firehose, transform, load)
   * from capture's start (the stack ready) to the warehouse complete, by stage; null with --profile-us 0.
   */
  stackProfile: { seconds: number; stages: StageShare[]; top: TopFrame[] } | null;
  verify: { ok: boolean; attempts: number; seconds: number; report: string };
  /** Cold start → verify passes. */
  totalSeconds: number;
  target: { seconds: number; pass: boolean };
  floor: Floor | null;
  /** Warnings and errors the stack and capture logged, by `level: message`. */
  problems: Record<string, number>;
  notes: string[];
}

const int = (n: number) => Math.round(n).toLocaleString('en-GB');
const secs = (n: number | null) => (n === null ? '–' : `${n.toFixed(1)} s`);
const pad = (s: string, n: number) => s.padEnd(n);
const again = (s: StageSpan) => (s.repeats ? ` (${s.repeats} done again)` : '');
const lpad = (s: string, n: number) => s.padStart(n);

/** Per group, `cpu s (cores) · peak RSS`, busiest first; groups that used nothing left out. */
function usageLine(u: WindowUsage): string {
  const groups = Object.entries(u.groups)
    .filter(([, g]) => g.cpuSeconds > 0 || g.peakRssMiB > 0)
    .sort(([, a], [, b]) => b.cpuSeconds - a.cpuSeconds)
    .map(
      ([name, g]) =>
        `${name} ${g.cpuSeconds.toFixed(1)} s (${g.cores.toFixed(2)}), ${Math.round(name.includes('postgres') ? g.peakPrivateMiB : g.peakRssMiB)} MiB`,
    );
  const other = u.otherCpuSeconds === null ? '' : ` · others ${u.otherCpuSeconds.toFixed(1)} s`;
  return `${groups.join(' · ')}${other}`;
}

export function formatColdStartReport(r: ColdStartResult): string {
  const m = r.machine;
  const lines = [
    `bench:coldstart — ${int(r.source.rows)} source rows, cold start to a verified warehouse`,
    `  ${m.cpus} × ${m.cpuModel}, Node ${m.node}, Postgres ${m.postgres}; load average ${m.loadAverage.start.toFixed(1)} → ${m.loadAverage.end.toFixed(1)}`,
    `  source: the totesys export, order tables ×${r.source.copies}${r.source.partialRows ? ` + ${int(r.source.partialRows)} rows` : ''} (${Object.entries(
      r.source.perTable,
    )
      .filter(([, n]) => n > 1000)
      .map(([t, n]) => `${t} ${int(n)}`)
      .join(', ')}); prepared in ${r.source.prepareSeconds.toFixed(1)} s (not measured)`,
    '',
    `  ${pad('phase', 14)} ${lpad('from', 8)} ${lpad('seconds', 8)} ${lpad('rows/s', 9)}   CPU s (cores), peak RSS per process (Postgres: private memory)`,
  ];
  for (const p of r.phases)
    lines.push(
      `  ${pad(p.name, 14)} ${lpad(p.startAt.toFixed(1), 8)} ${lpad(p.seconds.toFixed(1), 8)} ${lpad(p.rowsPerSecond === null ? '–' : int(p.rowsPerSecond), 9)}   ${usageLine(p.usage)}`,
    );
  const s = r.stages;
  lines.push(
    '',
    '  stages (seconds after the cold start)',
    `    stack              capture started ${secs(s.stack.captureStartedAt)}, warehouse migrated ${secs(s.stack.warehouseReadyAt)}, all up ${secs(s.stack.readyAt)}`,
    `    capture snapshot   ${int(s.capture.rows)} rows, ${secs(s.capture.firstAt)} → ${secs(s.capture.lastAt)}`,
    `    Firehose           ${int(s.firehose.records)} Kinesis records → ${int(s.firehose.objects)} objects (${(s.firehose.bytes / 2 ** 20).toFixed(1)} MiB), the snapshot's records all read at ${secs(s.firehose.readAt)}`,
    `    transform          ${int(s.transform.objects)} objects, ${int(s.transform.rows)} changes, first ${secs(s.transform.firstAt)}, every snapshot row at ${secs(s.transform.snapshotDoneAt)}${again(s.transform)}`,
    `    load               ${int(s.load.objects)} objects, ${int(s.load.rows)} rows, first ${secs(s.load.firstAt)}, every snapshot row at ${secs(s.load.snapshotDoneAt)}${again(s.load)}; ` +
      `busy ${s.load.busySeconds.toFixed(1)} s (${s.load.busySeconds > 0 ? int(s.load.rows / s.load.busySeconds) : '–'} rows per busy second)`,
    `    end to end         ${int(r.source.rows)} rows in ${r.pipeline.seconds.toFixed(1)} s from the snapshot's start to the last load: ${int(r.pipeline.rowsPerSecond)} rows/s`,
  );
  const perRow = Object.entries(r.cpuPerRowUs).filter(([, us]) => us >= 1);
  if (perRow.length) {
    const [busiest, us] = perRow[0]!;
    lines.push(
      `    CPU per source row (cold start → complete): ${perRow.map(([g, n]) => `${g} ${Math.round(n)} µs`).join(' · ')}`,
      `    ${busiest} alone needs ${((us * r.source.rows) / 1e6).toFixed(1)} s of CPU for these rows: no faster on a core of its own`,
    );
  }
  if (r.stackProfile) {
    const pct = (n: number) => `${Math.round(n * 100)}%`;
    const busy = r.stackProfile.stages.filter((x) => x.stage !== 'idle' && x.share >= 0.01);
    lines.push(
      `    stack process by stage (CPU profile, capture start → complete): ${busy.map((x) => `${x.stage} ${pct(x.share)}`).join(' · ')}`,
      `    top frames: ${r.stackProfile.top
        .slice(0, 6)
        .map((f) => `${f.frame} ${pct(f.share)}`)
        .join(' · ')}`,
    );
  }
  if (r.floor) {
    const f = r.floor;
    lines.push(
      '',
      `  floor (same rows, same machine): COPY out ${f.copyOut.seconds.toFixed(1)} s (${int(f.copyOut.rowsPerSecond)} rows/s) + ` +
        `COPY into empty tables ${f.copyIn.seconds.toFixed(1)} s (${int(f.copyIn.rowsPerSecond)} rows/s) = ${f.seconds.toFixed(1)} s; ` +
        `the pipeline took ${(r.pipeline.seconds / f.seconds).toFixed(1)} × that`,
    );
  }
  lines.push(
    '',
    '  verify',
    ...r.verify.report
      .trimEnd()
      .split('\n')
      .map((l) => `    ${l}`),
  );
  const problems = Object.entries(r.problems);
  if (problems.length) lines.push('', '  logged problems', ...problems.map(([k, n]) => `    ${n} × ${k}`));
  for (const note of r.notes) lines.push(`  note: ${note}`);
  lines.push(
    '',
    '  target (issue 12)',
    `    ${r.target.pass ? 'PASS' : 'MISS'}  cold start → verified warehouse ≤ ${r.target.seconds} s   ${r.totalSeconds.toFixed(1)} s` +
      `${r.verify.ok ? '' : ' (verify did not pass)'}`,
    '',
  );
  return lines.join('\n');
}
