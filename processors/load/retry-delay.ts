/**
 * How soon a queued load whose object failed should be tried again.
 *
 * A failed load message returns to the queue after the queue's visibility timeout: 30 minutes in
 * AWS (six times the function timeout, as Lambda asks of an SQS event source), so that a warehouse
 * outage of `maxReceiveCount` × 30 minutes drains by itself. That is right for a warehouse that is
 * down, and far too long for one that is merely busy: a load that waited behind another load's
 * transaction (a large snapshot object holds its fact table's lock for the whole object) until the
 * statement timeout, or lost a deadlock more often than it retries in place, would otherwise add 30
 * minutes of staleness to its table. For those the handler shortens the message's visibility
 * (SQS ChangeMessageVisibility) to a delay that grows with the receive count, jittered so that
 * loads that collided once do not collide again.
 * https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html
 */

/**
 * SQLSTATEs of a warehouse that is busy rather than down: lock_not_available (a lock wait past the
 * load session's lock_timeout, handler.ts), deadlock_detected, serialization_failure. Not 57014
 * (statement timeout): that is also a statement of the object's own that is too slow, which
 * retried every few seconds would hold its fact table's lock again and again.
 * https://www.postgresql.org/docs/current/errcodes-appendix.html
 */
export const BUSY_SQLSTATES: ReadonlySet<string> = new Set(['55P03', '40P01', '40001']);

/** The first delay, doubled on each further receive up to BUSY_RETRY_MAX_SECONDS. */
export const BUSY_RETRY_FIRST_SECONDS = 15;
/** Ten minutes: a hundred receives (the default maxReceiveCount) still span more than 15 hours. */
export const BUSY_RETRY_MAX_SECONDS = 600;

/** The SQLSTATE anywhere on the error's cause chain (node-postgres puts it in `code`). */
export function sqlStateInChain(error: unknown): string | undefined {
  for (let e = error, depth = 0; e && typeof e === 'object' && depth < 8; depth += 1) {
    const code = (e as { code?: unknown }).code;
    // Five characters with a digit: every SQLSTATE; not errno names such as EPIPE.
    if (typeof code === 'string' && /^(?=.*\d)[0-9A-Z]{5}$/.test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Seconds until the message should be handed out again, or undefined to leave it to the queue's
 * visibility timeout (anything but a busy warehouse: unreachable, refused, a bug).
 * `receiveCount` is SQS's ApproximateReceiveCount of this receive (1 the first time).
 * `maxReceiveCount`, the queue's redrive policy: only the first half of the receives come back
 * sooner, so a warehouse busy for long still takes its second half 30 minutes apart before the
 * dead-letter queue (with 5 receives: 2 sooner, then 3 × 30 minutes), as docs/deploy.md says.
 */
export function loadRetryDelaySeconds(
  error: unknown,
  receiveCount: number | undefined,
  maxReceiveCount?: number,
  random: () => number = Math.random,
): number | undefined {
  const state = sqlStateInChain(error);
  if (!state || !BUSY_SQLSTATES.has(state)) return undefined;
  if (maxReceiveCount !== undefined && (receiveCount ?? 1) > Math.floor(maxReceiveCount / 2))
    return undefined;
  const doublings = Math.max(0, Math.min((receiveCount ?? 1) - 1, 16));
  const base = Math.min(BUSY_RETRY_FIRST_SECONDS * 2 ** doublings, BUSY_RETRY_MAX_SECONDS);
  // Up to half as much again, at random.
  return Math.round(base * (1 + random() / 2));
}
