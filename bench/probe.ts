import { Client } from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Commit → warehouse latency, as an analyst sees it: the probe commits one new sales order on its
 * own connection (a single-row transaction beside the load) and polls the warehouse until
 * `fact_sales_order` holds it. Timed from just before the INSERT is sent (the commit is inside that
 * round trip) to the poll that finds the row, so a figure is at most one poll interval late.
 *
 * Sales orders are the load's busiest table, so a probe waits in the same queues as the load.
 */

/** Marks the probe's warehouse query, so statement statistics can leave it out. */
export const PROBE_TAG = 'totes-bench-probe';

export interface Marker {
  id: number;
  /** The step it was committed in. */
  tag: string;
  sentAt: number;
  /** Milliseconds from sending to seen in the warehouse; null until seen. */
  latencyMs: number | null;
}

/** The seeded rows a probe order refers to (the lowest ids). */
interface ProbeRefs {
  design: number;
  staff: number;
  counterparty: number;
  currency: number;
  address: number;
}

const INSERT = `INSERT INTO "sales_order" ("design_id", "staff_id", "counterparty_id", "units_sold", "unit_price",
    "currency_id", "agreed_delivery_location_id", "agreed_delivery_date", "agreed_payment_date", "last_updated")
  VALUES ($1, $2, $3, 1, 1.00, $4, $5, to_char(CURRENT_DATE, 'YYYY-MM-DD'), to_char(CURRENT_DATE, 'YYYY-MM-DD'),
    CURRENT_TIMESTAMP)
  RETURNING "sales_order_id"`;

export class Probe {
  private readonly markers: Marker[] = [];
  private readonly outstanding = new Map<number, Marker>();
  private polling: Promise<void> | null = null;
  private closed = false;
  private ticking: NodeJS.Timeout | null = null;
  private inserting = false;
  /** Poll errors (a warehouse restarting, say) are kept, not thrown: the probe keeps trying. */
  pollErrors = 0;

  private constructor(
    private readonly source: Client,
    private readonly warehouse: Client,
    private readonly refs: ProbeRefs,
    private readonly pollMs: number,
  ) {}

  static async connect(sourceUrl: string, warehouseUrl: string, pollMs = 50): Promise<Probe> {
    const source = new Client({ connectionString: sourceUrl, application_name: 'totes-bench-probe' });
    const warehouse = new Client({ connectionString: warehouseUrl, application_name: 'totes-bench-probe' });
    await source.connect();
    try {
      await warehouse.connect();
      const { rows } = await source.query<ProbeRefs>(
        `SELECT (SELECT min(design_id) FROM design) AS design, (SELECT min(staff_id) FROM staff) AS staff,
                (SELECT min(counterparty_id) FROM counterparty) AS counterparty,
                (SELECT min(currency_id) FROM currency) AS currency, (SELECT min(address_id) FROM address) AS address`,
      );
      const probe = new Probe(source, warehouse, rows[0]!, pollMs);
      probe.polling = probe.pollLoop();
      return probe;
    } catch (e) {
      await source.end().catch(() => undefined);
      await warehouse.end().catch(() => undefined);
      throw e;
    }
  }

  /** Commits one probe order now and starts watching for it. */
  async mark(tag: string): Promise<Marker> {
    const r = this.refs;
    const sentAt = performance.now();
    const { rows } = await this.source.query<{ sales_order_id: number }>(INSERT, [
      r.design,
      r.staff,
      r.counterparty,
      r.currency,
      r.address,
    ]);
    const marker: Marker = { id: rows[0]!.sales_order_id, tag, sentAt, latencyMs: null };
    this.markers.push(marker);
    this.outstanding.set(marker.id, marker);
    return marker;
  }

  /** Marks every `intervalMs` under `tag` until stopTicking (one insert at a time: a slow source skips ticks). */
  startTicking(tag: string, intervalMs: number): void {
    this.stopTicking();
    const tick = () => {
      if (this.inserting) return;
      this.inserting = true;
      this.mark(tag)
        .catch(() => undefined)
        .finally(() => (this.inserting = false));
    };
    tick();
    this.ticking = setInterval(tick, intervalMs);
  }

  stopTicking(): void {
    if (this.ticking) clearInterval(this.ticking);
    this.ticking = null;
  }

  /** Markers of a step. */
  of(tag: string): Marker[] {
    return this.markers.filter((m) => m.tag === tag);
  }

  /** Resolves once every marker of `tag` is seen, or at the deadline (performance.now() time). */
  async waitFor(tag: string, deadline: number): Promise<boolean> {
    for (;;) {
      if (this.of(tag).every((m) => m.latencyMs !== null)) return true;
      if (performance.now() > deadline) return false;
      await sleep(this.pollMs);
    }
  }

  private async pollLoop(): Promise<void> {
    while (!this.closed) {
      if (this.outstanding.size > 0) {
        try {
          const { rows } = await this.warehouse.query<{ sales_order_id: number }>(
            `SELECT /* ${PROBE_TAG} */ DISTINCT "sales_order_id" FROM "fact_sales_order"
              WHERE "sales_order_id" = ANY($1::int[])`,
            [[...this.outstanding.keys()]],
          );
          const seenAt = performance.now();
          for (const { sales_order_id: id } of rows) {
            const marker = this.outstanding.get(id);
            if (!marker) continue;
            marker.latencyMs = seenAt - marker.sentAt;
            this.outstanding.delete(id);
          }
        } catch {
          this.pollErrors += 1;
        }
      }
      await sleep(this.pollMs);
    }
  }

  /** Stops polling and ends both connections; a second call only waits for the first. */
  async close(): Promise<void> {
    this.stopTicking();
    if (this.closed) return void (await this.polling);
    this.closed = true;
    await this.polling;
    await this.source.end().catch(() => undefined);
    await this.warehouse.end().catch(() => undefined);
  }
}
