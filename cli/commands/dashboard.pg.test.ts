import { runTotes } from '../../test/support/cli';
import { waitFor } from '../../test/support/pg';
import { seedReportingWarehouse } from '../../test/support/reporting-warehouse';

let warehouseUrl: string;

beforeAll(async () => {
  ({ warehouseUrl } = await seedReportingWarehouse('dashboard_cli'));
}, 120_000);

/** Runs `totes dashboard …` until it prints its URL, fetches `path`, then stops it like Ctrl-C. */
async function serveAndFetch(args: string[], path: string) {
  const running = runTotes('dashboard', '--warehouse-url', warehouseUrl, '--port', '0', ...args);
  const written = process.stdout.write as unknown as jest.Mock;
  const url = await waitFor('the dashboard URL', () => {
    const line = written.mock.calls.map(([c]) => String(c)).find((c) => c.startsWith('Dashboard for'));
    return line?.match(/at (http:\/\/\S+)/)?.[1];
  });
  const body = (await (await fetch(new URL(path, url))).json()) as unknown[] | Record<string, unknown>;
  process.emit('SIGINT');
  return { run: await running, url, body };
}

describe('totes dashboard (real Postgres)', () => {
  it('serves on 127.0.0.1 by default, printing where, without a password in the URL shown', async () => {
    const { run, url, body } = await serveAndFetch([], '/api/panels/topDesigns');
    expect(run.code).toBe(0);
    expect(new URL(url).hostname).toBe('127.0.0.1');
    expect(run.out).not.toContain(new URL(warehouseUrl).password);
    expect(run.err).toBe('');
    expect(Array.isArray(body) && body.length).toBeGreaterThan(0);
  });

  it('warns when --host exposes it', async () => {
    const { run } = await serveAndFetch(['--host', '0.0.0.0'], '/api/pipeline');
    expect(run.err).toMatch(/warning: listening on 0\.0\.0\.0 exposes the business figures/);
  });

  it('needs a warehouse', async () => {
    const saved = process.env.TOTES_WAREHOUSE_URL;
    delete process.env.TOTES_WAREHOUSE_URL;
    try {
      const run = await runTotes('dashboard');
      expect(run.code).toBe(2);
      expect(run.err).toMatch(/--warehouse-url is required/);
    } finally {
      if (saved !== undefined) process.env.TOTES_WAREHOUSE_URL = saved;
    }
  });
});
