import http from 'node:http';
import { Client } from 'pg';
import { seedReportingWarehouse } from '../test/support/reporting-warehouse';
import { startDashboard, type Dashboard, type DashboardSnapshot } from './dashboard-server';
import { PANEL_NAMES, type HeadlinePanel } from './dashboard-queries';

let warehouseUrl: string;
let warehouse: Client;
let dashboard: Dashboard;

beforeAll(async () => {
  ({ warehouseUrl } = await seedReportingWarehouse('dashboard_api'));
  warehouse = new Client({ connectionString: warehouseUrl });
  await warehouse.connect();
  dashboard = await startDashboard({ warehouseUrl, pollIntervalMs: 50, healthIntervalMs: 200 });
}, 120_000);

afterAll(async () => {
  await dashboard?.close();
  await warehouse?.end();
});

const get = (path: string) => fetch(new URL(path, dashboard.url));
const sql = async (text: string) => (await warehouse.query(text)).rows;

/** Reads server-sent events from the dashboard until `until` returns true for one. */
function readEvents(
  until: (snapshot: DashboardSnapshot) => boolean,
  afterFirst: () => Promise<unknown>,
): Promise<DashboardSnapshot[]> {
  return new Promise((resolve, reject) => {
    const seen: DashboardSnapshot[] = [];
    const request = http.get(new URL('/api/events', dashboard.url), (res) => {
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block.split('\n').find((l) => l.startsWith('data: '));
          if (!block.includes('event: snapshot') || !data) continue;
          const snapshot = JSON.parse(data.slice(6)) as DashboardSnapshot;
          seen.push(snapshot);
          if (seen.length === 1) afterFirst().catch(reject);
          else if (until(snapshot)) {
            request.destroy();
            resolve(seen);
          }
        }
      });
    });
    request.on('error', (e) => (seen.length ? undefined : reject(e)));
  });
}

describe('the dashboard server (real Postgres)', () => {
  it('listens on 127.0.0.1 and serves the page, Chart.js from node_modules and the assets, same-origin only', async () => {
    expect(new URL(dashboard.url).hostname).toBe('127.0.0.1');
    const page = await get('/');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(page.headers.get('content-security-policy')).toMatch(/default-src 'none'; script-src 'self'/);
    const html = await page.text();
    expect(html).toContain('<script src="/vendor/chart.umd.min.js" defer></script>');
    const chart = await get('/vendor/chart.umd.min.js');
    expect(chart.status).toBe(200);
    expect(await chart.text()).toMatch(/Chart\.js v4/);
    for (const asset of ['/assets/app.js', '/assets/app.css']) expect((await get(asset)).status).toBe(200);
    expect((await get('/../package.json')).status).toBe(404);
  });

  it('answers every panel; an unknown panel name is a 404 and never reaches SQL', async () => {
    for (const name of PANEL_NAMES) expect((await get(`/api/panels/${name}`)).status).toBe(200);
    const unknown = await get(`/api/panels/${encodeURIComponent('headline; DROP TABLE load_log')}`);
    expect(unknown.status).toBe(404);
    expect(await sql(`SELECT to_regclass('load_log') AS t`)).toEqual([{ t: 'load_log' }]);
  });

  it('its figures equal SQL over the current facts', async () => {
    const snapshot = (await (await get('/api/dashboard')).json()) as DashboardSnapshot;
    const { panels } = snapshot;
    const [all] = await sql(
      `SELECT count(*)::int AS orders, sum(units_sold)::bigint::text AS units FROM fact_sales_order_current`,
    );
    expect(panels.headline.periods.allTime.orders).toBe(all.orders);
    expect(String(panels.headline.periods.allTime.units)).toBe(all.units);
    const revenue = await sql(
      `SELECT c.currency_code AS currency, sum(f.units_sold * f.unit_price)::text AS amount
         FROM fact_sales_order_current f JOIN dim_currency c USING (currency_id) GROUP BY 1 ORDER BY 1`,
    );
    expect(panels.headline.periods.allTime.revenue).toEqual(revenue);
    const designs = await sql(
      `SELECT d.design_name AS "designName", count(*)::int AS orders, sum(f.units_sold)::int AS units
         FROM fact_sales_order_current f JOIN dim_design d USING (design_id)
        GROUP BY 1 ORDER BY units DESC, 1 LIMIT 10`,
    );
    expect(panels.topDesigns).toEqual(designs);
    const overdue = await sql(
      `SELECT c.currency_code AS currency, count(*)::int AS payments, sum(p.payment_amount)::text AS amount
         FROM fact_payment_current p JOIN dim_currency c USING (currency_id)
        WHERE NOT p.paid AND p.payment_date < current_date GROUP BY 1 ORDER BY 1`,
    );
    const shownOverdue = panels.payments.outstanding.filter((o) => o.status === 'overdue');
    expect(
      overdue.map((o) => ({
        ...o,
        shown: shownOverdue.filter((s) => s.currency === o.currency).reduce((n, s) => n + s.payments, 0),
      })),
    ).toEqual(overdue.map((o) => ({ ...o, shown: o.payments })));
    expect(panels.payments.mostOverdue.length).toBeGreaterThan(0);
    expect(snapshot.pipeline).toMatchObject({ status: 'degraded', scope: { warehouse: true } });
    const [today] = await sql(`SELECT current_date::text AS d`);
    expect(panels.headline.today).toBe(today.d);
  });

  it('pushes a new snapshot to an open event stream when the warehouse changes', async () => {
    const headline = (await (await get('/api/panels/headline')).json()) as HeadlinePanel;
    const before = headline.periods.allTime.orders;
    // Once the page has its first snapshot, a new order is committed straight into the warehouse.
    const events = readEvents(
      (s) => s.panels.headline.periods.allTime.orders === before + 1,
      () =>
        warehouse.query(
          `INSERT INTO fact_sales_order (sales_order_id, created_date, created_time, last_updated_date, last_updated_time,
                  sales_staff_id, counterparty_id, units_sold, unit_price, currency_id, design_id, agreed_payment_date,
                  agreed_delivery_date, agreed_delivery_location_id, _lsn, _seq, _commit_ts)
           SELECT 999999, created_date, created_time, last_updated_date, last_updated_time, sales_staff_id, counterparty_id,
                  units_sold, unit_price, currency_id, design_id, agreed_payment_date, agreed_delivery_date,
                  agreed_delivery_location_id, '0/FFFFFF', 0, now()
             FROM fact_sales_order ORDER BY sales_record_id LIMIT 1`,
        ),
    );
    const seen = await events;
    expect(seen[0].panels.headline.periods.allTime.orders).toBe(before);
    expect(seen.at(-1)!.panels.headline.periods.allTime.orders).toBe(before + 1);
    await warehouse.query('DELETE FROM fact_sales_order WHERE sales_order_id = 999999');
  });
});
