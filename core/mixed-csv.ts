import type { ChangeBatch } from './change-event';
import {
  encodeChangeBatchAsCsv,
  INGESTION_ROOT,
  schemaFingerprint,
  writeChangeBatchAsCsv,
} from './csv-codec';

/**
 * Fast mode's mixed-table CSV objects (infra/config.ts `totes:freshness=fast`, docs/deploy.md
 * "Freshness modes"). Pure.
 *
 * Without dynamic partitioning Firehose writes every table into one object
 * (`totesys/_mixed/yyyy/MM/dd/HH/<name>`), and its keys name no table or layout. So in fast mode
 * the record-transformation function starts each record's CSV lines with a *layout record*,
 * `@layout,<table>,<fingerprint>`, and the lines after it (up to the next layout record) are that
 * layout's, in the ordinary format (core/csv-codec.ts). A layout record cannot be mistaken for a
 * change: a change record's first field is its op (`insert`, `snapshot`, …), and a `@` inside a
 * quoted value is never at the start of a record. Transform splits a mixed object by layout in memory
 * and turns each layout's lines straight into its table's Parquet, in one invocation
 * (processors/transform/transform-mixed-object.ts).
 */

export const LAYOUT_RECORD_TAG = '@layout';

/** Where mixed objects live, and the name their quarantine entries are filed under (no table). */
export const MIXED_TABLE = '_mixed';
export const MIXED_ROOT = `${INGESTION_ROOT}/${MIXED_TABLE}/`;

/** Fast mode's Firehose prefix: no partition keys, so no table or layout in the key. */
export const MIXED_INGESTION_PREFIX = `${MIXED_ROOT}!{timestamp:yyyy/MM/dd/HH}/`;

/** MIXED_INGESTION_PREFIX's keys (INGESTION_ROOT is `totesys`; fast-mode.test.ts builds keys from the prefix). */
const MIXED_DATA_KEY = /^totesys\/_mixed\/(\d{4}\/\d{2}\/\d{2}\/\d{2})\/([^/]+)$/;

/** The delivery hour (`yyyy/MM/dd/HH`) and file name of a mixed object's key; undefined otherwise. */
export function parseMixedObjectKey(key: string): { hour: string; name: string } | undefined {
  const m = MIXED_DATA_KEY.exec(key);
  return m ? { hour: m[1], name: m[2] } : undefined;
}

/**
 * The key the per-table object of one layout of a mixed object would have
 * (`totesys/<table>/schema=<fingerprint>/yyyy/MM/dd/HH/<name>`). No such object is written: it names
 * the layout's part for everything keyed by an input key — its Parquet output, its quarantined
 * rows (whose replay reads the layout from it) — so those keys are the ones a default-mode object of
 * that layout would have.
 */
export function mixedPartKey(
  mixed: { hour: string; name: string },
  table: string,
  fingerprint: string,
): string {
  return `${INGESTION_ROOT}/${table}/schema=${fingerprint}/${mixed.hour}/${mixed.name}`;
}

/** One record's data in fast mode: its layout record, then its CSV lines. */
export function encodeChangeBatchAsMixedCsv(batch: ChangeBatch): string {
  return `${layoutRecord(batch)}${encodeChangeBatchAsCsv(batch)}`;
}

/**
 * encodeChangeBatchAsMixedCsv's text handed to `write` in pieces (as writeChangeBatchAsCsv).
 * `fingerprint` is the batch's `schemaFingerprint(batch.columns)` when the caller has it already
 * (the Firehose handler remembers each table's last layout: JSON and SHA-256 per record otherwise).
 */
export function writeChangeBatchAsMixedCsv(
  batch: ChangeBatch,
  write: (piece: string) => void,
  fingerprint = schemaFingerprint(batch.columns),
): void {
  write(layoutRecord(batch, fingerprint));
  writeChangeBatchAsCsv(batch, write);
}

function layoutRecord(batch: ChangeBatch, fingerprint = schemaFingerprint(batch.columns)): string {
  // Table names that reach here are layout-safe (no comma, quote or line end): no quoting needed.
  return `${LAYOUT_RECORD_TAG},${batch.table},${fingerprint}\n`;
}

export interface MixedSegment {
  table: string;
  fingerprint: string;
  /**
   * The layout's CSV lines, in object order: runs of records of the object's bytes, as views of it
   * (not copies). Several records of one layout come as several runs.
   */
  runs: Buffer[];
}

export class MixedCsvError extends Error {
  override readonly name = 'MixedCsvError';
}

const LINE_FEED = 0x0a;
const QUOTE = 0x22;
const UTF8_BOM = [0xef, 0xbb, 0xbf];
const LAYOUT_PREFIX_BYTES = Buffer.from(`${LAYOUT_RECORD_TAG},`, 'latin1');

/**
 * Splits a mixed object into one segment per layout, in order of first appearance. Scans record
 * boundaries the RFC 4180 way (a line end inside a quoted field is data), so a value that contains
 * a line starting with `@layout` cannot split a record. Throws MixedCsvError when data comes before
 * any layout record or a layout record is malformed.
 *
 * It scans the object's bytes, not its text: a quote and a line feed are single bytes in UTF-8 that
 * no multi-byte character contains, so the record ends are the same, and the segments stay views of
 * the object. As text, the object was decoded whole, each segment encoded back to bytes and then
 * decoded again by the transform's CSV decoder (bench:transform, fast mode: a tenth of the
 * transform's CPU at 10k changes/s, and strings of megabytes for the collector).
 */
export function splitMixedCsv(bytes: Buffer): MixedSegment[] {
  const segments = new Map<string, MixedSegment>();
  let current: MixedSegment | undefined;
  const n = bytes.length;
  /** Where the current layout's data records not yet added to its runs start. */
  let run = -1;
  const layout = (start: number, end: number) => {
    if (current && run >= 0 && run < start) current.runs.push(bytes.subarray(run, start));
    const line = bytes.toString('utf8', start, end);
    const [, table, fingerprint, ...rest] = line.replace(/\r?\n$/, '').split(',');
    if (!table || !/^[0-9a-f]{16}$/.test(fingerprint ?? '') || rest.length)
      throw new MixedCsvError(`malformed layout record at byte ${start}`);
    const id = `${table}/${fingerprint}`;
    current = segments.get(id) ?? { table, fingerprint, runs: [] };
    segments.set(id, current);
    run = end;
  };
  const isLayout = (start: number, end: number) =>
    end - start >= LAYOUT_PREFIX_BYTES.length &&
    bytes.compare(
      LAYOUT_PREFIX_BYTES,
      0,
      LAYOUT_PREFIX_BYTES.length,
      start,
      start + LAYOUT_PREFIX_BYTES.length,
    ) === 0;
  const take = (start: number, end: number) => {
    if (start >= end) return;
    if (isLayout(start, end)) layout(start, end);
    else if (!current) throw new MixedCsvError('data before the first layout record');
  };
  // Record ends (a line feed outside quotes) found by jumping from quote to quote with indexOf, as
  // CsvObjectDecoder does, not by testing every byte; a record's data is added to its layout as one
  // view per run of records, not one per record.
  let recordStart = UTF8_BOM.every((b, i) => bytes[i] === b) ? UTF8_BOM.length : 0;
  let at = recordStart;
  // The next line feed and quote at or after `at`; -1: none left; -2: not searched yet.
  let lineFeed = -2;
  let quote = -2;
  while (at < n) {
    if (lineFeed !== -1 && lineFeed < at) lineFeed = bytes.indexOf(LINE_FEED, at);
    if (lineFeed === -1) break;
    if (quote !== -1 && quote < at) quote = bytes.indexOf(QUOTE, at);
    if (quote !== -1 && quote < lineFeed) {
      const closing = bytes.indexOf(QUOTE, quote + 1);
      if (closing === -1) break; // the rest is inside quotes: one last record
      at = closing + 1;
      continue;
    }
    take(recordStart, lineFeed + 1);
    recordStart = lineFeed + 1;
    at = recordStart;
  }
  take(recordStart, n);
  if (current && run >= 0 && run < n) current.runs.push(bytes.subarray(run, n));
  return [...segments.values()];
}
