import fs from 'node:fs';
import path from 'node:path';
import type { LogFields, Logger } from '../core/logger';
import { startLocalStack, type LocalStack } from '../local/local-stack';
import { startCpuProfile, type CpuProfile } from './cpu-profile';
import { summarizeThreads } from './profile-stages';
import type {
  CaptureCounters,
  StackConfig,
  StackMessage,
  StackRequest,
  StackStats,
  StageCounters,
} from './stack-protocol';

/**
 * The local pipeline for `npm run bench:pipeline`, in a process of its own: `startLocalStack` as
 * `totes up` calls it (capture a child process; kinesalite, s3rver, the local Firehose, transform
 * and load in this process), driven over the IPC channel (stack-protocol.ts). Its log lines are
 * appended to a file and the stages' own lines are counted, so the bench can say per step what
 * transform and load did without sharing this process.
 */

const config = JSON.parse(process.argv[2] ?? '{}') as StackConfig;
const log = fs.openSync(config.logFile, 'a');

const counters: StageCounters = {
  transform: { objects: 0, changes: 0, rows: 0, rejected: 0, bytesIn: 0, bytesOut: 0 },
  load: { objects: 0, rows: 0, written: 0, durationMs: 0, maxDurationMs: 0, duplicates: 0 },
  problems: {},
};
let capture: CaptureCounters | null = null;

const num = (v: unknown) => (typeof v === 'number' ? v : 0);

function count(level: string, msg: string, who: string): void {
  if (level !== 'warn' && level !== 'error') return;
  const key = `${who}${level}: ${msg}`;
  counters.problems[key] = (counters.problems[key] ?? 0) + 1;
}

/** The stages' lines, counted as they are logged (see processors/*\/create-handler.ts). */
function observe(level: string, msg: string, fields: LogFields): void {
  count(level, msg, '');
  if (fields.stage === 'transform' && msg === 'transformed') {
    const t = counters.transform;
    t.objects += 1;
    t.changes += num(fields.changes);
    t.rows += num(fields.rows);
    t.rejected += num(fields.rejected);
    t.bytesIn += num(fields.bytesIn);
    t.bytesOut += num(fields.bytesOut);
  } else if (fields.stage === 'load' && msg === 'object loaded') {
    const l = counters.load;
    l.objects += 1;
    l.rows += num(fields.rows);
    l.written += num(fields.written);
    l.durationMs += num(fields.durationMs);
    l.maxDurationMs = Math.max(l.maxDurationMs, num(fields.durationMs));
  } else if (fields.stage === 'load' && msg === 'object already loaded; skipped') {
    counters.load.duplicates += 1;
  }
}

function write(record: LogFields): void {
  fs.writeSync(log, `${JSON.stringify(record, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
}

/** A Logger that counts and files every line at info and above (debug lines are dropped unread). */
function benchLogger(bound: LogFields): Logger {
  const emit =
    (level: string) =>
    (msg: string, fields: LogFields = {}) => {
      const all = { ...bound, ...fields };
      observe(level, msg, all);
      if (level === 'debug') return;
      write({ time: new Date().toISOString(), level, service: 'local', msg, ...all });
    };
  return {
    debug: emit('debug'),
    info: emit('info'),
    warn: emit('warn'),
    error: emit('error'),
    child: (fields) => benchLogger({ ...bound, ...fields }),
  };
}

function onCaptureLine(line: string): void {
  fs.writeSync(log, `${line}\n`);
  // Not a log line: Node itself speaking (a bad option, a crash's stack trace), which matters.
  if (!line.startsWith('{')) return count('error', line.slice(0, 200), 'capture output ');
  const level = /"level":"(\w+)"/.exec(line)?.[1] ?? 'info';
  if (level === 'warn' || level === 'error')
    count(level, /"msg":"([^"]*)"/.exec(line)?.[1] ?? line, 'capture ');
  if (!line.includes('"capture.stats"')) return;
  try {
    const s = JSON.parse(line) as Record<string, unknown>;
    capture = {
      changes: num(s.changes),
      transactions: num(s.transactions),
      records: num(s.records),
      bytes: num(s.bytes),
      snapshotRows: num(s.snapshotRows),
      lagBytes: typeof s.lagBytes === 'number' ? s.lagBytes : null,
      lagSeconds: typeof s.lagSeconds === 'number' ? s.lagSeconds : null,
      at: num(s.at),
    };
  } catch {
    // not a whole JSON line: the next one will do
  }
}

async function stats(stack: LocalStack): Promise<StackStats> {
  // The load stage reads a durable queue (local/queue-event-source.ts): its depth is the backlog.
  const depth = await stack.load.queue.depth();
  const d = stack.delivery.metrics();
  return {
    capturePid: stack.capture.pid ?? null,
    captureRestarts: stack.capture.restartCount,
    capture,
    delivery: {
      recordsIn: d.recordsIn,
      recordsOk: d.recordsOk,
      recordsDropped: d.recordsDropped,
      recordsFailed: d.recordsFailed,
      objectsOut: d.objectsOut,
      bytesOut: d.bytesOut,
      bufferedRecords: d.bufferedRecords,
      millisBehindLatest: d.millisBehindLatest,
      getRecordsCalls: d.getRecordsCalls,
    },
    transform: { ...stack.transform.stats },
    load: {
      invocations: stack.load.stats.invocations,
      failures: stack.load.stats.messagesFailed,
      deadLettered: stack.load.stats.deadLettered,
      inFlight: depth.inFlight,
      queued: depth.visible,
    },
    logs: structuredClone(counters),
  };
}

function send(message: StackMessage): void {
  process.send?.(message);
}

async function main(): Promise<void> {
  const stack = await startLocalStack({
    dataDir: config.dataDir,
    sourceUrl: config.sourceUrl,
    warehouseUrl: config.warehouseUrl,
    warehousePort: 0,
    statsIntervalMs: config.statsIntervalMs,
    freshness: config.freshness,
    bufferIntervalMs: config.bufferIntervalMs,
    stages: config.stages,
    logger: benchLogger({}),
    onCaptureOutput: onCaptureLine,
    // A part the stack cannot restart died (kinesalite's thread): the run is over, and says why.
    onFatal: (error) => {
      process.stderr.write(`the stack stopped: ${error.message}\n`);
      process.exit(1);
    },
    captureEnv: {
      TOTES_SLOT: config.slot,
      TOTES_PUBLICATION: config.slot,
      ...(config.captureProfileDir
        ? {
            // tsx first, so the profiler (TypeScript) can be required; quoted for paths with spaces.
            NODE_OPTIONS: ['tsx/cjs', path.join(__dirname, 'capture-profiler.ts')]
              .map((m) => `--require ${JSON.stringify(m === 'tsx/cjs' ? require.resolve(m) : m)}`)
              .join(' '),
            TOTES_BENCH_CAPTURE_PROFILE_DIR: config.captureProfileDir,
          }
        : {}),
    },
  });
  let stopProfile: (() => Promise<CpuProfile>) | null = null;
  const workers = () =>
    stack.workers
      ? [stack.workers.firehoseTransform, stack.workers.transform, stack.workers.load, stack.workers.kinesis]
      : [];
  let profileStartedAt = 0;
  let profileIntervalUs = 0;
  let stopping: Promise<void> | null = null;
  const stop = () => (stopping ??= stack.stop());

  const handle = async (request: StackRequest): Promise<unknown> => {
    switch (request.cmd) {
      case 'stats':
        return stats(stack);
      case 'profile-start':
        stopProfile = await startCpuProfile(request.intervalUs);
        for (const w of workers()) w.startProfile(request.intervalUs);
        profileStartedAt = performance.now();
        profileIntervalUs = request.intervalUs;
        return null;
      case 'profile-stop': {
        if (!stopProfile) throw new Error('no profile running');
        const main = await stopProfile();
        stopProfile = null;
        // Transform and load run on worker threads: each profiles itself (local/stage-workers.ts).
        const threads: { thread: string; profile: CpuProfile }[] = [{ thread: 'main', profile: main }];
        for (const w of workers())
          (await w.stopProfile()).forEach(({ profile }, i) => {
            if (profile) threads.push({ thread: `${w.stage} worker ${i + 1}`, profile });
          });
        if (request.file) {
          fs.mkdirSync(path.dirname(request.file), { recursive: true });
          for (const { thread, profile } of threads)
            fs.writeFileSync(
              thread === 'main'
                ? request.file
                : request.file.replace(/\.cpuprofile$/, `-${thread.replace(/ /g, '-')}.cpuprofile`),
              JSON.stringify(profile),
            );
        }
        // With the interval, a sample's wait for a core is not charged as CPU (bench/profile-stages.ts).
        const seconds = (performance.now() - profileStartedAt) / 1000;
        return summarizeThreads(threads, seconds, request.file, profileIntervalUs);
      }
      case 'stop':
        await stop();
        return null;
    }
    return request satisfies never;
  };
  process.on('message', (request: StackRequest) => {
    handle(request).then(
      (value) => {
        send({ type: 'reply', id: request.id, ok: true, value });
        if (request.cmd === 'stop') process.exit(0);
      },
      (e: unknown) => send({ type: 'reply', id: request.id, ok: false, error: String(e) }),
    );
  });
  // The bench is gone (crashed, or killed): nobody to serve.
  process.once('disconnect', () => void stop().finally(() => process.exit(0)));
  process.once('SIGTERM', () => void stop().finally(() => process.exit(0)));

  send({
    type: 'ready',
    ready: {
      pid: process.pid,
      warehouseUrl: stack.warehouseUrl,
      warehouseDataDir: config.warehouseUrl ? null : path.join(stack.dataDir, 'warehouse'),
    },
  });
}

main().catch((e: unknown) => {
  send({ type: 'failed', error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  process.exit(1);
});
