import path from 'node:path';
import { createLogger, redactUrl } from '../../core/logger';
import { startDashboard } from '../../dashboard/dashboard-server';
import { LOCAL_DASHBOARD_PORT } from '../../dashboard/local-dashboard';
import { embeddedUrl, gatherHealth } from '../../local/gather-health';
import { defineCommand, UsageError } from '../command';

/** The dashboard's port unless --port says otherwise (beside totes up's 54329 and 54330). */
export const DEFAULT_DASHBOARD_PORT = LOCAL_DASHBOARD_PORT;

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

export const command = defineCommand({
  name: 'dashboard',
  summary:
    'Serve the business dashboard for a warehouse: headline sales, the top 10 designs, sales over time and by ' +
    'place, payments outstanding and overdue, purchase orders, and the pipeline panel, updating by itself within ' +
    'seconds of a warehouse change. Reads the reporting views (the reporting role is enough). Listens on ' +
    '127.0.0.1 only unless --host says otherwise.',
  usage: 'dashboard --warehouse-url URL [--port P] [--host H]',
  options: {
    'warehouse-url': { type: 'string' },
    port: { type: 'string' },
    host: { type: 'string' },
    'data-dir': { type: 'string' },
    'source-url': { type: 'string' },
  },
  optionHelp: {
    'warehouse-url': 'The warehouse (or TOTES_WAREHOUSE_URL; default: the embedded warehouse of --data-dir).',
    port: `Port to listen on (default ${DEFAULT_DASHBOARD_PORT}; 0 = any free port).`,
    host: 'Address to listen on (default 127.0.0.1). Anything else exposes business figures: a warning is printed.',
    'data-dir': 'A `totes up` data directory: the pipeline panel then shows lag, backlog and quarantine too.',
    'source-url': "The source: the pipeline panel then shows the slot's lag and retained WAL.",
  },
  async run(values) {
    const dataDir = values['data-dir'] ? path.resolve(values['data-dir']) : undefined;
    const warehouseUrl =
      values['warehouse-url'] ??
      process.env.TOTES_WAREHOUSE_URL ??
      (dataDir ? embeddedUrl(dataDir, 'warehouse') : null);
    if (!warehouseUrl)
      throw new UsageError('--warehouse-url is required (or --data-dir of a running totes up)');
    const port = values.port === undefined ? DEFAULT_DASHBOARD_PORT : Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      throw new UsageError('--port must be a port number');
    const host = values.host ?? '127.0.0.1';
    if (!LOOPBACK.has(host))
      process.stderr.write(
        `totes dashboard: warning: listening on ${host} exposes the business figures to every machine that can ` +
          'reach it, without authentication. Put it behind an authenticating proxy, or leave --host out.\n',
      );
    const sourceUrl = values['source-url'] ?? process.env.TOTES_SOURCE_URL;
    const logger = createLogger({ service: 'totes-dashboard' });
    const dashboard = await startDashboard({
      warehouseUrl,
      host,
      port,
      logger,
      health: dataDir || sourceUrl ? () => gatherHealth({ warehouseUrl, sourceUrl, dataDir }) : undefined,
    });
    process.stdout.write(`Dashboard for ${redactUrl(warehouseUrl)} at ${dashboard.url}  (Ctrl-C stops it)\n`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    await dashboard.close();
    return 0;
  },
});
