import fs from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';
import { TOTESYS_TABLES } from '../core/totesys-tables';
import { quoteIdent, quoteLiteral } from '../capture/pg-text';
import { createTotesysSchema } from '../totesys';
import { copyFrom, copyToNowhere } from './pg-copy';

/** The streamed workloads write into this table, shaped like totesys' sales_order. */
export const BENCH_TABLE = 'bench_order';

/** Runs fn with a connected client and always closes it. */
export async function withClient<T>(url: string, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** A fresh database (dropped first, with its slots, if an interrupted run left it behind). */
export async function recreateDatabase(adminUrl: string, database: string): Promise<void> {
  await withClient(adminUrl, async (c) => {
    await dropSlotsOf(c, database);
    await c.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${quoteIdent(database)}`);
  });
}

export async function dropDatabase(adminUrl: string, database: string): Promise<void> {
  await withClient(adminUrl, async (c) => {
    await dropSlotsOf(c, database);
    await c.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`);
  });
}

const dropSlotsOf = (admin: Client, database: string) => dropSlots(admin, 'database', database);

/**
 * Drops the slots of a database (or one slot, by name) once their readers are gone: a walsender
 * exits a moment after its client disconnects, and an active slot cannot be dropped.
 */
export async function dropSlots(admin: Client, by: 'database' | 'slot_name', value: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { rows } = await admin.query(
      `SELECT slot_name, active FROM pg_replication_slots WHERE ${by === 'database' ? 'database' : 'slot_name'} = $1`,
      [value],
    );
    for (const r of rows.filter((r) => !r.active))
      await admin.query('SELECT pg_drop_replication_slot($1)', [r.slot_name]);
    if (rows.every((r) => !r.active)) return;
    if (Date.now() > deadline) throw new Error(`replication slots of ${by} ${value} still active after 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * sales_order's column types (int key, timestamp(3)s, ints, numeric(10,2), text dates), without
 * its foreign keys. Autovacuum is off for it so that no VACUUM or ANALYZE of the fresh rows competes
 * for the machine's cores while the readers are timed.
 */
export async function createBenchTable(client: Client, publication: string): Promise<void> {
  await client.query(`CREATE TABLE ${quoteIdent(BENCH_TABLE)} (
    order_id integer PRIMARY KEY,
    created_at timestamp(3) NOT NULL,
    last_updated timestamp(3) NOT NULL,
    design_id integer NOT NULL,
    staff_id integer NOT NULL,
    counterparty_id integer NOT NULL,
    units_sold integer NOT NULL,
    unit_price numeric(10,2) NOT NULL,
    currency_id integer NOT NULL,
    agreed_delivery_date text NOT NULL,
    agreed_payment_date text NOT NULL,
    agreed_delivery_location_id integer NOT NULL
  ) WITH (autovacuum_enabled = false)`);
  await client.query(`CREATE PUBLICATION ${quoteIdent(publication)} FOR TABLE ${quoteIdent(BENCH_TABLE)}`);
}

/**
 * Creates logical slots (pgoutput) and returns each one's consistent point. Slots made before the
 * workload is written all decode exactly the same WAL.
 */
export async function createSlots(client: Client, slots: readonly string[]): Promise<Map<string, string>> {
  const points = new Map<string, string>();
  for (const slot of slots) {
    const { rows } = await client.query(
      `SELECT lsn::text AS lsn FROM pg_create_logical_replication_slot($1, 'pgoutput')`,
      [slot],
    );
    points.set(slot, rows[0].lsn);
  }
  return points;
}

/**
 * Inserts rows 1…rows into the bench table, `txnRows` per transaction. Values vary with the row
 * number so that the text pgoutput sends has realistic lengths.
 */
export async function insertOrders(
  client: Client,
  rows: number,
  txnRows: number,
): Promise<{ transactions: number }> {
  let transactions = 0;
  for (let first = 1; first <= rows; first += txnRows) {
    const last = Math.min(rows, first + txnRows - 1);
    await client.query(
      `INSERT INTO ${quoteIdent(BENCH_TABLE)}
       SELECT g,
              timestamp '2025-01-01' + g * interval '1.237 second',
              timestamp '2025-01-01' + g * interval '1.237 second' + (g % 7) * interval '1 hour',
              1 + g % 539, 1 + g % 20, 1 + g % 20,
              1000 + (g * 7919) % 99000,
              (2 + (g % 300) / 100.0)::numeric(10,2),
              1 + g % 3,
              to_char(date '2025-01-01' + g % 400, 'YYYY-MM-DD'),
              to_char(date '2025-01-01' + (g + 3) % 400, 'YYYY-MM-DD'),
              1 + g % 30
         FROM generate_series($1::int, $2::int) AS g`,
      [first, last],
    );
    transactions += 1;
  }
  return { transactions };
}

/** The data set's directory holds one CSV per totesys table; null when one is missing. */
export function totesysCsvFiles(dataDir: string): Map<string, string> | null {
  const files = new Map<string, string>();
  for (const table of TOTESYS_TABLES) {
    const file = path.join(dataDir, `${table}.csv`);
    if (!fs.existsSync(file)) return null;
    files.set(table, file);
  }
  return files;
}

/**
 * Creates the totesys schema and loads the CSV export the way its README says: COPY in foreign-key
 * order, then move each serial past the highest id. Returns the rows loaded per table.
 */
export async function loadTotesys(client: Client, files: Map<string, string>): Promise<Map<string, number>> {
  await createTotesysSchema(client);
  const counts = new Map<string, number>();
  for (const table of TOTESYS_TABLES) {
    const copied = await copyFrom(
      client,
      `COPY ${quoteIdent(table)} FROM STDIN WITH (FORMAT csv, HEADER true)`,
      fs.readFileSync(files.get(table)!),
    );
    counts.set(table, copied);
    const key = quoteIdent(`${table}_id`);
    await client.query(
      `SELECT setval(pg_get_serial_sequence(${quoteLiteral(table)}, ${quoteLiteral(`${table}_id`)}),
                     (SELECT max(${key}) FROM ${quoteIdent(table)}))`,
    );
  }
  return counts;
}

/**
 * The snapshot baseline: every table copied out in one REPEATABLE READ transaction, the cheapest
 * consistent read Postgres offers, its output discarded.
 */
export async function copyTablesOut(
  client: Client,
  tables: readonly string[],
): Promise<{ rows: number; bytes: number }> {
  let rows = 0;
  let bytes = 0;
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  for (const table of tables) {
    const out = await copyToNowhere(client, `COPY (SELECT * FROM ${quoteIdent(table)}) TO STDOUT`);
    rows += out.rows;
    bytes += out.bytes;
  }
  await client.query('COMMIT');
  return { rows, bytes };
}
