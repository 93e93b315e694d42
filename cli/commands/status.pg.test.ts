import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runTotes } from '../../test/support/cli';
import { waitFor } from '../../test/support/pg';
import { seedReportingWarehouse } from '../../test/support/reporting-warehouse';

let warehouseUrl: string;
let sourceUrl: string;

beforeAll(async () => {
  ({ warehouseUrl, sourceUrl } = await seedReportingWarehouse('status'));
}, 120_000);

describe('totes status (real Postgres)', () => {
  it('prints the verdict and the freshness per table from the warehouse alone, exit 0', async () => {
    const run = await runTotes('status', '--warehouse-url', warehouseUrl);
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/^totes is degraded/);
    expect(run.out).toMatch(/warning {2}warehouse: no change newer than/);
    expect(run.out).toMatch(/saw: warehouse only/);
    expect(run.out).toMatch(/fact_sales_order\s+2025-02-28 09:00:02/);
  });

  it('--json gives the health report; a source without the slot makes it unhealthy, exit 1', async () => {
    const run = await runTotes(
      'status',
      '--warehouse-url',
      warehouseUrl,
      '--source-url',
      sourceUrl,
      '--json',
    );
    expect(run.code).toBe(1);
    const report = JSON.parse(run.out);
    expect(report).toMatchObject({
      healthy: false,
      status: 'unhealthy',
      scope: { warehouse: true, source: true, local: false },
      problems: [{ severity: 'critical', code: 'slot-missing' }],
    });
    expect(report.freshness).toHaveLength(11);
  });

  it('--metrics prints the same figures as one CloudWatch EMF line', async () => {
    const run = await runTotes('status', '--warehouse-url', warehouseUrl, '--metrics');
    expect(run.code).toBe(0);
    const emf = JSON.parse(run.out);
    expect(emf).toMatchObject({ Stage: 'pipeline', status: 'degraded', Healthy: 1 });
    expect(emf._aws.CloudWatchMetrics[0]).toMatchObject({ Namespace: 'Totes', Dimensions: [['Stage']] });
    expect(emf['WarehouseAge.fact_sales_order']).toBeGreaterThan(24 * 3600);
    expect(emf.RowsLoadedPerSecond).toBeGreaterThanOrEqual(0);
  });

  it('a data directory without a running stack is unhealthy and says why', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-status-'));
    try {
      const run = await runTotes('status', '--data-dir', dir);
      expect(run.code).toBe(1);
      expect(run.out).toMatch(/CRITICAL warehouse: no warehouse URL/);
      expect(run.out).toMatch(/CRITICAL local stack: .*runtime\.json does not exist/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--watch refreshes until interrupted and exits with the last verdict', async () => {
    const running = runTotes(
      'status',
      '--warehouse-url',
      warehouseUrl,
      '--watch',
      '--json',
      '--interval',
      '0.05',
    );
    // runTotes captures stdout with a jest mock: its calls are the refreshes so far.
    const written = process.stdout.write as unknown as jest.Mock;
    await waitFor('two refreshes', () =>
      written.mock.calls.filter(([chunk]) => String(chunk).startsWith('{')).length >= 2 ? true : undefined,
    );
    process.emit('SIGINT');
    const run = await running;
    expect(run.code).toBe(0);
    const reports = run.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(reports.length).toBeGreaterThanOrEqual(2);
    expect(reports.every((r) => r.status === 'degraded')).toBe(true);
  });

  it('rejects a bad interval', async () => {
    const run = await runTotes('status', '--warehouse-url', warehouseUrl, '--watch', '--interval', '0');
    expect(run.code).toBe(2);
    expect(run.err).toMatch(/--interval must be a positive number/);
  });
});
