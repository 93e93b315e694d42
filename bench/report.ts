import os from 'node:os';
import type { RunCpu } from './cpu';
import type { ProfileShare } from './cpu-profile';

/**
 * The bench's results as data (written as JSON) and as the text report printed at the end.
 * Every rate is the median over the repeated runs; the per-run figures are kept beside it.
 */

/** What every bench report says about the machine it ran on (the caller adds Postgres and load). */
export function machineBasics(): Pick<Machine, 'date' | 'cpus' | 'cpuModel' | 'node' | 'os'> {
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    node: process.version,
    os: `${os.type()} ${os.release()}`,
  };
}

/** Issue 2's targets, and issue 12's ratio to pg_recvlogical on the same WAL. */
const TARGETS = { minChangesPerSecond: 20_000, minRatioToRaw: 0.5, minRatioToRecvlogical: 0.6 } as const;

export interface Machine {
  date: string;
  cpus: number;
  cpuModel: string;
  node: string;
  os: string;
  postgres: string;
  pgRecvlogical: string | null;
  /** 1-minute load average when the bench started and ended: other work competes for the cores. */
  loadAverage: { start: number; end: number };
}

export interface Measurement {
  /** Stable key for JSON consumers (`raw.library`, `capture.memory`, …). */
  id: string;
  label: string;
  /** Seconds of each run, in run order. */
  seconds: number[];
  /** Median over the runs of count / seconds; null when skipped. */
  perSecond: number | null;
  /** Why it was not measured. */
  skipped?: string;
  /** Kinesis records and bytes written (capture only), in the last run. */
  records?: number;
  bytes?: number;
  /** Median CPU seconds per process over the runs, where measured. */
  cpu?: { walsender: number | null; bench: number; kinesalite: number | null };
  /** Where this process' CPU time went in the last run (with --cpu-profile). */
  profile?: ProfileShare[];
}

interface TargetCheck {
  what: string;
  value: number;
  threshold: number;
  pass: boolean;
}

export interface WorkloadResult {
  name: string;
  title: string;
  unit: 'changes' | 'rows';
  count: number;
  /** Seconds spent writing (or loading) the workload, per run. */
  prepareSeconds: number[];
  baselines: Measurement[];
  captures: Measurement[];
  ratios: { capture: string; baseline: string; ratio: number }[];
  targets: TargetCheck[];
  notes: string[];
}

export interface BenchResult {
  machine: Machine;
  settings: Record<string, string | number>;
  workloads: WorkloadResult[];
  /** Workloads that could not run, with the reason. */
  skipped: { name: string; reason: string }[];
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** What one reader or capture set-up measured, run after run. */
export class Samples {
  readonly seconds: number[] = [];
  readonly cpu: RunCpu[] = [];
  sinkTotals?: { records: number; bytes: number };
  profile?: ProfileShare[];

  add(seconds: number, cpu?: RunCpu): void {
    this.seconds.push(seconds);
    if (cpu) this.cpu.push(cpu);
  }
}

function medianOrNull(values: (number | null)[]): number | null {
  const known = values.filter((v): v is number => v !== null);
  return known.length === values.length && known.length > 0 ? median(known) : null;
}

/** The measurement of `count` items per run, with the median rate over the runs. */
export function measured(id: string, label: string, count: number, samples: Samples): Measurement {
  const { seconds, cpu } = samples;
  return {
    id,
    label,
    seconds,
    perSecond: median(seconds.map((s) => count / s)),
    ...samples.sinkTotals,
    ...(cpu.length > 0 && {
      cpu: {
        walsender: medianOrNull(cpu.map((c) => c.walsender)),
        bench: median(cpu.map((c) => c.bench)),
        kinesalite: medianOrNull(cpu.map((c) => c.kinesalite)),
      },
    }),
    ...(samples.profile && { profile: samples.profile }),
  };
}

export function skipped(id: string, label: string, reason: string): Measurement {
  return { id, label, seconds: [], perSecond: null, skipped: reason };
}

/** Capture against each baseline, and for streamed workloads the issue's targets. */
export function compare(
  captures: readonly Measurement[],
  baselines: readonly Measurement[],
  withTargets: boolean,
): Pick<WorkloadResult, 'ratios' | 'targets'> {
  const ratios: WorkloadResult['ratios'] = [];
  const targets: TargetCheck[] = [];
  for (const capture of captures) {
    if (capture.perSecond === null) continue;
    if (withTargets) {
      targets.push({
        what: `${capture.label} ≥ ${fmtInt(TARGETS.minChangesPerSecond)} changes/s`,
        value: capture.perSecond,
        threshold: TARGETS.minChangesPerSecond,
        pass: capture.perSecond >= TARGETS.minChangesPerSecond,
      });
    }
    for (const baseline of baselines) {
      if (baseline.perSecond === null) continue;
      const ratio = capture.perSecond / baseline.perSecond;
      ratios.push({ capture: capture.id, baseline: baseline.id, ratio });
      if (withTargets) {
        targets.push({
          what: `${capture.label} ≥ ${TARGETS.minRatioToRaw} × ${baseline.label}`,
          value: ratio,
          threshold: TARGETS.minRatioToRaw,
          pass: ratio >= TARGETS.minRatioToRaw,
        });
        if (baseline.id === 'raw.pg_recvlogical')
          targets.push({
            what: `${capture.label} ≥ ${TARGETS.minRatioToRecvlogical} × ${baseline.label} (issue 12)`,
            value: ratio,
            threshold: TARGETS.minRatioToRecvlogical,
            pass: ratio >= TARGETS.minRatioToRecvlogical,
          });
      }
    }
  }
  return { ratios, targets };
}

const fmtInt = (n: number) => Math.round(n).toLocaleString('en-GB');
const fmtSeconds = (s: number) => `${s.toFixed(2)} s`;
const fmtMiB = (bytes: number) => `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;

function rateLine(m: Measurement, unit: string, count: number, labelWidth: number): string {
  const label = m.label.padEnd(labelWidth);
  if (m.perSecond === null) return `  ${label}  skipped: ${m.skipped}`;
  const rate = `${fmtInt(m.perSecond)} ${unit}/s`.padStart(18);
  const runs =
    m.seconds.length > 1
      ? `median of ${m.seconds.length}: ${m.seconds.map((s) => s.toFixed(2)).join(', ')} s`
      : fmtSeconds(m.seconds[0]);
  const sink =
    m.records !== undefined && m.bytes !== undefined
      ? `   ${fmtInt(m.records)} Kinesis records, ${fmtMiB(m.bytes)}`
      : '';
  const lines = [`  ${label}  ${rate}   ${runs}${sink}`];
  const indent = ' '.repeat(labelWidth + 4);
  if (m.cpu) {
    // Per change (or row) as well: CPU cost moves far less than wall time on a busy machine.
    const per = (cpuSeconds: number) =>
      `${cpuSeconds.toFixed(2)} s (${((cpuSeconds * 1e6) / count).toFixed(1)} µs/${unit.replace(/s$/, '')})`;
    const parts = [
      m.cpu.walsender !== null && `walsender ${per(m.cpu.walsender)}`,
      `bench process ${per(m.cpu.bench)}`,
      m.cpu.kinesalite !== null && `kinesalite process ${per(m.cpu.kinesalite)}`,
    ].filter(Boolean);
    lines.push(`${indent}CPU: ${parts.join(' · ')}`);
  }
  if (m.profile) {
    const top = m.profile
      .filter((p) => p.owner !== 'idle')
      .slice(0, 6)
      .map((p) => `${p.owner} ${(p.share * 100).toFixed(0)}%`);
    lines.push(`${indent}profile: ${top.join(' · ')}`);
  }
  return lines.join('\n');
}

export function formatReport(result: BenchResult): string {
  const { machine } = result;
  const lines: string[] = [];
  lines.push(`totes capture benchmark · ${machine.date}`);
  lines.push(
    `machine   ${machine.cpus} × ${machine.cpuModel} · ${machine.os} · Node ${machine.node} · ` +
      `PostgreSQL ${machine.postgres} (embedded) · ${machine.pgRecvlogical ?? 'no pg_recvlogical'}`,
  );
  lines.push(
    `load      1-minute load average ${machine.loadAverage.start.toFixed(2)} at the start, ` +
      `${machine.loadAverage.end.toFixed(2)} at the end (${machine.cpus} cores)`,
  );
  lines.push(
    `settings  ${Object.entries(result.settings)
      .map(([k, v]) => `${k} ${typeof v === 'number' ? fmtInt(v) : v}`)
      .join(' · ')}`,
  );
  for (const w of result.workloads) {
    const all = [...w.baselines, ...w.captures];
    const width = Math.max(...all.map((m) => m.label.length));
    lines.push('');
    lines.push(`${w.title} (prepared in ${w.prepareSeconds.map(fmtSeconds).join(', ')})`);
    for (const m of w.baselines) lines.push(rateLine(m, w.unit, w.count, width));
    for (const m of w.captures) lines.push(rateLine(m, w.unit, w.count, width));
    const labelOf = (id: string) => all.find((m) => m.id === id)?.label ?? id;
    if (w.targets.length > 0) {
      lines.push('  targets (issues 2 and 12)');
      for (const t of w.targets) {
        const value = t.threshold < 1 ? t.value.toFixed(2) : `${fmtInt(t.value)} changes/s`;
        lines.push(`    ${t.pass ? 'PASS' : 'MISS'}  ${t.what.padEnd(width + 32)} ${value}`);
      }
    } else if (w.ratios.length > 0) {
      lines.push('  ratios (no target in the issue)');
      for (const r of w.ratios)
        lines.push(
          `    ${`${labelOf(r.capture)} / ${labelOf(r.baseline)}`.padEnd(width * 2 + 3)}  ${r.ratio.toFixed(2)}`,
        );
    }
    for (const note of w.notes) lines.push(`  note: ${note}`);
  }
  for (const s of result.skipped) {
    lines.push('');
    lines.push(`${s.name}: skipped — ${s.reason}`);
  }
  return `${lines.join('\n')}\n`;
}
