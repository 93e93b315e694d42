import type { Client } from 'pg';
import { TOTESYS_TABLES } from '../core/totesys-tables';
import { createTestDatabase, waitFor, withClient } from '../test/support/pg';
import { createTotesysSchema, quoteIdent } from './schema';
import { installTotesys } from './seed';
import {
  SourceNotSeededError,
  applyChange,
  loadSimulationState,
  runSimulation,
  type SimulationProgress,
} from './simulate';

const SCALE = 0.05;

async function seededDatabase(name: string, scale = SCALE): Promise<string> {
  const url = await createTestDatabase(name);
  await withClient(url, (c) => installTotesys(c, { scale, seed: 1 }));
  return url;
}

const count = async (c: Client, sql: string, values: unknown[] = []) =>
  Number((await c.query(sql, values)).rows[0].n);

async function tableCounts(c: Client): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const table of TOTESYS_TABLES)
    out[table] = await count(c, `SELECT count(*) AS n FROM ${quoteIdent(table)}`);
  return out;
}

/** Content hashes that ignore the timestamps (those follow the clock, everything else the seed). */
async function contentHashes(c: Client): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const table of TOTESYS_TABLES) {
    const { rows } = await c.query(
      `SELECT md5(string_agg((to_jsonb(t) - 'created_at' - 'last_updated')::text, E'\\n'
                             ORDER BY t.${quoteIdent(`${table}_id`)})) AS hash FROM ${quoteIdent(table)} t`,
    );
    out[table] = rows[0].hash;
  }
  return out;
}

describe('runSimulation (real Postgres)', () => {
  let url: string;
  beforeAll(async () => {
    url = await seededDatabase('totesys_simulate');
  });

  it('makes row changes of every expected kind at no more than the rate, and the database shows them', async () => {
    const before = await withClient(url, tableCounts);
    const unpaidBefore = await withClient(url, async (c) =>
      (await c.query('SELECT payment_id FROM payment WHERE NOT paid')).rows.map(
        (r) => r.payment_id as number,
      ),
    );
    const startedAt = await withClient(
      url,
      async (c) => (await c.query('SELECT localtimestamp AS t')).rows[0].t,
    );
    const progress: SimulationProgress[] = [];

    const result = await runSimulation(url, {
      rate: 80,
      maxChanges: 120,
      seed: 3,
      progressIntervalMs: 300,
      onProgress: (p) => progress.push(p),
    });

    // A count, not a duration, ends the run, so what it did does not depend on how loaded the shared
    // cluster is. Pacing never runs ahead: the change that reached 120 started once ≥ 117 were done
    // (a new order is 3 rows), at 80/s no sooner than 117 / 80 s. Exact pacing: simulate.test.ts.
    expect(result.rowChanges).toBeGreaterThanOrEqual(120);
    expect(result.rowChanges).toBeLessThanOrEqual(122);
    expect(result.elapsedMs).toBeGreaterThanOrEqual((117 / 80) * 1000);
    expect(progress.length).toBeGreaterThanOrEqual(1);
    expect(progress.map((p) => p.rowChanges)).toEqual(
      [...progress.map((p) => p.rowChanges)].sort((a, b) => a - b),
    );

    const k = result.byKind;
    expect(Object.values(k).reduce((a, b) => a + b, 0)).toBe(result.events);
    const orders = k.new_sales_order + k.new_purchase_order;
    expect(orders).toBeGreaterThan(5);
    expect(k.payment_paid).toBeGreaterThan(5);
    // Every event wrote rows that exist: 3 for an order, 1 for anything else.
    expect(result.rowChanges).toBe(3 * orders + (result.events - orders));

    await withClient(url, async (c) => {
      const after = await tableCounts(c);
      expect(after.sales_order - before.sales_order!).toBe(k.new_sales_order);
      expect(after.purchase_order - before.purchase_order!).toBe(k.new_purchase_order);
      expect(after.transaction - before.transaction!).toBe(orders);
      expect(after.payment - before.payment!).toBe(orders);
      expect(after.design - before.design!).toBe(k.new_design);
      expect(after.address).toBe(before.address);

      // Payments were settled oldest first (the seeded unpaid ones, then new ones), each bumping
      // last_updated past its creation.
      const flipped = await count(
        c,
        'SELECT count(*) AS n FROM payment WHERE paid AND last_updated >= $1 AND last_updated > created_at',
        [startedAt],
      );
      expect(flipped).toBe(k.payment_paid);
      const oldFlipped = await count(
        c,
        'SELECT count(*) AS n FROM payment WHERE payment_id = ANY($1) AND paid',
        [unpaidBefore],
      );
      expect(oldFlipped).toBe(Math.min(k.payment_paid, unpaidBefore.length));
      expect(unpaidBefore.length).toBeGreaterThan(0);

      // New orders: one transaction each with one order id, one payment of the exact amount owed.
      const badNew = await count(
        c,
        `SELECT count(*) AS n FROM transaction t
           JOIN payment p USING (transaction_id)
           LEFT JOIN sales_order s USING (sales_order_id)
           LEFT JOIN purchase_order o USING (purchase_order_id)
          WHERE t.created_at >= $1 AND NOT (
                (t.transaction_type = 'SALE') = (s.sales_order_id IS NOT NULL)
            AND (s.sales_order_id IS NULL) <> (o.purchase_order_id IS NULL)
            AND p.payment_amount = coalesce(s.units_sold * s.unit_price, o.item_quantity * o.item_unit_price)
            AND p.payment_date = coalesce(s.agreed_payment_date, o.agreed_payment_date)
            AND coalesce(s.agreed_payment_date, o.agreed_payment_date)::date - CURRENT_DATE BETWEEN 0 AND 7
            AND t.created_at = p.created_at AND t.created_at = coalesce(s.created_at, o.created_at))`,
        [startedAt],
      );
      expect(badNew).toBe(0);
    });
  });

  it('stops after the change in flight when its signal aborts, and resolves normally', async () => {
    const stop = new AbortController();
    const before = await withClient(url, (c) => count(c, 'SELECT count(*) AS n FROM transaction'));
    const run = runSimulation(url, { rate: 100, seed: 4, signal: stop.signal });
    await waitFor('the simulator to add orders', () =>
      withClient(url, async (c) =>
        (await count(c, 'SELECT count(*) AS n FROM transaction')) > before + 2 ? true : undefined,
      ),
    );
    stop.abort();
    const result = await run;
    expect(result.rowChanges).toBeGreaterThan(6);
  });

  it('ends with the server error when its connection is terminated between two changes', async () => {
    // Idle between changes (slow rate), the connection is ended by the server — a source shut down or
    // failed over. Without a listener pg emits that as an unhandled 'error' and kills the process.
    const named = new URL(url);
    named.searchParams.set('application_name', 'totes_simulate_terminated');
    const run = runSimulation(named.toString(), { rate: 1, seed: 6 });
    const outcome = run.then(
      () => 'resolved',
      (e: Error) => e.message,
    );
    await waitFor('the simulator to be connected and idle', () =>
      withClient(url, async (c) =>
        (await count(
          c,
          `SELECT count(*) AS n FROM pg_stat_activity
            WHERE application_name = 'totes_simulate_terminated' AND state = 'idle'`,
        )) > 0
          ? true
          : undefined,
      ),
    );
    await withClient(url, (c) =>
      c.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'totes_simulate_terminated'`,
      ),
    );
    expect(await outcome).toMatch(
      /terminating connection due to administrator command|Connection terminated unexpectedly/,
    );
  });

  it('stops at maxChanges and leaves a client it was given open', async () => {
    await withClient(url, async (c) => {
      const result = await runSimulation(c, { rate: Infinity, maxChanges: 50, seed: 5 });
      expect(result.rowChanges).toBeGreaterThanOrEqual(50);
      expect(result.rowChanges).toBeLessThanOrEqual(52);
      expect((await c.query('SELECT 1 AS ok')).rows[0].ok).toBe(1);
    });
  });

  it('makes the same changes for the same seed on the same data, others for another seed', async () => {
    const [a, b, other] = await Promise.all([
      seededDatabase('totesys_simulate_a', 0.01),
      seededDatabase('totesys_simulate_b', 0.01),
      seededDatabase('totesys_simulate_other', 0.01),
    ]);
    const seeded = await withClient(a, contentHashes);
    const runs = await Promise.all([
      runSimulation(a, { rate: Infinity, maxChanges: 300, seed: 11 }),
      runSimulation(b, { rate: Infinity, maxChanges: 300, seed: 11 }),
      runSimulation(other, { rate: Infinity, maxChanges: 300, seed: 12 }),
    ]);
    expect(runs[1].byKind).toEqual(runs[0].byKind);
    const [ha, hb, ho] = await Promise.all([a, b, other].map((u) => withClient(u, contentHashes)));
    expect(hb).toEqual(ha);
    expect(ho!.sales_order).not.toBe(ha!.sales_order);
    // The runs did change the data.
    expect(ha!.payment).not.toBe(seeded.payment);
    expect(ha!.sales_order).not.toBe(seeded.sales_order);
  });

  it('applies a silent edit without moving last_updated, and a normal edit bumping it', async () => {
    await withClient(url, async (c) => {
      const read = async () =>
        (
          await c.query(
            `SELECT agreed_delivery_date, to_char(last_updated, 'YYYY-MM-DD HH24:MI:SS.MS') AS lu
               FROM sales_order WHERE sales_order_id = 1`,
          )
        ).rows[0];
      const before = await read();
      const silent = await applyChange(c, {
        kind: 'silent_edit',
        edit: { table: 'sales_order', id: 1, set: { agreed_delivery_date: { addDays: 10 } }, touch: false },
      });
      expect(silent.rowChanges).toBe(1);
      const afterSilent = await read();
      expect(afterSilent.lu).toBe(before.lu);
      const days =
        (Date.parse(afterSilent.agreed_delivery_date) - Date.parse(before.agreed_delivery_date)) / 86_400_000;
      expect(days).toBe(10);

      await applyChange(c, {
        kind: 'order_edit',
        edit: { table: 'sales_order', id: 1, set: { agreed_delivery_location_id: 2 }, touch: true },
      });
      const afterTouch = await read();
      expect(afterTouch.lu > before.lu).toBe(true);
    });
  });

  it('reads the state it plans from: highest ids and unpaid payments, oldest first', async () => {
    await withClient(url, async (c) => {
      const state = await loadSimulationState(c);
      expect(state.maxId.address).toBe(30);
      expect(state.maxId.currency).toBe(3);
      expect(state.maxId.sales_order).toBe(
        await count(c, 'SELECT max(sales_order_id) AS n FROM sales_order'),
      );
      expect(state.unpaidPaymentIds).toEqual([...state.unpaidPaymentIds].sort((x, y) => x - y));
      expect(state.unpaidPaymentIds.length).toBe(
        await count(c, 'SELECT count(*) AS n FROM payment WHERE NOT paid'),
      );
    });
  });
});

describe('runSimulation on a database it cannot run on (real Postgres)', () => {
  it('says to run totes seed when the schema is missing or empty', async () => {
    const bare = await createTestDatabase('totesys_simulate_bare');
    const run = runSimulation(bare, { rate: 10, durationMs: 100 });
    await expect(run).rejects.toThrow(SourceNotSeededError);
    await expect(run).rejects.toThrow(/schema is missing: run `totes seed` first/);
    const empty = await createTestDatabase('totesys_simulate_empty');
    await withClient(empty, createTotesysSchema);
    await expect(runSimulation(empty, { rate: 10, durationMs: 100 })).rejects.toThrow(
      /no rows in address, counterparty, currency, design, staff/,
    );
  });

  it('rolls back a whole new order when one of its rows cannot be written', async () => {
    const db = await seededDatabase('totesys_simulate_atomic', 0.01);
    await withClient(db, async (c) => {
      // Without a SALES_RECEIPT payment type the payment insert finds no row.
      await c.query(
        `UPDATE payment_type SET payment_type_name = 'SALES_REFUND' WHERE payment_type_name = 'SALES_RECEIPT'`,
      );
      const before = await tableCounts(c);
      const change = {
        kind: 'new_sales_order' as const,
        order: {
          design_id: 1,
          staff_id: 1,
          counterparty_id: 1,
          units_sold: 1_000,
          unit_price: '2.50',
          currency_id: 1,
          agreed_delivery_location_id: 1,
          deliveryInDays: 1,
          paymentInDays: 2,
          amount: '2500.00',
        },
        companyAcNumber: 12_345_678,
        counterpartyAcNumber: 87_654_321,
      };
      await expect(applyChange(c, change)).rejects.toThrow(/SALES_RECEIPT/);
      expect(await tableCounts(c)).toEqual(before);
    });
  });

  it('refuses a rate that is not positive', async () => {
    await expect(runSimulation('postgres://unused', { rate: 0 })).rejects.toThrow(RangeError);
  });
});
