-- Capture's heartbeat in the warehouse (core/pipeline-heartbeat.ts): capture commits a
-- transactional logical message on the source every interval, which travels the whole pipeline as a
-- change of the pseudo table `_totes_heartbeat` and lands here, one row per capture slot (keyed by its name's hash), holding
-- the newest heartbeat loaded (a dimension: the highest source position wins, whatever the order
-- or repeats of delivery). Freshness = now() − "_commit_ts": it keeps growing when any stage stops,
-- which the per-table freshness cannot tell apart from an idle source.
--
-- Never edit this file once released (migrate.ts refuses a changed checksum).

CREATE TABLE "pipeline_heartbeat" (
  "slot_id" integer NOT NULL, -- the slot name's hash (core/pipeline-heartbeat.ts: heartbeatSlotId)
  "slot_name" text NOT NULL,
  "emitted_at" text, -- capture's own clock when it emitted the message (ISO 8601)
  "_lsn" pg_lsn NOT NULL,
  "_seq" bigint NOT NULL,
  "_commit_ts" timestamptz, -- the heartbeat's commit time on the source
  "_loaded_at" timestamptz NOT NULL DEFAULT now(),
  "_deleted" boolean NOT NULL DEFAULT false,
  "_deleted_lsn" pg_lsn,
  "_deleted_seq" bigint,
  "_inferred" boolean NOT NULL DEFAULT false,
  "_toast_pending" text[] NOT NULL DEFAULT '{}',
  "_epoch" bigint NOT NULL DEFAULT 0,
  "_deleted_epoch" bigint,
  CONSTRAINT "pipeline_heartbeat_pkey" PRIMARY KEY ("slot_id")
);

-- For the reporting role (the dashboard, `totes status --warehouse-url`, the scheduled freshness
-- metric): the newest heartbeat of each slot and when it was loaded.
CREATE VIEW "rpt_pipeline_heartbeat" AS
SELECT h."slot_name",
       h."_commit_ts" AS "newest_commit_ts",
       h."emitted_at",
       h."_loaded_at" AS "last_loaded_at",
       now() AS "observed_at"
  FROM "pipeline_heartbeat" AS h
 WHERE NOT h."_inferred";

-- The heartbeat is not a table of the business: keep it out of the per-table freshness.
CREATE OR REPLACE VIEW "rpt_pipeline_tables" AS
SELECT p."source_table",
       p."warehouse_table",
       p."newest_commit_ts",
       p."last_loaded_at",
       now() AS "observed_at"
  FROM "pipeline_progress" AS p
 WHERE p."source_table" <> '_totes_heartbeat';
