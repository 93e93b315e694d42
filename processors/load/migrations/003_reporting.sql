-- The reporting layer (issue 11): business views for analysts, the dashboard (`totes dashboard`) and
-- QuickSight, named `rpt_…`, read through the read-only role `totes_reporting`. Documented column by
-- column in docs/warehouse-reporting.md.
--
-- Every view reads the current views of 002 (fact_*_current): "what is true now" has one
-- definition, and it is not repeated here. Money is never added across currencies: every figure of
-- money comes with its currency. Facts are joined to their dimension rows whatever those rows'
-- `_deleted` mark says (a current order keeps its design's name even if the design row was deleted
-- since), so totals here always equal totals over the current facts; lists of dimension members
-- themselves leave `_deleted` rows out.
--
-- The base views (rpt_sales_order, rpt_payment, rpt_purchase_order) LEFT JOIN their dimensions on
-- primary keys: the facts' foreign keys guarantee the row exists, so the result is the inner join's,
-- and Postgres drops a join whose columns a query does not use (join removal), which halves the
-- dashboard's queries.
--
-- A prefix, not a schema of their own: migrations create everything in the schema they run in
-- (search_path), and two warehouses may share one database in different schemas (the migration
-- tests do); a fixed schema name would collide.
--
-- Privileges. Views run with their owner's rights
-- (https://www.postgresql.org/docs/current/sql-createview.html), so SELECT on an rpt_ view is all a
-- reader needs: the reporting role sees the reporting layer and nothing else. The role
-- `totes_reporting` is created by migration 004 (another change), which runs after this one on a
-- fresh warehouse; so that the order of the two does not matter:
--   * here, if the role already exists (roles are cluster-wide), it gets SELECT on the views now;
--   * 004, after creating the role, must grant SELECT on every rpt_ view of the current schema
--     (idempotent), e.g. the DO block at the end of this file; a later migration that adds an rpt_
--     view grants it in the same way.
--
-- Never edit this file once released: migrate.ts refuses a changed checksum. Add a new migration.

-- ---------------------------------------------------------------------------------------- sales

-- One row per sales order as it is now, with the names an analyst reads. The base of the sales views.
CREATE VIEW "rpt_sales_order" AS
SELECT f."sales_order_id",
       f."created_date" AS "order_date",
       f."created_time" AS "order_time",
       f."last_updated_date",
       f."last_updated_time",
       f."design_id",
       d."design_name",
       f."sales_staff_id" AS "staff_id",
       s."first_name" || ' ' || s."last_name" AS "staff_name",
       s."department_name",
       f."counterparty_id",
       cp."counterparty_legal_name",
       cp."counterparty_legal_country",
       cp."counterparty_legal_city",
       f."currency_id",
       c."currency_code",
       f."units_sold",
       f."unit_price",
       f."units_sold" * f."unit_price" AS "revenue",
       f."agreed_delivery_date",
       f."agreed_payment_date",
       f."agreed_delivery_location_id" AS "delivery_location_id",
       l."country" AS "delivery_country",
       l."city" AS "delivery_city"
  FROM "fact_sales_order_current" AS f
  LEFT JOIN "dim_design" AS d ON d."design_id" = f."design_id"
  LEFT JOIN "dim_staff" AS s ON s."staff_id" = f."sales_staff_id"
  LEFT JOIN "dim_counterparty" AS cp ON cp."counterparty_id" = f."counterparty_id"
  LEFT JOIN "dim_currency" AS c ON c."currency_id" = f."currency_id"
  LEFT JOIN "dim_location" AS l ON l."location_id" = f."agreed_delivery_location_id";

CREATE VIEW "rpt_sales_by_day" AS
SELECT "order_date",
       "currency_id",
       "currency_code",
       count(*) AS "orders",
       sum("units_sold") AS "units_sold",
       sum("revenue") AS "revenue"
  FROM "rpt_sales_order"
 GROUP BY "order_date", "currency_id", "currency_code";

-- From the daily figures (a few rows per day) rather than from every order: the same sums, less work.
CREATE VIEW "rpt_sales_by_month" AS
SELECT date_trunc('month', "order_date")::date AS "month",
       extract(year FROM "order_date")::integer AS "year",
       extract(month FROM "order_date")::integer AS "month_number",
       -- FM: no padding; without the TM prefix to_char's month names are English whatever lc_time says.
       to_char("order_date", 'FMMonth') AS "month_name",
       "currency_id",
       "currency_code",
       sum("orders")::bigint AS "orders",
       sum("units_sold")::bigint AS "units_sold",
       sum("revenue") AS "revenue"
  FROM "rpt_sales_by_day"
 GROUP BY 1, 2, 3, 4, "currency_id", "currency_code";

-- Designs by name: totesys has many design rows per name (one per file), and the business talks
-- about "Steel" or "Wooden". Units are comparable across currencies; revenue is not (next view).
CREATE VIEW "rpt_top_designs" AS
SELECT "design_name",
       count(DISTINCT "design_id") AS "designs",
       count(*) AS "orders",
       sum("units_sold") AS "units_sold",
       rank() OVER (ORDER BY sum("units_sold") DESC) AS "units_rank"
  FROM "rpt_sales_order"
 GROUP BY "design_name";

CREATE VIEW "rpt_sales_by_design" AS
SELECT "design_name",
       "currency_id",
       "currency_code",
       count(*) AS "orders",
       sum("units_sold") AS "units_sold",
       sum("revenue") AS "revenue",
       rank() OVER (PARTITION BY "currency_id" ORDER BY sum("revenue") DESC) AS "revenue_rank"
  FROM "rpt_sales_order"
 GROUP BY "design_name", "currency_id", "currency_code";

CREATE VIEW "rpt_sales_by_counterparty" AS
SELECT "counterparty_id",
       "counterparty_legal_name",
       "counterparty_legal_country",
       "counterparty_legal_city",
       "currency_id",
       "currency_code",
       count(*) AS "orders",
       sum("units_sold") AS "units_sold",
       sum("revenue") AS "revenue"
  FROM "rpt_sales_order"
 GROUP BY "counterparty_id", "counterparty_legal_name", "counterparty_legal_country",
          "counterparty_legal_city", "currency_id", "currency_code";

-- Where the goods go: the order's agreed delivery location.
CREATE VIEW "rpt_sales_by_location" AS
SELECT "delivery_country",
       "delivery_city",
       "currency_id",
       "currency_code",
       count(*) AS "orders",
       sum("units_sold") AS "units_sold",
       sum("revenue") AS "revenue"
  FROM "rpt_sales_order"
 GROUP BY "delivery_country", "delivery_city", "currency_id", "currency_code";

CREATE VIEW "rpt_sales_staff_performance" AS
SELECT "staff_id",
       "staff_name",
       "department_name",
       "currency_id",
       "currency_code",
       count(*) AS "orders",
       sum("units_sold") AS "units_sold",
       sum("revenue") AS "revenue",
       min("order_date") AS "first_order_date",
       max("order_date") AS "last_order_date",
       rank() OVER (PARTITION BY "currency_id" ORDER BY sum("revenue") DESC) AS "revenue_rank"
  FROM "rpt_sales_order"
 GROUP BY "staff_id", "staff_name", "department_name", "currency_id", "currency_code";

-- ------------------------------------------------------------------------------------- payments

-- One row per payment as it is now. "Today" is the warehouse session's current_date (its TimeZone
-- setting): a payment not paid whose payment date is before today is overdue, otherwise due.
CREATE VIEW "rpt_payment" AS
SELECT f."payment_id",
       f."transaction_id",
       t."transaction_type",
       t."sales_order_id",
       t."purchase_order_id",
       f."counterparty_id",
       cp."counterparty_legal_name",
       f."payment_type_id",
       pt."payment_type_name",
       CASE WHEN pt."payment_type_name" IN ('SALES_RECEIPT', 'PURCHASE_REFUND') THEN 'incoming'
            WHEN pt."payment_type_name" IN ('SALES_REFUND', 'PURCHASE_PAYMENT') THEN 'outgoing'
            ELSE 'unknown' END AS "direction",
       f."currency_id",
       c."currency_code",
       f."payment_amount",
       f."payment_date",
       f."paid",
       CASE WHEN f."paid" THEN 'paid'
            WHEN f."payment_date" < current_date THEN 'overdue'
            ELSE 'due' END AS "status",
       CASE WHEN NOT f."paid" AND f."payment_date" < current_date
            THEN current_date - f."payment_date" ELSE 0 END AS "days_overdue",
       f."created_date",
       f."last_updated_date"
  FROM "fact_payment_current" AS f
  LEFT JOIN "dim_transaction" AS t ON t."transaction_id" = f."transaction_id"
  LEFT JOIN "dim_counterparty" AS cp ON cp."counterparty_id" = f."counterparty_id"
  LEFT JOIN "dim_payment_type" AS pt ON pt."payment_type_id" = f."payment_type_id"
  LEFT JOIN "dim_currency" AS c ON c."currency_id" = f."currency_id";

CREATE VIEW "rpt_payments_by_status" AS
SELECT "status",
       "direction",
       "currency_id",
       "currency_code",
       count(*) AS "payments",
       sum("payment_amount") AS "amount",
       min("payment_date") AS "earliest_payment_date",
       max("payment_date") AS "latest_payment_date"
  FROM "rpt_payment"
 GROUP BY "status", "direction", "currency_id", "currency_code";

-- ------------------------------------------------------------------------------ purchase orders

CREATE VIEW "rpt_purchase_order" AS
SELECT f."purchase_order_id",
       f."created_date" AS "order_date",
       f."created_time" AS "order_time",
       f."last_updated_date",
       f."staff_id",
       s."first_name" || ' ' || s."last_name" AS "staff_name",
       f."counterparty_id",
       cp."counterparty_legal_name",
       cp."counterparty_legal_country",
       f."item_code",
       f."item_quantity",
       f."item_unit_price",
       f."item_quantity" * f."item_unit_price" AS "spend",
       f."currency_id",
       c."currency_code",
       f."agreed_delivery_date",
       f."agreed_payment_date",
       f."agreed_delivery_location_id" AS "delivery_location_id"
  FROM "fact_purchase_order_current" AS f
  LEFT JOIN "dim_staff" AS s ON s."staff_id" = f."staff_id"
  LEFT JOIN "dim_counterparty" AS cp ON cp."counterparty_id" = f."counterparty_id"
  LEFT JOIN "dim_currency" AS c ON c."currency_id" = f."currency_id";

CREATE VIEW "rpt_purchases_by_supplier" AS
SELECT "counterparty_id",
       "counterparty_legal_name",
       "counterparty_legal_country",
       "currency_id",
       "currency_code",
       count(*) AS "orders",
       sum("item_quantity") AS "item_quantity",
       sum("spend") AS "spend"
  FROM "rpt_purchase_order"
 GROUP BY "counterparty_id", "counterparty_legal_name", "counterparty_legal_country",
          "currency_id", "currency_code";

CREATE VIEW "rpt_purchases_by_item" AS
SELECT "item_code",
       "currency_id",
       "currency_code",
       count(*) AS "orders",
       sum("item_quantity") AS "item_quantity",
       sum("spend") AS "spend",
       -- Weighted by quantity: what one item cost on average.
       round(sum("spend") / nullif(sum("item_quantity"), 0), 2) AS "average_unit_price"
  FROM "rpt_purchase_order"
 GROUP BY "item_code", "currency_id", "currency_code";

-- ------------------------------------------------------------------------------------- pipeline

-- The load's bookkeeping, so that the reporting role can see how current the warehouse is (the
-- dashboard's pipeline panel and `totes status --warehouse-url` read these two).
CREATE VIEW "rpt_pipeline_tables" AS
SELECT p."source_table",
       p."warehouse_table",
       p."newest_commit_ts",
       p."last_loaded_at",
       now() AS "observed_at"
  FROM "pipeline_progress" AS p;

-- Loads of the last hour, per warehouse table: throughput and when each table last took a load.
CREATE INDEX "load_log_loaded_at_idx" ON "load_log" ("loaded_at");

CREATE VIEW "rpt_pipeline_loads" AS
SELECT l."table" AS "warehouse_table",
       count(*) AS "objects_last_hour",
       coalesce(sum(l."rows"), 0) AS "rows_last_hour",
       count(*) FILTER (WHERE l."loaded_at" > now() - interval '1 minute') AS "objects_last_minute",
       coalesce(sum(l."rows") FILTER (WHERE l."loaded_at" > now() - interval '1 minute'), 0) AS "rows_last_minute",
       max(l."loaded_at") AS "last_loaded_at"
  FROM "load_log" AS l
 WHERE l."loaded_at" > now() - interval '1 hour'
 GROUP BY l."table";

DO $$
DECLARE
  view_name name;
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'totes_reporting') THEN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO "totes_reporting"', current_schema());
    FOR view_name IN
      SELECT c.relname FROM pg_class c
       WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'v' AND c.relname LIKE 'rpt\_%'
    LOOP
      EXECUTE format('GRANT SELECT ON %I TO "totes_reporting"', view_name);
    END LOOP;
  END IF;
END
$$;
