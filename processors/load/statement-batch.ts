import { types, type ClientBase, type Connection, type Submittable } from 'pg';
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
 * The parameters are bound exactly as node-postgres binds a query's (its `prepareValue`); results
 * are parsed with node-postgres' default type parsers (this codebase sets no others).
 */

/** node-postgres' conversion of a parameter to its wire text (pg/lib/utils, exported as `pg/lib/*`). */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { prepareValue } = require('pg/lib/utils') as { prepareValue: (value: unknown) => WireValue };

/** A parameter as node-postgres writes it: text, bytes, or NULL. */
type WireValue = string | Buffer | null | undefined;

export interface StatementResult {
  rowCount: number;
  rows: Record<string, unknown>[];
}

interface FieldDescription {
  name: string;
  dataTypeID: number;
}

/** pg's Connection's COPY failure message (its typings omit it). */
interface CopyFailing extends Connection {
  sendCopyFail(message: string): void;
}

export class StatementBatch implements Submittable {
  readonly done: Promise<StatementResult[]>;
  private readonly results: StatementResult[] = [];
  private parsers: ((text: string) => unknown)[] = [];
  private fields: FieldDescription[] = [];
  private settle!: (error: Error | undefined) => void;
  private settled = false;

  constructor(
    readonly statements: readonly SqlStatement[],
    private readonly values: WireValue[][],
  ) {
    this.done = new Promise<StatementResult[]>((resolve, reject) => {
      this.settle = (error) => {
        if (this.settled) return;
        this.settled = true;
        if (error) reject(error);
        else resolve(this.results);
      };
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
  private current(): StatementResult {
    if (this.completed === this.results.length) this.results.push({ rowCount: 0, rows: [] });
    return this.results[this.results.length - 1]!;
  }

  handleRowDescription(message: { fields: FieldDescription[] }): void {
    this.current();
    this.fields = message.fields;
    this.parsers = message.fields.map((f) => types.getTypeParser(f.dataTypeID, 'text'));
  }

  handleDataRow(message: { fields: (string | null)[] }): void {
    const row: Record<string, unknown> = {};
    message.fields.forEach((raw, i) => {
      row[this.fields[i]!.name] = raw === null ? null : this.parsers[i]!(raw);
    });
    this.current().rows.push(row);
  }

  handleCommandComplete(message: { text: string }): void {
    const result = this.current();
    // "INSERT 0 5", "UPDATE 3", "SELECT 2", "BEGIN": the last number, when there is one.
    const count = /(\d+)$/.exec(message.text);
    result.rowCount = count ? Number(count[1]) : 0;
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
  const values = statements.map((s) => (s.values ?? []).map((v) => prepareValue(v)));
  return client.query(new StatementBatch(statements, values)).done;
}
