import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CAPTURE_DEFAULTS } from '../capture/capture-service';

/** The bench's command line, parsed and checked once at the entry point. */

const WORKLOADS = ['bulk', 'large', 'snapshot'] as const;
type Workload = (typeof WORKLOADS)[number];

const SINKS = ['memory', 'disk', 'child'] as const;
export type Sink = (typeof SINKS)[number];

export interface BenchOptions {
  rows: number;
  txnRows: number;
  largeRows: number;
  dataDir: string;
  shards: number;
  repeat: number;
  workloads: Workload[];
  sinks: Sink[];
  out: string;
  /** Capture settings under test (capture's own defaults unless given). */
  flushBytes: number;
  lingerMs: number;
  busyLingerMs: number;
  /** Write a V8 CPU profile of every capture run here, and summarise it in the report. */
  cpuProfileDir: string | null;
}

const REPO_ROOT = path.resolve(__dirname, '..');

const HELP = `Usage: npm run bench -- [options]

Measures capture throughput (changes/s) against the raw logical-decoding rate of the same embedded
Postgres, for the same WAL, in the same run. Prints a report on stdout, progress on stderr, and
writes the report as JSON. See bench/README.md.

Options:
  --rows N          bulk workload: rows inserted (default 200000)
  --txn-rows N      bulk workload: rows per transaction (default 10000)
  --large-rows N    large workload: rows in its single transaction (default 100000)
  --data DIR        totesys CSV export for the snapshot workload
                    (default ../shared/data/totesys-2025-02 from the repository root)
  --shards N        shards of each Kinesis stream (default 4)
  --repeat K        run every measurement K times and report the median (default 1)
  --workloads LIST  comma-separated subset of ${WORKLOADS.join(',')} (default all)
  --sinks LIST      comma-separated subset of ${SINKS.join(',')} (default all): kinesalite in
                    this process in memory, in this process on disk, or on disk in a child
                    process (as \`totes up\` runs it, beside a capture child process)
  --flush-bytes N   capture's flushBytes (default ${CAPTURE_DEFAULTS.flushBytes}, capture's default)
  --linger-ms N     capture's lingerMs (default ${CAPTURE_DEFAULTS.lingerMs}, capture's default)
  --busy-linger-ms N  capture's busyLingerMs, the linger under load (default ${CAPTURE_DEFAULTS.busyLingerMs},
                    or --linger-ms when that is longer; capture/linger.ts)
  --out FILE        JSON results (default bench/results/latest.json)
  --cpu-profile DIR write a V8 CPU profile of each capture run to DIR and summarise where this
                    process' time went (profiling slows the runs it measures)
  -h, --help        show this help
`;

export class BenchUsageError extends Error {
  override readonly name = 'BenchUsageError';
}

/**
 * parseArgs with the bench's conventions: a usage error is a BenchUsageError, and `--help` prints
 * `help` and yields null.
 */
export function parseBenchArgs<T extends ParseArgsConfig['options']>(
  argv: string[],
  options: T,
  help: string,
): ReturnType<typeof parseArgs<{ args: string[]; options: T; strict: true }>>['values'] | null {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true }));
  } catch (e) {
    throw new BenchUsageError((e as Error).message);
  }
  if ((values as { help?: boolean }).help) {
    process.stdout.write(help);
    return null;
  }
  return values;
}

/**
 * A bench's command line at its entry, for the benches with a few options of their own: the values,
 * or the process ends before the bench starts anything — 0 after `--help` (the usage printed), 2
 * after an option it does not know or a bad value (said on stderr). `read` turns the raw values into
 * the bench's options and may throw BenchUsageError.
 */
export function benchArgsOrExit<T extends ParseArgsConfig['options'], O>(
  options: T,
  help: string,
  read: (values: NonNullable<ReturnType<typeof parseBenchArgs<T>>>) => O,
  argv = process.argv.slice(2),
): O {
  try {
    const values = parseBenchArgs(argv, { ...options, help: { type: 'boolean', short: 'h' } }, help);
    if (!values) process.exit(0);
    return read(values);
  } catch (e) {
    if (!(e instanceof BenchUsageError)) throw e;
    process.stderr.write(`${e.message}\nRun with --help for the options.\n`);
    process.exit(2);
  }
}

/** `--name`'s value as a positive number, or `fallback` when not given. */
export function positiveNumber(name: string, raw: string | undefined, fallback: number): number {
  return positive(name, raw, fallback, 'number', Number.isFinite);
}

/** `--name`'s value as a positive integer, or `fallback` when not given. */
export function positiveInt(name: string, raw: string | undefined, fallback: number): number {
  return positive(name, raw, fallback, 'integer', Number.isSafeInteger);
}

function positive(
  name: string,
  raw: string | undefined,
  fallback: number,
  what: string,
  isOne: (n: number) => boolean,
): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!isOne(n) || n <= 0) throw new BenchUsageError(`--${name} must be a positive ${what}, got "${raw}"`);
  return n;
}

/** Where a bench writes its JSON report: `--out`, or bench/results/<name>-<UTC time>.json. */
export function resultsFile(out: string | undefined, name: string, now: Date): string {
  if (out) return path.resolve(out);
  const stamp = now.toISOString().replace(/:/g, '-').replace(/\..*/, '');
  return path.join(REPO_ROOT, `bench/results/${name}-${stamp}.json`);
}

function subset<T extends string>(name: string, raw: string | undefined, all: readonly T[]): T[] {
  if (raw === undefined) return [...all];
  const picked = raw.split(',').map((s) => s.trim());
  for (const p of picked)
    if (!(all as readonly string[]).includes(p))
      throw new BenchUsageError(`--${name}: unknown "${p}" (choose from ${all.join(', ')})`);
  return all.filter((a) => picked.includes(a));
}

/** Null when --help was asked for (the help is printed). */
export function parseBenchOptions(argv: string[]): BenchOptions | null {
  const values = parseBenchArgs(
    argv,
    {
      rows: { type: 'string' },
      'txn-rows': { type: 'string' },
      'large-rows': { type: 'string' },
      data: { type: 'string' },
      shards: { type: 'string' },
      repeat: { type: 'string' },
      workloads: { type: 'string' },
      sinks: { type: 'string' },
      'flush-bytes': { type: 'string' },
      'linger-ms': { type: 'string' },
      'busy-linger-ms': { type: 'string' },
      out: { type: 'string' },
      'cpu-profile': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    HELP,
  );
  if (!values) return null;
  const lingerMs = positiveInt('linger-ms', values['linger-ms'], CAPTURE_DEFAULTS.lingerMs);
  return {
    rows: positiveInt('rows', values.rows, 200_000),
    txnRows: positiveInt('txn-rows', values['txn-rows'], 10_000),
    largeRows: positiveInt('large-rows', values['large-rows'], 100_000),
    dataDir: values.data
      ? path.resolve(values.data)
      : path.resolve(REPO_ROOT, '../shared/data/totesys-2025-02'),
    shards: positiveInt('shards', values.shards, 4),
    repeat: positiveInt('repeat', values.repeat, 1),
    workloads: subset('workloads', values.workloads, WORKLOADS),
    sinks: subset('sinks', values.sinks, SINKS),
    flushBytes: positiveInt('flush-bytes', values['flush-bytes'], CAPTURE_DEFAULTS.flushBytes),
    lingerMs,
    busyLingerMs: positiveInt(
      'busy-linger-ms',
      values['busy-linger-ms'],
      Math.max(CAPTURE_DEFAULTS.busyLingerMs, lingerMs),
    ),
    out: values.out ? path.resolve(values.out) : path.join(REPO_ROOT, 'bench/results/latest.json'),
    cpuProfileDir: values['cpu-profile'] ? path.resolve(values['cpu-profile']) : null,
  };
}
