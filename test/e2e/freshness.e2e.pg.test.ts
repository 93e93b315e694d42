import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { silentLogger } from '../../core/logger';
import { DEFAULT_HEALTH_THRESHOLDS, type HealthReport } from '../../core/pipeline-health';
import { gatherHealth } from '../../local/gather-health';
import { startLocalStack, type LocalStack } from '../../local/local-stack';
import { removeDataDir } from '../../local/postgres-placement';
import { installTotesys } from '../../totesys';
import { createTestDatabase, waitFor, withClient } from '../support/pg';

// Freshness that cannot lie, through the whole local pipeline against real Postgres: capture's
// heartbeat goes source WAL → capture → kinesalite → the local Firehose → transform → load and
// lands in pipeline_heartbeat; the health model's freshness is its age. With capture stopped
// (transform and load still running, the source idle), the warehouse alone turns unhealthy —
// which per-table freshness could never say, since an idle source looks the same.

jest.setTimeout(180_000);

const SLOT = 'slot_fresh_e2e';
// Small limits so the test sees "stale" in seconds; the judgement is the same as with the defaults.
const thresholds = { ...DEFAULT_HEALTH_THRESHOLDS, heartbeatWarningSeconds: 3, heartbeatCriticalSeconds: 6 };

it('the heartbeat reaches the warehouse, and freshness goes stale (unhealthy) once capture stops', async () => {
  const sourceUrl = await createTestDatabase('fresh_src');
  const warehouseUrl = await createTestDatabase('fresh_wh');
  await withClient(sourceUrl, (c) => installTotesys(c, { scale: 0.01 }));
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-fresh-'));
  let stack: LocalStack | undefined;
  try {
    stack = await startLocalStack({
      dataDir,
      sourceUrl,
      warehouseUrl,
      logger: silentLogger,
      bufferIntervalMs: 300,
      heartbeatIntervalMs: 500,
      captureEnv: { TOTES_SLOT: SLOT, TOTES_PUBLICATION: 'pub_fresh_e2e' },
      onCaptureOutput: (line) => process.env.KEEP_DATA_DIR && process.stderr.write(`${line}\n`),
    });
    const startedAt = await withClient(
      sourceUrl,
      async (c) => (await c.query('SELECT now() AS t')).rows[0].t,
    );

    // 1. A heartbeat committed after the start is in the warehouse, with its source commit time.
    const row = await waitFor(
      'a heartbeat committed after the start to be loaded',
      () =>
        withClient(warehouseUrl, async (c) => {
          const { rows } = await c.query(
            `SELECT "slot_name", "_commit_ts" AS commit_ts, "_loaded_at" AS loaded_at, "emitted_at"
             FROM "pipeline_heartbeat" WHERE "_commit_ts" > $1`,
            [startedAt],
          );
          return rows[0];
        }),
      90_000,
      200,
    );
    expect(row.slot_name).toBe(SLOT);
    expect(row.loaded_at.getTime()).toBeGreaterThanOrEqual(row.commit_ts.getTime());
    expect(Number.isNaN(Date.parse(row.emitted_at))).toBe(false);

    // 2. While everything runs, the warehouse alone says healthy, freshness from the heartbeat.
    const fresh = await waitFor(
      'a healthy report from the warehouse alone',
      async () => {
        const report = await gatherHealth({ warehouseUrl, thresholds });
        return report.healthy && report.problems.length === 0 ? report : undefined;
      },
      60_000,
      200,
    );
    expect(fresh.heartbeat).toMatchObject({ slotName: SLOT });
    expect(fresh.heartbeat!.ageSeconds).not.toBeNull();

    // 3. Capture stops; the source is idle, transform and load keep running. The newest heartbeat
    // ages until the report turns unhealthy, with nothing but the warehouse to go on.
    await stack.capture.stop();
    let stale: HealthReport | undefined;
    await waitFor(
      'the heartbeat freshness to go stale',
      async () => {
        stale = await gatherHealth({ warehouseUrl, thresholds });
        return stale.status === 'unhealthy' ? stale : undefined;
      },
      60_000,
      200,
    );
    expect(stale!.problems).toEqual([
      expect.objectContaining({ severity: 'critical', code: 'heartbeat-stale' }),
    ]);
    expect(stale!.heartbeat!.ageSeconds).toBeGreaterThanOrEqual(thresholds.heartbeatCriticalSeconds);
  } finally {
    await stack?.stop();
    if (process.env.KEEP_DATA_DIR) process.stderr.write(`kept ${dataDir}\n`);
    else removeDataDir(dataDir);
  }
});
