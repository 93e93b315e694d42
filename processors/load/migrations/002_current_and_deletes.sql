-- Recovery without loss (issue 8): the change identity gains an epoch, facts learn deletes and
-- TRUNCATE, re-snapshots reconcile, and "current" becomes a contract (views) that analysts, the
-- dashboard and `totes verify` all read. See docs/warehouse.md for the analyst's view of it.
--
-- Position. Every change is identified by (_epoch, _lsn, _seq), compared lexicographically:
--   _epoch   the capture generation (milliseconds since 1970 when capture began a new slot
--            generation or a new source timeline/cluster). LSNs of different generations may not be
--            comparable (a restored or promoted cluster reuses them): the epoch in front keeps order
--            truthful. 0 = rows loaded before epochs existed.
-- Facts stay unique on (key, _lsn, _seq): the same change redelivered under a new epoch (capture
-- lost its state but kept its slot, and replays the unconfirmed tail) is still the same change.
--
-- Facts also:
--   _deleted    true on a version that a delete (or TRUNCATE, or a re-snapshot that no longer holds
--               the row) ended: a delete follows it before any later version. The delete itself
--               is a row of fact_delete; the flag is recomputed from it by every load that touches
--               the key, so the result does not depend on arrival order.
--   _row_hash   hash of the whole source row (every source column, also those the fact drops): a
--               re-read row (snapshot, replay) equal to the version before it adds nothing.
--   _snapshot   the version came from a snapshot (a state read, not a change in the WAL): such a
--               version is dropped again when the version before it has the same _row_hash.
-- Dimensions and staging tables also:
--   _deleted_epoch  the epoch of the newest delete (with _deleted_lsn/_deleted_seq).

ALTER TABLE "dim_location" ADD COLUMN "_epoch" bigint NOT NULL DEFAULT 0, ADD COLUMN "_deleted_epoch" bigint;
ALTER TABLE "dim_currency" ADD COLUMN "_epoch" bigint NOT NULL DEFAULT 0, ADD COLUMN "_deleted_epoch" bigint;
ALTER TABLE "dim_design" ADD COLUMN "_epoch" bigint NOT NULL DEFAULT 0, ADD COLUMN "_deleted_epoch" bigint;
ALTER TABLE "dim_payment_type" ADD COLUMN "_epoch" bigint NOT NULL DEFAULT 0, ADD COLUMN "_deleted_epoch" bigint;
ALTER TABLE "dim_transaction" ADD COLUMN "_epoch" bigint NOT NULL DEFAULT 0, ADD COLUMN "_deleted_epoch" bigint;
ALTER TABLE "dim_staff" ADD COLUMN "_epoch" bigint NOT NULL DEFAULT 0, ADD COLUMN "_deleted_epoch" bigint;
ALTER TABLE "dim_counterparty" ADD COLUMN "_epoch" bigint NOT NULL DEFAULT 0, ADD COLUMN "_deleted_epoch" bigint;
ALTER TABLE "stg_department" ADD COLUMN "_epoch" bigint NOT NULL DEFAULT 0, ADD COLUMN "_deleted_epoch" bigint;
ALTER TABLE "stg_staff" ADD COLUMN "_epoch" bigint NOT NULL DEFAULT 0, ADD COLUMN "_deleted_epoch" bigint;
ALTER TABLE "stg_counterparty" ADD COLUMN "_epoch" bigint NOT NULL DEFAULT 0, ADD COLUMN "_deleted_epoch" bigint;
UPDATE "dim_location" SET "_deleted_epoch" = 0 WHERE "_deleted_lsn" IS NOT NULL;
UPDATE "dim_currency" SET "_deleted_epoch" = 0 WHERE "_deleted_lsn" IS NOT NULL;
UPDATE "dim_design" SET "_deleted_epoch" = 0 WHERE "_deleted_lsn" IS NOT NULL;
UPDATE "dim_payment_type" SET "_deleted_epoch" = 0 WHERE "_deleted_lsn" IS NOT NULL;
UPDATE "dim_transaction" SET "_deleted_epoch" = 0 WHERE "_deleted_lsn" IS NOT NULL;
UPDATE "dim_staff" SET "_deleted_epoch" = 0 WHERE "_deleted_lsn" IS NOT NULL;
UPDATE "dim_counterparty" SET "_deleted_epoch" = 0 WHERE "_deleted_lsn" IS NOT NULL;
UPDATE "stg_department" SET "_deleted_epoch" = 0 WHERE "_deleted_lsn" IS NOT NULL;
UPDATE "stg_staff" SET "_deleted_epoch" = 0 WHERE "_deleted_lsn" IS NOT NULL;
UPDATE "stg_counterparty" SET "_deleted_epoch" = 0 WHERE "_deleted_lsn" IS NOT NULL;

ALTER TABLE "fact_sales_order"
  ADD COLUMN "_epoch" bigint NOT NULL DEFAULT 0,
  ADD COLUMN "_deleted" boolean NOT NULL DEFAULT false,
  ADD COLUMN "_row_hash" text,
  ADD COLUMN "_snapshot" boolean NOT NULL DEFAULT false;
ALTER TABLE "fact_purchase_order"
  ADD COLUMN "_epoch" bigint NOT NULL DEFAULT 0,
  ADD COLUMN "_deleted" boolean NOT NULL DEFAULT false,
  ADD COLUMN "_row_hash" text,
  ADD COLUMN "_snapshot" boolean NOT NULL DEFAULT false;
ALTER TABLE "fact_payment"
  ADD COLUMN "_epoch" bigint NOT NULL DEFAULT 0,
  ADD COLUMN "_deleted" boolean NOT NULL DEFAULT false,
  ADD COLUMN "_row_hash" text,
  ADD COLUMN "_snapshot" boolean NOT NULL DEFAULT false;

-- The latest version of a key, and the versions of a key in order: what every current view, delete
-- and snapshot rule reads.
CREATE INDEX "fact_sales_order_position_idx" ON "fact_sales_order" ("sales_order_id", "_epoch", "_lsn", "_seq");
CREATE INDEX "fact_purchase_order_position_idx" ON "fact_purchase_order" ("purchase_order_id", "_epoch", "_lsn", "_seq");
CREATE INDEX "fact_payment_position_idx" ON "fact_payment" ("payment_id", "_epoch", "_lsn", "_seq");

ALTER TABLE "pipeline_progress" ADD COLUMN "_epoch" bigint NOT NULL DEFAULT 0;

-- Every delete of a fact's source row: from the WAL (`delete`), from a TRUNCATE (one per key that
-- had versions before it), or from a completed re-snapshot that no longer held the row (`resync`).
CREATE TABLE "fact_delete" (
  "warehouse_table" text NOT NULL,
  "key" integer NOT NULL,
  "_epoch" bigint NOT NULL,
  "_lsn" pg_lsn NOT NULL,
  "_seq" bigint NOT NULL,
  "_commit_ts" timestamptz,
  "reason" text NOT NULL CHECK ("reason" IN ('delete', 'truncate', 'resync')),
  "_loaded_at" timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT "fact_delete_pkey" PRIMARY KEY ("warehouse_table", "key", "_epoch", "_lsn", "_seq")
);

-- Every TRUNCATE of a source table: it deletes every row whose position is older, including rows
-- whose objects load after it.
CREATE TABLE "source_truncate" (
  "source_table" text NOT NULL,
  "_epoch" bigint NOT NULL,
  "_lsn" pg_lsn NOT NULL,
  "_seq" bigint NOT NULL,
  "_commit_ts" timestamptz,
  "_loaded_at" timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT "source_truncate_pkey" PRIMARY KEY ("source_table", "_epoch", "_lsn", "_seq")
);

-- Snapshots, per source table. A snapshot is identified by (epoch, lsn) of its rows; its end marker
-- (position _epoch/_lsn/end_seq) says how many rows it sent. Rows and marker travel in different
-- objects and load in any order: reconciliation (deleting what the snapshot no longer holds) runs
-- in whichever load completes the set, once; deleted_rows counts what it found then.
CREATE TABLE "snapshot_table" (
  "source_table" text NOT NULL,
  "snapshot_epoch" bigint NOT NULL,
  "snapshot_lsn" pg_lsn NOT NULL,
  "expected_rows" bigint,
  "end_seq" bigint,
  "marker_commit_ts" timestamptz,
  "reconciled_at" timestamptz,
  "deleted_rows" integer,
  CONSTRAINT "snapshot_table_pkey" PRIMARY KEY ("source_table", "snapshot_epoch", "snapshot_lsn")
);

-- The rows of each snapshot: which ordinals arrived (to count them exactly, whatever the
-- duplicates) and their keys (what the snapshot held). Kept after reconciliation: a row that loads
-- late, older than a completed snapshot that did not hold it, is deleted at that snapshot too.
CREATE TABLE "snapshot_row" (
  "source_table" text NOT NULL,
  "snapshot_epoch" bigint NOT NULL,
  "snapshot_lsn" pg_lsn NOT NULL,
  "seq" bigint NOT NULL,
  "key" integer NOT NULL,
  CONSTRAINT "snapshot_row_pkey" PRIMARY KEY ("source_table", "snapshot_epoch", "snapshot_lsn", "seq")
);
CREATE INDEX "snapshot_row_key_idx" ON "snapshot_row" ("source_table", "snapshot_epoch", "snapshot_lsn", "key");

-- What is true now: one row per source row that exists, its latest version, the fact's columns as
-- ../shared/reference/totesys.md §2 lists them.
CREATE VIEW "fact_sales_order_current" AS
SELECT "sales_record_id", "sales_order_id", "created_date", "created_time", "last_updated_date",
       "last_updated_time", "sales_staff_id", "counterparty_id", "units_sold", "unit_price",
       "currency_id", "design_id", "agreed_payment_date", "agreed_delivery_date",
       "agreed_delivery_location_id"
  FROM (SELECT DISTINCT ON ("sales_order_id") *
          FROM "fact_sales_order"
         ORDER BY "sales_order_id", "_epoch" DESC, "_lsn" DESC, "_seq" DESC) AS latest
 WHERE NOT latest."_deleted";

CREATE VIEW "fact_purchase_order_current" AS
SELECT "purchase_record_id", "purchase_order_id", "created_date", "created_time", "last_updated_date",
       "last_updated_time", "staff_id", "counterparty_id", "item_code", "item_quantity",
       "item_unit_price", "currency_id", "agreed_delivery_date", "agreed_payment_date",
       "agreed_delivery_location_id"
  FROM (SELECT DISTINCT ON ("purchase_order_id") *
          FROM "fact_purchase_order"
         ORDER BY "purchase_order_id", "_epoch" DESC, "_lsn" DESC, "_seq" DESC) AS latest
 WHERE NOT latest."_deleted";

CREATE VIEW "fact_payment_current" AS
SELECT "payment_record_id", "payment_id", "created_date", "created_time", "last_updated_date",
       "last_updated_time", "transaction_id", "counterparty_id", "payment_amount", "currency_id",
       "payment_type_id", "paid", "payment_date"
  FROM (SELECT DISTINCT ON ("payment_id") *
          FROM "fact_payment"
         ORDER BY "payment_id", "_epoch" DESC, "_lsn" DESC, "_seq" DESC) AS latest
 WHERE NOT latest."_deleted";
