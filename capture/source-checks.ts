import type { Client } from 'pg';
import { z } from 'zod';
import { formatBytes } from '../core/pipeline-health';
import { TOTESYS_TABLES } from '../core/totesys-tables';

/**
 * Everything capture needs from a source database, checked before use: `totes doctor` prints the
 * findings, and the capture service refuses to start while any finding is an error.
 *
 * Two halves: `gatherSourceFacts` reads the catalogs (a handful of read-only queries, nothing
 * created or changed), and `evaluateSource` turns those facts into findings without any I/O, so
 * every finding is unit-tested from hand-built facts.
 */

/** What capture will use on the source. Tables are `table` (schema `public`) or `schema.table`. */
export interface SourceWant {
  publication: string;
  slot: string;
  tables: readonly string[];
}

export const DEFAULT_SOURCE_WANT: SourceWant = {
  publication: 'totes_pub',
  slot: 'totes_slot',
  tables: TOTESYS_TABLES,
};

/** The oldest PostgreSQL major capture runs on, and the newest its tests run against. */
export const OLDEST_SUPPORTED_MAJOR = 14;
export const NEWEST_TESTED_MAJOR = 17;

export const SEVERITY = { error: 'error', warning: 'warning', info: 'info' } as const;
export type Severity = (typeof SEVERITY)[keyof typeof SEVERITY];

/**
 * Stable finding ids (for `--json` consumers and tests). A check that passes reports one `info`
 * finding saying what it saw; a check that fails reports its problems instead.
 */
export const FINDING = {
  serverVersion: 'server-version',
  walLevel: 'wal-level',
  replicationPrivilege: 'replication-privilege',
  tables: 'tables',
  tablesMissing: 'tables-missing',
  tableSelect: 'table-select',
  replicaIdentity: 'replica-identity',
  publication: 'publication',
  publicationMissing: 'publication-missing',
  publicationTables: 'publication-tables',
  publicationOperations: 'publication-operations',
  slotWalLimit: 'slot-wal-limit',
  slot: 'slot',
  slotDatabase: 'slot-database',
  slotPlugin: 'slot-plugin',
  slotActive: 'slot-active',
  slotInvalidated: 'slot-invalidated',
  slotWalAtRisk: 'slot-wal-at-risk',
  slotCapacity: 'slot-capacity',
  walSenders: 'wal-senders',
  rowSecurity: 'row-security',
  generatedColumns: 'generated-columns',
  publicationRowFilter: 'publication-row-filter',
  publicationColumnList: 'publication-column-list',
} as const;
export type FindingId = (typeof FINDING)[keyof typeof FINDING];

export interface Finding {
  id: FindingId;
  severity: Severity;
  /** What is wrong (for an `info` finding: what was checked and found fine). */
  problem: string;
  /** How to fix it: exact SQL or configuration, one step per line. */
  fix?: string;
}

export interface TableFacts {
  /** As the caller named it (`staff` or `sales.staff`). */
  table: string;
  schema: string;
  name: string;
  exists: boolean;
  hasPrimaryKey: boolean;
  /** pg_class.relreplident: d(efault) n(othing) f(ull) i(ndex); null when the table is missing. */
  replicaIdentity: string | null;
  canSelect: boolean;
  /** The role has the owner's rights (needed to add the table to a publication). */
  owned: boolean;
  /** pg_class.relrowsecurity: row-level security is enabled on the table. */
  rowSecurity: boolean;
  /** pg_class.relforcerowsecurity: its policies bind the table's owner too. */
  forceRowSecurity: boolean;
  /**
   * A permissive policy that applies to the role shows it every row for SELECT (USING (true)), and
   * no restrictive policy narrows that: row security, if enabled, hides nothing from it.
   */
  policiesShowEveryRow: boolean;
  /** PostgreSQL 12+ (pg_attribute.attgenerated), in column order; empty for a missing table. */
  generatedColumns: GeneratedColumn[];
}

/** Stored generated columns arrived in PostgreSQL 12, virtual ones (the default kind) in 18. */
export interface GeneratedColumn {
  name: string;
  kind: 'stored' | 'virtual';
}

/** A captured table the publication narrows (PostgreSQL 15+: pg_publication_rel.prqual / prattrs). */
export interface RestrictedTable {
  /** `schema.name`, as in publishedTables. */
  table: string;
  /** The row filter's WHERE expression (pg_get_expr), or null. */
  rowFilter: string | null;
  /** The published columns, in column order, or null when every column is published. */
  columns: string[] | null;
}

export interface PublicationFacts {
  allTables: boolean;
  insert: boolean;
  update: boolean;
  delete: boolean;
  /** null before PostgreSQL 11, which cannot publish TRUNCATE. */
  truncate: boolean | null;
  /** The wanted tables (`schema.name`) that the publication covers. */
  publishedTables: string[];
  /** PostgreSQL 18+ (pg_publication.pubgencols): whether stored generated columns are published; null before 18. */
  publishGeneratedColumns: 'none' | 'stored' | null;
  /** The wanted tables it publishes with a row filter or a column list (always empty before 15). */
  restrictedTables: RestrictedTable[];
}

export interface SlotFacts {
  slotType: string;
  plugin: string | null;
  database: string | null;
  active: boolean;
  activePid: number | null;
  /** application_name of the process holding the slot, when pg_stat_replication shows it to us. */
  readerApplication: string | null;
  restartLsn: string | null;
  confirmedFlushLsn: string | null;
  /** PostgreSQL 13+: reserved / extended / unreserved / lost. */
  walStatus: string | null;
  /** PostgreSQL 17+. */
  invalidationReason: string | null;
  /** PostgreSQL 16+: invalidated by a conflict with recovery (standbys). */
  conflicting: boolean | null;
  /** WAL the server keeps for this slot: pg_wal_lsn_diff(current LSN, restart_lsn). */
  retainedWalBytes: number | null;
}

/** A server too old to inspect further: pgoutput and publications arrived in PostgreSQL 10. */
export interface UnsupportedSourceFacts {
  supported: false;
  serverVersionNum: number;
  serverVersion: string;
}

export interface SupportedSourceFacts {
  supported: true;
  serverVersionNum: number;
  serverVersion: string;
  database: string;
  /** Amazon RDS or Aurora (detected by its `rds_replication` role): fixes go to the parameter group. */
  isRds: boolean;
  role: {
    name: string;
    superuser: boolean;
    replication: boolean;
    /** BYPASSRLS: row-level security never filters what the role reads. */
    bypassRls: boolean;
    rdsReplication: boolean;
    canCreateInDatabase: boolean;
  };
  settings: {
    walLevel: string;
    /** As the server shows it (`-1` = unlimited); null before PostgreSQL 13. */
    maxSlotWalKeepSize: string | null;
    maxReplicationSlots: number;
    maxWalSenders: number;
  };
  replicationSlotsInUse: number;
  walSendersInUse: number;
  tables: TableFacts[];
  publication: PublicationFacts | null;
  slot: SlotFacts | null;
}

export type SourceFacts = UnsupportedSourceFacts | SupportedSourceFacts;

/** `staff` → public.staff; `sales.staff` → sales.staff. */
export function splitTableName(table: string): { schema: string; name: string } {
  const dot = table.indexOf('.');
  return dot < 0
    ? { schema: 'public', name: table }
    : { schema: table.slice(0, dot), name: table.slice(dot + 1) };
}

// ---------------------------------------------------------------------------------------------
// Gathering facts: catalog reads only, every value a bind parameter.

const VersionRow = z.object({ version_num: z.number(), version: z.string() });

const ServerRow = z.object({
  database: z.string(),
  role: z.string(),
  superuser: z.boolean(),
  replication: z.boolean(),
  bypass_rls: z.boolean(),
  is_rds: z.boolean(),
  rds_replication: z.boolean(),
  can_create_in_database: z.boolean(),
  wal_level: z.string(),
  max_slot_wal_keep_size: z.string().nullable(),
  max_replication_slots: z.number(),
  max_wal_senders: z.number(),
  replication_slots_in_use: z.number(),
  wal_senders_in_use: z.number(),
});

const TableRow = z.object({
  schema: z.string(),
  name: z.string(),
  exists: z.boolean(),
  has_primary_key: z.boolean(),
  replica_identity: z.string().nullable(),
  can_select: z.boolean(),
  owned: z.boolean(),
  row_security: z.boolean(),
  force_row_security: z.boolean(),
  policies_show_every_row: z.boolean(),
  generated_columns: z.array(z.object({ name: z.string(), kind: z.enum(['s', 'v']) })),
});

// pg_publication and pg_replication_slots gained columns over the versions, so they are read whole
// as JSON (to_jsonb of the row) and the columns a version lacks are simply absent.
const PublicationRow = z.object({
  publication: z.object({
    puballtables: z.boolean(),
    pubinsert: z.boolean(),
    pubupdate: z.boolean(),
    pubdelete: z.boolean(),
    pubtruncate: z.boolean().optional(), // PostgreSQL 11+
    pubgencols: z.enum(['n', 's']).optional(), // PostgreSQL 18+
  }),
  published_tables: z.array(z.string()),
  restricted_tables: z.array(
    z.object({
      table: z.string(),
      row_filter: z.string().nullable(),
      columns: z.array(z.string()).nullable(),
    }),
  ),
});

// https://www.postgresql.org/docs/current/view-pg-replication-slots.html
const SlotRow = z.object({
  slot: z.object({
    slot_type: z.string(),
    plugin: z.string().nullable(),
    database: z.string().nullable(),
    active: z.boolean(),
    active_pid: z.number().nullable(),
    restart_lsn: z.string().nullable(),
    confirmed_flush_lsn: z.string().nullable(),
    wal_status: z.string().nullable().optional(), // 13+
    conflicting: z.boolean().nullable().optional(), // 16+
    invalidation_reason: z.string().nullable().optional(), // 17+
  }),
  reader_application: z.string().nullable(),
  retained_wal_bytes: z.number().nullable(),
});

async function queryRows<S extends z.ZodType>(
  client: Client,
  schema: S,
  sql: string,
  params: unknown[] = [],
): Promise<z.infer<S>[]> {
  const result = await client.query(sql, params);
  return result.rows.map((row) => schema.parse(row));
}

export async function gatherSourceFacts(client: Client, want: SourceWant): Promise<SourceFacts> {
  const [version] = await queryRows(
    client,
    VersionRow,
    `SELECT current_setting('server_version_num')::int AS version_num, current_setting('server_version') AS version`,
  );
  if (version.version_num < 100000)
    return { supported: false, serverVersionNum: version.version_num, serverVersion: version.version };

  const [server] = await queryRows(
    client,
    ServerRow,
    // rds_replication exists only on Amazon RDS and Aurora, where it stands in for the REPLICATION
    // attribute: https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/PostgreSQL.Concepts.General.FeatureSupport.LogicalReplication.html
    `SELECT current_database() AS database,
            r.rolname AS role,
            r.rolsuper AS superuser,
            r.rolreplication AS replication,
            r.rolbypassrls AS bypass_rls,
            EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_replication') AS is_rds,
            COALESCE((SELECT pg_has_role(r.oid, g.oid, 'MEMBER') FROM pg_roles g WHERE g.rolname = 'rds_replication'),
                     false) AS rds_replication,
            has_database_privilege(current_database(), 'CREATE') AS can_create_in_database,
            current_setting('wal_level') AS wal_level,
            current_setting('max_slot_wal_keep_size', true) AS max_slot_wal_keep_size,
            current_setting('max_replication_slots')::int AS max_replication_slots,
            current_setting('max_wal_senders')::int AS max_wal_senders,
            (SELECT count(*)::int FROM pg_replication_slots) AS replication_slots_in_use,
            (SELECT count(*)::int FROM pg_stat_replication) AS wal_senders_in_use
       FROM pg_roles r
      WHERE r.rolname = current_user`,
  );

  const names = want.tables.map(splitTableName);
  const schemas = names.map((n) => n.schema);
  const tables = names.map((n) => n.name);
  // pg_attribute.attgenerated arrived in 12: 's' stored, 'v' virtual (18+), '' not generated.
  const generatedColumns =
    version.version_num < 120000
      ? `'[]'::jsonb`
      : `COALESCE((SELECT jsonb_agg(jsonb_build_object('name', a.attname, 'kind', a.attgenerated) ORDER BY a.attnum)
                     FROM pg_attribute a
                    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> ''),
                  '[]'::jsonb)`;
  const tableRows = await queryRows(
    client,
    TableRow,
    // Ownership rights (membership in the owning role) are what CREATE PUBLICATION … FOR TABLE needs:
    // https://www.postgresql.org/docs/current/sql-createpublication.html
    `SELECT w.schema, w.name, c.oid IS NOT NULL AS exists,
            EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_primary_key,
            c.relreplident::text AS replica_identity,
            COALESCE(has_table_privilege(c.oid, 'SELECT'), false) AS can_select,
            COALESCE(pg_has_role(c.relowner, 'USAGE'), false) AS owned,
            COALESCE(c.relrowsecurity, false) AS row_security,
            COALESCE(c.relforcerowsecurity, false) AS force_row_security,
            -- A policy applies to the roles it names (0 = PUBLIC) and to their members; permissive
            -- ones widen what a role sees, restrictive ones narrow it:
            -- https://www.postgresql.org/docs/current/sql-createpolicy.html
            COALESCE(EXISTS (SELECT 1 FROM pg_policy p
                              WHERE p.polrelid = c.oid AND p.polpermissive AND p.polcmd IN ('r', '*')
                                AND pg_get_expr(p.polqual, p.polrelid) = 'true'
                                AND (0 = ANY (p.polroles) OR EXISTS (SELECT 1 FROM unnest(p.polroles) r
                                                                      WHERE r <> 0 AND pg_has_role(r, 'USAGE'))))
                     AND NOT EXISTS (SELECT 1 FROM pg_policy p
                                      WHERE p.polrelid = c.oid AND NOT p.polpermissive AND p.polcmd IN ('r', '*')
                                        AND pg_get_expr(p.polqual, p.polrelid) IS DISTINCT FROM 'true'
                                        AND (0 = ANY (p.polroles) OR EXISTS (SELECT 1 FROM unnest(p.polroles) r
                                                                              WHERE r <> 0 AND pg_has_role(r, 'USAGE')))),
                     false) AS policies_show_every_row,
            ${generatedColumns} AS generated_columns
       FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS w(schema, name, ord)
       LEFT JOIN pg_namespace n ON n.nspname = w.schema
       LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.name AND c.relkind IN ('r', 'p')
      ORDER BY w.ord`,
    [schemas, tables],
  );

  // Row filters and column lists arrived in 15; only tables listed FOR TABLE can have them:
  // https://www.postgresql.org/docs/current/catalog-pg-publication-rel.html
  const restrictedTables =
    version.version_num < 150000
      ? `'[]'::jsonb`
      : `COALESCE((SELECT jsonb_agg(jsonb_build_object(
                            'table', w.schema || '.' || w.name,
                            'row_filter', pg_get_expr(pr.prqual, pr.prrelid),
                            'columns', (SELECT array_agg(a.attname ORDER BY a.attnum)
                                          FROM pg_attribute a
                                         WHERE a.attrelid = pr.prrelid AND a.attnum = ANY (pr.prattrs::int2[]))))
                     FROM pg_publication_rel pr
                     JOIN pg_class c ON c.oid = pr.prrelid
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                     JOIN unnest($2::text[], $3::text[]) AS w(schema, name) ON w.schema = n.nspname AND w.name = c.relname
                    WHERE pr.prpubid = p.oid AND (pr.prqual IS NOT NULL OR pr.prattrs IS NOT NULL)),
                  '[]'::jsonb)`;
  // pg_publication_tables expands FOR ALL TABLES and FOR TABLES IN SCHEMA into the tables covered.
  const [publication = null] = await queryRows(
    client,
    PublicationRow,
    `SELECT to_jsonb(p) AS publication,
            ARRAY(SELECT t.schemaname || '.' || t.tablename
                    FROM pg_publication_tables t
                    JOIN unnest($2::text[], $3::text[]) AS w(schema, name)
                      ON w.schema = t.schemaname AND w.name = t.tablename
                   WHERE t.pubname = p.pubname) AS published_tables,
            ${restrictedTables} AS restricted_tables
       FROM pg_publication p
      WHERE p.pubname = $1`,
    [want.publication, schemas, tables],
  );

  const [slot = null] = await queryRows(
    client,
    SlotRow,
    // A standby has no current WAL insert position; there the replay position is the newest WAL.
    `SELECT to_jsonb(s) AS slot,
            r.application_name AS reader_application,
            pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END,
                            s.restart_lsn)::float8 AS retained_wal_bytes
       FROM pg_replication_slots s
       LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
      WHERE s.slot_name = $1`,
    [want.slot],
  );

  return {
    supported: true,
    serverVersionNum: version.version_num,
    serverVersion: version.version,
    database: server.database,
    isRds: server.is_rds,
    role: {
      name: server.role,
      superuser: server.superuser,
      replication: server.replication,
      bypassRls: server.bypass_rls,
      rdsReplication: server.rds_replication,
      canCreateInDatabase: server.can_create_in_database,
    },
    settings: {
      walLevel: server.wal_level,
      maxSlotWalKeepSize: server.max_slot_wal_keep_size,
      maxReplicationSlots: server.max_replication_slots,
      maxWalSenders: server.max_wal_senders,
    },
    replicationSlotsInUse: server.replication_slots_in_use,
    walSendersInUse: server.wal_senders_in_use,
    tables: tableRows.map((t, i) => ({
      table: want.tables[i],
      schema: t.schema,
      name: t.name,
      exists: t.exists,
      hasPrimaryKey: t.has_primary_key,
      replicaIdentity: t.replica_identity,
      canSelect: t.can_select,
      owned: t.owned,
      rowSecurity: t.row_security,
      forceRowSecurity: t.force_row_security,
      policiesShowEveryRow: t.policies_show_every_row,
      generatedColumns: t.generated_columns.map((g) => ({
        name: g.name,
        kind: g.kind === 's' ? ('stored' as const) : ('virtual' as const),
      })),
    })),
    publication: publication && {
      allTables: publication.publication.puballtables,
      insert: publication.publication.pubinsert,
      update: publication.publication.pubupdate,
      delete: publication.publication.pubdelete,
      truncate: publication.publication.pubtruncate ?? null,
      publishedTables: publication.published_tables,
      publishGeneratedColumns:
        publication.publication.pubgencols === undefined
          ? null
          : publication.publication.pubgencols === 's'
            ? 'stored'
            : 'none',
      restrictedTables: publication.restricted_tables.map((r) => ({
        table: r.table,
        rowFilter: r.row_filter,
        columns: r.columns,
      })),
    },
    slot: slot && {
      slotType: slot.slot.slot_type,
      plugin: slot.slot.plugin,
      database: slot.slot.database,
      active: slot.slot.active,
      activePid: slot.slot.active_pid,
      readerApplication: slot.reader_application,
      restartLsn: slot.slot.restart_lsn,
      confirmedFlushLsn: slot.slot.confirmed_flush_lsn,
      walStatus: slot.slot.wal_status ?? null,
      invalidationReason: slot.slot.invalidation_reason ?? null,
      conflicting: slot.slot.conflicting ?? null,
      retainedWalBytes: slot.retained_wal_bytes,
    },
  };
}

/** Gathers and evaluates: what the capture service runs at start-up. */
export async function checkSource(client: Client, want: SourceWant): Promise<Finding[]> {
  return evaluateSource(await gatherSourceFacts(client, want), want);
}

// ---------------------------------------------------------------------------------------------
// Evaluating facts: pure.

export function evaluateSource(facts: SourceFacts, want: SourceWant): Finding[] {
  if (!facts.supported) return checkServerVersion(facts);
  return [
    ...checkServerVersion(facts),
    ...checkWalLevel(facts),
    ...checkReplicationPrivilege(facts),
    ...checkTables(facts, want),
    ...checkPublication(facts, want),
    ...checkSlotWalLimit(facts),
    ...checkSlot(facts, want),
    ...checkWalSenders(facts),
  ];
}

function info(id: FindingId, problem: string): Finding[] {
  return [{ id, severity: SEVERITY.info, problem }];
}

/** The RDS/Aurora variant of a fix, alone when we know the server is RDS, as a second line otherwise. */
function withRdsVariant(facts: SupportedSourceFacts, selfManaged: string, rds: string): string {
  return facts.isRds ? rds : `${selfManaged}\nOn Amazon RDS or Aurora: ${rds}`;
}

function checkServerVersion(facts: SourceFacts): Finding[] {
  const version = `PostgreSQL ${facts.serverVersion}`;
  const upgrade = `Upgrade the source to PostgreSQL ${OLDEST_SUPPORTED_MAJOR} or later (15 or later recommended).`;
  // pgoutput and publications arrived in 10: https://www.postgresql.org/docs/10/logical-replication.html
  if (facts.serverVersionNum < 100000)
    return [
      {
        id: FINDING.serverVersion,
        severity: SEVERITY.error,
        problem: `${version} has no pgoutput logical decoding (PostgreSQL 10 or later is required).`,
        fix: upgrade,
      },
    ];
  // Capture starts pgoutput with messages 'true' (its heartbeats are pg_logical_emit_message), an
  // option added in 14: https://www.postgresql.org/docs/14/protocol-logical-replication.html — an
  // older server rejects START_REPLICATION, after the slot exists and the snapshot ran. A lost slot
  // is recognised by pg_replication_slots.wal_status, added in 13:
  // https://www.postgresql.org/docs/13/view-pg-replication-slots.html
  if (facts.serverVersionNum < OLDEST_SUPPORTED_MAJOR * 10000)
    return [
      {
        id: FINDING.serverVersion,
        severity: SEVERITY.error,
        problem:
          `${version} cannot run capture: its heartbeats are logical decoding messages, which pgoutput ` +
          "streams only from PostgreSQL 14 on (the 'messages' option of START_REPLICATION)" +
          (facts.serverVersionNum < 130000
            ? ", and it reads a slot's health from pg_replication_slots.wal_status, which arrived in 13"
            : '') +
          '. The initial snapshot would run, then every start of the stream would fail while the slot pins WAL.',
        fix: upgrade,
      },
    ];
  // 15 stopped sending empty transactions (release notes: https://www.postgresql.org/docs/release/15.0/);
  // a major is supported for five years: https://www.postgresql.org/support/versioning/
  if (facts.serverVersionNum < 150000)
    return [
      {
        id: FINDING.serverVersion,
        severity: SEVERITY.warning,
        problem:
          `${version} works (the oldest major totes is tested with), but 15 or later is recommended: ` +
          '14 streams every unrelated transaction as an empty BEGIN/COMMIT pair, and its community support ' +
          'ends in November 2026.',
        fix: 'Plan an upgrade to PostgreSQL 15 or later.',
      },
    ];
  if (facts.serverVersionNum >= (NEWEST_TESTED_MAJOR + 1) * 10000)
    return [
      {
        id: FINDING.serverVersion,
        severity: SEVERITY.warning,
        problem: `${version} is newer than the newest major totes is tested with (${NEWEST_TESTED_MAJOR}): it is expected to work, but untested.`,
      },
    ];
  return info(FINDING.serverVersion, version);
}

// https://www.postgresql.org/docs/current/runtime-config-wal.html#GUC-WAL-LEVEL
function checkWalLevel(facts: SupportedSourceFacts): Finding[] {
  const level = facts.settings.walLevel;
  if (level === 'logical') return info(FINDING.walLevel, 'wal_level is logical');
  return [
    {
      id: FINDING.walLevel,
      severity: SEVERITY.error,
      problem: `wal_level is '${level}'; logical decoding needs 'logical'.`,
      fix: withRdsVariant(
        facts,
        'ALTER SYSTEM SET wal_level = logical;  -- then restart Postgres',
        'set rds.logical_replication = 1 in the DB parameter group (DB cluster parameter group on Aurora), then reboot.',
      ),
    },
  ];
}

// https://www.postgresql.org/docs/current/logical-replication-security.html
function checkReplicationPrivilege(facts: SupportedSourceFacts): Finding[] {
  const { role } = facts;
  if (role.superuser) return info(FINDING.replicationPrivilege, `Role ${role.name} is a superuser`);
  if (role.replication) return info(FINDING.replicationPrivilege, `Role ${role.name} has REPLICATION`);
  if (role.rdsReplication) return info(FINDING.replicationPrivilege, `Role ${role.name} has rds_replication`);
  const name = ident(role.name);
  return [
    {
      id: FINDING.replicationPrivilege,
      severity: SEVERITY.error,
      problem:
        `Role ${role.name} can neither create a replication slot nor stream from one: ` +
        `it has no REPLICATION attribute${facts.isRds ? ' and no rds_replication role' : ''} and is not a superuser.`,
      fix: withRdsVariant(facts, `ALTER ROLE ${name} WITH REPLICATION;`, `GRANT rds_replication TO ${name};`),
    },
  ];
}

function qualified(t: { schema: string; name: string }): string {
  return `${ident(t.schema)}.${ident(t.name)}`;
}

function listTables(tables: TableFacts[]): string {
  return tables.map((t) => t.table).join(', ');
}

// A new primary key does not change an explicit REPLICA IDENTITY NOTHING, hence three fixes.
function replicaIdentityFix(t: TableFacts): string {
  const table = qualified(t);
  if (t.replicaIdentity === 'd')
    return `ALTER TABLE ${table} ADD PRIMARY KEY (…);  -- or, with no unique key: ALTER TABLE ${table} REPLICA IDENTITY FULL;`;
  return t.hasPrimaryKey
    ? `ALTER TABLE ${table} REPLICA IDENTITY DEFAULT;`
    : `ALTER TABLE ${table} REPLICA IDENTITY FULL;`;
}

function checkTables(facts: SupportedSourceFacts, want: SourceWant): Finding[] {
  const findings: Finding[] = [];
  const missing = facts.tables.filter((t) => !t.exists);
  const present = facts.tables.filter((t) => t.exists);
  if (missing.length > 0)
    findings.push({
      id: FINDING.tablesMissing,
      severity: SEVERITY.error,
      problem: `${plural(missing.length, 'captured table')} missing from database ${facts.database}: ${listTables(missing)}.`,
      fix: 'Connect to the database that holds the tables (check the URL), create them, or stop capturing them (--tables).',
    });

  // The initial snapshot copies every captured table with plain SELECTs.
  const unreadable = present.filter((t) => !t.canSelect);
  if (unreadable.length > 0)
    findings.push({
      id: FINDING.tableSelect,
      severity: SEVERITY.error,
      problem: `Role ${facts.role.name} cannot SELECT from ${listTables(unreadable)}, which the initial snapshot reads.`,
      fix: `GRANT SELECT ON ${unreadable.map(qualified).join(', ')} TO ${ident(facts.role.name)};`,
    });

  // Without a replica identity Postgres cannot say which row an UPDATE or DELETE touched, and once
  // the table is in a publication that publishes them it rejects those statements outright:
  // https://www.postgresql.org/docs/current/logical-replication-publication.html
  const unidentified = present.filter(
    (t) => t.replicaIdentity === 'n' || (t.replicaIdentity === 'd' && !t.hasPrimaryKey),
  );
  if (unidentified.length > 0)
    findings.push({
      id: FINDING.replicaIdentity,
      severity: SEVERITY.error,
      problem:
        'Updates and deletes cannot be identified on ' +
        unidentified
          .map(
            (t) =>
              `${t.table} (${t.replicaIdentity === 'n' ? 'replica identity NOTHING' : 'no primary key'})`,
          )
          .join(', ') +
        '.',
      fix: unidentified.map(replicaIdentityFix).join('\n'),
    });

  findings.push(...checkRowSecurity(facts, present), ...checkGeneratedColumns(facts, present, want));

  return findings.length > 0
    ? findings
    : info(
        FINDING.tables,
        `All captured tables (${facts.tables.length}) exist, are readable and identify their rows`,
      );
}

/**
 * Row security applies to a role that is neither superuser nor BYPASSRLS, unless it owns the table
 * and the table does not FORCE it: https://www.postgresql.org/docs/current/ddl-rowsecurity.html.
 * The snapshot's SELECT is filtered then, while logical decoding sees every change.
 */
function checkRowSecurity(facts: SupportedSourceFacts, present: TableFacts[]): Finding[] {
  const { role } = facts;
  if (role.superuser || role.bypassRls) return [];
  const filtered = present.filter(
    (t) => t.rowSecurity && (!t.owned || t.forceRowSecurity) && !t.policiesShowEveryRow,
  );
  if (filtered.length === 0) return [];
  const name = ident(role.name);
  return [
    {
      id: FINDING.rowSecurity,
      severity: SEVERITY.error,
      problem:
        `Row-level security filters what role ${role.name} reads from ${listTables(filtered)}: the initial ` +
        'snapshot would copy only the rows its policies show, while the stream carries every change ' +
        '(logical decoding ignores row security).',
      fix: [
        `As a superuser: ALTER ROLE ${name} BYPASSRLS;`,
        `Or, as the table owner, a policy that shows the role every row: ${filtered
          .map(
            (t) =>
              `CREATE POLICY totes_capture_reads_all ON ${qualified(t)} FOR SELECT TO ${name} USING (true);`,
          )
          .join(' ')}`,
      ].join('\n'),
    },
  ];
}

/**
 * The snapshot reads every column; logical replication publishes no generated column before 18,
 * and from 18 on stored ones only with publish_generated_columns = stored, virtual ones never:
 * https://www.postgresql.org/docs/18/logical-replication-gencols.html
 */
function checkGeneratedColumns(
  facts: SupportedSourceFacts,
  present: TableFacts[],
  want: SourceWant,
): Finding[] {
  const pg18 = facts.serverVersionNum >= 180000;
  const storedPublished = pg18 && facts.publication?.publishGeneratedColumns === 'stored';
  const unpublished = present.flatMap((t) =>
    t.generatedColumns
      .filter((c) => c.kind === 'virtual' || !storedPublished)
      .map((column) => ({ table: t, column })),
  );
  if (unpublished.length === 0) return [];
  const listed = unpublished
    .map(({ table, column }) => `${table.table}.${column.name} (${column.kind})`)
    .join(', ');
  const problem = `The initial snapshot reads generated columns that the stream does not carry: ${listed}. `;
  if (!pg18)
    return [
      {
        id: FINDING.generatedColumns,
        severity: SEVERITY.error,
        problem:
          problem +
          'Logical replication publishes no generated column before PostgreSQL 18, so every later change would arrive without them.',
        fix: [
          `Make each a plain column the application writes: ${unpublished
            .map(
              ({ table, column }) =>
                `ALTER TABLE ${qualified(table)} ALTER COLUMN ${ident(column.name)} DROP EXPRESSION;`,
            )
            .join(' ')}`,
          'Or stop capturing the table and compute the value in the warehouse; on PostgreSQL 18 a publication can publish stored generated columns.',
        ].join('\n'),
      },
    ];
  const fixes: string[] = [];
  if (unpublished.some(({ column }) => column.kind === 'stored')) {
    const name = ident(want.publication);
    fixes.push(
      facts.publication
        ? `ALTER PUBLICATION ${name} SET (publish_generated_columns = stored);`
        : `CREATE PUBLICATION ${name} FOR TABLE ${facts.tables.map(qualified).join(', ')} WITH (publish_generated_columns = stored);`,
    );
  }
  if (unpublished.some(({ column }) => column.kind === 'virtual'))
    fixes.push(
      'Virtual columns are never published: make each STORED (drop and add it again with GENERATED ALWAYS AS (…) STORED), or compute it in the warehouse.',
    );
  return [
    {
      id: FINDING.generatedColumns,
      severity: SEVERITY.error,
      problem:
        problem +
        'PostgreSQL 18 publishes stored generated columns only when the publication sets publish_generated_columns = stored, and virtual ones never.',
      fix: fixes.join('\n'),
    },
  ];
}

/**
 * A row filter or column list narrows the stream, never the snapshot, which reads whole tables.
 * Dropping the table from the publication and adding it back in one transaction removes both
 * without a moment in which its changes go unpublished.
 * https://www.postgresql.org/docs/current/logical-replication-row-filter.html
 * https://www.postgresql.org/docs/current/logical-replication-col-lists.html
 */
function checkRestrictedTables(
  facts: SupportedSourceFacts,
  publication: PublicationFacts,
  want: SourceWant,
): Finding[] {
  const byName = new Map(facts.tables.map((t) => [`${t.schema}.${t.name}`, t]));
  const name = ident(want.publication);
  const findings: Finding[] = [];
  for (const r of publication.restrictedTables) {
    const t = byName.get(r.table);
    if (!t) continue;
    const table = qualified(t);
    const fix =
      `BEGIN; ALTER PUBLICATION ${name} DROP TABLE ${table}; ALTER PUBLICATION ${name} ADD TABLE ${table}; COMMIT;` +
      '  -- one transaction, so no change falls between';
    if (r.rowFilter !== null)
      findings.push({
        id: FINDING.publicationRowFilter,
        severity: SEVERITY.error,
        problem:
          `Publication ${want.publication} publishes only the rows of ${t.table} WHERE ${r.rowFilter}: the initial ` +
          'snapshot copies every row, but the stream carries changes only for rows that match, so the others ' +
          'would stay in the warehouse, never updated or deleted.',
        fix,
      });
    if (r.columns !== null)
      findings.push({
        id: FINDING.publicationColumnList,
        severity: SEVERITY.error,
        problem:
          `Publication ${want.publication} publishes only some columns of ${t.table} (${r.columns.join(', ')}): ` +
          'the initial snapshot reads every column, the stream only those, and a column added later would never arrive.',
        fix,
      });
  }
  return findings;
}

// https://www.postgresql.org/docs/current/sql-createpublication.html
function checkPublication(facts: SupportedSourceFacts, want: SourceWant): Finding[] {
  const name = ident(want.publication);
  const present = facts.tables.filter((t) => t.exists);
  const publication = facts.publication;
  if (!publication) {
    const create = `CREATE PUBLICATION ${name} FOR TABLE ${facts.tables.map(qualified).join(', ')};`;
    const canCreate =
      facts.role.superuser || (facts.role.canCreateInDatabase && present.every((t) => t.owned));
    return canCreate
      ? [
          {
            id: FINDING.publicationMissing,
            // Nothing for a person to do (like a slot that does not exist yet): capture creates it.
            severity: SEVERITY.info,
            problem: `Publication ${want.publication} does not exist yet; capture creates it at start-up (role ${facts.role.name} has the rights to).`,
            fix: `To create it ahead of time: ${create}`,
          },
        ]
      : [
          {
            id: FINDING.publicationMissing,
            severity: SEVERITY.error,
            problem:
              `Publication ${want.publication} does not exist, and role ${facts.role.name} cannot create it ` +
              `(that needs CREATE on database ${facts.database} and ownership of every captured table).`,
            fix: `As the tables' owner or a superuser: ${create}`,
          },
        ];
  }

  const findings: Finding[] = [];
  const published = new Set(publication.publishedTables);
  const unpublished = present.filter((t) => !published.has(`${t.schema}.${t.name}`));
  if (unpublished.length > 0)
    findings.push({
      id: FINDING.publicationTables,
      severity: SEVERITY.error,
      problem: `Publication ${want.publication} does not include ${listTables(unpublished)}: their changes would never arrive.`,
      fix: `ALTER PUBLICATION ${name} ADD TABLE ${unpublished.map(qualified).join(', ')};`,
    });

  const missingOps = (['insert', 'update', 'delete'] as const).filter((op) => !publication[op]);
  // TRUNCATE left unpublished leaves the warehouse holding rows the source no longer has; servers
  // before 11 cannot publish it at all (truncate === null), so there it is not asked for.
  const truncateMissing = publication.truncate === false;
  if (missingOps.length > 0 || truncateMissing) {
    const all = publication.truncate === null ? 'insert, update, delete' : 'insert, update, delete, truncate';
    findings.push({
      id: FINDING.publicationOperations,
      severity: missingOps.length > 0 ? SEVERITY.error : SEVERITY.warning,
      problem: `Publication ${want.publication} does not publish ${[...missingOps, ...(truncateMissing ? ['truncate'] : [])].join(', ')}.`,
      fix: `ALTER PUBLICATION ${name} SET (publish = '${all}');`,
    });
  }
  findings.push(...checkRestrictedTables(facts, publication, want));

  return findings.length > 0
    ? findings
    : info(
        FINDING.publication,
        `Publication ${want.publication} covers every captured table${publication.allTables ? ' (FOR ALL TABLES)' : ''}`,
      );
}

// A slot that stops being read pins WAL until the disk fills, unless this caps it:
// https://www.postgresql.org/docs/current/runtime-config-replication.html#GUC-MAX-SLOT-WAL-KEEP-SIZE
function checkSlotWalLimit(facts: SupportedSourceFacts): Finding[] {
  const value = facts.settings.maxSlotWalKeepSize;
  if (value === null)
    return [
      {
        id: FINDING.slotWalLimit,
        severity: SEVERITY.warning,
        problem: `PostgreSQL ${facts.serverVersion} cannot cap the WAL a slot retains (max_slot_wal_keep_size arrived in 13): a stuck slot can fill the disk.`,
        fix: 'Upgrade to PostgreSQL 13 or later (15+ recommended), and alert on the retained WAL that totes reports.',
      },
    ];
  if (value === '-1')
    return [
      {
        id: FINDING.slotWalLimit,
        severity: SEVERITY.warning,
        problem:
          'max_slot_wal_keep_size is unset (-1): a stuck or abandoned slot can retain WAL until the disk fills.',
        fix: withRdsVariant(
          facts,
          "ALTER SYSTEM SET max_slot_wal_keep_size = '50GB'; SELECT pg_reload_conf();  -- pick a size well below the free disk",
          'set max_slot_wal_keep_size (in MB, e.g. 51200) in the DB parameter group; it applies without a reboot.',
        ),
      },
    ];
  return info(FINDING.slotWalLimit, `max_slot_wal_keep_size is ${value}`);
}

function literal(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

function checkSlot(facts: SupportedSourceFacts, want: SourceWant): Finding[] {
  const slot = facts.slot;
  if (!slot) {
    // https://www.postgresql.org/docs/current/runtime-config-replication.html#GUC-MAX-REPLICATION-SLOTS
    if (facts.replicationSlotsInUse >= facts.settings.maxReplicationSlots)
      return [
        {
          id: FINDING.slotCapacity,
          severity: SEVERITY.error,
          problem:
            `Slot ${want.slot} does not exist and cannot be created: all ${facts.settings.maxReplicationSlots} ` +
            'replication slots (max_replication_slots) are taken.',
          fix:
            'Drop a slot nobody reads (SELECT slot_name, active FROM pg_replication_slots;), or raise the limit:\n' +
            withRdsVariant(
              facts,
              `ALTER SYSTEM SET max_replication_slots = ${facts.settings.maxReplicationSlots + 1};  -- then restart Postgres`,
              'raise max_replication_slots in the DB parameter group, then reboot.',
            ),
        },
      ];
    return info(
      FINDING.slot,
      `Slot ${want.slot} does not exist yet; capture creates it (${facts.replicationSlotsInUse} of ` +
        `${facts.settings.maxReplicationSlots} slots in use)`,
    );
  }

  const findings: Finding[] = [];
  const drop = `SELECT pg_drop_replication_slot(${literal(want.slot)});`;
  const retained =
    slot.retainedWalBytes === null ? '' : `; it retains ${formatBytes(slot.retainedWalBytes)} of WAL`;

  if (slot.database !== facts.database)
    findings.push({
      id: FINDING.slotDatabase,
      severity: SEVERITY.error,
      problem:
        slot.database === null
          ? `Slot ${want.slot} is a physical slot, not a logical one.`
          : `Slot ${want.slot} belongs to database ${slot.database}, not ${facts.database} (slot names are cluster-wide).`,
      fix: `Choose another slot name, or, if nothing uses that slot: ${drop}`,
    });
  else if (slot.plugin !== 'pgoutput')
    findings.push({
      id: FINDING.slotPlugin,
      severity: SEVERITY.error,
      problem: `Slot ${want.slot} decodes with ${slot.plugin}; capture needs pgoutput.`,
      fix: `Choose another slot name, or, if nothing uses that slot: ${drop}`,
    });

  // Postgres lets one process stream from a slot at a time; a second reader gets "slot is active".
  if (slot.active) {
    const pid = slot.activePid === null ? 'another process' : `pid ${slot.activePid}`;
    const app = slot.readerApplication ? ` (application_name ${slot.readerApplication})` : '';
    findings.push({
      id: FINDING.slotActive,
      severity: SEVERITY.error,
      problem: `Slot ${want.slot} is in use by ${pid}${app}${retained}.`,
      fix:
        'Stop the other reader, or choose another slot name. If it is a stale capture: ' +
        `SELECT pg_terminate_backend(${slot.activePid ?? 'pid'});`,
    });
  }

  // An invalidated slot can never stream again; only a new slot plus a full resync recovers:
  // https://www.postgresql.org/docs/current/view-pg-replication-slots.html
  const invalidated =
    slot.walStatus === 'lost' || slot.invalidationReason !== null || slot.conflicting === true;
  if (invalidated) {
    const reason =
      slot.invalidationReason ?? (slot.walStatus === 'lost' ? 'wal_removed' : 'conflict with recovery');
    findings.push({
      id: FINDING.slotInvalidated,
      severity: SEVERITY.error,
      problem: `Slot ${want.slot} was invalidated (${reason}): the WAL it needed is gone, so changes were lost.`,
      fix: `${drop}  -- then start capture: it creates the slot again and takes a full snapshot (resync)`,
    });
  } else if (slot.walStatus === 'unreserved')
    findings.push({
      id: FINDING.slotWalAtRisk,
      severity: SEVERITY.warning,
      problem: `Slot ${want.slot} is about to lose WAL it needs (wal_status unreserved)${retained}: the next checkpoint may invalidate it.`,
      fix: 'Start capture now so the slot catches up, or raise max_slot_wal_keep_size.',
    });

  return findings.length > 0
    ? findings
    : info(
        FINDING.slot,
        `Slot ${want.slot} exists (pgoutput, not in use), resumes from ${slot.confirmedFlushLsn ?? slot.restartLsn}${retained}`,
      );
}

// Every replication connection takes a WAL sender: https://www.postgresql.org/docs/current/runtime-config-replication.html#GUC-MAX-WAL-SENDERS
function checkWalSenders(facts: SupportedSourceFacts): Finding[] {
  const { maxWalSenders } = facts.settings;
  if (facts.walSendersInUse >= maxWalSenders)
    return [
      {
        id: FINDING.walSenders,
        severity: SEVERITY.error,
        problem: `All ${maxWalSenders} WAL senders (max_wal_senders) are in use: capture's replication connection would be refused.`,
        fix: withRdsVariant(
          facts,
          `ALTER SYSTEM SET max_wal_senders = ${maxWalSenders + 1};  -- then restart Postgres`,
          'raise max_wal_senders in the DB parameter group, then reboot.',
        ),
      },
    ];
  return info(FINDING.walSenders, `${facts.walSendersInUse} of ${maxWalSenders} WAL senders in use`);
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

// Keywords that cannot be table or role names unquoted (reserved, and reserved-can-be-function-or-type):
// https://www.postgresql.org/docs/current/sql-keywords-appendix.html
const RESERVED_WORDS = new Set(
  (
    'all analyse analyze and any array as asc asymmetric authorization binary both case cast check collate ' +
    'collation column concurrently constraint create cross current_catalog current_date current_role ' +
    'current_schema current_time current_timestamp current_user default deferrable desc distinct do else end ' +
    'except false fetch for foreign freeze from full grant group having ilike in initially inner intersect into ' +
    'is isnull join lateral leading left like limit localtime localtimestamp natural not notnull null offset on ' +
    'only or order outer overlaps placing primary references returning right select session_user similar some ' +
    'symmetric system_user table tablesample then to trailing true union unique user using variadic verbose ' +
    'when where window with'
  ).split(' '),
);

/** An identifier for the fix SQL we print: bare when Postgres reads it back unchanged, quoted otherwise. */
export function ident(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) && !RESERVED_WORDS.has(name)
    ? name
    : `"${name.replaceAll('"', '""')}"`;
}
