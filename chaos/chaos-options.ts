import path from 'node:path';
import { parseArgs } from 'node:util';

/** `npm run chaos`'s command line, parsed and checked once at the entry point. */

export const FAULT_KINDS = [
  'kill-capture',
  'kill-stack',
  'restart-source',
  'restart-warehouse',
  'throttle-sink',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface ChaosOptions {
  rounds: number;
  seed: number;
  /** The simulator's row changes per second. */
  rate: number;
  /** Seed scale of the source (1 ≈ 55,000 rows). */
  scale: number;
  /** Kinds the rounds draw from (each kind once, shuffled, before any repeats). */
  faults: FaultKind[];
  /** The business runs this long (at most) before each fault, drawn between 0 and it. */
  maxQuietSeconds: number;
  /** A round whose pipeline has not caught up after this long is reported as not converged. */
  convergeTimeoutSeconds: number;
  out: string;
  keepData: boolean;
}

class ChaosUsageError extends Error {
  override readonly name = 'ChaosUsageError';
}
export { ChaosUsageError };

const REPO_ROOT = path.resolve(__dirname, '..');

export const HELP = `Usage: npm run chaos -- [options]

Runs the local pipeline (\`totes up\`, capture from its own source Postgres into its own warehouse)
with the totesys business simulator writing, and injects one fault per round at a random moment:

  kill-capture       SIGKILL the capture process (totes up's supervisor restarts it)
  kill-stack         SIGKILL \`totes up\` itself (kinesalite, s3rver, the delivery stream, transform,
                     load and capture with it), then start it again on the same data directory
  restart-source     stop the source Postgres (fast or immediate shutdown) and start it again
  restart-warehouse  the same for the warehouse Postgres
  throttle-sink      hold every Kinesis request of capture back for seconds, for a while

Every change the simulator commits is recorded in the same source transaction (a ledger table the
pipeline does not capture). After each fault the run waits until the warehouse holds every fact
version committed so far (time to converge); at the end it compares the ledger with the warehouse's
fact history (lost = committed versions missing, duplicated = versions present more than once) and
runs \`totes verify\`. Prints a report on stdout, progress on stderr, writes it as JSON, and exits 0
only when nothing was lost or duplicated, every fault converged and verify passed.

Options:
  --rounds N             faults to inject, one per round (default 10)
  --seed N               seed of every random choice (faults, timing, the business) (default 1)
  --rate N               simulator row changes per second (default 20)
  --scale X              seed scale of the source (default 0.05)
  --faults LIST          comma-separated kinds to draw from (default all: ${FAULT_KINDS.join(',')})
  --max-quiet-seconds S  the business runs 0–S s before each fault (default 5)
  --converge-timeout S   give up waiting for a round to converge after S s (default 180)
  --out FILE             JSON report (default chaos/results/latest.json)
  --keep-data            keep the data directory (clusters, stream, buckets, logs) afterwards
  -h, --help             show this help
`;

function positive(name: string, text: string | undefined, fallback: number, integer: boolean): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0 || (integer && !Number.isInteger(value)))
    throw new ChaosUsageError(`--${name} must be a ${integer ? 'whole ' : ''}number ≥ 0, not "${text}"`);
  return value;
}

/** The options, or null when --help was asked for (the help is printed by the caller). */
export function parseChaosOptions(argv: string[]): ChaosOptions | null {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        rounds: { type: 'string' },
        seed: { type: 'string' },
        rate: { type: 'string' },
        scale: { type: 'string' },
        faults: { type: 'string' },
        'max-quiet-seconds': { type: 'string' },
        'converge-timeout': { type: 'string' },
        out: { type: 'string' },
        'keep-data': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (e) {
    throw new ChaosUsageError((e as Error).message);
  }
  const v = parsed.values;
  if (v.help) return null;
  const faults = (v.faults ?? FAULT_KINDS.join(','))
    .split(',')
    .map((f) => f.trim())
    .filter(Boolean);
  for (const f of faults)
    if (!(FAULT_KINDS as readonly string[]).includes(f))
      throw new ChaosUsageError(`--faults: unknown kind "${f}" (kinds: ${FAULT_KINDS.join(', ')})`);
  if (faults.length === 0) throw new ChaosUsageError('--faults names no kind');
  const rate = positive('rate', v.rate, 20, false);
  const scale = positive('scale', v.scale, 0.05, false);
  if (rate === 0) throw new ChaosUsageError('--rate must be above 0');
  if (scale === 0) throw new ChaosUsageError('--scale must be above 0');
  return {
    rounds: positive('rounds', v.rounds, 10, true),
    seed: positive('seed', v.seed, 1, true),
    rate,
    scale,
    faults: faults as FaultKind[],
    maxQuietSeconds: positive('max-quiet-seconds', v['max-quiet-seconds'], 5, false),
    convergeTimeoutSeconds: positive('converge-timeout', v['converge-timeout'], 180, false),
    out: path.resolve(v.out ?? path.join(REPO_ROOT, 'chaos', 'results', 'latest.json')),
    keepData: v['keep-data'] ?? false,
  };
}
