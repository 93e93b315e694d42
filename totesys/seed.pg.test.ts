import type { Client } from 'pg';
import { TOTESYS_TABLES, type TotesysTable } from '../core/totesys-tables';
import { createTestDatabase, withClient } from '../test/support/pg';
import { generateTotesys, totesysRowCounts } from './generator';
import { TOTESYS_COLUMNS, createTotesysSchema, quoteIdent } from './schema';
import { SourceNotEmptyError, installTotesys, type SeedProgress } from './seed';

const SCALE = 0.05;

/** md5 of a table's full content in id order: equal hashes mean identical rows. */
async function tableHashes(c: Client): Promise<Record<TotesysTable, string>> {
  const out = {} as Record<TotesysTable, string>;
  for (const table of TOTESYS_TABLES) {
    const { rows } = await c.query(
      `SELECT md5(string_agg(t::text, E'\\n' ORDER BY ${quoteIdent(`${table}_id`)})) AS hash FROM ${quoteIdent(table)} t`,
    );
    out[table] = rows[0].hash;
  }
  return out;
}

async function rowCounts(c: Client): Promise<Record<TotesysTable, number>> {
  const out = {} as Record<TotesysTable, number>;
  for (const table of TOTESYS_TABLES)
    out[table] = Number((await c.query(`SELECT count(*) AS n FROM ${quoteIdent(table)}`)).rows[0].n);
  return out;
}

/** Every column as the text the generator produced (timestamps keep all three fraction digits). */
function selectAsText(table: TotesysTable): string {
  const columns = TOTESYS_COLUMNS[table].map((c) =>
    c.type === 'timestamp(3)'
      ? `to_char(${quoteIdent(c.name)}, 'YYYY-MM-DD HH24:MI:SS.MS')`
      : `${quoteIdent(c.name)}::text`,
  );
  // Qualified, so ORDER BY sorts by the integer id rather than by the output column of that name.
  return `SELECT ${columns.join(', ')} FROM ${quoteIdent(table)} t ORDER BY t.${quoteIdent(`${table}_id`)}`;
}

describe('installTotesys (real Postgres)', () => {
  let url: string;
  let progress: SeedProgress[];
  let counts: Record<TotesysTable, number>;

  beforeAll(async () => {
    url = await createTestDatabase('totesys_seed');
    progress = [];
    counts = await withClient(url, (c) =>
      installTotesys(c, { scale: SCALE, seed: 42, onProgress: (p) => progress.push(p) }),
    );
  });

  it('creates the schema and loads the planned number of rows, reporting progress', async () => {
    expect(counts).toEqual(totesysRowCounts(SCALE));
    expect(await withClient(url, rowCounts)).toEqual(counts);
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    expect(progress.at(-1)).toEqual({ rowsDone: total, rowsTotal: total });
    expect(progress.map((p) => p.rowsDone)).toEqual(
      [...progress.map((p) => p.rowsDone)].sort((a, b) => a - b),
    );
  });

  it('stores exactly the generated rows, every value intact', async () => {
    const generated = Object.fromEntries(TOTESYS_TABLES.map((t) => [t, [] as (string | null)[][]]));
    for (const batch of generateTotesys({ scale: SCALE, seed: 42 }))
      for (const table of TOTESYS_TABLES)
        for (const row of (batch[table] ?? []) as object[]) generated[table]!.push(columnsOf(table, row));
    await withClient(url, async (c) => {
      for (const table of TOTESYS_TABLES) {
        const { rows } = await c.query({ text: selectAsText(table), rowMode: 'array' });
        expect(rows).toEqual(generated[table]);
      }
    });
  });

  it('holds the reference oddities: commas in names, "Leds", staff emails', async () => {
    await withClient(url, async (c) => {
      const commas = await c.query(
        `SELECT count(*)::int AS n FROM counterparty WHERE counterparty_legal_name LIKE '%,%'`,
      );
      expect(commas.rows[0].n).toBeGreaterThan(0);
      const dept = await c.query('SELECT location FROM department WHERE department_id = 4');
      expect(dept.rows[0].location).toBe('Leds');
      const emails = await c.query(
        `SELECT count(*)::int AS n FROM staff WHERE email_address <> lower(first_name || '.' || last_name || '@terrifictotes.com')`,
      );
      expect(emails.rows[0].n).toBe(0);
      const orphans = await c.query(
        `SELECT count(*)::int AS n FROM transaction t
          WHERE (t.sales_order_id IS NULL) = (t.purchase_order_id IS NULL)
             OR NOT EXISTS (SELECT 1 FROM payment p WHERE p.transaction_id = t.transaction_id)`,
      );
      expect(orphans.rows[0].n).toBe(0);
    });
  });

  it('moves every id sequence past the loaded rows', async () => {
    await withClient(url, async (c) => {
      await c.query('BEGIN');
      const r = await c.query(
        `INSERT INTO currency (currency_code, last_updated) VALUES ('JPY', now()) RETURNING currency_id`,
      );
      expect(r.rows[0].currency_id).toBe(4);
      // nextval is not undone by ROLLBACK; harmless here, as no later test inserts into this database.
      for (const table of TOTESYS_TABLES.filter((t) => t !== 'currency')) {
        const { rows } = await c.query('SELECT nextval(pg_get_serial_sequence($1, $2))::int AS id', [
          table,
          `${table}_id`,
        ]);
        expect(rows[0].id).toBe(counts[table] + 1);
      }
      await c.query('ROLLBACK');
    });
  });

  it('gives identical rows for the same seed in another database, others for another seed; reset starts over', async () => {
    const other = await createTestDatabase('totesys_seed_other');
    await withClient(other, (c) => installTotesys(c, { scale: SCALE, seed: 42 }));
    const original = await withClient(url, tableHashes);
    expect(await withClient(other, tableHashes)).toEqual(original);

    const again = await withClient(other, (c) =>
      installTotesys(c, { scale: SCALE * 2, seed: 43, reset: true }),
    );
    expect(again).toEqual(totesysRowCounts(SCALE * 2));
    const different = await withClient(other, tableHashes);
    expect(different.sales_order).not.toBe(original.sales_order);
    expect(different.currency).toBe(original.currency);
  });

  it('refuses a database that already has the data, and leaves it untouched', async () => {
    const before = await withClient(url, tableHashes);
    const attempt = withClient(url, (c) => installTotesys(c, { scale: SCALE, seed: 7 }));
    await expect(attempt).rejects.toThrow(SourceNotEmptyError);
    await expect(attempt).rejects.toMatchObject({ populatedTables: [...TOTESYS_TABLES] });
    expect(await withClient(url, tableHashes)).toEqual(before);
  });
});

describe('installTotesys on other starting points (real Postgres)', () => {
  it('refuses a partial schema, naming what is there', async () => {
    const db = await createTestDatabase('totesys_seed_partial');
    await withClient(db, (c) =>
      c.query(`CREATE TYPE "TransactionType" AS ENUM ('SALE', 'PURCHASE'); CREATE TABLE address (x int)`),
    );
    await expect(withClient(db, (c) => installTotesys(c, { scale: SCALE }))).rejects.toThrow(
      /part of a totesys schema \(address, TransactionType\)/,
    );
    // --reset clears it away.
    const counts = await withClient(db, (c) => installTotesys(c, { scale: SCALE, reset: true }));
    expect(counts.address).toBe(30);
  });

  it('loads into an existing empty schema, and rolls everything back when loading fails', async () => {
    const db = await createTestDatabase('totesys_seed_rollback');
    await withClient(db, async (c) => {
      await createTotesysSchema(c);
      await c.query(`CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                       BEGIN RAISE EXCEPTION 'no payments today'; END $$`);
      await c.query(
        'CREATE TRIGGER refuse BEFORE INSERT ON payment FOR EACH STATEMENT EXECUTE FUNCTION refuse()',
      );
    });
    await expect(withClient(db, (c) => installTotesys(c, { scale: SCALE }))).rejects.toThrow(
      /no payments today/,
    );
    expect(Object.values(await withClient(db, rowCounts)).every((n) => n === 0)).toBe(true);
    await withClient(db, (c) => c.query('DROP TRIGGER refuse ON payment'));
    const counts = await withClient(db, (c) => installTotesys(c, { scale: SCALE }));
    expect(await withClient(db, rowCounts)).toEqual(counts);
  });

  it('loads the full early-2025 profile (scale 1, ~55k rows)', async () => {
    // How fast it loads is a benchmark's question, not a test's: a busy machine must not fail it.
    const db = await createTestDatabase('totesys_seed_full');
    const counts = await withClient(db, (c) => installTotesys(c));
    expect(counts).toMatchObject({
      design: 540,
      sales_order: 13_000,
      purchase_order: 5_300,
      payment: 18_300,
    });
    expect(await withClient(db, rowCounts)).toEqual(counts);
  });
});

function columnsOf(table: TotesysTable, row: object): (string | null)[] {
  return TOTESYS_COLUMNS[table].map((c) => {
    const value = (row as Record<string, unknown>)[c.name];
    return value === null ? null : String(value);
  });
}
