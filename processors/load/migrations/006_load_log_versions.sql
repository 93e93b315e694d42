-- Load bookkeeping keyed by content (issue 13): `load_log` records every VERSION of a processed
-- object that loaded, as (object key, S3 ETag), no longer the key alone. A corrected object that
-- lands under the key of one already loaded (an operator's fix, a re-run of transform) has a new
-- ETag and loads; a redelivered event for the same bytes still finds its row and is skipped.
--
-- The ETag is S3's identity of an object's content as written by one PutObject: equal bytes give an
-- equal ETag, a new write of other bytes a new one (for multipart uploads it is not an MD5, but still
-- changes with the content). https://docs.aws.amazon.com/AmazonS3/latest/API/API_Object.html
--
-- Rows loaded before this migration did not record the version: their "etag" is '' (unknown). The
-- reconciler counts such a key as loaded whatever its version (it was loaded once, and re-driving
-- every old object after an upgrade would only repeat idempotent work); the load itself looks up
-- the exact version, so an old object redelivered is applied again, which changes nothing.

ALTER TABLE "load_log" ADD COLUMN "etag" text NOT NULL DEFAULT '';
ALTER TABLE "load_log" DROP CONSTRAINT "load_log_pkey";
ALTER TABLE "load_log" ADD CONSTRAINT "load_log_pkey" PRIMARY KEY ("object_key", "etag");
