import type { Client } from 'pg';
import type { Logger } from '../core/logger';
import { compareLsn, type Lsn } from '../core/lsn';
import {
  decodeHeartbeatContent,
  encodeHeartbeatContent,
  HEARTBEAT_COLUMNS,
  HEARTBEAT_PREFIX,
  HEARTBEAT_SOURCE_TABLE,
  heartbeatChange,
} from '../core/pipeline-heartbeat';
import { AckTracker } from './ack-tracker';
import { assessLiveness, silenceTimeoutFor } from './liveness';
import {
  ChangeBatcher,
  DEFAULT_BATCHER_LIMITS,
  type BatchRecord,
  type ChangeBatcherLimits,
} from './change-batcher';
import type { RecordSink } from './kinesis-sink';
import { rawTextClient } from './pg-text';
import { serialiseQueries } from './serialise-queries';
import { PgoutputDecoder, snapshotLsn, type DecodedItem } from './pgoutput-decoder';
import type { StreamMessage } from './pgoutput-rows';
import { ReplicationStream } from './replication-stream';
import {
  addMissingPublicationTables,
  createSlotWithSnapshot,
  dropSlot,
  ensurePublication,
  getSlot,
  identifySystem,
  publishedTables,
  type SourceIdentity,
} from './slot';
import { copySnapshotTables, describeTables, type TableLayout } from './snapshot';
import type { CaptureState, StateStore } from './state-store';
import { lingerAfter } from './linger';

/**
 * The capture service: Postgres logical replication → change batches → a record sink (Kinesis).
 *
 * Lifecycle (the `Service` contract of the other long-running parts): `run()` resolves when the
 * service stopped cleanly and rejects on a fatal error; `stop()` drains — stops reading, flushes what
 * it holds, confirms what became durable — and then ends the connection.
 *
 * Delivery: at-least-once. A transaction's end LSN is confirmed to the slot only after the sink
 * accepted every change of it (AckTracker), so a crash anywhere replays from the last confirmed
 * transaction; the replayed changes carry the same identity (commit LSN, ordinal).
 */

export interface CaptureConfig {
  sourceUrl: string;
  schema: string;
  tables: readonly string[];
  publication: string;
  slot: string;
  /** A transactional logical message this often keeps an idle slot moving (and measures lag). */
  heartbeatIntervalMs: number;
  /**
   * A standby status update (the confirmed position) goes to the server this often, also while
   * reading is paused for backpressure: without replies for wal_sender_timeout the server ends the
   * connection, and a huge transaction would be replayed from its start again and again.
   */
  statusIntervalMs: number;
  /** Work pending and nothing confirmed for this long: fail (and be restarted). See liveness.ts. */
  stallTimeoutMs: number;
  /** Nothing from the server for this long while reading: fail. Default: from wal_sender_timeout. */
  silenceTimeoutMs?: number;
  /** How often slot lag and throughput are measured and logged. */
  statsIntervalMs: number;
  /** After a commit, wait this long for more changes before flushing a partial batch (linger.ts). */
  lingerMs: number;
  /** The linger while changes arrive fast (linger.ts `lingerAfter`). */
  busyLingerMs: number;
  /** Flush once this many bytes are buffered, without waiting for the linger. */
  flushBytes: number;
  /** Stop reading from Postgres while this many flushes are queued or running (backpressure). */
  maxFlushesInFlight: number;
  snapshotPageRows: number;
  batcher: ChangeBatcherLimits;
  /** What to do when the slot was invalidated (WAL removed): snapshot again, or refuse to start. */
  onSlotLost: 'resync' | 'fail';
}

export const CAPTURE_DEFAULTS = {
  schema: 'public',
  publication: 'totes_pub',
  slot: 'totes_slot',
  heartbeatIntervalMs: 10_000,
  // pg_recvlogical's default --status-interval; wal_sender_timeout defaults to 60 s.
  statusIntervalMs: 10_000,
  // Longer than the sink's own retries with backoff and its request timeout, so only a real hang trips it.
  stallTimeoutMs: 180_000,
  statsIntervalMs: 10_000,
  lingerMs: 20,
  busyLingerMs: 100,
  // PutRecords takes up to 5 MiB a call, but bigger flushes did not help: with 1 MiB the benchmark ran
  // faster into kinesalite (whose request handling is quadratic in body size, bench/README.md) and a
  // flush still carries ~4 of the 256 KiB records, far above a shard's 1 MiB/s write quota.
  flushBytes: 1024 * 1024,
  maxFlushesInFlight: 2,
  snapshotPageRows: 5000,
  batcher: DEFAULT_BATCHER_LIMITS,
  onSlotLost: 'resync',
} as const satisfies Partial<CaptureConfig>;

/** First key of capture's advisory lock on the source (ASCII "totc"); the second is the slot's hash. */
export const CAPTURE_LOCK_NAMESPACE = 0x746f7463;

export { HEARTBEAT_PREFIX } from '../core/pipeline-heartbeat';

export interface CaptureStats {
  snapshotRows: number;
  changes: number;
  transactions: number;
  records: number;
  bytes: number;
  confirmedLsn: Lsn | null;
  /** Commit time of the newest transaction confirmed durable (ISO). */
  lastDurableCommitTs: string | null;
  lagBytes: number | null;
  retainedWalBytes: number | null;
  /** Times the slot was found invalidated (alarmed in AWS). */
  slotLosses: number;
  /** Captured tables that fell out of the publication (dropped, re-created, removed). */
  tablesNotCaptured: number;
  /** Reconciling snapshots taken (slot lost or missing, state lost, requested, tables added). */
  resyncs: number;
  epoch: number;
}

export class CaptureError extends Error {
  override readonly name: string = 'CaptureError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Refusal to start because the source is not set up for capture; the message says how to fix it. */
export class SourceNotReadyError extends CaptureError {
  override readonly name = 'SourceNotReadyError';
}

export interface CaptureDeps {
  sink: RecordSink;
  state: StateStore;
  logger: Logger;
  /** Checks to run before starting (totes doctor's): each returned problem blocks the start. */
  preflight?: () => Promise<{ problem: string; fix?: string }[]>;
  /** Called with every stats sample (metrics publishers, tests). */
  onStats?: (
    stats: CaptureStats & { at: number; changesPerSecond: number; lagSeconds: number | null },
  ) => void;
  now?: () => number;
}

export class CaptureService {
  private readonly config: CaptureConfig;
  private readonly decoder = new PgoutputDecoder();
  private readonly batcher: ChangeBatcher;
  private readonly log: Logger;
  private readonly now: () => number;
  private control: Client | null = null;
  private stream: ReplicationStream | null = null;
  private acks: AckTracker | null = null;
  private flushChain: Promise<void> = Promise.resolve();
  private lingerTimer: NodeJS.Timeout | null = null;
  /** When the last flush was enqueued (linger.ts: the rate its changes came at). */
  private lastFlushAt: number | null = null;
  /** The linger of the next window, from the last one (linger.ts `lingerAfter`). */
  private nextLingerMs: number | null = null;
  private timers: NodeJS.Timeout[] = [];
  private fatal: ((e: unknown) => void) | null = null;
  private failed = false;
  private stopping: Promise<void> | null = null;
  private lastCommitTs: string | null = null;
  /** The capture generation of everything this run writes (set by prepareSlot). */
  private epoch = 0;
  private resyncRunning = false;
  private onDrained: (() => void) | null = null;
  /** The source's cluster and timeline, recorded in the state beside the epoch. */
  private identity: SourceIdentity | null = null;
  private previousEpoch = 0;
  private lastStatusAt = 0;
  private lastProgressAt = 0;
  private lastServerMessageAt = 0;
  private silenceTimeoutMs = Infinity;
  private readonly lastMissingReport = new Map<string, number>();
  private versionNum = 0;
  readonly stats: CaptureStats = {
    snapshotRows: 0,
    changes: 0,
    transactions: 0,
    records: 0,
    bytes: 0,
    confirmedLsn: null,
    lastDurableCommitTs: null,
    lagBytes: null,
    retainedWalBytes: null,
    slotLosses: 0,
    tablesNotCaptured: 0,
    resyncs: 0,
    epoch: 0,
  };

  constructor(
    config: Partial<CaptureConfig> & Pick<CaptureConfig, 'sourceUrl' | 'tables'>,
    private readonly deps: CaptureDeps,
  ) {
    this.config = { ...CAPTURE_DEFAULTS, ...config };
    this.batcher = new ChangeBatcher(this.config.batcher);
    this.log = deps.logger.child({ slot: this.config.slot });
    this.now = deps.now ?? Date.now;
  }

  /** Bytes of change batches received and not yet handed to the sink. */
  get bufferedBytes(): number {
    return this.batcher.byteCount;
  }

  async run(): Promise<void> {
    const { config } = this;
    // Timers share this connection (heartbeat, slot statistics, publication check, resync): its
    // queries run one at a time (capture/serialise-queries.ts).
    this.control = serialiseQueries(rawTextClient(config.sourceUrl));
    this.control.on('error', (e) => this.fail(new CaptureError('control connection failed', { cause: e })));
    await this.control.connect();
    try {
      const versionNum = Number(
        (await this.control.query('SHOW server_version_num')).rows[0].server_version_num,
      );
      this.versionNum = versionNum;
      await this.lockSlot();
      if (this.deps.preflight) {
        const problems = await this.deps.preflight();
        if (problems.length > 0) {
          const text = problems.map((p) => `- ${p.problem}${p.fix ? `\n  fix: ${p.fix}` : ''}`).join('\n');
          throw new SourceNotReadyError(`the source is not ready for capture:\n${text}`);
        }
      }
      if (await ensurePublication(this.control, config.publication, config.schema, config.tables)) {
        this.log.info('publication created', {
          publication: config.publication,
          tables: config.tables.length,
        });
      } else {
        const added = await addMissingPublicationTables(
          this.control,
          config.publication,
          config.schema,
          config.tables,
        );
        if (added.length)
          this.log.info('tables added to the publication', {
            publication: config.publication,
            tables: added,
          });
      }
      await this.prepareSlot(versionNum);
      if (this.stopping) return;
      await this.streamChanges();
    } finally {
      this.clearTimers();
      await this.control.end().catch(() => undefined);
      this.control = null;
    }
  }

  /** Drains and stops: safe to call more than once, and before run() got going. */
  stop(): Promise<void> {
    if (!this.stopping) this.stopping = this.drainAndStop();
    return this.stopping;
  }

  /**
   * Ends the replication connection at once, flushing and confirming nothing more: for when nothing
   * is left to deliver to (capture/main.ts: the `totes up` that started capture, and its Kinesis, are
   * gone). A drain already under way is cut short. The slot keeps its confirmed position, so the next
   * capture re-reads everything not confirmed. A walsender whose client stopped reading would hold
   * the source's fast shutdown until wal_sender_timeout (60 s by default, 0 = never):
   * https://www.postgresql.org/docs/current/runtime-config-replication.html#GUC-WAL-SENDER-TIMEOUT
   */
  async abandon(): Promise<void> {
    this.failed = true;
    this.stopping ??= Promise.resolve();
    this.clearTimers();
    await this.stream?.stop(1000).catch(() => undefined);
    // run() ends here even if the connection never reports its end (see streamChanges).
    this.onDrained?.();
  }

  private async drainAndStop(): Promise<void> {
    this.clearTimers();
    const stream = this.stream;
    if (!stream) return;
    stream.pause();
    if (!this.failed) {
      this.enqueueFlush();
      await this.flushChain;
    }
    this.log.info('capture stopping', { confirmedLsn: this.acks?.confirmed, changes: this.stats.changes });
    await stream.stop();
    this.onDrained?.();
  }

  // ---------------------------------------------------------------- slot and snapshot

  /**
   * Decides how this run starts, from the slot and the saved state (issue 8's recovery table):
   * - slot and completed state: stream from the slot; snapshot tables added to the capture set since;
   * - slot and a snapshot that never finished (killed mid-snapshot): keep the slot (it holds every
   *   change since its consistent point) and take a reconciling snapshot beside it;
   * - slot without state (state lost): keep the slot, start a new epoch, reconciling snapshot;
   * - slot lost (`wal_status = 'lost'`: WAL it needed was removed): `resync` drops it and starts
   *   over with a new slot, a new epoch and a snapshot that reconciles; `fail` refuses;
   * - state without slot (slot dropped): new slot, new epoch, reconciling snapshot;
   * - neither: first start, the initial snapshot.
   * Every snapshot ends each table with a marker; the load deletes what a completed snapshot no
   * longer holds, and a re-read row equal to what the warehouse holds adds nothing.
   */
  private async prepareSlot(versionNum: number): Promise<void> {
    const { config } = this;
    const control = this.control!;
    this.identity = await identifySystem({ connectionString: config.sourceUrl });
    let state = await this.deps.state.load();
    if (state && this.sourceMoved(state)) {
      // A promoted standby or a restored cluster reuses LSNs: nothing positioned before can be
      // compared with what comes now. Forget the state (keeping its epoch to go past it): the slot,
      // if one came along, is kept and reconciled; otherwise a new slot and snapshot.
      this.log.warn(
        'the source is another cluster or timeline than before (failover or restore): resyncing under a new epoch',
        {
          event: 'capture.source_changed',
          before: { systemIdentifier: state.systemIdentifier, timeline: state.timeline },
          now: this.identity,
        },
      );
      this.previousEpoch = state.epoch;
      state = null;
    }
    const slot = await getSlot(control, config.slot);
    if (slot && slot.plugin !== 'pgoutput') {
      throw new SourceNotReadyError(
        `replication slot "${config.slot}" uses plugin ${slot.plugin}, not pgoutput; drop it or choose another --slot`,
      );
    }
    if (slot && !slot.inThisDatabase) {
      throw new SourceNotReadyError(
        `replication slot "${config.slot}" belongs to database ${slot.database}, not this one; ` +
          'choose another --slot (slot names are shared by the whole server)',
      );
    }
    if (slot && slot.walStatus === 'lost') {
      await this.onSlotLost(slot.invalidationReason, state);
      await dropSlot(control, config.slot);
      await this.snapshot(versionNum, { reason: 'slot lost', previous: state });
      return;
    }
    if (slot && state?.slot === config.slot && state.snapshotCompletedAt) {
      this.epoch = state.epoch;
      const known = new Set(state.tables ?? config.tables);
      const added = config.tables.filter((t) => !known.has(t));
      if (added.length) {
        this.log.info('tables added to the capture set: snapshotting them alone', { tables: added });
        await this.reconcilingSnapshot(versionNum, added, 'tables added');
        await this.deps.state.save({ ...state, tables: [...config.tables], ...this.identity! });
      }
      return;
    }
    if (slot) {
      // Never drop a healthy slot: it holds every change since its position. A snapshot beside it
      // brings back what the state (or an interrupted snapshot) cannot vouch for.
      const interrupted = state !== null && state.slot === config.slot;
      this.epoch = interrupted ? state!.epoch : this.newEpoch(state);
      this.log.warn(
        interrupted
          ? 'the snapshot of this slot was interrupted; keeping the slot and taking a reconciling snapshot'
          : 'replication slot has no capture state; keeping the slot and taking a reconciling snapshot under a new epoch',
        { stateLocation: this.deps.state.location, epoch: this.epoch },
      );
      this.stats.resyncs += 1;
      const started = this.now();
      const rows = await this.reconcilingSnapshot(versionNum, config.tables, 'resync');
      await this.checkSlotSurvived(started, state);
      await this.deps.state.save({
        slot: config.slot,
        consistentPoint: slot.confirmedFlushLsn ?? '0/0',
        snapshotCompletedAt: new Date(this.now()).toISOString(),
        snapshotRows: rows,
        epoch: this.epoch,
        tables: [...config.tables],
        ...this.identity!,
      });
      return;
    }
    if (state) {
      this.log.warn('replication slot is missing (dropped?); taking a new snapshot under a new epoch', {
        consistentPoint: state.consistentPoint,
      });
      this.stats.resyncs += 1;
    }
    await this.snapshot(versionNum, { reason: state ? 'slot missing' : 'initial', previous: state });
  }

  /**
   * Only one capture may snapshot or stream a slot at a time. While it streams, Postgres itself
   * refuses a second reader (the slot is active); during a snapshot the slot is not active yet, so a
   * session advisory lock on the control connection, held for the whole run, guards both. It is
   * released when the connection ends, also when the process is killed.
   */
  private async lockSlot(): Promise<void> {
    const { rows } = await this.control!.query('SELECT pg_try_advisory_lock($1, hashtext($2)) AS locked', [
      CAPTURE_LOCK_NAMESPACE,
      this.config.slot,
    ]);
    if (rows[0].locked !== true && rows[0].locked !== 't')
      throw new SourceNotReadyError(
        `another capture is already running for slot "${this.config.slot}" (it holds the capture lock); ` +
          'only one capture may snapshot or stream a slot at a time',
      );
  }

  /** A capture generation newer than any before it: milliseconds since 1970, never going back. */
  private newEpoch(previous: CaptureState | null): number {
    return Math.max(this.now(), (previous?.epoch ?? this.previousEpoch) + 1);
  }

  private sourceMoved(state: CaptureState): boolean {
    const now = this.identity!;
    return (
      (state.systemIdentifier !== undefined && state.systemIdentifier !== now.systemIdentifier) ||
      (state.timeline !== undefined && state.timeline !== now.timeline)
    );
  }

  private async onSlotLost(reason: string | null, state: CaptureState | null): Promise<void> {
    const settings = await this.walRetention();
    this.stats.slotLosses += 1;
    this.log.error('replication slot lost: the WAL it needed was removed', {
      event: 'capture.slot_lost',
      slot: this.config.slot,
      invalidationReason: reason ?? 'wal_status = lost',
      maxSlotWalKeepSize: settings,
      onSlotLost: this.config.onSlotLost,
    });
    if (this.config.onSlotLost === 'fail') {
      throw new SourceNotReadyError(
        `replication slot "${this.config.slot}" was invalidated (${reason ?? 'wal_status = lost'}): changes since ` +
          'its position are gone. Restart with --on-slot-lost resync (TOTES_ON_SLOT_LOST=resync) to take a ' +
          'reconciling snapshot under a new epoch, or drop the slot yourself.',
      );
    }
    const lost = state?.lostDuringSnapshot;
    if (lost && lost.maxSlotWalKeepSize === settings) {
      throw new SourceNotReadyError(
        `the last resync could not finish: the slot was lost again while its snapshot ran ` +
          `(${lost.snapshotSeconds.toFixed(0)} s; max_slot_wal_keep_size = ${settings}). Raise ` +
          'max_slot_wal_keep_size so the WAL written during a snapshot fits (see totes doctor), then restart.',
      );
    }
  }

  private async walRetention(): Promise<string | null> {
    const { rows } = await this.control!.query(
      "SELECT current_setting('max_slot_wal_keep_size', true) AS value",
    );
    return rows[0]?.value ?? null;
  }

  /**
   * After a snapshot: if the slot was invalidated while it ran, the stream can never continue from
   * it. Say so (with what to change) instead of looping through snapshots that cannot finish.
   */
  private async checkSlotSurvived(started: number, state: CaptureState | null): Promise<void> {
    const slot = await getSlot(this.control!, this.config.slot);
    if (slot?.walStatus !== 'lost') return;
    const settings = await this.walRetention();
    const snapshotSeconds = (this.now() - started) / 1000;
    if (state)
      await this.deps.state.save({
        ...state,
        lostDuringSnapshot: {
          at: new Date(this.now()).toISOString(),
          maxSlotWalKeepSize: settings,
          snapshotSeconds,
        },
      });
    throw new SourceNotReadyError(
      `the replication slot was lost while the snapshot ran (${snapshotSeconds.toFixed(0)} s): the WAL written ` +
        `meanwhile exceeded max_slot_wal_keep_size (${settings}). Raise it so a snapshot fits, then restart.`,
    );
  }

  /** A new slot with its exported snapshot: the initial snapshot, or a full resync. */
  private async snapshot(
    versionNum: number,
    why: { reason: string; previous: CaptureState | null },
  ): Promise<void> {
    const { config } = this;
    this.epoch = this.newEpoch(why.previous);
    const layouts = await describeTables(this.control!, config.schema, config.tables);
    const exported = await createSlotWithSnapshot(
      { connectionString: config.sourceUrl },
      config.slot,
      versionNum,
    );
    const base: CaptureState = {
      slot: config.slot,
      consistentPoint: exported.consistentPoint,
      snapshotCompletedAt: null,
      snapshotRows: 0,
      epoch: this.epoch,
      tables: [...config.tables],
      ...this.identity!,
    };
    try {
      // Saved before the copy: a crash mid-snapshot leaves a slot whose state says so.
      await this.deps.state.save(base);
      const started = this.now();
      const rows = await this.copySnapshot(exported, layouts, why.reason);
      await this.checkSlotSurvived(started, base);
      await this.deps.state.save({
        ...base,
        snapshotCompletedAt: new Date(this.now()).toISOString(),
        snapshotRows: rows,
      });
    } finally {
      await exported.close().catch(() => undefined);
    }
  }

  /**
   * A snapshot of `tables` beside the kept slot: a TEMPORARY slot gives a consistent point and its
   * exported snapshot; rows carry that point, so the stream's older changes sort before them and its
   * newer ones after, and the load reconciles the tables once each completes.
   */
  private async reconcilingSnapshot(
    versionNum: number,
    tables: readonly string[],
    reason: string,
  ): Promise<number> {
    const layouts = await describeTables(this.control!, this.config.schema, tables);
    const name = `${this.config.slot}_resync_${process.pid}`.slice(0, 63);
    const exported = await createSlotWithSnapshot(
      { connectionString: this.config.sourceUrl },
      name,
      versionNum,
      {
        temporary: true,
      },
    );
    try {
      return await this.copySnapshot(exported, layouts, reason);
    } finally {
      await exported.close().catch(() => undefined);
    }
  }

  /**
   * Copies the tables inside the exported snapshot into the sink, each table ended by a
   * `snapshot_end` marker with its row count. Rows take the consistent point minus one as position
   * (see snapshotLsn) under the current epoch; ordinals run across the whole snapshot.
   */
  private async copySnapshot(
    exported: { consistentPoint: string; snapshotName: string },
    layouts: readonly TableLayout[],
    reason: string,
  ): Promise<number> {
    const { config } = this;
    const started = this.now();
    this.log.info('snapshot started', {
      reason,
      consistentPoint: exported.consistentPoint,
      epoch: this.epoch,
      tables: layouts.length,
    });
    let total = 0;
    let lastProgress = started;
    // Tables on parallel connections inside the exported snapshot, each table's COPY lines encoded
    // straight into records (capture/snapshot.ts copySnapshotTables; bench/README.md measures it).
    const { rows } = await copySnapshotTables({
      connect: async () => {
        const client = rawTextClient(config.sourceUrl);
        await client.connect();
        return client;
      },
      snapshotName: exported.snapshotName,
      layouts,
      lsn: snapshotLsn(exported.consistentPoint),
      epoch: this.epoch,
      limits: config.batcher,
      flushBytes: config.flushBytes,
      pageRows: config.snapshotPageRows,
      put: (records) => this.put(records),
      onBatch: (table, rows) => {
        total += rows;
        this.stats.snapshotRows += rows;
        if (this.now() - lastProgress >= 5000) {
          lastProgress = this.now();
          const seconds = (lastProgress - started) / 1000;
          this.log.info('snapshot progress', {
            table,
            rows: total,
            rowsPerSecond: Math.round(total / seconds),
          });
        }
        if (this.stopping)
          throw new CaptureError('stopped during the snapshot; it restarts (and reconciles) next time');
      },
      onTableDone: (table, rows) => this.log.info('snapshot of table finished', { table, rows }),
    });
    this.log.info('snapshot finished', {
      reason,
      rows,
      seconds: (this.now() - started) / 1000,
      consistentPoint: exported.consistentPoint,
      epoch: this.epoch,
    });
    return rows;
  }

  private async put(records: BatchRecord[]): Promise<void> {
    if (records.length === 0) return;
    const result = await this.deps.sink.put(records);
    this.stats.records += result.records;
    this.stats.bytes += result.bytes;
  }

  /**
   * `totes resync` writes a request beside the state; a running capture takes it here (between
   * stats samples) and snapshots the tables again beside its stream, reconciling them.
   */
  private async takeResyncRequest(versionNum: number): Promise<void> {
    if (this.resyncRunning) return;
    const request = await this.deps.state.loadResyncRequest();
    if (!request) return;
    const tables = request.tables.length ? request.tables : [...this.config.tables];
    const unknown = tables.filter((t) => !this.config.tables.includes(t));
    if (unknown.length) {
      this.log.error('resync request names tables this capture does not capture; ignored', { unknown });
      await this.deps.state.clearResyncRequest();
      return;
    }
    this.resyncRunning = true;
    try {
      this.log.info('resync requested', { tables, requestedAt: request.requestedAt });
      this.stats.resyncs += 1;
      await this.reconcilingSnapshot(versionNum, tables, 'requested');
      await this.deps.state.clearResyncRequest();
    } finally {
      this.resyncRunning = false;
    }
  }

  // ---------------------------------------------------------------- streaming

  private async streamChanges(): Promise<void> {
    const { config } = this;
    const slot = await getSlot(this.control!, config.slot);
    // A stop() that arrived while the slot was being read found no stream to stop: honour it here.
    if (this.stopping) return;
    if (!slot?.confirmedFlushLsn) throw new CaptureError(`replication slot "${config.slot}" disappeared`);
    if (slot.active) {
      throw new SourceNotReadyError(
        `replication slot "${config.slot}" is in use by another process (pid ${slot.activePid}); only one capture may read a slot`,
      );
    }
    const silenceTimeoutMs =
      this.config.silenceTimeoutMs ?? silenceTimeoutFor(await this.walSenderTimeoutMs());
    // From here to stream.run() nothing awaits: a stop() either came before (honoured here) or finds
    // the stream, its timers and onDrained in place. (One that landed in between used to find a stream
    // not yet running, "drain" it, and leave run() streaming forever — a test hung for 60 s.)
    if (this.stopping) return;
    this.acks = new AckTracker(slot.confirmedFlushLsn);
    this.stats.confirmedLsn = slot.confirmedFlushLsn;
    this.batcher.epoch = this.epoch;
    this.stats.epoch = this.epoch;
    const stream = new ReplicationStream(
      { connectionString: config.sourceUrl, slot: config.slot, publication: config.publication },
      {
        onMessage: (message) => this.onMessage(message),
        onKeepalive: (walEnd, reply) => this.onKeepalive(walEnd, reply),
      },
    );
    this.stream = stream;
    this.silenceTimeoutMs = silenceTimeoutMs;
    this.lastProgressAt = this.lastServerMessageAt = this.now();
    this.startTimers();
    this.log.info('streaming started', {
      from: slot.confirmedFlushLsn,
      publication: config.publication,
      epoch: this.epoch,
    });
    const failed = new Promise<never>((_, reject) => {
      this.fatal = reject;
    });
    // A stop() that lands while the connection is still being set up ends it mid-handshake; that
    // error is the stop, not a failure.
    const ended = stream.run().catch((e) => {
      if (!this.stopping) throw e;
    });
    // A stop ends the run once drained, even if the connection never reports its end (a socket
    // destroyed by ReplicationStream.stop's grace timeout leaves the library's promise pending).
    const drained = new Promise<void>((resolve) => {
      this.onDrained = resolve;
    });
    try {
      await Promise.race([ended, failed, drained]);
    } catch (e) {
      // Failed: nothing more will be confirmed. End the replication connection now — a walsender left
      // waiting on a client that no longer answers holds a source's fast shutdown, and this slot for
      // the next capture, for wal_sender_timeout (found by `npm run chaos`, restart-source).
      await stream.stop(1000).catch(() => undefined);
      throw e;
    }
    await this.stopping;
  }

  private onMessage(message: StreamMessage): void {
    this.lastServerMessageAt = this.now();
    if (this.failed) return;
    try {
      const decoded = this.decoder.decode(message);
      if (decoded === null) return;
      if (Array.isArray(decoded)) for (const item of decoded) this.apply(item);
      else this.apply(decoded);
      if (this.batcher.byteCount >= this.config.flushBytes) this.enqueueFlush();
    } catch (e) {
      this.fail(e);
    }
  }

  private apply(item: DecodedItem): void {
    const acks = this.acks!;
    switch (item.kind) {
      case 'begin':
        acks.begin();
        return;
      case 'change':
        this.batcher.add(item.schema, item.table, item.columns, item.change, item.valuesJson);
        this.stats.changes += 1;
        return;
      case 'commit':
        acks.commit(item.endLsn);
        this.stats.transactions += 1;
        this.lastCommitTs = item.ts;
        this.scheduleLinger();
        return;
      case 'message':
        this.onLogicalMessage(item);
        return;
      default:
        item satisfies never;
    }
  }

  /**
   * Our own heartbeat becomes a change of the pseudo table `_totes_heartbeat`, which travels to the
   * warehouse's `pipeline_heartbeat` (core/pipeline-heartbeat.ts). Every slot on the source decodes
   * every message: another capture's heartbeats (another slot) are left to it.
   */
  private onLogicalMessage(item: Extract<DecodedItem, { kind: 'message' }>): void {
    if (item.prefix !== HEARTBEAT_PREFIX || !item.position) return;
    const content = decodeHeartbeatContent(item.content);
    if (content?.slot !== this.config.slot) return;
    this.batcher.add(
      this.config.schema,
      HEARTBEAT_SOURCE_TABLE,
      HEARTBEAT_COLUMNS,
      heartbeatChange(content, item.position),
    );
  }

  private onKeepalive(walEnd: Lsn, replyRequested: boolean): void {
    this.lastServerMessageAt = this.now();
    if (this.failed || !this.acks) return;
    const lsn = this.acks.keepalive(walEnd, this.batcher.isEmpty, replyRequested);
    if (lsn) this.confirm(lsn);
  }

  private scheduleLinger(): void {
    if (this.lingerTimer) return;
    this.lingerTimer = setTimeout(() => {
      this.lingerTimer = null;
      this.enqueueFlush();
    }, this.nextLingerMs ?? this.config.lingerMs);
  }

  /** Drains the batcher into a flush that runs after every earlier one. */
  private enqueueFlush(): void {
    if (this.failed || !this.acks) return;
    if (this.lingerTimer) {
      clearTimeout(this.lingerTimer);
      this.lingerTimer = null;
    }
    const acks = this.acks;
    const records = this.batcher.drain();
    const flushedAt = this.now();
    this.nextLingerMs = lingerAfter(
      {
        changes: records.reduce((n, r) => n + r.changes, 0),
        sinceLastFlushMs: this.lastFlushAt === null ? Infinity : flushedAt - this.lastFlushAt,
      },
      this.config,
    );
    this.lastFlushAt = flushedAt;
    // Work starts pending now: the stall clock runs from here, not from the last (idle) progress.
    if (acks.flushesInFlight === 0) this.lastProgressAt = this.now();
    const token = acks.startFlush();
    const commitTs = this.lastCommitTs;
    if (acks.flushesInFlight >= this.config.maxFlushesInFlight) this.stream?.pause();
    this.flushChain = this.flushChain.then(async () => {
      if (this.failed) return;
      try {
        await this.put(records);
      } catch (e) {
        this.fail(
          new CaptureError(
            'the sink did not accept a batch; nothing after the last confirmed LSN is confirmed',
            { cause: e },
          ),
        );
        return;
      }
      this.lastProgressAt = this.now();
      const confirmed = acks.finishFlush(token);
      if (confirmed) {
        if (commitTs) this.stats.lastDurableCommitTs = commitTs;
        this.confirm(confirmed);
      }
      if (acks.flushesInFlight < this.config.maxFlushesInFlight && !this.stopping) this.stream?.resume();
    });
  }

  private confirm(lsn: Lsn): void {
    if (!this.stats.confirmedLsn || compareLsn(lsn, this.stats.confirmedLsn) > 0)
      this.stats.confirmedLsn = lsn;
    this.stream
      ?.acknowledge(lsn)
      .catch((e) => this.fail(new CaptureError('could not confirm the LSN', { cause: e })));
  }

  private fail(e: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.log.error('capture failed', { err: e, confirmedLsn: this.acks?.confirmed });
    this.clearTimers();
    this.fatal?.(e);
  }

  // ---------------------------------------------------------------- heartbeat and stats

  private startTimers(): void {
    const control = this.control!;
    let lastChanges = this.stats.changes;
    let lastAt = this.now();
    // The control connection runs one query at a time; a tick whose previous query is still
    // waiting (a slow or busy source) is skipped rather than queued behind it.
    const checkCaptureSet = unlessBusy(() =>
      this.checkCaptureSet().catch((e) => this.log.warn('could not check the publication', { err: e })),
    );
    this.timers.push(
      setInterval(
        unlessBusy(() =>
          // Transactional, so it flows through the slot like any commit and moves it along.
          control
            .query('SELECT pg_logical_emit_message(true, $1, $2)', [
              HEARTBEAT_PREFIX,
              encodeHeartbeatContent({
                slot: this.config.slot,
                emittedAt: new Date(this.now()).toISOString(),
              }),
            ])
            .then(
              () => undefined,
              // A heartbeat in flight when capture stops fails with its connection: expected then.
              (e) => (this.stopping ? undefined : this.log.warn('heartbeat failed', { err: e })),
            ),
        ),
        this.config.heartbeatIntervalMs,
      ),
      setInterval(
        unlessBusy(() =>
          getSlot(control, this.config.slot)
            .then((slot) => {
              const at = this.now();
              this.stats.lagBytes = slot?.lagBytes ?? null;
              this.stats.retainedWalBytes = slot?.retainedWalBytes ?? null;
              const changesPerSecond = ((this.stats.changes - lastChanges) * 1000) / Math.max(1, at - lastAt);
              lastChanges = this.stats.changes;
              lastAt = at;
              const lagSeconds = this.stats.lastDurableCommitTs
                ? Math.max(0, (at - Date.parse(this.stats.lastDurableCommitTs)) / 1000)
                : null;
              const sample = { ...this.stats, at, changesPerSecond, lagSeconds };
              this.log.info('capture.stats', sample);
              this.deps.onStats?.(sample);
            })
            .catch((e) => this.log.warn('could not read slot statistics', { err: e })),
        ),
        this.config.statsIntervalMs,
      ),
      setInterval(() => this.keepAlive(this.now()), Math.min(1000, this.config.statusIntervalMs)),
      setInterval(() => {
        checkCaptureSet();
        this.takeResyncRequest(this.versionNum).catch((e) =>
          this.fail(new CaptureError('the requested resync failed', { cause: e })),
        );
      }, this.config.statsIntervalMs),
    );
    for (const t of this.timers) t.unref();
  }

  private async walSenderTimeoutMs(): Promise<number> {
    // pg_settings reports milliseconds for wal_sender_timeout.
    const { rows } = await this.control!.query(
      "SELECT setting::int AS ms FROM pg_settings WHERE name = 'wal_sender_timeout'",
    );
    return Number(rows[0]?.ms ?? 60_000);
  }

  /** Sends the confirmed position as a status update, and fails when capture is stuck alive. */
  private keepAlive(now: number): void {
    const stream = this.stream;
    const acks = this.acks;
    if (!stream || !acks || this.failed) return;
    if (now - this.lastStatusAt >= this.config.statusIntervalMs) {
      this.lastStatusAt = now;
      stream
        .acknowledge(acks.confirmed)
        .catch((e) => this.fail(new CaptureError('could not send a status update', { cause: e })));
    }
    const verdict = assessLiveness(
      {
        now,
        workPending: acks.flushesInFlight > 0,
        lastProgressAt: this.lastProgressAt,
        lastServerMessageAt: this.lastServerMessageAt,
        paused: stream.isPaused,
      },
      { stallTimeoutMs: this.config.stallTimeoutMs, silenceTimeoutMs: this.silenceTimeoutMs },
    );
    if (!verdict.ok) this.fail(new CaptureError(verdict.reason));
  }

  /**
   * A table dropped, re-created, or removed from the publication while capture runs stops
   * producing changes without any error from Postgres: check the publication against the capture
   * set and report each table that fell out of it (at most once a minute per table).
   */
  private async checkCaptureSet(): Promise<void> {
    const published = new Set(
      await publishedTables(this.control!, this.config.publication, this.config.schema),
    );
    const missing = this.config.tables.filter((t) => !published.has(t));
    this.stats.tablesNotCaptured = missing.length;
    const now = this.now();
    for (const table of missing) {
      if (now - (this.lastMissingReport.get(table) ?? -Infinity) < 60_000) continue;
      this.lastMissingReport.set(table, now);
      this.log.error(
        'table is no longer captured: it was dropped, re-created or removed from the publication',
        {
          event: 'capture.table_not_captured',
          table,
          publication: this.config.publication,
          fix: `ALTER PUBLICATION ${this.config.publication} ADD TABLE ${this.config.schema}.${table}; then restart capture (or run totes resync --table ${table})`,
        },
      );
    }
  }

  private clearTimers(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerTimer = null;
  }
}

/** A timer callback that skips its tick while the task's previous run has not settled. */
function unlessBusy(task: () => Promise<void>): () => void {
  let busy = false;
  return () => {
    if (busy) return;
    busy = true;
    void task().finally(() => {
      busy = false;
    });
  };
}
