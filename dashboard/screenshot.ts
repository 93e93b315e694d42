/* eslint-disable security/detect-non-literal-fs-filename -- a temporary directory this script creates, and docs/dashboard.png */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { loadTotesysExport, readExportTable, DEFAULT_EXPORT_DIR } from '../bench/totesys-export';
import type { Change } from '../core/change-event';
import { toWarehouseRows } from '../core/star-mapping';
import { startEmbeddedCluster } from '../local/embedded-postgres';
import { applyBatch } from '../processors/load/apply-batch';
import { prepareBatch } from '../processors/load/load-batch';
import { migrateWarehouse } from '../processors/load/migrate';
import { screenshotDashboard } from './browser';
import { startDashboard } from './dashboard-server';

/**
 * `npm run screenshot:dashboard`: regenerates docs/dashboard.png, the README's picture. A warehouse
 * in a temporary embedded Postgres holds the real totesys export (it ends on 2025-02-28) plus a
 * morning of orders placed today — demo rows, so that the "today" tiles are not empty — and the
 * dashboard is photographed in Debian's chromium.
 */
const OUT = path.resolve(__dirname, '..', 'docs', 'dashboard.png');
const TODAYS_ORDERS = 24;

/** Copies of the export's last sales orders, placed this morning (UTC), under fresh ids. */
async function addTodaysOrders(warehouse: Client): Promise<void> {
  const { columns, rows } = readExportTable(DEFAULT_EXPORT_DIR, 'sales_order');
  const at = (name: string) => columns.indexOf(name);
  const today = new Date().toISOString().slice(0, 10);
  const inDays = (n: number) => new Date(Date.parse(today) + n * 86_400_000).toISOString().slice(0, 10);
  const changes: Change[] = rows.slice(-TODAYS_ORDERS).map((row, i) => {
    const values = [...row];
    const time = `${today} ${String(8 + Math.floor(i / 6)).padStart(2, '0')}:${String((i % 6) * 10).padStart(2, '0')}:00.000`;
    values[at('sales_order_id')] = String(900_000 + i);
    values[at('created_at')] = time;
    values[at('last_updated')] = time;
    values[at('agreed_delivery_date')] = inDays(3 + (i % 4));
    values[at('agreed_payment_date')] = inDays(5 + (i % 3));
    return { op: 'insert', lsn: '0/2000000', seq: i, ts: new Date().toISOString(), values };
  });
  const mapped = toWarehouseRows(
    'sales_order',
    columns.map((name) => ({ name })),
    changes,
  );
  if (mapped.rejected.length) throw new Error(mapped.rejected[0].reason);
  await applyBatch(warehouse, prepareBatch({ table: mapped.table, rows: mapped.rows }), {
    objectKey: 'demo/today',
  });
}

async function main(): Promise<void> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-screenshot-'));
  fs.chmodSync(root, 0o755);
  const cluster = await startEmbeddedCluster({ dataDir: path.join(root, 'pg') });
  try {
    const admin = new Client({ connectionString: cluster.url });
    await admin.connect();
    await admin.query('CREATE DATABASE warehouse');
    await admin.end();
    const url = cluster.urlFor('warehouse');
    const warehouse = new Client({ connectionString: url });
    await warehouse.connect();
    await migrateWarehouse(warehouse);
    await loadTotesysExport(warehouse);
    await addTodaysOrders(warehouse);
    await warehouse.end();
    const dashboard = await startDashboard({ warehouseUrl: url, port: 0 });
    try {
      await screenshotDashboard(dashboard.url, OUT);
    } finally {
      await dashboard.close();
    }
    process.stdout.write(`wrote ${OUT}\n`);
  } finally {
    await cluster.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

if (require.main === module)
  main().catch((e) => {
    process.stderr.write(
      `screenshot:dashboard failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
    );
    process.exitCode = 1;
  });
