import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createTestDatabase, withClient } from '../test/support/pg';
import { installTotesys } from '../totesys';
import { runPipelineBench } from './pipeline';
import { parsePipelineOptions } from './pipeline-options';
import { formatPipelineReport, type PipelineResult } from './pipeline-report';

// `npm run bench:pipeline` in miniature, on the test cluster: what it asserts holds however slow
// the machine is (every offered change arrives, the report has its fields); how fast is the
// bench's business, never the test's.

it('drives the local pipeline with the generator and the probe: every offered change reaches the warehouse, and the report has its fields', async () => {
  const source = await createTestDatabase('bench_pipeline');
  const warehouse = await createTestDatabase('bench_pipeline_warehouse');
  await withClient(source, (c) => installTotesys(c, { scale: 0.02 }));
  const options = parsePipelineOptions([
    '--quick',
    '--steps',
    '300',
    '--step-seconds',
    '3',
    '--idle-seconds',
    '1',
    '--baseline-changes',
    '2000',
    '--drain-timeout',
    '180',
    '--profile-seconds',
    '1',
    '--source-url',
    source,
    '--warehouse-url',
    warehouse,
    '--slot',
    `totes_bench_${process.pid}`,
  ])!;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-bench-pipeline-test-'));
  const stops: (() => Promise<void>)[] = [];
  let result: PipelineResult;
  try {
    result = await runPipelineBench({ options, root, progress: () => undefined, stops });
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    fs.rmSync(root, { recursive: true, force: true });
  }

  // The baseline decoded exactly what it wrote.
  expect(result.baseline!.write.changes).toBeGreaterThanOrEqual(2000);
  expect(result.baseline!.decode!.changes).toBe(result.baseline!.write.changes);

  const [idle, step] = result.steps;
  expect(idle!.name).toBe('idle');
  expect(idle!.changes).toBe(0);
  expect(step!.offeredPerSecond).toBe(300);
  expect(step!.changes).toBeGreaterThan(0);
  expect(step!.failedBatches).toBe(0);
  // Every offered change and every probe went through transform (at least once: never fewer)…
  expect(step!.stages.transform.changes).toBeGreaterThanOrEqual(step!.changes + step!.probe.count);
  // …every probe arrived, the backlog drained, and the warehouse equals the source.
  expect(step!.probe.count).toBeGreaterThan(0);
  expect(step!.probe.lost).toBe(0);
  expect(step!.drainSeconds).not.toBeNull();
  expect(result.verify?.ok).toBe(true);
  // Both sides of the step were sampled: the stack process and capture, each one process.
  expect(step!.usage.load.groups.stack!.processes).toBe(1);
  expect(step!.usage.load.groups.capture!.processes).toBe(1);
  // The profile is taken in a run of its own after the timed step, at its rate, and drained.
  expect(step!.profile!.stages.length).toBeGreaterThan(0);
  expect(step!.profiledRun!.changes).toBeGreaterThan(0);
  expect(step!.profiledRun!.drainSeconds).not.toBeNull();
  // A given source is left without the bench's slot.
  const slots = await withClient(
    source,
    async (c) =>
      (await c.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [options.slot])).rowCount,
  );
  expect(slots).toBe(0);

  // The JSON (what the bench writes) and the text carry every field a reader looks for.
  const json = JSON.parse(JSON.stringify(result)) as Record<string, unknown>;
  expect(Object.keys(json).sort()).toEqual(
    [
      'baseline',
      'knee',
      'machine',
      'notes',
      'settings',
      'startup',
      'steps',
      'verify',
      'warehouseGrowth',
    ].sort(),
  );
  expect(json.steps).toEqual(
    result.steps.map(() =>
      expect.objectContaining({
        offeredPerSecond: expect.any(Number),
        achievedPerSecond: expect.any(Number),
        probe: expect.objectContaining({ count: expect.any(Number), lost: 0, p50Ms: expect.any(Number) }),
        drainSeconds: expect.any(Number),
        held: expect.any(Boolean),
        usage: expect.objectContaining({ load: expect.objectContaining({ groups: expect.any(Object) }) }),
        stages: expect.objectContaining({ load: expect.objectContaining({ rows: expect.any(Number) }) }),
      }),
    ),
  );
  const text = formatPipelineReport(result);
  expect(text).toContain('baseline');
  expect(text).toMatch(/^knee: /m);
  expect(text).toContain('profiled apart from the timed step');
  expect(text).toContain('verify: the warehouse equals the source');
}, 300_000);
