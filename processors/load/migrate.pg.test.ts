import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { createLogger } from '../../core/logger';
import { WAREHOUSE_TABLES, WAREHOUSE_TABLE_NAMES, type WarehouseType } from '../../core/warehouse-model';
import { snapshotProgress } from '../../core/warehouse-sql';
import { createTestDatabase } from '../../test/support/pg';
import {
  checksumOf,
  InvalidMigrationFileError,
  migrateWarehouse,
  MigrationChecksumMismatchError,
  MigrationFailedError,
  readMigrations,
  type Migration,
} from './migrate';

let url: string;
let client: Client;

async function connect(schema?: string): Promise<Client> {
  const c = new Client({ connectionString: url, options: schema ? `-c search_path=${schema}` : undefined });
  await c.connect();
  return c;
}

beforeAll(async () => {
  url = await createTestDatabase('migrate');
  client = await connect();
});

afterAll(() => client.end());

/** information_schema's name for each model type (with its modifiers). */
const INFORMATION_SCHEMA_TYPE: Record<WarehouseType, string> = {
  int: 'integer',
  text: 'text',
  varchar: 'character varying',
  'numeric(10,2)': 'numeric(10,2)',
  date: 'date',
  time: 'time without time zone(3)',
  boolean: 'boolean',
};

/** The migrations up to number `id`. */
const upTo = (id: number) => readMigrations().filter((m) => m.id <= id);

/** Runs `test` on a connection whose tables go to a schema of their own, dropped after. */
async function inSchema(schema: string, test: (scoped: Client) => Promise<void>): Promise<void> {
  await client.query(`CREATE SCHEMA ${schema}`);
  const scoped = await connect(schema);
  try {
    await test(scoped);
  } finally {
    await scoped.end();
    await client.query(`DROP SCHEMA ${schema} CASCADE`);
  }
}

describe('migrateWarehouse (real Postgres)', () => {
  it('applies the migrations once, recording their checksums', async () => {
    const names = readMigrations().map((m) => m.name);
    expect(names.slice(0, 2)).toEqual(['001_warehouse', '002_current_and_deletes']);
    const first = await migrateWarehouse(client);
    expect(first).toEqual({ applied: names, alreadyApplied: [] });
    expect(await migrateWarehouse(client)).toEqual({ applied: [], alreadyApplied: names });
    const { rows } = await client.query(
      'SELECT "id", "name", "checksum" FROM "totes_migrations" ORDER BY "id"',
    );
    expect(rows).toEqual(readMigrations().map((m) => ({ id: m.id, name: m.name, checksum: m.checksum })));
  });

  it('creates every model table with exactly the model columns, types and nullability', async () => {
    const { rows } = await client.query<{
      table_name: string;
      column_name: string;
      type: string;
      is_nullable: 'YES' | 'NO';
      column_default: string | null;
    }>(
      `SELECT table_name, column_name, is_nullable, column_default,
              data_type || CASE
                WHEN data_type = 'numeric' THEN '(' || numeric_precision || ',' || numeric_scale || ')'
                WHEN data_type LIKE 'time%' THEN '(' || datetime_precision || ')'
                ELSE '' END AS type
         FROM information_schema.columns WHERE table_schema = 'public'`,
    );
    for (const name of WAREHOUSE_TABLE_NAMES) {
      const table = WAREHOUSE_TABLES[name];
      const actual = rows.filter((r) => r.table_name === name);
      const business = actual.filter(
        (r) => !r.column_name.startsWith('_') && r.column_name !== table.surrogateKey,
      );
      expect(business.map((r) => r.column_name).sort()).toEqual(table.columns.map((c) => c.name).sort());
      for (const c of table.columns) {
        const column = actual.find((r) => r.column_name === c.name)!;
        expect(`${name}.${c.name} ${column.type}`).toBe(
          `${name}.${c.name} ${INFORMATION_SCHEMA_TYPE[c.type]}`,
        );
        // Staging integer references are nullable only for _inferred rows, by a CHECK constraint.
        const relaxed = table.kind === 'staging' && c.type === 'int' && c.name !== table.key;
        expect(`${name}.${c.name} ${column.is_nullable}`).toBe(
          `${name}.${c.name} ${c.nullable || relaxed ? 'YES' : 'NO'}`,
        );
      }
      const bookkeeping = actual
        .filter((r) => r.column_name.startsWith('_'))
        .map((r) => r.column_name)
        .sort();
      if (table.kind === 'date') expect(bookkeeping).toEqual([]);
      else if (table.kind === 'fact') {
        expect(bookkeeping).toEqual([
          '_commit_ts',
          '_deleted',
          '_epoch',
          '_loaded_at',
          '_lsn',
          '_row_hash',
          '_seq',
          '_snapshot',
          '_unchanged',
        ]);
        const surrogate = actual.find((r) => r.column_name === table.surrogateKey)!;
        expect(surrogate.column_default).toMatch(/^nextval\(/);
      } else
        expect(bookkeeping).toEqual([
          '_commit_ts',
          '_deleted',
          '_deleted_epoch',
          '_deleted_lsn',
          '_deleted_seq',
          '_epoch',
          '_inferred',
          '_loaded_at',
          '_lsn',
          '_seq',
          '_toast_pending',
        ]);
    }
  });

  it('keys dimensions by their natural key and facts by a surrogate, unique per version, without FKs', async () => {
    const { rows } = await client.query<{ table: string; type: string; columns: string[] }>(
      `SELECT c.conrelid::regclass::text AS "table", c.contype::text AS type,
              array(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i) AS columns
         FROM pg_constraint c WHERE c.connamespace = 'public'::regnamespace AND c.contype IN ('p', 'u', 'f')`,
    );
    for (const name of WAREHOUSE_TABLE_NAMES) {
      const table = WAREHOUSE_TABLES[name];
      const mine = rows.filter((r) => r.table === name);
      const primary = mine.find((r) => r.type === 'p')!;
      if (table.kind === 'fact') {
        expect(primary.columns).toEqual([table.surrogateKey]);
        expect(mine.filter((r) => r.type === 'u').map((r) => r.columns)).toEqual([
          [table.key, '_lsn', '_seq'],
        ]);
      } else expect(primary.columns).toEqual([table.key]);
    }
    // Migration 007 dropped the facts' foreign keys (the model's `references` are checked by
    // `totes verify`, verify-references.ts); no other table ever had one.
    expect(rows.filter((r) => r.type === 'f')).toEqual([]);
  });

  it("drops the facts' foreign keys in 007: 001 declared one per model reference, and a fact row may dangle", async () => {
    await inSchema('before_007', async (scoped) => {
      await migrateWarehouse(scoped, { migrations: upTo(6) });
      const foreign = async () => {
        const { rows } = await scoped.query<{ fk: string }>(
          `SELECT format('%s.%s→%s', c.conrelid::regclass, a.attname, c.confrelid::regclass) AS fk
             FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            WHERE c.connamespace = $1::regnamespace AND c.contype = 'f'`,
          ['before_007'],
        );
        return rows.map((r) => r.fk).sort();
      };
      const declared = WAREHOUSE_TABLE_NAMES.flatMap((name) =>
        WAREHOUSE_TABLES[name].columns
          .filter((c) => c.references)
          .map((c) => `${name}.${c.name}→${c.references}`),
      ).sort();
      expect(declared).toHaveLength(24);
      expect(await foreign()).toEqual(declared);
      expect(await migrateWarehouse(scoped, { migrations: upTo(7) })).toMatchObject({
        applied: ['007_drop_fact_foreign_keys'],
      });
      expect(await foreign()).toEqual([]);
      // What a foreign key refused before is now stored, and left to verify to find.
      await scoped.query(
        `INSERT INTO "fact_payment" ("payment_id", "created_date", "created_time", "last_updated_date",
           "last_updated_time", "transaction_id", "counterparty_id", "payment_amount", "currency_id",
           "payment_type_id", "paid", "payment_date", "_lsn", "_seq", "_commit_ts")
         VALUES (1, '2025-01-01', '00:00', '2025-01-01', '00:00', 1, 1, 1, 1, 1, false, '2025-01-01', '0/1', 0, now())`,
      );
    });
  });

  it('moves snapshot_row into snapshot_part in 009, grouped, duplicates kept, and drops snapshot_row', async () => {
    await inSchema('before_009', async (scoped) => {
      await migrateWarehouse(scoped, { migrations: upTo(8) });
      // 10,002 rows of one snapshot (ordinal 5 delivered twice), 2 of another.
      await scoped.query(
        `INSERT INTO "snapshot_row" ("source_table", "snapshot_epoch", "snapshot_lsn", "seq", "key")
         SELECT 'design', 7, '0/900'::pg_lsn, n, n * 2 FROM generate_series(0, 10001) AS n
         UNION ALL SELECT 'design', 7, '0/900', 5, 10
         UNION ALL SELECT 'address', 0, '0/100', n, n FROM generate_series(1, 2) AS n`,
      );
      await scoped.query(
        `INSERT INTO "snapshot_table" ("source_table", "snapshot_epoch", "snapshot_lsn", "expected_rows", "end_seq")
         VALUES ('design', 7, '0/900', 10002, 10002)`,
      );
      expect(await migrateWarehouse(scoped, { migrations: upTo(9) })).toMatchObject({
        applied: ['009_snapshot_part'],
      });
      const { rows: gone } = await scoped.query(`SELECT to_regclass('snapshot_row') AS t`);
      expect(gone).toEqual([{ t: null }]);
      const { rows: parts } = await scoped.query(
        `SELECT "source_table", "snapshot_epoch"::int AS epoch, "row_count",
                "ordinals"[1]::int AS first, "keys"[1] AS first_key, cardinality("keys") AS keys
           FROM "snapshot_part" ORDER BY 1, 4`,
      );
      expect(parts).toEqual([
        { source_table: 'address', epoch: 0, row_count: 2, first: 1, first_key: 1, keys: 2 },
        { source_table: 'design', epoch: 7, row_count: 10_001, first: 0, first_key: 0, keys: 10_001 },
        { source_table: 'design', epoch: 7, row_count: 2, first: 10_000, first_key: 20_000, keys: 2 },
      ]);
      // Stored twice, counted once.
      const progress = snapshotProgress({ sourceTable: 'design', epoch: 7, lsn: '0/900' });
      const { rows: counted } = await scoped.query(progress.text, progress.values);
      expect(counted[0].loaded_rows).toBe('10002');
      // The arrays are stored out of line, uncompressed.
      const { rows: storage } = await scoped.query(
        `SELECT attname, attstorage FROM pg_attribute
          WHERE attrelid = '"snapshot_part"'::regclass AND attname IN ('ordinals', 'keys') ORDER BY 1`,
      );
      expect(storage).toEqual([
        { attname: 'keys', attstorage: 'e' },
        { attname: 'ordinals', attstorage: 'e' },
      ]);
    });
  });

  it('refuses to run when an applied migration changed', async () => {
    const [m] = readMigrations();
    const edited: Migration = {
      ...m,
      sql: `${m.sql}\n-- edited`,
      checksum: checksumOf(`${m.sql}\n-- edited`),
    };
    await expect(migrateWarehouse(client, { migrations: [edited] })).rejects.toBeInstanceOf(
      MigrationChecksumMismatchError,
    );
    await expect(migrateWarehouse(client, { migrations: [edited] })).rejects.toThrow(
      /never edit an applied migration/,
    );
  });

  it('rolls a failing migration back entirely and records nothing', async () => {
    const broken: Migration = {
      id: 900,
      name: '900_broken',
      sql: 'CREATE TABLE "half_done" (x int); SELECT no_such_function();',
      checksum: checksumOf('x'),
    };
    await expect(
      migrateWarehouse(client, { migrations: [...readMigrations(), broken] }),
    ).rejects.toBeInstanceOf(MigrationFailedError);
    const { rows } = await client.query(
      `SELECT to_regclass('half_done') AS t, count(*)::int AS n FROM "totes_migrations"`,
    );
    expect(rows).toEqual([{ t: null, n: readMigrations().length }]);
  });

  it('leaves migrations it does not know alone, saying so', async () => {
    await client.query(
      `INSERT INTO "totes_migrations" ("id", "name", "checksum") VALUES (99, '099_future', 'x')`,
    );
    const lines: string[] = [];
    const logger = createLogger({ service: 'test', write: (l) => lines.push(l) });
    expect(await migrateWarehouse(client, { logger })).toEqual({
      applied: [],
      alreadyApplied: readMigrations().map((m) => m.name),
    });
    expect(JSON.parse(lines[0])).toMatchObject({ level: 'warn', unknown: ['099_future'] });
    await client.query('DELETE FROM "totes_migrations" WHERE "id" = 99');
  });

  it('serialises concurrent runners: one applies, the others find it done', async () => {
    await client.query('CREATE SCHEMA "race"');
    const runners = await Promise.all([connect('race'), connect('race'), connect('race')]);
    try {
      const results = await Promise.all(runners.map((c) => migrateWarehouse(c)));
      const all = readMigrations().length;
      expect(results.map((r) => r.applied.length).sort()).toEqual([0, 0, all]);
      const { rows } = await client.query(`SELECT count(*)::int AS n FROM "race"."totes_migrations"`);
      expect(rows).toEqual([{ n: all }]);
    } finally {
      await Promise.all(runners.map((c) => c.end()));
    }
  });
});

describe('readMigrations', () => {
  const dirWith = (files: Record<string, string>) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-migrations-'));
    for (const [name, sql] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), sql);
    return dir;
  };

  it('orders NNN_name.sql files by number and ignores other files', () => {
    const dir = dirWith({ '010_b.sql': 'B', '002_a.sql': 'A', 'README.md': 'x' });
    expect(readMigrations(dir).map((m) => [m.id, m.name, m.checksum])).toEqual([
      [2, '002_a', checksumOf('A')],
      [10, '010_b', checksumOf('B')],
    ]);
  });

  it('refuses badly named or duplicate-numbered files', () => {
    expect(() => readMigrations(dirWith({ '1_a.sql': '' }))).toThrow(InvalidMigrationFileError);
    expect(() => readMigrations(dirWith({ '001_a.sql': '', '001_b.sql': '' }))).toThrow(/used twice/);
  });
});
