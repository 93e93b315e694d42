import type { ClientBase, Pool } from 'pg';

/**
 * Every query the dashboard runs: fixed SQL over the reporting views (migration 003), no parameters
 * from the browser at all — a panel is chosen by name from this table, and nothing a request
 * carries reaches SQL. "Today" is the warehouse's `current_date`, the same day the payments views
 * call today.
 *
 * Counts come back as numbers; money stays the exact decimal text Postgres sends (the page
 * formats it with Intl.NumberFormat for the order's currency and never adds currencies together).
 */

export type Queryable = Pick<Pool | ClientBase, 'query'>;

/** An amount of money: exact decimal text and its ISO 4217 currency code. */
export interface Money {
  currency: string;
  amount: string;
}

export interface HeadlinePeriod {
  orders: number;
  units: number;
  revenue: Money[];
}

export interface HeadlinePanel {
  today: string;
  month: string;
  periods: { today: HeadlinePeriod; month: HeadlinePeriod; allTime: HeadlinePeriod };
}

export interface TopDesign {
  designName: string;
  orders: number;
  units: number;
}

export interface SalesMonth {
  month: string;
  currency: string;
  orders: number;
  units: number;
  revenue: string;
}

export interface LocationRow {
  country: string;
  city?: string;
  orders: number;
  units: number;
  revenue: Money[];
}

export interface PaymentsPanel {
  /** Not paid yet, per status (due | overdue), direction (incoming | outgoing) and currency. */
  outstanding: { status: string; direction: string; currency: string; payments: number; amount: string }[];
  mostOverdue: {
    paymentId: number;
    counterparty: string;
    direction: string;
    currency: string;
    amount: string;
    paymentDate: string;
    daysOverdue: number;
  }[];
}

export interface PurchaseRow {
  name: string;
  orders: number;
  quantity: number;
  spend: Money[];
}

export interface DashboardPanels {
  headline: HeadlinePanel;
  topDesigns: TopDesign[];
  salesOverTime: SalesMonth[];
  salesByCountry: LocationRow[];
  salesByCity: LocationRow[];
  payments: PaymentsPanel;
  purchasesBySupplier: PurchaseRow[];
  purchasesByItem: PurchaseRow[];
}

const num = (v: unknown): number => Number(v ?? 0);
const money = (v: unknown): Money[] => ((v as Money[] | null) ?? []).filter((m) => m.amount !== null);

/** Revenue (or spend) per currency as one JSON array, so a row carries all its currencies. */
const perCurrency = (column: string) =>
  `json_agg(json_build_object('currency', "currency_code", 'amount', ${column}::text) ORDER BY "currency_code")`;

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- pg rows are untyped
type Row = Record<string, any>;

const toLocationRow = (r: Row): LocationRow => ({
  country: r.delivery_country,
  ...(r.delivery_city === undefined ? {} : { city: r.delivery_city }),
  orders: num(r.orders),
  units: num(r.units),
  revenue: money(r.revenue),
});

const toPurchaseRow = (r: Row): PurchaseRow => ({
  name: r.name,
  orders: num(r.orders),
  quantity: num(r.quantity),
  spend: money(r.spend),
});

async function headline(db: Queryable): Promise<HeadlinePanel> {
  const { rows } = await db.query(
    `SELECT current_date::text AS today, to_char(current_date, 'YYYY-MM') AS month, "currency_code",
            sum("orders") FILTER (WHERE "order_date" = current_date) AS today_orders,
            sum("units_sold") FILTER (WHERE "order_date" = current_date) AS today_units,
            sum("revenue") FILTER (WHERE "order_date" = current_date) AS today_revenue,
            sum("orders") FILTER (WHERE "order_date" >= date_trunc('month', current_date)) AS month_orders,
            sum("units_sold") FILTER (WHERE "order_date" >= date_trunc('month', current_date)) AS month_units,
            sum("revenue") FILTER (WHERE "order_date" >= date_trunc('month', current_date)) AS month_revenue,
            sum("orders") AS all_orders, sum("units_sold") AS all_units, sum("revenue") AS all_revenue
       FROM "rpt_sales_by_day"
      GROUP BY "currency_code"
      ORDER BY "currency_code"`,
  );
  const dates =
    rows[0] ??
    (await db.query(`SELECT current_date::text AS today, to_char(current_date, 'YYYY-MM') AS month`)).rows[0];
  const period = (prefix: 'today' | 'month' | 'all'): HeadlinePeriod => ({
    orders: rows.reduce((s, r) => s + num(r[`${prefix}_orders`]), 0),
    units: rows.reduce((s, r) => s + num(r[`${prefix}_units`]), 0),
    revenue: rows
      .filter((r) => r[`${prefix}_revenue`] !== null)
      .map((r) => ({ currency: r.currency_code, amount: r[`${prefix}_revenue`] })),
  });
  return {
    today: dates.today,
    month: dates.month,
    periods: { today: period('today'), month: period('month'), allTime: period('all') },
  };
}

async function topDesigns(db: Queryable): Promise<TopDesign[]> {
  const { rows } = await db.query(
    `SELECT "design_name", "orders", "units_sold"
       FROM "rpt_top_designs"
      ORDER BY "units_rank", "design_name"
      LIMIT 10`,
  );
  return rows.map((r) => ({ designName: r.design_name, orders: num(r.orders), units: num(r.units_sold) }));
}

async function salesOverTime(db: Queryable): Promise<SalesMonth[]> {
  const { rows } = await db.query(
    `SELECT "month"::text AS month, "currency_code", "orders", "units_sold", "revenue"::text AS revenue
       FROM "rpt_sales_by_month"
      ORDER BY "month", "currency_code"`,
  );
  return rows.map((r) => ({
    month: r.month.slice(0, 7),
    currency: r.currency_code,
    orders: num(r.orders),
    units: num(r.units_sold),
    revenue: r.revenue,
  }));
}

async function salesByCountry(db: Queryable): Promise<LocationRow[]> {
  const { rows } = await db.query(
    `SELECT "delivery_country", sum("orders") AS orders, sum("units_sold") AS units, ${perCurrency('"revenue"')} AS revenue
       FROM (SELECT "delivery_country", "currency_code", sum("orders") AS "orders",
                    sum("units_sold") AS "units_sold", sum("revenue") AS "revenue"
               FROM "rpt_sales_by_location" GROUP BY 1, 2) AS by_currency
      GROUP BY "delivery_country"
      ORDER BY units DESC, "delivery_country"
      LIMIT 10`,
  );
  return rows.map(toLocationRow);
}

async function salesByCity(db: Queryable): Promise<LocationRow[]> {
  const { rows } = await db.query(
    `SELECT "delivery_country", "delivery_city", sum("orders") AS orders, sum("units_sold") AS units,
            ${perCurrency('"revenue"')} AS revenue
       FROM "rpt_sales_by_location"
      GROUP BY "delivery_country", "delivery_city"
      ORDER BY units DESC, "delivery_country", "delivery_city"
      LIMIT 10`,
  );
  return rows.map(toLocationRow);
}

async function payments(db: Queryable): Promise<PaymentsPanel> {
  const [outstanding, overdue] = await Promise.all([
    db.query(
      `SELECT "status", "direction", "currency_code", "payments", "amount"::text AS amount
         FROM "rpt_payments_by_status"
        WHERE "status" IN ('due', 'overdue')
        ORDER BY "status", "direction", "currency_code"`,
    ),
    db.query(
      `SELECT "payment_id", "counterparty_legal_name", "direction", "currency_code",
              "payment_amount"::text AS amount, "payment_date"::text AS payment_date, "days_overdue"
         FROM "rpt_payment"
        WHERE "status" = 'overdue'
        ORDER BY "days_overdue" DESC, "payment_id"
        LIMIT 10`,
    ),
  ]);
  return {
    outstanding: outstanding.rows.map((r) => ({
      status: r.status,
      direction: r.direction,
      currency: r.currency_code,
      payments: num(r.payments),
      amount: r.amount,
    })),
    mostOverdue: overdue.rows.map((r) => ({
      paymentId: r.payment_id,
      counterparty: r.counterparty_legal_name,
      direction: r.direction,
      currency: r.currency_code,
      amount: r.amount,
      paymentDate: r.payment_date,
      daysOverdue: num(r.days_overdue),
    })),
  };
}

async function purchasesBySupplier(db: Queryable): Promise<PurchaseRow[]> {
  const { rows } = await db.query(
    `SELECT "counterparty_legal_name" AS name, sum("orders") AS orders, sum("item_quantity") AS quantity,
            ${perCurrency('"spend"')} AS spend
       FROM "rpt_purchases_by_supplier"
      GROUP BY "counterparty_id", "counterparty_legal_name"
      ORDER BY quantity DESC, name
      LIMIT 10`,
  );
  return rows.map(toPurchaseRow);
}

async function purchasesByItem(db: Queryable): Promise<PurchaseRow[]> {
  const { rows } = await db.query(
    `SELECT "item_code" AS name, sum("orders") AS orders, sum("item_quantity") AS quantity,
            ${perCurrency('"spend"')} AS spend
       FROM "rpt_purchases_by_item"
      GROUP BY "item_code"
      ORDER BY quantity DESC, name
      LIMIT 10`,
  );
  return rows.map(toPurchaseRow);
}

/** The panels by name: the only way a request selects SQL. */
export const DASHBOARD_PANELS: {
  [K in keyof DashboardPanels]: (db: Queryable) => Promise<DashboardPanels[K]>;
} = {
  headline,
  topDesigns,
  salesOverTime,
  salesByCountry,
  salesByCity,
  payments,
  purchasesBySupplier,
  purchasesByItem,
};

export type PanelName = keyof DashboardPanels;
export const PANEL_NAMES = Object.keys(DASHBOARD_PANELS) as PanelName[];

export function isPanelName(name: string): name is PanelName {
  return Object.prototype.hasOwnProperty.call(DASHBOARD_PANELS, name);
}

/** Every panel, queried concurrently (the pool bounds how many run at once). */
export async function queryPanels(db: Queryable): Promise<DashboardPanels> {
  const entries = await Promise.all(
    PANEL_NAMES.map(async (name) => [name, await DASHBOARD_PANELS[name](db)] as const),
  );
  return Object.fromEntries(entries) as unknown as DashboardPanels;
}
