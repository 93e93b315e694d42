import { createHash } from 'node:crypto';
import type { Change, Column } from './change-event';

/**
 * Capture's heartbeat as it travels the whole pipeline, so that warehouse freshness is measured on
 * something that is committed on the source all the time, idle or not. Pure.
 *
 * Capture commits `pg_logical_emit_message(true, 'totes.heartbeat', <content>)` every interval. A
 * transactional message is decoded in the transaction that emitted it, i.e. only once it commits
 * (https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-REPLICATION), and
 * pgoutput sends it when started with `messages 'true'`
 * (https://www.postgresql.org/docs/current/protocol-logical-replication.html). Capture turns the
 * message of its own slot into one change of the pseudo table `_totes_heartbeat` (an `insert` with
 * the commit's LSN and timestamp), which then goes like any change: Kinesis → Firehose CSV →
 * transform → Parquet → load → the warehouse table `pipeline_heartbeat` (a dimension keyed by the
 * slot: the newest heartbeat wins by source position, whatever the order and repeats of delivery).
 *
 * Freshness = now − the commit time of the newest heartbeat loaded. It keeps growing when anything
 * on the way stops (the source, capture, Kinesis, Firehose, transform, load), which per-table
 * freshness cannot tell apart from an idle source.
 */

/** Prefix of the logical decoding messages capture emits as heartbeats. */
export const HEARTBEAT_PREFIX = 'totes.heartbeat';

/** The pseudo source table heartbeats travel as (no such table exists on the source). */
export const HEARTBEAT_SOURCE_TABLE = '_totes_heartbeat';

/** The warehouse table the heartbeats land in, one row per capture slot. */
export const HEARTBEAT_WAREHOUSE_TABLE = 'pipeline_heartbeat';

/**
 * The pseudo table's layout: which slot's capture committed it (the key is a number, as every
 * warehouse dimension key is: see heartbeatSlotId), and that capture's clock.
 */
export const HEARTBEAT_COLUMNS: readonly Column[] = [
  { name: 'slot_id', type: 'int4', key: true },
  { name: 'slot_name', type: 'text', key: false },
  { name: 'emitted_at', type: 'text', key: false },
];

/** A slot name as a positive int4: the first 31 bits of its SHA-256 (slot names are ≤ 63 bytes). */
export function heartbeatSlotId(slot: string): number {
  return createHash('sha256').update(slot, 'utf8').digest().readUInt32BE(0) >>> 1;
}

/** What capture writes as the message content. */
export interface HeartbeatContent {
  slot: string;
  /** Capture's clock when it emitted the message (ISO); the commit time is the source's. */
  emittedAt: string;
}

export function encodeHeartbeatContent(content: HeartbeatContent): string {
  return JSON.stringify(content);
}

/**
 * The content of a heartbeat message, or undefined when it is not one capture of this version wrote
 * (older captures wrote a bare timestamp; other tools may use the prefix too).
 */
export function decodeHeartbeatContent(text: string): HeartbeatContent | undefined {
  try {
    const value = JSON.parse(text) as Partial<HeartbeatContent> | null;
    if (value && typeof value.slot === 'string' && typeof value.emittedAt === 'string')
      return { slot: value.slot, emittedAt: value.emittedAt };
  } catch {
    // not JSON: not ours
  }
  return undefined;
}

/** The change a heartbeat message of `slot` becomes, at its transaction's position. */
export function heartbeatChange(
  content: HeartbeatContent,
  position: Pick<Change, 'lsn' | 'seq' | 'ts'>,
): Change {
  return {
    op: 'insert',
    lsn: position.lsn,
    seq: position.seq,
    ts: position.ts,
    values: [String(heartbeatSlotId(content.slot)), content.slot, content.emittedAt],
  };
}

/**
 * Seconds from the newest heartbeat commit loaded to `now`; null when none was ever loaded (which
 * the health model and the alarm treat as stale, not as healthy).
 */
export function heartbeatFreshnessSeconds(newestCommitTs: string | null, now: number): number | null {
  if (!newestCommitTs) return null;
  const at = Date.parse(newestCommitTs);
  if (Number.isNaN(at)) return null;
  return Math.max(0, (now - at) / 1000);
}
