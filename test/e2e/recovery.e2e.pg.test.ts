import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { silentLogger } from '../../core/logger';
import { TOTESYS_TABLES } from '../../core/totesys-tables';
import { startLocalStack, type LocalStack } from '../../local/local-stack';
import { removeDataDir } from '../../local/postgres-placement';
import type { Supervisor } from '../../local/supervisor';
import { renderVerifyReport, verifyWarehouse, type VerifyReport } from '../../processors/load/verify';
import { installTotesys } from '../../totesys';
import { startOwnCluster } from '../support/own-cluster';
import { createTestDatabase, waitFor, withClient, withDatabase } from '../support/pg';

// Recovery off the happy path, through the whole local pipeline (capture → kinesalite → local
// Firehose → transform → load), against real Postgres: after each fault the warehouse's current
// views and dimensions equal the source (`totes verify`'s check, which also fails on a re-read that
// added a version), untouched rows keep exactly one version and rows changed in a gap get exactly
// one more.

jest.setTimeout(240_000);

interface Scene {
  sourceUrl: string;
  warehouseUrl: string;
  dataDir: string;
  captureEnv: Record<string, string>;
  lines: string[];
}

async function scene(name: string, sourceUrl?: string, warehouseUrl?: string): Promise<Scene> {
  const source = sourceUrl ?? (await createTestDatabase(`${name}_src`));
  await withClient(source, (c) => installTotesys(c, { scale: 0.02 }));
  return {
    sourceUrl: source,
    warehouseUrl: warehouseUrl ?? (await createTestDatabase(`${name}_wh`)),
    dataDir: fs.mkdtempSync(path.join(os.tmpdir(), `totes-${name}-`)),
    // Slots are shared by the whole server: each scene has its own.
    captureEnv: { TOTES_SLOT: `slot_${name}`, TOTES_PUBLICATION: `pub_${name}` },
    lines: [],
  };
}

function start(
  s: Scene,
  env: Record<string, string> = {},
  onLine?: (line: string, capture: Supervisor) => void,
): Promise<LocalStack> {
  return startLocalStack({
    dataDir: s.dataDir,
    sourceUrl: s.sourceUrl,
    warehouseUrl: s.warehouseUrl,
    logger: silentLogger,
    bufferIntervalMs: 300,
    heartbeatIntervalMs: 1000,
    captureEnv: { ...s.captureEnv, ...env },
    onCaptureOutput: (line, capture) => {
      s.lines.push(line);
      onLine?.(line, capture);
    },
  });
}

/** Waits until `totes verify` passes: current views and dimensions equal the source, no re-reads. */
async function converged(s: Scene, timeoutMs = 90_000): Promise<VerifyReport> {
  let last: VerifyReport | undefined;
  try {
    return await waitFor(
      'the warehouse to equal the source',
      () =>
        withClient(s.sourceUrl, (source) =>
          withClient(s.warehouseUrl, async (warehouse) => {
            last = await verifyWarehouse(source, warehouse);
            return last.ok ? last : undefined;
          }),
        ),
      timeoutMs,
    );
  } catch (e) {
    if (last) process.stderr.write(renderVerifyReport(last));
    process.stderr.write(
      `capture said:\n${s.lines.filter((l) => !l.includes('capture.stats')).join('\n')}\n`,
    );
    throw e;
  }
}

async function query<T = Record<string, unknown>>(
  url: string,
  sql: string,
  values: unknown[] = [],
): Promise<T[]> {
  return withClient(url, async (c) => (await c.query(sql, values)).rows as T[]);
}

/** Versions per sales order in the warehouse. */
async function salesVersions(s: Scene): Promise<Map<number, number>> {
  const rows = await query<{ id: number; n: number }>(
    s.warehouseUrl,
    'SELECT "sales_order_id" AS id, count(*)::int AS n FROM "fact_sales_order" GROUP BY 1',
  );
  return new Map(rows.map((r) => [r.id, r.n]));
}

function expectVersions(before: Map<number, number>, after: Map<number, number>, changed: number[]): void {
  for (const [id, n] of before) {
    if (!after.has(id)) continue;
    expect([id, after.get(id)]).toEqual([id, changed.includes(id) ? n + 1 : n]);
  }
}

describe('recovery through the local pipeline (real Postgres)', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => removeDataDir(d)));

  it('snapshots a table added later alone, follows a key change, deletes, a TRUNCATE and lost state', async () => {
    const s = await scene('recover_a');
    dirs.push(s.dataDir);
    const withoutPayment = TOTESYS_TABLES.filter((t) => t !== 'payment').join(',');

    // 1. Capture starts without payment.
    let stack = await start(s, { TOTES_TABLES: withoutPayment });
    try {
      await waitFor(
        'the first snapshot in the warehouse',
        async () => {
          const [{ n }] = await query<{ n: number }>(
            s.warehouseUrl,
            'SELECT count(*)::int AS n FROM "fact_purchase_order"',
          );
          const [{ m }] = await query<{ m: number }>(
            s.sourceUrl,
            'SELECT count(*)::int AS m FROM "purchase_order"',
          );
          return n === m && n > 0 ? true : undefined;
        },
        90_000,
      );
      expect(await query(s.warehouseUrl, 'SELECT count(*)::int AS n FROM "fact_payment"')).toEqual([
        { n: 0 },
      ]);
    } finally {
      await stack.stop();
    }

    // 2. payment joins the capture set: it alone is snapshotted, nothing else is read again.
    stack = await start(s);
    try {
      await converged(s);
      const versions = await salesVersions(s);
      expect([...versions.values()].every((n) => n === 1)).toBe(true);
      expect(s.lines.some((l) => l.includes('tables added to the capture set'))).toBe(true);

      // 3. A primary-key change cascades into every row that refers to the address.
      await withClient(s.sourceUrl, (c) =>
        c.query('UPDATE "address" SET "address_id" = 999 WHERE "address_id" = 1'),
      );
      await converged(s);
      expect(
        await query(s.warehouseUrl, 'SELECT "_deleted" FROM "dim_location" WHERE "location_id" = 1'),
      ).toEqual([{ _deleted: true }]);

      // 4. A deleted order leaves the current view; its history stays.
      const [{ id: deleted }] = await query<{ id: number }>(
        s.sourceUrl,
        'DELETE FROM "sales_order" WHERE "sales_order_id" = (SELECT min("sales_order_id") FROM "sales_order") RETURNING "sales_order_id" AS id',
      );
      await converged(s);
      expect(
        await query(
          s.warehouseUrl,
          'SELECT count(*)::int AS n FROM "fact_sales_order" WHERE "sales_order_id" = $1',
          [deleted],
        ),
      ).toEqual([{ n: expect.any(Number) }]);

      // 5. TRUNCATE payment, then new payments: only the new ones are current.
      const paymentsBefore = (
        await query<{ n: number }>(s.sourceUrl, 'SELECT count(*)::int AS n FROM "payment"')
      )[0].n;
      await withClient(s.sourceUrl, async (c) => {
        await c.query('TRUNCATE "payment"');
        await c.query(
          `INSERT INTO "payment" ("payment_id", "last_updated", "transaction_id", "counterparty_id", "payment_amount",
                                  "currency_id", "payment_type_id", "paid", "payment_date", "company_ac_number", "counterparty_ac_number")
           SELECT 90000 + t."transaction_id", now(), t."transaction_id", 1, 10.50, 1, 1, false, '2026-12-01', 1, 2
             FROM "transaction" AS t ORDER BY t."transaction_id" LIMIT 2`,
        );
      });
      await converged(s);
      expect(await query(s.warehouseUrl, 'SELECT count(*)::int AS n FROM "fact_payment_current"')).toEqual([
        { n: 2 },
      ]);
      expect(
        (await query<{ n: number }>(s.warehouseUrl, 'SELECT count(*)::int AS n FROM "fact_payment"'))[0].n,
      ).toBe(paymentsBefore + 2);
    } finally {
      await stack.stop();
    }

    // 6. Capture's state is lost while changes happen: the slot is kept, a reconciling snapshot runs
    // under a new epoch; untouched rows keep one version, the changed one gets one more.
    const before = await salesVersions(s);
    fs.rmSync(path.join(s.dataDir, 'capture-state.json'));
    const [{ id: changed }] = await query<{ id: number }>(
      s.sourceUrl,
      'UPDATE "sales_order" SET "units_sold" = "units_sold" + 1 WHERE "sales_order_id" = (SELECT max("sales_order_id") FROM "sales_order") RETURNING "sales_order_id" AS id',
    );
    stack = await start(s);
    try {
      await converged(s);
      expect(s.lines.some((l) => l.includes('replication slot has no capture state'))).toBe(true);
      expectVersions(before, await salesVersions(s), [changed]);
    } finally {
      await stack.stop();
    }
  });

  it('recovers from capture killed with SIGKILL in the middle of its snapshot', async () => {
    const s = await scene('recover_b');
    dirs.push(s.dataDir);
    // Kill capture as soon as the first table of its snapshot is in the stream, from its own output
    // (the stack starts capture before it has finished starting itself), and keep it down.
    let killed = false;
    let stack = await start(s, {}, (line, capture) => {
      if (killed || !line.includes('"snapshot of table finished"')) return;
      killed = true;
      process.kill(capture.pid!, 'SIGKILL');
      void capture.stop();
    });
    try {
      await waitFor('a table of the snapshot to finish', () => (killed ? true : undefined), 60_000, 5);
    } finally {
      await stack.stop();
    }
    const state = JSON.parse(fs.readFileSync(path.join(s.dataDir, 'capture-state.json'), 'utf8'));
    expect(state.snapshotCompletedAt).toBeNull();
    // Changes while capture is down: an update, a delete.
    await withClient(s.sourceUrl, async (c) => {
      await c.query('UPDATE "design" SET "design_name" = \'Recovered\' WHERE "design_id" = 1');
      await c.query('DELETE FROM "sales_order" WHERE "sales_order_id" = 2');
      await c.query('UPDATE "sales_order" SET "units_sold" = 7 WHERE "sales_order_id" = 3');
    });
    stack = await start(s);
    try {
      await converged(s);
      expect(s.lines.some((l) => l.includes('the snapshot of this slot was interrupted'))).toBe(true);
      const versions = await salesVersions(s);
      // Order 3 was read by the reconciling snapshot (or streamed) once, with its new value.
      for (const [id, n] of versions) expect([id, n]).toEqual([id, 1]);
    } finally {
      await stack.stop();
    }
  });
});

describe('a slot invalidated by max_slot_wal_keep_size (own cluster)', () => {
  let root: string;
  let cluster: Awaited<ReturnType<typeof startOwnCluster>> | undefined;

  beforeAll(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-slot-lost-'));
    cluster = await startOwnCluster(path.join(root, 'pg'), { max_slot_wal_keep_size: '1MB' });
    await withClient(cluster.url, async (c) => {
      await c.query('CREATE DATABASE lost_src');
      await c.query('CREATE DATABASE lost_wh');
    });
  });

  afterAll(async () => {
    await cluster?.stop();
    removeDataDir(root);
  });

  it('resyncs by itself: deletes before and after the loss are marked, untouched rows keep one version', async () => {
    const s = await scene(
      'lost',
      withDatabase(cluster!.url, 'lost_src'),
      withDatabase(cluster!.url, 'lost_wh'),
    );
    let stack = await start(s);
    try {
      await converged(s);
    } finally {
      await stack.stop();
    }
    const before = await salesVersions(s);
    const source = new Client({ connectionString: s.sourceUrl });
    await source.connect();
    try {
      await source.query('DELETE FROM "sales_order" WHERE "sales_order_id" = 4'); // before the loss
      await source.query('CREATE TABLE "churn" ("n" int)'); // not captured
      await waitFor('the slot to be lost', async () => {
        await source.query('INSERT INTO "churn" SELECT generate_series(1, 1000)');
        await source.query('SELECT pg_switch_wal()');
        await source.query('CHECKPOINT');
        const { rows } = await source.query(
          "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'slot_lost'",
        );
        return rows[0]?.wal_status === 'lost' ? true : undefined;
      });
      await source.query('DELETE FROM "sales_order" WHERE "sales_order_id" = 5'); // after the loss
      await source.query('UPDATE "sales_order" SET "units_sold" = 11 WHERE "sales_order_id" = 6');
    } finally {
      await source.end();
    }
    stack = await start(s);
    try {
      await converged(s);
      expect(s.lines.some((l) => l.includes('"replication slot lost: the WAL it needed was removed"'))).toBe(
        true,
      );
      expectVersions(before, await salesVersions(s), [6]);
      expect(
        await query(
          s.warehouseUrl,
          'SELECT "sales_order_id" FROM "fact_sales_order_current" WHERE "sales_order_id" IN (4, 5)',
        ),
      ).toEqual([]);
    } finally {
      await stack.stop();
    }
    removeDataDir(s.dataDir);
  });
});
