import { createHash } from 'node:crypto';
import { isLayoutSafeTableName } from '../../core/csv-codec';
import type { Logger } from '../../core/logger';
import { mapOverlapped } from '../../core/map-overlapped';
import {
  MIXED_TABLE,
  MixedCsvError,
  mixedPartKey,
  parseMixedObjectKey,
  splitMixedCsv,
} from '../../core/mixed-csv';
import { isMappedSourceTable } from '../../core/star-mapping';
import type { S3EventRecord } from '../shared/s3-event';

/**
 * Fast mode in transform: a mixed-table object Firehose wrote (`totesys/_mixed/yyyy/MM/dd/HH/<name>`,
 * core/mixed-csv.ts) becomes the Parquet object of each of its layouts in ONE invocation. The
 * object is split by layout in memory; each layout's lines go through the same decoding, mapping and
 * Parquet writing as a default-mode object, under the key its per-table object would have
 * (`mixedPartKey`), so its Parquet key (`outputKeyFor`) and its quarantined rows are the ones a
 * default-mode object of that layout gets. No per-table CSV is written, and no second S3 event or
 * transform invocation follows (an earlier design did both: 501 transform invocations for 40k
 * changes at 2k/s where this takes the ~80 mixed objects' own; bench/README.md).
 *
 * Done, idempotency and crashes: once every layout's Parquet is written (or its table feeds no
 * warehouse table), a *manifest* goes to `manifest/transform/_mixed/yyyy/MM/dd/HH/<hash>.json` in
 * the processed bucket, naming the outputs. It is written last, so it marks the mixed object done:
 * the reconciler counts a mixed object with a manifest as transformed, and a redelivered event that
 * finds it writes nothing (not even a HEAD of the outputs). Every Parquet object is written with
 * If-None-Match, so a retry after a crash midway (no manifest yet) leaves what was written as it is
 * (no new object, so nothing loads twice) and writes the rest.
 *
 * A layout that cannot be transformed (its schema object missing or invalid, its CSV unreadable) is
 * not a reason to hold back the others: they are written, and the mixed object is quarantined as a
 * whole with a reason naming each bad layout's table. Without a manifest it is not done, and the
 * quarantine mark keeps the reconciler from sending it again until `totes quarantine retry`; then
 * the written layouts are found written and the fixed one is written.
 */

export const MANIFEST_ROOT = 'manifest/transform';

/**
 * Layouts being transformed at once. Two: one's Parquet is built while the one before it waits for
 * its PUT (at 10k changes/s a mixed object has ~9 layouts, and under load each PUT waited 20–40 ms:
 * bench/README.md, session 13), and memory holds at most two layouts' Parquet.
 */
const PARTS_IN_FLIGHT = 2;

/** The transform of one layout, as the handler reports it (ObjectOutcome's fields that apply). */
export interface PartOutcome {
  bucket: string;
  /** The layout's part key (mixedPartKey): no object of that key exists. */
  key: string;
  status: 'written' | 'duplicate' | 'ignored' | 'quarantined';
  sourceTable: string;
  targetTable?: string;
  outputKey?: string;
  quarantineKey?: string;
  rows?: number;
  rejected?: number;
  reason?: string;
}

export interface MixedPart {
  table: string;
  fingerprint: string;
  partKey: string;
  /** The layout's CSV lines: views of the mixed object's bytes, in order (MixedSegment.runs). */
  csv: readonly Buffer[];
}

export interface MixedObjectSteps {
  exists(key: string): Promise<boolean>;
  read(bucket: string, key: string): Promise<Buffer>;
  /** Writes a processed-bucket object with If-None-Match; false when it existed. */
  putOnce(key: string, body: string, contentType: string, metadata: Record<string, string>): Promise<boolean>;
  /** One layout to its Parquet (and its rejected rows to quarantine), as transform does an object. */
  transformPart(part: MixedPart): Promise<PartOutcome>;
  /** The reason of a permanent failure of one layout (value-free), or undefined for any other error. */
  unreadableReason(e: unknown): string | undefined;
}

export type MixedResult =
  | { status: 'written' | 'duplicate'; manifestKey: string; parts: PartOutcome[] }
  | { status: 'unreadable'; manifestKey: string; parts: PartOutcome[]; reason: string };

const sha256Hex = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

/** Where the manifest of a mixed object goes: its hour, then a hash of its key (as outputKeyFor). */
export function mixedManifestKeyFor(mixedKey: string): string {
  const hour = parseMixedObjectKey(mixedKey)?.hour ?? 'unpartitioned';
  return `${MANIFEST_ROOT}/${MIXED_TABLE}/${hour}/${sha256Hex(mixedKey).slice(0, 32)}.json`;
}

export async function transformMixedObject(
  steps: MixedObjectSteps,
  record: S3EventRecord,
  key: string,
  mixed: { hour: string; name: string },
  logger: Logger,
): Promise<MixedResult> {
  const bucket = record.s3.bucket.name;
  const manifestKey = mixedManifestKeyFor(key);
  // The object is read while its manifest is looked for: a request's wait less for every mixed
  // object, a read wasted only on a redelivery of one already transformed.
  const reading = steps.read(bucket, key);
  reading.catch(() => undefined); // awaited below, unless the manifest says done
  if (await steps.exists(manifestKey)) {
    logger.info('already transformed; skipped', { key, manifestKey });
    return { status: 'duplicate', manifestKey, parts: [] };
  }
  const segments = splitMixedCsv(await reading);
  for (const s of segments)
    if (!isLayoutSafeTableName(s.table))
      throw new MixedCsvError('a layout record names a table unfit for a key');

  // Each layout in order; a layout's Parquet is built while the one before it is being written.
  const outcomes = await mapOverlapped(
    segments,
    PARTS_IN_FLIGHT,
    async (segment): Promise<PartOutcome & { unreadable?: true }> => {
      const { table, fingerprint } = segment;
      const partKey = mixedPartKey(mixed, table, fingerprint);
      if (!isMappedSourceTable(table))
        return { bucket, key: partKey, status: 'ignored', sourceTable: table, reason: 'no warehouse table' };
      try {
        return await steps.transformPart({ table, fingerprint, partKey, csv: segment.runs });
      } catch (e) {
        const reason = steps.unreadableReason(e);
        if (reason === undefined) throw e;
        return { bucket, key: partKey, status: 'quarantined', sourceTable: table, reason, unreadable: true };
      }
    },
  );
  const unreadable: string[] = [];
  const parts = outcomes.map(({ unreadable: bad, ...part }, i): PartOutcome => {
    if (bad) unreadable.push(`${part.sourceTable} (layout ${segments[i]!.fingerprint}): ${part.reason}`);
    return part;
  });
  if (unreadable.length) return { status: 'unreadable', manifestKey, parts, reason: unreadable.join('; ') };

  // Last: the manifest marks the object done (for the reconciler, and for a redelivered event).
  const manifest = {
    kind: 'mixed-object-manifest',
    source: { bucket, key, eTag: record.s3.object.eTag, size: record.s3.object.size },
    parts: parts.map((p) => ({
      table: p.sourceTable,
      partKey: p.key,
      status: p.status === 'duplicate' ? 'written' : p.status,
      targetTable: p.targetTable,
      outputKey: p.outputKey,
      rows: p.rows,
      rejected: p.rejected,
      quarantineKey: p.quarantineKey,
    })),
  };
  await steps.putOnce(manifestKey, `${JSON.stringify(manifest)}\n`, 'application/json', {
    'source-bucket': bucket,
    'source-key': key,
  });
  const written = parts.some((p) => p.status === 'written');
  logger.info('mixed object transformed', {
    key,
    manifestKey,
    layouts: parts.length,
    written: parts.filter((p) => p.status === 'written').length,
    tables: [...new Set(parts.map((p) => p.sourceTable))],
  });
  return { status: written ? 'written' : 'duplicate', manifestKey, parts };
}
