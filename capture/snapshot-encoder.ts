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
  private readonly headerLength: number;
  private readonly prefix: Uint8Array;
  private readonly middle: Uint8Array;
  private readonly width: number;
  /**
   * The record being filled: the header, always at its start (a sealed record is copied out), then
   * while `open` the parts joined by commas up to `recordLength`. A change is encoded in place
   * after them and moved only when it starts a new record.
   */
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
    const header = Buffer.from(
      `{"v":${CHANGE_BATCH_VERSION},"epoch":${epoch},"schema":${JSON.stringify(schema)},"table":${JSON.stringify(table)},"columns":${JSON.stringify(columns)},"changes":[`,
    );
    this.headerLength = header.length;
    this.record = Buffer.allocUnsafe(Math.max(this.limits.maxRecordBytes, header.length) + 64 * 1024);
    header.copy(this.record, 0);
    // JSON.stringify({ op, lsn, seq, ts, values }) in pieces: the key order of a Change literal.
    this.prefix = Buffer.from(`{"op":"snapshot","lsn":${JSON.stringify(lsn)},"seq":`);
    this.middle = Buffer.from(`,"ts":${JSON.stringify(ts)},"values":[`);
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
    const base = this.open ? this.recordLength + 1 : this.headerLength;
    // Room for the row when no value needs escaping: each field grows by at most 3 bytes
    // (quotes and comma, or `\N` to `null` and comma); escaped values check for themselves.
    let buf = this.record;
    const room = base + this.prefix.length + this.middle.length + 24 + end + 3 * this.width + 8;
    if (room > buf.length) buf = this.grow(room, base);
    let at = base;
    const { prefix, middle } = this;
    for (let i = 0; i < prefix.length; i += 1) buf[at++] = prefix[i];
    at = writeDigits(buf, at, this.seq);
    for (let i = 0; i < middle.length; i += 1) buf[at++] = middle[i];
    let fields = 0;
    let start = 0;
    for (;;) {
      if (fields > 0) buf[at++] = COMMA;
      let stop: number;
      if (
        line[start] === BACKSLASH &&
        line[start + 1] === 0x4e &&
        (start + 2 === end || line[start + 2] === TAB)
      ) {
        stop = start + 2; // `\N`: NULL
        buf[at++] = 0x6e;
        buf[at++] = 0x75;
        buf[at++] = 0x6c;
        buf[at++] = 0x6c;
      } else {
        // Copied between quotes as it is scanned, unless a byte needs JSON escaping.
        const open = at;
        buf[at++] = QUOTE;
        let plain = true;
        let ascii = true;
        let i = start;
        for (; i < end; i += 1) {
          const b = line[i];
          if (b < 0x20 || b === QUOTE || b === BACKSLASH) {
            if (b === TAB) break;
            plain = false;
            while (i < end && line[i] !== TAB) i += 1;
            break;
          }
          if (b >= 0x80) ascii = false;
          buf[at++] = b;
        }
        stop = i;
        if (plain && !ascii && !isUtf8(line.subarray(start, stop))) plain = false;
        if (plain) buf[at++] = QUOTE;
        else {
          at = open;
          const json = JSON.stringify(decodeField(line, start, stop));
          const need = at + Buffer.byteLength(json) + room - base;
          if (need > buf.length) buf = this.grow(need, at);
          at += buf.write(json, at);
        }
      }
      fields += 1;
      if (stop >= end) break;
      start = stop + 1;
    }
    if (fields !== this.width)
      throw new CopyFormatError(`COPY row has ${fields} fields, expected ${this.width}`);
    buf[at++] = 0x5d; // ]
    buf[at++] = 0x7d; // }
    this.place(base, at - base, line, null);
  }

  /** Closes the table: its `snapshot_end` change, with the row count, through the same path. */
  end(): void {
    const { lsn, ts } = this.options;
    const change: Change = { op: 'snapshot_end', lsn, seq: this.seq, ts, values: [], rows: this.rows };
    const json = JSON.stringify(change);
    const base = this.open ? this.recordLength + 1 : this.headerLength;
    const need = base + Buffer.byteLength(json) + 8;
    if (need > this.record.length) this.grow(need, base);
    this.place(base, this.record.write(json, base), null, change);
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
    const bigger = Buffer.allocUnsafe(Math.max(need, this.record.length * 2));
    this.record.copy(bigger, 0, 0, keep);
    this.record = bigger;
    return bigger;
  }

  /**
   * The change just encoded at `record[base, base + length)` joins the open record, as
   * ChangeBatcher.add decides: an oversized one goes by claim check, a full record is sealed first
   * (and the change moved to the start of the next).
   */
  private place(base: number, length: number, line: Buffer | null, endChange: Change | null): void {
    const partBytes = length + 1;
    if (partBytes > this.maxInline / 2 && this.addOversized(endChange ?? this.rowChange(line!))) {
      this.counted(endChange);
      return;
    }
    let at = base;
    if (
      this.open &&
      (this.recordBytes + partBytes > this.limits.maxRecordBytes ||
        this.recordChanges >= this.limits.maxChangesPerRecord)
    ) {
      this.seal();
      this.record.copyWithin(this.headerLength, base, base + length);
      at = this.headerLength;
    }
    if (this.open) this.record[this.recordLength] = COMMA;
    else {
      this.open = true;
      this.recordBytes = this.headerLength + 2;
      this.recordChanges = 0;
      this.recordLength = this.headerLength;
      // The record's first change: its key, decoded once a record.
      this.partitionKey = partitionKeyFor(
        this.options.table,
        this.options.columns,
        endChange ?? this.rowChange(line!),
      );
    }
    this.recordLength = at + length;
    this.recordBytes += partBytes;
    this.recordChanges += 1;
    this.counted(endChange);
  }

  private counted(endChange: Change | null): void {
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

  /** Copies the open record out (the buffer keeps its header for the next). */
  private seal(): void {
    const data = Buffer.allocUnsafe(this.recordLength + 2);
    this.record.copy(data, 0, 0, this.recordLength);
    data[this.recordLength] = 0x5d; // ]
    data[this.recordLength + 1] = 0x7d; // }
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

/** A non-negative integer's decimal digits (what JSON.stringify writes for it). */
function writeDigits(buf: Buffer, at: number, value: number): number {
  let digits = 1;
  for (let rest = value; rest >= 10; rest = Math.floor(rest / 10)) digits += 1;
  let rest = value;
  for (let i = at + digits - 1; i >= at; i -= 1) {
    buf[i] = 0x30 + (rest % 10);
    rest = Math.floor(rest / 10);
  }
  return at + digits;
}

/** One field of a COPY text line, decoded (escapes, NULL is handled by the caller). */
function decodeField(line: Buffer, start: number, stop: number): string {
  return parseCopyTextRow(line.subarray(start, stop), 1)[0] as string;
}
