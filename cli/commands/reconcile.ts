import path from 'node:path';
import { Client } from 'pg';
import { createLogger, redactUrl } from '../../core/logger';
import { WORK_STAGES } from '../../core/outstanding-work';
import { localLoadDeadLetters, localReconcileDeps } from '../../local/local-reconcile';
import { readRuntimeInfo, RuntimeInfoError } from '../../local/runtime-info';
import { s3ClientFor } from '../../local/s3rver';
import { reconcile, redriveDeadLetters, RECONCILE_DEFAULTS } from '../../processors/reconcile/reconcile';
import { defineCommand, UsageError } from '../command';

export const command = defineCommand({
  name: 'reconcile',
  summary:
    'Find ingestion objects never transformed and processed objects never loaded (bucket listings against ' +
    "the warehouse's load_log and the processed bucket), and send them through their stage again — the " +
    'scheduled reconciler of the AWS deployment, run against the `totes up` on --data-dir. Quarantined ' +
    'objects are not sent again unless they were replaced by a corrected version. With --dead-letters, ' +
    'the load dead letters are redriven through the same rules instead.',
  usage: 'reconcile [--data-dir DIR] --warehouse-url URL [--dry-run] [--grace SECONDS] [--days N | --all]',
  options: {
    'data-dir': { type: 'string' },
    'warehouse-url': { type: 'string' },
    'dry-run': { type: 'boolean' },
    grace: { type: 'string' },
    days: { type: 'string' },
    all: { type: 'boolean' },
    'dead-letters': { type: 'boolean' },
  },
  optionHelp: {
    'data-dir': 'Data directory of the running `totes up` (default $TOTES_DATA_DIR or ./.totes).',
    'warehouse-url': 'postgres:// URL of the warehouse (default $TOTES_WAREHOUSE_URL).',
    'dry-run': 'Count and list outstanding objects; send nothing.',
    grace: `Objects younger than this are still on their way (default ${RECONCILE_DEFAULTS.graceMs / 1000}).`,
    days: `Days of delivery partitions to look at, today included (default ${RECONCILE_DEFAULTS.lookbackDays}).`,
    all: 'Look at every object, whatever its age.',
    'dead-letters':
      'Redrive the load dead letters instead: each is sent again only if its object is still outstanding, ' +
      'dropped if it is loaded or quarantined.',
  },
  async run(values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`);
    const warehouseUrl = values['warehouse-url'] || process.env.TOTES_WAREHOUSE_URL;
    if (!warehouseUrl) throw new UsageError('--warehouse-url is required (or set TOTES_WAREHOUSE_URL)');
    const whole = (name: string, raw: string | undefined, fallback: number) => {
      if (raw === undefined) return fallback;
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isSafeInteger(n) || n < 0)
        throw new UsageError(`--${name} must be a whole number, got "${raw}"`);
      return n;
    };
    const graceMs = whole('grace', values.grace, RECONCILE_DEFAULTS.graceMs / 1000) * 1000;
    const days = whole('days', values.days, RECONCILE_DEFAULTS.lookbackDays);
    if (values.all && values.days !== undefined) throw new UsageError('--all and --days exclude each other');
    if (days === 0) throw new UsageError('--days must be at least 1 (or use --all)');
    const dataDir = path.resolve(values['data-dir'] ?? process.env.TOTES_DATA_DIR ?? '.totes');
    const say = (line: string) => process.stderr.write(`totes reconcile: ${line}\n`);

    let runtime;
    try {
      runtime = await readRuntimeInfo(dataDir);
    } catch (e) {
      if (e instanceof RuntimeInfoError) {
        say(e.message);
        return 1;
      }
      throw e;
    }
    const logger = createLogger({ service: 'reconcile', level: 'warn' });
    const s3 = s3ClientFor(runtime.s3Endpoint);
    const warehouse = new Client({ connectionString: warehouseUrl, connectionTimeoutMillis: 10_000 });
    try {
      await warehouse.connect().catch((e: Error) => {
        throw new Error(`cannot connect to the warehouse ${redactUrl(warehouseUrl)}: ${e.message}`);
      });
      const deps = localReconcileDeps({
        dataDir,
        s3,
        ingestionBucket: runtime.ingestionBucket,
        processedBucket: runtime.processedBucket,
        warehouse,
        logger,
      });
      if (values['dead-letters']) {
        const letters = await localLoadDeadLetters(dataDir);
        const result = await redriveDeadLetters(deps, letters);
        process.stdout.write(
          `${letters.length} load dead letter(s): ${result.redriven} sent again, ${result.dropped} dropped ` +
            '(already loaded, or quarantined)\n',
        );
        return 0;
      }
      const result = await reconcile(deps, {
        graceMs,
        lookbackDays: values.all ? null : days,
        dryRun: values['dry-run'] === true,
      });
      const lines = WORK_STAGES.map((stage) => {
        const c = result.counts[stage];
        return (
          `${stage.padEnd(9)}  ${c.outstanding} outstanding, ${c.done} done, ${c.quarantined} quarantined, ` +
          `${c['in-flight']} in flight; ${result.redriven[stage]} sent again`
        );
      });
      for (const item of result.outstanding.slice(0, 20))
        lines.push(`  outstanding ${item.stage}: ${item.key}`);
      if (result.outstanding.length > 20) lines.push(`  … and ${result.outstanding.length - 20} more`);
      if (result.loadRedriveSkipped === 'load queue busy')
        lines.push('  loads not sent again: the load queue still holds messages (they may be these objects)');
      process.stdout.write(`${lines.join('\n')}\n`);
      return 0;
    } catch (e) {
      say(e instanceof Error ? e.message : String(e));
      return 3;
    } finally {
      s3.destroy();
      await warehouse.end().catch(() => undefined);
    }
  },
});
