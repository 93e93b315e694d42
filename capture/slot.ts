import { Client, type ClientConfig } from 'pg';
import type { Lsn } from '../core/lsn';
import { quoteIdent } from './pg-text';

/** The slot's state as pg_replication_slots reports it. */
export interface SlotInfo {
  slot: string;
  plugin: string | null;
  /** The database the slot decodes (slots are cluster-wide, each bound to one database). */
  database: string | null;
  /** True when that is the database this connection is in. */
  inThisDatabase: boolean;
  active: boolean;
  activePid: number | null;
  confirmedFlushLsn: Lsn | null;
  /** pg_wal_lsn_diff(current WAL, restart_lsn): WAL the slot keeps on the server's disk. */
  retainedWalBytes: number | null;
  /** pg_wal_lsn_diff(current WAL, confirmed_flush_lsn): how far capture is behind. */
  lagBytes: number | null;
  walStatus: string | null;
  /** PostgreSQL 17+: why the slot was invalidated (`wal_removed`, …); null when valid or older. */
  invalidationReason: string | null;
}

export async function getSlot(client: Client, slot: string): Promise<SlotInfo | null> {
  // wal_status (13+) and invalidation_reason (17+) are read from the row as JSON, so a version that
  // lacks a column reads it as NULL instead of failing.
  const { rows } = await client.query(
    `SELECT slot_name, plugin, database, database = current_database() AS in_this_database,
            active, active_pid, confirmed_flush_lsn::text AS confirmed_flush_lsn,
            pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8 AS retained,
            pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::float8 AS lag,
            to_jsonb(s) ->> 'wal_status' AS wal_status,
            to_jsonb(s) ->> 'invalidation_reason' AS invalidation_reason
       FROM pg_replication_slots AS s WHERE slot_name = $1`,
    [slot],
  );
  if (rows.length === 0) return null;
  const r = rows[0];
  const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    slot: r.slot_name,
    plugin: r.plugin,
    database: r.database,
    inThisDatabase: r.in_this_database === true || r.in_this_database === 't',
    active: r.active === true || r.active === 't',
    activePid: num(r.active_pid),
    confirmedFlushLsn: r.confirmed_flush_lsn,
    retainedWalBytes: num(r.retained),
    lagBytes: num(r.lag),
    walStatus: r.wal_status,
    invalidationReason: r.invalidation_reason ?? null,
  };
}

export async function dropSlot(client: Client, slot: string): Promise<void> {
  await client.query(
    'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1',
    [slot],
  );
}

/**
 * Creates the publication for the captured tables when it does not exist. An existing publication
 * is left as it is (the operator may manage it); `totes doctor` reports tables it lacks.
 */
export async function ensurePublication(
  client: Client,
  publication: string,
  schema: string,
  tables: readonly string[],
): Promise<boolean> {
  const { rows } = await client.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [publication]);
  if (rows.length > 0) return false;
  const list = tables.map((t) => `${quoteIdent(schema)}.${quoteIdent(t)}`).join(', ');
  await client.query(`CREATE PUBLICATION ${quoteIdent(publication)} FOR TABLE ${list}`);
  return true;
}

/** The tables of `schema` that the publication publishes now (FOR ALL TABLES included). */
export async function publishedTables(
  client: Client,
  publication: string,
  schema: string,
): Promise<string[]> {
  const { rows } = await client.query(
    'SELECT tablename FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2',
    [publication, schema],
  );
  return rows.map((r) => r.tablename as string);
}

/**
 * Adds the wanted tables an existing publication lacks (a table added to the capture set). A
 * publication FOR ALL TABLES already has them. Returns the tables added.
 */
export async function addMissingPublicationTables(
  client: Client,
  publication: string,
  schema: string,
  tables: readonly string[],
): Promise<string[]> {
  const published = new Set(await publishedTables(client, publication, schema));
  const missing = tables.filter((t) => !published.has(t));
  if (missing.length === 0) return [];
  const list = missing.map((t) => `${quoteIdent(schema)}.${quoteIdent(t)}`).join(', ');
  const statement = `ALTER PUBLICATION ${quoteIdent(publication)} ADD TABLE ${list}`;
  try {
    await client.query(statement);
  } catch (e) {
    throw new Error(
      `publication ${publication} lacks ${missing.join(', ')} and capture could not add them ` +
        `(${(e as Error).message}); run as the publication's owner: ${statement};`,
      { cause: e },
    );
  }
  return missing;
}

/** A slot created with an exported snapshot; the snapshot stays valid until `close()`. */
export interface ExportedSlot {
  consistentPoint: Lsn;
  snapshotName: string;
  close(): Promise<void>;
}

/**
 * CREATE_REPLICATION_SLOT on a replication connection, exporting the snapshot that matches the
 * slot's consistent point: a transaction that imports it (SET TRANSACTION SNAPSHOT) sees exactly the
 * data committed before the first change the slot will stream — no gap, no overlap.
 * https://www.postgresql.org/docs/current/protocol-replication.html#PROTOCOL-REPLICATION-CREATE-REPLICATION-SLOT
 */
export async function createSlotWithSnapshot(
  config: ClientConfig,
  slot: string,
  serverVersionNum: number,
  options: { temporary?: boolean } = {},
): Promise<ExportedSlot> {
  const replication = new Client({ ...config, replication: 'database' } as ClientConfig);
  await replication.connect();
  try {
    // PG 15 introduced the parenthesised option list; the older keyword form works from PG 10 on.
    const exportSnapshot = serverVersionNum >= 150000 ? "(SNAPSHOT 'export')" : 'EXPORT_SNAPSHOT';
    // A TEMPORARY slot lives as long as this connection: what a reconciling snapshot beside a kept
    // slot needs (a consistent point and its snapshot), with nothing to clean up after a crash.
    const temporary = options.temporary ? ' TEMPORARY' : '';
    const { rows } = await replication.query(
      `CREATE_REPLICATION_SLOT ${quoteIdent(slot)}${temporary} LOGICAL pgoutput ${exportSnapshot}`,
    );
    return {
      consistentPoint: rows[0].consistent_point,
      snapshotName: rows[0].snapshot_name,
      close: () => replication.end(),
    };
  } catch (e) {
    await replication.end().catch(() => undefined);
    throw e;
  }
}
