import { createRng } from '../totesys/generator';
import type { FaultKind } from './chaos-options';
import type { ShutdownMode } from './restartable-postgres';

/**
 * What the chaos run will do, decided up front from the seed alone (pure): the same seed gives the
 * same faults, at the same moments, with the same parameters. Kinds are drawn like cards: each kind
 * once, shuffled, before any kind comes again, so a short run still sees a variety.
 */
export type PlannedFault =
  | { kind: 'kill-capture' | 'kill-stack'; quietMs: number }
  | { kind: 'restart-source' | 'restart-warehouse'; quietMs: number; mode: ShutdownMode; downMs: number }
  | { kind: 'throttle-sink'; quietMs: number; delayMs: number; forMs: number };

export function planFaults(options: {
  rounds: number;
  seed: number;
  faults: readonly FaultKind[];
  maxQuietSeconds: number;
}): PlannedFault[] {
  const rng = createRng(options.seed, 'chaos');
  const plan: PlannedFault[] = [];
  let bag: FaultKind[] = [];
  for (let round = 0; round < options.rounds; round++) {
    if (bag.length === 0) {
      bag = [...options.faults];
      for (let i = bag.length - 1; i > 0; i--) {
        const j = rng.int(0, i);
        [bag[i], bag[j]] = [bag[j]!, bag[i]!];
      }
    }
    const kind = bag.shift()!;
    const quietMs = Math.round(rng.next() * options.maxQuietSeconds * 1000);
    switch (kind) {
      case 'kill-capture':
      case 'kill-stack':
        plan.push({ kind, quietMs });
        break;
      case 'restart-source':
      case 'restart-warehouse':
        plan.push({
          kind,
          quietMs,
          mode: rng.chance(0.5) ? 'fast' : 'immediate',
          downMs: rng.int(500, 3000),
        });
        break;
      case 'throttle-sink':
        plan.push({ kind, quietMs, delayMs: rng.int(2000, 8000), forMs: rng.int(5000, 15000) });
        break;
      default:
        return kind satisfies never;
    }
  }
  return plan;
}

/** One line saying what a planned fault does, for the progress log and the report. */
export function describeFault(f: PlannedFault): string {
  switch (f.kind) {
    case 'kill-capture':
      return 'SIGKILL capture';
    case 'kill-stack':
      return 'SIGKILL totes up and capture, start totes up again';
    case 'restart-source':
    case 'restart-warehouse':
      return `${f.mode} shutdown of the ${f.kind === 'restart-source' ? 'source' : 'warehouse'}, down ${(f.downMs / 1000).toFixed(1)} s`;
    case 'throttle-sink':
      return `every Kinesis request of capture held ${(f.delayMs / 1000).toFixed(1)} s, for ${(f.forMs / 1000).toFixed(1)} s`;
  }
  return f satisfies never;
}
