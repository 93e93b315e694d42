import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { INGESTION_ROOT, parseDataObjectKey, SCHEMA_OBJECT_ROOT } from '../../core/csv-codec';
import type { ClientBase } from 'pg';
import { silentLogger, type Logger } from '../../core/logger';
import {
  normalizeETag,
  redriveDecision,
  summarizeWork,
  versionKey,
  workKey,
  type QuarantineMark,
  type WorkCounts,
  type WorkFacts,
  type WorkItem,
  type WorkStage,
} from '../../core/outstanding-work';
import { MIXED_ROOT, MIXED_TABLE, parseMixedObjectKey } from '../../core/mixed-csv';
import { isMappedSourceTable, targetTableOf } from '../../core/star-mapping';
import { TOTESYS_TABLES } from '../../core/totesys-tables';
import { WAREHOUSE_TABLE_NAMES } from '../../core/warehouse-model';
import { loadLogVersions } from '../../core/warehouse-sql';
import { LOAD_QUARANTINE_ROOT, loadQuarantineKeyFor } from '../load/create-handler';
import { objectCreatedRecord, type S3EventRecord } from '../shared/s3-event';
import {
  outputKeyFor,
  QUARANTINE_ROOT as TRANSFORM_QUARANTINE_ROOT,
  quarantineKeyFor,
} from '../transform/create-handler';
import { MANIFEST_ROOT, mixedManifestKeyFor } from '../transform/transform-mixed-object';

/**
 * The reconciler: finds objects a stage never finished — ingestion CSV never transformed, processed
 * Parquet never loaded — and sends them through the stage again, using the one model of outstanding
 * work (core/outstanding-work.ts). Run on a schedule in AWS (processors/reconcile/handler.ts) and
 * as `totes reconcile` locally; both hand it their own way to re-drive (queue message, invocation).
 *
 * Facts come from listings, day by day over a look-back window (keys carry their delivery hour),
 * from the warehouse's `load_log`, and from the quarantine marks the stages write:
 * - transform is done for an input when its Parquet output exists (outputKeyFor), or when its table
 *   feeds no warehouse table; it is quarantined by `quarantine/transform/…/<hash>.object.jsonl`,
 *   whose `source.eTag` names the version (or, without one, its write time bounds it);
 * - load is done for a version (key + ETag) in `load_log`; it is quarantined by `quarantine/load/<key>.reason.json`,
 *   the version being the ETag of the copy beside it (the same bytes, written by one PutObject).
 *
 * Load objects are sent again only while the load queue is empty: a busy queue may still hold them
 * (an outage being waited out), and the count says how many are outstanding either way.
 */

/** One row of `load_log`: a version of a processed object that loaded. */
export interface LoadedVersion {
  key: string;
  /** The ETag of the bytes loaded; '' when loaded before versions were recorded (migration 006). */
  eTag: string;
}

/** Reads the versions of `keys` that loaded, from `load_log` (any role that may read it). */
export async function loadedVersionsIn(
  warehouse: Pick<ClientBase, 'query'>,
  keys: readonly string[],
): Promise<LoadedVersion[]> {
  if (keys.length === 0) return [];
  const statement = loadLogVersions(keys);
  const { rows } = await warehouse.query<{ object_key: string; etag: string }>(
    statement.text,
    statement.values,
  );
  return rows.map((r) => ({ key: r.object_key, eTag: r.etag }));
}

/** `WorkFacts.done` entries of loaded versions: a row without an ETag counts for every version. */
export function loadDoneKeys(versions: readonly LoadedVersion[]): string[] {
  return versions.map((v) => (v.eTag === '' ? workKey('load', v.key) : versionKey('load', v.key, v.eTag)));
}

export interface ListedObject {
  key: string;
  eTag: string | null;
  lastModified: Date;
  size: number;
}

export interface Redrivers {
  transform(items: readonly WorkItem[]): Promise<void>;
  load(items: readonly WorkItem[]): Promise<void>;
}

export interface ReconcileDeps {
  s3: Pick<S3Client, 'send'>;
  ingestionBucket: string;
  processedBucket: string;
  /** The versions of these keys that `load_log` holds (eTag '' = loaded before versions were kept). */
  loadedVersions(keys: readonly string[]): Promise<LoadedVersion[]>;
  redrive: Redrivers;
  /** True while the load queue holds messages (visible or in flight). */
  loadQueueBusy(): Promise<boolean>;
  logger?: Logger;
  now?: () => Date;
}

export interface ReconcileOptions {
  /** Objects younger than this are still on their way (default 15 minutes). */
  graceMs?: number;
  /** Days of delivery partitions to look at, today included (default 3); null: every object. */
  lookbackDays?: number | null;
  /** Count, send nothing. */
  dryRun?: boolean;
  /** At most this many objects sent again per stage and run (default 1,000). */
  maxRedrivePerStage?: number;
}

export interface ReconcileResult {
  counts: WorkCounts;
  outstanding: WorkItem[];
  redriven: Record<WorkStage, number>;
  /** Why outstanding loads were not sent again, when they were not. */
  loadRedriveSkipped?: 'load queue busy' | 'dry run';
}

/** The S3 event that sends an object through its stage again. */
export function redriveEventFor(item: WorkItem, region?: string): { Records: S3EventRecord[] } {
  return {
    Records: [
      objectCreatedRecord({
        bucket: item.bucket,
        key: item.key,
        eTag: item.eTag,
        lastModified: item.lastModified,
        region,
        configurationId: REDRIVE_CONFIGURATION_ID,
      }),
    ],
  };
}

export const RECONCILE_DEFAULTS = {
  graceMs: 15 * 60_000,
  lookbackDays: 3,
  maxRedrivePerStage: 1_000,
} as const;

/** `configurationId` of the events the reconciler and dead-letter redrive send (visible in logs). */
export const REDRIVE_CONFIGURATION_ID = 'totes-redrive';

export async function listAll(
  s3: Pick<S3Client, 'send'>,
  bucket: string,
  prefix: string,
): Promise<ListedObject[]> {
  const out: ListedObject[] = [];
  let token: string | undefined;
  do {
    const page: ListObjectsV2CommandOutput = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const o of page.Contents ?? [])
      if (o.Key && o.LastModified)
        out.push({
          key: o.Key,
          eTag: normalizeETag(o.ETag),
          lastModified: o.LastModified,
          size: o.Size ?? 0,
        });
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

/** The object as it is now (HEAD), or null when it does not exist. */
export async function headObject(
  s3: Pick<S3Client, 'send'>,
  bucket: string,
  key: string,
  now = new Date(),
): Promise<ListedObject | null> {
  try {
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return {
      key,
      eTag: normalizeETag(head.ETag),
      lastModified: head.LastModified ?? now,
      size: head.ContentLength ?? 0,
    };
  } catch (e) {
    const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === 404 || (e as Error).name === 'NotFound' || (e as Error).name === 'NoSuchKey') return null;
    throw e;
  }
}

/** `yyyy/MM/dd/` of the last `days` days (UTC), newest first. */
export function dayPrefixes(now: Date, days: number): string[] {
  return Array.from({ length: days }, (_, i) => {
    const d = new Date(now.getTime() - i * 86_400_000);
    const pad = (n: number) => String(n).padStart(2, '0');
    return `${d.getUTCFullYear()}/${pad(d.getUTCMonth() + 1)}/${pad(d.getUTCDate())}/`;
  });
}

/**
 * Objects under each folder whose keys continue with a day of the window (the layouts put
 * `yyyy/MM/dd/HH/` right there); everything under each folder when `days` is null. Folders are
 * named from what is known (tables, schema objects), not discovered by delimiter listings, which
 * s3rver does not answer.
 */
async function listRecent(
  s3: Pick<S3Client, 'send'>,
  bucket: string,
  folders: readonly string[],
  days: string[] | null,
): Promise<ListedObject[]> {
  const prefixes = days === null ? folders : folders.flatMap((f) => days.map((d) => `${f}${d}`));
  return (await Promise.all(prefixes.map((p) => listAll(s3, bucket, p)))).flat();
}

/** `totesys/<table>/schema=<fingerprint>/` of every layout a schema object was written for. */
async function ingestionFolders(s3: Pick<S3Client, 'send'>, bucket: string): Promise<string[]> {
  const folders: string[] = [];
  for (const o of await listAll(s3, bucket, `${SCHEMA_OBJECT_ROOT}/`)) {
    const m = /^[^/]+\/([^/]+)\/([0-9a-f]{16})\.json$/.exec(o.key);
    if (m) folders.push(`${INGESTION_ROOT}/${m[1]}/schema=${m[2]}/`);
  }
  return folders;
}

async function readJson(s3: Pick<S3Client, 'send'>, bucket: string, key: string): Promise<unknown> {
  const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const text = await response.Body!.transformToString();
  return JSON.parse(text.split('\n')[0]);
}

/** A transform quarantine pointer names the version it quarantined (its `source.eTag`), when S3 said. */
async function transformMark(
  s3: Pick<S3Client, 'send'>,
  bucket: string,
  inputKey: string,
  pointer: ListedObject,
): Promise<QuarantineMark> {
  let eTag: string | null = null;
  try {
    const json = (await readJson(s3, bucket, pointer.key)) as { source?: { eTag?: string } };
    eTag = normalizeETag(json?.source?.eTag);
  } catch {
    // Unreadable pointer: the write time bounds what it covers.
  }
  return { stage: 'transform', key: inputKey, eTag, markedAt: pointer.lastModified };
}

function transformItem(bucket: string, o: ListedObject): WorkItem {
  return { stage: 'transform', bucket, key: o.key, eTag: o.eTag, lastModified: o.lastModified };
}

function loadItem(bucket: string, o: ListedObject): WorkItem {
  return { stage: 'load', bucket, key: o.key, eTag: o.eTag, lastModified: o.lastModified };
}

/** Processed keys load takes: Parquet outside quarantine/. */
export function isLoadable(key: string): boolean {
  return key.endsWith('.parquet') && !key.startsWith('quarantine/');
}

export async function reconcile(
  deps: ReconcileDeps,
  options: ReconcileOptions = {},
): Promise<ReconcileResult> {
  const logger = deps.logger ?? silentLogger;
  const now = (deps.now ?? (() => new Date()))();
  const graceMs = options.graceMs ?? RECONCILE_DEFAULTS.graceMs;
  const lookback =
    options.lookbackDays === undefined ? RECONCILE_DEFAULTS.lookbackDays : options.lookbackDays;
  const days = lookback === null ? null : dayPrefixes(now, lookback);
  const { s3, ingestionBucket: ingestion, processedBucket: processed } = deps;

  const [inputs, mixedInputs, outputs, manifests, transformPointers, loadMarks] = await Promise.all([
    // totesys/<table>/schema=<fingerprint>/yyyy/MM/dd/HH/…
    ingestionFolders(s3, ingestion).then((folders) => listRecent(s3, ingestion, folders, days)),
    // Fast mode: totesys/_mixed/yyyy/MM/dd/HH/…, each transformed into the Parquet of its tables.
    listRecent(s3, ingestion, [MIXED_ROOT], days),
    // <warehouse table>/yyyy/MM/dd/HH/….parquet
    listRecent(
      s3,
      processed,
      WAREHOUSE_TABLE_NAMES.map((t) => `${t}/`),
      days,
    ),
    // manifest/transform/_mixed/yyyy/MM/dd/HH/<hash>.json: a mixed object transform finished.
    listRecent(s3, processed, [`${MANIFEST_ROOT}/${MIXED_TABLE}/`], days),
    // quarantine/transform/<source table>/yyyy/MM/dd/HH/<hash>.object.jsonl
    listRecent(
      s3,
      processed,
      [...TOTESYS_TABLES, MIXED_TABLE].map((t) => `${TRANSFORM_QUARANTINE_ROOT}/${t}/`),
      days,
    ),
    // quarantine/load/<warehouse table>/yyyy/MM/dd/HH/<hash>.parquet(.reason.json)
    listRecent(
      s3,
      processed,
      WAREHOUSE_TABLE_NAMES.map((t) => `${LOAD_QUARANTINE_ROOT}/${t}/`),
      days,
    ),
  ]);
  const outputKeys = new Set(outputs.map((o) => o.key));
  const pointers = new Map(transformPointers.map((o) => [o.key, o]));
  const loadQuarantine = new Map(loadMarks.map((o) => [o.key, o]));

  const done = new Set<string>();
  const quarantined = new Map<string, QuarantineMark>();
  const items: WorkItem[] = [];
  for (const input of inputs) {
    const where = parseDataObjectKey(input.key);
    if (!where) continue;
    items.push(transformItem(ingestion, input));
    if (
      !isMappedSourceTable(where.table) ||
      outputKeys.has(outputKeyFor(targetTableOf(where.table), input.key))
    ) {
      done.add(workKey('transform', input.key));
      continue;
    }
    const pointer = pointers.get(quarantineKeyFor(where.table, input.key, 'object'));
    if (pointer)
      quarantined.set(
        workKey('transform', input.key),
        await transformMark(s3, processed, input.key, pointer),
      );
  }
  // A mixed object is done once its manifest exists, written after every layout's Parquet
  // (processors/transform/transform-mixed-object.ts); sending it again writes only what is missing.
  // Before manifests, transform split it into per-table objects carrying its hour and name: one of
  // those counts as done too.
  const manifestKeys = new Set(manifests.map((o) => o.key));
  const splitFrom = new Set(inputs.map((o) => o.key.split('/').slice(-5).join('/')));
  for (const input of mixedInputs) {
    const mixed = parseMixedObjectKey(input.key);
    if (!mixed) continue;
    items.push(transformItem(ingestion, input));
    if (manifestKeys.has(mixedManifestKeyFor(input.key)) || splitFrom.has(`${mixed.hour}/${mixed.name}`)) {
      done.add(workKey('transform', input.key));
      continue;
    }
    const pointer = pointers.get(quarantineKeyFor(MIXED_TABLE, input.key, 'object'));
    if (pointer)
      quarantined.set(
        workKey('transform', input.key),
        await transformMark(s3, processed, input.key, pointer),
      );
  }
  const loadable = outputs.filter((o) => isLoadable(o.key));
  for (const id of loadDoneKeys(await deps.loadedVersions(loadable.map((o) => o.key)))) done.add(id);
  for (const output of loadable) {
    items.push(loadItem(processed, output));
    const quarantineKey = loadQuarantineKeyFor(output.key);
    const reason = loadQuarantine.get(`${quarantineKey}.reason.json`);
    if (reason)
      quarantined.set(workKey('load', output.key), {
        stage: 'load',
        key: output.key,
        eTag: loadQuarantine.get(quarantineKey)?.eTag ?? null,
        markedAt: reason.lastModified,
      });
  }

  const facts: WorkFacts = { done, quarantined, now, graceMs };
  const summary = summarizeWork(items, facts);
  const max = options.maxRedrivePerStage ?? RECONCILE_DEFAULTS.maxRedrivePerStage;
  const outstandingOf = (stage: WorkStage) =>
    summary.outstanding.filter((i) => i.stage === stage).slice(0, max);
  const result: ReconcileResult = { ...summary, redriven: { transform: 0, load: 0 } };

  if (options.dryRun) {
    result.loadRedriveSkipped = 'dry run';
  } else {
    const transform = outstandingOf('transform');
    if (transform.length) await deps.redrive.transform(transform);
    result.redriven.transform = transform.length;
    const load = outstandingOf('load');
    if (load.length && (await deps.loadQueueBusy())) result.loadRedriveSkipped = 'load queue busy';
    else if (load.length) {
      await deps.redrive.load(load);
      result.redriven.load = load.length;
    }
  }
  logger.info('reconciled', {
    lookbackDays: lookback,
    graceSeconds: graceMs / 1000,
    transform: summary.counts.transform,
    load: summary.counts.load,
    redriven: result.redriven,
    loadRedriveSkipped: result.loadRedriveSkipped,
  });
  for (const item of summary.outstanding.slice(0, 20))
    logger.warn('outstanding object', { stage: item.stage, key: item.key, lastModified: item.lastModified });
  return result;
}

/** A dead letter: one object a stage gave up on, and how to drop it or send it again. */
export interface DeadLetter {
  item: WorkItem;
  drop(): Promise<void>;
  redrive(): Promise<void>;
}

/**
 * Dead-letter redrive through the same model: each dead letter's object is sent again only if it
 * is still outstanding — a done object's letter is dropped, and so is a quarantined one's, so a
 * quarantined object never loops. Facts are gathered per object (HEAD, load_log), as dead-letter
 * queues are short; the version judged is the object as it is now (a letter for an object that
 * no longer exists is dropped).
 */
export async function redriveDeadLetters(
  deps: Pick<ReconcileDeps, 's3' | 'processedBucket' | 'loadedVersions' | 'logger' | 'now'>,
  letters: readonly DeadLetter[],
): Promise<{ redriven: number; dropped: number }> {
  const logger = deps.logger ?? silentLogger;
  const now = (deps.now ?? (() => new Date()))();
  const exists = async (key: string, bucket = deps.processedBucket): Promise<ListedObject | undefined> =>
    (await headObject(deps.s3, bucket, key, now)) ?? undefined;
  const loaded = new Set(
    loadDoneKeys(
      await deps.loadedVersions(letters.filter((l) => l.item.stage === 'load').map((l) => l.item.key)),
    ),
  );
  let redriven = 0;
  let dropped = 0;
  for (const letter of letters) {
    // The version a redrive would send is the object as it is now.
    const current = await exists(letter.item.key, letter.item.bucket);
    if (!current) {
      await letter.drop();
      dropped += 1;
      logger.info('dead letter handled', {
        stage: letter.item.stage,
        key: letter.item.key,
        decision: 'drop',
        why: 'object gone',
      });
      continue;
    }
    const item: WorkItem = { ...letter.item, eTag: current.eTag, lastModified: current.lastModified };
    // Load: done per version, from load_log (a corrected object's letter is sent again).
    const done = new Set<string>(item.stage === 'load' ? loaded : []);
    const quarantined = new Map<string, QuarantineMark>();
    const id = workKey(item.stage, item.key);
    if (item.stage === 'load') {
      const reason = await exists(`${loadQuarantineKeyFor(item.key)}.reason.json`);
      if (reason)
        quarantined.set(id, {
          stage: 'load',
          key: item.key,
          eTag: (await exists(loadQuarantineKeyFor(item.key)))?.eTag ?? null,
          markedAt: reason.lastModified,
        });
    } else {
      const where = parseDataObjectKey(item.key);
      if (
        !where ||
        !isMappedSourceTable(where.table) ||
        (await exists(outputKeyFor(targetTableOf(where.table), item.key)))
      )
        done.add(id);
      else {
        const pointer = await exists(quarantineKeyFor(where.table, item.key, 'object'));
        if (pointer)
          quarantined.set(id, await transformMark(deps.s3, deps.processedBucket, item.key, pointer));
      }
    }
    const decision = redriveDecision(item, { done, quarantined, now });
    if (decision === 'redrive') {
      await letter.redrive();
      redriven += 1;
    } else {
      await letter.drop();
      dropped += 1;
    }
    logger.info('dead letter handled', { stage: item.stage, key: item.key, decision });
  }
  return { redriven, dropped };
}
