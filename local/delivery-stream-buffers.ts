/**
 * The delivery stream's pure decisions, apart from its I/O loop: which records go into which object
 * and when an object is due (Firehose's buffering hints, per partition), and how far each shard's
 * checkpoint may advance (only past records that are durable in S3, in shard order).
 */

/**
 * Firehose's buffering hints: an object is written when its partition's buffer reaches `sizeBytes`
 * or its first record has waited `intervalMs`, whichever comes first.
 * https://docs.aws.amazon.com/firehose/latest/dev/buffering-hints.html
 */
export interface BufferingHints {
  sizeBytes: number;
  intervalMs: number;
}

/** One source record on its way to S3; `done` once its object (or error object) is written. */
export interface PendingRecord {
  readonly shardId: string;
  readonly sequenceNumber: string;
  done: boolean;
}

export type BufferKind = 'data' | 'error';

/** A buffer taken out for writing as one object. */
export interface SealedBuffer {
  prefix: string;
  kind: BufferKind;
  body: Buffer;
  records: PendingRecord[];
  /** Shard and sequence number of the first record, for the object's name. */
  first: { shardId: string; sequenceNumber: string };
}

interface OpenBuffer {
  prefix: string;
  kind: BufferKind;
  chunks: Uint8Array[];
  bytes: number;
  records: PendingRecord[];
  openedAtMs: number;
}

export class DeliveryBuffers {
  private readonly open = new Map<string, OpenBuffer>();

  constructor(private readonly hints: BufferingHints) {}

  /**
   * Adds one record's bytes to the buffer of `prefix`. Returns the buffers to write now: the old
   * one if this record would have pushed it past the size hint (so objects stay within the hint
   * unless one record alone exceeds it), and this one if it reached the hint.
   */
  add(
    prefix: string,
    kind: BufferKind,
    bytes: Uint8Array,
    record: PendingRecord,
    nowMs: number,
  ): SealedBuffer[] {
    const out: SealedBuffer[] = [];
    let buffer = this.open.get(prefix);
    if (buffer && buffer.bytes + bytes.byteLength > this.hints.sizeBytes) {
      out.push(this.seal(buffer));
      buffer = undefined;
    }
    if (!buffer) {
      buffer = { prefix, kind, chunks: [], bytes: 0, records: [], openedAtMs: nowMs };
      this.open.set(prefix, buffer);
    }
    buffer.chunks.push(bytes);
    buffer.bytes += bytes.byteLength;
    buffer.records.push(record);
    if (buffer.bytes >= this.hints.sizeBytes) out.push(this.seal(buffer));
    return out;
  }

  /** Buffers whose first record has waited the interval hint. */
  due(nowMs: number): SealedBuffer[] {
    return [...this.open.values()]
      .filter((b) => nowMs - b.openedAtMs >= this.hints.intervalMs)
      .map((b) => this.seal(b));
  }

  /** Everything held, for a shutdown. */
  drain(): SealedBuffer[] {
    return [...this.open.values()].map((b) => this.seal(b));
  }

  /** When the next buffer falls due, if any is open. */
  nextDueMs(): number | undefined {
    let next: number | undefined;
    for (const b of this.open.values()) {
      const due = b.openedAtMs + this.hints.intervalMs;
      if (next === undefined || due < next) next = due;
    }
    return next;
  }

  stats(nowMs: number): { records: number; bytes: number; oldestAgeMs: number; partitions: number } {
    let records = 0;
    let bytes = 0;
    let oldestAgeMs = 0;
    for (const b of this.open.values()) {
      records += b.records.length;
      bytes += b.bytes;
      oldestAgeMs = Math.max(oldestAgeMs, nowMs - b.openedAtMs);
    }
    return { records, bytes, oldestAgeMs, partitions: this.open.size };
  }

  private seal(buffer: OpenBuffer): SealedBuffer {
    this.open.delete(buffer.prefix);
    const first = buffer.records[0];
    return {
      prefix: buffer.prefix,
      kind: buffer.kind,
      body: Buffer.concat(buffer.chunks),
      records: buffer.records,
      first: { shardId: first.shardId, sequenceNumber: first.sequenceNumber },
    };
  }
}

/**
 * Per shard, the records read but not yet durable, in read order. A shard's checkpoint moves to the
 * last record of the longest all-done run at the front of its queue, never past a record that is
 * still buffered: records of one shard land in different partitions and objects, written in any order.
 */
export class ShardCheckpoints {
  private readonly queues = new Map<string, PendingRecord[]>();
  private readonly positions: Map<string, string>;

  constructor(initial: ReadonlyMap<string, string> = new Map()) {
    this.positions = new Map(initial);
  }

  track(shardId: string, sequenceNumber: string): PendingRecord {
    const record: PendingRecord = { shardId, sequenceNumber, done: false };
    let queue = this.queues.get(shardId);
    if (!queue) this.queues.set(shardId, (queue = []));
    queue.push(record);
    return record;
  }

  /** Moves every shard's position past its done prefix; true if any moved. */
  advance(): boolean {
    let moved = false;
    for (const [shardId, queue] of this.queues) {
      let i = 0;
      while (i < queue.length && queue[i].done) i++;
      if (i === 0) continue;
      this.positions.set(shardId, queue[i - 1].sequenceNumber);
      queue.splice(0, i);
      moved = true;
    }
    return moved;
  }

  position(shardId: string): string | undefined {
    return this.positions.get(shardId);
  }

  snapshot(): ReadonlyMap<string, string> {
    return new Map(this.positions);
  }

  pending(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.length;
    return n;
  }
}
