import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'pg';
import { TOTESYS_TABLES } from '../core/totesys-tables';
import { startEmbeddedCluster } from '../local/embedded-postgres';
import { renderVerifyReport, verifyWarehouse } from '../processors/load/verify';
import { inspectTotesys, installTotesys } from '../totesys';
import { quoteIdent } from '../totesys/schema';
import { walsenderCpuSeconds } from './cpu';
import { summarizeProfile, type CpuProfile } from './cpu-profile';
import { LoadGenerator, type LoadRunResult } from './load-generator';
import type { PipelineOptions } from './pipeline-options';
import {
  cpuPerChange,
  judgeStep,
  kneeOf,
  summariseLatencies,
  type BaselineResult,
  type CaptureProfile,
  type PipelineResult,
  type StageWork,
  type StepResult,
  type WarehouseStatement,
} from './pipeline-report';
import { PROBE_TAG, Probe } from './probe';
import { ProcessSampler, postgresGroups, type ProcessGroup } from './process-sampler';
import { topFrames } from './profile-stages';
import { readWithLibrary } from './raw-readers';
import { machineBasics } from './report';
import { StackProcess } from './stack-process';
import { dropDatabase, dropSlots, recreateDatabase, withClient } from './workloads';
import type { ProfileSummary, StackStats } from './stack-protocol';

/**
 * `npm run bench:pipeline`: the local pipeline in a process of its own (pipeline-stack.ts), an
 * embedded source (or a given one) seeded with totesys, the load generator and the probe in this
 * process; a baseline of the same Postgres first, then the steps, each followed by its drain.
 */

export interface PipelineBench {
  options: PipelineOptions;
  /** Where the source cluster, the stack's data directory and its log go. */
  root: string;
  progress(message: string): void;
  /** What was started, stopped in reverse order by the caller, however the run ends. */
  stops: (() => Promise<void>)[];
}

const BASELINE_DATABASE = 'totes_bench_baseline';
/** A changing stage must be seen idle twice this far apart (an object between two stages is in neither). */
const IDLE_CONFIRM_MS = 500;
const POLL_MS = 100;
/** A silent stack is broken, not slow. */
const STARTUP_TIMEOUT_S = 600;

const secondsSince = (t: number) => (performance.now() - t) / 1000;

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

/** Seeds totesys into a database that has none; one that has it is used as it is. */
async function seedIfEmpty(url: string, scale: number, progress: (m: string) => void): Promise<void> {
  await withClient(url, async (c) => {
    if ((await inspectTotesys(c)).tables.length > 0) return progress('the source already holds totesys');
    progress(`seeding the source with totesys (scale ${scale})`);
    const counts = await installTotesys(c, { scale });
    progress(
      `seeded ${Object.values(counts)
        .reduce((a, b) => a + b, 0)
        .toLocaleString('en-GB')} rows`,
    );
  });
}

/**
 * The reference measured in the same run: the generator unpaced into a fresh totesys database with
 * nothing else running (plain write throughput), then a bare pgoutput reader decoding exactly those
 * changes from a slot made before them (the raw decoding rate, the ceiling of one slot).
 */
async function runBaseline(bench: PipelineBench, serverUrl: string): Promise<BaselineResult> {
  const { options, progress } = bench;
  const url = withDatabase(serverUrl, BASELINE_DATABASE);
  const slot = `${BASELINE_DATABASE}_raw`;
  const publication = `${BASELINE_DATABASE}_pub`;
  await recreateDatabase(serverUrl, BASELINE_DATABASE);
  try {
    return await withClient(url, async (control) => {
      await installTotesys(control, { scale: Math.min(options.scale, 0.05) });
      await control.query(
        `CREATE PUBLICATION ${quoteIdent(publication)} FOR TABLE ${TOTESYS_TABLES.map(quoteIdent).join(', ')}`,
      );
      await control.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slot]);
      progress(`baseline: writing ${options.baselineChanges.toLocaleString('en-GB')} changes unpaced`);
      const generator = await LoadGenerator.connect({
        url,
        connections: options.connections,
        seed: options.seed,
      });
      let written: LoadRunResult;
      try {
        written = await generator.run({
          rate: Infinity,
          maxChanges: options.baselineChanges,
          batchMs: options.batchMs,
        });
      } finally {
        await generator.close();
      }
      const write = {
        changes: written.changes,
        transactions: written.transactions,
        seconds: written.seconds,
        perSecond: written.changes / written.seconds,
        failedBatches: written.failedBatches,
      };
      progress(`baseline: ${Math.round(write.perSecond)} changes/s written; decoding them`);
      try {
        const raw = await readWithLibrary({ url, slot, publication }, written.changes, 600_000, () =>
          walsenderCpuSeconds(control, slot),
        );
        return {
          write,
          decode: {
            changes: raw.changes,
            seconds: raw.seconds,
            perSecond: raw.changes / raw.seconds,
            walsenderCpuSeconds: raw.cpu.walsender,
          },
          note: null,
        };
      } catch (e) {
        return { write, decode: null, note: `decoding failed: ${(e as Error).message}` };
      }
    });
  } finally {
    // With its slot, once the reader's walsender is gone.
    await dropDatabase(serverUrl, BASELINE_DATABASE);
  }
}

/** Nothing buffered, queued or running in any stage the stack process runs. */
export function stagesIdle(s: StackStats): boolean {
  const d = s.delivery;
  return (
    d.bufferedRecords === 0 &&
    d.millisBehindLatest === 0 &&
    d.recordsIn === d.recordsOk + d.recordsDropped + d.recordsFailed &&
    s.transform.queued + s.transform.inFlight === 0 &&
    s.load.queued + s.load.inFlight === 0
  );
}

function stageWork(before: StackStats, after: StackStats): StageWork {
  const c0 = before.capture;
  const c1 = after.capture;
  const t0 = before.logs.transform;
  const t1 = after.logs.transform;
  const l0 = before.logs.load;
  const l1 = after.logs.load;
  const busySeconds = (l1.durationMs - l0.durationMs) / 1000;
  const rows = l1.rows - l0.rows;
  const problems: Record<string, number> = {};
  for (const [k, n] of Object.entries(after.logs.problems)) {
    const d = n - (before.logs.problems[k] ?? 0);
    if (d > 0) problems[k] = d;
  }
  return {
    capture:
      c1 && c0 && c1.changes >= c0.changes
        ? {
            changes: c1.changes - c0.changes,
            transactions: c1.transactions - c0.transactions,
            records: c1.records - c0.records,
            bytes: c1.bytes - c0.bytes,
          }
        : null,
    delivery: {
      recordsIn: after.delivery.recordsIn - before.delivery.recordsIn,
      objectsOut: after.delivery.objectsOut - before.delivery.objectsOut,
      bytesOut: after.delivery.bytesOut - before.delivery.bytesOut,
      getRecordsCalls: after.delivery.getRecordsCalls - before.delivery.getRecordsCalls,
    },
    transform: {
      invocations: after.transform.invocations - before.transform.invocations,
      objects: t1.objects - t0.objects,
      changes: t1.changes - t0.changes,
      rows: t1.rows - t0.rows,
      bytesIn: t1.bytesIn - t0.bytesIn,
      bytesOut: t1.bytesOut - t0.bytesOut,
    },
    load: {
      invocations: after.load.invocations - before.load.invocations,
      objects: l1.objects - l0.objects,
      rows,
      written: l1.written - l0.written,
      busySeconds,
      rowsPerBusySecond: busySeconds > 0 ? rows / busySeconds : null,
    },
    problems,
  };
}

/** The pieces a step works with, once everything is up. */
interface Running {
  bench: PipelineBench;
  stack: StackProcess;
  probe: Probe;
  generator: LoadGenerator;
  control: Client;
  sampler: ProcessSampler;
  /** The bench's own warehouse, with pg_stat_statements (null when given one). */
  warehouse: Client | null;
  /** The newest stats, kept fresh while anything waits (capture's pid moves on a restart). */
  latest: StackStats | null;
  /** Capture profile files already read. */
  captureProfiles: Set<string>;
}

async function refresh(run: Running): Promise<StackStats> {
  run.latest = await run.stack.stats();
  return run.latest;
}

/**
 * Waits until the step's probes and a final marker are in the warehouse, the slot has confirmed
 * `endLsn`, and every stage is idle (seen twice, IDLE_CONFIRM_MS apart). Seconds from the call to
 * the first of those two sightings, or null at the timeout.
 */
async function settle(run: Running, tag: string, endLsn: string, timeoutS: number): Promise<number | null> {
  const started = performance.now();
  const marker = await run.probe.mark(`${tag}:drain`);
  let idleSince: number | null = null;
  for (;;) {
    const stats = await refresh(run);
    // A capture that cannot start (bad settings, a source it cannot use) is restarted forever.
    if (tag === 'startup' && stats.captureRestarts >= 3)
      throw new Error(
        `capture exited ${stats.captureRestarts} times while starting: ${Object.keys(stats.logs.problems).join(' | ')}`,
      );
    const { rows } = await run.control.query<{ ok: boolean }>(
      'SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = $2',
      [endLsn, run.bench.options.slot],
    );
    const seen = marker.latencyMs !== null && run.probe.of(tag).every((m) => m.latencyMs !== null);
    const now = performance.now();
    if (seen && rows[0]?.ok === true && stagesIdle(stats)) {
      if (idleSince === null) idleSince = now;
      else if (now - idleSince >= IDLE_CONFIRM_MS) return (idleSince - started) / 1000;
    } else idleSince = null;
    if (now - started > timeoutS * 1000) return null;
    await sleep(POLL_MS);
  }
}

/** The warehouse database's size on disk (tables, indexes, TOAST). */
async function databaseBytes(client: Client): Promise<number> {
  const { rows } = await client.query<{ bytes: string }>(
    'SELECT pg_database_size(current_database()) AS bytes',
  );
  return Number(rows[0]!.bytes);
}

async function currentLsn(control: Client): Promise<string> {
  return (await control.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
}

const stepName = (rate: number) =>
  rate === 0 ? 'idle' : rate % 1000 === 0 ? `${rate / 1000}k/s` : `${rate}/s`;

/** The warehouse statements that took the most time since the last reset (and resets). */
async function topStatements(warehouse: Client | null, reset: boolean): Promise<WarehouseStatement[] | null> {
  if (!warehouse) return null;
  if (reset) {
    await warehouse.query('SELECT pg_stat_statements_reset()');
    return [];
  }
  const { rows } = await warehouse.query<{ query: string; calls: string; total: number; rows: string }>(
    `SELECT query, calls, total_exec_time AS total, rows FROM pg_stat_statements
      WHERE query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE $1 ORDER BY total_exec_time DESC LIMIT 8`,
    [`%${PROBE_TAG}%`],
  );
  return rows.map((r) => ({
    statement: r.query.replace(/\s+/g, ' ').slice(0, 160),
    calls: Number(r.calls),
    totalMs: r.total,
    rows: Number(r.rows),
  }));
}

async function runStep(run: Running, rate: number, durationS: number): Promise<StepResult> {
  const { options, progress } = run.bench;
  const name = stepName(rate);
  const before = await refresh(run);
  await topStatements(run.warehouse, true);
  const window = run.sampler.open();
  run.probe.startTicking(name, options.probeMs);
  const started = performance.now();
  // Stats once a second: capture's pid for the sampler, and a line of progress now and then.
  let watching = true;
  const watcher = (async () => {
    let lastSaid = performance.now();
    while (watching) {
      await sleep(1000);
      if (!watching) break;
      const s = await refresh(run).catch(() => null);
      if (s && performance.now() - lastSaid >= 10_000) {
        lastSaid = performance.now();
        const lag = s.capture?.lagSeconds;
        progress(
          `${name}: ${secondsSince(started).toFixed(0)} s; capture lag ${lag === null || lag === undefined ? '?' : `${lag.toFixed(1)} s`}, ` +
            `transform queue ${s.transform.queued}, load queue ${s.load.queued}`,
        );
      }
    }
  })();
  let generated: LoadRunResult | null;
  try {
    generated =
      rate > 0
        ? await run.generator.run({ rate, durationMs: durationS * 1000, batchMs: options.batchMs })
        : await sleep(durationS * 1000).then(() => null);
  } finally {
    run.probe.stopTicking();
    watching = false;
    await watcher;
  }
  const seconds = secondsSince(started);
  const loadUsage = window.close();
  const endLsn = await currentLsn(run.control);
  progress(
    `${name}: load done${generated ? ` (${Math.round(generated.changes / seconds)} changes/s)` : ''}; draining`,
  );
  const drainWindow = run.sampler.open();
  const drainSeconds = await settle(run, name, endLsn, options.drainTimeoutSeconds);
  const drainUsage = drainWindow.close();
  const after = await refresh(run);
  const warehouseStatements = await topStatements(run.warehouse, false);
  const changes = generated?.changes ?? 0;
  const step = {
    offeredPerSecond: rate,
    achievedPerSecond: changes / seconds,
    probe: summariseLatencies(run.probe.of(name).map((m) => m.latencyMs)),
    drainSeconds,
  };
  const verdict = judgeStep(step, options.p99TargetMs);
  const profiled = drainSeconds !== null ? await profiledRun(run, rate, name) : null;
  return {
    name,
    ...step,
    seconds,
    changes,
    transactions: generated?.transactions ?? 0,
    failedBatches: generated?.failedBatches ?? 0,
    generatorErrors: generated?.errors ?? [],
    byKind: generated?.byKind ?? null,
    pipelinePerSecond: drainSeconds === null ? null : changes / (seconds + drainSeconds),
    ...verdict,
    usage: { load: loadUsage, drain: drainUsage },
    cpuPerChangeUs: cpuPerChange(changes, [loadUsage, drainUsage]),
    warehouseStatements,
    stages: stageWork(before, after),
    profile: profiled?.profile ?? null,
    captureProfile: profiled?.captureProfile ?? null,
    profiledRun: profiled && {
      seconds: profiled.seconds,
      changes: profiled.changes,
      drainSeconds: profiled.drainSeconds,
    },
  };
}

/**
 * Where the stack's time goes at `rate`: a run of `--profile-seconds` after the timed step, with
 * the stack's profiler on (and capture's, with --cpu-profile), then drained. Apart because the
 * profiler's sampling costs CPU (~0.07–0.1 of a core at 10k/s: bench/README.md, session 12) that
 * the timed step's probe would pay for; its probe does not tick. Nothing when profiling is off.
 */
async function profiledRun(
  run: Running,
  rate: number,
  name: string,
): Promise<{
  profile: ProfileSummary | null;
  captureProfile: CaptureProfile | null;
  seconds: number;
  changes: number;
  drainSeconds: number | null;
} | null> {
  const { options, progress } = run.bench;
  if (options.profileIntervalUs <= 0) return null;
  progress(`${name}: profiling the stack for ${options.profileSeconds} s at the same rate (not timed)`);
  await run.stack.startProfile(options.profileIntervalUs);
  const captureProfiled = await toggleCaptureProfile(run);
  const started = performance.now();
  const generated =
    rate > 0
      ? await run.generator.run({ rate, durationMs: options.profileSeconds * 1000, batchMs: options.batchMs })
      : await sleep(options.profileSeconds * 1000).then(() => null);
  const seconds = secondsSince(started);
  const file = options.cpuProfileDir
    ? path.join(options.cpuProfileDir, `stack-${name.replace('/', 'per')}.cpuprofile`)
    : null;
  const profile = await run.stack.stopProfile(file);
  let captureProfile: CaptureProfile | null = null;
  if (captureProfiled && (await toggleCaptureProfile(run)) === captureProfiled)
    captureProfile = await captureProfileOf(options.cpuProfileDir!, captureProfiled, run.captureProfiles);
  // The next step starts with nothing of this run left in the pipeline.
  const drainSeconds = await settle(
    run,
    `${name} profiled`,
    await currentLsn(run.control),
    options.drainTimeoutSeconds,
  );
  return { profile, captureProfile, seconds, changes: generated?.changes ?? 0, drainSeconds };
}

/**
 * Capture's profile of one load phase: SIGUSR2 to the capture process toggles its profiler
 * (capture-profiler.ts); the second toggle writes the file, which is waited for here.
 */
async function toggleCaptureProfile(run: Running): Promise<number | null> {
  const pid = run.latest?.capturePid;
  if (!run.bench.options.cpuProfileDir || !pid) return null;
  try {
    process.kill(pid, 'SIGUSR2');
    return pid;
  } catch {
    return null; // capture is restarting: no profile this step
  }
}

async function captureProfileOf(dir: string, pid: number, seen: Set<string>): Promise<CaptureProfile | null> {
  const deadline = performance.now() + 30_000;
  while (performance.now() < deadline) {
    const file = fs
      .readdirSync(dir)
      .find((f) => f.startsWith(`capture-${pid}-`) && f.endsWith('.cpuprofile') && !seen.has(f));
    if (file) {
      seen.add(file);
      const profile = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as CpuProfile;
      // Stopping the profiler is sampled too; it is not capture's work.
      const owners = summarizeProfile(profile, ['bench/capture-profiler.ts']);
      return { file: path.join(dir, file), owners, top: topFrames(profile) };
    }
    await sleep(POLL_MS);
  }
  return null;
}

export async function runPipelineBench(bench: PipelineBench): Promise<PipelineResult> {
  const { options, root, progress, stops } = bench;
  const loadAtStart = os.loadavg()[0]!;
  const notes: string[] = [];

  let serverUrl: string;
  let sourceUrl: string;
  let sourceDataDir: string | null = null;
  if (options.sourceUrl) {
    sourceUrl = options.sourceUrl;
    serverUrl = options.sourceUrl;
    notes.push('a given source: its Postgres processes are not sampled');
  } else {
    progress(`starting the source Postgres under ${root}`);
    const cluster = await startEmbeddedCluster({ dataDir: path.join(root, 'source') });
    stops.push(() => cluster.stop());
    serverUrl = cluster.url;
    sourceDataDir = cluster.dataDir;
    await withClient(serverUrl, async (c) => {
      if ((await c.query("SELECT 1 FROM pg_database WHERE datname = 'totesys'")).rowCount === 0)
        await c.query('CREATE DATABASE totesys');
    });
    sourceUrl = cluster.urlFor('totesys');
  }
  await seedIfEmpty(sourceUrl, options.scale, progress);
  const postgres = await withClient(
    sourceUrl,
    async (c) => (await c.query('SHOW server_version')).rows[0].server_version as string,
  );

  let baseline: BaselineResult | null = null;
  if (options.baselineChanges > 0) {
    try {
      baseline = await runBaseline(bench, serverUrl);
    } catch (e) {
      notes.push(`no baseline: ${(e as Error).message}`);
    }
  }

  if (options.sourceUrl)
    // A given source outlives the bench: leave no slot pinning its WAL, and no publication
    // (registered first, so that it runs once the stack has stopped).
    stops.push(() =>
      withClient(sourceUrl, async (c) => {
        await dropSlots(c, 'slot_name', options.slot);
        await c.query(`DROP PUBLICATION IF EXISTS ${quoteIdent(options.slot)}`);
      }),
    );
  // The warehouse is started here too (the stack then loads into it as into a given one), with
  // pg_stat_statements, so each step can say which of the load's statements took the time.
  let warehouseUrl = options.warehouseUrl;
  let warehouseDataDir: string | null = null;
  if (!warehouseUrl) {
    const cluster = await startEmbeddedCluster({
      dataDir: path.join(root, 'warehouse'),
      settings: { shared_preload_libraries: 'pg_stat_statements' },
    });
    stops.push(() => cluster.stop());
    warehouseDataDir = cluster.dataDir;
    await withClient(cluster.url, (c) => c.query('CREATE DATABASE warehouse'));
    warehouseUrl = cluster.urlFor('warehouse');
    await withClient(warehouseUrl, (c) => c.query('CREATE EXTENSION pg_stat_statements'));
  }
  if (options.cpuProfileDir) fs.mkdirSync(options.cpuProfileDir, { recursive: true });
  progress('starting the stack (capture, kinesalite, s3rver, local Firehose, transform, load, warehouse)');
  const stackStarted = performance.now();
  const stack = await StackProcess.start({
    dataDir: path.join(root, 'stack'),
    sourceUrl,
    warehouseUrl,
    statsIntervalMs: 1000,
    logFile: path.join(root, 'stack.log'),
    slot: options.slot,
    captureProfileDir: options.cpuProfileDir ?? undefined,
    freshness: options.freshness,
    bufferIntervalMs: options.bufferIntervalMs ?? undefined,
    stages: options.stages,
  });
  stops.push(() => stack.stop());
  const stackSeconds = secondsSince(stackStarted);

  const groups: ProcessGroup[] = [
    { name: 'stack', pids: () => [stack.pid] },
    { name: 'capture', pids: () => (run.latest?.capturePid ? [run.latest.capturePid] : []) },
    { name: 'bench', pids: () => [process.pid] },
    ...(sourceDataDir ? postgresGroups('source', sourceDataDir) : []),
    ...(warehouseDataDir ? postgresGroups('warehouse', warehouseDataDir) : []),
  ];
  const control = new Client({ connectionString: sourceUrl });
  await control.connect();
  stops.push(() => control.end());
  const probe = await Probe.connect(sourceUrl, warehouseUrl);
  const warehouse = new Client({ connectionString: warehouseUrl });
  await warehouse.connect();
  stops.push(() => warehouse.end());
  stops.push(() => probe.close());
  const generator = await LoadGenerator.connect({
    url: sourceUrl,
    connections: options.connections,
    seed: options.seed,
  });
  stops.push(() => generator.close());
  const run: Running = {
    bench,
    stack,
    probe,
    generator,
    control,
    sampler: new ProcessSampler(groups),
    warehouse: warehouseDataDir ? warehouse : null,
    latest: null,
    captureProfiles: new Set(),
  };

  progress('waiting for the initial snapshot to reach the warehouse');
  const snapshotWait = await settle(run, 'startup', await currentLsn(control), STARTUP_TIMEOUT_S);
  const startup = {
    stackSeconds,
    snapshotRows: run.latest?.capture?.snapshotRows ?? null,
    snapshotToWarehouseSeconds: snapshotWait,
  };
  if (snapshotWait === null)
    throw new Error(`the initial snapshot did not reach the warehouse in ${STARTUP_TIMEOUT_S} s`);
  progress(`the snapshot is in the warehouse (${snapshotWait.toFixed(1)} s after the stack came up)`);
  const warehouseBytesBefore = await databaseBytes(warehouse);

  const steps: StepResult[] = [];
  const plan = [...(options.idleSeconds > 0 ? [0] : []), ...options.steps];
  for (const rate of plan) {
    const seconds = rate === 0 ? options.idleSeconds : options.stepSeconds;
    progress(`step ${stepName(rate)}: ${seconds} s`);
    const step = await runStep(run, rate, seconds);
    steps.push(step);
    const p = step.probe;
    progress(
      `step ${step.name}: p50 ${p.p50Ms === null ? '∞' : Math.round(p.p50Ms)} ms, p99 ${p.p99Ms === null ? '∞' : Math.round(p.p99Ms)} ms, ` +
        `drain ${step.drainSeconds === null ? 'timed out' : `${step.drainSeconds.toFixed(1)} s`} → ${step.held ? 'held' : `not held (${step.verdict})`}`,
    );
    if (step.drainSeconds === null) {
      notes.push(`stopped after ${step.name}: its backlog did not drain in ${options.drainTimeoutSeconds} s`);
      break;
    }
    if (step.profiledRun?.drainSeconds === null) {
      notes.push(
        `stopped after ${step.name}: its profiled run's backlog did not drain in ${options.drainTimeoutSeconds} s`,
      );
      break;
    }
    if (!step.held && rate > 0 && !options.keepGoing) {
      notes.push(`stopped after ${step.name}, the first step not held (--keep-going runs the rest)`);
      break;
    }
  }

  let verify: PipelineResult['verify'] = null;
  const drained = steps.every((s) => s.drainSeconds !== null && s.profiledRun?.drainSeconds !== null);
  if (options.verify && drained) {
    progress('comparing the warehouse with the source');
    const report = await withClient(sourceUrl, (s) => withClient(warehouseUrl, (w) => verifyWarehouse(s, w)));
    verify = { ok: report.ok, report: renderVerifyReport(report) };
  } else if (options.verify) notes.push('not verified: a step did not drain');

  const warehouseBytesAfter = await databaseBytes(warehouse);
  // The profiled runs wrote to the warehouse too.
  const loaded = steps.reduce((sum, st) => sum + st.changes + (st.profiledRun?.changes ?? 0), 0);
  // Capture writes its profile when it exits: stop the stack first.
  await probe.close();
  await generator.close();
  await stack.stop();
  return {
    machine: {
      ...machineBasics(),
      postgres,
      loadAverage: { start: loadAtStart, end: os.loadavg()[0]! },
    },
    settings: {
      steps: options.steps,
      'step-seconds': options.stepSeconds,
      'idle-seconds': options.idleSeconds,
      connections: options.connections,
      'batch-ms': options.batchMs,
      'probe-ms': options.probeMs,
      'p99-ms': options.p99TargetMs,
      scale: options.scale,
      'profile-us': options.profileIntervalUs,
      source: options.sourceUrl ? 'given' : 'embedded',
      warehouse: options.warehouseUrl ? 'given' : 'embedded',
      // What `totes up` runs (local/local-stack.ts): by default AWS's fast mode (no dynamic
      // partitioning: mixed objects) with 250 ms buffering, the three Lambda stages on worker threads.
      'firehose mode':
        `${options.freshness === 'fast' ? 'fast (mixed objects, no dynamic partitioning)' : 'default (dynamic partitioning, per-table objects)'}, ` +
        `buffering ${options.bufferIntervalMs ?? (options.freshness === 'fast' ? 250 : 1000)} ms`,
      stages:
        options.stages === 'workers'
          ? 'record transformation, transform and load on worker threads'
          : 'all on the main event loop',
    },
    baseline,
    startup,
    steps,
    knee: kneeOf(steps),
    warehouseGrowth: {
      bytes: warehouseBytesAfter - warehouseBytesBefore,
      changes: loaded,
      bytesPerChange: loaded > 0 ? (warehouseBytesAfter - warehouseBytesBefore) / loaded : null,
    },
    verify,
    notes,
  };
}
