import type { ClientBase, Connection, Submittable } from 'pg';

/**
 * `COPY … FROM STDIN` through node-postgres, without pg-copy-streams: node-postgres hands the COPY
 * sub-protocol's messages to its active query object, so a small "submittable" implementing those
 * hooks is all it takes. The input is produced chunk by chunk as the server asks for it and each
 * chunk is written to the socket as soon as it is built, so the warehouse parses one chunk while
 * the next is built. https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-COPY
 *
 * A server error mid-COPY (bad data: SQLSTATE class 22) rejects with pg's DatabaseError, as a
 * query's would; the chunks still being written are ignored by the server ("the backend will
 * ignore CopyData … received" once the COPY failed, postgres.c), and the connection stays usable.
 */

/** The parts of pg's Connection the COPY sub-protocol uses (its typings omit them). */
interface CopyConnection extends Connection {
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
  sendCopyFail(message: string): void;
}

class CopyIn implements Submittable {
  readonly done: Promise<string>;
  private error: Error | undefined;
  private commandTag = '';
  private settle!: (error: Error | undefined, tag: string) => void;

  constructor(
    private readonly text: string,
    private readonly input: () => Iterable<Buffer>,
  ) {
    this.done = new Promise<string>((resolve, reject) => {
      this.settle = (error, tag) => (error ? reject(error) : resolve(tag));
    });
  }

  submit(connection: Connection): void {
    connection.query(this.text);
  }

  handleCopyInResponse(connection: Connection): void {
    const copy = connection as CopyConnection;
    try {
      for (const chunk of this.input()) if (chunk.length) copy.sendCopyFromChunk(chunk);
    } catch (e) {
      // Building the input failed: the server aborts the COPY (and the transaction), and the
      // error to report is ours, not its "COPY from stdin failed".
      this.error = e as Error;
      copy.sendCopyFail('the load could not build its COPY input');
      return;
    }
    copy.endCopyFrom();
  }

  handleCommandComplete(message: { text: string }): void {
    this.commandTag = message.text;
  }

  /**
   * node-postgres detaches the query on an ErrorResponse, so its ReadyForQuery never reaches it:
   * settle here (the client still runs the next query only after ReadyForQuery).
   */
  handleError(error: Error): void {
    this.settle(this.error ?? error, '');
  }

  handleReadyForQuery(): void {
    this.settle(this.error, this.commandTag);
  }

  // Called only if the statement turned out not to be a COPY FROM STDIN.
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyData(): void {}
}

/** Runs `COPY … FROM STDIN` with `input`'s chunks (built when the server is ready); resolves to the rows copied. */
export async function copyIn(
  client: ClientBase,
  sql: string,
  input: () => Iterable<Buffer>,
): Promise<number> {
  const tag = await client.query(new CopyIn(sql, input)).done;
  const rows = /^COPY (\d+)$/.exec(tag);
  return rows ? Number(rows[1]) : 0;
}

/** psql's CopyData size; the server accepts any split of the byte stream. */
export const COPY_CHUNK_BYTES = 65_536;

/** Joins lines into chunks of about COPY_CHUNK_BYTES, each encoded once. */
export function* copyChunks(lines: Iterable<string>, chunkBytes = COPY_CHUNK_BYTES): Generator<Buffer> {
  let text = '';
  for (const line of lines) {
    text += line;
    // Characters, not bytes: a chunk of non-ASCII text is larger, which the server does not mind.
    if (text.length >= chunkBytes) {
      yield Buffer.from(text, 'utf8');
      text = '';
    }
  }
  if (text.length) yield Buffer.from(text, 'utf8');
}
