import type { ClientBase, Connection, Submittable } from 'pg';
import type { SqlStatement } from '../../core/warehouse-sql';

/**
 * Several statements in ONE round trip: each as the extended protocol's Parse, Bind, Describe and
 * Execute of the unnamed statement, and one Sync after the last. node-postgres sends a query and
 * waits for its ReadyForQuery before the next; a load object's 10–16 statements were as many round
 * trips, and on a machine whose cores are busy each waits to be scheduled twice — most of a small
 * object's load time at 10k changes/s (bench/README.md, "Session 11: … the load at 10k/s").
 *
 * The server runs the messages in order. When one fails it skips every message up to the Sync
 * (https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-EXT-QUERY): the
 * statements after it do not run, and the batch rejects with that one error, as the failing
 * statement's query would have. Inside a transaction block, the transaction is then aborted, as
 * before. Statements that read results a later statement depends on go in a later batch.
 *
 * The parameters are bound exactly as node-postgres binds a query's (its `prepareValue`), and each
 * statement's rows and count are read by node-postgres' own `Result`, with its default type parsers
 * (this codebase sets no others).
 */

/** node-postgres' conversion of a parameter to its wire text (pg/lib/utils, exported as `pg/lib/*`). */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { prepareValue } = require('pg/lib/utils') as { prepareValue: (value: unknown) => WireValue };

/** A parameter as node-postgres writes it: text, bytes, or NULL. */
type WireValue = string | Buffer | null | undefined;

/** node-postgres' result of one statement: it parses the rows and reads the command's count. */
interface PgResult {
  rowCount: number | null;
  rows: Record<string, unknown>[];
  addFields(fields: unknown[]): void;
  parseRow(fields: unknown[]): Record<string, unknown>;
  addRow(row: Record<string, unknown>): void;
  addCommandComplete(message: { text: string }): void;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const PgResult = require('pg/lib/result') as new () => PgResult;

export interface StatementResult {
  rowCount: number;
  rows: Record<string, unknown>[];
}

/** pg's Connection's COPY failure message (its typings omit it). */
interface CopyFailing extends Connection {
  sendCopyFail(message: string): void;
}

export class StatementBatch implements Submittable {
  readonly done: Promise<StatementResult[]>;
  private readonly results: PgResult[] = [];
  private settle!: (error: Error | undefined) => void;

  constructor(
    readonly statements: readonly SqlStatement[],
    private readonly values: WireValue[][],
  ) {
    this.done = new Promise<StatementResult[]>((resolve, reject) => {
      this.settle = (error) =>
        error
          ? reject(error)
          : resolve(this.results.map((r) => ({ rowCount: r.rowCount ?? 0, rows: r.rows })));
    });
  }

  submit(connection: Connection): void {
    // One write of every message (as node-postgres does for one query's).
    connection.stream.cork();
    try {
      this.statements.forEach((statement, i) => {
        connection.parse({ text: statement.text, name: '', types: [] }, false);
        connection.bind({ values: this.values[i] }, false);
        connection.describe({ type: 'P' }, false);
        connection.execute({}, false);
      });
      connection.sync();
    } finally {
      connection.stream.uncork();
    }
  }

  /** Statements whose CommandComplete (or EmptyQueryResponse) arrived. */
  private completed = 0;

  /** The result of the statement whose messages are arriving: a new one after each completion. */
  private current(): PgResult {
    if (this.completed === this.results.length) this.results.push(new PgResult());
    return this.results[this.results.length - 1]!;
  }

  handleRowDescription(message: { fields: unknown[] }): void {
    this.current().addFields(message.fields);
  }

  handleDataRow(message: { fields: unknown[] }): void {
    const result = this.current();
    result.addRow(result.parseRow(message.fields));
  }

  handleCommandComplete(message: { text: string }): void {
    this.current().addCommandComplete(message);
    this.completed += 1;
  }

  handleEmptyQuery(): void {
    this.current();
    this.completed += 1;
  }

  /** node-postgres detaches the query on an ErrorResponse; its ReadyForQuery never reaches it. */
  handleError(error: Error): void {
    this.settle(error);
  }

  handleReadyForQuery(): void {
    this.settle(undefined);
  }

  /**
   * A COPY FROM STDIN that got past runStatements' check (a comment before its keyword) is failed.
   * As a batch's last statement the connection survives it: the server ignored the batch's Sync in
   * copy-in mode and discards messages until the next one, sent here. Followed by another
   * statement, the server has taken that statement's messages for COPY data and ended the session.
   */
  handleCopyInResponse(connection: Connection): void {
    const c = connection as CopyFailing;
    c.sendCopyFail('a COPY cannot run inside a statement batch');
    c.sync();
  }
  handlePortalSuspended(): void {}
  handleCopyData(): void {}
}

/**
 * Runs `statements` in order in one round trip; their results, in the same order. Rejects with the
 * first failing statement's error (those after it did not run). A parameter node-postgres cannot
 * convert, or a COPY, throws before anything is sent.
 */
export async function runStatements(
  client: ClientBase,
  statements: readonly SqlStatement[],
): Promise<StatementResult[]> {
  if (statements.length === 0) return [];
  // After a COPY's CopyInResponse the server reads the messages that follow as COPY data: a batch's
  // later statements would end the session (08P01, protocol synchronization lost). COPY goes
  // through copy-in.ts, on its own.
  const copy = statements.find((s) => /^\s*COPY\b/i.test(s.text));
  if (copy) throw new Error(`a COPY cannot run inside a statement batch: ${copy.text.slice(0, 40)}`);
  const values = statements.map((s) => (s.values ?? []).map(wireValue));
  return client.query(new StatementBatch(statements, values)).done;
}

/** A parameter's wire text: an array of plain values by `arrayParameter`, anything else as node-postgres writes it. */
function wireValue(value: unknown): WireValue {
  return (Array.isArray(value) && arrayParameter(value)) || prepareValue(value);
}

/** Characters an array element's text escapes inside its double quotes. */
const ELEMENT_ESCAPES = /["\\]/g;

/**
 * An array of numbers, strings, booleans and NULLs as the array literal Postgres reads it, or
 * undefined for any other array (nested, of Buffers, Dates or objects: node-postgres writes those).
 * The value it stands for is node-postgres' `arrayString`'s: a string element double-quoted with
 * `"` and `\` escaped, as there; a number or boolean element unquoted (its text, digits, `-`, `.`,
 * `e`, `+`, `NaN`, `Infinity`, `true`, `false`, holds nothing the array syntax reads, nor spells
 * NULL), a NULL as `NULL`. Why: node-postgres converts and escapes each element through two regular
 * expressions, ~0.5-1 µs per row of a load part's key and reference arrays (bench:load, 200k
 * payments; `escapeElement`, `arrayString` and `prepareValue` ~3.6% of the load at 10k changes/s).
 * https://www.postgresql.org/docs/current/arrays.html#ARRAYS-IO
 */
export function arrayParameter(values: readonly unknown[]): string | undefined {
  let text = '{';
  for (let i = 0; i < values.length; i += 1) {
    const value = values[i];
    if (i > 0) text += ',';
    if (value === null || value === undefined) text += 'NULL';
    else if (typeof value === 'number' || typeof value === 'boolean') text += value;
    else if (typeof value === 'string')
      text += `"${value.includes('"') || value.includes('\\') ? value.replace(ELEMENT_ESCAPES, '\\$&') : value}"`;
    else return undefined;
  }
  return `${text}}`;
}
