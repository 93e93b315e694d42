import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import type { Socket } from 'node:net';
import type { Lsn } from '../core/lsn';
import { isRowMessage, parseRowMessage, type StreamMessage } from './pgoutput-rows';
import { encodeStandbyStatusUpdate } from './standby-status';

/** The part of pg's Connection this module uses (COPY BOTH data out, the socket for backpressure). */
interface PgConnection {
  stream?: Socket;
  sendCopyFromChunk(chunk: Buffer): void;
}

/**
 * The Postgres side of capture: one replication connection reading pgoutput from our slot through
 * pg-logical-replication, with everything that library does implicitly turned off or corrected:
 *
 * - Acknowledgement is ours alone (`auto: false, timeoutSeconds: 0`): the library's automatic acks
 *   confirm the last *received* LSN, which loses data on a crash.
 * - The library's `acknowledge(lsn)` reports lsn + 1 as flushed (confirming one byte past a commit's
 *   end can skip a transaction whose commit record starts exactly there) and its clock a week ahead:
 *   capture writes its own Standby Status Update with exactly the LSN meant
 *   (capture/standby-status.ts).
 * - Values stay the text Postgres sent: the library would parse tuples through the process-global
 *   `pg` type parsers (timestamps into local-time Dates, losing microseconds); row messages are
 *   parsed here instead (capture/pgoutput-rows.ts), values kept as text, no global state touched.
 * - Messages are handed over synchronously, in stream order, interleaved with keepalives; the
 *   consumer applies backpressure with pause()/resume() on the socket. (The library's own flow
 *   control queues data but not keepalives, so a keepalive could overtake data still queued, and
 *   echoing its WAL position would then confirm changes not yet delivered.)
 * - One instance per connection: a reconnect builds a new stream that starts from the slot's
 *   confirmed position, never from the last LSN this process happened to receive.
 */

export interface ReplicationStreamHandlers {
  /** Called synchronously for each pgoutput message, in WAL order. */
  onMessage(message: StreamMessage): void;
  /** Primary keepalive: the server's WAL end, and whether it wants a status update now. */
  onKeepalive(walEnd: Lsn, replyRequested: boolean): void;
}

export interface ReplicationStreamOptions {
  connectionString: string;
  slot: string;
  publication: string;
  /** Where to start; `0/0` means the slot's confirmed_flush_lsn. */
  startLsn?: Lsn;
}

/**
 * A pgoutput plugin that leaves every value as the text Postgres sent, and parses row messages
 * itself (capture/pgoutput-rows.ts: tuples as arrays of text, at a fraction of the library's cost).
 * The library still parses everything else; the Relation messages it returns are kept here by OID
 * for the rows that follow them.
 */
export class RawTextPgoutputPlugin extends PgoutputPlugin {
  private readonly relations = new Map<number, Pgoutput.MessageRelation>();

  override parse(buffer: Buffer): Pgoutput.Message {
    // The library's emitter is untyped: ReplicationStream hands this on as a StreamMessage.
    if (isRowMessage(buffer)) return parseRowMessage(buffer, this.relations) as unknown as Pgoutput.Message;
    const message = super.parse(buffer);
    if (message.tag === 'relation') this.relations.set(message.relationOid, message);
    return message;
  }
}

export class ReplicationStream {
  private readonly service: LogicalReplicationService;
  private paused = false;

  constructor(
    private readonly options: ReplicationStreamOptions,
    private readonly handlers: ReplicationStreamHandlers,
  ) {
    this.service = new LogicalReplicationService(
      { connectionString: options.connectionString, application_name: `totes-capture:${options.slot}` },
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
    );
    this.service.on('data', (_lsn: string, message: StreamMessage) => this.handlers.onMessage(message));
    this.service.on('heartbeat', (walEnd: string, _timestamp: number, shouldRespond: boolean) =>
      this.handlers.onKeepalive(walEnd, shouldRespond),
    );
  }

  /**
   * Starts streaming. Resolves when the replication connection ends (after stop()); rejects when it
   * fails. Errors raised by the handlers surface here too.
   */
  run(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const fail = (e: unknown) => {
        if (settled) return;
        settled = true;
        this.service.stop().finally(() => reject(e));
      };
      this.service.on('error', fail);
      const plugin = new RawTextPgoutputPlugin({
        protoVersion: 1,
        publicationNames: [this.options.publication],
        // Logical decoding messages carry our heartbeats (pg_logical_emit_message).
        messages: true,
      });
      this.service.subscribe(plugin, this.options.slot, this.options.startLsn ?? '0/0').then(() => {
        if (!settled) {
          settled = true;
          resolve();
        }
      }, fail);
    });
  }

  /**
   * Confirms everything up to `lsn` as durably delivered (written, flushed and applied), with a
   * Standby Status Update of our own (capture/standby-status.ts: the library's has its clock a week
   * ahead). Nothing is sent once the stream is stopped, as the library's acknowledge() did.
   */
  async acknowledge(lsn: Lsn): Promise<void> {
    const connection = this.connection();
    if (this.service.isStop() || !connection) return;
    connection.sendCopyFromChunk(encodeStandbyStatusUpdate(lsn, Date.now()));
  }

  /** Stops reading from the socket (backpressure); keepalives wait too, acks can still be sent. */
  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.socket()?.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.socket()?.resume();
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /**
   * Ends the connection. pg's `end()` waits for the server to close it, which a walsender in the
   * middle of START_REPLICATION may not do promptly (seen: a stop right after streaming began hung
   * past a minute): after `graceMs` the socket is destroyed, which the server treats as a
   * disconnect — nothing unconfirmed is lost, the slot keeps its confirmed position.
   */
  async stop(graceMs = 5000): Promise<void> {
    const socket = this.socket();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), graceMs);
      timer.unref();
    });
    const outcome = await Promise.race([this.service.stop().then(() => 'stopped' as const), late]);
    clearTimeout(timer);
    if (outcome === 'late') socket?.destroy();
  }

  /** The library keeps the pg Connection private; its own acknowledge() and flow control use it too. */
  private connection(): PgConnection | undefined {
    return (this.service as unknown as { _connection?: PgConnection })._connection;
  }

  private socket(): Socket | undefined {
    return this.connection()?.stream;
  }
}
