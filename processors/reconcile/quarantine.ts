import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { ChangeSchema, type Change } from '../../core/change-event';
import { decodeSchemaObject, parseDataObjectKey, schemaObjectKey } from '../../core/csv-codec';
import { silentLogger, type Logger } from '../../core/logger';
import { parseMixedObjectKey } from '../../core/mixed-csv';
import {
  markStatus,
  normalizeETag,
  workKey,
  type MarkStatus,
  type QuarantineMark,
  type WorkItem,
  type WorkStage,
} from '../../core/outstanding-work';
import { isMappedSourceTable, targetTableOf, toWarehouseRows } from '../../core/star-mapping';
import { LOAD_QUARANTINE_ROOT } from '../load/create-handler';
import { encodeParquet } from '../shared/parquet-codec';
import { outputKeyFor, QUARANTINE_ROOT as TRANSFORM_QUARANTINE_ROOT } from '../transform/create-handler';
import { mixedManifestKeyFor } from '../transform/transform-mixed-object';
import {
  headObject,
  listAll,
  loadDoneKeys,
  type ListedObject,
  type LoadedVersion,
  type Redrivers,
} from './reconcile';

/**
 * Quarantine you can act on (`totes quarantine list|show|retry`), on the one model of outstanding
 * work (core/outstanding-work.ts) the reconciler and dead-letter redrive use. What the stages set
 * aside, all in the processed bucket:
 *
 * - `load-object`: `quarantine/load/<key>` (a copy) + `<key>.reason.json` — a Parquet object load
 *   could not apply. The mark covers the version whose ETag the copy has.
 * - `transform-object`: `quarantine/transform/<table>/…/<hash>.object.jsonl` — a pointer to an
 *   ingestion CSV transform could not read, naming its ETag.
 * - `transform-rows`: `quarantine/transform/<table>/…/<hash>.rejected.jsonl` — changes of an input
 *   the mapping rejected, one JSON line each with its reason; the rest of the input was loaded.
 *
 * `retry` after a fix (code deployed, or the object / the rejected lines corrected in place):
 * - an object entry: its mark is released (deleted) and the object as it is now is sent through
 *   its stage again, the way the reconciler sends it. If it fails again, the stage marks it again:
 *   nothing loops. A corrected object (a new ETag) is sent as well: the mark no longer covers it.
 * - a rows entry is replayed: its changes are mapped again with the current code (an operator may
 *   have edited values in the file); those that map now go to a Parquet object of their own beside
 *   the input's output (`…<hash>.replay-<ETag of the file>.parquet`, so a repeated retry of the same
 *   file writes the same object and load skips it), which is sent to load; those still rejected
 *   stay in the file with their reasons, and the file goes once none are left.
 */

export const QUARANTINE_KINDS = ['load-object', 'transform-object', 'transform-rows'] as const;
export type QuarantineKind = (typeof QUARANTINE_KINDS)[number];

/** Where an entry stands: a mark's status (core), or rows waiting to be replayed. */
export type QuarantineStatus = MarkStatus | 'rows waiting';

export interface QuarantineEntry {
  /** The quarantine object's key in the processed bucket: what `show` and `retry` take. */
  id: string;
  kind: QuarantineKind;
  stage: WorkStage;
  /** The object that was set aside (rows: the input they came from). */
  bucket: string;
  key: string;
  /** The first reason (rows: the most frequent). */
  reason: string;
  quarantinedAt: Date;
  status: QuarantineStatus;
  /** Rows entries: rejected changes in the file, and how many per reason. */
  rows?: number;
  reasons?: Record<string, number>;
}

export interface QuarantineDeps {
  s3: Pick<S3Client, 'send'>;
  ingestionBucket: string;
  processedBucket: string;
  /** Versions that loaded (`load_log`); absent: whether an object loaded since is not known. */
  loadedVersions?: (keys: readonly string[]) => Promise<LoadedVersion[]>;
  logger?: Logger;
}

/** Base class of every error this module throws. */
export class QuarantineError extends Error {
  override name = 'QuarantineError';
}

export class NoSuchQuarantineEntryError extends QuarantineError {
  override name = 'NoSuchQuarantineEntryError';
  constructor(readonly id: string) {
    super(`${id} is not a quarantine entry (see \`totes quarantine list\`)`);
  }
}

const REASON_SUFFIX = '.reason.json';
const POINTER_SUFFIX = '.object.jsonl';
const ROWS_SUFFIX = '.rejected.jsonl';

const head = (s3: QuarantineDeps['s3'], bucket: string, key: string) => headObject(s3, bucket, key);

async function readText(
  s3: QuarantineDeps['s3'],
  bucket: string,
  key: string,
): Promise<{ text: string; eTag: string | null }> {
  const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return { text: await response.Body!.transformToString(), eTag: normalizeETag(response.ETag) };
}

function parseJson(text: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function dateOf(raw: unknown, fallback: Date): Date {
  const t = typeof raw === 'string' ? Date.parse(raw) : NaN;
  return Number.isNaN(t) ? fallback : new Date(t);
}

/** One quarantine object, with its document (reason / pointer / rejected lines) as read. */
interface Found {
  entry: Omit<QuarantineEntry, 'status'>;
  /** The mark, for object entries. */
  mark?: QuarantineMark;
  document: string;
  documentETag: string | null;
}

function itemOf(stage: WorkStage, bucket: string, o: ListedObject): WorkItem {
  return { stage, bucket, key: o.key, eTag: o.eTag, lastModified: o.lastModified };
}

async function readEntry(deps: QuarantineDeps, listed: ListedObject, copies: Map<string, ListedObject>) {
  const { s3, processedBucket: processed, ingestionBucket: ingestion } = deps;
  const { text, eTag } = await readText(s3, processed, listed.key);
  const base = { id: listed.key, quarantinedAt: listed.lastModified };
  if (listed.key.startsWith(`${LOAD_QUARANTINE_ROOT}/`)) {
    const copyKey = listed.key.slice(0, -REASON_SUFFIX.length);
    const json = parseJson(text);
    const key = copyKey.slice(LOAD_QUARANTINE_ROOT.length + 1);
    const quarantinedAt = dateOf(json.quarantinedAt, listed.lastModified);
    const found: Found = {
      entry: {
        ...base,
        kind: 'load-object',
        stage: 'load',
        bucket: processed,
        key,
        reason: str(json.reason) ?? 'unknown',
        quarantinedAt,
      },
      // The copy is the quarantined bytes (one PutObject): its ETag names the version.
      mark: { stage: 'load', key, eTag: copies.get(copyKey)?.eTag ?? null, markedAt: listed.lastModified },
      document: text,
      documentETag: eTag,
    };
    return found;
  }
  if (listed.key.endsWith(POINTER_SUFFIX)) {
    const json = parseJson(text.split('\n')[0]);
    const source = (json.source ?? {}) as Record<string, unknown>;
    const key = str(source.key) ?? '';
    const found: Found = {
      entry: {
        ...base,
        kind: 'transform-object',
        stage: 'transform',
        bucket: str(source.bucket) ?? ingestion,
        key,
        reason: str(json.reason) ?? 'unknown',
        quarantinedAt: dateOf(json.quarantinedAt, listed.lastModified),
      },
      mark: {
        stage: 'transform',
        key,
        eTag: normalizeETag(str(source.eTag)),
        markedAt: listed.lastModified,
      },
      document: text,
      documentETag: eTag,
    };
    return found;
  }
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const reasons: Record<string, number> = {};
  let sourceKey = '';
  let sourceBucket = ingestion;
  for (const line of lines) {
    const json = parseJson(line);
    const reason = str(json.reason) ?? 'unknown';
    reasons[reason] = (reasons[reason] ?? 0) + 1;
    sourceKey ||= str(json.sourceKey) ?? '';
    sourceBucket = str(json.sourceBucket) ?? sourceBucket;
  }
  const top = Object.entries(reasons).sort((a, b) => b[1] - a[1])[0];
  const found: Found = {
    entry: {
      ...base,
      kind: 'transform-rows',
      stage: 'transform',
      bucket: sourceBucket,
      key: sourceKey,
      reason: top?.[0] ?? 'no rejected changes left',
      rows: lines.length,
      reasons,
    },
    document: text,
    documentETag: eTag,
  };
  return found;
}

/** Is the quarantine key one of the three entry documents (not a copy, not something else)? */
function isEntryDocument(key: string): boolean {
  if (key.startsWith(`${LOAD_QUARANTINE_ROOT}/`)) return key.endsWith(REASON_SUFFIX);
  return (
    key.startsWith(`${TRANSFORM_QUARANTINE_ROOT}/`) &&
    (key.endsWith(POINTER_SUFFIX) || key.endsWith(ROWS_SUFFIX))
  );
}

/** Where each object entry stands now: the object as it is (HEAD) against what is done. */
async function withStatus(deps: QuarantineDeps, found: Found[]): Promise<QuarantineEntry[]> {
  const done = new Set<string>();
  const loads = found.filter((f) => f.entry.kind === 'load-object').map((f) => f.entry.key);
  if (deps.loadedVersions) for (const id of loadDoneKeys(await deps.loadedVersions(loads))) done.add(id);
  const out: QuarantineEntry[] = [];
  for (const f of found) {
    if (!f.mark) {
      out.push({ ...f.entry, status: 'rows waiting' });
      continue;
    }
    const current = f.entry.key ? await head(deps.s3, f.entry.bucket, f.entry.key) : null;
    if (current && f.entry.kind === 'transform-object') {
      // Transform is done for a key when its output exists (outputKeyFor), whatever the version.
      const where = parseDataObjectKey(current.key);
      // A fast-mode mixed object is done when its manifest exists (transform-mixed-object.ts).
      const doneMark = where
        ? isMappedSourceTable(where.table) && outputKeyFor(targetTableOf(where.table), current.key)
        : parseMixedObjectKey(current.key) && mixedManifestKeyFor(current.key);
      if (doneMark && (await head(deps.s3, deps.processedBucket, doneMark)))
        done.add(workKey('transform', current.key));
    }
    const item = current ? itemOf(f.entry.stage, f.entry.bucket, current) : null;
    out.push({ ...f.entry, status: markStatus(f.mark, item, done) });
  }
  return out;
}

async function findAll(deps: QuarantineDeps): Promise<Found[]> {
  const listed = await listAll(deps.s3, deps.processedBucket, 'quarantine/');
  const copies = new Map(listed.map((o) => [o.key, o]));
  const found: Found[] = [];
  for (const o of listed) if (isEntryDocument(o.key)) found.push(await readEntry(deps, o, copies));
  return found;
}

/** Every quarantine entry, oldest first, with where it stands. */
export async function listQuarantine(deps: QuarantineDeps): Promise<QuarantineEntry[]> {
  const entries = await withStatus(deps, await findAll(deps));
  return entries.sort(
    (a, b) => a.quarantinedAt.getTime() - b.quarantinedAt.getTime() || a.id.localeCompare(b.id),
  );
}

async function findOne(deps: QuarantineDeps, id: string): Promise<Found> {
  const listed = isEntryDocument(id) ? await head(deps.s3, deps.processedBucket, id) : null;
  if (!listed) throw new NoSuchQuarantineEntryError(id);
  const copies = new Map<string, ListedObject>();
  if (id.startsWith(`${LOAD_QUARANTINE_ROOT}/`)) {
    const copy = await head(deps.s3, deps.processedBucket, id.slice(0, -REASON_SUFFIX.length));
    if (copy) copies.set(copy.key, copy);
  }
  return readEntry(deps, listed, copies);
}

/** One entry with its whole document: the reason JSON, the pointer, or the rejected changes. */
export async function showQuarantine(
  deps: QuarantineDeps,
  id: string,
): Promise<{ entry: QuarantineEntry; document: string }> {
  const found = await findOne(deps, id);
  const [entry] = await withStatus(deps, [found]);
  return { entry, document: found.document };
}

export const RETRY_OUTCOMES = [
  'sent again',
  'replayed',
  'mark cleared',
  'object gone',
  'nothing mapped',
] as const;
export type RetryOutcome = (typeof RETRY_OUTCOMES)[number];

export interface RetryResult {
  id: string;
  kind: QuarantineKind;
  key: string;
  outcome: RetryOutcome;
  /** Rows: changes replayed into `replayKey`, and changes still rejected (left in the file). */
  replayed?: number;
  stillRejected?: number;
  replayKey?: string;
}

async function remove(s3: QuarantineDeps['s3'], bucket: string, key: string): Promise<void> {
  await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
}

/** Where the changes of a rejected file replayed at `fileETag` go: beside the input's output. */
export function replayKeyFor(outputKey: string, fileETag: string): string {
  return outputKey.replace(/\.parquet$/, `.replay-${fileETag.slice(0, 16)}.parquet`);
}

interface RejectedLine {
  json: Record<string, unknown>;
  change?: Change;
}

async function replayRows(deps: QuarantineDeps, found: Found, redrive: Redrivers): Promise<RetryResult> {
  const { s3, processedBucket: processed } = deps;
  const { entry } = found;
  const result: RetryResult = { id: entry.id, kind: entry.kind, key: entry.key, outcome: 'replayed' };
  const where = parseDataObjectKey(entry.key);
  if (!where || !isMappedSourceTable(where.table))
    throw new QuarantineError(`${entry.id}: its input key ${entry.key} is not a mapped ingestion object`);
  const schemaKey = schemaObjectKey(where.table, where.fingerprint);
  const schema = decodeSchemaObject((await readText(s3, entry.bucket, schemaKey)).text);
  const lines: RejectedLine[] = found.document
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const json = parseJson(l);
      const change = ChangeSchema.safeParse(json.change);
      return { json, change: change.success ? change.data : undefined };
    });
  const valid = lines.filter((l): l is Required<RejectedLine> => l.change !== undefined);
  const mapped = toWarehouseRows(
    where.table,
    schema.columns,
    valid.map((l) => l.change),
  );
  const still = [
    ...lines
      .filter((l) => l.change === undefined)
      .map((l) => ({ ...l.json, reason: 'not a valid change (check the edited line)' })),
    ...mapped.rejected.map((r) => ({
      ...valid.find((l) => l.change === r.change)!.json,
      reason: r.reason,
    })),
  ];
  result.replayed = mapped.rows.length;
  result.stillRejected = still.length;
  if (mapped.rows.length > 0) {
    const target = targetTableOf(where.table);
    const replayKey = replayKeyFor(outputKeyFor(target, entry.key), found.documentETag ?? 'unknown');
    // A retry of the same file version (after a crash below) finds the object written: the same
    // bytes' version is in load_log, and sending it again is harmless.
    if (!(await head(s3, processed, replayKey)))
      await s3.send(
        new PutObjectCommand({
          Bucket: processed,
          Key: replayKey,
          Body: await encodeParquet(target, mapped.rows),
          ContentType: 'application/vnd.apache.parquet',
        }),
      );
    const written = (await head(s3, processed, replayKey))!;
    await redrive.load([itemOf('load', processed, written)]);
    result.replayKey = replayKey;
  } else result.outcome = 'nothing mapped';
  // Only after the replay object is written and sent: a crash before leaves the file to retry.
  if (still.length === 0) await remove(s3, processed, entry.id);
  else if (mapped.rows.length > 0 || still.length !== lines.length)
    await s3.send(
      new PutObjectCommand({
        Bucket: processed,
        Key: entry.id,
        Body: `${still.map((l) => JSON.stringify(l)).join('\n')}\n`,
        ContentType: 'application/x-ndjson',
      }),
    );
  return result;
}

/**
 * Re-drives one entry after a fix (see the module comment). Returns what was done; throws
 * NoSuchQuarantineEntryError for an id that is not an entry.
 */
export async function retryQuarantine(
  deps: QuarantineDeps,
  id: string,
  redrive: Redrivers,
): Promise<RetryResult> {
  const logger = deps.logger ?? silentLogger;
  const found = await findOne(deps, id);
  const [entry] = await withStatus(deps, [found]);
  let result: RetryResult;
  if (entry.kind === 'transform-rows') result = await replayRows(deps, found, redrive);
  else {
    result = { id, kind: entry.kind, key: entry.key, outcome: 'sent again' };
    if (entry.status === 'gone') result.outcome = 'object gone';
    else {
      // Release the mark (the reason last written goes first: without it the copy is no mark).
      await remove(deps.s3, deps.processedBucket, id);
      if (entry.kind === 'load-object')
        await remove(deps.s3, deps.processedBucket, id.slice(0, -REASON_SUFFIX.length));
      if (entry.status === 'done') result.outcome = 'mark cleared';
      else {
        const current = (await head(deps.s3, entry.bucket, entry.key))!;
        const item = itemOf(entry.stage, entry.bucket, current);
        await (entry.stage === 'load' ? redrive.load([item]) : redrive.transform([item]));
      }
    }
  }
  logger.info('quarantine retried', { ...result });
  return result;
}
