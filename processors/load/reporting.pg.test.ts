import { Client } from 'pg';
import { seedReportingWarehouse } from '../../test/support/reporting-warehouse';
import { migrateWarehouse } from './migrate';

/**
 * The reporting views (migration 003) against figures computed by hand over the fact and dimension
 * tables: "latest version, not deleted" is written here independently of the current views, so a
 * wrong view definition (history counted twice, a deleted order counted, currencies mixed) fails.
 */
let warehouse: Client;
let deletedSalesOrderId: number;
let seededUrl: string;

beforeAll(async () => {
  const seeded = await seedReportingWarehouse('reporting');
  deletedSalesOrderId = seeded.deletedSalesOrderId;
  seededUrl = seeded.warehouseUrl;
  warehouse = new Client({ connectionString: seeded.warehouseUrl });
  await warehouse.connect();
}, 120_000);

afterAll(() => warehouse.end());

const latest = (table: string, key: string) => `
  (SELECT * FROM (SELECT f.*, row_number() OVER (PARTITION BY "${key}" ORDER BY "_epoch" DESC, "_lsn" DESC, "_seq" DESC) AS rn
                    FROM "${table}" AS f) AS v
    WHERE v.rn = 1 AND NOT v."_deleted")`;
const SALES = latest('fact_sales_order', 'sales_order_id');
const PURCHASES = latest('fact_purchase_order', 'purchase_order_id');
const PAYMENTS = latest('fact_payment', 'payment_id');

async function rows(sql: string): Promise<unknown[]> {
  return (await warehouse.query(sql)).rows;
}

/** The view's rows and the hand-computed rows, both ordered the same way. */
async function expectView(view: string, columns: string, orderBy: string, expected: string): Promise<number> {
  const actual = await rows(`SELECT ${columns} FROM "rpt_${view}" ORDER BY ${orderBy}`);
  const wanted = await rows(`SELECT ${columns} FROM (${expected}) AS e ORDER BY ${orderBy}`);
  expect(actual).toEqual(wanted);
  return actual.length;
}

describe('reporting views (real Postgres, seeded warehouse with history)', () => {
  it('the seeded warehouse has history and one deleted order', async () => {
    const [counts] = (await rows(
      `SELECT (SELECT count(*) FROM "fact_sales_order")::int AS versions,
              (SELECT count(DISTINCT "sales_order_id") FROM "fact_sales_order")::int AS orders,
              (SELECT count(*) FROM "rpt_sales_order")::int AS current`,
    )) as { versions: number; orders: number; current: number }[];
    expect(counts.versions).toBeGreaterThan(counts.orders); // the edited orders have a second version
    expect(counts.current).toBe(counts.orders - 1);
    expect(
      await rows(`SELECT 1 FROM "rpt_sales_order" WHERE "sales_order_id" = ${deletedSalesOrderId}`),
    ).toEqual([]);
  });

  it('sales by day and by month per currency', async () => {
    const days = await expectView(
      'sales_by_day',
      '"order_date"::text, "currency_code", "orders", "units_sold", "revenue"',
      '1, 2',
      `SELECT s."created_date" AS "order_date", c."currency_code", count(*) AS "orders",
              sum(s."units_sold") AS "units_sold", sum(s."units_sold" * s."unit_price") AS "revenue"
         FROM ${SALES} AS s JOIN "dim_currency" c USING ("currency_id")
        GROUP BY 1, 2`,
    );
    expect(days).toBeGreaterThan(10);
    await expectView(
      'sales_by_month',
      '"month"::text, "year", "month_number", "month_name", "currency_code", "orders", "units_sold", "revenue"',
      '1, 5',
      `SELECT date_trunc('month', s."created_date")::date AS "month", d."year", d."month" AS "month_number",
              d."month_name", c."currency_code", count(*) AS "orders",
              sum(s."units_sold") AS "units_sold", sum(s."units_sold" * s."unit_price") AS "revenue"
         FROM ${SALES} AS s JOIN "dim_currency" c USING ("currency_id")
         JOIN "dim_date" d ON d."date_id" = s."created_date"
        GROUP BY 1, 2, 3, 4, 5`,
    );
    const [totals] = (await rows(
      `SELECT (SELECT sum("revenue") FROM "rpt_sales_by_day") AS by_day,
              (SELECT sum("revenue") FROM "rpt_sales_by_month") AS by_month`,
    )) as { by_day: string; by_month: string }[];
    expect(totals.by_day).toBe(totals.by_month);
  });

  it('top designs by units sold (by name) and by revenue per currency', async () => {
    await expectView(
      'top_designs',
      '"design_name", "designs", "orders", "units_sold", "units_rank"',
      '5, 1',
      `SELECT d."design_name", count(DISTINCT d."design_id") AS "designs", count(*) AS "orders",
              sum(s."units_sold") AS "units_sold", rank() OVER (ORDER BY sum(s."units_sold") DESC) AS "units_rank"
         FROM ${SALES} AS s JOIN "dim_design" d USING ("design_id") GROUP BY 1`,
    );
    expect(await rows(`SELECT 1 FROM "rpt_top_designs" WHERE "design_name" = 'Renamed'`)).not.toEqual([]);
    await expectView(
      'sales_by_design',
      '"design_name", "currency_code", "orders", "units_sold", "revenue", "revenue_rank"',
      '2, 6, 1',
      `SELECT d."design_name", c."currency_code", count(*) AS "orders", sum(s."units_sold") AS "units_sold",
              sum(s."units_sold" * s."unit_price") AS "revenue",
              rank() OVER (PARTITION BY c."currency_code" ORDER BY sum(s."units_sold" * s."unit_price") DESC) AS "revenue_rank"
         FROM ${SALES} AS s JOIN "dim_design" d USING ("design_id") JOIN "dim_currency" c USING ("currency_id")
        GROUP BY 1, 2`,
    );
  });

  it('sales by counterparty, by delivery country and city, and by sales staff', async () => {
    await expectView(
      'sales_by_counterparty',
      '"counterparty_id", "counterparty_legal_name", "counterparty_legal_country", "counterparty_legal_city", "currency_code", "orders", "units_sold", "revenue"',
      '1, 5',
      `SELECT cp."counterparty_id", cp."counterparty_legal_name", cp."counterparty_legal_country",
              cp."counterparty_legal_city", c."currency_code", count(*) AS "orders",
              sum(s."units_sold") AS "units_sold", sum(s."units_sold" * s."unit_price") AS "revenue"
         FROM ${SALES} AS s JOIN "dim_counterparty" cp USING ("counterparty_id") JOIN "dim_currency" c USING ("currency_id")
        GROUP BY 1, 2, 3, 4, 5`,
    );
    await expectView(
      'sales_by_location',
      '"delivery_country", "delivery_city", "currency_code", "orders", "units_sold", "revenue"',
      '1, 2, 3',
      `SELECT l."country" AS "delivery_country", l."city" AS "delivery_city", c."currency_code", count(*) AS "orders",
              sum(s."units_sold") AS "units_sold", sum(s."units_sold" * s."unit_price") AS "revenue"
         FROM ${SALES} AS s JOIN "dim_location" l ON l."location_id" = s."agreed_delivery_location_id"
         JOIN "dim_currency" c USING ("currency_id") GROUP BY 1, 2, 3`,
    );
    await expectView(
      'sales_staff_performance',
      '"staff_id", "staff_name", "department_name", "currency_code", "orders", "units_sold", "revenue", "first_order_date"::text, "last_order_date"::text, "revenue_rank"',
      '1, 4',
      `SELECT st."staff_id", st."first_name" || ' ' || st."last_name" AS "staff_name", st."department_name",
              c."currency_code", count(*) AS "orders", sum(s."units_sold") AS "units_sold",
              sum(s."units_sold" * s."unit_price") AS "revenue", min(s."created_date") AS "first_order_date",
              max(s."created_date") AS "last_order_date",
              rank() OVER (PARTITION BY c."currency_code" ORDER BY sum(s."units_sold" * s."unit_price") DESC) AS "revenue_rank"
         FROM ${SALES} AS s JOIN "dim_staff" st ON st."staff_id" = s."sales_staff_id"
         JOIN "dim_currency" c USING ("currency_id") GROUP BY 1, 2, 3, 4`,
    );
  });

  it('payments due, overdue and paid, by direction and currency', async () => {
    await expectView(
      'payments_by_status',
      '"status", "direction", "currency_code", "payments", "amount", "earliest_payment_date"::text, "latest_payment_date"::text',
      '1, 2, 3',
      `SELECT CASE WHEN p."paid" THEN 'paid' WHEN p."payment_date" < current_date THEN 'overdue' ELSE 'due' END AS "status",
              CASE WHEN t."payment_type_name" IN ('SALES_RECEIPT', 'PURCHASE_REFUND') THEN 'incoming' ELSE 'outgoing' END AS "direction",
              c."currency_code", count(*) AS "payments", sum(p."payment_amount") AS "amount",
              min(p."payment_date") AS "earliest_payment_date", max(p."payment_date") AS "latest_payment_date"
         FROM ${PAYMENTS} AS p JOIN "dim_payment_type" t USING ("payment_type_id")
         JOIN "dim_currency" c USING ("currency_id") GROUP BY 1, 2, 3`,
    );
    const statuses = (await rows(`SELECT DISTINCT "status" FROM "rpt_payment" ORDER BY 1`)) as {
      status: string;
    }[];
    expect(statuses.map((s) => s.status)).toEqual(['due', 'overdue', 'paid']);
    const [overdue] = (await rows(
      `SELECT count(*)::int AS wrong FROM "rpt_payment"
        WHERE ("status" = 'overdue') <> (NOT "paid" AND "payment_date" < current_date)
           OR ("status" = 'overdue' AND "days_overdue" <> current_date - "payment_date")`,
    )) as { wrong: number }[];
    expect(overdue.wrong).toBe(0);
  });

  it('purchase orders by supplier and by item', async () => {
    await expectView(
      'purchases_by_supplier',
      '"counterparty_id", "counterparty_legal_name", "currency_code", "orders", "item_quantity", "spend"',
      '1, 3',
      `SELECT cp."counterparty_id", cp."counterparty_legal_name", c."currency_code", count(*) AS "orders",
              sum(p."item_quantity") AS "item_quantity", sum(p."item_quantity" * p."item_unit_price") AS "spend"
         FROM ${PURCHASES} AS p JOIN "dim_counterparty" cp USING ("counterparty_id")
         JOIN "dim_currency" c USING ("currency_id") GROUP BY 1, 2, 3`,
    );
    await expectView(
      'purchases_by_item',
      '"item_code", "currency_code", "orders", "item_quantity", "spend", "average_unit_price"',
      '1, 2',
      `SELECT p."item_code", c."currency_code", count(*) AS "orders", sum(p."item_quantity") AS "item_quantity",
              sum(p."item_quantity" * p."item_unit_price") AS "spend",
              round(sum(p."item_quantity" * p."item_unit_price") / sum(p."item_quantity"), 2) AS "average_unit_price"
         FROM ${PURCHASES} AS p JOIN "dim_currency" c USING ("currency_id") GROUP BY 1, 2`,
    );
  });

  it('pipeline views expose the load bookkeeping', async () => {
    await expectView(
      'pipeline_tables',
      '"source_table", "warehouse_table", "newest_commit_ts", "last_loaded_at"',
      '1',
      `SELECT "source_table", "warehouse_table", "newest_commit_ts", "last_loaded_at" FROM "pipeline_progress"`,
    );
    await expectView(
      'pipeline_loads',
      '"warehouse_table", "objects_last_hour", "rows_last_hour"',
      '1',
      `SELECT "table" AS "warehouse_table", count(*) AS "objects_last_hour", sum("rows") AS "rows_last_hour"
         FROM "load_log" WHERE "loaded_at" > now() - interval '1 hour' GROUP BY 1`,
    );
  });

  it('the reporting role reads the rpt_ views and the warehouse, and writes nothing, whichever of 003 and 004 ran first', async () => {
    // Roles are cluster-wide: migrate a fresh schema with the role already there (004 first).
    const role = 'totes_reporting';
    const existed = (await rows(`SELECT 1 FROM pg_roles WHERE rolname = '${role}'`)).length > 0;
    if (!existed) await warehouse.query(`CREATE ROLE ${role} NOLOGIN`);
    const schema = `rpt_grants_${process.pid}`;
    const other = new Client({ connectionString: seededUrl, options: `-c search_path=${schema}` });
    await other.connect();
    try {
      await other.query(`CREATE SCHEMA ${schema}`);
      await migrateWarehouse(other);
      await other.query('BEGIN');
      await other.query(`SET LOCAL ROLE ${role}`);
      const top = await other.query('SELECT count(*)::int AS n FROM "rpt_top_designs"');
      expect(top.rows[0].n).toBe(0);
      // Analysts read the stars too (004 grants SELECT on every table); nobody writes through it.
      await other.query('SELECT 1 FROM "fact_sales_order_current" LIMIT 1');
      await expect(other.query('DELETE FROM "fact_sales_order"')).rejects.toThrow(/permission denied/);
      await other.query('ROLLBACK');
    } finally {
      await other.query('ROLLBACK');
      await other.query('RESET ROLE');
      await other.query(`DROP SCHEMA ${schema} CASCADE`);
      await other.end();
      if (!existed) await warehouse.query(`DROP ROLE ${role}`);
    }
  });
});
