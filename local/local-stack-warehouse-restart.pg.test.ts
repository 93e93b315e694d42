import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { silentLogger } from '../core/logger';
import { installTotesys } from '../totesys';
import { createTestDatabase, waitFor, withClient } from '../test/support/pg';
import { startLocalStack } from './local-stack';

// Found by `npm run chaos` (restart-warehouse): a warehouse restart ends every session, and the load
// stage's idle pooled connections then emit 'error'. Without a listener on the pool that is an
// unhandled 'error' event, and `totes up` died with it. Ending the sessions the way a restart does
// (pg_terminate_backend sends the same 57P01 "terminating connection due to administrator command").
it('keeps loading after the warehouse ends its sessions (a restart)', async () => {
  const url = await createTestDatabase('stack_wh_restart');
  const warehouseUrl = await createTestDatabase('stack_wh_restart_warehouse');
  const warehouseDb = new URL(warehouseUrl).pathname.slice(1);
  await withClient(url, (c) => installTotesys(c, { scale: 0.02 }));
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-stack-wh-'));
  const stack = await startLocalStack({ dataDir, sourceUrl: url, warehouseUrl, logger: silentLogger });
  try {
    await waitFor(
      'the snapshot in the warehouse',
      () =>
        withClient(warehouseUrl, async (c) => {
          const { rows } = await c.query('SELECT count(*)::int AS n FROM dim_currency');
          return rows[0].n > 0 ? true : undefined;
        }).catch(() => undefined),
      90_000,
    );
    const ended = await withClient(warehouseUrl, async (c) => {
      const { rows } = await c.query(
        'SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()) t',
        [warehouseDb],
      );
      return rows[0].n as number;
    });
    expect(ended).toBeGreaterThan(0); // the load stage's pooled connections were there to end
    await withClient(url, (c) => c.query("UPDATE currency SET currency_code = 'CHF' WHERE currency_id = 2"));
    await waitFor(
      'the update in the warehouse',
      () =>
        withClient(warehouseUrl, async (c) => {
          const { rows } = await c.query('SELECT currency_code FROM dim_currency WHERE currency_id = 2');
          return rows[0]?.currency_code === 'CHF' ? true : undefined;
        }),
      60_000,
    );
  } finally {
    await stack.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}, 150_000);
