/* eslint-disable security/detect-non-literal-fs-filename -- the page and its assets, fixed paths beside this module and in node_modules */
import Fastify, { type FastifyInstance } from 'fastify';
import fs from 'node:fs';
import type { ServerResponse } from 'node:http';
import path from 'node:path';
import { Pool, types as pgTypes, type PoolConfig } from 'pg';
import { silentLogger, type Logger } from '../core/logger';
import { assessHealth, type HealthReport } from '../core/pipeline-health';
import { gatherWarehouseFacts } from '../local/gather-health';
import { isPanelName, queryPanels, DASHBOARD_PANELS, type DashboardPanels } from './dashboard-queries';

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

/**
 * Every current view sorts its whole fact table by key and position (DISTINCT ON): at 10× the
 * export that is ~25 MB, past the default 4 MB work_mem, and the sort spills to disk. 64 MB per
 * sort, on at most 4 connections, keeps it in memory.
 * https://www.postgresql.org/docs/current/runtime-config-resource.html#GUC-WORK-MEM
 */
export const DASHBOARD_SESSION_OPTIONS = '-c work_mem=64MB';

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
    options: DASHBOARD_SESSION_OPTIONS,
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

  // ---- the snapshot: every panel and the pipeline report, recomputed only when stale
  const pollMs = options.pollIntervalMs ?? 1000;
  const healthMs = options.healthIntervalMs ?? 5000;
  let current: { snapshot: DashboardSnapshot; lsn: string | null; healthAt: number } | null = null;
  let inflight: Promise<DashboardSnapshot> | null = null;

  const walPosition = async (): Promise<string | null> => {
    try {
      return (await pool.query('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn;
    } catch {
      return null; // a standby cannot say (recovery in progress): then time decides
    }
  };

  /**
   * The snapshot as of now. The business panels are recomputed only when the warehouse's WAL moved
   * since the last computation (read before it, so a change during it is seen next time); the
   * pipeline report when older than the health interval. Concurrent callers share one computation.
   */
  const snapshot = (): Promise<DashboardSnapshot> => {
    inflight ??= (async () => {
      const lsn = await walPosition();
      const healthDue = !current || Date.now() - current.healthAt >= healthMs;
      const panelsStale = !current || (lsn === null ? healthDue : lsn !== current.lsn);
      if (!panelsStale && !healthDue) return current!.snapshot;
      const healthAt = Date.now();
      const [panels, report] = await Promise.all([
        panelsStale ? queryPanels(pool) : Promise.resolve(current!.snapshot.panels),
        pipeline(),
      ]);
      const next = { generatedAt: new Date().toISOString(), panels, pipeline: report };
      current = { snapshot: next, lsn, healthAt };
      return next;
    })().finally(() => {
      inflight = null;
    });
    return inflight;
  };

  const app: FastifyInstance = Fastify({ logger: false, forceCloseConnections: true });
  app.addHook('onSend', async (_request, reply) => {
    reply.headers(SECURITY_HEADERS);
  });

  for (const [route, asset] of Object.entries(STATIC))
    app.get(route, async (_request, reply) =>
      reply.type(asset.type).header('cache-control', 'no-cache').send(fs.createReadStream(asset.file)),
    );

  app.get('/api/dashboard', async () => snapshot());
  app.get('/api/pipeline', async () => pipeline());
  app.get<{ Params: { name: string } }>('/api/panels/:name', async (request, reply) => {
    const { name } = request.params;
    if (!isPanelName(name)) return reply.code(404).send({ error: `no panel ${JSON.stringify(name)}` });
    return DASHBOARD_PANELS[name](pool);
  });

  // ---- live updates: one poll for all open pages, a push when what they show changed
  const clients = new Set<ServerResponse>();
  let lastShown = '';
  let timer: NodeJS.Timeout | null = null;
  const send = (res: ServerResponse, body: string) => res.write(`event: snapshot\ndata: ${body}\n\n`);
  const tick = async () => {
    if (clients.size === 0) return;
    try {
      const next = await snapshot();
      // generatedAt differs every time: compare what the page shows.
      const shown = JSON.stringify({ panels: next.panels, pipeline: next.pipeline });
      if (shown === lastShown) return;
      lastShown = shown;
      const body = JSON.stringify(next);
      for (const res of clients) send(res, body);
    } catch (e) {
      logger.warn('dashboard refresh failed', { err: e });
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
    clients.add(res);
    request.raw.on('close', () => clients.delete(res));
    try {
      send(res, JSON.stringify(await snapshot()));
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
