import path from 'node:path';
import { BenchUsageError, parseBenchArgs } from './options';

/** `npm run bench:pipeline`'s command line, parsed and checked once at the entry point. */

export interface PipelineOptions {
  /** Offered rates, row changes per second, in order. */
  steps: number[];
  stepSeconds: number;
  /** A step with the probe alone before the ladder (the idle pipeline's latency); 0 skips it. */
  idleSeconds: number;
  connections: number;
  batchMs: number;
  probeMs: number;
  /** A step is held when the probe's p99 is at most this. */
  p99TargetMs: number;
  drainTimeoutSeconds: number;
  keepGoing: boolean;
  scale: number;
  seed: number;
  sourceUrl: string | null;
  /** Capture's slot and publication name: never a real deployment's (default totes_bench). */
  slot: string;
  warehouseUrl: string | null;
  /** Changes the baseline writes unpaced and decodes; 0 skips the baseline. */
  baselineChanges: number;
  /** Sampling interval of the stack process' per-step CPU profile; 0 profiles nothing. */
  profileIntervalUs: number;
  /**
   * Length of each step's profiled run, which follows the timed step at the same rate: the
   * profiler's sampling costs CPU the timed step's probe would otherwise pay for.
   */
  profileSeconds: number;
  /** Save the stack's per-step profiles and capture's whole-run profile here. */
  cpuProfileDir: string | null;
  /** The stack as `totes up --freshness/--buffer-interval-ms/--stages` runs it. */
  freshness: 'fast' | 'default';
  bufferIntervalMs: number | null;
  stages: 'workers' | 'in-process';
  verify: boolean;
  out: string;
  keepData: boolean;
  quick: boolean;
}

const REPO_ROOT = path.resolve(__dirname, '..');

const HELP = `Usage: npm run bench:pipeline -- [options]

Drives the whole local pipeline (capture, Kinesis, the local Firehose, S3, transform, load, the
warehouse) with the totesys business at stepped rates while a probe times single commits until they
are visible in the warehouse. Prints a report on stdout, progress on stderr, and writes the report
as JSON. Measures; does not gate: exits 0 unless something crashed. See bench/README.md.

Options:
  --steps LIST           offered rates in row changes/s (default 1000,5000,10000,20000,50000)
  --step-seconds N       load phase of each step (default 30)
  --idle-seconds N       a first step with the probe alone, for the idle pipeline's latency;
                         0 skips it (default 15)
  --connections N        generator connections (default 4)
  --batch-ms N           the generator commits rate × N / 1000 changes per N ms, spread over
                         its connections, one transaction per batch (default 100)
  --probe-ms N           a probe commit every N ms (default 250)
  --p99-ms N             a step is held when the probe's p99 is at most N ms (default 3000)
  --drain-timeout S      give up waiting for a step's backlog after S seconds (default 300)
  --keep-going           run every step, even after one was not held (default: stop there)
  --scale X              seed scale of the source (default 1)
  --seed N               planner seed (default 1)
  --source-url URL       an existing Postgres (wal_level=logical) instead of an embedded one;
                         seeded with totesys if it has none
  --warehouse-url URL    an existing Postgres for the warehouse instead of an embedded one
  --slot NAME            capture's slot and publication (default totes_bench; dropped at the end
                         when the source is a given one)
  --baseline-changes N   changes the baseline writes unpaced and decodes (default 200000; 0 skips)
  --profile-us N         sampling interval of the stack process' CPU profile per step, for the
                         time by stage (default 2000; 0 turns it off)
  --profile-seconds N    each step's profile is taken in a run of its own after the timed step,
                         at the same rate, this long; its probe is not timed (default 10)
  --cpu-profile DIR      also save each step's profile of the stack process, and a profile of
                         capture over the whole run, as .cpuprofile files in DIR
  --freshness MODE       the stack's mode, as totes up --freshness: fast (default: mixed objects,
                         no dynamic partitioning) or default (per-table objects)
  --buffer-interval-ms N the local Firehose's buffering interval (default the mode's: 250 ms
                         fast, 1000 ms default)
  --stages WHERE         workers (default: the record transformation, transform and load on
                         worker threads) or in-process
                         (on the stack's main event loop, as before)
  --skip-verify          do not compare the warehouse with the source at the end
  --out FILE             JSON results (default bench/results/pipeline-<date>.json)
  --keep                 keep the data directory (printed) instead of removing it
  --quick                a smoke run: steps 250,1000 of 5 s, idle 3 s, scale 0.05, baseline
                         10000, drain timeout 60 s (explicit options still win)
  -h, --help             show this help
`;

function number(name: string, raw: string | undefined, fallback: number, min = 1): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min)
    throw new BenchUsageError(`--${name} must be a number ≥ ${min}, got "${raw}"`);
  return n;
}

function integer(name: string, raw: string | undefined, fallback: number, min = 1): number {
  const n = number(name, raw, fallback, min);
  if (!Number.isSafeInteger(n)) throw new BenchUsageError(`--${name} must be an integer, got "${raw}"`);
  return n;
}

function rates(raw: string | undefined, fallback: number[]): number[] {
  if (raw === undefined) return fallback;
  const list = raw.split(',').map((s) => Number(s.trim()));
  if (list.length === 0 || list.some((n) => !Number.isFinite(n) || n <= 0))
    throw new BenchUsageError(`--steps must be a comma-separated list of positive rates, got "${raw}"`);
  return list;
}

/** A value of a closed list; the first is the default. */
function oneOf<T extends string>(name: string, value: string | undefined, allowed: readonly T[]): T {
  if (value === undefined) return allowed[0]!;
  if (!(allowed as readonly string[]).includes(value))
    throw new BenchUsageError(`--${name} must be one of ${allowed.join(', ')}`);
  return value as T;
}

/** Null when --help was asked for (the help is printed). */
export function parsePipelineOptions(argv: string[], now = new Date()): PipelineOptions | null {
  const values = parseBenchArgs(
    argv,
    {
      steps: { type: 'string' },
      'step-seconds': { type: 'string' },
      'idle-seconds': { type: 'string' },
      connections: { type: 'string' },
      'batch-ms': { type: 'string' },
      'probe-ms': { type: 'string' },
      'p99-ms': { type: 'string' },
      'drain-timeout': { type: 'string' },
      'keep-going': { type: 'boolean' },
      scale: { type: 'string' },
      seed: { type: 'string' },
      'source-url': { type: 'string' },
      'warehouse-url': { type: 'string' },
      slot: { type: 'string' },
      'baseline-changes': { type: 'string' },
      'profile-us': { type: 'string' },
      'profile-seconds': { type: 'string' },
      'cpu-profile': { type: 'string' },
      'skip-verify': { type: 'boolean' },
      freshness: { type: 'string' },
      'buffer-interval-ms': { type: 'string' },
      stages: { type: 'string' },
      out: { type: 'string' },
      keep: { type: 'boolean' },
      quick: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    HELP,
  );
  if (!values) return null;
  const quick = values.quick ?? false;
  const stamp = now.toISOString().replace(/:/g, '-').replace(/\..*/, '');
  return {
    steps: rates(values.steps, quick ? [250, 1000] : [1000, 5000, 10_000, 20_000, 50_000]),
    stepSeconds: number('step-seconds', values['step-seconds'], quick ? 5 : 30),
    idleSeconds: number('idle-seconds', values['idle-seconds'], quick ? 3 : 15, 0),
    connections: integer('connections', values.connections, 4),
    batchMs: integer('batch-ms', values['batch-ms'], 100),
    probeMs: integer('probe-ms', values['probe-ms'], 250),
    p99TargetMs: integer('p99-ms', values['p99-ms'], 3000),
    drainTimeoutSeconds: number('drain-timeout', values['drain-timeout'], quick ? 60 : 300),
    keepGoing: values['keep-going'] ?? false,
    scale: number('scale', values.scale, quick ? 0.05 : 1, 0.001),
    seed: integer('seed', values.seed, 1),
    sourceUrl: values['source-url'] ?? null,
    warehouseUrl: values['warehouse-url'] ?? null,
    slot: values.slot ?? 'totes_bench',
    baselineChanges: integer('baseline-changes', values['baseline-changes'], quick ? 10_000 : 200_000, 0),
    profileIntervalUs: integer('profile-us', values['profile-us'], 2000, 0),
    profileSeconds: integer('profile-seconds', values['profile-seconds'], quick ? 3 : 10, 1),
    cpuProfileDir: values['cpu-profile'] ? path.resolve(values['cpu-profile']) : null,
    freshness: oneOf('freshness', values.freshness, ['fast', 'default'] as const),
    bufferIntervalMs:
      values['buffer-interval-ms'] === undefined
        ? null
        : integer('buffer-interval-ms', values['buffer-interval-ms'], 0, 0),
    stages: oneOf('stages', values.stages, ['workers', 'in-process'] as const),
    verify: !(values['skip-verify'] ?? false),
    out: values.out ? path.resolve(values.out) : path.join(REPO_ROOT, `bench/results/pipeline-${stamp}.json`),
    keepData: values.keep ?? false,
    quick,
  };
}
