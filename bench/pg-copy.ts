import type { Client, Connection, Submittable } from 'pg';
import { COPY_CHUNK_BYTES, copyIn } from '../processors/load/copy-in';

/**
 * COPY through node-postgres without pg-copy-streams (not a dependency, and the bench may not add
 * one). node-postgres hands the COPY sub-protocol's messages to its active query object, so a small
 * "submittable" implementing those hooks is all COPY needs: `COPY … FROM STDIN` is the load's own
 * (processors/load/copy-in.ts), `COPY … TO STDOUT` is here.
 * https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-COPY
 */

class CopyQuery implements Submittable {
  rows = 0;
  bytes = 0;
  readonly done: Promise<string>;
  private error: Error | undefined;
  private commandTag = '';
  private settle!: (error: Error | undefined, tag: string) => void;

  constructor(
    private readonly text: string,
    private readonly onRow?: (row: Buffer) => void,
  ) {
    this.done = new Promise<string>((resolve, reject) => {
      this.settle = (error, tag) => (error ? reject(error) : resolve(tag));
    });
  }

  submit(connection: Connection): void {
    connection.query(this.text);
  }

  handleCopyData(message: { chunk: Buffer }): void {
    // In text and CSV format each CopyData message from the server is exactly one row.
    this.rows += 1;
    this.bytes += message.chunk.length;
    this.onRow?.(message.chunk);
  }

  handleCommandComplete(message: { text: string }): void {
    this.commandTag = message.text;
  }

  /**
   * node-postgres detaches the query on an ErrorResponse, so its ReadyForQuery never reaches it:
   * settle here, or a refused COPY hangs (as processors/load/copy-in.ts does).
   */
  handleError(error: Error): void {
    this.error ??= error;
    this.settle(this.error, '');
  }

  handleReadyForQuery(): void {
    this.settle(this.error, this.commandTag);
  }

  // Called only if the statement turned out not to be a COPY; its rows are of no interest.
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
}

/** `COPY … FROM STDIN` reading `input`, by the load's own copyIn; resolves to the rows copied. */
export function copyFrom(client: Client, sql: string, input: Buffer): Promise<number> {
  return copyIn(client, sql, function* () {
    for (let at = 0; at < input.length; at += COPY_CHUNK_BYTES)
      yield input.subarray(at, at + COPY_CHUNK_BYTES);
  });
}

/** `COPY … TO STDOUT`, discarding the output; resolves to the rows and bytes received. */
export async function copyToNowhere(client: Client, sql: string): Promise<{ rows: number; bytes: number }> {
  const query = client.query(new CopyQuery(sql));
  await query.done;
  return { rows: query.rows, bytes: query.bytes };
}

/** `COPY … TO STDOUT`, each row (one CopyData message, newline included) handed to `onRow`. */
export async function copyToRows(
  client: Client,
  sql: string,
  onRow: (row: Buffer) => void,
): Promise<{ rows: number; bytes: number }> {
  const query = client.query(new CopyQuery(sql, onRow));
  await query.done;
  return { rows: query.rows, bytes: query.bytes };
}
