import {
  carriesNoValues,
  CHANGE_BATCH_VERSION,
  POINTER_BATCH_VERSION,
  type Change,
  type Column,
} from '../core/change-event';
import {
  csvLineBytes,
  describeChange,
  isOversized,
  MAX_INLINE_CHANGE_BYTES,
  oversizedObjectKey,
  pointerChange,
} from '../core/oversized-change';
import type { OversizedPayload } from './kinesis-sink';

/**
 * Packs change events into Kinesis records: one record = one ChangeBatch (one table, one column
 * layout) of up to `maxRecordBytes`. Pure and synchronous; the capture loop decides when to seal.
 *
 * Each change is serialised once, when it is added, and the record text is assembled from the
 * pieces, so the byte count that drives sealing is exact and no event is encoded twice.
 *
 * A change too big for any record (`maxInlineChangeBytes`) goes by claim check
 * (core/oversized-change.ts): its whole event becomes an `oversized` payload of a record of its own
 * that carries only a pointer, and the sink stores the payload before it sends the record.
 */

export interface BatchRecord {
  partitionKey: string;
  data: Buffer;
  table: string;
  changes: number;
  /** Events of oversized changes the record points to: stored before the record is sent. */
  oversized?: OversizedPayload[];
}

export interface ChangeBatcherLimits {
  /** Kinesis takes records up to 1 MiB; smaller records keep Firehose transform invocations small. */
  maxRecordBytes: number;
  maxChangesPerRecord: number;
  /**
   * A change whose record alone would be bigger goes by claim check (core/oversized-change.ts);
   * default MAX_INLINE_CHANGE_BYTES.
   */
  maxInlineChangeBytes?: number;
}

export const DEFAULT_BATCHER_LIMITS: ChangeBatcherLimits = {
  maxRecordBytes: 256 * 1024,
  maxChangesPerRecord: 2000,
  maxInlineChangeBytes: MAX_INLINE_CHANGE_BYTES,
};

const COMMA = 0x2c;
const CLOSE_BRACKET = 0x5d;
const CLOSE_BRACE = 0x7d;
const latin1Write = (b: Buffer, text: string, at: number) => b.write(text, at, 'latin1');
const utf8Write = (b: Buffer, text: string, at: number) => b.write(text, at, 'utf8');

/** Kinesis partition keys are at most 256 Unicode characters. */
const MAX_PARTITION_KEY_CHARS = 256;

interface OpenBatch {
  table: string;
  partitionKey: string;
  header: string;
  /** Each change's JSON. */
  parts: string[];
  changes: number;
  bytes: number;
  /** Every character is ASCII (bytes = characters): the record is then written as Latin-1, a copy. */
  ascii: boolean;
}

interface Layout {
  json: string;
  id: number;
  /** The last table added with this layout, and its open-batch key. */
  schema?: string;
  table?: string;
  slot?: string;
}

export class ChangeBatcher {
  private readonly open = new Map<string, OpenBatch>();
  /**
   * Column layouts by array identity (callers reuse one array per table layout), with a small id
   * per distinct JSON so equal layouts from different arrays still share a batch.
   */
  private readonly layouts = new WeakMap<readonly Column[], Layout>();
  private readonly layoutIds = new Map<string, number>();
  private sealed: BatchRecord[] = [];
  private sealedBytes = 0;
  private openBytes = 0;
  private openChanges = 0;

  /**
   * The capture generation every batch names in its header (core/change-event.ts). Set it before
   * adding changes of a new generation; open batches keep the epoch they were opened with, so
   * drain first.
   */
  epoch = 0;

  private readonly maxInlineChangeBytes: number;
  private readonly prefix = { op: '', lsn: '', ts: '', head: '', middle: '' };

  constructor(private readonly limits: ChangeBatcherLimits = DEFAULT_BATCHER_LIMITS) {
    this.maxInlineChangeBytes = limits.maxInlineChangeBytes ?? MAX_INLINE_CHANGE_BYTES;
  }

  /**
   * `valuesJson`, when given, must be JSON.stringify(change.values) (the stream's parser writes it
   * for values that need no escaping, capture/pgoutput-rows.ts).
   */
  add(schema: string, table: string, columns: readonly Column[], change: Change, valuesJson?: string): void {
    const layout = this.layoutOf(columns);
    const slot =
      layout.slot === undefined || layout.schema !== schema || layout.table !== table
        ? this.slotOf(layout, schema, table)
        : layout.slot;
    const part = this.serialise(change, valuesJson);
    const partBytes = Buffer.byteLength(part) + 1;
    if (partBytes > this.maxInlineChangeBytes / 2 && this.addOversized(schema, table, columns, change, part))
      return;
    let batch = this.open.get(slot);
    if (
      batch &&
      (batch.bytes + partBytes > this.limits.maxRecordBytes ||
        batch.changes >= this.limits.maxChangesPerRecord)
    ) {
      this.seal(slot, batch);
      batch = undefined;
    }
    if (!batch) {
      const header = this.header(CHANGE_BATCH_VERSION, schema, table, layout.json);
      const headerBytes = Buffer.byteLength(header);
      batch = {
        table,
        partitionKey: partitionKeyFor(table, columns, change),
        header,
        parts: [],
        changes: 0,
        bytes: headerBytes + 2,
        ascii: headerBytes === header.length,
      };
      this.open.set(slot, batch);
      this.openBytes += batch.bytes;
    }
    batch.parts.push(part);
    if (partBytes !== part.length + 1) batch.ascii = false;
    batch.changes += 1;
    batch.bytes += partBytes;
    this.openBytes += partBytes;
    this.openChanges += 1;
  }

  /**
   * A change's JSON, as JSON.stringify(change) writes it. The changes of one transaction (or one
   * snapshot) share op, lsn and ts, so the text around seq is built once per run of them and only
   * seq and the values are written per change: JSON.stringify of the whole object was most of
   * add()'s cost (bench/batcher.ts). Anything but the plain five fields goes through
   * JSON.stringify, so optional fields keep their order and presence exactly.
   */
  private serialise(change: Change, valuesJson: string | undefined): string {
    if (
      change.unchanged !== undefined ||
      change.rows !== undefined ||
      change.ref !== undefined ||
      change.epoch !== undefined
    )
      return JSON.stringify(change);
    const cache = this.prefix;
    if (cache.op !== change.op || cache.lsn !== change.lsn || cache.ts !== change.ts) {
      cache.op = change.op;
      cache.lsn = change.lsn;
      cache.ts = change.ts;
      cache.head = `{"op":${JSON.stringify(change.op)},"lsn":${JSON.stringify(change.lsn)},"seq":`;
      cache.middle = `,"ts":${JSON.stringify(change.ts)},"values":`;
    }
    return `${cache.head}${change.seq}${cache.middle}${valuesJson ?? JSON.stringify(change.values)}}`;
  }

  /** The open-batch key of a table and layout, kept on the layout for the next change. */
  private slotOf(layout: Layout, schema: string, table: string): string {
    layout.schema = schema;
    layout.table = table;
    layout.slot = `${schema}\u0000${table}\u0000${layout.id}`;
    return layout.slot;
  }

  private header(v: number, schema: string, table: string, layout: string): string {
    return `{"v":${v},"epoch":${this.epoch},"schema":${JSON.stringify(schema)},"table":${JSON.stringify(table)},"columns":${layout},"changes":[`;
  }

  /**
   * Seals a record holding only the change's pointer, with the change's whole event (the record it
   * would have been alone) as its payload, when that record is too big; false when it fits.
   */
  private addOversized(
    schema: string,
    table: string,
    columns: readonly Column[],
    change: Change,
    part: string,
  ): boolean {
    if (carriesNoValues(change.op)) return false;
    const layout = this.layoutOf(columns).json;
    const body = Buffer.from(`${this.header(CHANGE_BATCH_VERSION, schema, table, layout)}${part}]}`, 'utf8');
    const recordBytes = body.length + Buffer.byteLength(partitionKeyFor(table, columns, change));
    const withEpoch = { ...change, epoch: this.epoch };
    const csvBytes = () =>
      csvLineBytes({ epoch: this.epoch, schema, table, columns: [...columns] }, withEpoch);
    if (!isOversized(recordBytes, csvBytes, this.maxInlineChangeBytes)) return false;
    const key = oversizedObjectKey(table, body);
    const pointer = pointerChange(columns, change, key);
    const data = Buffer.from(
      `${this.header(POINTER_BATCH_VERSION, schema, table, layout)}${JSON.stringify(pointer)}]}`,
      'utf8',
    );
    this.sealed.push({
      partitionKey: partitionKeyFor(table, columns, pointer),
      data,
      table,
      changes: 1,
      oversized: [{ key, body, change: describeChange(table, columns, withEpoch), bytes: recordBytes }],
    });
    // The payload is held until the flush too: it counts towards the bytes that trigger one.
    this.sealedBytes += data.length + body.length;
    return true;
  }

  private layoutOf(columns: readonly Column[]): Layout {
    let layout = this.layouts.get(columns);
    if (!layout) {
      const json = JSON.stringify(columns);
      let id = this.layoutIds.get(json);
      if (id === undefined) {
        id = this.layoutIds.size;
        this.layoutIds.set(json, id);
      }
      layout = { json, id };
      this.layouts.set(columns, layout);
    }
    return layout;
  }

  /** Bytes of records sealed and not yet taken. */
  get sealedByteCount(): number {
    return this.sealedBytes;
  }

  get sealedRecordCount(): number {
    return this.sealed.length;
  }

  /** Bytes held in total, sealed or not: what the capture loop compares with its flush threshold. */
  get byteCount(): number {
    return this.sealedBytes + this.openBytes;
  }

  /** Changes still in open (unsealed) batches. */
  get openChangeCount(): number {
    return this.openChanges;
  }

  get isEmpty(): boolean {
    return this.sealed.length === 0 && this.open.size === 0;
  }

  /** Seals every open batch and hands over all sealed records. */
  drain(): BatchRecord[] {
    for (const [slot, batch] of this.open) this.seal(slot, batch);
    return this.takeSealed();
  }

  /** Hands over only the records already sealed (full ones), leaving open batches to fill. */
  takeSealed(): BatchRecord[] {
    const out = this.sealed;
    this.sealed = [];
    this.sealedBytes = 0;
    return out;
  }

  private seal(slot: string, batch: OpenBatch): void {
    this.open.delete(slot);
    this.openBytes -= batch.bytes;
    this.openChanges -= batch.changes;
    // The exact size is known (the bytes counted as changes were added, less the first change's
    // comma): each piece is written in place, with no joined string to build and encode again.
    // Latin-1 is a plain copy, right only for ASCII text; UTF-8 otherwise.
    const data = Buffer.allocUnsafe(batch.bytes - 1);
    const write = batch.ascii ? latin1Write : utf8Write;
    let at = write(data, batch.header, 0);
    const { parts } = batch;
    for (let i = 0; i < parts.length; i++) {
      if (i > 0) data[at++] = COMMA;
      at += write(data, parts[i], at);
    }
    data[at++] = CLOSE_BRACKET;
    data[at] = CLOSE_BRACE;
    this.sealed.push({
      partitionKey: batch.partitionKey,
      data,
      table: batch.table,
      changes: batch.changes,
    });
    this.sealedBytes += data.length;
  }
}

/**
 * Table plus the first change's primary key: spreads a table's records over the shards (ordering
 * across records is restored downstream from each change's position, so no per-key shard affinity
 * is needed). Truncates, which have no key, use the table alone.
 */
export function partitionKeyFor(table: string, columns: readonly Column[], change: Change): string {
  const key = columns
    .flatMap((c, i) => (c.key && change.values[i] != null ? [change.values[i]] : []))
    .join(',');
  return (key ? `${table}:${key}` : table).slice(0, MAX_PARTITION_KEY_CHARS);
}
