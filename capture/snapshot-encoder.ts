import { isUtf8 } from 'node:buffer';
import { CHANGE_BATCH_VERSION, type Change, type Column } from '../core/change-event';
import { MAX_INLINE_CHANGE_BYTES } from '../core/oversized-change';
import {
  ChangeBatcher,
  DEFAULT_BATCHER_LIMITS,
  partitionKeyFor,
  type BatchRecord,
  type ChangeBatcherLimits,
} from './change-batcher';
import { CopyFormatError, parseCopyTextRow } from './copy-text';

/**
 * One table's snapshot rows, straight from `COPY … TO STDOUT` text lines into Kinesis records,
 * byte for byte what ChangeBatcher makes of the same rows (same JSON per change, same sealing by
 * bytes and changes, same partition keys, oversized rows by the same claim check) — without the
 * per-row strings, arrays and objects that cost ChangeBatcher.add most of its time.
 *
 * A COPY text field that holds no backslash (no escape), no `"` and no control character is, byte
 * for byte, the inside of its JSON string (https://www.rfc-editor.org/rfc/rfc8259#section-7), so
 * it is copied as is; the rest (escapes, quotes, control characters, non-UTF-8 bytes) are decoded
 * and given to JSON.stringify. One pass over the line, no string for the common field.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const TAB = 0x09;
const NEWLINE = 0x0a;
const COMMA = 0x2c;

export interface SnapshotEncoderOptions {
  schema: string;
  table: string;
  columns: readonly Column[];
  /** What every row carries: the snapshot's position and transaction time. */
  lsn: string;
  ts: string;
  epoch: number;
  /** The seq of this table's first row (ordinals run across the whole snapshot). */
  firstSeq: number;
  limits?: ChangeBatcherLimits;
}

export class SnapshotEncoder {
  /** Rows added so far (what `snapshot_end` reports). */
  rows = 0;
  private seq: number;
  private readonly limits: ChangeBatcherLimits;
  private readonly maxInline: number;
  private readonly header: Buffer;
  private readonly prefix: Buffer;
  private readonly middle: Buffer;
  private readonly width: number;
  /** The change being encoded; grown when a row does not fit. */
  private part: Buffer = Buffer.allocUnsafe(64 * 1024);
  /** The open record (header, parts joined by commas) while `open`; the buffer is reused. */
  private record: Buffer;
  private open = false;
  private recordLength = 0;
  /** ChangeBatcher's count for the open record: header, `]}` and each part plus one. */
  private recordBytes = 0;
  private recordChanges = 0;
  private partitionKey = '';
  private sealed: BatchRecord[] = [];
  private sealedBytes = 0;

  constructor(private readonly options: SnapshotEncoderOptions) {
    this.limits = options.limits ?? DEFAULT_BATCHER_LIMITS;
    this.maxInline = this.limits.maxInlineChangeBytes ?? MAX_INLINE_CHANGE_BYTES;
    this.seq = options.firstSeq;
    this.width = options.columns.length;
    const { schema, table, columns, lsn, ts, epoch } = options;
    this.header = Buffer.from(
      `{"v":${CHANGE_BATCH_VERSION},"epoch":${epoch},"schema":${JSON.stringify(schema)},"table":${JSON.stringify(table)},"columns":${JSON.stringify(columns)},"changes":[`,
    );
    // JSON.stringify({ op, lsn, seq, ts, values }) in pieces: the key order of a Change literal.
    this.prefix = Buffer.from(`{"op":"snapshot","lsn":${JSON.stringify(lsn)},"seq":`);
    this.middle = Buffer.from(`,"ts":${JSON.stringify(ts)},"values":[`);
    this.record = Buffer.allocUnsafe(Math.max(this.limits.maxRecordBytes, this.header.length) + 64);
  }

  /** Bytes held, sealed or not (ChangeBatcher.byteCount). */
  get byteCount(): number {
    return this.sealedBytes + (this.open ? this.recordBytes : 0);
  }

  /** The next seq this encoder gives (after `end`, the table's last plus one). */
  get nextSeq(): number {
    return this.seq;
  }

  /** One row: one CopyData message of COPY's text format (the line, with or without its newline). */
  addCopyRow(line: Buffer): void {
    let end = line.length;
    if (end > 0 && line[end - 1] === NEWLINE) end -= 1;
    let part = this.part;
    // Room for the fixed pieces and the seq; values are checked as they are written.
    let at = this.prefix.copy(part, 0);
    at += part.write(String(this.seq), at, 'latin1');
    at += this.middle.copy(part, at);
    let fields = 0;
    let start = 0;
    for (;;) {
      let stop = start;
      while (stop < end && line[stop] !== TAB) stop += 1;
      // A field: `\N` is NULL; otherwise copied between quotes unless a byte needs JSON escaping.
      if (fields > 0) part[at++] = COMMA;
      const need = at + (stop - start) + 8;
      if (need > part.length) part = this.grow(need, at);
      if (stop - start === 2 && line[start] === BACKSLASH && line[start + 1] === 0x4e) {
        part[at++] = 0x6e; // null
        part[at++] = 0x75;
        part[at++] = 0x6c;
        part[at++] = 0x6c;
      } else {
        const open = at;
        part[at++] = QUOTE;
        let plain = true;
        let ascii = true;
        for (let i = start; i < stop; i += 1) {
          const b = line[i];
          if (b === BACKSLASH || b === QUOTE || b < 0x20) {
            plain = false;
            break;
          }
          if (b >= 0x80) ascii = false;
          part[at++] = b;
        }
        if (plain && !ascii && !isUtf8(line.subarray(start, stop))) plain = false;
        if (plain) part[at++] = QUOTE;
        else {
          at = open;
          const json = JSON.stringify(decodeField(line, start, stop));
          const bytes = Buffer.byteLength(json);
          if (at + bytes + 8 > part.length) part = this.grow(at + bytes + 8, at);
          at += part.write(json, at);
        }
      }
      fields += 1;
      if (stop >= end) break;
      start = stop + 1;
    }
    if (fields !== this.width)
      throw new CopyFormatError(`COPY row has ${fields} fields, expected ${this.width}`);
    part[at++] = 0x5d; // ]
    part[at++] = 0x7d; // }
    this.addPart(at, line);
  }

  /** Closes the table: its `snapshot_end` change, with the row count, through the same path. */
  end(): void {
    const { lsn, ts } = this.options;
    const change: Change = { op: 'snapshot_end', lsn, seq: this.seq, ts, values: [], rows: this.rows };
    const json = JSON.stringify(change);
    const bytes = Buffer.byteLength(json);
    if (bytes > this.part.length) this.part = Buffer.allocUnsafe(bytes);
    this.addPart(this.part.write(json, 0), null, change);
  }

  /** Seals the open record and hands over every sealed one (ChangeBatcher.drain). */
  drain(): BatchRecord[] {
    if (this.open) this.seal();
    const out = this.sealed;
    this.sealed = [];
    this.sealedBytes = 0;
    return out;
  }

  private grow(need: number, keep: number): Buffer {
    const bigger = Buffer.allocUnsafe(Math.max(need, this.part.length * 2));
    this.part.copy(bigger, 0, 0, keep);
    this.part = bigger;
    return bigger;
  }

  /**
   * The part (`this.part[0, length)`) joins the open record, as ChangeBatcher.add: an oversized
   * one goes by claim check, a full record is sealed first.
   */
  private addPart(length: number, line: Buffer | null, endChange?: Change): void {
    const partBytes = length + 1;
    const change = () => endChange ?? this.rowChange(line!);
    if (partBytes > this.maxInline / 2 && this.addOversized(change())) {
      this.afterAdd(endChange);
      return;
    }
    if (
      this.open &&
      (this.recordBytes + partBytes > this.limits.maxRecordBytes ||
        this.recordChanges >= this.limits.maxChangesPerRecord)
    )
      this.seal();
    if (!this.open) {
      this.open = true;
      this.recordLength = this.header.copy(this.record, 0);
      this.recordBytes = this.header.length + 2;
      this.recordChanges = 0;
      this.partitionKey = partitionKeyFor(this.options.table, this.options.columns, change());
    }
    const need = this.recordLength + partBytes + 2;
    if (need > this.record.length) {
      const bigger = Buffer.allocUnsafe(Math.max(need, this.record.length * 2));
      this.record.copy(bigger, 0, 0, this.recordLength);
      this.record = bigger;
    }
    if (this.recordChanges > 0) this.record[this.recordLength++] = COMMA;
    this.recordLength += this.part.copy(this.record, this.recordLength, 0, length);
    this.recordBytes += partBytes;
    this.recordChanges += 1;
    this.afterAdd(endChange);
  }

  private afterAdd(endChange: Change | undefined): void {
    this.seq += 1;
    if (!endChange) this.rows += 1;
  }

  private rowChange(line: Buffer): Change {
    const { lsn, ts } = this.options;
    return { op: 'snapshot', lsn, seq: this.seq, ts, values: parseCopyTextRow(line, this.width) };
  }

  /**
   * ChangeBatcher's claim check for a change too big for a record: a batcher of the same limits
   * and epoch seals it alone (pointer record plus payload), or declines when it fits after all.
   */
  private addOversized(change: Change): boolean {
    const batcher = new ChangeBatcher(this.limits);
    batcher.epoch = this.options.epoch;
    const { schema, table, columns } = this.options;
    batcher.add(schema, table, columns, change);
    if (batcher.sealedRecordCount === 0) return false;
    this.sealedBytes += batcher.sealedByteCount;
    this.sealed.push(...batcher.takeSealed());
    return true;
  }

  private seal(): void {
    const record = this.record;
    record[this.recordLength++] = 0x5d; // ]
    record[this.recordLength++] = 0x7d; // }
    const data = Buffer.allocUnsafe(this.recordLength);
    record.copy(data, 0, 0, this.recordLength);
    this.sealed.push({
      partitionKey: this.partitionKey,
      data,
      table: this.options.table,
      changes: this.recordChanges,
    });
    this.sealedBytes += data.length;
    this.open = false;
  }
}

/** One field of a COPY text line, decoded (escapes, NULL is handled by the caller). */
function decodeField(line: Buffer, start: number, stop: number): string {
  return parseCopyTextRow(line.subarray(start, stop), 1)[0] as string;
}
