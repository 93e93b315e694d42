-- Warehouse roles: who may do what, whoever runs the migrations (the owner of the schema's objects).
--
--   totes_owner      owns the tables; migrations run as it (in AWS, a deploy step of their own:
--                    processors/migrate). Created by that step, with its password; not here.
--   totes_load       the load function: reads and writes rows (DML) in this schema, nothing else:
--                    no DDL, no TRUNCATE, no ownership.
--   totes_reporting  analysts, the dashboard, QuickSight and the reconciler: read only.
--
-- No password is ever written here: in AWS the migration step creates the login roles from their
-- own secrets before this runs (so the roles exist and nothing below needs CREATEROLE); locally
-- `totes up` runs this as the superuser, and the roles are created without a login.

DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'totes_load') THEN
    CREATE ROLE totes_load NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'totes_reporting') THEN
    CREATE ROLE totes_reporting NOLOGIN;
  END IF;
EXCEPTION
  -- Roles are cluster-wide: a migration of another database on the same cluster may create them
  -- at the same moment.
  WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

-- The schema the migrations run in (public, unless a search_path says otherwise).
DO $$
DECLARE
  schema_name text := current_schema();
BEGIN
  EXECUTE format('GRANT USAGE ON SCHEMA %I TO totes_load, totes_reporting', schema_name);
  EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO totes_load', schema_name);
  EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO totes_load', schema_name);
  EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO totes_reporting', schema_name);
  -- Tables later migrations create (as the same role) get the same grants.
  EXECUTE format(
    'ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO totes_load',
    schema_name
  );
  EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO totes_load', schema_name);
  EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO totes_reporting', schema_name);
END
$$;

-- The migration bookkeeping is the owner's business only.
REVOKE INSERT, UPDATE, DELETE ON "totes_migrations" FROM totes_load;
