import type { Client } from 'pg';
import type { Column } from '../core/change-event';
import { quoteIdent, quoteLiteral } from './pg-text';

/** A captured table's column layout, read from the catalog in attribute order. */
export interface TableLayout {
  schema: string;
  table: string;
  columns: Column[];
}

export class MissingTableError extends Error {
  override readonly name = 'MissingTableError';
}

/**
 * Column names, type names (pg_type.typname, as pgoutput's stream reports them) and primary-key
 * membership for each table, in the order given.
 */
export async function describeTables(
  client: Client,
  schema: string,
  tables: readonly string[],
): Promise<TableLayout[]> {
  const { rows } = await client.query(
    `SELECT c.relname AS table, a.attname AS name, t.typname AS type,
            COALESCE(a.attnum = ANY (i.indkey::int2[]), false) AS key
       FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
       JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
      WHERE n.nspname = $1 AND c.relname = ANY ($2::text[])
      ORDER BY c.relname, a.attnum`,
    [schema, tables],
  );
  return tables.map((table) => {
    const columns = rows
      .filter((r) => r.table === table)
      .map((r) => ({ name: r.name, type: r.type, key: r.key === true || r.key === 't' }));
    if (columns.length === 0)
      throw new MissingTableError(`table ${schema}.${table} does not exist (or has no columns)`);
    return { schema, table, columns };
  });
}

export interface SnapshotRows {
  layout: TableLayout;
  rows: (string | null)[][];
  /** The last page of this table (possibly empty): its snapshot is complete. */
  tableDone: boolean;
}

/**
 * Reads every row of the tables inside one REPEATABLE READ transaction that imports the slot's
 * exported snapshot, in pages of `pageRows` through a cursor so memory stays bounded whatever the
 * table size. Values come back as text (the client must be a rawTextClient).
 * https://www.postgresql.org/docs/current/sql-set-transaction.html
 */
export async function* readSnapshot(
  client: Client,
  snapshotName: string,
  layouts: readonly TableLayout[],
  pageRows = 5000,
): AsyncGenerator<SnapshotRows> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    await client.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(snapshotName)}`);
    for (const layout of layouts) {
      const cols = layout.columns.map((c) => quoteIdent(c.name)).join(', ');
      const cursor = quoteIdent(`totes_snapshot_${layout.table}`);
      await client.query(
        `DECLARE ${cursor} NO SCROLL CURSOR FOR SELECT ${cols} FROM ${quoteIdent(layout.schema)}.${quoteIdent(layout.table)}`,
      );
      for (;;) {
        const page = await client.query({ text: `FETCH ${pageRows} FROM ${cursor}`, rowMode: 'array' });
        const done = page.rows.length < pageRows;
        // An empty table still yields one (empty, done) page: its end must be announced too.
        yield { layout, rows: page.rows as (string | null)[][], tableDone: done };
        if (done) break;
      }
      await client.query(`CLOSE ${cursor}`);
    }
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}

/** The snapshot transaction's start time, ISO 8601 UTC with microseconds. */
export async function transactionTimestamp(client: Client): Promise<string> {
  const { rows } = await client.query(
    `SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS ts`,
  );
  return rows[0].ts;
}
