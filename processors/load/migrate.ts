/* eslint-disable security/detect-non-literal-fs-filename -- the migrations directory shipped beside this module (or TOTES_MIGRATIONS_DIR, set by tests) */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { ClientBase } from 'pg';
import { silentLogger, type Logger } from '../../core/logger';
import { WAREHOUSE_LOCK_IDS, WAREHOUSE_LOCK_NAMESPACE } from '../../core/warehouse-sql';

/**
 * Warehouse schema migrations: `migrations/NNN_name.sql`, applied in order, each in its own
 * transaction, each recorded in `totes_migrations` with the SHA-256 of its text.
 *
 * Several load functions start cold at once, and `totes up` migrates too, so runners serialise on a
 * session-level advisory lock (https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS):
 * the second waits, then finds everything applied. A session lock (not a transaction one) because
 * the runner spans several transactions; it is released in `finally`, and by Postgres if the
 * connection dies.
 *
 * The Lambda bundle must ship the `migrations/` directory beside the handler (or set
 * TOTES_MIGRATIONS_DIR): the SQL files are the single source of the DDL.
 */

/** Base class of every error this module throws. */
export class MigrationError extends Error {
  override name = 'MigrationError';
}

/** An applied migration's file changed since: refuse, as the database no longer matches the code. */
export class MigrationChecksumMismatchError extends MigrationError {
  override name = 'MigrationChecksumMismatchError';
  constructor(
    readonly id: number,
    readonly migrationName: string,
    readonly appliedChecksum: string,
    readonly fileChecksum: string,
  ) {
    super(
      `migration ${migrationName} was applied with checksum ${appliedChecksum.slice(0, 12)}… but the file ` +
        `now has ${fileChecksum.slice(0, 12)}…: never edit an applied migration, add a new one`,
    );
  }
}

/** A file in the migrations directory is not named NNN_name.sql, or two share a number. */
export class InvalidMigrationFileError extends MigrationError {
  override name = 'InvalidMigrationFileError';
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`migration file ${file}: ${reason}`);
  }
}

/** A migration's SQL failed; nothing of it was applied (it ran in a transaction). */
export class MigrationFailedError extends MigrationError {
  override name = 'MigrationFailedError';
  constructor(
    readonly migrationName: string,
    options: { cause: unknown },
  ) {
    super(
      `migration ${migrationName} failed: ${(options.cause as Error)?.message ?? options.cause}`,
      options,
    );
  }
}

export interface Migration {
  id: number;
  /** File name without `.sql`, e.g. `001_warehouse`. */
  name: string;
  sql: string;
  /** Hex SHA-256 of `sql`. */
  checksum: string;
}

export interface MigrationResult {
  applied: string[];
  alreadyApplied: string[];
}

/**
 * Beside this module (the sources, and the Lambda bundle that ships the directory), or, from a
 * `npm run build` tree (dist/processors/load/, where tsc copies no SQL), the sources' own.
 */
export const DEFAULT_MIGRATIONS_DIR =
  [
    path.join(__dirname, 'migrations'),
    path.resolve(__dirname, '..', '..', '..', 'processors', 'load', 'migrations'),
  ].find((dir) => fs.existsSync(dir)) ?? path.join(__dirname, 'migrations');

const MIGRATION_LOCK_ID = WAREHOUSE_LOCK_IDS.migrations;

const FILE_PATTERN = /^(\d{3})_[a-z0-9_]+\.sql$/;

export function checksumOf(sql: string): string {
  return createHash('sha256').update(sql, 'utf8').digest('hex');
}

/** Reads `NNN_name.sql` files, ordered by number. */
export function readMigrations(
  dir = process.env.TOTES_MIGRATIONS_DIR || DEFAULT_MIGRATIONS_DIR,
): Migration[] {
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.sql'));
  const byId = new Map<number, Migration>();
  for (const file of files) {
    const m = FILE_PATTERN.exec(file);
    if (!m) throw new InvalidMigrationFileError(file, 'expected NNN_lower_snake_name.sql');
    const id = Number(m[1]);
    if (byId.has(id)) throw new InvalidMigrationFileError(file, `number ${m[1]} is used twice`);
    const sql = fs.readFileSync(path.join(dir, file), 'utf8');
    byId.set(id, { id, name: file.slice(0, -4), sql, checksum: checksumOf(sql) });
  }
  return [...byId.values()].sort((a, b) => a.id - b.id);
}

/**
 * Applies every pending migration, in order. Throws MigrationChecksumMismatchError before applying
 * anything if an applied migration's file changed. Applied migrations the code does not know (a
 * newer deployment ran first) are logged and left alone: migrations are additive, so older code
 * keeps working on a newer schema during a rollout.
 */
export async function migrateWarehouse(
  client: ClientBase,
  options: { migrations?: readonly Migration[]; logger?: Logger } = {},
): Promise<MigrationResult> {
  const migrations = options.migrations ?? readMigrations();
  const logger = options.logger ?? silentLogger;
  await client.query('SELECT pg_advisory_lock($1, $2)', [WAREHOUSE_LOCK_NAMESPACE, MIGRATION_LOCK_ID]);
  try {
    await client.query(
      `CREATE TABLE IF NOT EXISTS "totes_migrations" (
         "id" integer NOT NULL,
         "name" text NOT NULL,
         "checksum" text NOT NULL,
         "applied_at" timestamptz NOT NULL DEFAULT now(),
         CONSTRAINT "totes_migrations_pkey" PRIMARY KEY ("id")
       )`,
    );
    const { rows } = await client.query<{ id: number; name: string; checksum: string }>(
      'SELECT "id", "name", "checksum" FROM "totes_migrations" ORDER BY "id"',
    );
    const applied = new Map(rows.map((r) => [r.id, r]));
    for (const m of migrations) {
      const done = applied.get(m.id);
      if (done && done.checksum !== m.checksum)
        throw new MigrationChecksumMismatchError(m.id, m.name, done.checksum, m.checksum);
    }
    const known = new Set(migrations.map((m) => m.id));
    const unknown = rows.filter((r) => !known.has(r.id)).map((r) => r.name);
    if (unknown.length) logger.warn('warehouse has migrations this code does not know', { unknown });

    const result: MigrationResult = { applied: [], alreadyApplied: [] };
    for (const m of migrations) {
      if (applied.has(m.id)) {
        result.alreadyApplied.push(m.name);
        continue;
      }
      const started = Date.now();
      try {
        await client.query('BEGIN');
        // A migration may legitimately run long (an index on a big fact table); the load's own
        // statement timeout is for loads. https://www.postgresql.org/docs/current/sql-set.html
        await client.query('SET LOCAL statement_timeout = 0');
        await client.query(m.sql);
        await client.query('INSERT INTO "totes_migrations" ("id", "name", "checksum") VALUES ($1, $2, $3)', [
          m.id,
          m.name,
          m.checksum,
        ]);
        await client.query('COMMIT');
      } catch (e) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw new MigrationFailedError(m.name, { cause: e });
      }
      result.applied.push(m.name);
      logger.info('warehouse migration applied', { migration: m.name, durationMs: Date.now() - started });
    }
    return result;
  } finally {
    await client
      .query('SELECT pg_advisory_unlock($1, $2)', [WAREHOUSE_LOCK_NAMESPACE, MIGRATION_LOCK_ID])
      .catch(() => undefined);
  }
}
