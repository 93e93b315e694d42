import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'pg';
import { quoteIdent } from '../capture/pg-text';
import { TOTESYS_TABLES } from '../core/totesys-tables';
import { startEmbeddedCluster } from '../local/embedded-postgres';
import { outstandingProblems } from '../processors/load/outstanding-problems';
import { renderVerifyReport, verifyWarehouse } from '../processors/load/verify';
import { createTotesysSchema, inspectTotesys } from '../totesys';
import { StackLogTail, reachedAt } from './cold-start-log';
import type { ColdStartOptions } from './cold-start-options';
import type { ColdStartResult, Floor, Phase, StageSpan } from './cold-start-report';
import { buildColdStartSource } from './cold-start-source';
import { copyFrom, copyToRows } from './pg-copy';
import { stagesIdle } from './pipeline';
import {
  ProcessSampler,
  parentPids,
  postgresGroups,
  type ProcessGroup,
  type WindowUsage,
} from './process-sampler';
import { machineBasics } from './report';
import { StackProcess } from './stack-process';
import type { StackStats } from './stack-protocol';
import { dropSlots, withClient } from './workloads';

/**
 * `npm run bench:coldstart`: a source of `--rows` rows built first (not timed), then the local
 * pipeline started from nothing — no slot, no publication, no warehouse database, no stack — as
 * `totes up` starts it (pipeline-stack.ts: `startLocalStack` in a process of its own, capture its
 * child, the warehouse an embedded cluster it creates and migrates), timed until the warehouse is
 * complete and `totes verify`'s comparison passes; then the floor of the same machine.
 */

export interface ColdStartBench {
  options: ColdStartOptions;
  /** Where the source cluster, the stack's data directory and its log go. */
  root: string;
  progress(message: string): void;
  /** What was started, stopped in reverse order by the caller, however the run ends. */
  stops: (() => Promise<void>)[];
}

const POLL_MS = 200;
/** Every stage must be seen idle twice this far apart (an object between two stages is in neither). */
const IDLE_CONFIRM_MS = 500;
const FLOOR_SCHEMA = 'coldstart_floor';

const childrenOf = (pid: number, command: RegExp): number[] =>
  [...parentPids()]
    .filter(([child, parent]) => parent === pid && command.test(commandOf(child)))
    .map(([c]) => c);

function commandOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

/** The source: a given empty database, or a fresh embedded Postgres 17 (wal_level=logical). */
async function startSource(bench: ColdStartBench): Promise<{ url: string; dataDir: string | null }> {
  const { options, root, stops, progress } = bench;
  if (options.sourceUrl) {
    await withClient(options.sourceUrl, async (c) => {
      if ((await inspectTotesys(c)).tables.length > 0)
        throw new Error('--source-url must be an empty database: the bench builds the source in it');
    });
    return { url: options.sourceUrl, dataDir: null };
  }
  progress(`starting the source Postgres under ${root}`);
  const cluster = await startEmbeddedCluster({ dataDir: path.join(root, 'source') });
  stops.push(() => cluster.stop());
  await withClient(cluster.url, (c) => c.query('CREATE DATABASE totesys'));
  return { url: cluster.urlFor('totesys'), dataDir: cluster.dataDir };
}

/** Bytes kept in blocks (a CopyData message's buffer is the parser's, reused after the call). */
class Blocks {
  private readonly full: Buffer[] = [];
  private block = Buffer.allocUnsafe(4 << 20);
  private used = 0;
  add(row: Buffer): void {
    if (this.used + row.length > this.block.length) {
      this.full.push(this.block.subarray(0, this.used));
      this.block = Buffer.allocUnsafe(Math.max(4 << 20, row.length));
      this.used = 0;
    }
    row.copy(this.block, this.used);
    this.used += row.length;
  }
  take(): Buffer {
    return Buffer.concat([...this.full, this.block.subarray(0, this.used)]);
  }
}

/**
 * The floor on this machine: every source table `COPY … TO STDOUT` (one REPEATABLE READ
 * transaction, text format, kept in memory), then `COPY … FROM STDIN` into an empty table of the
 * same definition (keys, foreign keys) in a scratch schema of the warehouse database, dropped after.
 */
async function measureFloor(sourceUrl: string, warehouseUrl: string): Promise<Floor> {
  return withClient(sourceUrl, (source) =>
    withClient(warehouseUrl, async (warehouse) => {
      await warehouse.query(`DROP SCHEMA IF EXISTS ${FLOOR_SCHEMA} CASCADE`);
      await warehouse.query(`CREATE SCHEMA ${FLOOR_SCHEMA}`);
      await warehouse.query(`SET search_path = ${FLOOR_SCHEMA}`);
      try {
        await createTotesysSchema(warehouse);
        let rows = 0;
        let bytes = 0;
        let outMs = 0;
        let inMs = 0;
        await source.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        for (const table of TOTESYS_TABLES) {
          const blocks = new Blocks();
          let t = performance.now();
          const out = await copyToRows(source, `COPY ${quoteIdent(table)} TO STDOUT`, (row) =>
            blocks.add(row),
          );
          outMs += performance.now() - t;
          const text = blocks.take();
          t = performance.now();
          await copyFrom(warehouse, `COPY ${quoteIdent(table)} FROM STDIN`, text);
          inMs += performance.now() - t;
          rows += out.rows;
          bytes += out.bytes;
        }
        await source.query('COMMIT');
        const side = (ms: number) => ({ seconds: ms / 1000, rowsPerSecond: rows / (ms / 1000) });
        return { rows, bytes, copyOut: side(outMs), copyIn: side(inMs), seconds: (outMs + inMs) / 1000 };
      } finally {
        await warehouse.query(`DROP SCHEMA IF EXISTS ${FLOOR_SCHEMA} CASCADE`);
      }
    }),
  );
}

/** Epoch ms → seconds since the cold start began. */
const since = (t0: number, at: number | null) => (at === null ? null : (at - t0) / 1000);

export async function runColdStart(bench: ColdStartBench): Promise<ColdStartResult> {
  const { options, root, progress, stops } = bench;
  const loadAtStart = os.loadavg()[0]!;
  const notes: string[] = [];

  const source = await startSource(bench);
  progress(`building the source: ${options.rows.toLocaleString('en-GB')} rows from ${options.data}`);
  const prepStarted = performance.now();
  const built = await withClient(source.url, (c) =>
    buildColdStartSource(c, options.data, options.rows, progress),
  );
  const prepareSeconds = (performance.now() - prepStarted) / 1000;
  progress(`source built in ${prepareSeconds.toFixed(1)} s`);
  const postgres = await withClient(
    source.url,
    async (c) => (await c.query('SHOW server_version')).rows[0].server_version as string,
  );
  const dropSlotAndPublication = () =>
    withClient(source.url, async (c) => {
      await dropSlots(c, 'slot_name', options.slot);
      await c.query(`DROP PUBLICATION IF EXISTS ${quoteIdent(options.slot)}`);
    });
  if (options.sourceUrl) {
    // Cold means no slot: one an interrupted run left would make capture resume, not start.
    await dropSlotAndPublication();
    // A given source outlives the bench: leave no slot pinning its WAL, and no publication
    // (registered first, so that it runs once the stack has stopped).
    stops.push(dropSlotAndPublication);
  }

  // Nothing yet: the stack's data directory (kinesalite, s3rver, checkpoints, the warehouse cluster).
  const stackDir = path.join(root, 'stack');
  const logFile = path.join(root, 'stack.log');
  let stackPid = 0;
  let latestCapturePid: number | null = null;
  const stackPids = () => (stackPid ||= childrenOf(process.pid, /pipeline-stack/)[0] ?? 0);
  const groups: ProcessGroup[] = [
    { name: 'stack', pids: () => (stackPids() ? [stackPids()] : []) },
    // Capture's pid from the stack's stats (polled anyway); a scan of /proc until the first reply.
    {
      name: 'capture',
      pids: () =>
        latestCapturePid
          ? [latestCapturePid]
          : stackPids()
            ? childrenOf(stackPids(), /totes\.js capture/)
            : [],
    },
    { name: 'bench', pids: () => [process.pid] },
    ...(source.dataDir ? postgresGroups('source', source.dataDir) : []),
    ...(options.warehouseUrl ? [] : postgresGroups('warehouse', path.join(stackDir, 'warehouse'))),
  ];
  const sampler = new ProcessSampler(groups, 500);
  const tail = new StackLogTail(logFile);
  const usage: Record<string, WindowUsage> = {};
  let window = sampler.open();
  const endPhase = (name: string) => {
    usage[name] = window.close();
    window = sampler.open();
  };

  progress(
    'cold start: the stack (warehouse created and migrated, kinesalite, s3rver, local Firehose, capture)',
  );
  const t0 = Date.now();
  // The stack starts its parts concurrently (local/local-stack.ts): capture is started, and may be
  // reading, before the stack is all up (the warehouse migrated, the load started). The phases end
  // at the stack's `capture started` and capture's `snapshot started` lines, watched meanwhile.
  type PhaseName = 'stack start' | 'capture start' | 'snapshot read' | 'drain';
  // Widened: startPhases() moves it on, which the checks below must not assume it did not.
  let phase = 'stack start' as PhaseName;
  const startPhases = (): PhaseName => {
    tail.read();
    if (phase === 'stack start' && tail.captureStartedAt !== null) {
      endPhase(phase);
      phase = 'capture start';
    }
    if (phase === 'capture start' && tail.snapshotStartedAt !== null) {
      endPhase(phase);
      phase = 'snapshot read';
    }
    return phase;
  };
  const starting = StackProcess.start({
    dataDir: stackDir,
    sourceUrl: source.url,
    ...(options.warehouseUrl ? { warehouseUrl: options.warehouseUrl } : {}),
    statsIntervalMs: 1000,
    logFile,
    slot: options.slot,
  });
  let started = false;
  void starting.then(() => (started = true)).catch(() => undefined);
  while (!started) {
    startPhases();
    await Promise.race([starting, sleep(100)]);
  }
  const stack = await starting;
  stops.push(() => stack.stop());
  const readyAt = Date.now();
  // Where the stack process' time goes from here to the warehouse complete, by stage.
  if (options.profileIntervalUs > 0) await stack.startProfile(options.profileIntervalUs);
  const warehouseUrl = stack.ready.warehouseUrl;
  progress(`stack up in ${((readyAt - t0) / 1000).toFixed(1)} s; capture takes the snapshot`);

  // Firehose's progress is only in stats: it has read the snapshot once it has read as many
  // records as capture had written when it finished (heartbeats trickle in after that).
  let snapshotRecords: number | null = null;
  let firehoseReadAt: number | null = null;
  let stats: StackStats;
  let idleSince: number | null = null;
  let lastSaid = Date.now();
  for (;;) {
    phase = startPhases();
    stats = await stack.stats();
    const now = Date.now();
    if (stats.captureRestarts >= 3)
      throw new Error(
        `capture exited ${stats.captureRestarts} times: ${Object.keys(tail.problems).join(' | ')}`,
      );
    latestCapturePid = stats.capturePid;
    if (phase === 'snapshot read' && tail.snapshotFinished) {
      endPhase(phase);
      phase = 'drain';
      progress(
        `snapshot read: ${tail.snapshotFinished.rows.toLocaleString('en-GB')} rows in ${tail.snapshotFinished.seconds.toFixed(1)} s; draining`,
      );
    }
    const finished = tail.snapshotFinished;
    const capture = stats.capture;
    if (finished && capture && capture.at > finished.at) snapshotRecords ??= capture.records;
    if (snapshotRecords !== null && stats.delivery.recordsIn >= snapshotRecords) firehoseReadAt ??= now;
    // Complete: capture's snapshot is all in Kinesis (its stats after the snapshot counted every
    // record), Firehose has read every record, and nothing is buffered, queued or running after it.
    const complete =
      finished !== null &&
      capture !== null &&
      capture.at > finished.at &&
      stats.delivery.recordsIn >= capture.records &&
      tail.loaded.count > 0 &&
      stagesIdle(stats);
    if (complete) {
      if (idleSince === null) idleSince = now;
      else if (now - idleSince >= IDLE_CONFIRM_MS) break;
    } else idleSince = null;
    if (now - t0 > options.timeoutSeconds * 1000)
      throw new Error(
        `the warehouse was not complete after ${options.timeoutSeconds} s (${phase}; ` +
          `snapshot rows read ${tail.snapshotRows}, transformed ${tail.transformed.sums.changes ?? 0}, ` +
          `loaded ${tail.loaded.sums.rows ?? 0})`,
      );
    if (now - lastSaid >= 10_000) {
      lastSaid = now;
      progress(
        `${phase}: ${((now - t0) / 1000).toFixed(0)} s; snapshot rows read ${tail.snapshotRows.toLocaleString('en-GB')}, ` +
          `Firehose records in ${stats.delivery.recordsIn}, transformed ${(tail.transformed.sums.changes ?? 0).toLocaleString('en-GB')} changes, ` +
          `loaded ${(tail.loaded.sums.rows ?? 0).toLocaleString('en-GB')} rows (transform queue ${stats.transform.queued}, load queue ${stats.load.queued})`,
      );
    }
    await sleep(POLL_MS);
  }
  tail.read();
  // The warehouse is complete when the last object is loaded (the idle check confirms it after).
  const completeAt = tail.loaded.lastAt ?? idleSince!;
  endPhase('drain');
  const profile = options.profileIntervalUs > 0 ? await stack.stopProfile(null) : null;
  progress(
    `the warehouse is complete ${((completeAt - t0) / 1000).toFixed(1)} s after the cold start; verifying`,
  );

  // `totes verify`: the same comparison and the same look for set-aside work, until it passes.
  const verifyStarted = Date.now();
  let attempts = 0;
  let verified: { ok: boolean; report: string; outstanding: number } | null = null;
  await withClient(source.url, (s) =>
    withClient(warehouseUrl, async (w) => {
      for (;;) {
        attempts += 1;
        // As `totes verify` runs it: a second connection to each side, two tables at a time.
        const report = await verifyWarehouse(s, w, {
          connect: async (side) => {
            const client = new Client({ connectionString: side === 'source' ? source.url : warehouseUrl });
            await client.connect();
            return client;
          },
        });
        const outstanding = await outstandingProblems(stackDir);
        const total = outstanding.checked ? outstanding.total : 0;
        verified = {
          ok: report.ok && total === 0,
          report: renderVerifyReport(report, { report: outstanding, allowed: false }),
          outstanding: total,
        };
        if (verified.ok || Date.now() - t0 > options.timeoutSeconds * 1000) return;
        await sleep(1000);
      }
    }),
  );
  const verifiedAt = Date.now();
  endPhase('verify');
  const verify = verified!;
  progress(
    verify.ok
      ? `verify passed ${((verifiedAt - t0) / 1000).toFixed(1)} s after the cold start (${attempts} comparison${attempts === 1 ? '' : 's'})`
      : 'verify did not pass',
  );
  window.close();

  let floor: Floor | null = null;
  if (options.baseline) {
    progress('floor: COPY out of the source, COPY into empty tables on the warehouse server');
    floor = await measureFloor(source.url, warehouseUrl);
  }
  await stack.stop();

  const snapshot = tail.snapshotFinished!;
  const span = (s: typeof tail.transformed, rowsKey: string): StageSpan => ({
    objects: s.count,
    rows: s.sums[rowsKey] ?? 0,
    repeats: s.repeats,
    snapshotDoneAt: since(t0, reachedAt(s, snapshot.rows)),
    firstAt: since(t0, s.firstAt),
    lastAt: since(t0, s.lastAt),
  });
  const startedAt = tail.snapshotStartedAt!;
  const captureStartedAt = tail.captureStartedAt ?? readyAt;
  const phase$ = (name: string, from: number, to: number, rows: number | null): Phase => ({
    name,
    startAt: (from - t0) / 1000,
    seconds: (to - from) / 1000,
    rows,
    rowsPerSecond: rows === null || to === from ? null : rows / ((to - from) / 1000),
    usage: usage[name]!,
  });
  const totalSeconds = (verifiedAt - t0) / 1000;
  const cpu: Record<string, number> = {};
  for (const name of ['stack start', 'capture start', 'snapshot read', 'drain'])
    for (const [group, g] of Object.entries(usage[name]!.groups))
      cpu[group] = (cpu[group] ?? 0) + g.cpuSeconds;
  const cpuPerRowUs = Object.fromEntries(
    Object.entries(cpu)
      .sort(([, a], [, b]) => b - a)
      .map(([group, seconds]) => [group, (seconds * 1e6) / built.rows]),
  );
  if (!verify.ok) notes.push('verify never passed: the figure is not a cold start to a verified warehouse');
  return {
    machine: {
      ...machineBasics(),
      postgres,
      loadAverage: { start: loadAtStart, end: os.loadavg()[0]! },
    },
    settings: {
      rows: options.rows,
      'target-seconds': options.targetSeconds,
      source: options.sourceUrl ? 'given' : 'embedded',
      warehouse: options.warehouseUrl ? 'given' : 'embedded, created by the stack (as totes up)',
      'firehose mode': 'local defaults (fast mode)',
    },
    source: { ...built, prepareSeconds },
    phases: [
      phase$('stack start', t0, captureStartedAt, null),
      phase$('capture start', captureStartedAt, startedAt, null),
      phase$('snapshot read', startedAt, snapshot.at, snapshot.rows),
      phase$('drain', snapshot.at, completeAt, null),
      phase$('verify', completeAt, verifiedAt, built.rows),
    ],
    snapshotTables: tail.snapshotTables.map((t) => ({
      table: t.table,
      rows: t.rows,
      at: (t.at - t0) / 1000,
    })),
    stages: {
      stack: {
        captureStartedAt: since(t0, tail.captureStartedAt),
        warehouseReadyAt: since(t0, tail.warehouseReadyAt),
        readyAt: (readyAt - t0) / 1000,
      },
      capture: { rows: snapshot.rows, firstAt: since(t0, startedAt), lastAt: since(t0, snapshot.at) },
      firehose: {
        records: snapshotRecords ?? stats.delivery.recordsIn,
        objects: stats.delivery.objectsOut,
        bytes: stats.delivery.bytesOut,
        readAt: since(t0, firehoseReadAt),
      },
      transform: { ...span(tail.transformed, 'changes'), bytesIn: tail.transformed.sums.bytesIn ?? 0 },
      load: {
        ...span(tail.loaded, 'rows'),
        busySeconds: (tail.loaded.sums.durationMs ?? 0) / 1000,
      },
    },
    cpuPerRowUs,
    pipeline: {
      seconds: (completeAt - startedAt) / 1000,
      rowsPerSecond: built.rows / ((completeAt - startedAt) / 1000),
    },
    stackProfile: profile ? { seconds: profile.seconds, stages: profile.stages, top: profile.top } : null,
    verify: { ok: verify.ok, attempts, seconds: (verifiedAt - verifyStarted) / 1000, report: verify.report },
    totalSeconds,
    target: { seconds: options.targetSeconds, pass: verify.ok && totalSeconds <= options.targetSeconds },
    floor,
    problems: tail.problems,
    notes,
  };
}
