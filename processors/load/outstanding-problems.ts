import fs from 'node:fs';
import path from 'node:path';
import { INGESTION_ERROR_PREFIX } from '../../core/csv-codec';
import { QUARANTINE_ROOT } from '../transform/create-handler';
import { LOAD_QUARANTINE_ROOT } from './create-handler';

/**
 * Work the pipeline set aside instead of loading, in the data directory of a local stack (`totes
 * up --data-dir`): while any of it is there, the warehouse cannot be whole, whatever a comparison
 * says (quarantined rows are missing on both sides of nothing). `totes verify` fails on it.
 *
 * Where it accumulates is a list (PROBLEM_LOCATIONS) of two shapes, so a new stage adds one entry:
 * - an S3 prefix, looked for in every bucket: s3rver keeps an object `k` of bucket `b` as the file
 *   `s3/b/k._S3rver_object` (local/s3rver.ts); its partial writes and metadata files end otherwise;
 * - a JSON-lines file name suffix, looked for in the data directory and in each of its direct
 *   subdirectories: a dead-letter file holds one failed event per line (local/s3-trigger.ts writes
 *   `triggers/<function>.dead-letter.jsonl`; any other local queue's dead letters are found when
 *   their file follows the same naming).
 * Nothing here deletes: an operator re-drives or archives the items (outside these prefixes and
 * files), then verify passes.
 */

export type ProblemKind = 'quarantined' | 'rejected' | 'dead-lettered';

export type ProblemLocation =
  | {
      kind: ProblemKind;
      /** What the items are, for a person reading the report. */
      what: string;
      /** Key prefix, looked for in every bucket. */
      s3Prefix: string;
      /** Keys that accompany an item without being one (a reason beside a quarantined copy). */
      ignore?: RegExp;
    }
  | {
      kind: ProblemKind;
      what: string;
      /** File name suffix of JSON-lines files, one item per non-empty line. */
      fileSuffix: string;
    };

/** The static front of Firehose's error prefix (`errors/` before its `!{…}` expressions). */
const FIREHOSE_ERROR_ROOT = INGESTION_ERROR_PREFIX.slice(0, INGESTION_ERROR_PREFIX.indexOf('!{'));

export const DEAD_LETTER_SUFFIX = '.dead-letter.jsonl';

export const PROBLEM_LOCATIONS: readonly ProblemLocation[] = [
  {
    kind: 'quarantined',
    what: 'changes the transform rejected, or objects it could not read',
    s3Prefix: `${QUARANTINE_ROOT}/`,
  },
  {
    kind: 'quarantined',
    what: 'objects the load could not apply',
    s3Prefix: `${LOAD_QUARANTINE_ROOT}/`,
    ignore: /\.reason\.json$/,
  },
  {
    kind: 'rejected',
    what: 'records the delivery stream could not process',
    s3Prefix: FIREHOSE_ERROR_ROOT,
  },
  {
    kind: 'dead-lettered',
    what: 'events whose handler failed after every retry',
    fileSuffix: DEAD_LETTER_SUFFIX,
  },
];

export interface OutstandingItem {
  kind: ProblemKind;
  what: string;
  /** Where, relative to the data directory: `s3/<bucket>/<prefix>` or a file. */
  location: string;
  count: number;
  unit: 'object' | 'event';
  /** The first keys (objects) or lines (events), up to the limit. */
  examples: string[];
}

export type OutstandingReport =
  | { checked: true; dataDir: string; total: number; items: OutstandingItem[] }
  | { checked: false; reason: string };

/** Base class of every error this module throws. */
export class OutstandingProblemsError extends Error {
  override name = 'OutstandingProblemsError';
}

export class NotADataDirError extends OutstandingProblemsError {
  override name = 'NotADataDirError';
  constructor(readonly dataDir: string) {
    super(
      // eslint-disable-next-line security/detect-non-literal-fs-filename -- the data directory the operator named
      fs.existsSync(dataDir)
        ? `${dataDir} is not a \`totes up\` data directory: it has neither s3/ nor triggers/`
        : `the data directory ${dataDir} does not exist`,
    );
  }
}

const S3RVER_OBJECT_SUFFIX = '._S3rver_object';
const MAX_EXAMPLE_CHARS = 160;

async function entries(dir: string): Promise<fs.Dirent[]> {
  try {
    // eslint-disable-next-line security/detect-non-literal-fs-filename -- the data directory the operator named
    return await fs.promises.readdir(dir, { withFileTypes: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR')
      return [];
    throw e;
  }
}

/** Object keys under `prefix` in a bucket directory of s3rver, sorted. */
async function objectKeys(bucketDir: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  const walk = async (dir: string, keyPrefix: string) => {
    for (const entry of await entries(dir)) {
      if (entry.isDirectory()) await walk(path.join(dir, entry.name), `${keyPrefix}${entry.name}/`);
      else if (entry.name.endsWith(S3RVER_OBJECT_SUFFIX))
        keys.push(`${keyPrefix}${entry.name.slice(0, -S3RVER_OBJECT_SUFFIX.length)}`);
    }
  };
  // A prefix ends in `/` here, so it names a directory of the store.
  await walk(path.join(bucketDir, ...prefix.split('/').filter(Boolean)), prefix);
  return keys.sort();
}

async function s3Items(
  dataDir: string,
  location: Extract<ProblemLocation, { s3Prefix: string }>,
  limit: number,
): Promise<OutstandingItem[]> {
  const items: OutstandingItem[] = [];
  const buckets = (await entries(path.join(dataDir, 's3'))).filter((e) => e.isDirectory()).map((e) => e.name);
  for (const bucket of buckets.sort()) {
    const keys = (await objectKeys(path.join(dataDir, 's3', bucket), location.s3Prefix)).filter(
      (k) => !location.ignore?.test(k),
    );
    if (keys.length)
      items.push({
        kind: location.kind,
        what: location.what,
        location: `s3/${bucket}/${location.s3Prefix}`,
        count: keys.length,
        unit: 'object',
        examples: keys.slice(0, limit),
      });
  }
  return items;
}

async function fileItems(
  dataDir: string,
  location: Extract<ProblemLocation, { fileSuffix: string }>,
  limit: number,
): Promise<OutstandingItem[]> {
  const dirs = ['', ...(await entries(dataDir)).filter((e) => e.isDirectory()).map((e) => e.name)];
  const files: string[] = [];
  for (const dir of dirs)
    for (const entry of await entries(path.join(dataDir, dir)))
      if (entry.isFile() && entry.name.endsWith(location.fileSuffix)) files.push(path.join(dir, entry.name));
  const items: OutstandingItem[] = [];
  for (const file of files.sort()) {
    // eslint-disable-next-line security/detect-non-literal-fs-filename -- the data directory the operator named
    const lines = (await fs.promises.readFile(path.join(dataDir, file), 'utf8'))
      .split('\n')
      .filter((l) => l.trim() !== '');
    if (lines.length)
      items.push({
        kind: location.kind,
        what: location.what,
        location: file.split(path.sep).join('/'),
        count: lines.length,
        unit: 'event',
        examples: lines
          .slice(0, limit)
          .map((l) => (l.length > MAX_EXAMPLE_CHARS ? `${l.slice(0, MAX_EXAMPLE_CHARS - 1)}…` : l)),
      });
  }
  return items;
}

/** What the local stack on `dataDir` set aside and nobody has dealt with yet. */
export async function outstandingProblems(
  dataDir: string,
  options: { limit?: number; locations?: readonly ProblemLocation[] } = {},
): Promise<OutstandingReport> {
  const limit = options.limit ?? 10;
  const dir = path.resolve(dataDir);
  const top = new Set((await entries(dir)).filter((e) => e.isDirectory()).map((e) => e.name));
  if (!top.has('s3') && !top.has('triggers')) throw new NotADataDirError(dir);
  const items: OutstandingItem[] = [];
  for (const location of options.locations ?? PROBLEM_LOCATIONS)
    items.push(
      ...('s3Prefix' in location
        ? await s3Items(dir, location, limit)
        : await fileItems(dir, location, limit)),
    );
  return { checked: true, dataDir: dir, total: items.reduce((n, i) => n + i.count, 0), items };
}

const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? '' : 's'}`;

/**
 * The report's lines, its name padded to `width` like the table lines before it. `allowed`: the
 * caller accepts outstanding items (`--allow-quarantine`), which are then listed without failing.
 */
export function renderOutstanding(report: OutstandingReport, width: number, allowed = false): string[] {
  const name = 'quarantine'.padEnd(width);
  if (!report.checked) return [`- ${name}  not checked: ${report.reason}`];
  if (report.total === 0) return [`✓ ${name}  nothing quarantined or dead-lettered in ${report.dataDir}`];
  const byKind = new Map<string, number>();
  for (const i of report.items) {
    const label = `${i.kind} ${i.unit}`;
    byKind.set(label, (byKind.get(label) ?? 0) + i.count);
  }
  const summary = [...byKind].map(([label, n]) => plural(n, label)).join(', ');
  const lines = [
    `${allowed ? '!' : '✗'} ${name}  ${summary} in ${report.dataDir}${allowed ? ' (allowed by --allow-quarantine)' : ''}`,
  ];
  for (const i of report.items) {
    lines.push(`    ${i.location}: ${plural(i.count, i.unit)}, ${i.what}`);
    for (const e of i.examples) lines.push(`      ${e}`);
    if (i.count > i.examples.length) lines.push(`      … and ${i.count - i.examples.length} more`);
  }
  return lines;
}
