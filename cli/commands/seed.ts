import { Client } from 'pg';
import { redactUrl } from '../../core/logger';
import { SourceNotEmptyError, installTotesys, totesysRowCounts } from '../../totesys';
import { defineCommand, UsageError } from '../command';

// An unreachable host would otherwise hang until the OS gives up.
const CONNECT_TIMEOUT_MS = 10_000;
/** A 5,000-order batch takes well under a second; this keeps the output short at large scales. */
const PROGRESS_EVERY_MS = 2_000;

export const command = defineCommand({
  name: 'seed',
  summary:
    'Create the totesys schema in a Postgres database and load a realistic, deterministic data set ' +
    '(in one transaction). Refuses a database that already has totesys data unless --reset is given.',
  usage: 'seed --source-url URL [--scale N] [--seed N] [--reset]',
  options: {
    'source-url': { type: 'string' },
    scale: { type: 'string' },
    seed: { type: 'string' },
    reset: { type: 'boolean' },
  },
  optionHelp: {
    'source-url': 'postgres:// URL of the source database (default: $TOTES_SOURCE_URL).',
    scale:
      'Multiplies designs, orders, transactions and payments; 1 (the default) is totesys as of early 2025, ' +
      'about 55,000 rows.',
    seed: 'Random seed (an integer, default 1): the same seed and scale always load identical rows.',
    reset: 'Drop the existing totesys tables, with all their data, and recreate them.',
  },
  async run(values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`);
    const url = values['source-url'] || process.env.TOTES_SOURCE_URL;
    if (!url) throw new UsageError('--source-url is required (or set TOTES_SOURCE_URL)');
    const scale = numberOption('scale', values.scale ?? '1', (n) => n > 0, 'a number > 0');
    const seed = numberOption('seed', values.seed ?? '1', Number.isSafeInteger, 'an integer');
    const source = redactUrl(url);
    const say = (line: string) => process.stderr.write(`totes seed: ${line}\n`);

    const planned = Object.values(totesysRowCounts(scale)).reduce((a, b) => a + b, 0);
    say(`loading ~${planned.toLocaleString('en-GB')} rows (scale ${scale}, seed ${seed}) into ${source}`);
    const started = Date.now();
    let lastReport = started;
    const client = new Client({ connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
    try {
      await client.connect();
      const counts = await installTotesys(client, {
        scale,
        seed,
        reset: values.reset,
        onProgress: ({ rowsDone, rowsTotal }) => {
          if (Date.now() - lastReport < PROGRESS_EVERY_MS) return;
          lastReport = Date.now();
          say(`${Math.floor((rowsDone * 100) / rowsTotal)}% (${rowsDone}/${rowsTotal} rows)`);
        },
      });
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      const summary = Object.entries(counts).map(([table, n]) => `${table} ${n}`);
      say(`done in ${seconds} s: ${summary.join(', ')}`);
      return 0;
    } catch (e) {
      if (e instanceof SourceNotEmptyError) {
        say(
          `refusing to seed ${source}: ${e.message}. Run again with --reset to drop and recreate the ` +
            'totesys tables (their data is lost), or point --source-url at an empty database.',
        );
        return 1;
      }
      say(`failed on ${source}: ${e instanceof Error ? e.message : String(e)}`);
      return 1;
    } finally {
      await client.end();
    }
  },
});

function numberOption(name: string, raw: string, valid: (n: number) => boolean, expected: string): number {
  const n = Number(raw);
  if (raw.trim() === '' || !valid(n)) throw new UsageError(`--${name} must be ${expected}, got "${raw}"`);
  return n;
}
