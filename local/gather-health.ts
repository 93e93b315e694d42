/* eslint-disable security/detect-non-literal-fs-filename -- files under the operator's --data-dir (runtime.json, checkpoints, watermarks, dead letters) and its embedded clusters */
import { GetRecordsCommand, GetShardIteratorCommand, ListShardsCommand } from '@aws-sdk/client-kinesis';
import type { S3Client } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import path from 'node:path';
import { Client, type ClientBase, type ClientConfig } from 'pg';
import { getSlot } from '../capture/slot';
import {
  assessHealth,
  type HealthFacts,
  type HealthReport,
  type HealthThresholds,
  type HeartbeatFacts,
  type LocalFacts,
  type SourceFacts,
  type StageQueueFacts,
  type Unreachable,
  type WarehouseFacts,
} from '../core/pipeline-health';
import { loadQuarantineKeyFor, LOAD_QUARANTINE_ROOT } from '../processors/load/create-handler';
import { outstandingProblems } from '../processors/load/outstanding-problems';
import { INGESTION_ROOT } from '../core/csv-codec';
import { CHECKPOINT_FILE, DeliveryCheckpointSchema } from './delivery-stream-checkpoint';
import { kinesisClientFor } from './kinesalite';
import { readRuntimeInfo, type RuntimeInfo } from './runtime-info';
import { listObjectsSince, s3ClientFor, type ListedObject } from './s3rver';

/**
 * The gatherers of the health model (core/pipeline-health.ts): each looks at one place and returns
 * facts, or says it could not look. Nothing here judges; assessHealth does.
 *
 * - warehouse: `rpt_pipeline_tables` / `rpt_pipeline_loads` (readable by the reporting role);
 * - source: the replication slot (pg_replication_slots, pg_stat_replication);
 * - local: what `totes up` keeps under its data directory (runtime.json, capture-state.json,
 *   the delivery stream's checkpoint, the triggers' watermarks and dead-letter files) and what its
 *   S3 and Kinesis hold.
 */

/** The capture slot's name unless TOTES_SLOT says otherwise (capture/config.ts reads the same variable). */
export const DEFAULT_SLOT_NAME = 'totes_slot';

/** Records read from each shard to count the stream backlog: past this, "at least". */
const STREAM_BACKLOG_READ_LIMIT = 100;

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e)) || String(e);
const iso = (v: unknown): string | null =>
  v === null || v === undefined ? null : new Date(v as string).toISOString();

export async function gatherWarehouseFacts(
  client: Pick<ClientBase, 'query'>,
): Promise<{ observedAt: string; facts: WarehouseFacts }> {
  const tables = await client.query(
    `SELECT "source_table", "warehouse_table", "newest_commit_ts", "last_loaded_at"
       FROM "rpt_pipeline_tables"`,
  );
  const loads = await client.query(
    `SELECT "warehouse_table", "objects_last_minute"::float8 AS om, "rows_last_minute"::float8 AS rm,
            "objects_last_hour"::float8 AS oh, "rows_last_hour"::float8 AS rh, "last_loaded_at"
       FROM "rpt_pipeline_loads"`,
  );
  const heartbeats = await gatherHeartbeats(client);
  const observed = (await client.query('SELECT now() AS "now"')).rows[0].now;
  return {
    observedAt: iso(observed)!,
    facts: {
      reachable: true,
      tables: tables.rows.map((r) => ({
        sourceTable: r.source_table,
        warehouseTable: r.warehouse_table,
        newestCommitTs: iso(r.newest_commit_ts),
        lastLoadedAt: iso(r.last_loaded_at)!,
      })),
      loads: loads.rows.map((r) => ({
        warehouseTable: r.warehouse_table,
        objectsLastMinute: r.om,
        rowsLastMinute: r.rm,
        objectsLastHour: r.oh,
        rowsLastHour: r.rh,
        lastLoadedAt: iso(r.last_loaded_at)!,
      })),
      heartbeats,
    },
  };
}

/** rpt_pipeline_heartbeat (migration 005); null on a warehouse migrated before it. */
async function gatherHeartbeats(client: Pick<ClientBase, 'query'>): Promise<HeartbeatFacts[] | null> {
  try {
    const { rows } = await client.query(
      `SELECT "slot_name", "newest_commit_ts", "last_loaded_at" FROM "rpt_pipeline_heartbeat"`,
    );
    return rows.map((r) => ({
      slotName: r.slot_name,
      newestCommitTs: iso(r.newest_commit_ts),
      lastLoadedAt: iso(r.last_loaded_at)!,
    }));
  } catch (e) {
    // 42P01 undefined_table: https://www.postgresql.org/docs/current/errcodes-appendix.html
    if ((e as { code?: unknown })?.code === '42P01') return null;
    throw e;
  }
}

export async function gatherSourceFacts(client: Client, slotName = DEFAULT_SLOT_NAME): Promise<SourceFacts> {
  // Slot names are cluster-wide: one of this name in another database is not capture's.
  const { rows: owner } = await client.query(
    'SELECT database = current_database() AS ours FROM pg_replication_slots WHERE slot_name = $1',
    [slotName],
  );
  const slot = owner[0]?.ours ? await getSlot(client, slotName) : null;
  if (!slot) return { reachable: true, slotName, slot: null };
  let lagSeconds: number | null = null;
  if (slot.activePid !== null) {
    // flush_lag: time between a WAL write and the reader confirming it; NULL once caught up.
    // https://www.postgresql.org/docs/current/monitoring-stats.html#MONITORING-PG-STAT-REPLICATION-VIEW
    const { rows } = await client.query(
      'SELECT extract(epoch FROM "flush_lag")::float8 AS lag FROM pg_stat_replication WHERE pid = $1',
      [slot.activePid],
    );
    lagSeconds = rows[0]?.lag ?? null;
  }
  return {
    reachable: true,
    slotName,
    slot: {
      active: slot.active,
      walStatus: slot.walStatus,
      lagBytes: slot.lagBytes,
      retainedWalBytes: slot.retainedWalBytes,
      lagSeconds,
    },
  };
}

/**
 * URL of an embedded cluster `totes up` runs under dataDir (`source` or `warehouse`): its port is
 * the fourth line of postmaster.pid (https://www.postgresql.org/docs/current/server-start.html),
 * its password the file `totes up` generated. null when there is none.
 */
export function embeddedUrl(dataDir: string, name: 'source' | 'warehouse'): string | null {
  try {
    const pid = fs.readFileSync(path.join(dataDir, name, 'postmaster.pid'), 'utf8').split('\n');
    const port = Number(pid[3]);
    const password = fs.readFileSync(path.join(dataDir, `${name}-password`), 'utf8').trim();
    if (!Number.isInteger(port) || port <= 0) return null;
    const database = name === 'source' ? 'totesys' : 'warehouse';
    return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
  } catch {
    return null;
  }
}

function countLines(file: string): { count: number; last: string | null } {
  try {
    const lines = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
    return { count: lines.length, last: lines.at(-1) ?? null };
  } catch {
    return { count: 0, last: null };
  }
}

function readWatermark(file: string): Date {
  try {
    return new Date(JSON.parse(fs.readFileSync(file, 'utf8')).handledBefore);
  } catch {
    return new Date(0);
  }
}

const queueOf = (objects: readonly ListedObject[]): StageQueueFacts => ({
  waiting: objects.length,
  oldestWaitingAt: objects.length ? objects[0].lastModified.toISOString() : null,
});

async function streamBacklog(runtime: RuntimeInfo, dataDir: string): Promise<LocalFacts['stream']> {
  let positions: Record<string, string> = {};
  try {
    const text = fs.readFileSync(path.join(dataDir, 'delivery-stream', CHECKPOINT_FILE), 'utf8');
    positions = DeliveryCheckpointSchema.parse(JSON.parse(text)).shards;
  } catch {
    // No checkpoint yet: nothing was delivered, everything in the stream is backlog.
  }
  const kinesis = kinesisClientFor(runtime.kinesisEndpoint);
  try {
    const { Shards = [] } = await kinesis.send(new ListShardsCommand({ StreamName: runtime.streamName }));
    let backlog = 0;
    let capped = false;
    let oldest: number | null = null;
    for (const shard of Shards) {
      const after = positions[shard.ShardId!];
      const { ShardIterator } = await kinesis.send(
        new GetShardIteratorCommand({
          StreamName: runtime.streamName,
          ShardId: shard.ShardId!,
          ...(after
            ? { ShardIteratorType: 'AFTER_SEQUENCE_NUMBER', StartingSequenceNumber: after }
            : { ShardIteratorType: 'TRIM_HORIZON' }),
        }),
      );
      const { Records = [] } = await kinesis.send(
        new GetRecordsCommand({ ShardIterator, Limit: STREAM_BACKLOG_READ_LIMIT }),
      );
      backlog += Records.length;
      capped ||= Records.length >= STREAM_BACKLOG_READ_LIMIT;
      const first = Records[0]?.ApproximateArrivalTimestamp?.getTime();
      if (first !== undefined) oldest = Math.min(oldest ?? first, first);
    }
    return {
      backlogRecords: backlog,
      backlogCapped: capped,
      oldestArrivalAt: oldest === null ? null : new Date(oldest).toISOString(),
    };
  } finally {
    kinesis.destroy();
  }
}

export interface LocalGatherOptions {
  dataDir: string;
  /** To tell loaded objects from waiting ones (load_log); without it the load queue is unknown. */
  warehouse?: Pick<ClientBase, 'query'>;
  /** An S3 client for the stack's s3rver (default: one for runtime.json's endpoint). */
  s3?: Pick<S3Client, 'send'>;
}

/** What `totes up` on `dataDir` shows: files first (they are there even when it is stopped), then S3 and Kinesis. */
export async function gatherLocalFacts(options: LocalGatherOptions): Promise<LocalFacts> {
  const dataDir = path.resolve(options.dataDir);
  const triggers = path.join(dataDir, 'triggers');
  const transformDead = countLines(path.join(triggers, 'transform.dead-letter.jsonl'));
  const loadDead = countLines(path.join(triggers, 'load.dead-letter.jsonl'));
  let lastError: LocalFacts['lastError'] = null;
  for (const [stage, dead] of [
    ['transform', transformDead],
    ['load', loadDead],
  ] as const) {
    if (!dead.last) continue;
    try {
      const entry = JSON.parse(dead.last) as { at: string; error: string };
      if (!lastError || entry.at > lastError.at) lastError = { at: entry.at, stage, message: entry.error };
    } catch {
      // A torn last line (killed mid-write): the count still stands.
    }
  }
  let outstanding: LocalFacts['outstanding'] = null;
  try {
    const report = await outstandingProblems(dataDir, { limit: 0 });
    if (report.checked) {
      const count = (kind: string) =>
        report.items.filter((i) => i.kind === kind).reduce((n, i) => n + i.count, 0);
      outstanding = {
        quarantined: count('quarantined'),
        rejected: count('rejected'),
        deadLettered: count('dead-lettered'),
      };
    }
  } catch {
    // Not a data directory (yet): nothing set aside can be counted.
  }
  const base: LocalFacts = {
    running: false,
    snapshotCompleted: fs.existsSync(path.join(dataDir, 'capture-state.json')),
    stream: null,
    transform: null,
    load: null,
    outstanding,
    lastError,
  };
  let runtime: RuntimeInfo;
  try {
    runtime = await readRuntimeInfo(dataDir);
  } catch (e) {
    return { ...base, notRunningReason: errorText(e) };
  }
  const s3 = options.s3 ?? s3ClientFor(runtime.s3Endpoint);
  try {
    const all = (bucket: string, prefix: string) => listObjectsSince(s3, bucket, new Date(0), { prefix });
    const since = (bucket: string, prefix: string, stage: string) =>
      listObjectsSince(s3, bucket, readWatermark(path.join(triggers, `${stage}.watermark.json`)), { prefix });

    const [loadQuarantine, newIngested, newProcessed] = await Promise.all([
      all(runtime.processedBucket, `${LOAD_QUARANTINE_ROOT}/`),
      since(runtime.ingestionBucket, `${INGESTION_ROOT}/`, 'transform'),
      since(runtime.processedBucket, '', 'load'),
    ]);
    // An object the load quarantined is handled, not waiting.
    const quarantinedKeys = new Set(
      loadQuarantine
        .filter((o) => o.key.endsWith('.reason.json'))
        .map((o) => o.key.slice(0, -'.reason.json'.length)),
    );
    let load: StageQueueFacts | null = null;
    if (options.warehouse) {
      const candidates = newProcessed.filter(
        (o) => o.key.endsWith('.parquet') && !o.key.startsWith('quarantine/'),
      );
      try {
        const { rows } = await options.warehouse.query(
          'SELECT "object_key" FROM "load_log" WHERE "object_key" = ANY($1::text[])',
          [candidates.map((o) => o.key)],
        );
        const loaded = new Set(rows.map((r: { object_key: string }) => r.object_key));
        load = queueOf(
          candidates.filter((o) => !loaded.has(o.key) && !quarantinedKeys.has(loadQuarantineKeyFor(o.key))),
        );
      } catch {
        // The reporting role may not read load_log: the load queue stays unknown.
      }
    }
    return {
      ...base,
      running: true,
      // Objects the transform trigger has not recorded as handled (its watermark lags a second).
      transform: queueOf(newIngested),
      load,
      stream: await streamBacklog(runtime, dataDir),
    };
  } catch (e) {
    return { ...base, notRunningReason: `its S3 or Kinesis did not answer: ${errorText(e)}` };
  } finally {
    if (!options.s3) (s3 as S3Client).destroy();
  }
}

export interface GatherHealthOptions {
  warehouseUrl?: string;
  sourceUrl?: string;
  dataDir?: string;
  slotName?: string;
  thresholds?: HealthThresholds;
  /** Connection settings for both databases (timeouts). */
  pg?: Omit<ClientConfig, 'connectionString'>;
}

async function withClient<T>(
  url: string,
  config: GatherHealthOptions['pg'],
  fn: (c: Client) => Promise<T>,
): Promise<T> {
  const client = new Client({ connectionTimeoutMillis: 5000, ...config, connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Gathers everything that can be seen from the options given and assesses it. With a data
 * directory, the embedded source and warehouse are found from it unless URLs are given.
 */
export async function gatherHealth(options: GatherHealthOptions): Promise<HealthReport> {
  const dataDir = options.dataDir ? path.resolve(options.dataDir) : undefined;
  const warehouseUrl = options.warehouseUrl ?? (dataDir ? embeddedUrl(dataDir, 'warehouse') : null);
  const sourceUrl = options.sourceUrl ?? (dataDir ? embeddedUrl(dataDir, 'source') : null);
  let observedAt = new Date().toISOString();
  let warehouse: WarehouseFacts | Unreachable;
  let local: LocalFacts | undefined;
  if (!warehouseUrl) {
    warehouse = {
      reachable: false,
      error: 'no warehouse URL (and no embedded warehouse running in the data directory)',
    };
    if (dataDir) local = await gatherLocalFacts({ dataDir });
  } else {
    try {
      await withClient(warehouseUrl, options.pg, async (client) => {
        const gathered = await gatherWarehouseFacts(client);
        observedAt = gathered.observedAt;
        warehouse = gathered.facts;
        if (dataDir) local = await gatherLocalFacts({ dataDir, warehouse: client });
      });
    } catch (e) {
      warehouse = { reachable: false, error: errorText(e) };
      if (dataDir && !local) local = await gatherLocalFacts({ dataDir });
    }
  }
  let source: SourceFacts | Unreachable | undefined;
  if (sourceUrl) {
    try {
      source = await withClient(sourceUrl, options.pg, (c) => gatherSourceFacts(c, options.slotName));
    } catch (e) {
      source = { reachable: false, error: errorText(e) };
    }
  }
  const facts: HealthFacts = { observedAt, warehouse: warehouse!, source, local };
  return assessHealth(facts, options.thresholds);
}
