/**
 * When is a running capture stuck alive? Pure decisions, unit-tested without a database; the
 * capture service feeds them what happened and acts on the verdict (it fails, so ECS or `totes up`'s
 * supervisor restarts it from the slot's confirmed position — nothing is lost by failing).
 *
 * Two ways to hang that no error reveals:
 * - the sink stops answering: a PutRecords that never returns leaves work pending while nothing is
 *   confirmed (the request timeout should end it; this is the net under that);
 * - the replication connection goes silent: Postgres sends a keepalive at least every
 *   wal_sender_timeout / 2 while the connection is healthy, so hearing nothing for much longer —
 *   while we are reading — means the connection is dead without a TCP error (a half-open socket,
 *   a NAT that dropped it).
 * https://www.postgresql.org/docs/current/runtime-config-replication.html#GUC-WAL-SENDER-TIMEOUT
 */

export interface LivenessLimits {
  /** Work pending and no progress for this long: the sink is stuck. */
  stallTimeoutMs: number;
  /** Nothing heard from the server for this long while reading: the connection is dead. */
  silenceTimeoutMs: number;
}

export interface LivenessFacts {
  now: number;
  /** Flushes handed to the sink and not yet finished, or changes waiting to be flushed. */
  workPending: boolean;
  /** When work last made progress: a flush finished, or work became pending. */
  lastProgressAt: number;
  /** When the server last sent anything (data or keepalive). */
  lastServerMessageAt: number;
  /** Reading is paused for backpressure: the server's silence is ours, not its. */
  paused: boolean;
}

export type LivenessVerdict = { ok: true } | { ok: false; reason: string };

export function assessLiveness(facts: LivenessFacts, limits: LivenessLimits): LivenessVerdict {
  const stalledFor = facts.now - facts.lastProgressAt;
  if (facts.workPending && stalledFor > limits.stallTimeoutMs)
    return {
      ok: false,
      reason:
        `no progress for ${Math.round(stalledFor / 1000)} s with changes pending: the sink is not answering ` +
        `(stall timeout ${Math.round(limits.stallTimeoutMs / 1000)} s); restarting from the last confirmed position`,
    };
  const silentFor = facts.now - facts.lastServerMessageAt;
  if (!facts.paused && silentFor > limits.silenceTimeoutMs)
    return {
      ok: false,
      reason:
        `nothing heard from the source's replication connection for ${Math.round(silentFor / 1000)} s ` +
        `(it sends keepalives every wal_sender_timeout / 2): the connection is dead; reconnecting`,
    };
  return { ok: true };
}

/**
 * The silence limit for a server whose wal_sender_timeout is `walSenderTimeoutMs` (0 = disabled):
 * well over it, so one late keepalive is not an outage.
 */
export function silenceTimeoutFor(walSenderTimeoutMs: number, floorMs = 30_000): number {
  return walSenderTimeoutMs > 0 ? Math.max(floorMs, 3 * walSenderTimeoutMs) : Infinity;
}
