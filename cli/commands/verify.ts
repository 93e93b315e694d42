import { Client } from 'pg';
import { redactUrl } from '../../core/logger';
import { renderVerifyReport, verifyWarehouse, type VerifyReport } from '../../processors/load/verify';
import { defineCommand, UsageError } from '../command';

// An unreachable host would otherwise hang until the OS gives up.
const CONNECT_TIMEOUT_MS = 10_000;
/** With --wait: how often to look again while the pipeline catches up. */
const RECHECK_INTERVAL_MS = 2_000;

/** Exit codes: 0 equal, 1 different, 2 bad usage (cli/totes.ts), 3 could not compare. */
export const VERIFY_EXIT = { equal: 0, different: 1, failed: 3 } as const;

export const command = defineCommand({
  name: 'verify',
  summary:
    "Compare the warehouse with the totesys source: every dimension's current rows, every fact's latest " +
    'version per source row, and the counts. Prints the first differences of each table and exits 1 when ' +
    'they differ (3 when it could not compare).',
  usage: 'verify --source-url URL --warehouse-url URL [--json] [--limit N] [--wait SECONDS]',
  options: {
    'source-url': { type: 'string' },
    'warehouse-url': { type: 'string' },
    json: { type: 'boolean' },
    limit: { type: 'string' },
    wait: { type: 'string' },
  },
  optionHelp: {
    'source-url': 'postgres:// URL of the totesys source database (default: $TOTES_SOURCE_URL).',
    'warehouse-url': 'postgres:// URL of the warehouse database (default: $TOTES_WAREHOUSE_URL).',
    json: 'Print the full report as JSON instead of text.',
    limit: 'Differences listed per table (default 10).',
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
      const deadline = Date.now() + waitMs;
      let report: VerifyReport;
      for (;;) {
        report = await verifyWarehouse(source, warehouse, { limit });
        if (report.ok || Date.now() >= deadline) break;
        await new Promise((resolve) =>
          setTimeout(resolve, Math.min(RECHECK_INTERVAL_MS, deadline - Date.now())),
        );
      }
      process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : renderVerifyReport(report));
      return report.ok ? VERIFY_EXIT.equal : VERIFY_EXIT.different;
    } catch (e) {
      say(e instanceof Error ? e.message : String(e));
      return VERIFY_EXIT.failed;
    } finally {
      await Promise.all([source.end().catch(() => undefined), warehouse.end().catch(() => undefined)]);
    }
  },
});

function wholeNumber(name: string, raw: string): number {
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isSafeInteger(n) || n < 0)
    throw new UsageError(`--${name} must be a whole number, got "${raw}"`);
  return n;
}
