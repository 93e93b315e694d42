-- The Totes warehouse: three overlapping star schemas (../shared/reference/totesys.md §2), the staging
-- tables the joined dimensions are computed from, and the load's bookkeeping. Column names and types
-- follow core/warehouse-model.ts exactly; processors/load/migrate.pg.test.ts checks them against it.
--
-- Bookkeeping columns (every table but dim_date):
--   _lsn, _seq      source position (commit LSN, ordinal in the transaction) of the values the row
--                   holds. Dimensions keep the values of the highest position; 0/0 = a placeholder.
--   _commit_ts      source commit time of that change (freshness); NULL for placeholders.
--   _loaded_at      when the load last wrote the row.
-- Dimensions and staging tables also:
--   _deleted        true when the newest change of the source row is a delete (rows are never erased).
--   _deleted_lsn/_deleted_seq  position of the newest delete seen. Kept apart from _lsn/_seq so that
--                   a delete arriving before the upserts it follows still wins, and those upserts
--                   still fill in the values: the result does not depend on arrival order.
--   _inferred       the values are placeholders: a fact referenced the key before its row arrived,
--                   or only a delete of it has arrived. Text columns then read '(unknown)'.
--   _toast_pending  columns whose value is not known yet because the change that created the row
--                   carried an unchanged TOASTed value ('(unknown)' / NULL until an older change
--                   fills it in).
-- Facts also:
--   _unchanged      columns this version inherits from the source row's previous version (unchanged
--                   TOAST values); the load resolves them from the nearest earlier version loaded.
--
-- Never edit this file once released: migrate.ts refuses a changed checksum. Add 002_… instead.

-- dim_date: generated from the dates themselves, never sourced.
CREATE TABLE "dim_date" (
  "date_id" date NOT NULL,
  "year" integer NOT NULL,
  "month" integer NOT NULL,
  "day" integer NOT NULL,
  "day_of_week" integer NOT NULL, -- ISO: 1 = Monday … 7 = Sunday
  "day_name" varchar NOT NULL,
  "month_name" varchar NOT NULL,
  "quarter" integer NOT NULL,
  CONSTRAINT "dim_date_pkey" PRIMARY KEY ("date_id")
);

CREATE TABLE "dim_location" (
  "location_id" integer NOT NULL,
  "address_line_1" text NOT NULL,
  "address_line_2" text,
  "district" text,
  "city" text NOT NULL,
  "postal_code" text NOT NULL,
  "country" text NOT NULL,
  "phone" text NOT NULL,
  "_lsn" pg_lsn NOT NULL,
  "_seq" bigint NOT NULL,
  "_commit_ts" timestamptz,
  "_loaded_at" timestamptz NOT NULL DEFAULT now(),
  "_deleted" boolean NOT NULL DEFAULT false,
  "_deleted_lsn" pg_lsn,
  "_deleted_seq" bigint,
  "_inferred" boolean NOT NULL DEFAULT false,
  "_toast_pending" text[] NOT NULL DEFAULT '{}',
  CONSTRAINT "dim_location_pkey" PRIMARY KEY ("location_id")
);

CREATE TABLE "dim_currency" (
  "currency_id" integer NOT NULL,
  "currency_code" varchar NOT NULL,
  "currency_name" varchar NOT NULL,
  "_lsn" pg_lsn NOT NULL,
  "_seq" bigint NOT NULL,
  "_commit_ts" timestamptz,
  "_loaded_at" timestamptz NOT NULL DEFAULT now(),
  "_deleted" boolean NOT NULL DEFAULT false,
  "_deleted_lsn" pg_lsn,
  "_deleted_seq" bigint,
  "_inferred" boolean NOT NULL DEFAULT false,
  "_toast_pending" text[] NOT NULL DEFAULT '{}',
  CONSTRAINT "dim_currency_pkey" PRIMARY KEY ("currency_id")
);

CREATE TABLE "dim_design" (
  "design_id" integer NOT NULL,
  "design_name" text NOT NULL,
  "file_location" text NOT NULL,
  "file_name" text NOT NULL,
  "_lsn" pg_lsn NOT NULL,
  "_seq" bigint NOT NULL,
  "_commit_ts" timestamptz,
  "_loaded_at" timestamptz NOT NULL DEFAULT now(),
  "_deleted" boolean NOT NULL DEFAULT false,
  "_deleted_lsn" pg_lsn,
  "_deleted_seq" bigint,
  "_inferred" boolean NOT NULL DEFAULT false,
  "_toast_pending" text[] NOT NULL DEFAULT '{}',
  CONSTRAINT "dim_design_pkey" PRIMARY KEY ("design_id")
);

CREATE TABLE "dim_payment_type" (
  "payment_type_id" integer NOT NULL,
  "payment_type_name" varchar NOT NULL,
  "_lsn" pg_lsn NOT NULL,
  "_seq" bigint NOT NULL,
  "_commit_ts" timestamptz,
  "_loaded_at" timestamptz NOT NULL DEFAULT now(),
  "_deleted" boolean NOT NULL DEFAULT false,
  "_deleted_lsn" pg_lsn,
  "_deleted_seq" bigint,
  "_inferred" boolean NOT NULL DEFAULT false,
  "_toast_pending" text[] NOT NULL DEFAULT '{}',
  CONSTRAINT "dim_payment_type_pkey" PRIMARY KEY ("payment_type_id")
);

CREATE TABLE "dim_transaction" (
  "transaction_id" integer NOT NULL,
  "transaction_type" varchar NOT NULL,
  "sales_order_id" integer,
  "purchase_order_id" integer,
  "_lsn" pg_lsn NOT NULL,
  "_seq" bigint NOT NULL,
  "_commit_ts" timestamptz,
  "_loaded_at" timestamptz NOT NULL DEFAULT now(),
  "_deleted" boolean NOT NULL DEFAULT false,
  "_deleted_lsn" pg_lsn,
  "_deleted_seq" bigint,
  "_inferred" boolean NOT NULL DEFAULT false,
  "_toast_pending" text[] NOT NULL DEFAULT '{}',
  CONSTRAINT "dim_transaction_pkey" PRIMARY KEY ("transaction_id")
);

-- dim_staff = stg_staff ⋈ stg_department, recomputed by the load (never loaded from objects).
-- Its position is the higher of its two parts'.
CREATE TABLE "dim_staff" (
  "staff_id" integer NOT NULL,
  "first_name" text NOT NULL,
  "last_name" text NOT NULL,
  "department_name" text NOT NULL,
  "location" text,
  "email_address" text NOT NULL,
  "_lsn" pg_lsn NOT NULL,
  "_seq" bigint NOT NULL,
  "_commit_ts" timestamptz,
  "_loaded_at" timestamptz NOT NULL DEFAULT now(),
  "_deleted" boolean NOT NULL DEFAULT false,
  "_deleted_lsn" pg_lsn,
  "_deleted_seq" bigint,
  "_inferred" boolean NOT NULL DEFAULT false,
  "_toast_pending" text[] NOT NULL DEFAULT '{}',
  CONSTRAINT "dim_staff_pkey" PRIMARY KEY ("staff_id")
);

-- dim_counterparty = stg_counterparty ⋈ dim_location (the legal address), recomputed by the load.
CREATE TABLE "dim_counterparty" (
  "counterparty_id" integer NOT NULL,
  "counterparty_legal_name" text NOT NULL,
  "counterparty_legal_address_line_1" text NOT NULL,
  "counterparty_legal_address_line_2" text,
  "counterparty_legal_district" text,
  "counterparty_legal_city" text NOT NULL,
  "counterparty_legal_postal_code" text NOT NULL,
  "counterparty_legal_country" text NOT NULL,
  "counterparty_legal_phone_number" text NOT NULL,
  "_lsn" pg_lsn NOT NULL,
  "_seq" bigint NOT NULL,
  "_commit_ts" timestamptz,
  "_loaded_at" timestamptz NOT NULL DEFAULT now(),
  "_deleted" boolean NOT NULL DEFAULT false,
  "_deleted_lsn" pg_lsn,
  "_deleted_seq" bigint,
  "_inferred" boolean NOT NULL DEFAULT false,
  "_toast_pending" text[] NOT NULL DEFAULT '{}',
  CONSTRAINT "dim_counterparty_pkey" PRIMARY KEY ("counterparty_id")
);

-- Staging: the current state of the source tables the joined dimensions need. Their integer
-- references may be NULL only in a row whose values are not known yet (_inferred: only a delete of
-- it has arrived), as a placeholder integer would be a wrong join key.
CREATE TABLE "stg_department" (
  "department_id" integer NOT NULL,
  "department_name" text NOT NULL,
  "location" text,
  "manager" text,
  "_lsn" pg_lsn NOT NULL,
  "_seq" bigint NOT NULL,
  "_commit_ts" timestamptz,
  "_loaded_at" timestamptz NOT NULL DEFAULT now(),
  "_deleted" boolean NOT NULL DEFAULT false,
  "_deleted_lsn" pg_lsn,
  "_deleted_seq" bigint,
  "_inferred" boolean NOT NULL DEFAULT false,
  "_toast_pending" text[] NOT NULL DEFAULT '{}',
  CONSTRAINT "stg_department_pkey" PRIMARY KEY ("department_id")
);

CREATE TABLE "stg_staff" (
  "staff_id" integer NOT NULL,
  "first_name" text NOT NULL,
  "last_name" text NOT NULL,
  "department_id" integer,
  "email_address" text NOT NULL,
  "_lsn" pg_lsn NOT NULL,
  "_seq" bigint NOT NULL,
  "_commit_ts" timestamptz,
  "_loaded_at" timestamptz NOT NULL DEFAULT now(),
  "_deleted" boolean NOT NULL DEFAULT false,
  "_deleted_lsn" pg_lsn,
  "_deleted_seq" bigint,
  "_inferred" boolean NOT NULL DEFAULT false,
  "_toast_pending" text[] NOT NULL DEFAULT '{}',
  CONSTRAINT "stg_staff_pkey" PRIMARY KEY ("staff_id"),
  CONSTRAINT "stg_staff_department_id_check" CHECK ("_inferred" OR "department_id" IS NOT NULL)
);
-- A department change recomputes the dim_staff rows of its members.
CREATE INDEX "stg_staff_department_id_idx" ON "stg_staff" ("department_id");

CREATE TABLE "stg_counterparty" (
  "counterparty_id" integer NOT NULL,
  "counterparty_legal_name" text NOT NULL,
  "legal_address_id" integer,
  "_lsn" pg_lsn NOT NULL,
  "_seq" bigint NOT NULL,
  "_commit_ts" timestamptz,
  "_loaded_at" timestamptz NOT NULL DEFAULT now(),
  "_deleted" boolean NOT NULL DEFAULT false,
  "_deleted_lsn" pg_lsn,
  "_deleted_seq" bigint,
  "_inferred" boolean NOT NULL DEFAULT false,
  "_toast_pending" text[] NOT NULL DEFAULT '{}',
  CONSTRAINT "stg_counterparty_pkey" PRIMARY KEY ("counterparty_id"),
  CONSTRAINT "stg_counterparty_legal_address_id_check" CHECK ("_inferred" OR "legal_address_id" IS NOT NULL)
);
-- An address change recomputes the dim_counterparty rows whose legal address it is.
CREATE INDEX "stg_counterparty_legal_address_id_idx" ON "stg_counterparty" ("legal_address_id");

-- Facts: every version of a source row, once. (natural key, _lsn, _seq) is a version's identity;
-- the serial surrogate key numbers versions in load order.
CREATE TABLE "fact_sales_order" (
  "sales_record_id" serial NOT NULL,
  "sales_order_id" integer NOT NULL,
  "created_date" date NOT NULL,
  "created_time" time(3) NOT NULL,
  "last_updated_date" date NOT NULL,
  "last_updated_time" time(3) NOT NULL,
  "sales_staff_id" integer NOT NULL,
  "counterparty_id" integer NOT NULL,
  "units_sold" integer NOT NULL,
  "unit_price" numeric(10,2) NOT NULL,
  "currency_id" integer NOT NULL,
  "design_id" integer NOT NULL,
  "agreed_payment_date" date NOT NULL,
  "agreed_delivery_date" date NOT NULL,
  "agreed_delivery_location_id" integer NOT NULL,
  "_lsn" pg_lsn NOT NULL,
  "_seq" bigint NOT NULL,
  "_commit_ts" timestamptz NOT NULL,
  "_loaded_at" timestamptz NOT NULL DEFAULT now(),
  "_unchanged" text[] NOT NULL DEFAULT '{}',
  CONSTRAINT "fact_sales_order_pkey" PRIMARY KEY ("sales_record_id"),
  CONSTRAINT "fact_sales_order_version_key" UNIQUE ("sales_order_id", "_lsn", "_seq"),
  CONSTRAINT "fact_sales_order_created_date_fkey" FOREIGN KEY ("created_date") REFERENCES "dim_date" ("date_id"),
  CONSTRAINT "fact_sales_order_last_updated_date_fkey" FOREIGN KEY ("last_updated_date") REFERENCES "dim_date" ("date_id"),
  CONSTRAINT "fact_sales_order_sales_staff_id_fkey" FOREIGN KEY ("sales_staff_id") REFERENCES "dim_staff" ("staff_id"),
  CONSTRAINT "fact_sales_order_counterparty_id_fkey" FOREIGN KEY ("counterparty_id") REFERENCES "dim_counterparty" ("counterparty_id"),
  CONSTRAINT "fact_sales_order_currency_id_fkey" FOREIGN KEY ("currency_id") REFERENCES "dim_currency" ("currency_id"),
  CONSTRAINT "fact_sales_order_design_id_fkey" FOREIGN KEY ("design_id") REFERENCES "dim_design" ("design_id"),
  CONSTRAINT "fact_sales_order_agreed_payment_date_fkey" FOREIGN KEY ("agreed_payment_date") REFERENCES "dim_date" ("date_id"),
  CONSTRAINT "fact_sales_order_agreed_delivery_date_fkey" FOREIGN KEY ("agreed_delivery_date") REFERENCES "dim_date" ("date_id"),
  CONSTRAINT "fact_sales_order_agreed_delivery_location_id_fkey" FOREIGN KEY ("agreed_delivery_location_id") REFERENCES "dim_location" ("location_id")
);

CREATE TABLE "fact_purchase_order" (
  "purchase_record_id" serial NOT NULL,
  "purchase_order_id" integer NOT NULL,
  "created_date" date NOT NULL,
  "created_time" time(3) NOT NULL,
  "last_updated_date" date NOT NULL,
  "last_updated_time" time(3) NOT NULL,
  "staff_id" integer NOT NULL,
  "counterparty_id" integer NOT NULL,
  "item_code" text NOT NULL,
  "item_quantity" integer NOT NULL,
  "item_unit_price" numeric(10,2) NOT NULL,
  "currency_id" integer NOT NULL,
  "agreed_delivery_date" date NOT NULL,
  "agreed_payment_date" date NOT NULL,
  "agreed_delivery_location_id" integer NOT NULL,
  "_lsn" pg_lsn NOT NULL,
  "_seq" bigint NOT NULL,
  "_commit_ts" timestamptz NOT NULL,
  "_loaded_at" timestamptz NOT NULL DEFAULT now(),
  "_unchanged" text[] NOT NULL DEFAULT '{}',
  CONSTRAINT "fact_purchase_order_pkey" PRIMARY KEY ("purchase_record_id"),
  CONSTRAINT "fact_purchase_order_version_key" UNIQUE ("purchase_order_id", "_lsn", "_seq"),
  CONSTRAINT "fact_purchase_order_created_date_fkey" FOREIGN KEY ("created_date") REFERENCES "dim_date" ("date_id"),
  CONSTRAINT "fact_purchase_order_last_updated_date_fkey" FOREIGN KEY ("last_updated_date") REFERENCES "dim_date" ("date_id"),
  CONSTRAINT "fact_purchase_order_staff_id_fkey" FOREIGN KEY ("staff_id") REFERENCES "dim_staff" ("staff_id"),
  CONSTRAINT "fact_purchase_order_counterparty_id_fkey" FOREIGN KEY ("counterparty_id") REFERENCES "dim_counterparty" ("counterparty_id"),
  CONSTRAINT "fact_purchase_order_currency_id_fkey" FOREIGN KEY ("currency_id") REFERENCES "dim_currency" ("currency_id"),
  CONSTRAINT "fact_purchase_order_agreed_delivery_date_fkey" FOREIGN KEY ("agreed_delivery_date") REFERENCES "dim_date" ("date_id"),
  CONSTRAINT "fact_purchase_order_agreed_payment_date_fkey" FOREIGN KEY ("agreed_payment_date") REFERENCES "dim_date" ("date_id"),
  CONSTRAINT "fact_purchase_order_agreed_delivery_location_id_fkey" FOREIGN KEY ("agreed_delivery_location_id") REFERENCES "dim_location" ("location_id")
);

CREATE TABLE "fact_payment" (
  "payment_record_id" serial NOT NULL,
  "payment_id" integer NOT NULL,
  "created_date" date NOT NULL,
  "created_time" time(3) NOT NULL,
  "last_updated_date" date NOT NULL,
  "last_updated_time" time(3) NOT NULL,
  "transaction_id" integer NOT NULL,
  "counterparty_id" integer NOT NULL,
  "payment_amount" numeric(10,2) NOT NULL,
  "currency_id" integer NOT NULL,
  "payment_type_id" integer NOT NULL,
  "paid" boolean NOT NULL,
  "payment_date" date NOT NULL,
  "_lsn" pg_lsn NOT NULL,
  "_seq" bigint NOT NULL,
  "_commit_ts" timestamptz NOT NULL,
  "_loaded_at" timestamptz NOT NULL DEFAULT now(),
  "_unchanged" text[] NOT NULL DEFAULT '{}',
  CONSTRAINT "fact_payment_pkey" PRIMARY KEY ("payment_record_id"),
  CONSTRAINT "fact_payment_version_key" UNIQUE ("payment_id", "_lsn", "_seq"),
  CONSTRAINT "fact_payment_created_date_fkey" FOREIGN KEY ("created_date") REFERENCES "dim_date" ("date_id"),
  CONSTRAINT "fact_payment_last_updated_date_fkey" FOREIGN KEY ("last_updated_date") REFERENCES "dim_date" ("date_id"),
  CONSTRAINT "fact_payment_transaction_id_fkey" FOREIGN KEY ("transaction_id") REFERENCES "dim_transaction" ("transaction_id"),
  CONSTRAINT "fact_payment_counterparty_id_fkey" FOREIGN KEY ("counterparty_id") REFERENCES "dim_counterparty" ("counterparty_id"),
  CONSTRAINT "fact_payment_currency_id_fkey" FOREIGN KEY ("currency_id") REFERENCES "dim_currency" ("currency_id"),
  CONSTRAINT "fact_payment_payment_type_id_fkey" FOREIGN KEY ("payment_type_id") REFERENCES "dim_payment_type" ("payment_type_id"),
  CONSTRAINT "fact_payment_payment_date_fkey" FOREIGN KEY ("payment_date") REFERENCES "dim_date" ("date_id")
);

-- Versions that still inherit a value are found by key when any version of that key is loaded.
CREATE INDEX "fact_sales_order_unchanged_idx" ON "fact_sales_order" ("sales_order_id") WHERE "_unchanged" <> '{}';
CREATE INDEX "fact_purchase_order_unchanged_idx" ON "fact_purchase_order" ("purchase_order_id") WHERE "_unchanged" <> '{}';
CREATE INDEX "fact_payment_unchanged_idx" ON "fact_payment" ("payment_id") WHERE "_unchanged" <> '{}';

-- Per source table: the highest position loaded and the commit time of the newest change, the
-- basis of freshness (commit → warehouse) and of "is the warehouse caught up?".
CREATE TABLE "pipeline_progress" (
  "source_table" text NOT NULL,
  "warehouse_table" text NOT NULL,
  "_lsn" pg_lsn NOT NULL,
  "_seq" bigint NOT NULL,
  "newest_commit_ts" timestamptz,
  "last_loaded_at" timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT "pipeline_progress_pkey" PRIMARY KEY ("source_table")
);

-- Every processed-bucket object loaded, once: a redelivered S3 event finds its key here.
CREATE TABLE "load_log" (
  "object_key" text NOT NULL,
  "table" text NOT NULL,
  "rows" integer NOT NULL,
  "loaded_at" timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT "load_log_pkey" PRIMARY KEY ("object_key")
);
