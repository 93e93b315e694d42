/**
 * Loads the generated data set into Postgres. The I/O edge only: what the rows are is decided in
 * generator.ts. Each table's slice of a batch goes in as one `INSERT … SELECT FROM unnest($1::t[], …)`,
 * one array parameter per column, so a statement carries thousands of rows without hitting the
 * 65,535-parameter limit of a multi-row VALUES list, and no value is ever spliced into the SQL.
 */
import type { ClientBase } from 'pg';
import { TOTESYS_TABLES, type TotesysTable } from '../core/totesys-tables';
import { generateTotesys, totesysRowCounts } from './generator';
import {
  TOTESYS_COLUMNS,
  TOTESYS_ENUMS,
  TotesysError,
  dropTotesysSchema,
  inspectTotesys,
  primaryKeyOf,
  quoteIdent,
  totesysDdl,
} from './schema';

export type RowCounts = Record<TotesysTable, number>;

export interface SeedProgress {
  rowsDone: number;
  rowsTotal: number;
}

export interface SeedOptions {
  /** Multiplies the growing tables (designs, orders, transactions, payments); default 1. */
  scale?: number;
  /** PRNG seed; the same seed and scale always give the same rows. Default 1. */
  seed?: number;
  /** Called after each batch of rows is inserted. */
  onProgress?: (progress: SeedProgress) => void;
}

/** Refused: the database already holds (some of) a totesys schema, and a reset was not asked for. */
export class SourceNotEmptyError extends TotesysError {
  override readonly name = 'SourceNotEmptyError';
  constructor(
    message: string,
    readonly populatedTables: readonly TotesysTable[],
  ) {
    super(message);
  }
}

function insertSql(table: TotesysTable): string {
  const columns = TOTESYS_COLUMNS[table];
  const names = columns.map((c) => quoteIdent(c.name)).join(', ');
  const arrays = columns.map((c, i) => `$${i + 1}::${c.type}[]`).join(', ');
  return `INSERT INTO ${quoteIdent(table)} (${names}) SELECT * FROM unnest(${arrays})`;
}

async function insertRows(client: ClientBase, table: TotesysTable, rows: readonly object[]): Promise<void> {
  const columns = TOTESYS_COLUMNS[table];
  const values = columns.map((c) => rows.map((row) => (row as Record<string, unknown>)[c.name]));
  await client.query(insertSql(table), values);
}

/**
 * Loads the data set into an existing, empty totesys schema, then moves every id sequence past the
 * highest id so later inserts (the simulator's, the application's) get fresh ids.
 */
export async function seedTotesys(client: ClientBase, options: SeedOptions = {}): Promise<RowCounts> {
  const scale = options.scale ?? 1;
  const rowsTotal = Object.values(totesysRowCounts(scale)).reduce((a, b) => a + b, 0);
  const counts = Object.fromEntries(TOTESYS_TABLES.map((t) => [t, 0])) as RowCounts;
  let rowsDone = 0;
  for (const batch of generateTotesys({ scale, seed: options.seed ?? 1 })) {
    for (const table of TOTESYS_TABLES) {
      const rows = batch[table];
      if (!rows?.length) continue;
      await insertRows(client, table, rows);
      counts[table] += rows.length;
      rowsDone += rows.length;
    }
    options.onProgress?.({ rowsDone, rowsTotal });
  }
  for (const table of TOTESYS_TABLES) {
    const id = quoteIdent(primaryKeyOf(table));
    await client.query(
      `SELECT setval(pg_get_serial_sequence($1, $2), COALESCE(max(${id}), 0) + 1, false) FROM ${quoteIdent(table)}`,
      [quoteIdent(table), primaryKeyOf(table)],
    );
  }
  return counts;
}

export interface InstallOptions extends SeedOptions {
  /** Drop an existing totesys schema (and all its data) first instead of refusing. */
  reset?: boolean;
}

/**
 * What `totes seed` does: create the schema and load the data set, in one transaction, so a failed
 * or interrupted seed leaves the database as it was and can simply be run again. Refuses, with
 * SourceNotEmptyError, a database that already has totesys rows or a partial totesys schema, unless
 * `reset` is set; an existing but empty schema is loaded as it is.
 */
export async function installTotesys(client: ClientBase, options: InstallOptions = {}): Promise<RowCounts> {
  await client.query('BEGIN');
  try {
    const found = await inspectTotesys(client);
    const absent = found.tables.length === 0 && found.enumTypes.length === 0;
    const complete =
      found.tables.length === TOTESYS_TABLES.length &&
      found.enumTypes.length === Object.keys(TOTESYS_ENUMS).length;
    if (!options.reset) {
      if (found.populatedTables.length > 0)
        throw new SourceNotEmptyError(
          `the database already holds totesys data (in ${found.populatedTables.join(', ')})`,
          found.populatedTables,
        );
      if (!absent && !complete)
        throw new SourceNotEmptyError(
          `the database holds part of a totesys schema (${[...found.tables, ...found.enumTypes].join(', ')})`,
          [],
        );
    }
    if (options.reset) await dropTotesysSchema(client);
    let counts: RowCounts;
    if (options.reset || absent) {
      const ddl = totesysDdl();
      await client.query(ddl.tables.join(';\n'));
      counts = await seedTotesys(client, options);
      await client.query(ddl.foreignKeys.join(';\n'));
    } else {
      counts = await seedTotesys(client, options);
    }
    await client.query('COMMIT');
    return counts;
  } catch (e) {
    // Report the original error: on a broken connection ROLLBACK fails too (the server rolls back).
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}
