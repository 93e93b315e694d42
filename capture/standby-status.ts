import { lsnToBigInt, type Lsn } from '../core/lsn';

/**
 * The Standby Status Update capture sends on its replication connection to confirm what is durably
 * delivered: Byte1('r'), then Int64 WAL positions written, flushed and applied, the client's clock
 * as Int64 microseconds since 2000-01-01 00:00 UTC, and Byte1 "reply now".
 * https://www.postgresql.org/docs/current/protocol-replication.html#PROTOCOL-REPLICATION-STANDBY-STATUS-UPDATE
 *
 * Written here rather than by pg-logical-replication (2.5.0), whose acknowledge() takes the Postgres
 * epoch as 946080000000 ms (a week early: it is 946684800000) and writes the low half of the clock
 * in milliseconds instead of microseconds, so `pg_stat_replication.reply_time` read about seven days
 * in the future. Its positions are the LSN plus one; these are exactly the LSN given.
 */

/** 2000-01-01T00:00:00Z in Unix milliseconds: Postgres' timestamp epoch. */
export const POSTGRES_EPOCH_MS = Date.UTC(2000, 0, 1);

export function encodeStandbyStatusUpdate(lsn: Lsn, nowMs: number, replyRequested = false): Buffer {
  const position = lsnToBigInt(lsn);
  const message = Buffer.alloc(34);
  message.write('r', 0, 'latin1');
  message.writeBigUInt64BE(position, 1); // written
  message.writeBigUInt64BE(position, 9); // flushed
  message.writeBigUInt64BE(position, 17); // applied
  message.writeBigInt64BE(BigInt(Math.round((nowMs - POSTGRES_EPOCH_MS) * 1000)), 25);
  message.writeUInt8(replyRequested ? 1 : 0, 33);
  return message;
}
