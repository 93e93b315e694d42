import type { ChaosOptions, FaultKind } from './chaos-options';
import type { PlannedFault } from './fault-plan';
import type { VersionComparison } from './ledger-compare';

/** What `npm run chaos` found, as written to JSON and printed (formatChaosReport). */
export interface FaultOutcome {
  round: number;
  fault: PlannedFault;
  what: string;
  /** Since the run started, when the fault was injected. */
  atMs: number;
  /** Injection until the fault was over (the process back, the database up, the throttle lifted). */
  faultMs: number;
  /** Fault over until the warehouse held every fact version committed by then; null: not in time. */
  convergeMs: number | null;
  /** Changes committed (all tables) when the fault was over. */
  committedBefore: number;
}

export interface ChaosReport {
  options: Omit<ChaosOptions, 'out' | 'keepData'>;
  startedAt: string;
  durationMs: number;
  /** Snapshot of the seed until the warehouse held it. */
  initialLoadMs: number | null;
  rounds: number;
  faults: FaultOutcome[];
  faultsByKind: Partial<Record<FaultKind, number>>;
  /** Row changes the simulator committed (ledger), every table. */
  changesWritten: number;
  /** Times the simulator lost its connection (a source restart) and started again. */
  simulatorInterruptions: number;
  /** Why the simulator's runs ended early (lost sessions, refused connections), counted by message. */
  simulatorErrors: Record<string, number>;
  /** Starts of totes up (1 + kill-stack faults). */
  stackStarts: number;
  /** Committed fact versions (seed + changes) against the warehouse's fact history. */
  versions: VersionComparison;
  lost: number;
  duplicated: number;
  verify: { exitCode: number; matches: boolean | null; output: unknown };
  ok: boolean;
}

function seconds(ms: number | null): string {
  return ms === null ? 'not converged' : `${(ms / 1000).toFixed(1)} s`;
}

export function formatChaosReport(r: ChaosReport): string {
  const lines: string[] = [];
  lines.push(
    `chaos: ${r.rounds} rounds, seed ${r.options.seed}, ${r.options.rate} changes/s, scale ${r.options.scale}, ` +
      `${(r.durationMs / 1000).toFixed(0)} s`,
  );
  lines.push(`initial snapshot loaded in ${seconds(r.initialLoadMs)}`);
  lines.push('');
  lines.push('round  fault               at       lasted   converged  what');
  for (const f of r.faults)
    lines.push(
      `${String(f.round).padStart(5)}  ${f.fault.kind.padEnd(18)}  ${`${(f.atMs / 1000).toFixed(0)} s`.padStart(6)}  ` +
        `${seconds(f.faultMs).padStart(7)}  ${seconds(f.convergeMs).padStart(9)}  ${f.what}`,
    );
  lines.push('');
  const byKind = Object.entries(r.faultsByKind)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  lines.push(`faults by kind: ${byKind || 'none'}`);
  const converged = r.faults.filter((f) => f.convergeMs !== null).map((f) => f.convergeMs!);
  if (converged.length > 0)
    lines.push(
      `time to converge: median ${seconds([...converged].sort((a, b) => a - b)[Math.floor(converged.length / 2)]!)}, ` +
        `max ${seconds(Math.max(...converged))}; ${r.faults.length - converged.length} not converged`,
    );
  lines.push(
    `changes written: ${r.changesWritten} (simulator interrupted ${r.simulatorInterruptions} times; totes up started ${r.stackStarts} times)`,
  );
  lines.push('fact versions   committed  loaded  lost  duplicated  unexpected');
  for (const t of r.versions.tables)
    lines.push(
      `  ${t.table.padEnd(14)} ${String(t.committed).padStart(9)} ${String(t.loaded).padStart(7)} ` +
        `${String(t.lost).padStart(5)} ${String(t.duplicated).padStart(11)} ${String(t.unexpected).padStart(11)}`,
    );
  lines.push(`lost: ${r.lost}   duplicated: ${r.duplicated}   unexpected: ${r.versions.unexpected}`);
  for (const [what, list] of Object.entries(r.versions.examples))
    for (const v of list) lines.push(`  ${what}: ${v.table} ${v.key} (row hash ${v.hash})`);
  lines.push(
    `totes verify: exit ${r.verify.exitCode}${r.verify.matches === null ? '' : r.verify.matches ? ' (matches)' : ' (differs)'}`,
  );
  lines.push(r.ok ? 'PASS' : 'FAIL');
  return `${lines.join('\n')}\n`;
}
