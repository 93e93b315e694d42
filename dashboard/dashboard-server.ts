import Fastify, { type FastifyInstance } from 'fastify';
import fs from 'node:fs';
import type { ServerResponse } from 'node:http';
import path from 'node:path';
import { Pool, types as pgTypes, type PoolConfig } from 'pg';
import { silentLogger, type Logger } from '../core/logger';
import { assessHealth, type HealthReport } from '../core/pipeline-health';
import { gatherWarehouseFacts } from '../local/gather-health';
import {
  isPanelName,
  queryPanels,
  DASHBOARD_PANELS,
  type DashboardPanels,
  type Queryable,
} from './dashboard-queries';

/**
 * `totes dashboard`: a small HTTP server (fastify: maintained, fast, with request validation and
 * graceful close built in) that serves one static page, Chart.js from node_modules (no CDN: it
 * works offline, and there is no build step), and JSON from the fixed queries of
 * dashboard-queries.ts.
 *
 * Live updates: while at least one page is open, the server polls the warehouse's WAL position
 * once a second (`pg_current_wal_lsn()`, one cheap call: any committed write moves it); when it
 * moved, or the pipeline panel is due (its ages change with time), it queries the panels once and
 * pushes the snapshot to every open page as a server-sent event. Pages never poll, and N pages
 * cost the warehouse what one costs.
 * https://html.spec.whatwg.org/multipage/server-sent-events.html
 */
export interface DashboardOptions {
  warehouseUrl: string;
  /** Default 127.0.0.1: the dashboard shows business figures; exposing it is a decision. */
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** The pipeline panel's report; default: from the warehouse's bookkeeping alone. */
  health?: () => Promise<HealthReport>;
  logger?: Logger;
  /** How often to look for warehouse changes while pages are open (default 1000 ms). */
  pollIntervalMs?: number;
  /** Refresh the pipeline panel at least this often (default 5000 ms). */
  healthIntervalMs?: number;
  pool?: Omit<PoolConfig, 'connectionString'>;
}

export interface Dashboard {
  url: string;
  close(): Promise<void>;
}

export interface DashboardSnapshot {
  generatedAt: string;
  panels: DashboardPanels;
  pipeline: HealthReport | { error: string };
}

const PUBLIC_DIR = [
  path.join(__dirname, 'public'),
  path.resolve(__dirname, '..', '..', 'dashboard', 'public'),
].find((d) => fs.existsSync(path.join(d, 'index.html')))!;
// chart.js's package exports hide dist/, so find it beside the CommonJS entry point.
const CHART_JS = path.join(path.dirname(require.resolve('chart.js')), 'chart.umd.min.js');

const STATIC: Record<string, { file: string; type: string }> = {
  '/': { file: path.join(PUBLIC_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  '/assets/app.js': { file: path.join(PUBLIC_DIR, 'app.js'), type: 'text/javascript; charset=utf-8' },
  '/assets/app.css': { file: path.join(PUBLIC_DIR, 'app.css'), type: 'text/css; charset=utf-8' },
  '/vendor/chart.umd.min.js': { file: CHART_JS, type: 'text/javascript; charset=utf-8' },
};

// Same-origin only: no inline script, nothing from elsewhere.
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

/** Dates stay `YYYY-MM-DD` text (pg would make a local-time Date of them); numerics stay exact text. */
const TYPES = {
  getTypeParser: (oid: number, format?: 'text' | 'binary') =>
    oid === pgTypes.builtins.DATE
      ? (v: string) => v
      : (pgTypes.getTypeParser as (o: number, f?: 'text' | 'binary') => unknown)(oid, format),
};

export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const logger = options.logger ?? silentLogger;
  const pool = new Pool({
    max: 4,
    connectionTimeoutMillis: 5000,
    // A dashboard query that runs away must not hold the warehouse.
    statement_timeout: 10_000,
    application_name: 'totes-dashboard',
    ...options.pool,
    connectionString: options.warehouseUrl,
    types: TYPES as PoolConfig['types'],
  });
  pool.on('error', (e) => logger.warn('dashboard warehouse connection failed', { err: e }));
  const health =
    options.health ??
    (async () => {
      const { observedAt, facts } = await gatherWarehouseFacts(pool);
      return assessHealth({ observedAt, warehouse: facts });
    });
  const pipeline = () =>
    health().catch((e: unknown) => ({ error: e instanceof Error ? e.message : String(e) }));
  const snapshot = async (db: Queryable): Promise<DashboardSnapshot> => {
    const [panels, report] = await Promise.all([queryPanels(db), pipeline()]);
    return { generatedAt: new Date().toISOString(), panels, pipeline: report };
  };

  const app: FastifyInstance = Fastify({ logger: false, forceCloseConnections: true });
  app.addHook('onSend', async (_request, reply) => {
    reply.headers(SECURITY_HEADERS);
  });

  for (const [route, asset] of Object.entries(STATIC))
    app.get(route, async (_request, reply) =>
      reply.type(asset.type).header('cache-control', 'no-cache').send(fs.createReadStream(asset.file)),
    );

  app.get('/api/dashboard', async () => snapshot(pool));
  app.get('/api/pipeline', async () => pipeline());
  app.get<{ Params: { name: string } }>('/api/panels/:name', async (request, reply) => {
    const { name } = request.params;
    if (!isPanelName(name)) return reply.code(404).send({ error: `no panel ${JSON.stringify(name)}` });
    return DASHBOARD_PANELS[name](pool);
  });

  // ---- live updates
  const clients = new Set<ServerResponse>();
  let last = '';
  let lastLsn: string | null = null;
  let lastHealthAt = 0;
  let timer: NodeJS.Timeout | null = null;
  let busy = false;
  const pollMs = options.pollIntervalMs ?? 1000;
  const healthMs = options.healthIntervalMs ?? 5000;

  let current: DashboardSnapshot | null = null;
  const send = (res: ServerResponse, body: string) => res.write(`event: snapshot\ndata: ${body}\n\n`);
  const tick = async () => {
    if (busy || clients.size === 0) return;
    busy = true;
    try {
      let lsn: string | null = null;
      try {
        lsn = (await pool.query('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn;
      } catch {
        // A standby cannot say (recovery in progress): refresh everything on the health interval.
      }
      const due = Date.now() - lastHealthAt >= healthMs;
      const changed = lsn === null ? due : lsn !== lastLsn || current === null;
      if (!changed && !due) return;
      // The business panels only when the warehouse changed; the pipeline panel also when due.
      const [panels, report] = await Promise.all([
        changed ? queryPanels(pool) : Promise.resolve(current!.panels),
        pipeline(),
      ]);
      lastLsn = lsn;
      lastHealthAt = Date.now();
      current = { generatedAt: new Date().toISOString(), panels, pipeline: report };
      // generatedAt differs every time: compare what the page shows.
      const shown = JSON.stringify({ panels, pipeline: report });
      if (shown === last) return;
      last = shown;
      const body = JSON.stringify(current);
      for (const res of clients) send(res, body);
    } catch (e) {
      logger.warn('dashboard refresh failed', { err: e });
    } finally {
      busy = false;
    }
  };

  app.get('/api/events', async (request, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    });
    res.write('retry: 2000\n\n');
    // The first page after a quiet spell must not get a snapshot from before it.
    if (clients.size === 0) current = null;
    clients.add(res);
    request.raw.on('close', () => clients.delete(res));
    try {
      // A new page gets the latest snapshot at once (a fresh one when there is none yet).
      current ??= await snapshot(pool);
      send(res, JSON.stringify(current));
    } catch (e) {
      res.write(
        `event: failure\ndata: ${JSON.stringify({ error: e instanceof Error ? e.message : String(e) })}\n\n`,
      );
    }
    if (!timer) {
      timer = setInterval(() => void tick(), pollMs);
      timer.unref();
    }
  });

  const host = options.host ?? '127.0.0.1';
  await app.listen({ host, port: options.port ?? 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  const shownHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    url: `http://${shownHost}:${port}/`,
    async close() {
      if (timer) clearInterval(timer);
      for (const res of clients) res.end();
      clients.clear();
      await app.close();
      await pool.end();
    },
  };
}
