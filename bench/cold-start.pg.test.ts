import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createTestDatabase, withClient } from '../test/support/pg';
import { parseColdStartOptions } from './cold-start-options';
import { formatColdStartReport, type ColdStartResult } from './cold-start-report';
import { runColdStart } from './cold-start-run';
import { DEFAULT_EXPORT_DIR } from './totesys-export';

// `npm run bench:coldstart` in miniature, on the test cluster: a source of 3,000 rows built from
// the export, the stack started from nothing against it, and the warehouse verified — what it
// asserts holds however slow the machine is; how fast is the bench's business, never the test's.

const present = fs.existsSync(path.join(DEFAULT_EXPORT_DIR, 'sales_order.csv'));
if (!present) console.warn(`bench:coldstart miniature skipped: no totesys export at ${DEFAULT_EXPORT_DIR}`);

(present ? it : it.skip)(
  'builds a source of exactly --rows rows, starts the pipeline cold, and verifies the warehouse; the report has its fields',
  async () => {
    const source = await createTestDatabase('bench_coldstart');
    const warehouse = await createTestDatabase('bench_coldstart_warehouse');
    const options = parseColdStartOptions([
      '--rows',
      '3000',
      '--source-url',
      source,
      '--warehouse-url',
      warehouse,
      '--slot',
      `totes_coldstart_${process.pid}`,
      '--timeout',
      '240',
    ])!;
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-bench-coldstart-test-'));
    const stops: (() => Promise<void>)[] = [];
    let result: ColdStartResult;
    try {
      result = await runColdStart({ options, root, progress: () => undefined, stops });
    } finally {
      for (const stop of stops.reverse()) await stop().catch(() => undefined);
      fs.rmSync(root, { recursive: true, force: true });
    }

    // Exactly the rows asked for, every order table in them (the partial copy takes a share of
    // each), under the schema's foreign keys (a broken reference would have failed the COPY).
    expect(result.source.rows).toBe(3000);
    expect(Object.values(result.source.perTable).reduce((a, b) => a + b, 0)).toBe(3000);
    for (const table of ['sales_order', 'purchase_order', 'transaction', 'payment'])
      expect(result.source.perTable[table]).toBeGreaterThan(0);

    // Capture read every row, the warehouse got it, and the comparison passed.
    expect(result.stages.capture.rows).toBe(3000);
    expect(result.stages.transform.rows).toBeGreaterThanOrEqual(3000);
    expect(result.stages.transform.snapshotDoneAt).not.toBeNull();
    expect(result.stages.load.snapshotDoneAt).not.toBeNull();
    expect(result.verify.ok).toBe(true);
    expect(result.phases.map((p) => p.name)).toEqual([
      'stack start',
      'capture start',
      'snapshot read',
      'drain',
      'verify',
    ]);
    for (const p of result.phases) expect(p.seconds).toBeGreaterThanOrEqual(0);
    // The phases add up to the figure, and the stack and capture were each sampled as one process.
    expect(result.phases.reduce((n, p) => n + p.seconds, 0)).toBeCloseTo(result.totalSeconds, 3);
    expect(result.phases[2]!.usage.groups.stack!.processes).toBe(1);
    expect(result.phases[2]!.usage.groups.capture!.processes).toBe(1);
    expect(result.stackProfile!.stages.length).toBeGreaterThan(0);
    expect(result.floor!.rows).toBe(3000);
    // A given source is left without the bench's slot, and the floor's scratch schema is gone.
    expect(
      await withClient(
        source,
        async (c) =>
          (await c.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [options.slot])).rowCount,
      ),
    ).toBe(0);
    expect(
      await withClient(
        warehouse,
        async (c) => (await c.query("SELECT 1 FROM pg_namespace WHERE nspname = 'coldstart_floor'")).rowCount,
      ),
    ).toBe(0);

    const text = formatColdStartReport(result);
    expect(text).toContain('warehouse matches the source');
    expect(text).toMatch(/^ {4}(PASS|MISS) {2}cold start → verified warehouse ≤ 60 s/m);
    expect(text).toMatch(/^ {2}floor \(same rows, same machine\)/m);
  },
  300_000,
);
