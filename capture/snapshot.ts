import type { Client } from 'pg';
import type { Column } from '../core/change-event';
import { quoteIdent, quoteLiteral } from './pg-text';

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
 */
export async function* readSnapshot(
  client: Client,
  snapshotName: string,
  layouts: readonly TableLayout[],
  pageRows = 5000,
  pageBytes = 4 * 2 ** 20,
): AsyncGenerator<SnapshotRows> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    await client.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(snapshotName)}`);
    for (const layout of layouts) {
      const cols = layout.columns.map((c) => quoteIdent(c.name)).join(', ');
      const copy = new CopyOut(
        `COPY (SELECT ${cols} FROM ${quoteIdent(layout.schema)}.${quoteIdent(layout.table)}) TO STDOUT`,
        layout.columns.length,
        pageRows,
        pageBytes,
      );
      void client.query(copy);
      try {
        for (;;) {
          const { rows, done } = await copy.nextPage();
          yield { layout, rows, tableDone: done };
          if (done) break;
        }
      } finally {
        // A reader that stops early ends the connection: a paused socket would never see its end.
        copy.release();
      }
    }
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}

/** The parts of pg's Connection the COPY sub-protocol uses (its typings omit them). */
interface CopyOutConnection {
  stream: { pause(): void; resume(): void };
}

/**
 * `COPY … TO STDOUT` as a node-postgres "submittable": the client hands it the COPY
 * sub-protocol's messages (https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-COPY);
 * in text format each CopyData message is one row. Rows are parsed as they arrive into a queue
 * of pages; the socket is paused while a full page waits to be taken.
 */
class CopyOut {
  private pages: (string | null)[][][] = [];
  private page: (string | null)[][] = [];
  private pageSize = 0;
  private finished = false;
  private error: Error | undefined;
  private waiter: (() => void) | null = null;
  private connection: CopyOutConnection | null = null;
  private paused = false;

  constructor(
    private readonly text: string,
    private readonly width: number,
    private readonly pageRows: number,
    private readonly pageBytes: number,
  ) {}

  submit(connection: CopyOutConnection & { query(text: string): void }): void {
    this.connection = connection;
    connection.query(this.text);
  }

  handleCopyOutResponse(): void {}

  handleCopyData(message: { chunk: Buffer }): void {
    try {
      this.page.push(parseCopyTextRow(message.chunk, this.width));
    } catch (e) {
      this.error ??= e as Error;
      return;
    }
    this.pageSize += message.chunk.length;
    if (this.page.length >= this.pageRows || this.pageSize >= this.pageBytes) {
      this.pages.push(this.page);
      this.page = [];
      this.pageSize = 0;
      if (!this.paused) {
        // Back-pressure: no more rows from the server until this page is taken.
        this.paused = true;
        this.connection?.stream.pause();
      }
      this.wake();
    }
  }

  handleCommandComplete(): void {}

  handleError(error: Error): void {
    this.error ??= error;
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

  /** Lets the server's rows flow again (the reader is gone or done). */
  release(): void {
    if (this.paused) {
      this.paused = false;
      this.connection?.stream.resume();
    }
  }

  /** The next page; `done` on the last one (which may be empty). */
  async nextPage(): Promise<{ rows: (string | null)[][]; done: boolean }> {
    for (;;) {
      if (this.finished && this.error) throw this.error;
      const full = this.pages.shift();
      if (full) {
        if (this.pages.length === 0 && this.paused) {
          this.paused = false;
          this.connection?.stream.resume();
        }
        // A full page that is also the table's last is followed by an empty, done one.
        return { rows: full, done: false };
      }
      if (this.finished) {
        const rows = this.page;
        this.page = [];
        return { rows, done: true };
      }
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
  }
}

export class CopyFormatError extends Error {
  override readonly name = 'CopyFormatError';
}

/** `\b \f \n \r \t \v` of COPY's text format. */
const ESCAPED: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };

/**
 * One row of COPY's text format (one CopyData message): fields separated by tabs, `\N` for NULL,
 * backslash escapes for the rest (`\\`, `\t`, `\n`, …, octal `\ooo`, hex `\xhh`), ended by a
 * newline. https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.2
 */
export function parseCopyTextRow(line: Buffer, width: number): (string | null)[] {
  let text = line.toString('utf8');
  if (text.endsWith('\n')) text = text.slice(0, -1);
  const fields = text.split('\t');
  if (fields.length !== width)
    throw new CopyFormatError(`COPY row has ${fields.length} fields, expected ${width}`);
  const values: (string | null)[] = new Array(width);
  for (let i = 0; i < width; i += 1) {
    const field = fields[i];
    values[i] = field === '\\N' ? null : field.includes('\\') ? unescapeCopy(field) : field;
  }
  return values;
}

function unescapeCopy(field: string): string {
  // Escapes decode to bytes (octal and hex ones may be parts of one UTF-8 character).
  const bytes: number[] = [];
  let plain = '';
  const flush = () => {
    if (bytes.length) {
      plain += Buffer.from(bytes).toString('utf8');
      bytes.length = 0;
    }
  };
  for (let i = 0; i < field.length; i += 1) {
    const c = field[i];
    if (c !== '\\') {
      flush();
      plain += c;
      continue;
    }
    const next = field[i + 1];
    i += 1;
    if (next !== undefined && next in ESCAPED) {
      flush();
      plain += ESCAPED[next];
    } else if (next !== undefined && next >= '0' && next <= '7') {
      const digits = /^[0-7]{1,3}/.exec(field.slice(i, i + 3))![0];
      bytes.push(parseInt(digits, 8) & 0xff);
      i += digits.length - 1;
    } else if (next === 'x' && /^[0-9a-fA-F]/.test(field[i + 1] ?? '')) {
      const digits = /^[0-9a-fA-F]{1,2}/.exec(field.slice(i + 1, i + 3))![0];
      bytes.push(parseInt(digits, 16));
      i += digits.length;
    } else if (next !== undefined) {
      flush();
      plain += next; // any other escaped character stands for itself
    }
  }
  flush();
  return plain;
}

/** The snapshot transaction's start time, ISO 8601 UTC with microseconds. */
export async function transactionTimestamp(client: Client): Promise<string> {
  const { rows } = await client.query(
    `SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS ts`,
  );
  return rows[0].ts;
}
