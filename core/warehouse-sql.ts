import {
  WAREHOUSE_TABLES,
  type WarehouseColumn,
  type WarehouseRow,
  type WarehouseTable,
  type WarehouseTableName,
  type WarehouseType,
} from './warehouse-model';

/**
 * SQL the load stage runs against the warehouse, as pure builders: each returns the statement text
 * and its parameters; nothing here talks to Postgres. Two rules hold for every statement:
 * - every identifier is double-quoted (`quoteIdent`), and comes from core/warehouse-model.ts;
 * - every value is a parameter. Rows go in column-wise, one array parameter per column, expanded by
 *   `unnest($1::integer[], $2::text[], …)`, so one statement loads a whole object whatever its size
 *   (a multi-row VALUES list would hit the 65,535-parameter limit) and nothing is spliced into SQL.
 *   Column names used as data (`'city' = ANY("_toast_pending")`) are parameters too.
 *
 * Ordering rules (what makes loads idempotent and order-proof, see the migration's header):
 * - dimensions and staging tables keep the values of the highest (_lsn, _seq); deletes are kept as
 *   their own position (`_deleted_lsn`, `_deleted_seq`); `_deleted` says which is newer;
 * - facts insert a version at most once (ON CONFLICT on (key, _lsn, _seq) DO NOTHING);
 * - rows are fed in key order so that concurrent loads lock rows in the same order (no deadlocks).
 *
 * Row comparisons `(a, b) > (c, d)` compare lexicographically:
 * https://www.postgresql.org/docs/current/functions-comparisons.html#ROW-WISE-COMPARISON
 * INSERT … ON CONFLICT: https://www.postgresql.org/docs/current/sql-insert.html#SQL-ON-CONFLICT
 */

export interface SqlStatement {
  text: string;
  values: unknown[];
}

/** What a NOT NULL text column of a placeholder row reads, until the real row arrives. */
export const PLACEHOLDER_TEXT = '(unknown)';

/** Position of placeholder rows: lower than any real change, so the real row always replaces it. */
export const PLACEHOLDER_LSN = '0/0';

/**
 * First key of every advisory lock the warehouse code takes (the ASCII of "tote"), so they never
 * collide with another application's locks in the same database.
 * https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-ADVISORY-LOCKS
 */
export const WAREHOUSE_LOCK_NAMESPACE = 0x746f7465;

/**
 * Second key of each advisory lock. Fixed numbers, never derived from a list's order: during a
 * rolling deployment old and new code must agree on them.
 */
export const WAREHOUSE_LOCK_IDS = {
  migrations: 0,
  dim_staff: 1,
  dim_counterparty: 2,
  fact_sales_order: 3,
  fact_purchase_order: 4,
  fact_payment: 5,
  /** Snapshot bookkeeping (rows seen, end markers, reconciliation): taken last in a load. */
  snapshots: 6,
  // A dimension's or staging table's loads (dimensionLoadLock): first in their transactions.
  dim_location: 7,
  dim_currency: 8,
  dim_design: 9,
  dim_payment_type: 10,
  dim_transaction: 11,
  stg_department: 12,
  stg_staff: 13,
  stg_counterparty: 14,
  pipeline_heartbeat: 15,
} as const;

/** Base class of every error this module throws. */
export class WarehouseSqlError extends Error {
  override name = 'WarehouseSqlError';
}

/** A builder was asked for a statement that does not apply to the table (a programming error). */
export class UnsupportedTableError extends WarehouseSqlError {
  override name = 'UnsupportedTableError';
  constructor(
    readonly table: string,
    readonly operation: string,
  ) {
    super(`${operation} does not apply to warehouse table ${table}`);
  }
}

/** Double-quotes an identifier (https://www.postgresql.org/docs/current/sql-syntax-lexical.html). */
export function quoteIdent(name: string): string {
  if (name.includes('\u0000')) throw new WarehouseSqlError('identifier contains a NUL byte');
  return `"${name.replace(/"/g, '""')}"`;
}

const PG_TYPES: Readonly<Record<WarehouseType, string>> = {
  int: 'integer',
  text: 'text',
  varchar: 'varchar',
  'numeric(10,2)': 'numeric(10,2)',
  date: 'date',
  // Times keep their milliseconds, and no more (the source is timestamp(3)).
  time: 'time(3)',
  boolean: 'boolean',
};

/** The Postgres type a model type is stored as. */
export function pgType(type: WarehouseType): string {
  return PG_TYPES[type];
}

/** Text types: the only ones that can arrive as unchanged TOAST values (see load-batch.ts). */
export function isTextType(type: WarehouseType): boolean {
  return type === 'text' || type === 'varchar';
}

/** A source change of one row of a dimension, staging table or fact, ready to be written. */
/** A source position: capture generation, commit LSN (canonical text), ordinal. */
export interface Position {
  epoch: number;
  lsn: string;
  seq: number;
}

export interface VersionedRow extends Position {
  /** The table's columns in canonical form (see core/warehouse-model.ts). */
  values: WarehouseRow;
  /** Commit time, ISO 8601. */
  commitTs: string;
  /** Columns whose value did not come with the change (unchanged TOAST): text columns only. */
  unchanged: readonly string[];
  /** Hash of the whole source row (null when not known whole). */
  rowHash: string | null;
  /** Read by a snapshot (a state), not a change from the WAL. */
  snapshot: boolean;
}

/** A delete of one source row. */
export interface DeleteMark extends Position {
  key: number;
  /** Commit time, ISO 8601 (facts record it). */
  commitTs?: string;
}

/** A TRUNCATE of a source table, or a snapshot's end marker: an event of the whole table. */
export interface TableEvent extends Position {
  commitTs: string;
}

function tableOf(name: WarehouseTableName, kinds: readonly string[], operation: string): WarehouseTable {
  const table = WAREHOUSE_TABLES[name];
  if (!kinds.includes(table.kind)) throw new UnsupportedTableError(name, operation);
  return table;
}

function valueColumns(table: WarehouseTable): WarehouseColumn[] {
  return table.columns.filter((c) => c.name !== table.key);
}

function keyColumn(table: WarehouseTable): WarehouseColumn {
  return table.columns.find((c) => c.name === table.key)!;
}

/** What a column of a row whose value is unknown holds: the placeholder text, or NULL. */
function unknownValue(c: WarehouseColumn): string | null {
  return !c.nullable && isTextType(c.type) ? PLACEHOLDER_TEXT : null;
}

/** Collects parameters; `add` returns the `$n` to use in the text. */
class Params {
  readonly values: unknown[] = [];
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

/** Orders rows by key, then position, so every statement locks rows in the same order. */
function byKeyThenPosition(key: string) {
  return (a: VersionedRow, b: VersionedRow): number =>
    Number(a.values[key]) - Number(b.values[key]) || comparePosition(a, b);
}

/** Compares positions: epoch (absent = 0), then canonical LSN text, then ordinal. */
export function comparePosition(
  a: { epoch?: number; lsn: string; seq: number },
  b: { epoch?: number; lsn: string; seq: number },
): number {
  const epochs = (a.epoch ?? 0) - (b.epoch ?? 0);
  if (epochs) return epochs;
  // The rows of one transaction share its commit LSN: no need to parse it.
  if (a.lsn !== b.lsn) {
    const [ah, al] = a.lsn.split('/').map((h) => parseInt(h, 16));
    const [bh, bl] = b.lsn.split('/').map((h) => parseInt(h, 16));
    if (ah - bh || al - bl) return ah - bh || al - bl;
  }
  return a.seq - b.seq;
}

/** `(alias."_epoch", alias."_lsn", alias."_seq")`: a position, for row-wise comparison. */
function pos(alias: string, prefix = ''): string {
  return `(${alias}."${prefix}_epoch", ${alias}."${prefix}_lsn", ${alias}."${prefix}_seq")`;
}

/** The unnest columns of a list of positions. */
function positionColumns(items: readonly Position[]): { name: string; pgType: string; values: unknown[] }[] {
  return [
    { name: '_epoch', pgType: 'bigint', values: items.map((p) => p.epoch) },
    { name: '_lsn', pgType: 'pg_lsn', values: items.map((p) => p.lsn) },
    { name: '_seq', pgType: 'bigint', values: items.map((p) => p.seq) },
  ];
}

/** `unnest($1::integer[], …) AS "x"("a", …)` over the given columns plus bookkeeping arrays. */
function unnestFrom(
  params: Params,
  columns: { name: string; pgType: string; values: unknown[] }[],
  alias = 'x',
): string {
  const args = columns.map((c) => `${params.add(c.values)}::${c.pgType}[]`);
  return `unnest(${args.join(', ')}) AS ${quoteIdent(alias)}(${columns.map((c) => quoteIdent(c.name)).join(', ')})`;
}

const NEWER = `${pos('EXCLUDED')} > ${pos('t')}`;

/**
 * Upserts changes (not deletes) of a dimension or staging table, at most one per key (fold them
 * first: ON CONFLICT cannot touch a row twice in one statement). Per key:
 * - no row yet: insert it; unchanged columns are unknown (placeholder, listed in _toast_pending);
 * - the change is newer than the row: take its values; an unchanged column keeps the row's value
 *   (still pending if the row's value was itself unknown); the row is no longer a placeholder, and
 *   is deleted only if a newer delete was seen;
 * - the change is older: ignored, except that it fills columns the row still has pending.
 */
export function dimensionUpsert(name: WarehouseTableName, rows: readonly VersionedRow[]): SqlStatement {
  const table = tableOf(name, ['dimension', 'staging'], 'dimensionUpsert');
  const params = new Params();
  const key = keyColumn(table);
  const values = valueColumns(table);
  const sorted = [...rows].sort(byKeyThenPosition(table.key));
  const pending = sorted.map((r) => values.filter((c) => r.unchanged.includes(c.name)).map((c) => c.name));
  const from = unnestFrom(params, [
    ...table.columns.map((c) => ({
      name: c.name,
      pgType: pgType(c.type),
      values: sorted.map((r) => (r.unchanged.includes(c.name) ? unknownValue(c) : r.values[c.name])),
    })),
    ...positionColumns(sorted),
    { name: '_commit_ts', pgType: 'timestamptz', values: sorted.map((r) => r.commitTs) },
    // Comma-joined: unnest cannot take an array of arrays.
    { name: '_pending', pgType: 'text', values: pending.map((p) => p.join(',')) },
  ]);
  const allNames = params.add(values.map((c) => c.name));
  const nameParam = new Map(values.map((c) => [c.name, params.add(c.name)]));
  const insertColumns = [
    ...table.columns.map((c) => c.name),
    '_epoch',
    '_lsn',
    '_seq',
    '_commit_ts',
    '_toast_pending',
    '_inferred',
    '_deleted',
  ];
  const select = [
    ...table.columns.map((c) => `x.${quoteIdent(c.name)}`),
    'x."_epoch"',
    'x."_lsn"',
    'x."_seq"',
    'x."_commit_ts"',
    `coalesce(string_to_array(nullif(x."_pending", ''), ','), '{}')`,
    'false',
    'false',
  ];
  const tUnknown = `CASE WHEN t."_inferred" THEN ${allNames}::text[] ELSE t."_toast_pending" END`;
  const sets = values.map((c) => {
    const n = nameParam.get(c.name)!;
    const q = quoteIdent(c.name);
    return (
      `${q} = CASE WHEN ${NEWER} THEN (CASE WHEN ${n} = ANY(EXCLUDED."_toast_pending") THEN t.${q} ELSE EXCLUDED.${q} END) ` +
      `WHEN ${n} = ANY(t."_toast_pending") AND NOT ${n} = ANY(EXCLUDED."_toast_pending") THEN EXCLUDED.${q} ` +
      `ELSE t.${q} END`
    );
  });
  const text = [
    `INSERT INTO ${quoteIdent(name)} AS t (${insertColumns.map(quoteIdent).join(', ')})`,
    `SELECT ${select.join(', ')}`,
    `FROM ${from}`,
    `ORDER BY x.${quoteIdent(key.name)}`,
    `ON CONFLICT (${quoteIdent(key.name)}) DO UPDATE SET`,
    `  ${sets.join(',\n  ')},`,
    `  "_toast_pending" = CASE WHEN ${NEWER}`,
    `    THEN ARRAY(SELECT unnest(EXCLUDED."_toast_pending") INTERSECT SELECT unnest(${tUnknown}) ORDER BY 1)`,
    `    ELSE ARRAY(SELECT unnest(t."_toast_pending") INTERSECT SELECT unnest(EXCLUDED."_toast_pending") ORDER BY 1) END,`,
    `  "_deleted" = CASE WHEN ${NEWER}`,
    `    THEN coalesce(${pos('t', '_deleted')} > ${pos('EXCLUDED')}, false)`,
    `    ELSE t."_deleted" END,`,
    `  "_inferred" = CASE WHEN ${NEWER} THEN false ELSE t."_inferred" END,`,
    `  "_commit_ts" = CASE WHEN ${NEWER} THEN EXCLUDED."_commit_ts" ELSE t."_commit_ts" END,`,
    // _lsn and _seq last: every CASE above reads the row's old position (SET sees the old row
    // anyway, https://www.postgresql.org/docs/current/sql-update.html), this just reads naturally.
    `  "_epoch" = CASE WHEN ${NEWER} THEN EXCLUDED."_epoch" ELSE t."_epoch" END,`,
    `  "_lsn" = CASE WHEN ${NEWER} THEN EXCLUDED."_lsn" ELSE t."_lsn" END,`,
    `  "_seq" = CASE WHEN ${NEWER} THEN EXCLUDED."_seq" ELSE t."_seq" END,`,
    `  "_loaded_at" = now()`,
    `WHERE ${NEWER} OR (t."_toast_pending" <> '{}' AND NOT t."_toast_pending" <@ EXCLUDED."_toast_pending")`,
  ].join('\n');
  return { text, values: params.values };
}

/**
 * Records deletes of a dimension or staging table, one per key. A key with no row yet gets a
 * placeholder row (values unknown, `_inferred`) holding the delete, so that its older upserts,
 * arriving later, fill in the values but cannot resurrect it.
 */
export function dimensionDelete(name: WarehouseTableName, deletes: readonly DeleteMark[]): SqlStatement {
  const table = tableOf(name, ['dimension', 'staging'], 'dimensionDelete');
  const params = new Params();
  const sorted = [...deletes].sort((a, b) => a.key - b.key || comparePosition(a, b));
  const key = keyColumn(table);
  const from = unnestFrom(params, [
    { name: key.name, pgType: pgType(key.type), values: sorted.map((d) => d.key) },
    ...positionColumns(sorted),
  ]);
  const values = valueColumns(table);
  const zero = params.add(PLACEHOLDER_LSN);
  const placeholders = values.map((c) => {
    const v = unknownValue(c);
    return v === null ? `NULL::${pgType(c.type)}` : `${params.add(v)}::${pgType(c.type)}`;
  });
  const columns = [
    key.name,
    ...values.map((c) => c.name),
    '_lsn',
    '_seq',
    '_inferred',
    '_deleted',
    '_deleted_epoch',
    '_deleted_lsn',
    '_deleted_seq',
  ];
  const text = [
    `INSERT INTO ${quoteIdent(name)} AS t (${columns.map(quoteIdent).join(', ')})`,
    `SELECT x.${quoteIdent(key.name)}, ${placeholders.join(', ')}, ${zero}::pg_lsn, 0, true, true, x."_epoch", x."_lsn", x."_seq"`,
    `FROM ${from}`,
    `ORDER BY x.${quoteIdent(key.name)}`,
    `ON CONFLICT (${quoteIdent(key.name)}) DO UPDATE SET`,
    `  "_deleted_epoch" = EXCLUDED."_deleted_epoch",`,
    `  "_deleted_lsn" = EXCLUDED."_deleted_lsn",`,
    `  "_deleted_seq" = EXCLUDED."_deleted_seq",`,
    `  "_deleted" = ${pos('EXCLUDED', '_deleted')} > ${pos('t')},`,
    `  "_loaded_at" = now()`,
    `WHERE t."_deleted_lsn" IS NULL`,
    `   OR ${pos('EXCLUDED', '_deleted')} > ${pos('t', '_deleted')}`,
  ].join('\n');
  return { text, values: params.values };
}

/**
 * Inserts placeholder rows (`_inferred`, position 0/0, text '(unknown)') for dimension keys a fact
 * refers to, where no row exists yet; an existing row, real or placeholder, is left alone.
 *
 * An object in parts claims every key of its references in one statement (200,000 transactions for
 * 200,000 payments), about a second of the warehouse while the load process has one part to prepare
 * (bench/README.md, "Session 12"). Two things make it cheaper, same rows inserted:
 * - the keys are sorted on their own, then given the placeholder values: a sort of the whole
 *   placeholder rows outgrew work_mem and went to disk (~15% of the statement, keys new or not);
 * - many keys over a narrow range (`skipsSeenKeys`: a payments object's transactions, whose ids
 *   the source gives out in order, loaded already when their object came first) first drop the keys whose rows the
 *   statement sees, by one scan of that range of the key's index (a merge or hash anti join),
 *   where ON CONFLICT probed the index once per key: ~4× less for 200,000 existing keys, as much
 *   for new ones. Keys it does not see (new, or a concurrent load's uncommitted placeholder) still
 *   meet ON CONFLICT DO NOTHING. A row it sees cannot be gone by the insert (dimension rows are
 *   never deleted, only marked); ON CONFLICT would have waited for a concurrent update of it, then
 *   done nothing, so skipping it only removes that wait.
 */
export function placeholderInsert(name: WarehouseTableName, keys: readonly number[]): SqlStatement {
  const table = tableOf(name, ['dimension'], 'placeholderInsert');
  return placeholderRows(table, keys, 'DO NOTHING', sortedKeysFrom);
}

/**
 * From this many keys, placeholderInsert drops the keys it sees rows of first, if they cover at
 * least 1 / SKIP_SEEN_MAX_SPREAD of their range: the anti join scans the range, so it reads at
 * most that many index entries per key. Sparse keys are left to ON CONFLICT: without statistics
 * (a dimension filled since its last ANALYZE) the planner hashed the whole range, 5,000 keys over
 * a million rows taking 0.5 s against 40 ms. Below the threshold the anti join's planning costs
 * about what it saves (20 keys: the same ~0.5 ms either way).
 */
const SKIP_SEEN_MIN_KEYS = 1_000;
const SKIP_SEEN_MAX_SPREAD = 4;

/** Distinct ascending keys many and close enough for the anti join (`SKIP_SEEN_MIN_KEYS`). */
function skipsSeenKeys(keys: readonly number[]): boolean {
  return (
    keys.length >= SKIP_SEEN_MIN_KEYS &&
    keys[keys.length - 1] - keys[0] + 1 <= SKIP_SEEN_MAX_SPREAD * keys.length
  );
}

/**
 * placeholderInsert's keys: sorted in a subquery of their own (its order is the statement's, no
 * second sort), the ones seen in the table dropped when `skipsSeenKeys`.
 */
const sortedKeysFrom: PlaceholderKeys = (params, table, key, keys) => {
  const k = quoteIdent(key.name);
  const from = `(SELECT u.${k} FROM unnest(${params.add(keys)}::${pgType(key.type)}[]) AS "u"(${k}) ORDER BY u.${k}) AS "x"`;
  if (!skipsSeenKeys(keys)) return { from };
  const range = `BETWEEN ${params.add(keys[0])} AND ${params.add(keys[keys.length - 1])}`;
  return {
    from,
    where: `NOT EXISTS (SELECT FROM ${quoteIdent(table.name)} AS "d" WHERE d.${k} = x.${k} AND d.${k} ${range})`,
  };
};

/**
 * Locks the rows of the given keys of a dimension or staging table until the transaction ends, in
 * key order, inserting a placeholder row (as placeholderInsert) where there is none yet: what an
 * object loaded in parts runs before its first part for the keys its parts would lock out of order
 * (processors/load/load-batch.ts `ObjectClaims`). The object's own upsert or delete of each key
 * then replaces its placeholder in the same transaction, with the same result as inserting its row
 * (0/0 is older than any change; reconciliation leaves `_inferred` rows alone; a TRUNCATE marks
 * them as it marks a row older than it). `DO UPDATE … WHERE false` updates nothing, but locks the
 * row: https://www.postgresql.org/docs/current/sql-insert.html#SQL-ON-CONFLICT
 */
export function keyClaim(name: WarehouseTableName, keys: readonly number[]): SqlStatement {
  const table = tableOf(name, ['dimension', 'staging'], 'keyClaim');
  return placeholderRows(table, keys, `DO UPDATE SET "_inferred" = t."_inferred" WHERE false`);
}

/**
 * placeholderInsert's rows by `COPY … FROM STDIN` (text format): the command, and the fields every
 * row has after its key (the same values placeholderInsert writes), so that each row is its key
 * and one shared tail. No ON CONFLICT: a key that has a row already fails the COPY with
 * unique_violation (23505), and the caller inserts through placeholderInsert instead. For many
 * keys whose range holds no row yet (`keyRangeEmpty`): 200,000 placeholders of dim_transaction
 * took 0.46–0.51 s in the load against 0.98–1.3 s for placeholderInsert's speculative inserts
 * (bench:load, bench/README.md "Session 14").
 */
export function placeholderCopy(name: WarehouseTableName): { text: string; tail: unknown[] } {
  const table = tableOf(name, ['dimension'], 'placeholderCopy');
  const values = valueColumns(table);
  const columns = [keyColumn(table).name, ...values.map((c) => c.name), '_lsn', '_seq', '_inferred'];
  return {
    text: `COPY ${quoteIdent(table.name)} (${columns.map(quoteIdent).join(', ')}) FROM STDIN`,
    tail: [...values.map(unknownValue), PLACEHOLDER_LSN, 0, true],
  };
}

/**
 * Whether a dimension has no row with a key between the lowest and the highest of `keys` (one
 * descent of its primary key): `"empty"`. Then none of the keys has a row, and their placeholders
 * can be COPYed (placeholderCopy); a row committed meanwhile fails that COPY, not the data.
 */
export function keyRangeEmpty(name: WarehouseTableName, keys: readonly number[]): SqlStatement {
  const table = tableOf(name, ['dimension'], 'keyRangeEmpty');
  const k = quoteIdent(table.key);
  if (!keys.length) throw new Error('keyRangeEmpty: no keys');
  let [low, high] = [keys[0], keys[0]];
  for (const key of keys) [low, high] = [Math.min(low, key), Math.max(high, key)];
  return {
    text: `SELECT NOT EXISTS (SELECT FROM ${quoteIdent(table.name)} WHERE ${k} BETWEEN $1 AND $2) AS "empty"`,
    values: [low, high],
  };
}

/** The keys of placeholderRows: a FROM giving them as `x.<key>` in key order, and a WHERE on them. */
type PlaceholderKeys = (
  params: Params,
  table: WarehouseTable,
  key: WarehouseColumn,
  keys: number[],
) => { from: string; where?: string };

const everyKey: PlaceholderKeys = (params, _table, key, keys) => ({
  from: unnestFrom(params, [{ name: key.name, pgType: pgType(key.type), values: keys }]),
});

/** `INSERT` of placeholder rows of the given keys, in key order, `ON CONFLICT (key) <conflict>`. */
function placeholderRows(
  table: WarehouseTable,
  keys: readonly number[],
  conflict: string,
  keysFrom: PlaceholderKeys = everyKey,
): SqlStatement {
  const params = new Params();
  const key = keyColumn(table);
  const values = valueColumns(table);
  const { from, where } = keysFrom(params, table, key, distinctAscending(keys));
  const zero = params.add(PLACEHOLDER_LSN);
  const placeholders = values.map((c) => {
    const v = unknownValue(c);
    return v === null ? `NULL::${pgType(c.type)}` : `${params.add(v)}::${pgType(c.type)}`;
  });
  const columns = [key.name, ...values.map((c) => c.name), '_lsn', '_seq', '_inferred'];
  const text = [
    `INSERT INTO ${quoteIdent(table.name)} AS t (${columns.map(quoteIdent).join(', ')})`,
    `SELECT x.${quoteIdent(key.name)}, ${placeholders.join(', ')}, ${zero}::pg_lsn, 0, true`,
    `FROM ${from}`,
    ...(where ? [`WHERE ${where}`] : []),
    `ORDER BY x.${quoteIdent(key.name)}`,
    `ON CONFLICT (${quoteIdent(key.name)}) ${conflict}`,
  ].join('\n');
  return { text, values: params.values };
}

/**
 * Inserts the dim_date rows of the given dates (`YYYY-MM-DD`) that are missing, each computed from
 * the date: ISO day of week (1 = Monday … 7 = Sunday), English day and month names (to_char without
 * the TM prefix is not localised), quarter.
 * https://www.postgresql.org/docs/current/functions-formatting.html
 */
export function dimDateInsert(dates: readonly string[]): SqlStatement {
  const params = new Params();
  const from = unnestFrom(params, [{ name: 'd', pgType: 'date', values: [...new Set(dates)].sort() }]);
  const dayFormat = params.add('FMDay');
  const monthFormat = params.add('FMMonth');
  const text = [
    'INSERT INTO "dim_date" ("date_id", "year", "month", "day", "day_of_week", "day_name", "month_name", "quarter")',
    'SELECT x."d", extract(year FROM x."d")::integer, extract(month FROM x."d")::integer,',
    '       extract(day FROM x."d")::integer, extract(isodow FROM x."d")::integer,',
    `       to_char(x."d", ${dayFormat}), to_char(x."d", ${monthFormat}), extract(quarter FROM x."d")::integer`,
    `FROM ${from}`,
    'ORDER BY x."d"',
    'ON CONFLICT ("date_id") DO NOTHING',
  ].join('\n');
  return { text, values: params.values };
}

/** The bookkeeping columns a fact version is stored with, after the table's own columns. */
const FACT_VERSION_COLUMNS: readonly { name: string; pgType: string }[] = [
  { name: '_epoch', pgType: 'bigint' },
  { name: '_lsn', pgType: 'pg_lsn' },
  { name: '_seq', pgType: 'bigint' },
  { name: '_commit_ts', pgType: 'timestamptz' },
  // Comma-separated as the row carries it; the fact's text[] is made from it on insert.
  { name: '_unchanged', pgType: 'text' },
  { name: '_row_hash', pgType: 'text' },
  { name: '_snapshot', pgType: 'boolean' },
];

/** A fact version's fields in the order of `factVersionColumns`: what factInsert and the COPY staging carry. */
export function factVersionFields(table: WarehouseTable, row: VersionedRow): unknown[] {
  const fields: unknown[] = new Array(table.columns.length + FACT_VERSION_COLUMNS.length);
  const unchanged = row.unchanged;
  let i = 0;
  for (const c of table.columns)
    fields[i++] = unchanged.length && unchanged.includes(c.name) ? unknownValue(c) : row.values[c.name];
  fields[i++] = row.epoch;
  fields[i++] = row.lsn;
  fields[i++] = row.seq;
  fields[i++] = row.commitTs;
  fields[i++] = unchanged.join(',');
  fields[i++] = row.rowHash;
  fields[i] = row.snapshot;
  return fields;
}

/**
 * A text[] value as an array literal (`{a,b}`): an element is double-quoted, with `"` and `\\`
 * escaped, unless it is a plain word (`NULL` read unquoted would be a null element).
 * https://www.postgresql.org/docs/current/arrays.html#ARRAYS-IO
 */
export function textArrayLiteral(values: readonly string[]): string {
  if (values.length === 0) return '{}';
  const elements = values.map((v) =>
    /^[A-Za-z0-9_]+$/.test(v) && !/^null$/i.test(v) ? v : `"${v.replace(/["\\]/g, (c) => `\\${c}`)}"`,
  );
  return `{${elements.join(',')}}`;
}

/** Where `_unchanged` sits among FACT_VERSION_COLUMNS. */
const UNCHANGED_FIELD = FACT_VERSION_COLUMNS.findIndex((c) => c.name === '_unchanged');

/**
 * A fact version's fields as COPY carries them, into the fact itself (`factCopy`) or its staging
 * table (`factStageCopy`): factVersionFields, but `_unchanged` as the text[] value (array literal)
 * the fact stores, which factInsert makes of its comma-separated text.
 */
export function factVersionCopyFields(table: WarehouseTable, row: VersionedRow): unknown[] {
  const fields = factVersionFields(table, row);
  fields[table.columns.length + UNCHANGED_FIELD] = textArrayLiteral(row.unchanged);
  return fields;
}

/** A fact's columns and the bookkeeping ones, with their Postgres types, as versions carry them. */
export function factVersionColumns(name: WarehouseTableName): { name: string; pgType: string }[] {
  const table = tableOf(name, ['fact'], 'factVersionColumns');
  return [...table.columns.map((c) => ({ name: c.name, pgType: pgType(c.type) })), ...FACT_VERSION_COLUMNS];
}

/** The fact's versions in the order every statement takes them: key, then position. */
export function factVersionsInOrder(name: WarehouseTableName, rows: readonly VersionedRow[]): VersionedRow[] {
  const table = tableOf(name, ['fact'], 'factVersionsInOrder');
  return [...rows].sort(byKeyThenPosition(table.key));
}

/**
 * `INSERT INTO <fact> … SELECT … FROM <from> … ON CONFLICT DO NOTHING`, `from` aliased `x`; its
 * `_unchanged` is comma-separated text, or (`unchangedArray`) already the text[] value.
 */
function factInsertText(
  name: WarehouseTableName,
  table: WarehouseTable,
  from: string,
  unchangedArray = false,
): string {
  const columns = [...table.columns.map((c) => c.name), ...FACT_VERSION_COLUMNS.map((c) => c.name)];
  const select = [
    ...table.columns.map((c) => `x.${quoteIdent(c.name)}`),
    'x."_epoch"',
    'x."_lsn"',
    'x."_seq"',
    'x."_commit_ts"',
    unchangedArray ? 'x."_unchanged"' : `coalesce(string_to_array(nullif(x."_unchanged", ''), ','), '{}')`,
    'x."_row_hash"',
    'x."_snapshot"',
  ];
  const k = quoteIdent(table.key);
  return [
    `INSERT INTO ${quoteIdent(name)} (${columns.map(quoteIdent).join(', ')})`,
    `SELECT ${select.join(', ')}`,
    `FROM ${from}`,
    `ORDER BY x.${k}, x."_epoch", x."_lsn", x."_seq"`,
    // (key, lsn, seq) without the epoch: the same WAL change redelivered under a new epoch (capture
    // lost its state, kept its slot and replays its unconfirmed tail) is still the same version.
    `ON CONFLICT (${k}, "_lsn", "_seq") DO NOTHING`,
  ].join('\n');
}

/**
 * Inserts fact versions; a version already present (same key, _lsn, _seq) is skipped. Unchanged
 * columns go in as unknown (placeholder or NULL) and listed in `_unchanged`; `factInheritance` then
 * fills them from the previous version.
 */
export function factInsert(name: WarehouseTableName, rows: readonly VersionedRow[]): SqlStatement {
  const table = tableOf(name, ['fact'], 'factInsert');
  const params = new Params();
  const fields = factVersionsInOrder(name, rows).map((r) => factVersionFields(table, r));
  const from = unnestFrom(
    params,
    factVersionColumns(name).map((c, i) => ({ ...c, values: fields.map((f) => f[i]) })),
  );
  return { text: factInsertText(name, table, from), values: params.values };
}

/**
 * The staging table a large fact load COPYs its versions into before `factInsertFromStage`:
 * temporary (this session only, no WAL), dropped at the end of the transaction, its columns those
 * of `factVersionColumns`. https://www.postgresql.org/docs/current/sql-createtable.html#SQL-CREATETABLE-TEMPORARY
 */
export function factStageCreate(name: WarehouseTableName): SqlStatement {
  // `_unchanged` as the fact stores it (text[]): the staging table takes the COPY text of `factCopy`.
  const columns = factVersionColumns(name).map(
    (c) => `${quoteIdent(c.name)} ${c.name === '_unchanged' ? 'text[]' : c.pgType}`,
  );
  return {
    text: `CREATE TEMPORARY TABLE ${quoteIdent(factStageName(name))} (${columns.join(', ')}) ON COMMIT DROP`,
    values: [],
  };
}

/**
 * Empties the staging table for the next part of the same object: the table lives until the
 * object's transaction ends (ON COMMIT DROP), so a second CREATE would fail.
 */
export function factStageTruncate(name: WarehouseTableName): SqlStatement {
  return { text: `TRUNCATE ${quoteIdent(factStageName(name))}`, values: [] };
}

function factStageName(name: WarehouseTableName): string {
  return `totes_stage_${tableOf(name, ['fact'], 'factStage').name}`;
}

/** `COPY <stage> (…) FROM STDIN` (text format): rows as `copyTextLine(factVersionCopyFields(…))`. */
export function factStageCopy(name: WarehouseTableName): string {
  return copyVersionsInto(factStageName(name), name);
}

/** `COPY <target> (<the fact's version columns>) FROM STDIN`. */
function copyVersionsInto(target: string, name: WarehouseTableName): string {
  const columns = factVersionColumns(name).map((c) => quoteIdent(c.name));
  return `COPY ${quoteIdent(target)} (${columns.join(', ')}) FROM STDIN`;
}

/**
 * `COPY <fact> (…) FROM STDIN` (text format), rows as `copyTextLine(factVersionCopyFields(…))` in
 * `factVersionsInOrder` order: the versions straight into the fact, each row's serial record id
 * drawn in that order, as factInsert's ORDER BY draws them. Unlike factInsert it has no ON
 * CONFLICT: a version already present fails the COPY with unique_violation (23505) on the
 * (key, _lsn, _seq) constraint, and the caller loads the object again through `factInsertFromStage`.
 */
export function factCopy(name: WarehouseTableName): string {
  return copyVersionsInto(tableOf(name, ['fact'], 'factCopy').name, name);
}

/** factInsert's statement over the staged versions instead of parameter arrays: the same rows, the same order. */
export function factInsertFromStage(name: WarehouseTableName): SqlStatement {
  const table = tableOf(name, ['fact'], 'factInsertFromStage');
  return {
    text: factInsertText(name, table, `${quoteIdent(factStageName(name))} AS "x"`, true),
    values: [],
  };
}

/**
 * Resolves the inherited (unchanged TOAST) columns of the given keys' versions: each takes the value
 * of the nearest earlier version that carried it. Run after every fact load, as the earlier version
 * may arrive after the later one; a value with no earlier version loaded yet stays unknown. The
 * result depends only on which versions are loaded, never on their arrival order.
 */
export function factInheritance(name: WarehouseTableName, keys: readonly number[]): SqlStatement | null {
  const table = tableOf(name, ['fact'], 'factInheritance');
  const columns = valueColumns(table).filter((c) => isTextType(c.type));
  if (columns.length === 0) return null;
  const params = new Params();
  const keyParam = params.add(distinctAscending(keys));
  const k = quoteIdent(table.key);
  const t = quoteIdent(name);
  const sets = columns.map((c) => {
    const n = params.add(c.name);
    const q = quoteIdent(c.name);
    return (
      `${q} = CASE WHEN ${n} = ANY(f."_unchanged") THEN coalesce((` +
      `SELECT p.${q} FROM ${t} AS p WHERE p.${k} = f.${k} AND ${pos('p')} < ${pos('f')} ` +
      `AND NOT ${n} = ANY(p."_unchanged") ORDER BY p."_epoch" DESC, p."_lsn" DESC, p."_seq" DESC LIMIT 1), f.${q}) ELSE f.${q} END`
    );
  });
  const text = [
    `UPDATE ${t} AS f SET`,
    `  ${sets.join(',\n  ')}`,
    `WHERE f.${k} = ANY(${keyParam}::integer[]) AND f."_unchanged" <> '{}'`,
  ].join('\n');
  return { text, values: params.values };
}

/** A dimension computed in the warehouse from a staging table and the table its rows reference. */
export interface DerivedDimension {
  table: 'dim_staff' | 'dim_counterparty';
  /** One derived row per row of this table (same key). */
  base: WarehouseTableName;
  /** The table the base rows reference through `joinColumn`. */
  part: WarehouseTableName;
  joinColumn: string;
  /** Derived column ← which side and which of its columns. */
  columns: Readonly<Record<string, readonly ['base' | 'part', string]>>;
}

export const DERIVED_DIMENSIONS: Readonly<Record<DerivedDimension['table'], DerivedDimension>> = {
  dim_staff: {
    table: 'dim_staff',
    base: 'stg_staff',
    part: 'stg_department',
    joinColumn: 'department_id',
    columns: {
      staff_id: ['base', 'staff_id'],
      first_name: ['base', 'first_name'],
      last_name: ['base', 'last_name'],
      department_name: ['part', 'department_name'],
      location: ['part', 'location'],
      email_address: ['base', 'email_address'],
    },
  },
  dim_counterparty: {
    table: 'dim_counterparty',
    base: 'stg_counterparty',
    part: 'dim_location',
    joinColumn: 'legal_address_id',
    columns: {
      counterparty_id: ['base', 'counterparty_id'],
      counterparty_legal_name: ['base', 'counterparty_legal_name'],
      counterparty_legal_address_line_1: ['part', 'address_line_1'],
      counterparty_legal_address_line_2: ['part', 'address_line_2'],
      counterparty_legal_district: ['part', 'district'],
      counterparty_legal_city: ['part', 'city'],
      counterparty_legal_postal_code: ['part', 'postal_code'],
      counterparty_legal_country: ['part', 'country'],
      counterparty_legal_phone_number: ['part', 'phone'],
    },
  },
};

/** The derived dimensions a load of `table` must recompute, and whether `table` is their base or part. */
export function derivedDimensionsFedBy(
  table: WarehouseTableName,
): { derived: DerivedDimension; side: 'base' | 'part' }[] {
  const fed: { derived: DerivedDimension; side: 'base' | 'part' }[] = [];
  for (const derived of Object.values(DERIVED_DIMENSIONS)) {
    if (derived.base === table) fed.push({ derived, side: 'base' });
    else if (derived.part === table) fed.push({ derived, side: 'part' });
  }
  return fed;
}

/**
 * Serialises everything that recomputes one derived dimension, until the transaction ends. Run it
 * as its own statement before `derivedRecompute`: under READ COMMITTED the recompute's snapshot is
 * then taken after the lock is granted, so it sees every change committed by the load that held
 * the lock before, whichever side of the join that load changed.
 * https://www.postgresql.org/docs/current/transaction-iso.html#XACT-READ-COMMITTED
 */
export function derivedLock(table: DerivedDimension['table']): SqlStatement {
  return {
    text: 'SELECT pg_advisory_xact_lock($1, $2)',
    values: [WAREHOUSE_LOCK_NAMESPACE, WAREHOUSE_LOCK_IDS[table]],
  };
}

/**
 * The first lock of every load of a dimension or staging table, until the transaction ends: shared,
 * or exclusive for an object whose work may span the whole table — it carries snapshot rows or an
 * end marker (it may complete its snapshot and reconcile it) or a TRUNCATE. Such whole-table work
 * locks rows of the table no row lock of its own object orders; with no other load of the table
 * running, it waits on none of theirs (a late row's check and a reconciliation could otherwise
 * deadlock, or miss each other's rows). Loads of other tables (a fact's placeholders) take none:
 * they insert rows the whole-table statements do not see, and update none.
 */
export function dimensionLoadLock(table: WarehouseTableName, exclusive: boolean): SqlStatement {
  tableOf(table, ['dimension', 'staging'], 'dimensionLoadLock');
  return tableLock(table, exclusive, 'dimensionLoadLock');
}

/** A table's advisory lock, shared or exclusive, until the transaction ends. */
function tableLock(table: WarehouseTableName, exclusive: boolean, operation: string): SqlStatement {
  const id = (WAREHOUSE_LOCK_IDS as Record<string, number>)[table];
  // A table added to the model needs its own fixed lock number first.
  if (id === undefined) throw new UnsupportedTableError(table, `${operation} (no lock id)`);
  return {
    text: `SELECT ${exclusive ? 'pg_advisory_xact_lock' : 'pg_advisory_xact_lock_shared'}($1, $2)`,
    values: [WAREHOUSE_LOCK_NAMESPACE, id],
  };
}

/**
 * Serialises fact loads that could race on inherited (unchanged TOAST) columns, until the
 * transaction ends. `factInheritance` resolves a version from the versions it can see; two loads
 * committing at once — one inserting a version that inherits, the other the version it inherits
 * from — could each miss the other's row. A load holding versions that inherit takes the lock
 * exclusively; every other fact load of the table takes it shared: so ordinary loads still run side
 * by side, and one that inherits runs alone and sees every version committed before it.
 */
export function factLock(table: WarehouseTableName, exclusive: boolean): SqlStatement {
  tableOf(table, ['fact'], 'factLock');
  return tableLock(table, exclusive, 'factLock');
}

/**
 * Recomputes the derived rows of the base rows with the given keys (`side: 'base'`), or of the base
 * rows referencing the given part keys (`side: 'part'`), from the current staging rows. A derived
 * row is a pure function of its two parts: its position is the higher of theirs, it is deleted when
 * its base row is, and a placeholder (`_inferred`) while either part's values are unknown (the part
 * missing reads as '(unknown)', like a placeholder). Unchanged rows are not rewritten.
 */
export function derivedRecompute(
  derived: DerivedDimension,
  side: 'base' | 'part',
  keys: readonly number[],
): SqlStatement {
  const params = new Params();
  const target = WAREHOUSE_TABLES[derived.table];
  const base = WAREHOUSE_TABLES[derived.base];
  const part = WAREHOUSE_TABLES[derived.part];
  const keyParam = params.add(distinctAscending(keys));
  const pk = `p.${quoteIdent(part.key)}`;
  // The part wins the position only when it exists and is strictly newer.
  const partNewer = `(${pk} IS NOT NULL AND ${pos('p')} > ${pos('b')})`;
  const columnExprs = target.columns.map((c) => {
    const [from, source] = derived.columns[c.name];
    const expr = `${from === 'base' ? 'b' : 'p'}.${quoteIdent(source)}`;
    const unknown = unknownValue(c);
    return from === 'part' && unknown !== null ? `coalesce(${expr}, ${params.add(unknown)})` : expr;
  });
  const pendingExprs = target.columns.map((c) => {
    const [from, source] = derived.columns[c.name];
    const side = from === 'base' ? 'b' : 'p';
    return `CASE WHEN ${params.add(source)} = ANY(${side}."_toast_pending") THEN ${params.add(c.name)} END`;
  });
  const bookkeeping = {
    _epoch: `CASE WHEN ${partNewer} THEN p."_epoch" ELSE b."_epoch" END`,
    _lsn: `CASE WHEN ${partNewer} THEN p."_lsn" ELSE b."_lsn" END`,
    _seq: `CASE WHEN ${partNewer} THEN p."_seq" ELSE b."_seq" END`,
    _commit_ts: `CASE WHEN ${partNewer} THEN p."_commit_ts" ELSE b."_commit_ts" END`,
    _deleted: 'b."_deleted"',
    _deleted_epoch: 'b."_deleted_epoch"',
    _deleted_lsn: 'b."_deleted_lsn"',
    _deleted_seq: 'b."_deleted_seq"',
    _inferred: `(b."_inferred" OR ${pk} IS NULL OR p."_inferred")`,
    _toast_pending: `ARRAY(SELECT n FROM unnest(ARRAY[${pendingExprs.join(', ')}]::text[]) AS n WHERE n IS NOT NULL ORDER BY 1)`,
  };
  const columns = [...target.columns.map((c) => c.name), ...Object.keys(bookkeeping)];
  const filter =
    side === 'base'
      ? `b.${quoteIdent(base.key)} = ANY(${keyParam}::integer[])`
      : `b.${quoteIdent(derived.joinColumn)} = ANY(${keyParam}::integer[])`;
  const compared = columns.map(quoteIdent);
  const text = [
    `INSERT INTO ${quoteIdent(derived.table)} AS t (${columns.map(quoteIdent).join(', ')})`,
    `SELECT ${[...columnExprs, ...Object.values(bookkeeping)].join(',\n       ')}`,
    `FROM ${quoteIdent(derived.base)} AS b`,
    `LEFT JOIN ${quoteIdent(derived.part)} AS p ON ${pk} = b.${quoteIdent(derived.joinColumn)}`,
    `WHERE ${filter}`,
    `ORDER BY b.${quoteIdent(base.key)}`,
    `ON CONFLICT (${quoteIdent(target.key)}) DO UPDATE SET`,
    `  ${columns
      .filter((c) => c !== target.key)
      .map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`)
      .join(',\n  ')},`,
    `  "_loaded_at" = now()`,
    `WHERE (${compared.map((c) => `t.${c}`).join(', ')}) IS DISTINCT FROM (${compared.map((c) => `EXCLUDED.${c}`).join(', ')})`,
  ].join('\n');
  return { text, values: params.values };
}

/** Moves a source table's progress forward (never back) and stamps the load time. */
export function progressUpsert(
  sourceTable: string,
  warehouseTable: WarehouseTableName,
  position: Position,
  newestCommitTs: string | null,
): SqlStatement {
  const newer = `${pos('EXCLUDED')} > ${pos('p')}`;
  return {
    text: [
      'INSERT INTO "pipeline_progress" AS p ("source_table", "warehouse_table", "_epoch", "_lsn", "_seq", "newest_commit_ts", "last_loaded_at")',
      'VALUES ($1, $2, $6::bigint, $3::pg_lsn, $4::bigint, $5::timestamptz, now())',
      'ON CONFLICT ("source_table") DO UPDATE SET',
      `  "_epoch" = CASE WHEN ${newer} THEN EXCLUDED."_epoch" ELSE p."_epoch" END,`,
      `  "_lsn" = CASE WHEN ${newer} THEN EXCLUDED."_lsn" ELSE p."_lsn" END,`,
      `  "_seq" = CASE WHEN ${newer} THEN EXCLUDED."_seq" ELSE p."_seq" END,`,
      // greatest() ignores NULLs: https://www.postgresql.org/docs/current/functions-conditional.html
      '  "newest_commit_ts" = greatest(p."newest_commit_ts", EXCLUDED."newest_commit_ts"),',
      '  "warehouse_table" = EXCLUDED."warehouse_table",',
      '  "last_loaded_at" = now()',
    ].join('\n'),
    values: [sourceTable, warehouseTable, position.lsn, position.seq, newestCommitTs, position.epoch],
  };
}

/**
 * One loaded VERSION of a processed object: (key, S3 ETag), migration 006. `eTag` is the ETag of
 * the bytes that were read ('' when unknown), so a corrected object under the same key is another
 * row, and a redelivery of the same bytes finds this one.
 */
export function loadLogInsert(
  objectKey: string,
  eTag: string,
  table: WarehouseTableName,
  rows: number,
): SqlStatement {
  return {
    text: 'INSERT INTO "load_log" ("object_key", "etag", "table", "rows") VALUES ($1, $2, $3, $4) ON CONFLICT ("object_key", "etag") DO NOTHING',
    values: [objectKey, eTag, table, rows],
  };
}

export function loadLogLookup(objectKey: string, eTag: string): SqlStatement {
  return {
    text: 'SELECT 1 FROM "load_log" WHERE "object_key" = $1 AND "etag" = $2',
    values: [objectKey, eTag],
  };
}

/**
 * The versions of these keys that loaded, as `{ object_key, etag }` rows ('' = loaded before
 * versions were recorded): the reconciler's and quarantine's view of what load finished.
 */
export function loadLogVersions(objectKeys: readonly string[]): SqlStatement {
  return {
    text: 'SELECT "object_key", "etag" FROM "load_log" WHERE "object_key" = ANY($1::text[])',
    values: [objectKeys],
  };
}

// ---------------------------------------------------------------------------------------------
// Deletes of facts, TRUNCATE, and snapshots that reconcile (see migration 002's header).
//
// Every rule below is a function of what is loaded, never of the order it arrived in: each load
// re-derives the result for the keys it touched, so a delete that lands before the versions it
// ends, a TRUNCATE before the rows it removes, or a snapshot's end marker before its rows all end
// in the same warehouse.

function factTable(name: WarehouseTableName, operation: string): WarehouseTable & { surrogateKey: string } {
  const table = tableOf(name, ['fact'], operation);
  return table as WarehouseTable & { surrogateKey: string };
}

/** Optional `AND key = ANY($n)`: null keys = every key of the table. */
function keyFilter(params: Params, column: string, keys: readonly number[] | null): string {
  return keys === null ? '' : ` AND ${column} = ANY(${params.add(distinctAscending(keys))}::integer[])`;
}

/**
 * The keys, each once, ascending. The load passes them so already (PreparedBatch.keys) to every
 * statement of a part: a pass that finds them in order replaces a Set and a sort per statement
 * (bench:load, 200k payments: re-sorting 10,000 keys per statement was ~1.5% of the load process).
 */
function distinctAscending(keys: readonly number[]): number[] {
  for (let i = 1; i < keys.length; i += 1)
    if (!(keys[i - 1] < keys[i])) return [...new Set(keys)].sort((a, b) => a - b);
  return keys.slice();
}

/** Records deletes of fact source rows (each once); returns the keys (RETURNING "key"). */
export function factDeleteInsert(
  name: WarehouseTableName,
  deletes: readonly DeleteMark[],
  reason: 'delete' | 'truncate' | 'resync',
): SqlStatement {
  factTable(name, 'factDeleteInsert');
  const params = new Params();
  const sorted = [...deletes].sort((a, b) => a.key - b.key || comparePosition(a, b));
  const table = params.add(name);
  const why = params.add(reason);
  const from = unnestFrom(params, [
    { name: 'key', pgType: 'integer', values: sorted.map((d) => d.key) },
    ...positionColumns(sorted),
    { name: '_commit_ts', pgType: 'timestamptz', values: sorted.map((d) => d.commitTs ?? null) },
  ]);
  return {
    text: [
      'INSERT INTO "fact_delete" ("warehouse_table", "key", "_epoch", "_lsn", "_seq", "_commit_ts", "reason")',
      `SELECT ${table}, x."key", x."_epoch", x."_lsn", x."_seq", x."_commit_ts", ${why}`,
      `FROM ${from}`,
      'ORDER BY x."key"',
      'ON CONFLICT DO NOTHING',
      'RETURNING "key"',
    ].join('\n'),
    values: params.values,
  };
}

/** Records TRUNCATEs of a source table (each once). */
export function truncateInsert(sourceTable: string, truncates: readonly TableEvent[]): SqlStatement {
  const params = new Params();
  const table = params.add(sourceTable);
  const from = unnestFrom(params, [
    ...positionColumns(truncates),
    { name: '_commit_ts', pgType: 'timestamptz', values: truncates.map((t) => t.commitTs) },
  ]);
  return {
    text: [
      'INSERT INTO "source_truncate" ("source_table", "_epoch", "_lsn", "_seq", "_commit_ts")',
      `SELECT ${table}, x."_epoch", x."_lsn", x."_seq", x."_commit_ts" FROM ${from}`,
      'ON CONFLICT DO NOTHING',
    ].join('\n'),
    values: params.values,
  };
}

/** One row when a TRUNCATE of the source table was ever loaded. */
export function truncateExists(sourceTable: string): SqlStatement {
  return { text: 'SELECT 1 FROM "source_truncate" WHERE "source_table" = $1 LIMIT 1', values: [sourceTable] };
}

/**
 * Turns every TRUNCATE of the fact's source table into a delete of each key that has a version
 * older than it (of the given keys, or of every key). Returns the keys (RETURNING "key").
 */
export function factTruncateDeletes(name: WarehouseTableName, keys: readonly number[] | null): SqlStatement {
  const table = factTable(name, 'factTruncateDeletes');
  const params = new Params();
  const wt = params.add(name);
  const st = params.add(table.source);
  const k = quoteIdent(table.key);
  return {
    text: [
      'INSERT INTO "fact_delete" ("warehouse_table", "key", "_epoch", "_lsn", "_seq", "_commit_ts", "reason")',
      `SELECT DISTINCT ${wt}, f.${k}, tr."_epoch", tr."_lsn", tr."_seq", tr."_commit_ts", 'truncate'`,
      `FROM ${quoteIdent(name)} AS f JOIN "source_truncate" AS tr ON tr."source_table" = ${st} AND ${pos('tr')} > ${pos('f')}`,
      `WHERE true${keyFilter(params, `f.${k}`, keys)}`,
      'ON CONFLICT DO NOTHING',
      'RETURNING "key"',
    ].join('\n'),
    values: params.values,
  };
}

/**
 * Drops snapshot versions that add nothing: a version read by a snapshot whose whole source row
 * (`_row_hash`) equals the version just before it, with no delete between them, is a re-read, not
 * a change. Whichever of the two loads last drops it, so the history does not depend on order.
 */
export function factDropRedundantSnapshots(name: WarehouseTableName, keys: readonly number[]): SqlStatement {
  const table = factTable(name, 'factDropRedundantSnapshots');
  const params = new Params();
  const k = quoteIdent(table.key);
  const id = quoteIdent(table.surrogateKey);
  const wt = params.add(name);
  const filter = keyFilter(params, k, keys);
  return {
    text: [
      `DELETE FROM ${quoteIdent(name)} AS f USING (`,
      `  SELECT ${id}, ${k}, "_snapshot", "_row_hash", "_epoch", "_lsn", "_seq",`,
      '         lag("_row_hash") OVER w AS "prev_hash", lag("_epoch") OVER w AS "prev_epoch",',
      '         lag("_lsn") OVER w AS "prev_lsn", lag("_seq") OVER w AS "prev_seq"',
      `  FROM ${quoteIdent(name)} WHERE true${filter}`,
      `  WINDOW w AS (PARTITION BY ${k} ORDER BY "_epoch", "_lsn", "_seq")`,
      ') AS v',
      `WHERE f.${id} = v.${id} AND v."_snapshot" AND v."_row_hash" IS NOT NULL AND v."_row_hash" = v."prev_hash"`,
      `  AND NOT EXISTS (SELECT 1 FROM "fact_delete" AS d WHERE d."warehouse_table" = ${wt} AND d."key" = v.${k}`,
      `                  AND ${pos('d')} > (v."prev_epoch", v."prev_lsn", v."prev_seq") AND ${pos('d')} < ${pos('v')})`,
    ].join('\n'),
    values: params.values,
  };
}

/**
 * Sets each version's `_deleted`: true when a delete of its key follows it before the key's next
 * version (of the given keys, or every key). Rows whose flag is already right are not rewritten.
 * Only keys with a recorded delete are looked at: a flag is only ever set from a `fact_delete` row,
 * and those are never removed, so every version of any other key is already `false` (bench:load:
 * the window over every version of an object's keys cost 7 µs per row to find nothing).
 */
export function factRefreshDeleted(name: WarehouseTableName, keys: readonly number[] | null): SqlStatement {
  const table = factTable(name, 'factRefreshDeleted');
  const params = new Params();
  const k = quoteIdent(table.key);
  const id = quoteIdent(table.surrogateKey);
  const wt = params.add(name);
  // The keys with deletes (of the given keys), found first — an InitPlan, run once, over
  // fact_delete's primary key — are the only ones whose versions are read: none when nothing of
  // these keys was ever deleted.
  const deleted = `ARRAY(SELECT DISTINCT d0."key" FROM "fact_delete" AS d0 WHERE d0."warehouse_table" = ${wt}${keyFilter(params, 'd0."key"', keys)})`;
  return {
    text: [
      `UPDATE ${quoteIdent(name)} AS f SET "_deleted" = v."deleted" FROM (`,
      `  SELECT n.${id}, EXISTS (SELECT 1 FROM "fact_delete" AS d WHERE d."warehouse_table" = ${wt} AND d."key" = n.${k}`,
      `           AND ${pos('d')} > ${pos('n')}`,
      `           AND (n."next_epoch" IS NULL OR ${pos('d')} < (n."next_epoch", n."next_lsn", n."next_seq"))) AS "deleted"`,
      `  FROM (SELECT ${id}, ${k}, "_epoch", "_lsn", "_seq",`,
      '               lead("_epoch") OVER w AS "next_epoch", lead("_lsn") OVER w AS "next_lsn", lead("_seq") OVER w AS "next_seq"',
      `        FROM ${quoteIdent(name)} WHERE ${k} = ANY(${deleted})`,
      `        WINDOW w AS (PARTITION BY ${k} ORDER BY "_epoch", "_lsn", "_seq")) AS n`,
      ') AS v',
      `WHERE f.${id} = v.${id} AND f."_deleted" IS DISTINCT FROM v."deleted"`,
    ].join('\n'),
    values: params.values,
  };
}

/**
 * Records the newest TRUNCATE of the source table on each row of a dimension or staging table (of
 * the given keys, or every row) whose recorded delete is older, as a delete of that row: like a
 * delete, it is kept as its own position and the row is deleted when it is newer than the row's
 * values — so a row written after the TRUNCATE stays live, whichever loaded first. Returns the keys
 * whose rows changed.
 */
export function dimensionApplyTruncates(
  name: WarehouseTableName,
  keys: readonly number[] | null,
): SqlStatement {
  const table = tableOf(name, ['dimension', 'staging'], 'dimensionApplyTruncates');
  const params = new Params();
  const st = params.add(table.source);
  const k = quoteIdent(table.key);
  const newest = [
    `SELECT tr."_epoch", tr."_lsn", tr."_seq" FROM "source_truncate" AS tr WHERE tr."source_table" = ${st}`,
    `  AND (t."_deleted_lsn" IS NULL OR ${pos('tr')} > ${pos('t', '_deleted')})`,
  ].join(' ');
  return {
    text: [
      `UPDATE ${quoteIdent(name)} AS t SET ("_deleted_epoch", "_deleted_lsn", "_deleted_seq") =`,
      `  (${newest} ORDER BY tr."_epoch" DESC, tr."_lsn" DESC, tr."_seq" DESC LIMIT 1),`,
      // Deleted when that TRUNCATE is newer than the row's values (SET reads the old row).
      `  "_deleted" = EXISTS (${newest} AND ${pos('tr')} > ${pos('t')}),`,
      '  "_loaded_at" = now()',
      `WHERE EXISTS (${newest})${keyFilter(params, `t.${k}`, keys)}`,
      `RETURNING t.${k} AS "key"`,
    ].join('\n'),
    values: params.values,
  };
}

/** A snapshot of one source table: its rows carry (epoch, lsn); its end marker closes it. */
export interface SnapshotId {
  sourceTable: string;
  epoch: number;
  lsn: string;
}

/** `{1,2,3}`: an array literal of integers (no element needs quoting). */
function integerArrayLiteral(values: readonly number[]): string {
  return `{${values.join(',')}}`;
}

/**
 * The snapshot rows of one part: which ordinals arrived, and their keys, as one row of arrays
 * (migration 009). Sent as literals: node-postgres' array serialization costs per element.
 */
export function snapshotPartInsert(
  id: SnapshotId,
  rows: readonly { seq: number; key: number }[],
): SqlStatement {
  const sorted = [...rows].sort((a, b) => a.seq - b.seq);
  return {
    text: [
      'INSERT INTO "snapshot_part" ("source_table", "snapshot_epoch", "snapshot_lsn", "row_count", "ordinals", "keys")',
      // No check for ordinals already there: a row delivered twice is stored twice, counted once.
      'VALUES ($1, $2::bigint, $3::pg_lsn, $4::integer, $5::bigint[], $6::integer[])',
    ].join('\n'),
    values: [
      id.sourceTable,
      id.epoch,
      id.lsn,
      sorted.length,
      integerArrayLiteral(sorted.map((r) => r.seq)),
      integerArrayLiteral(sorted.map((r) => r.key)),
    ],
  };
}

/** Records that a snapshot exists (rows arrived), or that it ended with `rows` rows (its marker). */
export function snapshotTableUpsert(
  id: SnapshotId,
  end: { seq: number; rows: number; commitTs: string } | null,
): SqlStatement {
  return {
    text: [
      'INSERT INTO "snapshot_table" AS s ("source_table", "snapshot_epoch", "snapshot_lsn", "expected_rows", "end_seq", "marker_commit_ts")',
      'VALUES ($1, $2::bigint, $3::pg_lsn, $4::bigint, $5::bigint, $6::timestamptz)',
      'ON CONFLICT ("source_table", "snapshot_epoch", "snapshot_lsn") DO UPDATE SET',
      '  "expected_rows" = coalesce(s."expected_rows", EXCLUDED."expected_rows"),',
      '  "end_seq" = coalesce(s."end_seq", EXCLUDED."end_seq"),',
      '  "marker_commit_ts" = coalesce(s."marker_commit_ts", EXCLUDED."marker_commit_ts")',
    ].join('\n'),
    values: [id.sourceTable, id.epoch, id.lsn, end?.rows ?? null, end?.seq ?? null, end?.commitTs ?? null],
  };
}

/**
 * The snapshot's state: `ready` when its marker has arrived, every row it announced has loaded and
 * it is not reconciled yet. `loaded_rows` is counted only while that can matter (marker in, not
 * reconciled), as every load holding snapshot rows asks; null otherwise. While the rows stored
 * (duplicates included: `row_count`, summed without reading an array) are fewer than announced, it
 * is that sum, already short; from there, the distinct ordinals, so duplicates cannot fake
 * completeness (unnesting every ordinal so far, as counting snapshot_row's rows cost ~50–75 ms at
 * 333,000 rows, once or twice per snapshot instead of at every load).
 */
export function snapshotProgress(id: SnapshotId): SqlStatement {
  const ofSnapshot =
    'p."source_table" = s."source_table" AND p."snapshot_epoch" = s."snapshot_epoch" AND p."snapshot_lsn" = s."snapshot_lsn"';
  return {
    text: [
      'SELECT s."expected_rows", s."end_seq", s."marker_commit_ts", s."reconciled_at",',
      '       CASE WHEN s."expected_rows" IS NOT NULL AND s."reconciled_at" IS NULL THEN',
      `       (SELECT CASE WHEN coalesce(sum(p."row_count"), 0) < s."expected_rows" THEN coalesce(sum(p."row_count"), 0)`,
      `               ELSE (SELECT count(DISTINCT o."seq") FROM "snapshot_part" AS p, unnest(p."ordinals") AS o("seq")`,
      `                      WHERE ${ofSnapshot})`,
      `               END FROM "snapshot_part" AS p WHERE ${ofSnapshot})::bigint`,
      '       END AS "loaded_rows"',
      'FROM "snapshot_table" AS s',
      'WHERE s."source_table" = $1 AND s."snapshot_epoch" = $2::bigint AND s."snapshot_lsn" = $3::pg_lsn',
    ].join('\n'),
    values: [id.sourceTable, id.epoch, id.lsn],
  };
}

/**
 * One completed snapshot of a source table as `s`, for a statement to join to the rows it may end,
 * and `held`: the keys it held, unnested once into a CTE that the statement anti-joins on the key
 * alone, so that the plan hashes them. (Over several snapshots at once, the anti-join also matched
 * on the snapshot's epoch and LSN, and the planner, which cannot tell how many keys an array holds,
 * merged on those and compared the key row by row: 150 s for 10,000 keys against 333,000.
 * MATERIALIZED: inlined, it may also probe the parts per row, unnesting their arrays each time.)
 * With `keys` (a later load's late-row check), only those of its keys it held: the hash then holds
 * at most the object's keys (10,000 keys against a 333,000-row snapshot: ~45 ms, 230 without). A
 * row that the snapshot, ending after it, did not hold no longer existed then.
 */
function snapshotLacking(
  params: Params,
  sourceTable: string,
  snapshot: SnapshotId,
  keys: readonly number[] | null,
): { snapshot: string; held: string; lacks: (keyExpr: string) => string } {
  const [table, epoch, lsn] = [
    params.add(sourceTable),
    `${params.add(snapshot.epoch)}::bigint`,
    `${params.add(snapshot.lsn)}::pg_lsn`,
  ];
  return {
    snapshot: `s."source_table" = ${table} AND s."snapshot_epoch" = ${epoch} AND s."snapshot_lsn" = ${lsn} AND s."reconciled_at" IS NOT NULL`,
    held: [
      '"held" AS MATERIALIZED (SELECT h."key" FROM "snapshot_part" AS p, unnest(p."keys") AS h("key")',
      `  WHERE p."source_table" = ${table} AND p."snapshot_epoch" = ${epoch} AND p."snapshot_lsn" = ${lsn}${keyFilter(params, 'h."key"', keys)})`,
    ].join('\n'),
    lacks: (keyExpr) => `NOT EXISTS (SELECT 1 FROM "held" AS h WHERE h."key" = ${keyExpr})`,
  };
}

/**
 * Applies a completed snapshot to a dimension or staging table: a row older than the snapshot,
 * which did not hold it, no longer existed then, so it is marked deleted at the snapshot's end
 * marker (unless a newer delete is recorded: applied oldest snapshot first, each row ends at the
 * newest that lacked it). Run for the snapshot when it completes (every key), and for the keys of a
 * later load whose rows it ends after (a row that arrives after its snapshot completed).
 * Placeholders (`_inferred`) are left alone: they are references, not rows anyone saw. Returns the
 * keys marked.
 */
export function dimensionApplySnapshots(
  name: WarehouseTableName,
  keys: readonly number[] | null,
  snapshot: SnapshotId,
): SqlStatement {
  const table = tableOf(name, ['dimension', 'staging'], 'dimensionApplySnapshots');
  const params = new Params();
  const k = quoteIdent(table.key);
  const lacking = snapshotLacking(params, table.source!, snapshot, keys);
  const end = '(s."snapshot_epoch", s."snapshot_lsn", s."end_seq")';
  return {
    text: [
      `WITH ${lacking.held}`,
      `UPDATE ${quoteIdent(name)} AS t SET ("_deleted_epoch", "_deleted_lsn", "_deleted_seq") = ${end},`,
      '  "_deleted" = true, "_loaded_at" = now()',
      `FROM "snapshot_table" AS s WHERE ${lacking.snapshot}`,
      `  AND ${end} > ${pos('t')} AND (t."_deleted_lsn" IS NULL OR ${end} > ${pos('t', '_deleted')})`,
      `  AND NOT t."_inferred"${keyFilter(params, `t.${k}`, keys)} AND ${lacking.lacks(`t.${k}`)}`,
      `RETURNING t.${k} AS "key"`,
    ].join('\n'),
    values: params.values,
  };
}

/**
 * The reconciled snapshots of the source table that end after `position` (the oldest row of an
 * object), oldest first: only they can end a version or row this object brings, so the late-row
 * checks (`factApplySnapshots`, `dimensionApplySnapshots` over its keys) run for them alone, and
 * not at all without one. Otherwise they find nothing, yet cost an index probe per key and a scan
 * of each key's versions (bench:load: up to 9 µs per row of a 200,000-row object; bench:pipeline at
 * 10k changes/s in fast mode: its two largest warehouse statements, 2.8 s of 20, after the initial
 * snapshot had been reconciled), and now an unnest of each snapshot's keys. Older versions of the
 * same keys need nothing from them either: a version loaded before a snapshot was reconciled was
 * resynced by that reconciliation (every key), and one loaded after it, by its own load.
 */
export function reconciledSnapshotsAfter(sourceTable: string, position: Position): SqlStatement {
  return {
    text: [
      'SELECT "snapshot_epoch"::text AS "epoch", "snapshot_lsn"::text AS "lsn" FROM "snapshot_table"',
      'WHERE "source_table" = $1 AND "reconciled_at" IS NOT NULL',
      '  AND ("snapshot_epoch", "snapshot_lsn", "end_seq") > ($2::bigint, $3::pg_lsn, $4::bigint)',
      'ORDER BY "snapshot_epoch", "snapshot_lsn"',
    ].join('\n'),
    values: [sourceTable, position.epoch, position.lsn, position.seq],
  };
}

/**
 * Applies a completed snapshot to a fact: every key with a version older than the snapshot, which
 * did not hold it, gets a delete at the snapshot's end marker. (A key the source created again
 * after the snapshot keeps its newer versions: the delete only ends the older one.) For the
 * snapshot when it completes (every key), and for the keys of every later load it ends after.
 * Returns the keys (RETURNING "key").
 */
export function factApplySnapshots(
  name: WarehouseTableName,
  keys: readonly number[] | null,
  snapshot: SnapshotId,
): SqlStatement {
  const table = factTable(name, 'factApplySnapshots');
  const params = new Params();
  const k = quoteIdent(table.key);
  const wt = params.add(name);
  const lacking = snapshotLacking(params, table.source!, snapshot, keys);
  return {
    text: [
      `WITH ${lacking.held}`,
      'INSERT INTO "fact_delete" ("warehouse_table", "key", "_epoch", "_lsn", "_seq", "_commit_ts", "reason")',
      `SELECT DISTINCT ${wt}, f.${k}, s."snapshot_epoch", s."snapshot_lsn", s."end_seq", s."marker_commit_ts", 'resync'`,
      `FROM ${quoteIdent(name)} AS f JOIN "snapshot_table" AS s ON ${lacking.snapshot}`,
      `  AND (s."snapshot_epoch", s."snapshot_lsn", s."end_seq") > ${pos('f')}`,
      `WHERE ${lacking.lacks(`f.${k}`)}${keyFilter(params, `f.${k}`, keys)}`,
      'ON CONFLICT DO NOTHING',
      'RETURNING "key"',
    ].join('\n'),
    values: params.values,
  };
}

/**
 * Marks a snapshot reconciled: from now on it deletes what it did not hold (see the two functions
 * above). Its rows' keys are kept: a row that loads late is checked against them.
 */
export function snapshotMarkReconciled(id: SnapshotId): SqlStatement {
  return {
    text: 'UPDATE "snapshot_table" SET "reconciled_at" = now() WHERE "source_table" = $1 AND "snapshot_epoch" = $2::bigint AND "snapshot_lsn" = $3::pg_lsn',
    values: [id.sourceTable, id.epoch, id.lsn],
  };
}

/** Records how many rows a snapshot's reconciliation marked deleted (for operators). */
export function snapshotRecordDeleted(id: SnapshotId, deletedRows: number): SqlStatement {
  return {
    text: 'UPDATE "snapshot_table" SET "deleted_rows" = $4 WHERE "source_table" = $1 AND "snapshot_epoch" = $2::bigint AND "snapshot_lsn" = $3::pg_lsn',
    values: [id.sourceTable, id.epoch, id.lsn, deletedRows],
  };
}

/** Serialises snapshot bookkeeping across loads until the transaction ends (taken last). */
export function snapshotLock(): SqlStatement {
  return {
    text: 'SELECT pg_advisory_xact_lock($1, $2)',
    values: [WAREHOUSE_LOCK_NAMESPACE, WAREHOUSE_LOCK_IDS.snapshots],
  };
}
