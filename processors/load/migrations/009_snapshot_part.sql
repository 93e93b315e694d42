-- Snapshot rows are recorded one row per part, not one per row (issue 12): `snapshot_part`
-- replaces `snapshot_row`.
--
-- Why. Every snapshot row the load writes was written twice: its warehouse row, and its (ordinal,
-- key) in snapshot_row, an index entry included. A part (up to 10,000 rows) now writes one row
-- holding its ordinals and keys as arrays. bench:snapshot-rows measures both on the same server
-- (bench/README.md). Reconciliation and the late-row checks unnest a snapshot's keys once into a
-- hashed anti-join (core/warehouse-sql.ts `snapshotsLacking`) instead of probing a key index per row.
--
-- The arrays are stored EXTERNAL: out of line, uncompressed. Ordinals and keys are dense integers
-- that pglz barely shrinks, and compressing them cost backend CPU on every part (bench:snapshot-rows
-- compares the two).
--
-- `row_count` is the arrays' length: progress sums it, and counts distinct ordinals only once the
-- sum reaches the rows the marker announced (a row delivered twice is stored twice, counted once).
--
-- Rolling deploy: a load still running the code before this migration fails on snapshot_row with
-- 42P01 (undefined_table), a SQLSTATE outside classes 22/23, so its object is rolled back whole and
-- retried later (WarehouseUnavailableError), by which time a newer load handles it. The rows are
-- copied under an exclusive lock, so an older load's uncommitted rows either commit before the
-- copy or fail after the drop: none is lost.
CREATE TABLE "snapshot_part" (
  "source_table" text NOT NULL,
  "snapshot_epoch" bigint NOT NULL,
  "snapshot_lsn" pg_lsn NOT NULL,
  "row_count" integer NOT NULL,
  "ordinals" bigint[] NOT NULL,
  "keys" integer[] NOT NULL
);
ALTER TABLE "snapshot_part" ALTER COLUMN "ordinals" SET STORAGE EXTERNAL, ALTER COLUMN "keys" SET STORAGE EXTERNAL;
CREATE INDEX "snapshot_part_snapshot_idx" ON "snapshot_part" ("source_table", "snapshot_epoch", "snapshot_lsn");

LOCK TABLE "snapshot_row" IN ACCESS EXCLUSIVE MODE;
-- Grouped as the load's parts would be (10,000 ordinals each): no one array of a whole snapshot.
INSERT INTO "snapshot_part" ("source_table", "snapshot_epoch", "snapshot_lsn", "row_count", "ordinals", "keys")
SELECT "source_table", "snapshot_epoch", "snapshot_lsn", count(*), array_agg("seq" ORDER BY "seq"),
       array_agg("key" ORDER BY "seq")
  FROM "snapshot_row"
 GROUP BY "source_table", "snapshot_epoch", "snapshot_lsn", "seq" / 10000;
DROP TABLE "snapshot_row";
