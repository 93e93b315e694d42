import type { ClientBase } from 'pg';
import { silentLogger, type Logger } from '../../core/logger';
import { WAREHOUSE_TABLES, type WarehouseTableName } from '../../core/warehouse-model';
import {
  derivedDimensionsFedBy,
  derivedLock,
  dimensionLoadLock,
  derivedRecompute,
  dimDateInsert,
  dimensionApplyTruncates,
  dimensionDelete,
  dimensionApplySnapshots,
  dimensionUpsert,
  factDeleteInsert,
  factDropRedundantSnapshots,
  factInheritance,
  factInsert,
  factCopy,
  factInsertFromStage,
  factLock,
  keyClaim,
  factStageCopy,
  factStageCreate,
  factStageTruncate,
  factApplySnapshots,
  factRefreshDeleted,
  factTruncateDeletes,
  loadLogInsert,
  loadLogLookup,
  placeholderCopy,
  placeholderInsert,
  keyRangeEmpty,
  truncateExists,
  truncateInsert,
  progressUpsert,
  reconciledSnapshotsAfter,
  snapshotLock,
  snapshotMarkReconciled,
  snapshotRecordDeleted,
  snapshotProgress,
  snapshotPartInsert,
  snapshotTableUpsert,
  comparePosition,
  type SnapshotId,
  type SqlStatement,
} from '../../core/warehouse-sql';
import { copyChunks, copyIn } from './copy-in';
import { copyTextLine } from './copy-text';
import { runStatements, type StatementResult } from './statement-batch';
import {
  batchKeyClaims,
  factCopyChunks,
  type ObjectClaims,
  type Position,
  type PreparedBatch,
  type SnapshotPart,
} from './load-batch';

/**
 * Writes one object — its prepared parts, one for most objects — into the warehouse in ONE
 * transaction (READ COMMITTED), so an object is either wholly loaded, with its bookkeeping, or
 * not at all (`applyObject`).
 *
 * Order inside the transaction, the same for every load, so that concurrent loads take row locks in
 * one global order and do not deadlock: a dimension's or staging table's load lock (shared;
 * exclusive for an object carrying snapshot rows, an end marker or a TRUNCATE: core/warehouse-sql.ts
 * `dimensionLoadLock`) → dim_date → base dimensions (placeholders or upserts, keys ascending) →
 * staging → derived-dimension advisory lock → derived dimensions → fact-table advisory lock → facts
 * (versions, deletes, truncates, re-read snapshot versions dropped, deleted flags) → snapshot
 * advisory lock → snapshot bookkeeping → pipeline_progress (the source table's row) →
 * reconciliation of the snapshots this object completed → a dimension object's late-row check →
 * load_log. An object in parts keeps that order over all its parts: what its parts would lock
 * outside the fact (dates, placeholders, a dimension's keys out of order) is claimed before its
 * first part (`ApplyOptions.claims`, load-batch.ts `ObjectClaims`), and its derived dimensions are
 * recomputed after its last.
 *
 * Whole-table work — a reconciliation's pass, a TRUNCATE's — locks rows of its table that no key
 * order covers. For a dimension, the exclusive load lock keeps every other load of the table out
 * meanwhile, so the pass waits on no row another load holds (before it, a load holding a row the
 * snapshot lacked and waiting for the progress row deadlocked with it: apply-batch.pg.test.ts), and
 * a late row's check and a reconciliation cannot miss each other's rows (`dimensionLateRows`). A
 * fact's reconciliation takes the fact lock exclusively. Still outside the order (rare): the same
 * fact version in two objects loaded at once. A deadlock or serialization failure is retried a few
 * times; `attempts` says when it happened.
 */

/** Base class of every error this module throws. */
export class ApplyBatchError extends Error {
  override name = 'ApplyBatchError';
}

/**
 * Postgres refused the object's data (SQLSTATE class 22 data exception or 23 integrity violation):
 * retrying cannot help, so the object is quarantined. `detail` is safe to log (no values).
 * https://www.postgresql.org/docs/current/errcodes-appendix.html
 */
export class WarehouseDataError extends ApplyBatchError {
  override name = 'WarehouseDataError';
  readonly detail: string;
  constructor(
    readonly table: WarehouseTableName,
    readonly sqlState: string,
    options: { cause: unknown },
  ) {
    const e = options.cause as { constraint?: string; column?: string };
    const detail = [
      `SQLSTATE ${sqlState}`,
      e?.constraint ? `constraint ${e.constraint}` : '',
      e?.column ? `column ${e.column}` : '',
    ]
      .filter(Boolean)
      .join(', ');
    super(`warehouse refused the ${table} object: ${detail}`, options);
    this.detail = detail;
  }
}

/** The load failed for a reason a later attempt may not have (connection, lock, server): retry. */
export class WarehouseUnavailableError extends ApplyBatchError {
  override name = 'WarehouseUnavailableError';
  constructor(
    readonly table: WarehouseTableName,
    readonly attempts: number,
    options: { cause: unknown },
  ) {
    super(
      `loading the ${table} object failed after ${attempts} attempt(s): ${(options.cause as Error)?.message ?? options.cause}`,
      options,
    );
  }
}

export interface ApplyOptions {
  /** The processed-bucket key, recorded in load_log with `eTag` (a version found there is not loaded again). */
  objectKey: string;
  /** The S3 ETag of the bytes being loaded (content identity, migration 006); '' when unknown. */
  eTag?: string;
  logger?: Logger;
  /** Attempts on deadlock / serialization failure; default 3. */
  maxAttempts?: number;
  /** Fact versions from which the insert goes through COPY; default FACT_COPY_MIN_ROWS. */
  factCopyMinRows?: number;
  /** Placeholders of one dimension from which an object's claims may COPY them; default PLACEHOLDER_COPY_MIN_KEYS. */
  placeholderCopyMinKeys?: number;
  /**
   * COPY a part's fact versions straight into the fact (default true); false = always through the
   * staging table and its INSERT … ON CONFLICT DO NOTHING (what the direct COPY falls back to).
   */
  factDirectCopy?: boolean;
  /**
   * An object in parts: the rows it locks outside its fact, gathered over the whole object
   * (load-batch.ts `ObjectClaims`), locked before its first part, in the global order; its parts
   * then insert no dates or placeholders of their own, and derived dimensions are recomputed once,
   * after the last part.
   */
  claims?: ObjectClaims;
}

/**
 * From this many versions, a fact's insert COPYs them (text format) into a temporary staging table
 * and inserts from there, instead of sending one array parameter per column: node-postgres'
 * array serialization (`escapeElement`, `prepareValue`, `arrayString`) and the column arrays were
 * the largest part of the load process' own cost per row (bench:load profiles, bench/README.md).
 * Below it, the staging table's creation (catalog rows, per transaction) costs more than it saves.
 */
export const FACT_COPY_MIN_ROWS = 500;

/**
 * The direct COPY of a part's versions into its fact found one of them already there (SQLSTATE
 * 23505, unique_violation on the fact's (key, _lsn, _seq) constraint, or a concurrent load's
 * uncommitted insert of it that then committed). Not a data error: applyObject rolls the object
 * back and loads it again through the staging table, which skips present versions.
 */
class VersionAlreadyPresent {
  constructor(readonly cause: unknown) {}
}

export interface ApplyOutcome {
  objectKey: string;
  table: WarehouseTableName;
  /** True when load_log already had this version of the key: nothing was written. */
  duplicate: boolean;
  rows: number;
  /** Dimension/staging rows inserted or changed; fact versions inserted (repeats excluded). */
  written: number;
  deletes: number;
  /** Rows (dimensions) or keys (facts) a TRUNCATE marked deleted. */
  truncated: number;
  /** Re-read snapshot versions dropped because they equalled the version before them. */
  rereadVersionsDropped: number;
  /**
   * True when the direct COPY into the fact met a version already there (23505), so the object was
   * rolled back and loaded again through the staging table (ON CONFLICT DO NOTHING).
   */
  factCopyFallback: boolean;
  /** Snapshots this load completed and reconciled, with the rows each marked deleted. */
  reconciled: { sourceTable: string; epoch: number; lsn: string; deleted: number }[];
  datesInserted: number;
  placeholdersInserted: number;
  /** Derived dimension → rows rewritten. */
  derived: Partial<Record<WarehouseTableName, number>>;
  attempts: number;
  durationMs: number;
  maxPosition: Position | null;
  newestCommitTs: string | null;
}

/** Deadlock detected, serialization failure: the transaction may succeed if run again. */
const RETRY_IN_PLACE = new Set(['40P01', '40001']);

function sqlStateOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** Class 22 (data exception) and 23 (integrity constraint violation): the data, not the moment. */
export function isDataError(e: unknown): boolean {
  const state = sqlStateOf(e);
  return state !== undefined && (state.startsWith('22') || state.startsWith('23'));
}

/**
 * An object's transaction, its statements sent in as few round trips as its reads allow
 * (statement-batch.ts): a statement whose result only adds to the outcome waits in the queue
 * (`add`) until a read needs the warehouse's answer (`read`, or a `later` read when it is wanted),
 * a COPY, or the end. Every statement still runs in the order it was queued; only the waiting for
 * each answer is gone. Before (issue 12), each was a round trip: 10–16 an object.
 *
 * The object's load_log lookup goes with BEGIN in the first batch, sent on its own while the first
 * part is prepared (applyObject); a batch whose lookup found the object loaded throws
 * `AlreadyLoaded`, and the transaction is rolled back.
 */
class Transaction {
  private statements: SqlStatement[] = [];
  private handlers: ((result: StatementResult) => void)[] = [];
  private duplicate = false;

  constructor(readonly client: ClientBase) {}

  /** Queues BEGIN and the object's load_log lookup. */
  begin(objectKey: string, eTag: string): void {
    this.add({ text: 'BEGIN', values: [] });
    this.add(loadLogLookup(objectKey, eTag), (r) => (this.duplicate = r.rowCount > 0));
  }

  /** Queues a statement; `then` gets its result once sent. */
  add(statement: SqlStatement | null, then?: (result: StatementResult) => void): void {
    if (!statement) return;
    this.statements.push(statement);
    this.handlers.push(then ?? (() => undefined));
  }

  /** Queues a statement whose count adds to the outcome: `count` gets its rowCount. */
  count(statement: SqlStatement | null, count: (rows: number) => void): void {
    this.add(statement, (r) => count(r.rowCount));
  }

  /** Sends what waits, `statement` last; its result. */
  read(statement: SqlStatement): Promise<StatementResult> {
    return this.later(statement)();
  }

  /** Queues a read whose answer is wanted later: the function returns it, sending what waits first if needed. */
  later(statement: SqlStatement): () => Promise<StatementResult> {
    let result: StatementResult | undefined;
    this.add(statement, (r) => (result = r));
    return async () => {
      if (!result) await this.flush();
      return result!;
    };
  }

  /** Sends every queued statement in one round trip. */
  async flush(): Promise<void> {
    const statements = this.statements;
    const handlers = this.handlers;
    if (!statements.length) return;
    this.statements = [];
    this.handlers = [];
    const results = await runStatements(this.client, statements);
    results.forEach((result, i) => handlers[i]!(result));
    if (this.duplicate) throw new AlreadyLoaded();
  }

  /** Sends what waits, and COMMIT (the lookup answered with the first batch, sent before any part's). */
  commit(): Promise<void> {
    this.add({ text: 'COMMIT', values: [] });
    return this.flush();
  }
}

/** The object's load_log lookup found it: the transaction is rolled back, nothing was loaded. */
class AlreadyLoaded {}

/** The distinct `"key"` values of a statement's rows. */
function keysOf(result: StatementResult): number[] {
  return [...new Set(result.rows.map((r) => r.key as number))];
}

/** The reconciled snapshots of a source table that end after `position`, oldest first (reconciledSnapshotsAfter's rows). */
function reconciledSnapshots(sourceTable: string, result: StatementResult): SnapshotId[] {
  return result.rows.map((r) => ({ sourceTable, epoch: Number(r.epoch), lsn: r.lsn as string }));
}

/**
 * What a fact part's settling reads, queued right after its fact lock: whether a TRUNCATE of its
 * source was ever loaded, and the reconciled snapshots ending after its oldest row. Neither changes
 * while the lock is held: a TRUNCATE's object and a fact snapshot's reconciliation take it
 * exclusively (one source table feeds one warehouse table).
 */
interface FactReads {
  truncateLoaded: (() => Promise<StatementResult>) | null;
  reconciled: (() => Promise<StatementResult>) | null;
}

/**
 * After versions, deletes or truncates of a fact landed: turn truncates into deletes of the keys
 * they cover, drop snapshot versions that only re-read what the version before held, and set the
 * deleted flags. `keys` null = every key (a TRUNCATE in this object concerns them all).
 */
async function settleFacts(
  tx: Transaction,
  batch: PreparedBatch,
  keys: number[] | null,
  reads: FactReads,
  outcome: ApplyOutcome,
): Promise<void> {
  // The join over every version costs even when it finds nothing (measured by bench:pipeline: a
  // third of the fact insert's time at 10k changes/s): only run it once a TRUNCATE was ever loaded.
  const anyTruncate =
    batch.truncates.length > 0 ||
    (reads.truncateLoaded !== null && (await reads.truncateLoaded()).rowCount > 0);
  let truncated: number[] = [];
  if (anyTruncate && keys)
    // Of the object's keys: they are the ones touched whatever it finds; only counted.
    tx.add(factTruncateDeletes(batch.table, keys), (r) => (outcome.truncated += keysOf(r).length));
  else if (anyTruncate) {
    truncated = keysOf(await tx.read(factTruncateDeletes(batch.table, keys)));
    outcome.truncated += truncated.length;
  }
  // A version that loads after a snapshot it predates completed: that snapshot may end it. Only
  // a reconciled snapshot ending after the object's oldest row can: none reconciles meanwhile, as
  // reconciling a fact's snapshot takes its fact lock exclusively (applyPart), which this load holds.
  const resynced: number[] = [];
  if (keys && reads.reconciled)
    for (const snapshot of reconciledSnapshots(batch.sourceTable!, await reads.reconciled()))
      resynced.push(...keysOf(await tx.read(factApplySnapshots(batch.table, keys, snapshot))));
  const touched = keys ?? truncated;
  if (touched.length === 0) return;
  // Also when this object holds no snapshot row: it may hold the version a re-read repeats.
  if (batch.upserts.length)
    tx.count(factDropRedundantSnapshots(batch.table, touched), (n) => (outcome.rereadVersionsDropped += n));
  tx.add(factRefreshDeleted(batch.table, [...new Set([...touched, ...resynced])]));
}

/**
 * Records the object's snapshot rows and end markers; a snapshot whose marker and every row have now
 * loaded is reconciled here, once: what it no longer held is marked deleted. Last in the lock order:
 * after every row the object writes (an object in parts: after its last part).
 */
async function applySnapshots(
  tx: Transaction,
  table: WarehouseTableName,
  parts: readonly SnapshotPart[],
  outcome: ApplyOutcome,
): Promise<void> {
  const isFact = WAREHOUSE_TABLES[table].kind === 'fact';
  // Reconciling may recompute derived dimensions: take their locks first, as every load does.
  if (!isFact) for (const { derived } of derivedDimensionsFedBy(table)) tx.add(derivedLock(derived.table));
  tx.add(snapshotLock());
  // Every part's rows and marker first, then one check per snapshot (an object in parts brings
  // the parts of its snapshots together).
  const snapshots = new Map<string, SnapshotPart['id']>();
  for (const part of parts) {
    tx.add(snapshotTableUpsert(part.id, part.end));
    if (part.rows.length) tx.add(snapshotPartInsert(part.id, part.rows));
    snapshots.set(`${part.id.sourceTable}/${part.id.epoch}/${part.id.lsn}`, part.id);
  }
  for (const id of snapshots.values()) {
    const state = (await tx.read(snapshotProgress(id))).rows[0]!;
    if (state.reconciled_at !== null || state.expected_rows === null) continue;
    if (Number(state.loaded_rows) < Number(state.expected_rows)) continue;
    tx.add(snapshotMarkReconciled(id));
    let deleted: number[];
    if (isFact) {
      deleted = keysOf(await tx.read(factApplySnapshots(table, null, id)));
      if (deleted.length) tx.add(factRefreshDeleted(table, deleted));
    } else {
      deleted = keysOf(await tx.read(dimensionApplySnapshots(table, null, id)));
      if (deleted.length)
        for (const { derived, side } of derivedDimensionsFedBy(table))
          tx.add(derivedRecompute(derived, side, deleted));
    }
    tx.add(snapshotRecordDeleted(id, deleted.length));
    outcome.reconciled.push({ ...id, deleted: deleted.length });
  }
}

/** Placeholder order: base dimensions first, derived ones last (the global lock order above). */
const PLACEHOLDER_ORDER: readonly WarehouseTableName[] = [
  'dim_location',
  'dim_currency',
  'dim_design',
  'dim_payment_type',
  'dim_transaction',
  'dim_staff',
  'dim_counterparty',
];

/**
 * Inserts the fact versions by COPY: straight into the fact (`direct`; a version already there
 * throws VersionAlreadyPresent), or through a staging table and the same INSERT … ON CONFLICT as
 * factInsert. Either way the same rows in the same order (apply-batch.pg.test.ts compares the
 * paths' tables). The COPY text is the part's `factCopy`, built while the part before it was
 * applied, so the warehouse does not wait for it; or built now, chunk by chunk as it is sent.
 * A COPY is a round trip of its own: what waits is sent first.
 */
async function factInsertByCopy(
  tx: Transaction,
  batch: PreparedBatch,
  staged: Set<WarehouseTableName>,
  direct: boolean,
  written: (rows: number) => void,
): Promise<void> {
  const input = () => batch.factCopy ?? factCopyChunks(batch);
  if (direct) {
    await tx.flush();
    try {
      written(await copyIn(tx.client, factCopy(batch.table), input));
    } catch (e) {
      if (sqlStateOf(e) === '23505') throw new VersionAlreadyPresent(e);
      throw e;
    }
    return;
  }
  // Created once per transaction; an object's later parts reuse it, emptied.
  tx.add(staged.has(batch.table) ? factStageTruncate(batch.table) : factStageCreate(batch.table));
  staged.add(batch.table);
  await tx.flush();
  await copyIn(tx.client, factStageCopy(batch.table), input);
  tx.count(factInsertFromStage(batch.table), written);
}

/** How applyPart inserts fact versions, and what the object claimed before its parts. */
interface FactInsertPath {
  copyMinRows: number;
  direct: boolean;
  /** Staging tables created in this transaction. */
  staged: Set<WarehouseTableName>;
  claims: ObjectClaims | null;
  /** With claims: the keys whose derived rows are recomputed after the last part. */
  derivedKeys: Set<number>;
  /**
   * With claims: the parts' snapshot rows and end markers, recorded after the last part. Their
   * locks (the derived dimensions', the snapshot bookkeeping's) come after every row lock in the
   * global order; taken in part 1, they were held while later parts locked keys above the claims,
   * and a concurrent load holding such a key and waiting for them deadlocked (load-parts.pg.test.ts).
   * Costs the object's snapshot keys in memory (~30 bytes a row) until its commit.
   */
  snapshots: SnapshotPart[];
  /** A dimension or staging object: its keys, for the late-row check after the last part. */
  lateRowKeys: Set<number>;
  /** The oldest position of the object's rows (its parts' minPosition). */
  minPosition: Position | null;
  /**
   * A dimension object's late-row check reads the reconciled snapshots ending after its oldest row:
   * queued with its first part, so an object of one part needs no round trip for it. Used when the
   * object's oldest row is that part's (and no snapshot of its own reconciled meanwhile).
   */
  lateRowRead: { position: Position; reconciled: () => Promise<StatementResult> } | null;
}

/**
 * From this many placeholders of one dimension, an object's claims COPY them when no row of the
 * dimension lies in their key range (`keyRangeEmpty`, asked with BEGIN): the object's own new rows
 * (a backfill, a burst) usually do. Below it the COPY's own round trips cost more than it saves.
 */
export const PLACEHOLDER_COPY_MIN_KEYS = 1_000;

/**
 * Takes an object's claims (load-batch.ts `ObjectClaims`) in the global lock order: dates, the
 * dimensions' placeholders (base dimensions first), the object's own keys. Each is one statement
 * taking its rows in key order, as a one-part object's statements do; many placeholders whose key
 * range is empty go by COPY instead (`copyPlaceholders`), in the same order. Sends what it queued
 * up to its last COPY; applyObject sends the rest (the claims after it, a savepoint's release)
 * before the first part.
 */
async function claim(
  tx: Transaction,
  table: WarehouseTableName,
  claims: ObjectClaims,
  outcome: ApplyOutcome,
  options: { logger: Logger; copyMinKeys: number },
): Promise<void> {
  if (claims.dates.length) tx.count(dimDateInsert(claims.dates), (n) => (outcome.datesInserted += n));
  const rangeEmpty = new Map<WarehouseTableName, () => Promise<StatementResult>>();
  for (const dimension of PLACEHOLDER_ORDER) {
    const keys = claims.references[dimension];
    if (keys && keys.length >= options.copyMinKeys)
      rangeEmpty.set(dimension, tx.later(keyRangeEmpty(dimension, keys)));
  }
  for (const dimension of PLACEHOLDER_ORDER) {
    const keys = claims.references[dimension];
    if (!keys?.length) continue;
    const empty = rangeEmpty.get(dimension);
    if (empty && (await empty()).rows[0]!.empty === true) {
      const copied = await copyPlaceholders(tx, dimension, keys);
      if (copied !== null) {
        outcome.placeholdersInserted += copied;
        continue;
      }
      options.logger.info(
        'a placeholder key was taken meanwhile; inserting the placeholders through ON CONFLICT',
        {
          objectKey: outcome.objectKey,
          dimension,
        },
      );
    }
    tx.count(placeholderInsert(dimension, keys), (n) => (outcome.placeholdersInserted += n));
  }
  // Placeholders only until the object's parts write these keys' rows: not counted.
  if (claims.keys.length) tx.add(keyClaim(table, claims.keys));
}

/**
 * COPYs placeholder rows of `keys` (distinct, ascending: rows taken in key order, as
 * placeholderInsert takes them) inside a savepoint; the rows copied, or null when a key had a row
 * after all (a concurrent load committed it since `keyRangeEmpty`; 23505): the savepoint is rolled
 * back, nothing of the COPY stays, and the caller inserts them through placeholderInsert.
 */
async function copyPlaceholders(
  tx: Transaction,
  dimension: WarehouseTableName,
  keys: readonly number[],
): Promise<number | null> {
  const copy = placeholderCopy(dimension);
  const tail = copyTextLine(copy.tail);
  function* lines() {
    for (const key of keys) yield `${key}\t${tail}`;
  }
  tx.add({ text: 'SAVEPOINT "placeholders"', values: [] });
  await tx.flush();
  try {
    const copied = await copyIn(tx.client, copy.text, () => copyChunks(lines()));
    tx.add({ text: 'RELEASE SAVEPOINT "placeholders"', values: [] });
    return copied;
  } catch (e) {
    if (sqlStateOf(e) !== '23505') throw e;
    // ROLLBACK TO keeps the savepoint (a subtransaction the rest of the object would be written in):
    // released too.
    tx.add({ text: 'ROLLBACK TO SAVEPOINT "placeholders"', values: [] });
    tx.add({ text: 'RELEASE SAVEPOINT "placeholders"', values: [] });
    return null;
  }
}

/** Queues the recomputation of the derived dimensions `table` feeds for the given keys, each under its lock. */
function recomputeDerived(
  tx: Transaction,
  table: WarehouseTableName,
  keys: readonly number[],
  outcome: ApplyOutcome,
): void {
  for (const { derived, side } of derivedDimensionsFedBy(table)) {
    if (!keys.length) continue;
    tx.add(derivedLock(derived.table));
    tx.count(
      derivedRecompute(derived, side, keys),
      (n) => (outcome.derived[derived.table] = (outcome.derived[derived.table] ?? 0) + n),
    );
  }
}

/**
 * Queues (and, where it must read or COPY, sends) one part of an object (or a whole object of one
 * part) inside the object's transaction; its counts add to the object's `outcome`. Resolves to
 * whether what it left queued carries the part's rows (parameters), not only its keys.
 */
async function applyPart(
  tx: Transaction,
  batch: PreparedBatch,
  outcome: ApplyOutcome,
  path: FactInsertPath,
): Promise<boolean> {
  // Claimed before the first part: the object's every date and placeholder.
  const claimed = path.claims !== null;
  if (!claimed && batch.dates.length)
    tx.count(dimDateInsert(batch.dates), (n) => (outcome.datesInserted += n));
  const truncates = batch.truncates.length > 0;
  let carriesRows = false;
  if (batch.kind === 'fact') {
    for (const table of claimed ? [] : PLACEHOLDER_ORDER) {
      const keys = batch.references[table];
      if (keys?.length) tx.count(placeholderInsert(table, keys), (n) => (outcome.placeholdersInserted += n));
    }
    if (batch.upserts.length || batch.deletes.length || truncates || batch.snapshots.length) {
      // Anything that may rewrite existing versions (flags, dropped re-reads) runs alone on the
      // table; an object in parts takes the lock in one mode for all of them (an upgrade from
      // shared, waiting on another load holding it shared that waits to upgrade too, would deadlock).
      const exclusive =
        path.claims?.factExclusive ||
        batch.upserts.some((u) => u.unchanged.length > 0 || u.snapshot) ||
        batch.deletes.length > 0 ||
        truncates ||
        batch.snapshots.length > 0;
      tx.add(factLock(batch.table, exclusive));
      const settles = batch.keys.length > 0 || truncates;
      const reads: FactReads = {
        truncateLoaded: settles && !truncates ? tx.later(truncateExists(batch.sourceTable!)) : null,
        reconciled:
          settles && !truncates && batch.minPosition
            ? tx.later(reconciledSnapshotsAfter(batch.sourceTable!, batch.minPosition))
            : null,
      };
      if (batch.upserts.length) {
        const written = (n: number) => (outcome.written += n);
        if (batch.upserts.length >= path.copyMinRows)
          await factInsertByCopy(tx, batch, path.staged, path.direct, written);
        else {
          tx.count(factInsert(batch.table, batch.upserts), written);
          carriesRows = true;
        }
        tx.add(factInheritance(batch.table, batch.keys));
      }
      if (batch.deletes.length) {
        tx.count(factDeleteInsert(batch.table, batch.deletes, 'delete'), (n) => (outcome.deletes += n));
        carriesRows = true;
      }
      if (truncates) tx.add(truncateInsert(batch.sourceTable!, batch.truncates));
      if (settles) await settleFacts(tx, batch, truncates ? null : batch.keys, reads, outcome);
    }
  } else if (batch.kind !== 'date') {
    carriesRows = batch.upserts.length > 0 || batch.deletes.length > 0;
    // One part whose delete would lock keys below its upsert's: those first, in order.
    const outOfOrder = claimed ? [] : batchKeyClaims(batch);
    if (outOfOrder.length) tx.add(keyClaim(batch.table, outOfOrder));
    if (batch.upserts.length)
      tx.count(dimensionUpsert(batch.table, batch.upserts), (n) => (outcome.written += n));
    if (batch.deletes.length)
      tx.count(dimensionDelete(batch.table, batch.deletes), (n) => (outcome.deletes += n));
    if (truncates) tx.add(truncateInsert(batch.sourceTable!, batch.truncates));
    // A TRUNCATE already loaded also deletes the older rows this object brings. Of the object's
    // keys, it finds only some of them: counted, and the keys recomputed below are the object's.
    let truncated: number[] = [];
    if (truncates) {
      truncated = keysOf(await tx.read(dimensionApplyTruncates(batch.table, null)));
      outcome.truncated += truncated.length;
    } else if (batch.keys.length)
      tx.add(
        dimensionApplyTruncates(batch.table, batch.keys),
        (r) => (outcome.truncated += keysOf(r).length),
      );
    // Whether a completed snapshot deletes a row that loaded after it: once per object, after its
    // last part (dimensionLateRows).
    for (const key of batch.keys) path.lateRowKeys.add(key);
    path.minPosition = earlierPosition(path.minPosition, batch.minPosition);
    const keys = [...new Set([...batch.keys, ...truncated])].sort((a, b) => a - b);
    // An object in parts recomputes them once, after its last part: its derived rows are then
    // locked in key order over the whole object, not part by part.
    if (claimed) for (const key of keys) path.derivedKeys.add(key);
    else recomputeDerived(tx, batch.table, keys, outcome);
    // The late-row check's read, with the first part: see FactInsertPath.lateRowRead.
    if (!path.lateRowRead && batch.minPosition && batch.sourceTable)
      path.lateRowRead = {
        position: batch.minPosition,
        reconciled: tx.later(reconciledSnapshotsAfter(batch.sourceTable, batch.minPosition)),
      };
  }
  // Recorded once per object, after its last part (an object of one part: the same place).
  path.snapshots.push(...batch.snapshots);
  return carriesRows;
}

/**
 * A dimension object's late-row check: a row older than a snapshot reconciled before this load
 * commits, and not held by it, no longer existed then; it is marked deleted at the snapshot's end
 * (dimensionApplySnapshots for the object's keys). Only for the reconciled snapshots that end after
 * the object's oldest row (`reconciledSnapshotsAfter`): no other can end a row it brings, and each
 * costs an unnest of the keys it held. No reconciliation of the table runs meanwhile: that object
 * holds the table's load lock exclusively, this one shared (`dimensionLoadLock`) — so the read
 * queued with the object's first part still holds at its end, unless the object reconciled a
 * snapshot itself (then its reconciliation's pass covered its own rows; read again all the same).
 * Run while one did, this check would see no reconciled snapshot, and the reconciliation's
 * whole-table pass would not see this object's uncommitted rows: they would escape deletion
 * (apply-batch.pg.test.ts, both orders). Facts: reconciling a fact's snapshot takes the fact lock
 * exclusively, which every load of the fact holds.
 */
async function dimensionLateRows(
  tx: Transaction,
  table: WarehouseTableName,
  sourceTable: string,
  path: FactInsertPath,
  outcome: ApplyOutcome,
): Promise<void> {
  if (!path.lateRowKeys.size || !path.minPosition) return;
  const early = path.lateRowRead;
  const result =
    early && comparePosition(early.position, path.minPosition) === 0 && outcome.reconciled.length === 0
      ? await early.reconciled()
      : await tx.read(reconciledSnapshotsAfter(sourceTable, path.minPosition));
  const snapshots = reconciledSnapshots(sourceTable, result);
  if (!snapshots.length) return;
  const keys = [...path.lateRowKeys].sort((a, b) => a - b);
  const resynced = new Set<number>();
  // Oldest first: a row ends at the newest snapshot that lacked it.
  for (const snapshot of snapshots)
    for (const key of keysOf(await tx.read(dimensionApplySnapshots(table, keys, snapshot))))
      resynced.add(key);
  // Their derived rows again: the derived locks are held already (taken when the object's own
  // keys were recomputed, before the progress row in the lock order).
  recomputeDerived(
    tx,
    table,
    [...resynced].sort((a, b) => a - b),
    outcome,
  );
}

/** An outcome with nothing written yet. */
export function emptyOutcome(
  objectKey: string,
  table: WarehouseTableName,
  rows: number,
  fields: Partial<ApplyOutcome> = {},
): ApplyOutcome {
  return {
    objectKey,
    table,
    duplicate: false,
    rows,
    written: 0,
    deletes: 0,
    truncated: 0,
    rereadVersionsDropped: 0,
    factCopyFallback: false,
    reconciled: [],
    datesInserted: 0,
    placeholdersInserted: 0,
    derived: {},
    attempts: 1,
    durationMs: 0,
    maxPosition: null,
    newestCommitTs: null,
    ...fields,
  };
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function laterPosition(a: Position | null, b: Position | null): Position | null {
  return !a || (b && comparePosition(b, a) > 0) ? b : a;
}

function earlierPosition(a: Position | null, b: Position | null): Position | null {
  return !a || (b && comparePosition(b, a) < 0) ? b : a;
}

function newerTimestamp(a: string | null, b: string | null): string | null {
  return a === null || (b !== null && Date.parse(b) > Date.parse(a)) ? b : a;
}

/** What the object's parts threw (a malformed row, a damaged page): passed on as it is, after the rollback. */
class PartSourceError {
  constructor(readonly cause: unknown) {}
}

async function* guarded(parts: AsyncIterable<PreparedBatch> | Iterable<PreparedBatch>) {
  try {
    for await (const part of parts) yield part;
  } catch (e) {
    throw new PartSourceError(e);
  }
}

/** The parts of one object, in order; called again for each attempt (a conflict retry reads them anew). */
export type ObjectParts = () => AsyncIterable<PreparedBatch> | Iterable<PreparedBatch>;

/**
 * Loads one object, given as its prepared parts in order (one part for most objects), in ONE
 * transaction: its parts, then pipeline_progress and load_log (the object's key, once). A part
 * is prepared while the transaction is open, so an object's memory is bounded by its parts, not
 * by the object, and a malformed row anywhere (thrown by `parts`, passed on as it is) rolls back
 * every part before it: nothing of the object is loaded. Throws WarehouseDataError (quarantine the
 * object) or WarehouseUnavailableError (retry later); the transaction is rolled back either way.
 *
 * A part's fact versions are COPYed straight into the fact (`factDirectCopy`, the default): a version
 * already there (loaded by another object, or by a concurrent load that committed it) fails that
 * COPY with 23505, and the object is rolled back and loaded once more, every part through the
 * staging table's INSERT … ON CONFLICT DO NOTHING (`factCopyFallback` in the outcome; logged). That
 * is not a conflict retry: `attempts` does not count it.
 *
 * Lock order: the global one (see the top of this file) over the whole object. With `claims`
 * (an object in parts), its dates and placeholders, and the keys of a dimension object its parts
 * would lock out of key order, are locked first, then the parts run; the fact lock is taken in
 * one mode by every part; derived dimensions are recomputed, and snapshot rows and markers recorded,
 * once, after the last part (and a dimension object's late-row check runs once, after the progress
 * row, for any object). Before (issue 12), a later part's dates and placeholders came after an earlier part's fact lock, and a
 * concurrent load taking the same rows in order deadlocked with it (load-parts.pg.test.ts).
 */
export async function applyObject(
  client: ClientBase,
  table: WarehouseTableName,
  parts: ObjectParts,
  options: ApplyOptions,
): Promise<ApplyOutcome> {
  const logger = options.logger ?? silentLogger;
  const maxAttempts = options.maxAttempts ?? 3;
  const eTag = options.eTag ?? '';
  const started = Date.now();
  let direct = options.factDirectCopy ?? true;
  let fallback = false;
  for (let attempt = 1; ; attempt += 1) {
    const outcome = emptyOutcome(options.objectKey, table, 0, {
      attempts: attempt,
      factCopyFallback: fallback,
    });
    const tx = new Transaction(client);
    let source: AsyncGenerator<PreparedBatch> | null = null;
    try {
      tx.begin(options.objectKey, eTag);
      const path: FactInsertPath = {
        copyMinRows: options.factCopyMinRows ?? FACT_COPY_MIN_ROWS,
        direct,
        staged: new Set<WarehouseTableName>(),
        claims: options.claims ?? null,
        derivedKeys: new Set<number>(),
        snapshots: [],
        lateRowKeys: new Set<number>(),
        minPosition: null,
        lateRowRead: null,
      };
      let sourceTable: string | null = null;
      source = guarded(parts());
      // Part N+1 is taken while part N's statements run (`parts` yields to the event loop between
      // its slices, and may prepare parts further ahead: create-handler.ts); the transaction waits
      // for both before going on, and a failure on either side is handled only once nothing is in
      // flight. BEGIN and the lookup are sent while the first part is prepared, with an object in
      // parts' claims (a fact of 200,000 rows: its 200,000 placeholders take about half a second,
      // bench:load). A dimension's load lock comes before any row: an object in parts
      // knows its mode from its claims; a one-part object from its part, read first.
      let exclusive = options.claims?.dimensionExclusive;
      const claimed = async () => {
        if (options.claims) {
          tx.add(dimensionLoadLockOf(table, exclusive));
          await claim(tx, table, options.claims, outcome, {
            logger,
            copyMinKeys: options.placeholderCopyMinKeys ?? PLACEHOLDER_COPY_MIN_KEYS,
          });
        }
        await tx.flush();
      };
      // The lookup's answer is checked first: an object already loaded is rolled back before it
      // waits on any lock (its first batch holds none without claims) and before what its part
      // threw (a redelivery checked by stricter code must not be quarantined: review, session 12).
      const [sent, first] = await Promise.allSettled([claimed(), source.next()]);
      if (sent.status === 'rejected') throw sent.reason;
      if (first.status === 'rejected') throw first.reason;
      let next = first.value;
      if (exclusive === undefined && !next.done) {
        exclusive = worksOverWholeTable(next.value);
        tx.add(dimensionLoadLockOf(table, exclusive));
      }
      while (!next.done) {
        const batch = next.value;
        // Too late to take the lock exclusively: parts of an object come with its claims.
        if (!exclusive && worksOverWholeTable(batch) && hasDimensionLoadLock(table))
          throw new ApplyBatchError(
            `a later part of ${options.objectKey} (${table}) works over the whole table, but the object ` +
              'came without claims that say so (ObjectClaims.dimensionExclusive)',
          );
        outcome.rows += batch.rowCount;
        outcome.maxPosition = laterPosition(outcome.maxPosition, batch.maxPosition);
        outcome.newestCommitTs = newerTimestamp(outcome.newestCommitTs, batch.newestCommitTs);
        // What a part queued is sent with its next read, or at the end. A part of an object in
        // parts whose statements carry its rows (parameters) sends them before the next is taken,
        // so that they are not held on top of the parts prepared ahead; a fact part's settling
        // (keys, or the staged insert the server runs) waits for the next part's reads, sent before
        // its COPY: a round trip less a part, each waiting on this busy process's event loop
        // (bench:load, bench/README.md "Session 14").
        const [applied, prepared] = await Promise.allSettled([
          applyPart(tx, batch, outcome, path).then((carriesRows) =>
            path.claims && carriesRows ? tx.flush() : undefined,
          ),
          source.next(),
        ]);
        if (applied.status === 'rejected') throw applied.reason;
        if (prepared.status === 'rejected') throw prepared.reason;
        sourceTable ??= batch.sourceTable;
        next = prepared.value;
      }
      if (path.derivedKeys.size)
        recomputeDerived(
          tx,
          table,
          [...path.derivedKeys].sort((a, b) => a - b),
          outcome,
        );
      if (path.snapshots.length) await applySnapshots(tx, table, path.snapshots, outcome);
      // Once per object, last: the progress row is locked only until the commit that follows.
      if (sourceTable && outcome.maxPosition)
        tx.add(progressUpsert(sourceTable, table, outcome.maxPosition, outcome.newestCommitTs));
      if (sourceTable) await dimensionLateRows(tx, table, sourceTable, path, outcome);
      tx.add(loadLogInsert(options.objectKey, eTag, table, outcome.rows));
      await tx.commit();
      outcome.durationMs = Date.now() - started;
      return outcome;
    } catch (e) {
      await client.query('ROLLBACK').catch(() => undefined);
      // Parts being prepared ahead stop: a retry reads them anew, and nothing works on behind it.
      await source?.return(undefined).catch(() => undefined);
      if (e instanceof AlreadyLoaded)
        return {
          ...emptyOutcome(options.objectKey, table, 0, { attempts: attempt, factCopyFallback: fallback }),
          duplicate: true,
          durationMs: Date.now() - started,
        };
      if (e instanceof PartSourceError) throw e.cause;
      if (e instanceof VersionAlreadyPresent && direct) {
        logger.info(
          'a fact version of the object is already loaded; loading it again through the staging table',
          {
            objectKey: options.objectKey,
            table,
            constraint: (e.cause as { constraint?: string })?.constraint,
          },
        );
        direct = false;
        fallback = true;
        attempt -= 1;
        continue;
      }
      // Cannot happen (the direct COPY is not used once it fell back): passed on as what it is.
      const error = e instanceof VersionAlreadyPresent ? e.cause : e;
      const state = sqlStateOf(error);
      if (isDataError(error)) throw new WarehouseDataError(table, state!, { cause: error });
      if (state && RETRY_IN_PLACE.has(state) && attempt < maxAttempts) {
        logger.warn('load transaction conflicted; retrying', {
          objectKey: options.objectKey,
          table,
          sqlState: state,
          attempt,
        });
        // Jittered, growing: two loads that collided should not collide again.
        await pause(20 * 2 ** attempt + Math.floor(Math.random() * 50));
        continue;
      }
      throw new WarehouseUnavailableError(table, attempt, { cause: error });
    }
  }
}

/** Snapshot rows, an end marker or a TRUNCATE: work that may lock any row of the table. */
const worksOverWholeTable = (batch: PreparedBatch) =>
  batch.snapshots.length > 0 || batch.truncates.length > 0;

/**
 * A source-fed dimension's or staging table's load lock (core/warehouse-sql.ts `dimensionLoadLock`),
 * exclusive when the object may work over the whole table; null for other tables, or while the
 * mode is not known yet (undefined).
 */
function dimensionLoadLockOf(table: WarehouseTableName, exclusive: boolean | undefined): SqlStatement | null {
  return exclusive !== undefined && hasDimensionLoadLock(table) ? dimensionLoadLock(table, exclusive) : null;
}

/** A dimension or staging table fed by a source: its loads take its load lock. */
function hasDimensionLoadLock(table: WarehouseTableName): boolean {
  const spec = WAREHOUSE_TABLES[table];
  return spec.source !== null && (spec.kind === 'dimension' || spec.kind === 'staging');
}

/** Loads one prepared object of one part: applyObject with that part. */
export function applyBatch(
  client: ClientBase,
  batch: PreparedBatch,
  options: ApplyOptions,
): Promise<ApplyOutcome> {
  return applyObject(client, batch.table, () => [batch], options);
}
