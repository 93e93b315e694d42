import type { Client } from 'pg';
import type { Column } from '../core/change-event';
import type { BatchRecord, ChangeBatcherLimits } from './change-batcher';
import { quoteIdent, quoteLiteral } from './pg-text';
import { parseCopyTextRow } from './copy-text';
import { SnapshotEncoder } from './snapshot-encoder';

export { CopyFormatError, parseCopyTextRow } from './copy-text';

/** A captured table's column layout, read from the catalog in attribute order. */
export interface TableLayout {
  schema: string;
  table: string;
  columns: Column[];
}

export class MissingTableError extends Error {
  override readonly name = 'MissingTableError';
}

/**
 * Column names, type names (pg_type.typname, as pgoutput's stream reports them) and primary-key
 * membership for each table, in the order given.
 */
export async function describeTables(
  client: Client,
  schema: string,
  tables: readonly string[],
): Promise<TableLayout[]> {
  const { rows } = await client.query(
    `SELECT c.relname AS table, a.attname AS name, t.typname AS type,
            COALESCE(a.attnum = ANY (i.indkey::int2[]), false) AS key
       FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
       JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
      WHERE n.nspname = $1 AND c.relname = ANY ($2::text[])
      ORDER BY c.relname, a.attnum`,
    [schema, tables],
  );
  return tables.map((table) => {
    const columns = rows
      .filter((r) => r.table === table)
      .map((r) => ({ name: r.name, type: r.type, key: r.key === true || r.key === 't' }));
    if (columns.length === 0)
      throw new MissingTableError(`table ${schema}.${table} does not exist (or has no columns)`);
    return { schema, table, columns };
  });
}

export interface SnapshotRows {
  layout: TableLayout;
  rows: (string | null)[][];
  /** The last page of this table (possibly empty): its snapshot is complete. */
  tableDone: boolean;
}

/**
 * Reads every row of the tables inside one REPEATABLE READ transaction that imports the slot's
 * exported snapshot (https://www.postgresql.org/docs/current/sql-set-transaction.html), one
 * `COPY (SELECT …) TO STDOUT` per table in text format: the server streams each table as lines of
 * tab-separated values, the same text its output functions give a SELECT, with none of the
 * per-row protocol messages and row objects a cursor's FETCH costs
 * (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.2).
 *
 * Pages hold at most `pageRows` rows and about `pageBytes` bytes of values; while a page is
 * consumed the socket is paused once a page's worth is waiting, so memory is bounded by bytes
 * whatever the table or row size. An empty table still yields one (empty, done) page.
 *
 * Capture itself uses copySnapshotTables (rows encoded straight from the COPY lines, tables on
 * parallel connections); this row-array reader stays for tools and tests that want the values.
 */
export async function* readSnapshot(
  client: Client,
  snapshotName: string,
  layouts: readonly TableLayout[],
  pageRows = 5000,
  pageBytes = 4 * 2 ** 20,
): AsyncGenerator<SnapshotRows> {
  await beginSnapshot(client, snapshotName);
  try {
    for (const layout of layouts) {
      let page: (string | null)[][] = [];
      let size = 0;
      const pages: (string | null)[][][] = [];
      const copy = new CopyLines(copyStatement(layout), (line) => {
        page.push(parseCopyTextRow(line, layout.columns.length));
        size += line.length;
        if (page.length < pageRows && size < pageBytes) return false;
        pages.push(page);
        page = [];
        size = 0;
        return true;
      });
      void client.query(copy);
      try {
        for (;;) {
          const finished = await copy.wait();
          // A full page that is also the table's last is followed by an empty, done one.
          for (const rows of pages.splice(0)) yield { layout, rows, tableDone: false };
          if (finished) {
            yield { layout, rows: page, tableDone: true };
            break;
          }
          copy.resume();
        }
      } finally {
        // A reader that stops early ends the connection: a paused socket would never see its end.
        copy.resume();
      }
    }
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}

async function beginSnapshot(client: Client, snapshotName: string): Promise<void> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  await client.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(snapshotName)}`);
}

function copyStatement(layout: TableLayout): string {
  const cols = layout.columns.map((c) => quoteIdent(c.name)).join(', ');
  return `COPY (SELECT ${cols} FROM ${quoteIdent(layout.schema)}.${quoteIdent(layout.table)}) TO STDOUT`;
}

/** Connections a snapshot reads tables on at once (capture's default; see bench/README.md). */
export const SNAPSHOT_CONNECTIONS = 2;

export interface CopySnapshotOptions {
  /** Opens one more client to the source (raw text types); it is ended before this returns. */
  connect: () => Promise<Client>;
  snapshotName: string;
  layouts: readonly TableLayout[];
  /** Every row's position: the snapshot's LSN, and the capture epoch of its records. */
  lsn: string;
  epoch: number;
  limits?: ChangeBatcherLimits;
  /** Tables read at once, each on a connection of its own inside the same snapshot. */
  connections?: number;
  /** A table's records are handed on once they reach this many bytes (or `pageRows` rows). */
  flushBytes: number;
  pageRows?: number;
  /** Takes a batch of finished records; one call at a time, in order. */
  put: (records: BatchRecord[]) => Promise<void>;
  /** After each batch is queued: `rows` snapshot rows more were read; may throw to stop. */
  onBatch?: (table: string, rows: number) => void;
  onTableDone?: (table: string, rows: number) => void;
}

/**
 * Copies the tables inside an exported snapshot into `put`, as capture's Kinesis records: every
 * row a `snapshot` change, each table closed by a `snapshot_end` with its row count, ordinals
 * (seq) running across the whole snapshot in table order, all at `lsn`, with the time of the
 * snapshot read as `ts`. Resolves to the rows copied and that time.
 *
 * Tables are spread over `connections` connections, each in its own REPEATABLE READ transaction
 * that imports the same exported snapshot, so all see the same data
 * (https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-SNAPSHOT-SYNCHRONIZATION):
 * Postgres' COPY backends then run side by side. With more than one, the tables' row counts are
 * read first inside the snapshot, so a table's ordinals start where the tables before it end, as
 * when they are read one after another (and the copy is checked against them).
 *
 * Each table's COPY lines go straight into a SnapshotEncoder (no row arrays). Memory is bounded by
 * bytes: a table's socket is paused once its records reach `flushBytes`, until they are taken,
 * and a table waits for the put before its previous one to finish before reading on.
 */
export async function copySnapshotTables(
  options: CopySnapshotOptions,
): Promise<{ rows: number; ts: string }> {
  const { layouts, flushBytes, put } = options;
  const pageRows = options.pageRows ?? 5000;
  const width = Math.max(1, Math.min(options.connections ?? SNAPSHOT_CONNECTIONS, layouts.length));
  const clients: Client[] = [];
  const copies = new Set<CopyLines>();
  let failed: unknown = null;
  try {
    for (let i = 0; i < width; i += 1) clients.push(await options.connect());
    const ts = await transactionTimestamp(clients[0]);
    await Promise.all(clients.map((c) => beginSnapshot(c, options.snapshotName)));
    const counts = width > 1 ? await countRows(clients[0], layouts) : null;
    // With counts, each table's first ordinal is known at the start; without, tables run in order.
    const firstSeq: number[] = [];
    for (let i = 0, at = 0; i < layouts.length; i += 1) {
      firstSeq.push(at);
      at += (counts?.[i] ?? 0) + 1;
    }
    let seq = 0;
    // One put at a time, in order; a table awaits the put queued before its own, then reads on.
    let chain: Promise<void> = Promise.resolve();
    const enqueue = (records: BatchRecord[]): Promise<void> => {
      if (failed) throw failed;
      const before = chain;
      chain = before.then(() => (records.length ? put(records) : undefined));
      chain.catch(() => undefined);
      return before;
    };
    let next = 0;
    let total = 0;
    const readTables = async (client: Client) => {
      for (let i = next++; i < layouts.length; i = next++) {
        const { schema, table, columns } = layouts[i];
        // Read one after another, a table's ordinals start where the previous table's ended.
        const encoder = new SnapshotEncoder({
          schema,
          table,
          columns,
          lsn: options.lsn,
          ts,
          epoch: options.epoch,
          firstSeq: counts ? firstSeq[i] : seq,
          limits: options.limits,
        });
        let pageStart = 0;
        const copy = new CopyLines(copyStatement(layouts[i]), (line) => {
          encoder.addCopyRow(line);
          return encoder.byteCount >= flushBytes || encoder.rows - pageStart >= pageRows;
        });
        void client.query(copy);
        copies.add(copy);
        try {
          for (;;) {
            const finished = await copy.wait();
            if (finished) {
              if (counts && encoder.rows !== counts[i])
                throw new Error(
                  `${table}: COPY gave ${encoder.rows} rows, count(*) ${counts[i]} in the same snapshot`,
                );
              encoder.end();
            }
            const rows = encoder.rows - pageStart;
            pageStart = encoder.rows;
            await enqueue(encoder.drain());
            total += rows;
            options.onBatch?.(table, rows);
            if (finished) break;
            copy.resume();
          }
        } finally {
          copies.delete(copy);
          copy.resume();
        }
        if (!counts) seq = encoder.nextSeq;
        options.onTableDone?.(table, encoder.rows);
      }
    };
    await Promise.all(
      clients.map((c) =>
        readTables(c).catch((e: unknown) => {
          failed ??= e;
          throw e;
        }),
      ),
    );
    await chain;
    await Promise.all(clients.map((c) => c.query('COMMIT')));
    return { rows: total, ts };
  } finally {
    // Ending a connection also ends a COPY another table's failure left running; a paused socket
    // would never see the end, so every COPY left flows (into nothing) first.
    for (const copy of copies) copy.abandon();
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  }
}

/** Each table's row count inside the snapshot (one scan each, in one statement). */
async function countRows(client: Client, layouts: readonly TableLayout[]): Promise<number[]> {
  const counts = layouts.map(
    (l, i) => `(SELECT count(*) FROM ${quoteIdent(l.schema)}.${quoteIdent(l.table)}) AS c${i}`,
  );
  const { rows } = await client.query({ text: `SELECT ${counts.join(', ')}`, rowMode: 'array' });
  return (rows[0] as string[]).map(Number);
}

/** The parts of pg's Connection the COPY sub-protocol uses (its typings omit them). */
interface CopyOutConnection {
  stream: { pause(): void; resume(): void };
}

/**
 * `COPY … TO STDOUT` as a node-postgres "submittable": the client hands it the COPY
 * sub-protocol's messages (https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-COPY);
 * in text format each CopyData message is one row, given to `onLine` at once (the buffer is pg's
 * own and reused: it must be consumed before returning). `onLine` returning true pauses the
 * socket until `resume`: rows already received still arrive, at most one socket read's worth.
 */
class CopyLines {
  private finished = false;
  private error: Error | undefined;
  private waiter: (() => void) | null = null;
  private connection: CopyOutConnection | null = null;
  private paused = false;

  constructor(
    private readonly text: string,
    private readonly onLine: (line: Buffer) => boolean,
  ) {}

  submit(connection: CopyOutConnection & { query(text: string): void }): void {
    this.connection = connection;
    connection.query(this.text);
  }

  handleCopyOutResponse(): void {}

  handleCopyData(message: { chunk: Buffer }): void {
    if (this.error) return;
    let full: boolean;
    try {
      full = this.onLine(message.chunk);
    } catch (e) {
      this.error = e as Error;
      full = true;
    }
    if (full) {
      if (!this.paused) {
        // Back-pressure: no more rows from the server until what was read is taken.
        this.paused = true;
        this.connection?.stream.pause();
      }
      this.wake();
    }
  }

  handleCommandComplete(): void {}

  handleError(error: Error): void {
    this.error ??= error;
    this.wake();
  }

  handleReadyForQuery(): void {
    this.finished = true;
    this.wake();
  }

  // Called only if the statement turned out not to be a COPY.
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.();
  }

  /** Ignores the rest of the COPY and lets it flow (so the connection can end). */
  abandon(): void {
    this.error ??= new Error('COPY abandoned');
    this.resume();
  }

  /** Lets the server's rows flow again. */
  resume(): void {
    if (this.paused) {
      this.paused = false;
      this.connection?.stream.resume();
    }
  }

  /** Waits until `onLine` asked for a pause (false) or the COPY ended (true); throws its error. */
  async wait(): Promise<boolean> {
    for (;;) {
      if (this.error) throw this.error;
      if (this.finished) return true;
      if (this.paused) return false;
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
  }
}

/** The snapshot transaction's start time, ISO 8601 UTC with microseconds. */
export async function transactionTimestamp(client: Client): Promise<string> {
  const { rows } = await client.query(
    `SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS ts`,
  );
  return rows[0].ts;
}
