import type { Client } from 'pg';

/**
 * Makes a pg Client run its queries one after another, each sent only once the previous one has
 * settled.
 *
 * Capture's control connection is shared by timers that fire independently — the heartbeat
 * (`pg_logical_emit_message`), the slot statistics, the publication check and a requested resync.
 * Issued while another query runs, pg 8 queues the query itself but warns: "Calling client.query()
 * when the client is already executing a query is deprecated and will be removed in pg@9.0. Use
 * async/await or an external async flow control mechanism instead." (pg/lib/client.js; pg 9 makes
 * it an error). This is that external flow control, wrapped around the client so every helper
 * (getSlot, publishedTables, describeTables, …) keeps taking a plain Client.
 *
 * Only the promise form is queued: a callback or a submittable (cursor, COPY stream) would run
 * outside the queue, so it is refused loudly instead of overlapping silently.
 */
export function serialiseQueries<C extends Client>(client: C): C {
  const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
  let tail: Promise<unknown> = Promise.resolve();
  const queued = (...args: unknown[]): Promise<unknown> => {
    if (args.some((a) => typeof a === 'function') || isSubmittable(args[0]))
      throw new TypeError('this client runs promise queries only (callbacks and streams would overlap)');
    const run = tail.then(() => query(...args));
    // The next query waits for this one to settle, whatever its outcome; its caller sees the error.
    tail = run.catch(() => undefined);
    return run;
  };
  client.query = queued as C['query'];
  return client;
}

function isSubmittable(value: unknown): boolean {
  return typeof (value as { submit?: unknown } | null)?.submit === 'function';
}
