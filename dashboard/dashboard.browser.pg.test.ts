import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { Client } from 'pg';
import { seedReportingWarehouse } from '../test/support/reporting-warehouse';
import { launchChromium, screenshotDashboard, type Browser } from './browser';
import { startDashboard, type Dashboard } from './dashboard-server';

/**
 * The dashboard in a real browser (Debian's chromium through playwright-core): it renders without
 * console errors, its figures are the warehouse's, and a change committed to the warehouse shows up
 * on the open page by itself.
 */
let warehouse: Client;
let dashboard: Dashboard;
let browser: Browser;
let page: Page;
const problems: string[] = [];

// The document as the page functions below see it (the tests' TypeScript has no DOM types).
type PageDocument = {
  activeElement: { textContent: string | null; tagName: string } | null;
  querySelector(s: string): { getAttribute(n: string): string | null } | null;
};
// Page functions are serialised into the page: each names the document itself.

const en = (n: number | string) => new Intl.NumberFormat('en-GB').format(Number(n));
const money = (amount: string, currency: string) =>
  new Intl.NumberFormat('en-GB', { style: 'currency', currency }).format(Number(amount));

beforeAll(async () => {
  const { warehouseUrl } = await seedReportingWarehouse('dashboard_browser');
  warehouse = new Client({ connectionString: warehouseUrl });
  await warehouse.connect();
  dashboard = await startDashboard({ warehouseUrl, pollIntervalMs: 200 });
  browser = await launchChromium();
  page = await browser.context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
  await page.goto(dashboard.url);
  await page.waitForSelector('#updated[data-generated-at]');
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await dashboard?.close();
  await warehouse?.end();
});

const sql = async (text: string) => (await warehouse.query(text)).rows;

describe('the dashboard in chromium (real Postgres)', () => {
  it('renders every panel and its charts, without console errors', async () => {
    expect(await page.title()).toBe('Totes Bags — business dashboard');
    const headings = await page.locator('main h2').allTextContents();
    expect(headings).toEqual([
      'Sales at a glance',
      'Top 10 designs by units sold',
      'Sales over time',
      'Sales by country and city',
      'Payments outstanding',
      'Purchase orders',
      'Pipeline',
    ]);
    // Chart.js came from the server (node_modules), and drew three charts.
    expect(
      await page.evaluate(
        () => Object.keys((globalThis as never as { Chart: { instances: object } }).Chart.instances).length,
      ),
    ).toBe(3);
    expect(await page.locator('#pipeline-status').textContent()).toBe('Degraded');
    expect(problems).toEqual([]);
  });

  it('shows the figures SQL gives over the warehouse, formatted for people', async () => {
    const [all] = await sql(
      `SELECT count(*)::int AS orders, sum(units_sold)::bigint::text AS units FROM fact_sales_order_current`,
    );
    const allTime = page.locator('[data-period="allTime"]');
    expect(await allTime.locator('dd.orders').getAttribute('data-value')).toBe(String(all.orders));
    expect(await allTime.locator('dd.orders').textContent()).toBe(en(all.orders));
    expect(await allTime.locator('dd.units').textContent()).toBe(en(all.units));
    const revenue = await sql(
      `SELECT c.currency_code AS currency, sum(f.units_sold * f.unit_price)::text AS amount
         FROM fact_sales_order_current f JOIN dim_currency c USING (currency_id) GROUP BY 1 ORDER BY 1`,
    );
    const shown = await allTime.locator('dd.revenue').evaluateAll((dds) =>
      dds.map((d) => ({
        currency: d.getAttribute('data-currency'),
        amount: d.getAttribute('data-value'),
        text: d.textContent,
      })),
    );
    expect(shown).toEqual(revenue.map((r) => ({ ...r, text: money(r.amount, r.currency) })));

    const designs = await sql(
      `SELECT d.design_name AS name, sum(f.units_sold)::bigint::text AS units
         FROM fact_sales_order_current f JOIN dim_design d USING (design_id) GROUP BY 1 ORDER BY sum(f.units_sold) DESC, 1 LIMIT 10`,
    );
    const rows = await page.locator('#table-designs tbody tr').evaluateAll((trs) =>
      trs.map((tr) => ({
        name: tr.querySelector('th')!.textContent,
        units: tr.querySelector('td[data-value]')!.getAttribute('data-value'),
      })),
    );
    expect(rows).toEqual(designs);

    const [overdue] = await sql(
      `SELECT count(*)::int AS n FROM fact_payment_current WHERE NOT paid AND payment_date < current_date`,
    );
    const overdueShown = await page
      .locator('#table-outstanding td[data-status="overdue"] ~ td[data-value]:nth-of-type(3)')
      .evaluateAll((tds) => tds.reduce((n, td) => n + Number(td.getAttribute('data-value')), 0));
    expect(overdueShown).toBe(overdue.n);
  });

  it('is keyboard reachable: the skip link first, then the disclosure of the chart data', async () => {
    await page.keyboard.press('Tab');
    expect(
      await page.evaluate(
        () => (globalThis as unknown as { document: PageDocument }).document.activeElement?.textContent,
      ),
    ).toBe('Skip to the figures');
    await page.keyboard.press('Tab');
    expect(
      await page.evaluate(
        () => (globalThis as unknown as { document: PageDocument }).document.activeElement?.tagName,
      ),
    ).toBe('SUMMARY');
    await page.keyboard.press('Enter');
    expect(await page.locator('details').getAttribute('open')).toBe('');
  });

  it('shows a change committed to the warehouse within seconds, without a reload', async () => {
    const navigations: string[] = [];
    page.on('framenavigated', (f) => navigations.push(f.url()));
    // A new version of one order with 1,000 more units, as the load writes it.
    const [order] = await sql(
      `SELECT sales_order_id, units_sold FROM fact_sales_order_current ORDER BY sales_order_id LIMIT 1`,
    );
    await warehouse.query(
      `INSERT INTO fact_sales_order (sales_order_id, created_date, created_time, last_updated_date, last_updated_time,
              sales_staff_id, counterparty_id, units_sold, unit_price, currency_id, design_id, agreed_payment_date,
              agreed_delivery_date, agreed_delivery_location_id, _epoch, _lsn, _seq, _commit_ts)
       SELECT sales_order_id, created_date, created_time, last_updated_date, last_updated_time, sales_staff_id,
              counterparty_id, units_sold + 1000, unit_price, currency_id, design_id, agreed_payment_date,
              agreed_delivery_date, agreed_delivery_location_id, _epoch, 'FFFFFFFF/0', 0, now()
         FROM fact_sales_order WHERE sales_order_id = $1 ORDER BY _epoch DESC, _lsn DESC, _seq DESC LIMIT 1`,
      [order.sales_order_id],
    );
    const [all] = await sql(`SELECT sum(units_sold)::bigint::text AS units FROM fact_sales_order_current`);
    // Functions, not strings: the page's Content-Security-Policy forbids eval, and must stay so.
    await page.waitForFunction(
      (units) =>
        (globalThis as unknown as { document: PageDocument }).document
          .querySelector('[data-period="allTime"] dd.units')
          ?.getAttribute('data-value') === units,
      all.units,
      {
        timeout: 10_000,
        polling: 50,
      },
    );
    expect(await page.locator('[data-period="allTime"] dd.units').textContent()).toBe(en(all.units));
    expect(navigations).toEqual([]);
    expect(problems).toEqual([]);
  });

  it('takes the README screenshot', async () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'totes-shot-')), 'dashboard.png');
    await screenshotDashboard(dashboard.url, file, browser);
    expect(fs.readFileSync(file).subarray(0, 8)).toEqual(
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    );
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  });
});
