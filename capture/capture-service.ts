import type { Client } from 'pg';
import type { Pgoutput } from 'pg-logical-replication';
import type { Logger } from '../core/logger';
import { compareLsn, type Lsn } from '../core/lsn';
import { AckTracker } from './ack-tracker';
import {
  ChangeBatcher,
  DEFAULT_BATCHER_LIMITS,
  type BatchRecord,
  type ChangeBatcherLimits,
} from './change-batcher';
import type { RecordSink } from './kinesis-sink';
import { rawTextClient } from './pg-text';
import { PgoutputDecoder, snapshotLsn, type DecodedItem } from './pgoutput-decoder';
import { ReplicationStream } from './replication-stream';
import { createSlotWithSnapshot, dropSlot, ensurePublication, getSlot } from './slot';
import { describeTables, readSnapshot, transactionTimestamp } from './snapshot';
import type { StateStore } from './state-store';

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
  /** How often slot lag and throughput are measured and logged. */
  statsIntervalMs: number;
  /** After a commit, wait this long for more changes before flushing a partial batch. */
  lingerMs: number;
  /** Flush once this many bytes are buffered, without waiting for the linger. */
  flushBytes: number;
  /** Stop reading from Postgres while this many flushes are queued or running (backpressure). */
  maxFlushesInFlight: number;
  snapshotPageRows: number;
  batcher: ChangeBatcherLimits;
}

export const CAPTURE_DEFAULTS = {
  schema: 'public',
  publication: 'totes_pub',
  slot: 'totes_slot',
  heartbeatIntervalMs: 10_000,
  statsIntervalMs: 10_000,
  lingerMs: 20,
  // PutRecords takes up to 5 MiB a call, but bigger flushes did not help: with 1 MiB the benchmark ran
  // faster into kinesalite (whose request handling is quadratic in body size, bench/README.md) and a
  // flush still carries ~4 of the 256 KiB records, far above a shard's 1 MiB/s write quota.
  flushBytes: 1024 * 1024,
  maxFlushesInFlight: 2,
  snapshotPageRows: 5000,
  batcher: DEFAULT_BATCHER_LIMITS,
} as const;

/** Prefix of the logical decoding messages capture emits as heartbeats. */
export const HEARTBEAT_PREFIX = 'totes.heartbeat';

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
  private timers: NodeJS.Timeout[] = [];
  private fatal: ((e: unknown) => void) | null = null;
  private failed = false;
  private stopping: Promise<void> | null = null;
  private lastCommitTs: string | null = null;
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
    this.control = rawTextClient(config.sourceUrl);
    this.control.on('error', (e) => this.fail(new CaptureError('control connection failed', { cause: e })));
    await this.control.connect();
    try {
      const versionNum = Number(
        (await this.control.query('SHOW server_version_num')).rows[0].server_version_num,
      );
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
  }

  // ---------------------------------------------------------------- slot and snapshot

  private async prepareSlot(versionNum: number): Promise<void> {
    const { config } = this;
    const control = this.control!;
    const state = await this.deps.state.load();
    const slot = await getSlot(control, config.slot);
    if (slot && slot.plugin !== 'pgoutput') {
      throw new SourceNotReadyError(
        `replication slot "${config.slot}" uses plugin ${slot.plugin}, not pgoutput; drop it or choose another --slot`,
      );
    }
    if (slot && slot.walStatus === 'lost') {
      this.log.warn('replication slot was invalidated (WAL removed); taking a new snapshot', {
        walStatus: slot.walStatus,
      });
      await dropSlot(control, config.slot);
    } else if (slot && state?.slot === config.slot) {
      return; // snapshot done for this slot: stream from its confirmed position
    } else if (slot) {
      // The slot outlived an interrupted snapshot (or its state was lost): start over, no gap.
      this.log.warn('replication slot has no completed snapshot; dropping it and taking a new snapshot', {
        stateLocation: this.deps.state.location,
      });
      await dropSlot(control, config.slot);
    } else if (state) {
      this.log.warn('replication slot is missing; taking a new snapshot', {
        consistentPoint: state.consistentPoint,
      });
    }
    await this.deps.state.clear();
    await this.snapshot(versionNum);
  }

  private async snapshot(versionNum: number): Promise<void> {
    const { config } = this;
    const layouts = await describeTables(this.control!, config.schema, config.tables);
    const exported = await createSlotWithSnapshot(
      { connectionString: config.sourceUrl },
      config.slot,
      versionNum,
    );
    const reader = rawTextClient(config.sourceUrl);
    await reader.connect();
    const started = this.now();
    this.log.info('snapshot started', { consistentPoint: exported.consistentPoint, tables: layouts.length });
    try {
      const lsn = snapshotLsn(exported.consistentPoint);
      const ts = await transactionTimestamp(reader);
      let seq = 0;
      let inFlight: Promise<unknown> = Promise.resolve();
      let lastProgress = started;
      for await (const page of readSnapshot(
        reader,
        exported.snapshotName,
        layouts,
        config.snapshotPageRows,
      )) {
        for (const values of page.rows) {
          this.batcher.add(page.layout.schema, page.layout.table, page.layout.columns, {
            op: 'snapshot',
            lsn,
            seq: seq++,
            ts,
            values,
          });
        }
        this.stats.snapshotRows += page.rows.length;
        if (this.batcher.byteCount >= config.flushBytes) {
          // One put in flight while the next page is read.
          await inFlight;
          inFlight = this.put(this.batcher.drain());
        }
        if (this.now() - lastProgress >= 5000) {
          lastProgress = this.now();
          this.log.info('snapshot progress', { table: page.layout.table, rows: this.stats.snapshotRows });
        }
        if (this.stopping)
          throw new CaptureError('stopped during the snapshot; it restarts from the beginning next time');
      }
      await inFlight;
      await this.put(this.batcher.drain());
      await this.deps.state.save({
        slot: config.slot,
        consistentPoint: exported.consistentPoint,
        snapshotCompletedAt: new Date(this.now()).toISOString(),
        snapshotRows: this.stats.snapshotRows,
      });
      this.log.info('snapshot finished', {
        rows: this.stats.snapshotRows,
        seconds: (this.now() - started) / 1000,
        consistentPoint: exported.consistentPoint,
      });
    } finally {
      await reader.end().catch(() => undefined);
      await exported.close().catch(() => undefined);
    }
  }

  private async put(records: BatchRecord[]): Promise<void> {
    if (records.length === 0) return;
    const result = await this.deps.sink.put(records);
    this.stats.records += result.records;
    this.stats.bytes += result.bytes;
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
    this.acks = new AckTracker(slot.confirmedFlushLsn);
    this.stats.confirmedLsn = slot.confirmedFlushLsn;
    const stream = new ReplicationStream(
      { connectionString: config.sourceUrl, slot: config.slot, publication: config.publication },
      {
        onMessage: (message) => this.onMessage(message),
        onKeepalive: (walEnd, reply) => this.onKeepalive(walEnd, reply),
      },
    );
    this.stream = stream;
    this.startTimers();
    this.log.info('streaming started', { from: slot.confirmedFlushLsn, publication: config.publication });
    const failed = new Promise<never>((_, reject) => {
      this.fatal = reject;
    });
    // A stop() that lands while the connection is still being set up ends it mid-handshake; that
    // error is the stop, not a failure.
    const ended = stream.run().catch((e) => {
      if (!this.stopping) throw e;
    });
    await Promise.race([ended, failed]);
    await this.stopping;
  }

  private onMessage(message: Pgoutput.Message): void {
    if (this.failed) return;
    try {
      const decoded = this.decoder.decode(message);
      if (decoded === null) return;
      for (const item of Array.isArray(decoded) ? decoded : [decoded]) this.apply(item);
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
        this.batcher.add(item.schema, item.table, item.columns, item.change);
        this.stats.changes += 1;
        return;
      case 'commit':
        acks.commit(item.endLsn);
        this.stats.transactions += 1;
        this.lastCommitTs = item.ts;
        this.scheduleLinger();
        return;
      case 'message':
        return; // heartbeats matter only through the commit that follows them
      default:
        item satisfies never;
    }
  }

  private onKeepalive(walEnd: Lsn, replyRequested: boolean): void {
    if (this.failed || !this.acks) return;
    const lsn = this.acks.keepalive(walEnd, this.batcher.isEmpty, replyRequested);
    if (lsn) this.confirm(lsn);
  }

  private scheduleLinger(): void {
    if (this.lingerTimer) return;
    this.lingerTimer = setTimeout(() => {
      this.lingerTimer = null;
      this.enqueueFlush();
    }, this.config.lingerMs);
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
    this.timers.push(
      setInterval(() => {
        // Transactional, so it flows through the slot like any commit and moves it along.
        control
          .query('SELECT pg_logical_emit_message(true, $1, $2)', [
            HEARTBEAT_PREFIX,
            new Date(this.now()).toISOString(),
          ])
          .catch((e) => this.log.warn('heartbeat failed', { err: e }));
      }, this.config.heartbeatIntervalMs),
      setInterval(() => {
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
          .catch((e) => this.log.warn('could not read slot statistics', { err: e }));
      }, this.config.statsIntervalMs),
    );
    for (const t of this.timers) t.unref();
  }

  private clearTimers(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerTimer = null;
  }
}
