-- The facts' foreign keys go (issue 12); the references they declared stay, checked by `totes verify`.
--
-- Why. A foreign key is checked per row by a system trigger that looks up, and share-locks, the
-- referenced row (https://www.postgresql.org/docs/current/ddl-constraints.html#DDL-CONSTRAINTS-FK).
-- Measured (`npm run bench:load`, bench/README.md "Load"): COPY into a fact costs 40–65 µs of
-- warehouse backend CPU per row with its 7–9 foreign keys, 7–13 µs without, so no load keeping them
-- reaches 50,000 rows/s on a 2-core machine. And they never fire: the load writes every row a fact
-- refers to (a placeholder dimension row, `_inferred`, and the dim_date row) in the same transaction
-- before the fact, and never erases a dimension row (a delete sets `_deleted`). They only cost.
-- Columnar warehouses treat them so: Redshift
-- (https://docs.aws.amazon.com/redshift/latest/dg/t_Defining_constraints.html) and Snowflake
-- (https://docs.snowflake.com/en/sql-reference/constraints) keep foreign keys as information only.
-- Postgres 18 could keep them so too (`NOT ENFORCED`,
-- https://www.postgresql.org/docs/18/sql-createtable.html); the warehouse runs 17, so they go.
--
-- What keeps the guarantee: the load, as above, and `totes verify`, which checks every reference 001
-- declared (core/warehouse-model.ts `references`: each date → dim_date; staff, counterparty,
-- currency, design, location, transaction, payment type → their dimension) over every fact version,
-- and names the dangling rows (processors/load/verify-references.ts).
--
-- Nothing else changes:
--   * No dimension or staging table has a foreign key (001 declares none): dim_staff's department
--     and dim_counterparty's address are copied into the row by the load, not referenced.
--   * The reporting views (003) LEFT JOIN the dimensions on their primary keys. Postgres removes
--     such a join when the query uses none of its columns because the joined side is unique on the
--     join columns (the planner's join removal, src/backend/optimizer/plan/analyzejoins.c), which
--     needs no foreign key, so the dashboard's plans stay the same. 003's "the facts' foreign keys
--     guarantee the row exists" now holds through the load, and verify checks it.
--
-- IF EXISTS: a warehouse whose constraints were dropped by hand (`npm run bench:load --
-- --without-fact-fks` drops them in its own warehouse) migrates too.
--
-- Never edit this file once released: migrate.ts refuses a changed checksum. Add a new migration.

ALTER TABLE "fact_sales_order"
  DROP CONSTRAINT IF EXISTS "fact_sales_order_created_date_fkey",
  DROP CONSTRAINT IF EXISTS "fact_sales_order_last_updated_date_fkey",
  DROP CONSTRAINT IF EXISTS "fact_sales_order_sales_staff_id_fkey",
  DROP CONSTRAINT IF EXISTS "fact_sales_order_counterparty_id_fkey",
  DROP CONSTRAINT IF EXISTS "fact_sales_order_currency_id_fkey",
  DROP CONSTRAINT IF EXISTS "fact_sales_order_design_id_fkey",
  DROP CONSTRAINT IF EXISTS "fact_sales_order_agreed_payment_date_fkey",
  DROP CONSTRAINT IF EXISTS "fact_sales_order_agreed_delivery_date_fkey",
  DROP CONSTRAINT IF EXISTS "fact_sales_order_agreed_delivery_location_id_fkey";

ALTER TABLE "fact_purchase_order"
  DROP CONSTRAINT IF EXISTS "fact_purchase_order_created_date_fkey",
  DROP CONSTRAINT IF EXISTS "fact_purchase_order_last_updated_date_fkey",
  DROP CONSTRAINT IF EXISTS "fact_purchase_order_staff_id_fkey",
  DROP CONSTRAINT IF EXISTS "fact_purchase_order_counterparty_id_fkey",
  DROP CONSTRAINT IF EXISTS "fact_purchase_order_currency_id_fkey",
  DROP CONSTRAINT IF EXISTS "fact_purchase_order_agreed_delivery_date_fkey",
  DROP CONSTRAINT IF EXISTS "fact_purchase_order_agreed_payment_date_fkey",
  DROP CONSTRAINT IF EXISTS "fact_purchase_order_agreed_delivery_location_id_fkey";

ALTER TABLE "fact_payment"
  DROP CONSTRAINT IF EXISTS "fact_payment_created_date_fkey",
  DROP CONSTRAINT IF EXISTS "fact_payment_last_updated_date_fkey",
  DROP CONSTRAINT IF EXISTS "fact_payment_transaction_id_fkey",
  DROP CONSTRAINT IF EXISTS "fact_payment_counterparty_id_fkey",
  DROP CONSTRAINT IF EXISTS "fact_payment_currency_id_fkey",
  DROP CONSTRAINT IF EXISTS "fact_payment_payment_type_id_fkey",
  DROP CONSTRAINT IF EXISTS "fact_payment_payment_date_fkey";
