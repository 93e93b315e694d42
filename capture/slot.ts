import { Client, type ClientConfig } from 'pg';
import type { Lsn } from '../core/lsn';
import { quoteIdent } from './pg-text';

/** The slot's state as pg_replication_slots reports it. */
export interface SlotInfo {
  slot: string;
  plugin: string | null;
  active: boolean;
  activePid: number | null;
  confirmedFlushLsn: Lsn | null;
  /** pg_wal_lsn_diff(current WAL, restart_lsn): WAL the slot keeps on the server's disk. */
  retainedWalBytes: number | null;
  /** pg_wal_lsn_diff(current WAL, confirmed_flush_lsn): how far capture is behind. */
  lagBytes: number | null;
  walStatus: string | null;
}

export async function getSlot(client: Client, slot: string): Promise<SlotInfo | null> {
  const { rows } = await client.query(
    `SELECT slot_name, plugin, active, active_pid, confirmed_flush_lsn::text AS confirmed_flush_lsn,
            pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8 AS retained,
            pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::float8 AS lag,
            wal_status
       FROM pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
  if (rows.length === 0) return null;
  const r = rows[0];
  const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    slot: r.slot_name,
    plugin: r.plugin,
    active: r.active === true || r.active === 't',
    activePid: num(r.active_pid),
    confirmedFlushLsn: r.confirmed_flush_lsn,
    retainedWalBytes: num(r.retained),
    lagBytes: num(r.lag),
    walStatus: r.wal_status,
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
): Promise<ExportedSlot> {
  const replication = new Client({ ...config, replication: 'database' } as ClientConfig);
  await replication.connect();
  try {
    // PG 15 introduced the parenthesised option list; the older keyword form works from PG 10 on.
    const options = serverVersionNum >= 150000 ? "(SNAPSHOT 'export')" : 'EXPORT_SNAPSHOT';
    const { rows } = await replication.query(
      `CREATE_REPLICATION_SLOT ${quoteIdent(slot)} LOGICAL pgoutput ${options}`,
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
