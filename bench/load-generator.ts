/**
 * The load `npm run bench:pipeline` offers its pipeline: the totesys business as `totes simulate`
 * runs it (totesys/generator.ts plans every change, with the simulator's mix of new orders with
 * their transaction and payment, payments flipping to paid, and edits), applied far faster. The
 * simulator writes one change per transaction and per round trip and tops out near 1,300 changes/s;
 * here each of several connections writes a batch of changes as one transaction of one statement
 * (batch-sql.ts), paced together to a target rate of row changes per second.
 *
 * Edits and new designs all go through the first connection. totesys has a handful of departments
 * and a few dozen addresses and counterparties: batches of edits on several connections would lock
 * the same rows in different orders, and wait on (or deadlock with) each other, which measures lock
 * contention, not the pipeline. And a new order may name any design up to the highest id committed:
 * with designs created on several connections, one committed above another still in flight would
 * let an order name the uncommitted one, which its foreign-key check cannot see (it fails rather
 * than waits). New orders and paid flips never touch a row another connection touches.
 */
import { Client } from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { CHANGE_KINDS, createChangePlanner, type ChangeKind, type PlannedChange } from '../totesys/generator';
import type { SimulationState } from '../totesys/generator';
import { loadSimulationState } from '../totesys/simulate';
import { batchStatement, type BatchContext, type BatchRow } from './batch-sql';

export interface LoadGeneratorOptions {
  url: string;
  /** Connections writing at once (default 4). */
  connections?: number;
  /** Planner seed (default 1). */
  seed?: number;
}

export interface LoadRunOptions {
  /** Target row changes per second; Infinity writes as fast as the database takes them. */
  rate: number;
  /** Stop after this long (or at maxChanges, whichever comes first). */
  durationMs?: number;
  /** Stop once this many row changes are planned. */
  maxChanges?: number;
  /**
   * Each connection commits a batch every `connections × batchMs / rate`… in effect the whole
   * generator commits `rate × batchMs / 1000` changes per `batchMs`, spread over the connections.
   */
  batchMs: number;
  /** Upper bound of a batch, in row changes (what an unpaced run writes per transaction). */
  maxBatchChanges?: number;
  signal?: AbortSignal;
}

export interface LoadRunResult {
  seconds: number;
  /** Row changes committed (what capture must deliver). */
  changes: number;
  /** Source transactions committed (one per batch). */
  transactions: number;
  /** Business events applied, by kind. */
  byKind: Record<ChangeKind, number>;
  failedBatches: number;
  /** The first few errors of failed batches. */
  errors: string[];
}

const DEFAULT_MAX_BATCH_CHANGES = 2_000;
const MAX_ERRORS_KEPT = 5;

async function batchContext(client: Client): Promise<BatchContext> {
  const { rows } = await client.query<Record<string, string>>(
    `SELECT pg_get_serial_sequence('sales_order', 'sales_order_id') AS sales_order,
            pg_get_serial_sequence('purchase_order', 'purchase_order_id') AS purchase_order,
            pg_get_serial_sequence('transaction', 'transaction_id') AS transaction,
            pg_get_serial_sequence('payment', 'payment_id') AS payment`,
  );
  const types = await client.query<{ payment_type_id: number; payment_type_name: string }>(
    'SELECT payment_type_id, payment_type_name::text FROM payment_type',
  );
  const typeId = (name: string) => {
    const found = types.rows.find((r) => r.payment_type_name === name);
    if (!found) throw new Error(`payment_type has no ${name} row: seed the source first`);
    return found.payment_type_id;
  };
  const s = rows[0]!;
  return {
    sequences: {
      sales_order: s.sales_order!,
      purchase_order: s.purchase_order!,
      transaction: s.transaction!,
      payment: s.payment!,
    },
    paymentTypeIds: { SALES_RECEIPT: typeId('SALES_RECEIPT'), PURCHASE_PAYMENT: typeId('PURCHASE_PAYMENT') },
  };
}

/** Row changes a planned change makes (a new order is three rows). */
const changesOf = (c: PlannedChange) =>
  c.kind === 'new_sales_order' || c.kind === 'new_purchase_order' ? 3 : 1;

export class LoadGenerator {
  /** Edits and new designs planned on other connections, written by the first (see the file comment). */
  private pendingEdits: PlannedChange[] = [];
  private readonly planner: ReturnType<typeof createChangePlanner>;

  private constructor(
    private readonly clients: Client[],
    private readonly ctx: BatchContext,
    private readonly state: SimulationState,
    seed: number,
  ) {
    this.planner = createChangePlanner(seed);
  }

  static async connect(options: LoadGeneratorOptions): Promise<LoadGenerator> {
    const clients: Client[] = [];
    try {
      for (let i = 0; i < (options.connections ?? 4); i++) {
        const client = new Client({ connectionString: options.url, application_name: 'totes-bench-load' });
        clients.push(client);
        await client.connect();
      }
      const ctx = await batchContext(clients[0]!);
      const state = await loadSimulationState(clients[0]!);
      return new LoadGenerator(clients, ctx, state, options.seed ?? 1);
    } catch (e) {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
      throw e;
    }
  }

  get connections(): number {
    return this.clients.length;
  }

  private closing: Promise<unknown> | null = null;

  /** Ends every connection; a second call waits for the first. */
  async close(): Promise<void> {
    this.closing ??= Promise.all(this.clients.map((c) => c.end().catch(() => undefined)));
    await this.closing;
  }

  /** Plans about `target` row changes for connection `index`. */
  private plan(index: number, target: number): PlannedChange[] {
    const batch: PlannedChange[] = [];
    let planned = 0;
    if (index === 0) {
      batch.push(...this.pendingEdits.splice(0));
      planned = batch.length;
    }
    while (planned < target) {
      const change = this.planner.next(this.state);
      planned += changesOf(change);
      // The planner settles the oldest unpaid payment; it is ours now, no other batch may pick it.
      if (change.kind === 'payment_paid') this.state.unpaidPaymentIds.shift();
      const firstOnly = 'edit' in change || change.kind === 'new_design';
      if (firstOnly && index !== 0) this.pendingEdits.push(change);
      else batch.push(change);
    }
    return batch;
  }

  /** What a committed batch means for later plans: new payments to settle, new ids to edit. */
  private record(row: BatchRow): void {
    this.state.unpaidPaymentIds.push(...row.payments);
    const max = this.state.maxId;
    if (row.max_sales_order) max.sales_order = Math.max(max.sales_order, row.max_sales_order);
    if (row.max_purchase_order) max.purchase_order = Math.max(max.purchase_order, row.max_purchase_order);
    if (row.max_design) max.design = Math.max(max.design, row.max_design);
  }

  /**
   * Writes at `rate` until the duration, the change count or the signal says stop. When the database
   * cannot keep up, every connection writes back to back and the result's rate shows what it took.
   */
  async run(options: LoadRunOptions): Promise<LoadRunResult> {
    if (!(options.rate > 0)) throw new RangeError('rate must be > 0');
    const started = performance.now();
    const endsAt = options.durationMs !== undefined ? started + options.durationMs : Infinity;
    const maxChanges = options.maxChanges ?? Infinity;
    const maxBatch = options.maxBatchChanges ?? DEFAULT_MAX_BATCH_CHANGES;
    const perBatch = Number.isFinite(options.rate)
      ? Math.max(
          1,
          Math.min(maxBatch, Math.round((options.rate * options.batchMs) / 1000 / this.clients.length)),
        )
      : maxBatch;
    const result: LoadRunResult = {
      seconds: 0,
      changes: 0,
      transactions: 0,
      byKind: Object.fromEntries(CHANGE_KINDS.map((k) => [k, 0])) as Record<ChangeKind, number>,
      failedBatches: 0,
      errors: [],
    };
    let reserved = 0;
    const writer = async (index: number) => {
      const client = this.clients[index]!;
      for (;;) {
        if (options.signal?.aborted || reserved >= maxChanges) return;
        const now = performance.now();
        if (now >= endsAt) return;
        // The batch is due once the changes reserved before it have had their time at `rate`.
        const dueAt = started + (reserved * 1000) / options.rate;
        if (dueAt > now) {
          await sleep(Math.min(dueAt, endsAt) - now, undefined, { signal: options.signal }).catch(
            () => undefined,
          );
          continue;
        }
        const changes = this.plan(index, Math.min(perBatch, maxChanges - reserved));
        const statement = batchStatement(changes, this.ctx);
        if (!statement) continue;
        reserved += statement.planned;
        // A row already edited in this batch is edited in the next one.
        this.pendingEdits.unshift(...statement.deferred);
        try {
          const { rows } = await client.query<BatchRow>(statement.text, statement.values);
          const row = rows[0]!;
          this.record(row);
          result.changes += statement.orders * 3 + row.designs + row.updated;
          result.transactions += 1;
          const deferred = new Set(statement.deferred);
          for (const c of changes) if (!deferred.has(c)) result.byKind[c.kind] += 1;
        } catch (e) {
          result.failedBatches += 1;
          if (result.errors.length < MAX_ERRORS_KEPT) result.errors.push((e as Error).message);
          // A broken connection fails every later batch too: give up on it.
          if (!(e as { code?: string }).code) throw e;
        }
      }
    };
    await Promise.all(this.clients.map((_, i) => writer(i)));
    result.seconds = (performance.now() - started) / 1000;
    return result;
  }
}
