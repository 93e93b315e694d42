import path from 'node:path';
import { healthMetrics, renderHealthReport, type HealthReport } from '../../core/pipeline-health';
import { formatEmf } from '../../processors/shared/metrics';
import { DEFAULT_SLOT_NAME, gatherHealth, type GatherHealthOptions } from '../../local/gather-health';
import { defineCommand, UsageError } from '../command';

/** Exit codes: scripts and probes act on them. */
export const STATUS_EXIT = { healthy: 0, unhealthy: 1 } as const;

/** The report as one EMF document: per-table figures are named `<metric>.<table>`, as the load names its own. */
export function emfOf(report: HealthReport): string {
  return formatEmf({
    stage: 'pipeline',
    timestamp: new Date(report.observedAt),
    metrics: healthMetrics(report).map((m) => ({
      name: m.table ? `${m.name}.${m.table}` : m.name,
      unit: m.unit,
      value: m.value,
    })),
    properties: { status: report.status },
  });
}

export const command = defineCommand({
  name: 'status',
  summary:
    'Is the pipeline healthy, and how far behind is it? Reads one health model (the same as the dashboard): ' +
    "freshness per warehouse table and throughput from the warehouse's bookkeeping; slot lag and retained WAL " +
    'from the source; stream backlog, objects waiting per stage, quarantined and failed work from a `totes up` ' +
    'data directory. Exits 0 when healthy (warnings allowed), 1 when not.',
  usage: 'status [--data-dir DIR] [--source-url URL] [--warehouse-url URL] [--json] [--watch]',
  options: {
    'data-dir': { type: 'string' },
    'source-url': { type: 'string' },
    'warehouse-url': { type: 'string' },
    slot: { type: 'string' },
    json: { type: 'boolean' },
    metrics: { type: 'boolean' },
    watch: { type: 'boolean' },
    interval: { type: 'string' },
  },
  optionHelp: {
    'data-dir':
      'A `totes up` data directory (default ./.totes when no URL is given): its embedded databases are found from it.',
    'source-url': 'The source Postgres (slot lag, retained WAL). Default: the embedded source of --data-dir.',
    'warehouse-url':
      'The warehouse (freshness, throughput). The reporting role is enough. Default: the embedded warehouse of --data-dir.',
    slot: `The replication slot capture reads (default ${DEFAULT_SLOT_NAME}, or TOTES_SLOT).`,
    json: 'Print the health report as JSON (one object; one line per refresh with --watch).',
    metrics:
      "Print the report's figures as one CloudWatch EMF line (namespace Totes, Stage=pipeline) per refresh, for a log-based metrics pipeline.",
    watch: 'Refresh until Ctrl-C; the exit code is that of the last report.',
    interval: 'Seconds between refreshes with --watch (default 2).',
  },
  async run(values) {
    const warehouseUrl = values['warehouse-url'] ?? process.env.TOTES_WAREHOUSE_URL;
    const sourceUrl = values['source-url'] ?? process.env.TOTES_SOURCE_URL;
    const explicitDir = values['data-dir'] ?? process.env.TOTES_DATA_DIR;
    const dataDir = explicitDir ?? (warehouseUrl || sourceUrl ? undefined : '.totes');
    const interval = values.interval === undefined ? 2 : Number(values.interval);
    if (!(interval > 0)) throw new UsageError('--interval must be a positive number of seconds');
    const options: GatherHealthOptions = {
      warehouseUrl,
      sourceUrl,
      dataDir: dataDir ? path.resolve(dataDir) : undefined,
      slotName: values.slot ?? process.env.TOTES_SLOT ?? DEFAULT_SLOT_NAME,
    };
    const print = (report: HealthReport) => {
      if (values.metrics) process.stdout.write(`${emfOf(report)}\n`);
      else if (values.json)
        process.stdout.write(`${JSON.stringify(report, null, values.watch ? undefined : 2)}\n`);
      else {
        // console.clear() redraws in place on a terminal and does nothing when piped.
        if (values.watch && process.stdout.isTTY) console.clear();
        process.stdout.write(renderHealthReport(report));
      }
      return report.healthy ? STATUS_EXIT.healthy : STATUS_EXIT.unhealthy;
    };
    if (!values.watch) return print(await gatherHealth(options));

    let stopped = false;
    let wake: (() => void) | null = null;
    const stop = () => {
      stopped = true;
      wake?.();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      let code: number = STATUS_EXIT.unhealthy;
      while (!stopped) {
        code = print(await gatherHealth(options));
        if (stopped) break;
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, interval * 1000).unref();
        });
      }
      return code;
    } finally {
      process.removeListener('SIGINT', stop);
      process.removeListener('SIGTERM', stop);
    }
  },
});
