/* eslint-disable security/detect-non-literal-fs-filename -- files directly under the operator's --data-dir */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Client, Pool, type PoolClient } from 'pg';
import { INGESTION_ROOT } from '../core/csv-codec';
import type { Logger } from '../core/logger';
import { redactUrl } from '../core/logger';
import { createHandler as createFirehoseTransform } from '../processors/firehose-transform/create-handler';
import { createLoadHandler } from '../processors/load/create-handler';
import { migrateWarehouse } from '../processors/load/migrate';
import { metricsFor } from '../processors/shared/metrics';
import { createTransformHandler } from '../processors/transform/create-handler';
import { MIXED_INGESTION_PREFIX } from '../core/mixed-csv';
import { inspectTotesys, installTotesys } from '../totesys';
import { DeliveryStream } from './delivery-stream';
import { startEmbeddedCluster, type EmbeddedCluster } from './embedded-postgres';
import { ensureStream, kinesisClientFor, startKinesalite, type LocalKinesis } from './kinesalite';
import { startKinesaliteThread } from './kinesalite-thread';
import { removeRuntimeInfo, writeRuntimeInfo } from './runtime-info';
import { reconcile } from '../processors/reconcile/reconcile';
import { loadQueueDir } from './load-queue';
import { localReconcileDeps, startScheduledReconcile } from './local-reconcile';
import { startQueuedS3Trigger, type QueuedS3Trigger } from './queue-event-source';
import { S3Trigger } from './s3-trigger';
import { startSinkThrottle } from './sink-throttle';
import { s3ClientFor, startS3rver } from './s3rver';
import { Supervisor } from './supervisor';
import type { FirehoseTransform } from '../processors/firehose-transform/firehose-types';
import type {
  FirehoseTransformStageOptions,
  LoadStageOptions,
  TransformStageOptions,
} from './stage-factories';
import { StageWorkers } from './stage-workers';

/**
 * `totes up`: the whole pipeline on this machine, every box a real process or protocol peer.
 * State that must survive a restart lives under `dataDir`:
 *
 *   source/             embedded Postgres holding totesys (unless --source-url)
 *   source-password     its superuser password, generated once (mode 0600)
 *   kinesis/            kinesalite's LevelDB: the stream survives restarts and kill -9
 *   capture-state.json  whether capture's initial snapshot completed
 *   s3/                 s3rver's buckets: ingestion (CSV) and processed (Parquet)
 *   delivery-stream/    the local Firehose's per-shard checkpoint
 *   triggers/           S3 → Lambda trigger watermarks and dead-letter files (transform)
 *   queues/load/        S3 → SQS → load: the queue's messages and notification watermark
 *   queues/load.dead-letter.jsonl  its dead letters (a reconciler runs every 15 minutes too)
 *   warehouse/          embedded Postgres holding the warehouse (unless --warehouse-url)
 *   runtime.json        endpoints of the running stack, for `totes replay` and friends
 *
 * Capture runs as a child process (as it runs as its own task in AWS), restarted if it dies. The
 * delivery stream runs in this process; the three Lambda functions it and the triggers invoke (the
 * Firehose record transformation, transform, load) run on worker threads of their own
 * (local/stage-workers.ts), invoked the way AWS invokes them, so they and the local AWS stand-ins
 * (kinesalite, s3rver, the delivery stream) use both cores instead of one event loop. kinesalite
 * has a thread of its own too (local/kinesalite-thread.ts): the main loop keeps s3rver, which every
 * stage waits on, the delivery stream and the triggers.
 *
 * Freshness mode (`freshness`), as infra/config.ts `totes:freshness` in AWS: `fast` (the default
 * here) is Firehose without dynamic partitioning — mixed-table objects under `totesys/_mixed/`,
 * which transform turns into each table's Parquet (core/mixed-csv.ts) — buffered for
 * `bufferIntervalMs` (250 ms: AWS fast mode buffers nothing); `default` is dynamic partitioning, one object per table and
 * layout, buffered 1 s here (60 s in AWS).
 */
export interface LocalStackOptions {
  dataDir: string;
  /** Capture from this Postgres instead of the embedded one (it needs wal_level=logical). */
  sourceUrl?: string;
  /** Port of the embedded source; 0 picks a free one. */
  sourcePort?: number;
  /** Seed scale for a fresh embedded source. */
  scale?: number;
  /** Load into this Postgres instead of an embedded warehouse. */
  warehouseUrl?: string;
  /** Port of the embedded warehouse; 0 picks a free one. */
  warehousePort?: number;
  streamName?: string;
  shards?: number;
  /** `fast` (default): mixed-table objects, no dynamic partitioning; `default`: per-table objects. */
  freshness?: LocalFreshnessMode;
  /** The local Firehose's buffering interval (AWS: 0–900 s); default 250 ms fast, 1 s default mode. */
  bufferIntervalMs?: number;
  /**
   * Where transform and load run: `workers` (default), a worker thread per stage, and kinesalite on
   * a thread of its own; `in-process`, all on this process' event loop, as before (for profiling
   * one thread, or a platform without workers).
   */
  stages?: 'workers' | 'in-process';
  /** On stop, how long running transform and load invocations may finish before they are abandoned (default 30 s). */
  stopGraceMs?: number;
  heartbeatIntervalMs?: number;
  /**
   * How often capture logs `capture.stats` and the stack logs `local.stats` (the delivery stream's
   * position and the transform and load queues). Default 10 s, capture's own default.
   */
  statsIntervalMs?: number;
  logger: Logger;
  /** Extra environment for the capture process (TOTES_TABLES, TOTES_SLOT, …: see capture/config.ts). */
  captureEnv?: Record<string, string>;
  /** Each log line of the capture process (JSON). */
  onCaptureOutput?: (line: string, capture: Supervisor) => void;
  /**
   * A part of the stack died that it cannot restart (kinesalite's thread): it is logged as an error;
   * the caller stops the stack (`totes up` exits 1; the next start carries on from the data dir).
   */
  onFatal?: (error: Error) => void;
  /**
   * Fault injection (`npm run chaos`): capture reaches Kinesis through a proxy that delays each
   * request by the milliseconds this file holds (local/sink-throttle.ts).
   */
  sinkDelayFile?: string;
}

export interface LocalStack {
  sourceUrl: string;
  warehouseUrl: string;
  kinesisEndpoint: string;
  s3Endpoint: string;
  streamName: string;
  dataDir: string;
  s3Dir: string;
  capture: Supervisor;
  delivery: DeliveryStream;
  transform: S3Trigger;
  load: QueuedS3Trigger;
  freshness: LocalFreshnessMode;
  /** The stage workers, and kinesalite's thread (none with `stages: 'in-process'`). */
  workers: {
    firehoseTransform: StageWorkers;
    transform: StageWorkers;
    load: StageWorkers;
    kinesis: StageWorkers;
  } | null;
  stop(): Promise<void>;
}

export const LOCAL_FRESHNESS_MODES = ['fast', 'default'] as const;
export type LocalFreshnessMode = (typeof LOCAL_FRESHNESS_MODES)[number];

/**
 * The local Firehose's buffering interval per mode. AWS fast mode has zero buffering; a quarter
 * second here batches a busy second into a few objects while an idle change waits at most 250 ms
 * (bench/README.md, `bench:pipeline`, recommendation 4). With dynamic partitioning AWS needs at
 * least 60 s; locally 1 s. https://docs.aws.amazon.com/firehose/latest/dev/buffering-hints.html
 */
export const LOCAL_BUFFER_INTERVAL_MS: Record<LocalFreshnessMode, number> = { fast: 250, default: 1_000 };

const DEFAULT_STOP_GRACE_MS = 30_000;

export const INGESTION_BUCKET = 'totes-ingestion';
export const PROCESSED_BUCKET = 'totes-processed';

export const DEFAULT_STREAM_NAME = 'totes-changes';
// The CLI that starts capture: beside the sources (local/), or two levels up from a build (dist/local/).
export const CLI = [
  path.resolve(__dirname, '..', 'bin', 'totes.js'),
  path.resolve(__dirname, '..', '..', 'bin', 'totes.js'),
].find((file) => fs.existsSync(file))!;

function readOrCreateSecret(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    const secret = crypto.randomBytes(18).toString('base64url');
    fs.writeFileSync(file, `${secret}\n`, { mode: 0o600 });
    return secret;
  }
}

async function embeddedDatabase(
  dataDir: string,
  name: string,
  port: number,
  stops: (() => Promise<void>)[],
  logger: Logger,
): Promise<string> {
  const cluster: EmbeddedCluster = await startEmbeddedCluster({
    dataDir: path.join(dataDir, name),
    port,
    password: readOrCreateSecret(path.join(dataDir, `${name}-password`)),
    onNotice: (message) => logger.info(message, { cluster: name, notice: true }),
  });
  stops.push(() => cluster.stop());
  const database = name === 'source' ? 'totesys' : 'warehouse';
  await ensureDatabase(cluster.url, database);
  return cluster.urlFor(database);
}

async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const { rows } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (rows.length === 0) await admin.query(`CREATE DATABASE "${database.replace(/"/g, '""')}"`);
  } finally {
    await admin.end();
  }
}

/** Seeds the source when it has no totesys tables yet; an existing database is left as it is. */
async function seedIfEmpty(url: string, scale: number, logger: Logger): Promise<void> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    const found = await inspectTotesys(client);
    if (found.tables.length > 0) return;
    logger.info('seeding the source with totesys', { scale });
    let last = 0;
    const counts = await installTotesys(client, {
      scale,
      onProgress: ({ rowsDone, rowsTotal }) => {
        if (Date.now() - last > 2000) {
          last = Date.now();
          logger.info('seeding', { rowsDone, rowsTotal });
        }
      },
    });
    logger.info('source seeded', { rows: Object.values(counts).reduce((a, b) => a + b, 0) });
  } finally {
    await client.end();
  }
}

/**
 * Stage workers started at once: once every start has settled, all of them, or, if one failed, its
 * error, the others stopped.
 */
async function settledOrStopped(
  starts: readonly Promise<StageWorkers | undefined>[],
): Promise<(StageWorkers | undefined)[]> {
  const results = await Promise.allSettled(starts);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  const started = results.flatMap((r) => (r.status === 'fulfilled' && r.value ? [r.value] : []));
  if (!failed) return results.map((r) => (r as PromiseFulfilledResult<StageWorkers | undefined>).value);
  await Promise.all(started.map((w) => w.stop()));
  throw failed.reason;
}

/** Thrown by a part of the start that did not begin because another part had failed. */
class StartAbandoned extends Error {
  override name = 'StartAbandoned';
}

/**
 * The stack starts in parts, each as soon as what it needs is up, so that one part's waiting
 * (initdb, a server's start, a worker thread loading its modules) overlaps another's:
 *
 *   source ──────────────────────┐
 *   kinesalite ──────────────────┤
 *   s3rver ─┬────────────────────┴─ transform trigger, delivery stream ─ capture
 *           ├─ transform and Firehose workers (their first invocations wait for them)
 *           ├─ load workers ──────────────┐
 *   warehouse cluster ─┴─ migration ───────┴─ pool, load trigger, reconciler
 *
 * Capture needs the source, Kinesis, S3 (oversized changes) and the delivery stream's starting
 * position; the stage workers take a second or two of CPU each to load their modules, which
 * overlaps capture's own start (the first records reach the delivery stream after it). Only the
 * load needs the warehouse: its workers start once the warehouse's address is known, and its
 * trigger, which invokes them, once the warehouse is migrated (the trigger then catches up on
 * whatever transform wrote meanwhile, as after a restart: local/s3-trigger.ts). A part that fails
 * stops the others from starting anything more; once every part has settled, everything started is
 * stopped (each part pushes its stop after those of what it needs, and stops run in reverse) and
 * the first failure is thrown.
 */
export async function startLocalStack(options: LocalStackOptions): Promise<LocalStack> {
  const { logger } = options;
  const dataDir = path.resolve(options.dataDir);
  fs.mkdirSync(dataDir, { recursive: true });
  const streamName = options.streamName ?? DEFAULT_STREAM_NAME;
  const freshness = options.freshness ?? 'fast';
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.splice(0).reverse())
      await stop().catch((e) => logger.warn('stop failed', { err: e }));
  };
  let failure: { error: unknown } | undefined;
  /** Starts a part; a failure is remembered, and the parts still starting stop at their next step. */
  const part = <T>(start: () => Promise<T>): Promise<T> => {
    const started = start();
    started.catch((error: unknown) => {
      if (!failure && !(error instanceof StartAbandoned)) failure = { error };
    });
    return started;
  };
  /** Between a part's steps: nothing more is started once another part has failed. */
  const proceed = () => {
    if (failure) throw new StartAbandoned('another part of the stack failed to start');
  };

  const sourcePart = part(async () => {
    let url = options.sourceUrl;
    if (!url) {
      url = await embeddedDatabase(dataDir, 'source', options.sourcePort ?? 0, stops, logger);
      proceed();
      await seedIfEmpty(url, options.scale ?? 1, logger);
    }
    logger.info('source ready', { source: redactUrl(url) });
    return url;
  });

  // The warehouse's address first (the load's workers need it to start), then its migration.
  const warehouseUrlPart = part(
    async () =>
      options.warehouseUrl ??
      (await embeddedDatabase(dataDir, 'warehouse', options.warehousePort ?? 0, stops, logger)),
  );
  const warehousePart = part(async () => {
    const url = await warehouseUrlPart;
    proceed();
    const migrator = new Client({ connectionString: url });
    await migrator.connect();
    await migrateWarehouse(migrator).finally(() => migrator.end());
    logger.info('warehouse ready', { warehouse: redactUrl(url) });
    return url;
  });

  const kinesisPart = part(async () => {
    // On a thread of its own, beside the stage workers: off the loop that serves s3rver to every stage.
    const kinesisOptions = { dataDir: path.join(dataDir, 'kinesis') };
    const kinesis: LocalKinesis & { workers?: StageWorkers } =
      options.stages === 'in-process'
        ? await startKinesalite(kinesisOptions)
        : await startKinesaliteThread(kinesisOptions, logger, options.onFatal);
    stops.push(() => kinesis.stop());
    proceed();
    const client = kinesisClientFor(kinesis.endpoint);
    await ensureStream(client, streamName, options.shards ?? 2).finally(() => client.destroy());
    logger.info('kinesis ready', { endpoint: kinesis.endpoint, stream: streamName });
    let captureEndpoint = kinesis.endpoint;
    if (options.sinkDelayFile) {
      proceed();
      const throttle = await startSinkThrottle({
        target: kinesis.endpoint,
        controlFile: options.sinkDelayFile,
      });
      stops.push(() => throttle.stop());
      captureEndpoint = throttle.endpoint;
      logger.warn('capture reaches Kinesis through a fault-injection proxy', {
        delayFile: options.sinkDelayFile,
      });
    }
    return { kinesis, captureEndpoint };
  });

  const s3Dir = path.join(dataDir, 's3');
  const s3Part = part(async () => {
    const s3 = await startS3rver({ dataDir: s3Dir, buckets: [INGESTION_BUCKET, PROCESSED_BUCKET], logger });
    stops.push(() => s3.stop());
    const s3Client = s3ClientFor(s3.endpoint);
    stops.push(async () => s3Client.destroy());
    return { s3, s3Client };
  });

  // Lambda writes EMF metric lines to stdout for CloudWatch; locally they go into the log stream.
  const metricsTo = (stage: string) =>
    metricsFor({ stage, write: (line) => logger.debug('metrics', { emf: JSON.parse(line) }) });
  const triggersDir = path.join(dataDir, 'triggers');
  const inProcess = options.stages === 'in-process';
  const graceMs = options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
  const concurrency = 2;
  /** Stops a trigger, abandoning its workers' invocations if they outlast the grace period. */
  const stopWithGrace =
    (stop: () => Promise<void>, workersOf: () => StageWorkers | undefined) => async () => {
      const workers = workersOf();
      const timer = workers && setTimeout(() => void workers.abandon(), graceMs);
      try {
        await stop();
      } finally {
        clearTimeout(timer);
      }
    };
  /** A stage's workers (each loads its handler's modules: a second or two); none in-process. */
  const startWorkers = async (start: () => Promise<StageWorkers>): Promise<StageWorkers | undefined> => {
    if (inProcess) return undefined;
    proceed();
    return start();
  };

  // Transform's and the record transformation's workers: their triggers (and capture) start
  // without waiting for them, and the first invocations wait until they are up.
  const stageWorkersPart = part(async () => {
    const { s3 } = await s3Part;
    return settledOrStopped([
      startWorkers(() =>
        StageWorkers.start({
          stage: 'transform',
          factory: 'transformStage',
          options: {
            s3Endpoint: s3.endpoint,
            processedBucket: PROCESSED_BUCKET,
          } satisfies TransformStageOptions,
          logger,
        }),
      ),
      startWorkers(() =>
        StageWorkers.start({
          stage: 'firehose-transform',
          factory: 'firehoseTransformStage',
          options: {
            s3Endpoint: s3.endpoint,
            bucket: INGESTION_BUCKET,
            mixedObjects: freshness === 'fast',
          } satisfies FirehoseTransformStageOptions,
          logger,
        }),
      ),
    ]);
  });

  // The load: its workers, its pool and its trigger once the warehouse is migrated.
  // The load's workers load their modules while the warehouse is migrated (their pool connects
  // at the first invocation); its trigger, which invokes them, starts once the warehouse is migrated.
  const loadWorkersPart = part(async () => {
    const [warehouseUrl, { s3 }] = await Promise.all([warehouseUrlPart, s3Part]);
    const loadWorkers = await startWorkers(() =>
      StageWorkers.start({
        stage: 'load',
        factory: 'loadStage',
        options: {
          s3Endpoint: s3.endpoint,
          warehouseUrl,
          connections: concurrency,
        } satisfies LoadStageOptions,
        logger,
      }),
    );
    if (loadWorkers) stops.push(() => loadWorkers.stop());
    return loadWorkers;
  });
  const loadPart = part(async () => {
    const [warehouseUrl, { s3, s3Client }, loadWorkers] = await Promise.all([
      warehousePart,
      s3Part,
      loadWorkersPart,
    ]);
    proceed();
    const pool = new Pool({ connectionString: warehouseUrl, max: 4 });
    // An idle pooled connection the warehouse ends (restart, failover, idle timeout) is reported as an
    // 'error' event, which without a listener kills `totes up`. The pool drops that client; the next
    // load connects again, and a load that failed mid-way is retried from the queue.
    pool.on('error', (err) => logger.warn('an idle warehouse connection ended; it is replaced', { err }));
    // pool.end() resolves once its clients are asked to end, not once they have: wait for each
    // connection to close, or the warehouse, stopped next, ends them first (a warning on every stop).
    const connections = new Set<PoolClient>();
    pool.on('connect', (c) => {
      connections.add(c);
      c.once('end', () => connections.delete(c));
    });
    stops.push(async () => {
      const closed = [...connections].map((c) => new Promise((resolve) => c.once('end', resolve)));
      await pool.end();
      await Promise.all(closed);
    });
    // S3 → queue → load, as in AWS: a warehouse outage leaves the objects waiting in the queue.
    const load = await startQueuedS3Trigger({
      name: 'load',
      s3,
      client: s3Client,
      bucket: PROCESSED_BUCKET,
      suffix: '.parquet',
      handler:
        loadWorkers?.handler ??
        createLoadHandler({
          s3: s3Client,
          warehouse: pool,
          logger: logger.child({ stage: 'load' }),
          metrics: metricsTo('load'),
        }),
      concurrency,
      dir: loadQueueDir(dataDir),
      logger,
    });
    stops.push(
      stopWithGrace(
        () => load.stop(),
        () => loadWorkers,
      ),
    );
    // The reconciler on a schedule, as EventBridge runs it in AWS: whatever a stage never finished
    // (an outage longer than the load queue's receives, a lost notification) is sent again.
    const reconcileDeps = localReconcileDeps({
      dataDir,
      s3: s3Client,
      ingestionBucket: INGESTION_BUCKET,
      processedBucket: PROCESSED_BUCKET,
      warehouse: pool,
      logger: logger.child({ stage: 'reconcile' }),
    });
    const reconciler = startScheduledReconcile(() => reconcile(reconcileDeps), {
      intervalMs: 15 * 60_000,
      logger,
    });
    stops.push(() => reconciler.stop());
    return { warehouseUrl, load, loadWorkers };
  });

  // S3 → transform, Kinesis → the local Firehose, then capture.
  let transformWorkers: StageWorkers | undefined;
  let firehoseWorkers: StageWorkers | undefined;
  void stageWorkersPart.then(
    ([t, f]) => ((transformWorkers = t), (firehoseWorkers = f)),
    () => undefined,
  );
  const capturePart = part(async () => {
    // Pushed first, so run after the stops of the triggers that invoke them (stops run in reverse).
    stops.push(async () => {
      const workers = await stageWorkersPart.catch(() => []);
      for (const w of workers) await w?.stop();
    });
    const [sourceUrl, { kinesis, captureEndpoint }, { s3, s3Client }] = await Promise.all([
      sourcePart,
      kinesisPart,
      s3Part,
    ]);
    proceed();
    const transform = new S3Trigger({
      name: 'transform',
      s3,
      client: s3Client,
      bucket: INGESTION_BUCKET,
      prefix: `${INGESTION_ROOT}/`,
      handler: !inProcess
        ? (event) => stageWorkersPart.then(([t]) => t!.handler(event))
        : createTransformHandler({
            s3: s3Client,
            processedBucket: PROCESSED_BUCKET,
            logger: logger.child({ stage: 'transform' }),
            metrics: metricsTo('transform'),
          }),
      concurrency,
      stateDir: triggersDir,
      logger,
    });
    await transform.start();
    stops.push(
      stopWithGrace(
        () => transform.stop(),
        () => transformWorkers,
      ),
    );
    proceed();

    const deliveryKinesis = kinesisClientFor(kinesis.endpoint);
    stops.push(async () => deliveryKinesis.destroy());
    const delivery = new DeliveryStream({
      kinesis: deliveryKinesis,
      streamName,
      s3: s3Client,
      bucket: INGESTION_BUCKET,
      // Firehose invokes the record transformation synchronously; the delivery stream awaits it.
      transform: !inProcess
        ? (event) => stageWorkersPart.then(([, f]) => f!.handler(event) as ReturnType<FirehoseTransform>)
        : createFirehoseTransform({
            s3: s3Client,
            bucket: INGESTION_BUCKET,
            logger: logger.child({ stage: 'firehose-transform' }),
            mixedObjects: freshness === 'fast',
          }),
      checkpointDir: path.join(dataDir, 'delivery-stream'),
      // Fast mode: no dynamic partitioning, so no table in the key (transform splits the objects by layout).
      ...(freshness === 'fast' ? { prefix: MIXED_INGESTION_PREFIX } : {}),
      bufferingHints: { intervalMs: options.bufferIntervalMs ?? LOCAL_BUFFER_INTERVAL_MS[freshness] },
      logger: logger.child({ stage: 'delivery-stream' }),
    });
    const delivering = delivery.run().catch((e) => logger.error('delivery stream failed', { err: e }));
    stops.push(async () => {
      await delivery.stop();
      await delivering;
    });

    // Like Firehose, the delivery stream reads from where the stream is when it first starts: capture
    // (the initial snapshot above all) must not write before that position is fixed, or it is lost.
    await delivery.ready();
    proceed();
    const capture = new Supervisor({
      name: 'capture',
      command: process.execPath,
      args: [CLI, 'capture'],
      env: {
        ...process.env,
        TOTES_SOURCE_URL: sourceUrl,
        TOTES_STREAM_NAME: streamName,
        TOTES_KINESIS_ENDPOINT: captureEndpoint,
        // A change too big for one record is stored here, its pointer sent through the stream.
        TOTES_OVERSIZED_BUCKET: INGESTION_BUCKET,
        TOTES_S3_ENDPOINT: s3.endpoint,
        TOTES_STATE_FILE: path.join(dataDir, 'capture-state.json'),
        TOTES_HEARTBEAT_INTERVAL_MS: String(options.heartbeatIntervalMs ?? 5000),
        ...(options.statsIntervalMs ? { TOTES_STATS_INTERVAL_MS: String(options.statsIntervalMs) } : {}),
        ...options.captureEnv,
      },
      logger,
      // With the supervisor: capture may be reading before startLocalStack has returned.
      onOutput: (line) => options.onCaptureOutput?.(line, capture),
    });
    capture.start();
    stops.push(() => capture.stop());
    logger.info('capture started', { pid: capture.pid });
    return { sourceUrl, kinesis, s3, transform, delivery, capture };
  });

  await Promise.allSettled([
    sourcePart,
    warehouseUrlPart,
    warehousePart,
    loadWorkersPart,
    kinesisPart,
    s3Part,
    stageWorkersPart,
    loadPart,
    capturePart,
  ]);
  try {
    if (failure) throw failure.error;
    const { sourceUrl, kinesis, s3, transform, delivery, capture } = await capturePart;
    const { warehouseUrl, load, loadWorkers } = await loadPart;
    logger.info('stages ready', {
      freshness,
      stages: inProcess ? 'in-process' : 'workers',
      threads: {
        firehoseTransform: firehoseWorkers?.threadIds ?? [],
        transform: transformWorkers?.threadIds ?? [],
        load: loadWorkers?.threadIds ?? [],
        kinesis: kinesis.workers?.threadIds ?? [],
      },
    });

    // The stages that run in this process, logged beside capture.stats: what the terminal view
    // (core/pipeline-status.ts) shows as lag per stage, and what a log query can read back.
    const statsTimer = setInterval(() => {
      const d = delivery.metrics();
      logger.info('local.stats', {
        delivery: {
          recordsIn: d.recordsIn,
          objectsOut: d.objectsOut,
          bufferedRecords: d.bufferedRecords,
          oldestBufferedAgeMs: d.oldestBufferedAgeMs,
          millisBehindLatest: d.millisBehindLatest,
        },
        transform: { ...transform.stats },
        load: { ...load.stats },
      });
    }, options.statsIntervalMs ?? 10_000);
    statsTimer.unref();
    stops.push(async () => clearInterval(statsTimer));

    await writeRuntimeInfo(dataDir, {
      kinesisEndpoint: kinesis.endpoint,
      streamName,
      s3Endpoint: s3.endpoint,
      ingestionBucket: INGESTION_BUCKET,
      processedBucket: PROCESSED_BUCKET,
      pid: process.pid,
      startedAt: new Date().toISOString(),
    });
    stops.push(() => removeRuntimeInfo(dataDir));

    return {
      sourceUrl,
      warehouseUrl,
      kinesisEndpoint: kinesis.endpoint,
      s3Endpoint: s3.endpoint,
      streamName,
      dataDir,
      s3Dir,
      capture,
      delivery,
      transform,
      load,
      freshness,
      workers:
        transformWorkers && loadWorkers && firehoseWorkers && kinesis.workers
          ? {
              firehoseTransform: firehoseWorkers,
              transform: transformWorkers,
              load: loadWorkers,
              kinesis: kinesis.workers,
            }
          : null,
      stop: stopAll,
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
}
