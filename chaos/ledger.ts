import { Client } from 'pg';
import { rawTextClient } from '../capture/pg-text';
import { sourceRowHash } from '../core/star-mapping';
import { TOTESYS_TABLES } from '../core/totesys-tables';
import { WAREHOUSE_TABLES } from '../core/warehouse-model';
import type { RowVersion } from './ledger-compare';

/**
 * The chaos run's own record of what was committed, kept where no fault can make it lie: a trigger
 * on every totesys table writes each changed row into `chaos.ledger` inside the same source
 * transaction. A change is in the ledger exactly when it committed, so a connection that dies
 * mid-COMMIT (the client cannot tell whether it went through) leaves no doubt: the ledger has the row
 * or it does not (https://www.postgresql.org/docs/current/plpgsql-trigger.html). The ledger lives in
 * its own schema, outside capture's publication (FOR TABLE the totesys tables), so the pipeline
 * never carries it. `seq` is commit order: the simulator writes on one connection, one transaction
 * after another.
 *
 * The row is kept as the text of its composite value (`NEW::text`) and read back through a cast to
 * the table's row type with every column as text, which is what pgoutput sends; so the driver
 * computes the same `_row_hash` the transform gives the warehouse row.
 */

/** The facts keep every version (history); dimensions only the newest, which `totes verify` judges. */
export const FACT_SOURCES = Object.values(WAREHOUSE_TABLES)
  .filter((t) => t.kind === 'fact')
  .map((t) => ({ source: t.source!, target: t.name, key: t.key! }));

const RECORD_FUNCTION = `CREATE OR REPLACE FUNCTION chaos.record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO chaos.ledger (tbl, op, row_text)
  VALUES (TG_TABLE_NAME, TG_OP, CASE WHEN TG_OP = 'DELETE' THEN OLD::text ELSE NEW::text END);
  RETURN NULL;
END $$`;

/** Every value as the text Postgres renders, as pgoutput sends it; a database restart only fails the query. */
function textClient(url: string): Client {
  const client = rawTextClient({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  return client;
}

/**
 * Creates the ledger and its triggers and records the rows already there (the seed) as one baseline
 * version each, in one transaction: the initial snapshot reads exactly those.
 */
export async function installLedger(sourceUrl: string): Promise<{ baseline: number }> {
  const client = textClient(sourceUrl);
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query('CREATE SCHEMA chaos');
    await client.query(`CREATE TABLE chaos.ledger (
      seq bigserial PRIMARY KEY,
      tbl text NOT NULL,
      op text NOT NULL,
      row_text text NOT NULL,
      committed_at timestamptz NOT NULL DEFAULT clock_timestamp())`);
    await client.query(RECORD_FUNCTION);
    for (const table of TOTESYS_TABLES)
      await client.query(
        `CREATE TRIGGER chaos_ledger AFTER INSERT OR UPDATE OR DELETE ON public."${table}"
           FOR EACH ROW EXECUTE FUNCTION chaos.record()`,
      );
    let baseline = 0;
    for (const { source } of FACT_SOURCES) {
      const r = await client.query(
        `INSERT INTO chaos.ledger (tbl, op, row_text) SELECT $1, 'BASELINE', t::text FROM public."${source}" t`,
        [source],
      );
      baseline += r.rowCount ?? 0;
    }
    await client.query('COMMIT');
    return { baseline };
  } finally {
    await client.end();
  }
}

export interface LedgerVersion extends RowVersion {
  seq: number;
}

/** Reads the ledger incrementally: fact versions in commit order, and how many changes were written. */
export class LedgerReader {
  private lastSeq = 0;
  readonly versions: LedgerVersion[] = [];
  /** Committed row changes of every table (the baseline not counted). */
  changes = 0;

  constructor(private readonly sourceUrl: string) {}

  get highestSeq(): number {
    return this.lastSeq;
  }

  /** Reads what was committed since the last call. */
  async refresh(): Promise<void> {
    const client = textClient(this.sourceUrl);
    await client.connect();
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      const { rows } = await client.query<{ max: string | null; changes: string }>(
        `SELECT max(seq) AS max, count(*) FILTER (WHERE op <> 'BASELINE') AS changes
           FROM chaos.ledger WHERE seq > $1`,
        [this.lastSeq],
      );
      const upTo = rows[0]?.max === null || rows[0]?.max === undefined ? this.lastSeq : Number(rows[0].max);
      for (const { source, key } of FACT_SOURCES) {
        const r = await client.query(
          `SELECT l.seq AS "chaos.seq", (l.row_text::public."${source}").*
             FROM chaos.ledger l
            WHERE l.tbl = $1 AND l.op <> 'DELETE' AND l.seq > $2 AND l.seq <= $3`,
          [source, this.lastSeq, upTo],
        );
        const columns = r.fields.filter((f) => f.name !== 'chaos.seq').map((f) => ({ name: f.name }));
        for (const row of r.rows as Record<string, string | null>[]) {
          const values = columns.map((c) => row[c.name] ?? null);
          const hash = sourceRowHash(columns, { values } as Parameters<typeof sourceRowHash>[1]);
          this.versions.push({
            seq: Number(row['chaos.seq']),
            table: source,
            key: String(row[key]),
            hash: hash!,
          });
        }
      }
      await client.query('COMMIT');
      this.changes += Number(rows[0]?.changes ?? 0);
      this.lastSeq = upTo;
    } finally {
      await client.end().catch(() => undefined);
    }
    this.versions.sort((a, b) => a.seq - b.seq);
  }
}

/** Every version the warehouse's fact tables hold, as (source table, key, row hash). */
export async function readLoadedVersions(warehouseUrl: string): Promise<RowVersion[]> {
  const client = textClient(warehouseUrl);
  await client.connect();
  try {
    const out: RowVersion[] = [];
    for (const { source, target, key } of FACT_SOURCES) {
      const { rows } = await client.query<{ key: string; hash: string | null }>(
        `SELECT "${key}" AS key, "_row_hash" AS hash FROM public."${target}"`,
      );
      for (const r of rows) out.push({ table: source, key: r.key, hash: r.hash ?? '(no row hash)' });
    }
    return out;
  } finally {
    await client.end().catch(() => undefined);
  }
}
