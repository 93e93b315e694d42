/**
 * How long capture waits after a commit for more changes before it flushes what it holds.
 *
 * A short linger keeps a lone change's latency low; under load it makes many small records — one
 * per table per window — and every record costs the same again in each stage that handles records
 * (the PutRecords call, Kinesis, the Firehose record transformation). At 10,000 changes/s a 20 ms
 * window holds ~200 changes, ~3 records; a fixed 100 ms halved the records, cut capture's CPU per
 * change by a quarter and the commit → warehouse p99 from 5.3–6.8 s to 3.2–3.6 s, but a lone change
 * waited 50–100 ms longer at the median (bench/README.md, session 12). So the linger follows the
 * load: when the changes of the last flush came at `BUSY_CHANGES_PER_SECOND` or more — counted over
 * the time since the flush before it, not over the window itself — the next window waits
 * `busyLingerMs`. Over the window alone a longer linger would keep itself busy (100 changes is
 * 5,000/s in 20 ms, 1,000/s in 100 ms) and one large transaction would make the next lone commit
 * wait; since the last flush, 150 changes every half second are 300/s (review, session 12).
 */

/** Changes arriving this fast make the next linger the busy one. */
export const BUSY_CHANGES_PER_SECOND = 2_500;

export interface LingerSettings {
  /** The linger after a quiet window (a lone change waits this long at most). */
  lingerMs: number;
  /** The linger after a busy window; at least `lingerMs` (capture/config.ts refuses less). */
  busyLingerMs: number;
}

/** What the last flush carried, and the time since the flush before it (Infinity for the first). */
export interface FlushedWindow {
  changes: number;
  sinceLastFlushMs: number;
}

/** The linger of the next window, given the last one. */
export function lingerAfter(window: FlushedWindow, settings: LingerSettings): number {
  const busy = window.changes * 1000 >= BUSY_CHANGES_PER_SECOND * Math.max(window.sinceLastFlushMs, 1);
  return busy ? settings.busyLingerMs : settings.lingerMs;
}
