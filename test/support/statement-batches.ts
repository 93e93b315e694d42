import { StatementBatch, type StatementResult } from '../../processors/load/statement-batch';

type Query = (...args: unknown[]) => unknown;

/**
 * A client's `query` for tests that watch, pause or fail single statements: a statement batch
 * (processors/load/statement-batch.ts) runs through `query` one statement at a time, in its order,
 * stopping at the first that fails, as the server does with a batch; anything else goes to `query`
 * as it is. What a batch's results look like is tested against a real server in
 * statement-batch.pg.test.ts; this only changes how many round trips it takes.
 */
export function oneStatementAtATime(query: Query): Query {
  return (...args: unknown[]) => {
    const batch = args[0];
    if (!(batch instanceof StatementBatch)) return query(...args);
    const done = (async () => {
      const results: StatementResult[] = [];
      for (const statement of batch.statements) {
        const r = (await query(statement.text, statement.values)) as { rowCount: number | null; rows: [] };
        results.push({ rowCount: r.rowCount ?? 0, rows: r.rows });
      }
      return results;
    })();
    return { done };
  };
}

/**
 * Counts the round trips `client` starts from now on: node-postgres writes each protocol message
 * on its own, and a round trip ends with a Sync (extended protocol) or is one Query (simple
 * protocol, which COPY and parameterless queries use).
 */
export function roundTrips(client: object): () => number {
  const stream = (client as { connection: { stream: { write: (b: Buffer, ...rest: unknown[]) => boolean } } })
    .connection.stream;
  const write = stream.write;
  let count = 0;
  stream.write = function (this: unknown, b: Buffer, ...rest: unknown[]) {
    const sync = b[0] === 0x53 && b.length === 5;
    const query = b[0] === 0x51;
    if (sync || query) count += 1;
    return write.call(this, b, ...rest);
  };
  return () => count;
}
