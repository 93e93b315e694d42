import path from 'node:path';
import { parseBenchArgs, positiveInt, resultsFile } from './options';
import { DEFAULT_EXPORT_DIR } from './totesys-export';

/** `npm run bench:coldstart`'s command line, parsed and checked once at the entry point. */

export interface ColdStartOptions {
  /** Rows the source holds (all 11 tables together). */
  rows: number;
  /** The totesys CSV export the source is built from. */
  data: string;
  /** Build the source in this (empty) database instead of a fresh embedded Postgres. */
  sourceUrl: string | null;
  /** Load into this (empty) database instead of the warehouse the stack starts, as `totes up` does. */
  warehouseUrl: string | null;
  /** Capture's slot and publication: never a real deployment's. */
  slot: string;
  /** The target: cold start → verify passes within this many seconds. */
  targetSeconds: number;
  /** Give up waiting for the warehouse, or for verify to pass, after this many seconds. */
  timeoutSeconds: number;
  /** Sampling interval of the stack process' CPU profile (by stage); 0 profiles nothing. */
  profileIntervalUs: number;
  /** Measure the floor (raw COPY out of the source and into empty tables) after the run. */
  baseline: boolean;
  out: string;
  keepData: boolean;
}

const HELP = `Usage: npm run bench:coldstart -- [options]

Builds a source of --rows rows (the totesys export, its order tables repeated with shifted ids,
loaded with COPY), then, from nothing (no slot, no warehouse, no stack), starts the local pipeline
as \`totes up\` does and times every phase until the warehouse is complete and \`totes verify\`'s
comparison passes. Then measures the floor on the same machine: the same rows COPY'd out of the
source and into empty tables of the warehouse server. Prints a report on stdout, progress on
stderr, and writes the report as JSON. Measures; does not gate: exits 0 unless something crashed
or the warehouse never verified. See bench/README.md.

Options:
  --rows N             rows in the source, all tables (default 1000000)
  --data DIR           the totesys CSV export (default ../shared/data/totesys-2025-02)
  --source-url URL     build the source in this empty database (wal_level=logical) instead of
                       a fresh embedded Postgres 17
  --warehouse-url URL  load into this empty database instead of the embedded warehouse the
                       stack starts (which is what \`totes up\` does, and what is timed)
  --slot NAME          capture's slot and publication (default totes_coldstart; dropped at the
                       end when the source is a given one)
  --target-seconds N   cold start → verified target (default 60)
  --timeout S          give up after S seconds of waiting for the warehouse (default 1800)
  --profile-us N       sampling interval of the stack process' CPU profile from its start to
                       the warehouse complete, for the time by stage (default 2000; 0: off)
  --skip-baseline      do not measure the COPY floor
  --out FILE           JSON results (default bench/results/coldstart-<date>.json)
  --keep               keep the data directory (printed) instead of removing it
  -h, --help           show this help
`;

/** Null when --help was asked for (the help is printed). */
export function parseColdStartOptions(argv: string[], now = new Date()): ColdStartOptions | null {
  const values = parseBenchArgs(
    argv,
    {
      rows: { type: 'string' },
      data: { type: 'string' },
      'source-url': { type: 'string' },
      'warehouse-url': { type: 'string' },
      slot: { type: 'string' },
      'target-seconds': { type: 'string' },
      timeout: { type: 'string' },
      'profile-us': { type: 'string' },
      'skip-baseline': { type: 'boolean' },
      out: { type: 'string' },
      keep: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    HELP,
  );
  if (!values) return null;
  return {
    rows: positiveInt('rows', values.rows, 1_000_000),
    data: values.data ? path.resolve(values.data) : DEFAULT_EXPORT_DIR,
    sourceUrl: values['source-url'] ?? null,
    warehouseUrl: values['warehouse-url'] ?? null,
    slot: values.slot ?? 'totes_coldstart',
    targetSeconds: positiveInt('target-seconds', values['target-seconds'], 60),
    timeoutSeconds: positiveInt('timeout', values.timeout, 1800),
    profileIntervalUs:
      values['profile-us'] === '0' ? 0 : positiveInt('profile-us', values['profile-us'], 2000),
    baseline: !(values['skip-baseline'] ?? false),
    out: resultsFile(values.out, 'coldstart', now),
    keepData: values.keep ?? false,
  };
}
