/**
 * Keeps the totesys business running: applies the changes generator.ts plans, paced to a target
 * rate of row changes per second (what change data capture sees: a new order is three rows, order +
 * transaction + payment, written in one source transaction). The I/O edge only.
 */
import { Client, type ClientBase } from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CHANGE_KINDS,
  createChangePlanner,
  type ChangeKind,
  type EditableTable,
  type PlannedChange,
  type RowEdit,
  type SimulationState,
} from './generator';
import { TotesysError, primaryKeyOf, quoteIdent } from './schema';

/** The database has no (or no seeded) totesys schema to simulate on. */
export class SourceNotSeededError extends TotesysError {
  override readonly name = 'SourceNotSeededError';
}

export interface SimulationProgress {
  elapsedMs: number;
  /** Business events applied (a new order with its transaction and payment is one). */
  events: number;
  /** Rows inserted or updated. */
  rowChanges: number;
  /** rowChanges per second of elapsed time. */
  ratePerSecond: number;
  byKind: Record<ChangeKind, number>;
}

export type SimulationResult = SimulationProgress;

export interface SimulationOptions {
  /** Target row changes per second; Infinity runs as fast as the database allows. */
  rate: number;
  /** Stop after this long; 0 or undefined runs until `signal` aborts. */
  durationMs?: number;
  /** Stop once this many row changes were made (benchmarks and tests that need an exact amount). */
  maxChanges?: number;
  /** PRNG seed: the same seed on the same starting data makes the same changes. Default 1. */
  seed?: number;
  /** Aborting stops the run after the change in flight; runSimulation then resolves normally. */
  signal?: AbortSignal;
  onProgress?: (progress: SimulationProgress) => void;
  progressIntervalMs?: number;
  /** Time, for the pacing: the real clock by default; tests pass a virtual one. */
  clock?: SimulationClock;
}

export interface SimulationClock {
  now(): number;
  /** Resolves after `ms`, or rejects early when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<unknown>;
}

const realClock: SimulationClock = {
  now: () => performance.now(),
  sleep: (ms, signal) => sleep(ms, undefined, { signal }),
};

const DEFAULT_PROGRESS_INTERVAL_MS = 5_000;
// An unreachable host would otherwise hang until the OS gives up.
const CONNECT_TIMEOUT_MS = 10_000;
const STATE_TABLES = [
  'address',
  'counterparty',
  'currency',
  'department',
  'design',
  'staff',
  'sales_order',
  'purchase_order',
] as const satisfies readonly (EditableTable | 'currency')[];
/** A new order needs at least one row in each of these. */
const REFERENCED_TABLES = ['address', 'counterparty', 'currency', 'design', 'staff'] as const;

/** Reads what the planner needs: each table's highest id and the unpaid payments, oldest first. */
export async function loadSimulationState(client: ClientBase): Promise<SimulationState> {
  const maxId = {} as SimulationState['maxId'];
  try {
    for (const table of STATE_TABLES) {
      const { rows } = await client.query<{ max: number | null }>(
        `SELECT max(${quoteIdent(primaryKeyOf(table))}) AS max FROM ${quoteIdent(table)}`,
      );
      maxId[table] = rows[0]!.max ?? 0;
    }
    const unpaid = await client.query<{ payment_id: number }>(
      'SELECT "payment_id" FROM "payment" WHERE NOT "paid" ORDER BY "payment_id"',
    );
    const empty = REFERENCED_TABLES.filter((t) => maxId[t] === 0);
    if (empty.length > 0)
      throw new SourceNotSeededError(`no rows in ${empty.join(', ')}: run \`totes seed\` first`);
    return { maxId, unpaidPaymentIds: unpaid.rows.map((r) => r.payment_id) };
  } catch (e) {
    // 42P01 undefined_table: https://www.postgresql.org/docs/current/errcodes-appendix.html
    if ((e as { code?: string }).code === '42P01')
      throw new SourceNotSeededError('the totesys schema is missing: run `totes seed` first', { cause: e });
    throw e;
  }
}

/** What applying one change did: rows written, and the ids of any rows it created. */
export interface AppliedChange {
  rowChanges: number;
  created: Partial<Record<'sales_order' | 'purchase_order' | 'payment' | 'design', number>>;
}

function editSql(edit: RowEdit): { text: string; values: unknown[] } {
  const values: unknown[] = [];
  const assignments = Object.entries(edit.set).map(([column, value]) => {
    const col = quoteIdent(column);
    if (value !== null && typeof value === 'object') {
      values.push(value.addDays);
      return `${col} = to_char(${col}::date + $${values.length}::int, 'YYYY-MM-DD')`;
    }
    values.push(value);
    return `${col} = $${values.length}`;
  });
  if (edit.touch) assignments.push('"last_updated" = CURRENT_TIMESTAMP');
  values.push(edit.id);
  return {
    text: `UPDATE ${quoteIdent(edit.table)} SET ${assignments.join(', ')} WHERE ${quoteIdent(primaryKeyOf(edit.table))} = $${values.length}`,
    values,
  };
}

const INSERT_SALES_ORDER = `INSERT INTO "sales_order" ("design_id", "staff_id", "counterparty_id", "units_sold",
    "unit_price", "currency_id", "agreed_delivery_location_id", "agreed_delivery_date", "agreed_payment_date",
    "last_updated")
  VALUES ($1, $2, $3, $4, $5, $6, $7, to_char(CURRENT_DATE + $8::int, 'YYYY-MM-DD'),
    to_char(CURRENT_DATE + $9::int, 'YYYY-MM-DD'), CURRENT_TIMESTAMP)
  RETURNING "sales_order_id" AS id, "agreed_payment_date"`;

const INSERT_PURCHASE_ORDER = `INSERT INTO "purchase_order" ("staff_id", "counterparty_id", "item_code",
    "item_quantity", "item_unit_price", "currency_id", "agreed_delivery_location_id", "agreed_delivery_date",
    "agreed_payment_date", "last_updated")
  VALUES ($1, $2, $3, $4, $5, $6, $7, to_char(CURRENT_DATE + $8::int, 'YYYY-MM-DD'),
    to_char(CURRENT_DATE + $9::int, 'YYYY-MM-DD'), CURRENT_TIMESTAMP)
  RETURNING "purchase_order_id" AS id, "agreed_payment_date"`;

const INSERT_TRANSACTION = `INSERT INTO "transaction" ("transaction_type", "sales_order_id", "purchase_order_id",
    "last_updated")
  VALUES ($1, $2, $3, CURRENT_TIMESTAMP)
  RETURNING "transaction_id"`;

// The payment type is looked up by name, so the simulator also works on a database whose
// payment_type ids were not assigned by `totes seed`.
const INSERT_PAYMENT = `INSERT INTO "payment" ("transaction_id", "counterparty_id", "payment_amount", "currency_id",
    "payment_type_id", "paid", "payment_date", "company_ac_number", "counterparty_ac_number", "last_updated")
  SELECT $1, $2, $3, $4, "payment_type_id", false, $5, $6, $7, CURRENT_TIMESTAMP
    FROM "payment_type" WHERE "payment_type_name" = $8
  RETURNING "payment_id"`;

type NewOrder = Extract<PlannedChange, { kind: 'new_sales_order' | 'new_purchase_order' }>;

function orderInsert(change: NewOrder): { text: string; values: unknown[] } {
  if (change.kind === 'new_sales_order') {
    const o = change.order;
    return {
      text: INSERT_SALES_ORDER,
      values: [
        o.design_id,
        o.staff_id,
        o.counterparty_id,
        o.units_sold,
        o.unit_price,
        o.currency_id,
        o.agreed_delivery_location_id,
        o.deliveryInDays,
        o.paymentInDays,
      ],
    };
  }
  const o = change.order;
  return {
    text: INSERT_PURCHASE_ORDER,
    values: [
      o.staff_id,
      o.counterparty_id,
      o.item_code,
      o.item_quantity,
      o.item_unit_price,
      o.currency_id,
      o.agreed_delivery_location_id,
      o.deliveryInDays,
      o.paymentInDays,
    ],
  };
}

async function applyNewOrder(client: ClientBase, change: NewOrder): Promise<AppliedChange> {
  const sale = change.kind === 'new_sales_order';
  const { text, values } = orderInsert(change);
  await client.query('BEGIN');
  try {
    const order = await client.query(text, values);
    const orderId: number = order.rows[0].id;
    const transaction = await client.query(INSERT_TRANSACTION, [
      sale ? 'SALE' : 'PURCHASE',
      sale ? orderId : null,
      sale ? null : orderId,
    ]);
    const payment = await client.query(INSERT_PAYMENT, [
      transaction.rows[0].transaction_id,
      change.order.counterparty_id,
      change.order.amount,
      change.order.currency_id,
      order.rows[0].agreed_payment_date,
      change.companyAcNumber,
      change.counterpartyAcNumber,
      sale ? 'SALES_RECEIPT' : 'PURCHASE_PAYMENT',
    ]);
    if (payment.rowCount !== 1)
      throw new SourceNotSeededError(
        `payment_type has no ${sale ? 'SALES_RECEIPT' : 'PURCHASE_PAYMENT'} row`,
      );
    await client.query('COMMIT');
    return {
      rowChanges: 3,
      created: { [sale ? 'sales_order' : 'purchase_order']: orderId, payment: payment.rows[0].payment_id },
    };
  } catch (e) {
    // Report the original error: on a broken connection ROLLBACK fails too (the server rolls back).
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}

/** Applies one planned change; a new order and its transaction and payment commit together. */
export async function applyChange(client: ClientBase, change: PlannedChange): Promise<AppliedChange> {
  switch (change.kind) {
    case 'new_sales_order':
    case 'new_purchase_order':
      return applyNewOrder(client, change);
    case 'payment_paid': {
      const r = await client.query(
        'UPDATE "payment" SET "paid" = true, "last_updated" = CURRENT_TIMESTAMP WHERE "payment_id" = $1 AND NOT "paid"',
        [change.paymentId],
      );
      return { rowChanges: r.rowCount ?? 0, created: {} };
    }
    case 'new_design': {
      const d = change.design;
      const r = await client.query(
        `INSERT INTO "design" ("design_name", "file_location", "file_name", "last_updated")
           VALUES ($1, $2, $3, CURRENT_TIMESTAMP) RETURNING "design_id"`,
        [d.design_name, d.file_location, d.file_name],
      );
      return { rowChanges: 1, created: { design: r.rows[0].design_id } };
    }
    case 'design_edit':
    case 'address_edit':
    case 'department_edit':
    case 'counterparty_edit':
    case 'staff_edit':
    case 'order_edit':
    case 'silent_edit': {
      const { text, values } = editSql(change.edit);
      const r = await client.query(text, values);
      return { rowChanges: r.rowCount ?? 0, created: {} };
    }
  }
  return change satisfies never;
}

/** Folds what a change did into the planner's view of the database. */
function recordApplied(state: SimulationState, change: PlannedChange, applied: AppliedChange): void {
  const { sales_order, purchase_order, payment, design } = applied.created;
  if (sales_order) state.maxId.sales_order = Math.max(state.maxId.sales_order, sales_order);
  if (purchase_order) state.maxId.purchase_order = Math.max(state.maxId.purchase_order, purchase_order);
  if (design) state.maxId.design = Math.max(state.maxId.design, design);
  if (payment) state.unpaidPaymentIds.push(payment);
  // Settled, or already paid by someone else: either way no longer ours to flip.
  if (change.kind === 'payment_paid') state.unpaidPaymentIds.shift();
}

function emptyByKind(): Record<ChangeKind, number> {
  return Object.fromEntries(CHANGE_KINDS.map((k) => [k, 0])) as Record<ChangeKind, number>;
}

/**
 * Runs the business for `durationMs` (or until `signal` aborts) at about `rate` row changes per
 * second. Changes are applied one at a time on one connection, each as its own source transaction;
 * when the database cannot keep up the run goes as fast as it can and the achieved rate shows it.
 * Accepts a connected client (left open) or a connection URL (connected and closed here).
 */
export async function runSimulation(
  target: ClientBase | string,
  options: SimulationOptions,
): Promise<SimulationResult> {
  if (!(options.rate > 0)) throw new RangeError('rate must be > 0');
  if (typeof target === 'string') {
    const client = new Client({ connectionString: target, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
    // Idle between two changes, a connection the server ends (shutdown, failover) is reported as an
    // 'error' event, which without a listener kills the process; keep it, and end the run with it
    // (the next query only says the client "is not queryable").
    let lost: unknown;
    client.on('error', (e) => (lost ??= e));
    await client.connect();
    try {
      return await runSimulation(client, options);
    } catch (e) {
      throw lost ?? e;
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  const client = target;
  const state = await loadSimulationState(client);
  const planner = createChangePlanner(options.seed ?? 1);
  const progressEveryMs = options.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS;
  const clock = options.clock ?? realClock;
  const started = clock.now();
  const endsAt = options.durationMs ? started + options.durationMs : Infinity;
  const maxChanges = options.maxChanges ?? Infinity;
  const byKind = emptyByKind();
  let events = 0;
  let rowChanges = 0;
  let nextProgressAt = started + progressEveryMs;
  const snapshot = (): SimulationProgress => {
    const elapsedMs = clock.now() - started;
    return {
      elapsedMs,
      events,
      rowChanges,
      ratePerSecond: elapsedMs > 0 ? (rowChanges * 1000) / elapsedMs : 0,
      byKind: { ...byKind },
    };
  };

  while (!options.signal?.aborted && rowChanges < maxChanges) {
    const now = clock.now();
    if (now >= endsAt) break;
    if (now >= nextProgressAt) {
      options.onProgress?.(snapshot());
      nextProgressAt = now + progressEveryMs;
    }
    // The next change is due when the rate allows one more; wait for it, or for the end or an abort.
    const dueAt = started + (rowChanges * 1000) / options.rate;
    if (dueAt > now) {
      // An abort rejects the wait early; the loop condition then ends the run.
      await clock.sleep(Math.min(dueAt, endsAt, nextProgressAt) - now, options.signal).catch(() => undefined);
      continue;
    }
    const change = planner.next(state);
    const applied = await applyChange(client, change);
    recordApplied(state, change, applied);
    events++;
    rowChanges += applied.rowChanges;
    byKind[change.kind]++;
  }
  return snapshot();
}
