import { DeleteStreamCommand, KinesisClient } from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { performance } from 'node:perf_hooks';
import { CaptureService, type CaptureConfig, type CaptureStats } from '../capture/capture-service';
import { CompressingSink } from '../capture/compressing-sink';
import { KinesisSink } from '../capture/kinesis-sink';
import { getSlot } from '../capture/slot';
import { MemoryStateStore, type CaptureState } from '../capture/state-store';
import type { Logger } from '../core/logger';
import { compareLsn, type Lsn } from '../core/lsn';
import { ensureStream } from '../local/kinesalite';
import { ownCpuSeconds, processCpuSeconds, walsenderCpuSeconds, type RunCpu } from './cpu';
import { startCpuProfile, type CpuProfile } from './cpu-profile';
import { withClient } from './workloads';

/** One kinesalite to capture into, with a client built the way capture/main.ts builds its own. */
export interface KinesisTarget {
  client: KinesisClient;
  shards: number;
  /** The kinesalite process, when it is not this one. */
  pid?: number;
}

export function kinesisTarget(endpoint: string, shards: number, pid?: number): KinesisTarget {
  const client = new KinesisClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    // kinesalite speaks HTTP/1.1 only.
    requestHandler: new NodeHttpHandler(),
    // The sink retries with backoff itself (as in capture/main.ts).
    maxAttempts: 1,
  });
  return { client, shards, pid };
}

/** The capture settings a bench run varies (`--flush-bytes`, `--linger-ms`, `--busy-linger-ms`). */
type CaptureSettingsUnderTest = Pick<CaptureConfig, 'flushBytes' | 'lingerMs' | 'busyLingerMs'>;

export interface CaptureRun {
  seconds: number;
  stats: CaptureStats;
  cpu: RunCpu;
  profile?: CpuProfile;
}

/** CPU counters at the start of a run, read again at its end. */
function cpuMeter(kinesis: KinesisTarget): (walsender: number | null) => RunCpu {
  const bench = ownCpuSeconds();
  const kinesalite = kinesis.pid === undefined ? null : processCpuSeconds(kinesis.pid);
  return (walsender) => {
    const kinesaliteNow = kinesis.pid === undefined ? null : processCpuSeconds(kinesis.pid);
    return {
      walsender,
      bench: ownCpuSeconds() - bench,
      kinesalite: kinesalite === null || kinesaliteNow === null ? null : kinesaliteNow - kinesalite,
    };
  };
}

/** How often the bench looks at capture's progress: small against runs of seconds. */
const POLL_MS = 2;

async function until(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/**
 * Runs `body` with a fresh stream, then deletes it, so kinesalite's memory (or disk) holds one
 * run's records at a time.
 */
async function withStream<T>(kinesis: KinesisTarget, name: string, body: () => Promise<T>): Promise<T> {
  await ensureStream(kinesis.client, name, kinesis.shards);
  try {
    return await body();
  } finally {
    await kinesis.client.send(new DeleteStreamCommand({ StreamName: name }));
  }
}

/**
 * Starts the service and returns a check that throws once it has ended (failed, or stopped early),
 * plus the drain that stops it; the bench polls the check while it waits for progress.
 */
function start(service: CaptureService): { alive: () => void; stop: () => Promise<void> } {
  let ended: { error: unknown } | null = null;
  const running = service.run().then(
    () => {
      ended = { error: new Error('capture stopped before the workload was delivered') };
    },
    (error: unknown) => {
      ended = { error };
    },
  );
  return {
    alive: () => {
      if (ended) throw ended.error;
    },
    stop: async () => {
      await service.stop();
      await running;
    },
  };
}

/**
 * Streaming capture from a slot created before the workload: timed from `run()` until the slot's
 * confirmed_flush_lsn reaches the workload's last commit, i.e. until every change is in Kinesis and
 * acknowledged. The state store says the snapshot is done, so capture streams straight away.
 */
export async function captureStream(options: {
  url: string;
  slot: string;
  publication: string;
  table: string;
  consistentPoint: Lsn;
  endLsn: Lsn;
  kinesis: KinesisTarget;
  logger: Logger;
  timeoutMs: number;
  profile: boolean;
  settings: CaptureSettingsUnderTest;
}): Promise<CaptureRun> {
  const { url, slot, kinesis, timeoutMs } = options;
  const streamName = `bench-${slot}`;
  const state: CaptureState = {
    slot,
    consistentPoint: options.consistentPoint,
    snapshotCompletedAt: new Date().toISOString(),
    snapshotRows: 0,
    epoch: 0,
  };
  const reached = (lsn: Lsn | null) => lsn !== null && compareLsn(lsn, options.endLsn) >= 0;
  return withStream(kinesis, streamName, () =>
    withClient(url, async (control) => {
      const service = new CaptureService(
        {
          sourceUrl: url,
          tables: [options.table],
          slot,
          publication: options.publication,
          ...options.settings,
        },
        {
          // As capture/main.ts builds it (records gzip by default).
          sink: new CompressingSink(
            new KinesisSink({ client: kinesis.client, streamName, logger: options.logger }),
          ),
          state: new MemoryStateStore(state),
          logger: options.logger,
        },
      );
      const stopProfile = options.profile ? await startCpuProfile() : null;
      const meter = cpuMeter(kinesis);
      const startedAt = performance.now();
      const capture = start(service);
      try {
        // Capture's own view first (free to poll), then the server's, which is what counts.
        await until(
          'capture to confirm the workload',
          () => (capture.alive(), reached(service.stats.confirmedLsn)),
          timeoutMs,
        );
        await until(
          "the slot's confirmed_flush_lsn to reach the workload's end",
          async () => (capture.alive(), reached((await getSlot(control, slot))?.confirmedFlushLsn ?? null)),
          timeoutMs,
        );
        const seconds = (performance.now() - startedAt) / 1000;
        const cpu = meter(await walsenderCpuSeconds(control, slot));
        // After the CPU reading, which would otherwise count the profiler's own work.
        const profile = stopProfile ? await stopProfile() : undefined;
        return { seconds, stats: { ...service.stats }, cpu, profile };
      } finally {
        await capture.stop();
      }
    }),
  );
}

/**
 * A state store that notes when the snapshot was recorded complete and stops capture right there,
 * before it sets up streaming: nothing is written during the bench, and a stop() that lands while
 * streaming is being set up (after the snapshot, before the replication stream exists) is not
 * drained by CaptureService, so the bench must not stop it in that window.
 */
class TimedStateStore extends MemoryStateStore {
  savedAt: number | null = null;
  constructor(private readonly onSaved: () => void) {
    super();
  }
  override async save(state: CaptureState): Promise<void> {
    await super.save(state);
    this.savedAt = performance.now();
    this.onSaved();
  }
}

/**
 * Capture's initial snapshot on a fresh slot: timed from `run()` until the snapshot is recorded
 * complete, which capture does only after the sink accepted every row. Includes creating the slot
 * with its exported snapshot, as a real first start does. The rows are read by an ordinary backend,
 * not a walsender, so no walsender CPU is reported.
 */
export async function captureSnapshot(options: {
  url: string;
  slot: string;
  publication: string;
  tables: readonly string[];
  kinesis: KinesisTarget;
  logger: Logger;
  timeoutMs: number;
  profile: boolean;
  settings: CaptureSettingsUnderTest;
}): Promise<CaptureRun> {
  const { url, slot, kinesis } = options;
  const streamName = `bench-${slot}`;
  return withStream(kinesis, streamName, async () => {
    const state = new TimedStateStore(() => void service.stop());
    const service: CaptureService = new CaptureService(
      { sourceUrl: url, tables: options.tables, slot, publication: options.publication, ...options.settings },
      {
        // As capture/main.ts builds it (records gzip by default).
        sink: new CompressingSink(
          new KinesisSink({ client: kinesis.client, streamName, logger: options.logger }),
        ),
        state,
        logger: options.logger,
      },
    );
    const stopProfile = options.profile ? await startCpuProfile() : null;
    const meter = cpuMeter(kinesis);
    const startedAt = performance.now();
    const capture = start(service);
    try {
      await until(
        'the snapshot to complete',
        () => state.savedAt !== null || (capture.alive(), false),
        options.timeoutMs,
      );
      const cpu = meter(null);
      const profile = stopProfile ? await stopProfile() : undefined;
      return { seconds: (state.savedAt! - startedAt) / 1000, stats: { ...service.stats }, cpu, profile };
    } finally {
      await capture.stop();
    }
  });
}
