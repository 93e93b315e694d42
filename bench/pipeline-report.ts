import type { ChangeKind } from '../totesys/generator';
import type { WindowUsage } from './process-sampler';
import type { ProfileShare } from './cpu-profile';
import type { ProfileSummary } from './stack-protocol';
import type { TopFrame } from './profile-stages';
import type { Machine } from './report';

/** What `npm run bench:pipeline` found: the JSON it writes, and the text it prints. */

export interface LatencySummary {
  /** Probe commits made in the step. */
  count: number;
  /** Of those, never seen in the warehouse by the end of the drain. */
  lost: number;
  /** Nearest-rank percentiles; null when lost probes reach them (or there were none). */
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
}

/** What each stage did between the start of a step and the end of its drain. */
export interface StageWork {
  capture: { changes: number; transactions: number; records: number; bytes: number } | null;
  delivery: { recordsIn: number; objectsOut: number; bytesOut: number; getRecordsCalls: number };
  /** invocations: of the stage's function (transform: one per S3 event; load: one per queue batch). */
  transform: {
    invocations: number;
    objects: number;
    changes: number;
    rows: number;
    bytesIn: number;
    bytesOut: number;
  };
  load: {
    invocations: number;
    objects: number;
    rows: number;
    written: number;
    /** Sum of the load's own transaction times: how busy its two concurrent invocations were. */
    busySeconds: number;
    /** rows ÷ busySeconds: the load's speed while loading, per object. */
    rowsPerBusySecond: number | null;
  };
  /** Warnings and errors logged, by `level: message`. */
  problems: Record<string, number>;
}

export interface StepResult {
  name: string;
  /** Row changes per second offered; 0 for the idle step. */
  offeredPerSecond: number;
  seconds: number;
  changes: number;
  transactions: number;
  achievedPerSecond: number;
  failedBatches: number;
  generatorErrors: string[];
  byKind: Record<ChangeKind, number> | null;
  probe: LatencySummary;
  /** From the end of the load to every stage idle with the last change in the warehouse; null: not within the timeout. */
  drainSeconds: number | null;
  /** changes ÷ (load + drain seconds): what went through end to end. */
  pipelinePerSecond: number | null;
  held: boolean;
  /** Why not held, in words (empty when held). */
  verdict: string;
  usage: { load: WindowUsage; drain: WindowUsage | null };
  /**
   * CPU microseconds per offered change, load and drain together, per process group: what each
   * process costs per change whatever else the machine runs (null for the idle step).
   */
  cpuPerChangeUs: Record<string, number> | null;
  stages: StageWork;
  /** The stack process' CPU by stage and its top frames, over the step's profiled run. */
  profile: ProfileSummary | null;
  /** Capture's CPU by owner and its top frames over the profiled run (with --cpu-profile). */
  captureProfile: CaptureProfile | null;
  /**
   * The run at the same rate, after the timed step and apart from it, in which the profiles were
   * taken (null when profiling is off, or the step did not drain).
   */
  profiledRun?: { seconds: number; changes: number; drainSeconds: number | null } | null;
  /**
   * The warehouse statements that took the most time over load and drain (pg_stat_statements on
   * the bench's embedded warehouse; null with a given one).
   */
  warehouseStatements: WarehouseStatement[] | null;
}

export interface WarehouseStatement {
  /** Normalised text, whitespace collapsed, cut at 160 characters. */
  statement: string;
  calls: number;
  totalMs: number;
  rows: number;
}

export interface CaptureProfile {
  file: string;
  owners: ProfileShare[];
  top: TopFrame[];
}

export interface BaselineResult {
  /** The generator unpaced into a fresh totesys database, nothing else running. */
  write: { changes: number; transactions: number; seconds: number; perSecond: number; failedBatches: number };
  /** A bare pgoutput reader (bench/raw-readers.ts) decoding exactly those changes from a slot. */
  decode: { changes: number; seconds: number; perSecond: number; walsenderCpuSeconds: number | null } | null;
  note: string | null;
}

export interface PipelineResult {
  machine: Omit<Machine, 'pgRecvlogical'>;
  settings: Record<string, unknown>;
  baseline: BaselineResult | null;
  startup: { stackSeconds: number; snapshotRows: number | null; snapshotToWarehouseSeconds: number | null };
  steps: StepResult[];
  /**
   * What the steps added to the warehouse database on disk (every fact version is kept): for sizing
   * storage. Measured after the snapshot and at the end, so the probes' rows are in it too.
   */
  warehouseGrowth: { bytes: number; changes: number; bytesPerChange: number | null };
  /** The highest offered rate held with the probe's p99 within target; null if none was. */
  knee: { offeredPerSecond: number; achievedPerSecond: number; p99Ms: number } | null;
  verify: { ok: boolean; report: string } | null;
  notes: string[];
}

/** Nearest-rank percentile of latencies where a lost probe counts as never arriving. */
export function percentile(sorted: readonly number[], lost: number, p: number): number | null {
  const n = sorted.length + lost;
  if (n === 0) return null;
  const rank = Math.max(1, Math.ceil(p * n));
  return rank <= sorted.length ? sorted[rank - 1]! : null;
}

export function summariseLatencies(latencies: readonly (number | null)[]): LatencySummary {
  const seen = latencies.filter((l): l is number => l !== null).sort((a, b) => a - b);
  const lost = latencies.length - seen.length;
  return {
    count: latencies.length,
    lost,
    p50Ms: percentile(seen, lost, 0.5),
    p99Ms: percentile(seen, lost, 0.99),
    maxMs: lost > 0 ? null : (seen[seen.length - 1] ?? null),
  };
}

/** Held: the probe's p99 within target, nothing lost, the offered rate reached, the backlog drained. */
export function judgeStep(
  step: Pick<StepResult, 'offeredPerSecond' | 'achievedPerSecond' | 'probe' | 'drainSeconds'>,
  p99TargetMs: number,
): { held: boolean; verdict: string } {
  const why: string[] = [];
  if (step.probe.count === 0) why.push('no probe completed');
  if (step.probe.lost > 0) why.push(`${step.probe.lost} probe(s) never arrived`);
  else if (step.probe.p99Ms !== null && step.probe.p99Ms > p99TargetMs)
    why.push(`p99 ${seconds(step.probe.p99Ms)} > ${seconds(p99TargetMs)}`);
  if (step.offeredPerSecond > 0 && step.achievedPerSecond < 0.9 * step.offeredPerSecond)
    why.push(`the source took only ${int(step.achievedPerSecond)}/s of ${int(step.offeredPerSecond)}/s`);
  if (step.drainSeconds === null) why.push('the backlog did not drain');
  return { held: why.length === 0, verdict: why.join('; ') };
}

export function kneeOf(steps: readonly StepResult[]): PipelineResult['knee'] {
  const held = steps.filter((s) => s.held && s.offeredPerSecond > 0);
  const best = held.reduce<StepResult | null>(
    (a, s) => (a === null || s.offeredPerSecond > a.offeredPerSecond ? s : a),
    null,
  );
  return best
    ? {
        offeredPerSecond: best.offeredPerSecond,
        achievedPerSecond: best.achievedPerSecond,
        p99Ms: best.probe.p99Ms!,
      }
    : null;
}

// ---------------------------------------------------------------------------------------------
// Text

const int = (n: number) => Math.round(n).toLocaleString('en-GB');
const seconds = (ms: number | null) => (ms === null ? '∞' : `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`);
const pct = (x: number) => `${Math.round(x * 100)}%`;
const mib = (x: number) => `${Math.round(x)} MiB`;

/** Short names of the sampled process groups, in print order. */
const GROUP_LABELS: readonly (readonly [string, string])[] = [
  ['stack', 'stack process'],
  ['capture', 'capture'],
  ['source postgres: walsender', 'walsender'],
  ['source postgres: backends', 'source backends'],
  ['source postgres: background', 'source bg'],
  ['warehouse postgres: backends', 'warehouse backends'],
  ['warehouse postgres: background', 'warehouse bg'],
  ['bench', 'bench (generator, probe)'],
];

/** CPU µs per change of each group over load and drain, or null when there were no changes. */
export function cpuPerChange(
  changes: number,
  windows: readonly (WindowUsage | null)[],
): Record<string, number> | null {
  if (changes === 0) return null;
  const out: Record<string, number> = {};
  for (const w of windows)
    for (const [group, u] of Object.entries(w?.groups ?? {}))
      if (u.processes > 0) out[group] = (out[group] ?? 0) + (u.cpuSeconds * 1e6) / changes;
  return out;
}

function usageLines(usage: WindowUsage): string[] {
  const cpu = GROUP_LABELS.filter(([g]) => usage.groups[g]?.processes)
    .map(([g, label]) => `${label} ${usage.groups[g]!.cores.toFixed(2)}`)
    .concat(
      usage.otherCpuSeconds !== null ? [`others ${(usage.otherCpuSeconds / usage.seconds).toFixed(2)}`] : [],
    );
  const memory = GROUP_LABELS.filter(([g]) => usage.groups[g]?.processes).map(([g, label]) => {
    const u = usage.groups[g]!;
    return g.includes('postgres')
      ? `${label} ${mib(u.peakPrivateMiB)} private`
      : `${label} ${mib(u.peakRssMiB)}`;
  });
  return [
    `    CPU, cores: ${cpu.join(' · ')}  (load average ${usage.loadAverage.start.toFixed(1)} → ${usage.loadAverage.end.toFixed(1)})`,
    `    peak memory: ${memory.join(' · ')}`,
  ];
}

function stepLines(step: StepResult): string[] {
  const p = step.probe;
  const head =
    step.offeredPerSecond > 0
      ? `${step.name}: offered ${int(step.offeredPerSecond)}/s, achieved ${int(step.achievedPerSecond)}/s ` +
        `(${int(step.changes)} changes in ${int(step.transactions)} transactions, ${step.seconds.toFixed(1)} s)`
      : `${step.name}: the probe alone for ${step.seconds.toFixed(1)} s`;
  const lines = [
    head,
    `    probe: p50 ${seconds(p.p50Ms)} · p99 ${seconds(p.p99Ms)} · max ${seconds(p.maxMs)} (n=${p.count}` +
      `${p.lost ? `, ${p.lost} lost` : ''}) · drain ${step.drainSeconds === null ? 'did not finish' : `${step.drainSeconds.toFixed(1)} s`}` +
      `${step.pipelinePerSecond !== null && step.offeredPerSecond > 0 ? ` · end to end ${int(step.pipelinePerSecond)}/s` : ''}` +
      ` → ${step.held ? 'held' : `NOT held: ${step.verdict}`}`,
    ...usageLines(step.usage.load),
  ];
  const drain = step.usage.drain;
  if (drain && drain.seconds >= 1) {
    const cpu = GROUP_LABELS.filter(([g]) => drain.groups[g]?.processes).map(
      ([g, label]) => `${label} ${drain.groups[g]!.cores.toFixed(2)}`,
    );
    if (drain.otherCpuSeconds !== null)
      cpu.push(`others ${(drain.otherCpuSeconds / drain.seconds).toFixed(2)}`);
    lines.push(`    CPU while draining, cores: ${cpu.join(' · ')}`);
  }
  if (step.cpuPerChangeUs) {
    const per = GROUP_LABELS.filter(([g]) => step.cpuPerChangeUs![g] !== undefined).map(
      ([g, label]) => `${label} ${step.cpuPerChangeUs![g]!.toFixed(1)}`,
    );
    lines.push(`    CPU µs per change (load + drain): ${per.join(' · ')}`);
  }
  if (step.failedBatches > 0)
    lines.push(`    generator: ${step.failedBatches} failed batch(es): ${step.generatorErrors.join(' | ')}`);
  if (step.profile) {
    const busy = step.profile.stages.filter((s) => s.stage !== 'idle' && s.share >= 0.01);
    const run = step.profiledRun;
    if (run)
      lines.push(
        `    profiled apart from the timed step: ${run.seconds.toFixed(0)} s at the same rate after it` +
          `${run.changes > 0 ? ` (${int(run.changes)} changes)` : ''}, its probe not timed`,
      );
    lines.push(`    stack process by stage: ${busy.map((s) => `${s.stage} ${pct(s.share)}`).join(' · ')}`);
    const threads = step.profile.threads ?? [];
    if (threads.length > 1) {
      const cpu = threads.map((t) => `${t.thread} ${(t.busySeconds / step.profile!.seconds).toFixed(2)}`);
      // Samples × interval (bench/profile-stages.ts): a thread's waits for a core are left out.
      lines.push(`    stack process threads, cores busy (profiled): ${cpu.join(' · ')}`);
      for (const t of threads) {
        const own = t.stages.filter((s) => s.stage !== 'idle' && s.share >= 0.02);
        lines.push(`      ${t.thread}: ${own.map((s) => `${s.stage} ${pct(s.share)}`).join(' · ')}`);
      }
    }
  }
  if (step.captureProfile) {
    const owners = step.captureProfile.owners.filter((o) => o.owner !== 'idle' && o.share >= 0.02);
    lines.push(`    capture by owner: ${owners.map((o) => `${o.owner} ${pct(o.share)}`).join(' · ')}`);
  }
  const s = step.stages;
  const capture = s.capture
    ? `capture ${int(s.capture.changes)} changes in ${int(s.capture.records)} records`
    : 'capture (no stats)';
  const load = s.load;
  lines.push(
    `    stages: ${capture} · delivery ${int(s.delivery.getRecordsCalls)} GetRecords, ` +
      `${int(s.delivery.objectsOut)} objects · transform ` +
      `${int(s.transform.invocations ?? 0)} invocations, ${int(s.transform.objects)} Parquet objects, ` +
      `${int(s.transform.rows)} rows · load ${int(load.invocations ?? 0)} invocations, ${int(load.objects)} objects, ` +
      `${int(load.rows)} rows, busy ` +
      `${load.busySeconds.toFixed(1)} s${load.rowsPerBusySecond !== null ? ` (${int(load.rowsPerBusySecond)} rows/s while loading)` : ''}`,
  );
  for (const w of (step.warehouseStatements ?? []).slice(0, 4))
    lines.push(
      `    warehouse: ${(w.totalMs / 1000).toFixed(1)} s in ${int(w.calls)} × ${w.statement.slice(0, 90)}`,
    );
  const problems = Object.entries(s.problems);
  if (problems.length > 0) lines.push(`    logged: ${problems.map(([k, n]) => `${n}× ${k}`).join(' · ')}`);
  return lines;
}

export function formatPipelineReport(r: PipelineResult): string {
  const m = r.machine;
  const out = [
    `totes pipeline bench · ${m.date} · ${m.cpus} × ${m.cpuModel} · Node ${m.node} · Postgres ${m.postgres}`,
    `load average ${m.loadAverage.start.toFixed(1)} at start, ${m.loadAverage.end.toFixed(1)} at end ` +
      `(above ${m.cpus}: other work competed for the CPUs)`,
    `settings: ${Object.entries(r.settings)
      .map(([k, v]) => `${k} ${Array.isArray(v) ? v.join(',') : String(v)}`)
      .join(' · ')}`,
    '',
  ];
  if (r.baseline) {
    const b = r.baseline;
    out.push('baseline (same Postgres, same run, nothing else of the pipeline running):');
    out.push(
      `  plain writes: the generator unpaced    ${int(b.write.perSecond)} changes/s  (${int(b.write.changes)} changes, ` +
        `${int(b.write.transactions)} transactions, ${b.write.seconds.toFixed(1)} s` +
        `${b.write.failedBatches ? `, ${b.write.failedBatches} failed batches` : ''})`,
    );
    if (b.decode)
      out.push(
        `  raw logical decoding of those writes   ${int(b.decode.perSecond)} changes/s  (${b.decode.seconds.toFixed(1)} s` +
          `${b.decode.walsenderCpuSeconds !== null ? `; walsender ${((b.decode.walsenderCpuSeconds * 1e6) / b.decode.changes).toFixed(1)} µs CPU/change` : ''})`,
      );
    if (b.note) out.push(`  ${b.note}`);
    out.push('');
  }
  const st = r.startup;
  out.push(
    `start: stack up in ${st.stackSeconds.toFixed(1)} s; initial snapshot` +
      `${st.snapshotRows !== null ? ` (${int(st.snapshotRows)} rows)` : ''} in the warehouse ` +
      `${st.snapshotToWarehouseSeconds !== null ? `${st.snapshotToWarehouseSeconds.toFixed(1)} s later` : 'never (timed out)'}`,
    '',
  );
  for (const step of r.steps) out.push(...stepLines(step), '');
  out.push(
    r.knee
      ? `knee: ${int(r.knee.offeredPerSecond)} changes/s held (achieved ${int(r.knee.achievedPerSecond)}/s, probe p99 ${seconds(r.knee.p99Ms)})`
      : 'knee: no step was held',
  );
  if (r.warehouseGrowth.bytesPerChange !== null)
    out.push(
      `warehouse growth: ${mib(r.warehouseGrowth.bytes / 1048576)} for ${int(r.warehouseGrowth.changes)} changes ` +
        `(${int(r.warehouseGrowth.bytesPerChange)} bytes per change, indexes included)`,
    );
  if (r.verify)
    out.push(r.verify.ok ? 'verify: the warehouse equals the source' : `verify:\n${r.verify.report}`);
  for (const note of r.notes) out.push(`note: ${note}`);
  return `${out.join('\n')}\n`;
}
