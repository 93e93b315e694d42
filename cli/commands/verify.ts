import fs from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';
import { redactUrl } from '../../core/logger';
import { outstandingProblems, type OutstandingReport } from '../../processors/load/outstanding-problems';
import { renderVerifyReport, verifyWarehouse, type VerifyReport } from '../../processors/load/verify';
import { defineCommand, UsageError } from '../command';

// An unreachable host would otherwise hang until the OS gives up.
const CONNECT_TIMEOUT_MS = 10_000;
/** With --wait: how often to look again while the pipeline catches up. */
const RECHECK_INTERVAL_MS = 2_000;
const DEFAULT_DATA_DIR = '.totes';

/**
 * Exit codes: 0 the warehouse matches and nothing is outstanding; 1 it differs (values, deleted
 * flags, re-read versions, dim_date, or an empty side); 2 bad usage (cli/totes.ts); 3 could not
 * compare; 4 it matches, but work is quarantined or dead-lettered (without --allow-quarantine).
 */
export const VERIFY_EXIT = { equal: 0, different: 1, failed: 3, outstanding: 4 } as const;

export const command = defineCommand({
  name: 'verify',
  summary:
    "Compare the warehouse with the totesys source: every dimension's current rows and deleted flags, " +
    "every fact's current view row for row, no re-read version in any fact's history (two consecutive " +
    'versions of a source row equal with no delete between), dim_date for every referenced date, every ' +
    "fact version's references to its dimensions and dates (Postgres does not enforce them); and " +
    'look for quarantined or dead-lettered work in the local data directory. Prints the first problems ' +
    'of each and exits 0 when all is well, 1 when the warehouse differs from the source (also when ' +
    'either side is empty: that proves nothing), 2 on bad usage, 3 when it could not compare, 4 when ' +
    'it matches but work is quarantined or dead-lettered.',
  usage:
    'verify --source-url URL --warehouse-url URL [--data-dir DIR] [--allow-quarantine] [--json] [--limit N] [--wait SECONDS]',
  options: {
    'source-url': { type: 'string' },
    'warehouse-url': { type: 'string' },
    'data-dir': { type: 'string' },
    'allow-quarantine': { type: 'boolean' },
    json: { type: 'boolean' },
    limit: { type: 'string' },
    wait: { type: 'string' },
  },
  optionHelp: {
    'source-url': 'postgres:// URL of the totesys source database (default: $TOTES_SOURCE_URL).',
    'warehouse-url': 'postgres:// URL of the warehouse database (default: $TOTES_WAREHOUSE_URL).',
    'data-dir':
      'Data directory of the local stack, looked through for quarantined objects, Firehose error ' +
      'output and dead-letter files (default: $TOTES_DATA_DIR, else ./.totes if it exists; without ' +
      'one, quarantine is reported as not checked).',
    'allow-quarantine': 'List quarantined and dead-lettered work without failing on it (exit 0, not 4).',
    json: 'Print the full report as JSON instead of text.',
    limit:
      'Differences, re-read keys, dates, missing keys and quarantined items listed per table, reference ' +
      'or place (default 10).',
    wait:
      'Keep comparing for up to SECONDS until the two match (a pipeline still catching up), then report ' +
      'the last comparison. Default 0: compare once.',
  },
  async run(values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`);
    const sourceUrl = values['source-url'] || process.env.TOTES_SOURCE_URL;
    const warehouseUrl = values['warehouse-url'] || process.env.TOTES_WAREHOUSE_URL;
    if (!sourceUrl) throw new UsageError('--source-url is required (or set TOTES_SOURCE_URL)');
    if (!warehouseUrl) throw new UsageError('--warehouse-url is required (or set TOTES_WAREHOUSE_URL)');
    const limit = wholeNumber('limit', values.limit ?? '10');
    const waitMs = wholeNumber('wait', values.wait ?? '0') * 1000;
    const allowed = values['allow-quarantine'] ?? false;
    const say = (line: string) => process.stderr.write(`totes verify: ${line}\n`);

    const source = new Client({ connectionString: sourceUrl, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
    const warehouse = new Client({
      connectionString: warehouseUrl,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    });
    try {
      await source.connect().catch((e: Error) => {
        throw new Error(`cannot connect to the source ${redactUrl(sourceUrl)}: ${e.message}`);
      });
      await warehouse.connect().catch((e: Error) => {
        throw new Error(`cannot connect to the warehouse ${redactUrl(warehouseUrl)}: ${e.message}`);
      });
      // A second connection to each side: verify compares two tables at a time (both servers and
      // both of a small machine's cores busy), in the first connection's snapshot.
      const connect = async (side: 'source' | 'warehouse') => {
        const client = new Client({
          connectionString: side === 'source' ? sourceUrl : warehouseUrl,
          connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
        });
        await client.connect();
        return client;
      };
      // Looked at first too, so a wrong --data-dir fails before a long --wait.
      const look = () => outstandingIn(values['data-dir'], limit);
      let outstanding = await look();
      const deadline = Date.now() + waitMs;
      let report: VerifyReport;
      for (;;) {
        report = await verifyWarehouse(source, warehouse, { limit, connect });
        if (report.ok || Date.now() >= deadline) break;
        await new Promise((resolve) =>
          setTimeout(resolve, Math.min(RECHECK_INTERVAL_MS, deadline - Date.now())),
        );
      }
      if (waitMs > 0) outstanding = await look();
      const code = !report.ok
        ? VERIFY_EXIT.different
        : outstanding.checked && outstanding.total > 0 && !allowed
          ? VERIFY_EXIT.outstanding
          : VERIFY_EXIT.equal;
      process.stdout.write(
        values.json
          ? `${JSON.stringify({ ...report, ok: code === VERIFY_EXIT.equal, matches: report.ok, exitCode: code, outstanding, allowQuarantine: allowed }, null, 2)}\n`
          : renderVerifyReport(report, { report: outstanding, allowed }),
      );
      return code;
    } catch (e) {
      say(e instanceof Error ? e.message : String(e));
      return VERIFY_EXIT.failed;
    } finally {
      await Promise.all([source.end().catch(() => undefined), warehouse.end().catch(() => undefined)]);
    }
  },
});

/**
 * The local stack's outstanding work. A data directory that was asked for (flag or environment) must
 * be one; the default ./.totes is looked at only if it exists (verify also runs against an AWS
 * deployment, which has none).
 */
async function outstandingIn(given: string | undefined, limit: number): Promise<OutstandingReport> {
  const asked = given ?? process.env.TOTES_DATA_DIR;
  const dataDir = path.resolve(asked ?? DEFAULT_DATA_DIR);
  // eslint-disable-next-line security/detect-non-literal-fs-filename -- the data directory the operator named
  if (asked === undefined && !fs.existsSync(dataDir))
    return {
      checked: false,
      reason: `no data directory at ./${DEFAULT_DATA_DIR} (give --data-dir for a local stack)`,
    };
  return outstandingProblems(dataDir, { limit });
}

function wholeNumber(name: string, raw: string): number {
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isSafeInteger(n) || n < 0)
    throw new UsageError(`--${name} must be a whole number, got "${raw}"`);
  return n;
}
