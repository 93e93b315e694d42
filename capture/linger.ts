/**
 * How long capture waits after a commit for more changes before it flushes what it holds.
 *
 * A short linger keeps a lone change's latency low; under load it makes many small records — one
 * per table per window — and every record costs the same again in each stage that handles records
 * (the PutRecords call, Kinesis, the Firehose record transformation). At 10,000 changes/s a 20 ms
 * window holds ~200 changes, ~3 records; a fixed 100 ms halved the records, cut capture's CPU per
 * change by a quarter and the commit → warehouse p99 from 5.3–6.8 s to 3.2–3.6 s, but a lone change
 * waited 50–100 ms longer at the median (bench/README.md, session 12). So the linger follows the
 * load: after a window that carried at least `BUSY_WINDOW_CHANGES`, the next waits `busyLingerMs`.
 */

/** A window with this many changes or more makes the next linger the busy one. */
export const BUSY_WINDOW_CHANGES = 100;

export interface LingerSettings {
  /** The linger after a quiet window (a lone change waits this long at most). */
  lingerMs: number;
  /** The linger after a busy window. */
  busyLingerMs: number;
}

/** The linger of the next window, given how many changes the last one flushed. */
export function lingerAfter(lastWindowChanges: number, settings: LingerSettings): number {
  return lastWindowChanges >= BUSY_WINDOW_CHANGES
    ? Math.max(settings.lingerMs, settings.busyLingerMs)
    : settings.lingerMs;
}
