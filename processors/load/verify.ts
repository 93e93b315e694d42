import type { ClientBase } from 'pg';
import {
  CURRENCY_NAMES,
  WAREHOUSE_TABLES,
  type WarehouseType,
  type WarehouseTableName,
} from '../../core/warehouse-model';
import { quoteIdent } from '../../core/warehouse-sql';
import { dimDateRow } from '../../core/star-mapping';
import { renderOutstanding, type OutstandingReport } from './outstanding-problems';
import {
  DANGLING_ADVICE,
  findReferences,
  type DanglingReference,
  type ReferenceFindings,
  type ReferenceReport,
} from './verify-references';

/**
 * `totes verify`: does the warehouse hold what the source holds, and did it get there cleanly?
 * - Current rows, row for row, against the source rows joined as totesys.md §2 says (dim_staff =
 *   staff ⋈ department, dim_counterparty = counterparty ⋈ its legal address, currency names per the
 *   decided ISO 4217 names). A fact's current rows are its `<fact>_current` view (migration 002: the
 *   latest version per key by (_epoch, _lsn, _seq), deleted keys left out), the contract analysts
 *   and the dashboard read; verify does not recompute it. A dimension's current rows are those
 *   neither `_deleted` nor `_inferred` (placeholders). Deleted flags are checked both ways: a source
 *   row the warehouse marks deleted, or holds only as a placeholder, is a difference, and so is a
 *   warehouse row still live whose source row is gone (its delete never arrived).
 * - History: no fact key has a snapshot version whose `_row_hash` (the whole source row) equals
 *   the version before it, unless a delete of that key (fact_delete) or a TRUNCATE of its source
 *   table (source_truncate) lies between them. Such a pair is a re-read that added a version
 *   although nothing changed. A WAL change that rewrote a row with the same values (`SET x = x`)
 *   is a real version of the source's history and is not counted. NULL hashes say nothing.
 * - dim_date: every date any fact version refers to has its row, with the attributes computed here
 *   independently of the load (ISO day of week, English names, quarter). The dates are those the
 *   reference check found in its scan of each fact.
 * - References: every reference of every fact version (the foreign keys migration 001 declared,
 *   which Postgres no longer enforces since 007) names a row that exists (verify-references.ts).
 * - An empty source or warehouse fails: two empty databases are equal and prove nothing.
 * Every value is compared in one canonical form, the same type on both sides (`canonical`: dates,
 * times, ints and booleans as such, numerics and text as text, dates the source keeps as text as
 * text `YYYY-MM-DD`), so `3.9` and `3.90`, `2023-1-5` and `2023-01-05` or a lost millisecond differ;
 * shown as text (times `HH:MM:SS.fff`, trailing zeros dropped).
 * Each side is read in one REPEATABLE READ snapshot, so neither is torn by concurrent writes; a
 * pipeline still catching up shows as differences (`totes verify --wait` retries until it converges).
 * Memory holds one table of each side at a time. Quarantined and dead-lettered work is looked for
 * by outstanding-problems.ts; this module only reads the two databases.
 */

/** Base class of every error this module throws. */
export class VerifyError extends Error {
  override name = 'VerifyError';
}

/** One side lacks a table verify needs: not a totesys source, or a warehouse never loaded. */
export class MissingTableError extends VerifyError {
  override name = 'MissingTableError';
  constructor(
    readonly side: 'source' | 'warehouse',
    readonly table: string,
  ) {
    super(
      side === 'source'
        ? `the source has no table ${table}: is it a totesys database?`
        : `the warehouse has no table ${table}: has the load (which applies the migrations) run against it?`,
    );
  }
}

type Value = string | null;
type Row = Record<string, Value>;

/** Why a source row has no current warehouse row although the warehouse knows its key. */
export type NotLive = 'deleted' | 'placeholder';

export type Difference =
  /** The source row has no warehouse row at all. */
  | { kind: 'missing'; key: string; source: Row }
  /** The warehouse marks the row deleted (a dimension's flag, a fact's deleted latest version). */
  | { kind: 'deleted'; key: string; source: Row }
  /** The warehouse holds only a placeholder for it (dimensions). */
  | { kind: 'placeholder'; key: string; source: Row }
  /** Live in the warehouse, absent from the source. */
  | { kind: 'extra'; key: string; warehouse: Row }
  | { kind: 'different'; key: string; columns: { column: string; source: Value; warehouse: Value }[] };

/** Fact keys holding versions equal to the version before them (see the module comment). */
export interface RereadReport {
  /** Keys with at least one re-read version. */
  keys: number;
  /** Re-read versions in all. */
  versions: number;
  /** The first keys (up to the limit), in key order, with their re-read versions. */
  examples: { key: string; versions: number }[];
}

export interface TableReport {
  table: WarehouseTableName;
  key: string;
  /** The relation holding the current rows: the table, or a fact's `_current` view. */
  compared: string;
  sourceRows: number;
  /** Current rows compared. */
  warehouseRows: number;
  /** Source rows without a current warehouse row, placeholders included. */
  missing: number;
  /** Source rows the warehouse marks deleted. */
  deleted: number;
  /** Current warehouse rows the source does not have. */
  extra: number;
  different: number;
  /** The first differences (up to the limit), in key order. */
  differences: Difference[];
  /** Warehouse keys without a current row: placeholders (dimensions) and deleted rows. */
  excluded: { placeholders: number; deleted: number };
  /** Facts: versions in all (history included). */
  versions?: number;
  /** Facts: re-read versions. */
  rereads?: RereadReport;
  /**
   * How the rows were compared: `digest`, each side's count and sum of row hashes, equal (no row
   * read); `rows`, the digests differed and both sides' rows were read and compared column by column.
   */
  comparedBy?: 'digest' | 'rows';
}

export type DateDifference =
  | { kind: 'missing'; date: string }
  | { kind: 'different'; date: string; columns: { column: string; expected: string; warehouse: Value }[] };

export interface DateReport {
  /** Distinct dates that fact versions refer to. */
  referenced: number;
  missing: number;
  wrong: number;
  /** The first differences (up to the limit), in date order. */
  differences: DateDifference[];
}

export interface VerifyReport {
  /**
   * Everything below holds: no difference, no re-read, dim_date complete, no dangling reference,
   * neither side empty.
   */
  ok: boolean;
  tables: TableReport[];
  dates: DateReport;
  references: ReferenceReport;
  /** Sides without a single (current) row in the compared tables. */
  empty: ('source' | 'warehouse')[];
}

/** A connection verify opened and ends. */
export type OwnConnection = ClientBase & { end(): Promise<void> };

export interface VerifyOptions {
  /** Differences (and re-read keys, and dates) listed per table; default 10. */
  limit?: number;
  /**
   * Opens one more connection to a side. Given, verify works on two connections per side at once
   * (each joining the snapshot of the one passed in) and ends them before it returns.
   */
  connect?: (side: 'source' | 'warehouse') => Promise<OwnConnection>;
}

/** What verify compares, in totesys.md §2 order. */
export const VERIFIED_TABLES = [
  'dim_location',
  'dim_currency',
  'dim_design',
  'dim_payment_type',
  'dim_transaction',
  'dim_staff',
  'dim_counterparty',
  'fact_sales_order',
  'fact_purchase_order',
  'fact_payment',
] as const satisfies readonly WarehouseTableName[];
export type VerifiedTable = (typeof VERIFIED_TABLES)[number];

const q = quoteIdent;
/** A source timestamp's date and time of day, as the warehouse splits it (totesys.md §2). */
const ts = (alias: string, column: string) => ({
  date: `${alias}.${q(column)}::date`,
  time: `${alias}.${q(column)}::time`,
});

/** A string as an SQL literal (standard_conforming_strings: only quotes are doubled). */
const literal = (text: string) => `'${text.replace(/'/g, "''")}'`;

/**
 * dim_currency's names are not in the source: the decided ISO 4217 names (CURRENCY_NAMES), the
 * code itself for a currency without one, joined in the source's query so that dim_currency is
 * compared like every other table.
 */
const CURRENCY_NAMES_SQL = `(VALUES ${Object.entries(CURRENCY_NAMES)
  .map(([code, name]) => `(${literal(code)}, ${literal(name)})`)
  .join(', ')}) AS n(code, name)`;

/**
 * A source column the source holds as text although the warehouse column is typed (totesys keeps
 * some dates as text): compared as text, the warehouse's value printed (so `2023-1-5` in the source
 * differs from the warehouse's 2023-01-05).
 */
interface AsText {
  text: string;
}
const asText = (sql: string): AsText => ({ text: sql });

/**
 * Per table: the source FROM clause, and for each warehouse column the source expression of its
 * value (canonicalised by `canonical`, as the warehouse column is).
 */
const SOURCE: Readonly<Record<VerifiedTable, { from: string; columns: Record<string, string | AsText> }>> = {
  dim_location: {
    from: '"address" AS s',
    columns: {
      location_id: 's."address_id"',
      address_line_1: 's."address_line_1"',
      address_line_2: 's."address_line_2"',
      district: 's."district"',
      city: 's."city"',
      postal_code: 's."postal_code"',
      country: 's."country"',
      phone: 's."phone"',
    },
  },
  dim_currency: {
    from: `"currency" AS s LEFT JOIN ${CURRENCY_NAMES_SQL} ON n.code = s."currency_code"`,
    columns: {
      currency_id: 's."currency_id"',
      currency_code: 's."currency_code"',
      currency_name: 'coalesce(n.name, s."currency_code")',
    },
  },
  dim_design: {
    from: '"design" AS s',
    columns: {
      design_id: 's."design_id"',
      design_name: 's."design_name"',
      file_location: 's."file_location"',
      file_name: 's."file_name"',
    },
  },
  dim_payment_type: {
    from: '"payment_type" AS s',
    columns: { payment_type_id: 's."payment_type_id"', payment_type_name: 's."payment_type_name"' },
  },
  dim_transaction: {
    from: '"transaction" AS s',
    columns: {
      transaction_id: 's."transaction_id"',
      transaction_type: 's."transaction_type"',
      sales_order_id: 's."sales_order_id"',
      purchase_order_id: 's."purchase_order_id"',
    },
  },
  dim_staff: {
    from: '"staff" AS s JOIN "department" AS d ON d."department_id" = s."department_id"',
    columns: {
      staff_id: 's."staff_id"',
      first_name: 's."first_name"',
      last_name: 's."last_name"',
      department_name: 'd."department_name"',
      location: 'd."location"',
      email_address: 's."email_address"',
    },
  },
  dim_counterparty: {
    from: '"counterparty" AS s JOIN "address" AS a ON a."address_id" = s."legal_address_id"',
    columns: {
      counterparty_id: 's."counterparty_id"',
      counterparty_legal_name: 's."counterparty_legal_name"',
      counterparty_legal_address_line_1: 'a."address_line_1"',
      counterparty_legal_address_line_2: 'a."address_line_2"',
      counterparty_legal_district: 'a."district"',
      counterparty_legal_city: 'a."city"',
      counterparty_legal_postal_code: 'a."postal_code"',
      counterparty_legal_country: 'a."country"',
      counterparty_legal_phone_number: 'a."phone"',
    },
  },
  fact_sales_order: {
    from: '"sales_order" AS s',
    columns: {
      sales_order_id: 's."sales_order_id"',
      created_date: ts('s', 'created_at').date,
      created_time: ts('s', 'created_at').time,
      last_updated_date: ts('s', 'last_updated').date,
      last_updated_time: ts('s', 'last_updated').time,
      sales_staff_id: 's."staff_id"',
      counterparty_id: 's."counterparty_id"',
      units_sold: 's."units_sold"',
      unit_price: 's."unit_price"',
      currency_id: 's."currency_id"',
      design_id: 's."design_id"',
      agreed_payment_date: asText('s."agreed_payment_date"'),
      agreed_delivery_date: asText('s."agreed_delivery_date"'),
      agreed_delivery_location_id: 's."agreed_delivery_location_id"',
    },
  },
  fact_purchase_order: {
    from: '"purchase_order" AS s',
    columns: {
      purchase_order_id: 's."purchase_order_id"',
      created_date: ts('s', 'created_at').date,
      created_time: ts('s', 'created_at').time,
      last_updated_date: ts('s', 'last_updated').date,
      last_updated_time: ts('s', 'last_updated').time,
      staff_id: 's."staff_id"',
      counterparty_id: 's."counterparty_id"',
      item_code: 's."item_code"',
      item_quantity: 's."item_quantity"',
      item_unit_price: 's."item_unit_price"',
      currency_id: 's."currency_id"',
      agreed_delivery_date: asText('s."agreed_delivery_date"'),
      agreed_payment_date: asText('s."agreed_payment_date"'),
      agreed_delivery_location_id: 's."agreed_delivery_location_id"',
    },
  },
  fact_payment: {
    from: '"payment" AS s',
    columns: {
      payment_id: 's."payment_id"',
      created_date: ts('s', 'created_at').date,
      created_time: ts('s', 'created_at').time,
      last_updated_date: ts('s', 'last_updated').date,
      last_updated_time: ts('s', 'last_updated').time,
      transaction_id: 's."transaction_id"',
      counterparty_id: 's."counterparty_id"',
      payment_amount: 's."payment_amount"',
      currency_id: 's."currency_id"',
      payment_type_id: 's."payment_type_id"',
      paid: 's."paid"',
      payment_date: asText('s."payment_date"'),
    },
  },
};

/** The source tables verify reads. */
const SOURCE_TABLES = [
  'address',
  'currency',
  'design',
  'payment_type',
  'transaction',
  'staff',
  'department',
  'counterparty',
  'sales_order',
  'purchase_order',
  'payment',
];

/**
 * A column's canonical value, of the same type on both sides: ints, booleans, dates and times as
 * themselves (the source's timestamps split by a cast, as the load splits them), numerics and text
 * as text (Postgres' output: `3.9` and `3.90` differ, NULL and '' differ; compared and hashed by
 * their bytes, asBytes), a column the source holds as text (AsText) as text, the warehouse's date in ISO form `YYYY-MM-DD` (verify's
 * transactions set `DateStyle`, SNAPSHOT_SETTINGS). Two canonical values are equal exactly when
 * their text is (what compareTable compares): each type's output is one text per value. Casts,
 * not `to_char` (0.6–0.8 µs a call: at 1M rows it was most of verify's time), and no text at all
 * where the type's own hash will do (digestSql).
 * A time's own hash folds its 64-bit microseconds to 32 bits (hashint8extended: low half XOR high
 * half) before hashing: two times of day at millisecond precision (time(3), timestamp(3), as
 * totesys and the warehouse hold them) never fold alike — they would have to lie D·2^32 µs ± 31 µs
 * apart with D ≤ 20, and no such span is a whole number of milliseconds — so for them it is as
 * good as text; sub-millisecond times could, rarely, collide.
 */
function canonical(type: WarehouseType, sql: string, text: boolean): string {
  if (text) return asBytes(sql);
  switch (type) {
    case 'int':
      return `(${sql})::integer`;
    case 'boolean':
      return `(${sql})::boolean`;
    case 'date':
      return `(${sql})::date`;
    case 'time':
      return `(${sql})::time`;
    default:
      return asBytes(sql);
  }
}

/**
 * A value as text under the "C" collation. Text is hashed (digestSql) and compared with its
 * expression's collation, which a column can set: under a nondeterministic one (an ICU collation
 * with `deterministic = false`, e.g. case-insensitive `und-u-ks-level2`) 'ABC' and 'abc' are equal
 * and hash alike (hashtextextended hashes the ICU sort key), so a warehouse whose text differed
 * from the source's only in case would pass. Under "C" equality is byte equality and the hash is
 * of the bytes, as under any deterministic collation (the database default): no slower.
 * https://www.postgresql.org/docs/current/collation.html#COLLATION-NONDETERMINISTIC
 */
function asBytes(sql: string): string {
  return `((${sql})::text COLLATE "C")`;
}

const isFact = (table: VerifiedTable) => WAREHOUSE_TABLES[table].kind === 'fact';

/** Where a table's current rows are: a fact's view (migration 002), or the dimension table. */
function currentRelation(table: VerifiedTable): string {
  return isFact(table) ? `${table}_current` : table;
}

/** A side's rows of a table: the FROM clause (and WHERE), and each column's canonical value. */
function sideOf(table: VerifiedTable, side: 'source' | 'warehouse'): { from: string; values: string[] } {
  const columns = WAREHOUSE_TABLES[table].columns;
  const spec = SOURCE[table];
  const values = columns.map((c) => {
    const source = spec.columns[c.name];
    const text = typeof source !== 'string';
    const sql = side === 'warehouse' ? `t.${q(c.name)}` : text ? source.text : source;
    return canonical(c.type, sql, text);
  });
  if (side === 'source') return { from: spec.from, values };
  if (isFact(table)) return { from: `${q(currentRelation(table))} AS t`, values };
  return { from: `${q(table)} AS t WHERE NOT t."_deleted" AND NOT t."_inferred"`, values };
}

/** A side's rows of a table, each column's canonical value as text (what compareTable compares). */
function rowsSql(table: VerifiedTable, side: 'source' | 'warehouse'): string {
  const { from, values } = sideOf(table, side);
  const select = WAREHOUSE_TABLES[table].columns.map((c, i) => `(${values[i]})::text AS ${q(c.name)}`);
  return `SELECT ${select.join(', ')} FROM ${from}`;
}

/**
 * Keys the warehouse knows but holds no current row for, and why. A fact key is deleted when it
 * has versions but no row in its current view (the view leaves out only keys whose latest version
 * a delete ended, so only keys with a `_deleted` version can be missing from it: those, normally
 * few, are looked up in the view, which is then not computed for every key again).
 */
function notLiveSql(table: VerifiedTable): string {
  const key = q(WAREHOUSE_TABLES[table].key);
  if (isFact(table))
    return `SELECT c.k::text AS key, 'deleted' AS state
              FROM (SELECT DISTINCT ${key} AS k FROM ${q(table)} WHERE "_deleted") AS c
             WHERE NOT EXISTS (SELECT 1 FROM ${q(currentRelation(table))} AS v WHERE v.${key} = c.k)`;
  return `SELECT ${key}::text AS key, CASE WHEN "_deleted" THEN 'deleted' ELSE 'placeholder' END AS state
            FROM ${q(table)} WHERE "_deleted" OR "_inferred"`;
}

/**
 * Re-read versions of a fact ($1 the fact table, $2 its source table, $3 the examples wanted):
 * versions whose row hash equals the previous version's, with neither a delete of the key nor a
 * TRUNCATE of the source table between the two positions. Positions compare as rows, left to
 * right: https://www.postgresql.org/docs/current/functions-comparisons.html#ROW-WISE-COMPARISON
 * A NULL hash on either side makes `=` NULL, so unknown hashes never count.
 */
function rereadSql(table: VerifiedTable): string {
  const key = q(WAREHOUSE_TABLES[table].key);
  const between = (alias: string) =>
    `(${alias}."_epoch", ${alias}."_lsn", ${alias}."_seq") > (v.p_epoch, v.p_lsn, v.p_seq)
     AND (${alias}."_epoch", ${alias}."_lsn", ${alias}."_seq") < (v."_epoch", v."_lsn", v."_seq")`;
  return `WITH v AS (
    SELECT t.${key} AS k, t."_epoch", t."_lsn", t."_seq", t."_row_hash", t."_snapshot",
           lag(t."_epoch") OVER w AS p_epoch, lag(t."_lsn") OVER w AS p_lsn, lag(t."_seq") OVER w AS p_seq,
           lag(t."_row_hash") OVER w AS p_hash
      FROM ${q(table)} AS t
    WINDOW w AS (PARTITION BY t.${key} ORDER BY t."_epoch", t."_lsn", t."_seq")
  ), per_key AS (
    SELECT v.k, count(*)::int AS n
      FROM v
     WHERE v."_row_hash" = v.p_hash AND v."_snapshot"
       AND NOT EXISTS (SELECT 1 FROM "fact_delete" AS d
                        WHERE d."warehouse_table" = $1 AND d."key" = v.k AND ${between('d')})
       AND NOT EXISTS (SELECT 1 FROM "source_truncate" AS s
                        WHERE s."source_table" = $2 AND ${between('s')})
     GROUP BY v.k
  )
  SELECT (SELECT count(*) FROM per_key)::int AS keys,
         (SELECT coalesce(sum(n), 0) FROM per_key)::int AS versions,
         (SELECT coalesce(json_agg(json_build_object('key', e.k::text, 'versions', e.n) ORDER BY e.k), '[]')
            FROM (SELECT k, n FROM per_key ORDER BY k LIMIT $3) AS e) AS examples`;
}

/**
 * $1: every date a version of any fact refers to through a dim_date column (ISO text, as the
 * reference check found them in its scan of each fact), with its dim_date row.
 */
function datesSql(): string {
  const attributes = DIM_DATE_ATTRIBUTES.map((a) => `dd.${q(a)}::text AS ${q(a)}`).join(', ');
  return `SELECT to_char(r.d, 'YYYY-MM-DD') AS date, dd."date_id" IS NOT NULL AS found, ${attributes}
            FROM unnest($1::date[]) AS r(d)
            LEFT JOIN "dim_date" AS dd ON dd."date_id" = r.d
           ORDER BY r.d`;
}

const DIM_DATE_ATTRIBUTES = [
  'year',
  'month',
  'day',
  'day_of_week',
  'day_name',
  'month_name',
  'quarter',
] as const;
type DimDateAttribute = (typeof DIM_DATE_ATTRIBUTES)[number];

/**
 * dim_date's attributes of a `YYYY-MM-DD` date as text, as core/star-mapping.ts computes them in
 * TypeScript (totesys.md §2: ISO day of week 1 = Monday … 7 = Sunday, day_name "Monday",
 * month_name "January"). The load computes them in SQL (dimDateInsert): two independent formulas,
 * so a wrong one cannot agree with itself.
 */
export function expectedDimDate(date: string): Record<DimDateAttribute, string> {
  const row = dimDateRow(date);
  return Object.fromEntries(DIM_DATE_ATTRIBUTES.map((a) => [a, String(row[a])])) as Record<
    DimDateAttribute,
    string
  >;
}

type DateRow = { date: string; found: boolean } & Row;

export function compareDates(rows: DateRow[], limit: number): DateReport {
  const report: DateReport = { referenced: rows.length, missing: 0, wrong: 0, differences: [] };
  for (const row of rows) {
    let d: DateDifference | undefined;
    if (!row.found) {
      report.missing += 1;
      d = { kind: 'missing', date: row.date };
    } else {
      const expected = expectedDimDate(row.date);
      const columns = DIM_DATE_ATTRIBUTES.filter((a) => expected[a] !== row[a]).map((a) => ({
        column: a,
        expected: expected[a],
        warehouse: row[a],
      }));
      if (columns.length) {
        report.wrong += 1;
        d = { kind: 'different', date: row.date, columns };
      }
    }
    if (d && report.differences.length < limit) report.differences.push(d);
  }
  return report;
}

async function requireTables(client: ClientBase, side: 'source' | 'warehouse', tables: readonly string[]) {
  const { rows } = await client.query<{ name: string; found: string | null }>(
    'SELECT name, to_regclass(quote_ident(name))::text AS found FROM unnest($1::text[]) AS name',
    [tables],
  );
  const missing = rows.find((r) => r.found === null);
  if (missing) throw new MissingTableError(side, missing.name);
}

/** What verify reads in the warehouse: the compared tables, the current views, the delete records. */
const WAREHOUSE_RELATIONS = [
  'dim_date',
  ...VERIFIED_TABLES,
  ...VERIFIED_TABLES.filter(isFact).map(currentRelation),
  'fact_delete',
  'source_truncate',
];

function byKey(rows: Row[], key: string): Map<string, Row> {
  const map = new Map<string, Row>();
  for (const r of rows) map.set(r[key] as string, r);
  return map;
}

/**
 * Compares a table's source rows with its current warehouse rows. `notLive`: keys the warehouse
 * holds without a current row, and why (a missing source row is then `deleted` or `placeholder`).
 * One pass over the source against a map of the warehouse rows (what is left in the map is
 * extra); only the differences (normally none) are sorted, not every key.
 */
export function compareTable(
  table: WarehouseTableName,
  source: Row[],
  warehouse: Row[],
  limit: number,
  notLive: ReadonlyMap<string, NotLive> = new Map(),
): TableReport {
  const spec = WAREHOUSE_TABLES[table];
  const key = spec.key;
  const right = byKey(warehouse, key);
  const excluded = { placeholders: 0, deleted: 0 };
  for (const state of notLive.values()) excluded[state === 'deleted' ? 'deleted' : 'placeholders'] += 1;
  const report: TableReport = {
    table,
    key,
    compared: table,
    sourceRows: source.length,
    warehouseRows: warehouse.length,
    missing: 0,
    deleted: 0,
    extra: 0,
    different: 0,
    differences: [],
    excluded,
  };
  const found: Difference[] = [];
  for (const s of source) {
    const k = s[key] as string;
    const w = right.get(k);
    if (!w) {
      const state = notLive.get(k);
      if (state === 'deleted') report.deleted += 1;
      else report.missing += 1;
      found.push({ kind: state ?? 'missing', key: k, source: s });
      continue;
    }
    right.delete(k);
    let columns: { column: string; source: Value; warehouse: Value }[] | undefined;
    for (const c of spec.columns)
      if (s[c.name] !== w[c.name])
        (columns ??= []).push({ column: c.name, source: s[c.name], warehouse: w[c.name] });
    if (columns) {
      report.different += 1;
      found.push({ kind: 'different', key: k, columns });
    }
  }
  for (const [k, w] of right) {
    report.extra += 1;
    found.push({ kind: 'extra', key: k, warehouse: w });
  }
  report.differences = found.sort((a, b) => Number(a.key) - Number(b.key)).slice(0, limit);
  return report;
}

const differencesOf = (t: TableReport) => t.missing + t.deleted + t.extra + t.different;
const tableFails = (t: TableReport) => differencesOf(t) + (t.rereads?.keys ?? 0) > 0;
const datesFail = (d: DateReport) => d.missing + d.wrong > 0;
const referencesFail = (r: ReferenceReport) => r.dangling.length > 0;

const BEGIN_SNAPSHOT = 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY';

/**
 * Set in each of verify's transactions (SET LOCAL: they end with it). `DateStyle` ISO: the dates
 * compared as text are `YYYY-MM-DD` whatever the server's, the role's or the session's setting.
 * `work_mem`: the largest hash verify builds (the versions' references to dim_transaction, one
 * entry per transaction) stays in memory instead of spilling in batches (333k keys at 1M rows:
 * 4 batches at the default 4MB). No parallel workers: verify already keeps both cores busy with
 * two connections per side, and at 1M rows parallel plans cost 20–30% more CPU for no shorter run
 * (bench/README.md).
 */
export const SNAPSHOT_SETTINGS =
  "SET LOCAL DateStyle = 'ISO'; SET LOCAL work_mem = '64MB'; SET LOCAL max_parallel_workers_per_gather = 0";

/**
 * Runs `fn` in one REPEATABLE READ transaction on `client`, which `others` join: they import its
 * snapshot (`pg_export_snapshot()` then `SET TRANSACTION SNAPSHOT`), so every connection of a side
 * reads the same instant (https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-SNAPSHOT-SYNCHRONIZATION;
 * the exporting transaction stays open until `fn` is done, as the import requires).
 */
async function inSnapshot<T>(
  client: ClientBase,
  others: readonly ClientBase[],
  fn: () => Promise<T>,
): Promise<T> {
  await client.query(`${BEGIN_SNAPSHOT}; ${SNAPSHOT_SETTINGS}`);
  const joined: ClientBase[] = [];
  try {
    if (others.length > 0) {
      const { rows } = await client.query<{ id: string }>('SELECT pg_export_snapshot() AS id');
      for (const other of others) {
        await other.query(BEGIN_SNAPSHOT);
        joined.push(other);
        await other.query(`SET TRANSACTION SNAPSHOT ${literal(rows[0].id)}; ${SNAPSHOT_SETTINGS}`);
      }
    }
    return await fn();
  } finally {
    await Promise.all(joined.map((c) => c.query('COMMIT')));
    await client.query('COMMIT');
  }
}

/**
 * A side's digest of a table: its rows counted, and the sum of a 64-bit hash of each row. A row's
 * hash is Postgres' hash of the record of its canonical values (`hash_record_extended`, PostgreSQL
 * 14 and later: each value hashed by its type's own extended hash function, int4, bool or text,
 * and combined in column order; NULL and '' stay apart, and so do values split across columns
 * differently), hashed once more (`hashtextextended` of its decimal text): the record hash is a
 * linear combination of its columns' hashes, so a sum of record hashes alone could not tell a
 * column's values swapped between two rows; the second hash makes each row's term independent
 * of the others. A sum does not depend on the order rows come in, so each server computes it over
 * its rows as they are and only two numbers cross the wire; it is numeric, so it never overflows.
 * Two sides whose rows differ get equal digests only by accident, about one chance in 2^64 per
 * table: the digest guards against a pipeline's mistakes, not against someone who writes rows
 * crafted to collide. Equal digests mean equal canonical values, so equal row text (rowsSql):
 * a table whose rows compareTable would find different never has equal digests.
 */
function digestSql(table: VerifiedTable, side: 'source' | 'warehouse'): string {
  const { from, values } = sideOf(table, side);
  return `SELECT count(*)::text AS n,
                 coalesce(sum(hashtextextended(hash_record_extended(ROW(${values.join(', ')}), 0)::text, 0)), 0)::text AS h
            FROM ${from}`;
}

/** A side's digest of a table (digestSql): rows, and the sum of their hashes as decimal text. */
export interface TableDigest {
  rows: number;
  sum: string;
}

/**
 * Computes a table's digest on one side (in the caller's transaction, if any; dates are compared
 * as ISO text, so the session's DateStyle must be ISO, Postgres' default, as verify sets it).
 */
export async function tableDigest(
  client: ClientBase,
  side: 'source' | 'warehouse',
  table: VerifiedTable,
): Promise<TableDigest> {
  const { rows } = await client.query<{ n: string; h: string }>(digestSql(table, side));
  return { rows: Number(rows[0].n), sum: rows[0].h };
}

/** One connection to each side, in the sides' snapshots. */
interface Lane {
  source: ClientBase;
  warehouse: ClientBase;
}

/**
 * One table: first each side's digest (computed in each server, both at once); equal digests are
 * the report (nothing differs; the counts are the digests'). Otherwise the table is read column by
 * column from both sides (compareTable), which says what differs: missing, deleted, placeholder,
 * extra, different columns. (A comparison of each row's text, which this replaced, can find the
 * sides equal only where the digests are equal: it is not a step between the two.) Memory holds
 * one table of each side per lane, and only when the digests differ.
 *
 * A fact's re-read check (rereadSql: every version in key and position order) is needed only when
 * some key has two versions. When the current rows equal the source's (equal digests: their keys
 * are the source's, each once) and the versions number exactly the current rows plus the keys
 * whose latest version is deleted (notLiveSql: keys with a deleted version and no current row),
 * then every key of the table is one of those, with one version each: no version has a version
 * before it, and none can be a re-read.
 */
async function readTable(lane: Lane, table: VerifiedTable, limit: number): Promise<TableReport> {
  const { source, warehouse } = lane;
  const [notLive, sourceDigest, warehouseDigest] = await Promise.all([
    warehouse
      .query<{ key: string; state: NotLive }>(notLiveSql(table))
      .then((r) => new Map(r.rows.map((row) => [row.key, row.state]))),
    tableDigest(source, 'source', table),
    tableDigest(warehouse, 'warehouse', table),
  ]);
  let report: TableReport;
  const equal = sourceDigest.rows === warehouseDigest.rows && sourceDigest.sum === warehouseDigest.sum;
  if (equal) {
    const rows = sourceDigest.rows;
    report = { ...compareTable(table, [], [], 0, notLive), sourceRows: rows, warehouseRows: rows };
    report.comparedBy = 'digest';
  } else {
    const [sourceRows, rows] = await Promise.all([
      source.query<Row>(rowsSql(table, 'source')).then((r) => r.rows),
      warehouse.query<Row>(rowsSql(table, 'warehouse')).then((r) => r.rows),
    ]);
    report = compareTable(table, sourceRows, rows, limit, notLive);
    report.comparedBy = 'rows';
  }
  report.compared = currentRelation(table);
  if (isFact(table)) {
    const versions = await warehouse.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${q(table)}`);
    report.versions = versions.rows[0].n;
    const oneVersionEach = equal && report.versions === report.warehouseRows + report.excluded.deleted;
    report.rereads = oneVersionEach
      ? { keys: 0, versions: 0, examples: [] }
      : (
          await warehouse.query<RereadReport>(rereadSql(table), [
            table,
            WAREHOUSE_TABLES[table].source,
            limit,
          ])
        ).rows[0];
  }
  return report;
}

/**
 * Runs the tasks on the lanes, each lane taking the next task when it is free; the first failure
 * stops the lanes from taking more, and is thrown once every running task has ended.
 */
async function runOnLanes(lanes: readonly Lane[], tasks: readonly ((lane: Lane) => Promise<void>)[]) {
  let next = 0;
  const settled = await Promise.allSettled(
    lanes.map(async (lane) => {
      while (next < tasks.length) {
        const task = tasks[next++];
        await task(lane).catch((e: unknown) => {
          next = tasks.length;
          throw e;
        });
      }
    }),
  );
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw failed.reason;
}

/**
 * Compares a totesys source database with the warehouse loaded from it. With `options.connect`,
 * on two connections per side (tables, dates and references checked two at a time, so both
 * servers and both cores work), all of a side's connections in one snapshot.
 */
export async function verifyWarehouse(
  source: ClientBase,
  warehouse: ClientBase,
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  const limit = options.limit ?? 10;
  await requireTables(source, 'source', SOURCE_TABLES);
  await requireTables(warehouse, 'warehouse', WAREHOUSE_RELATIONS);
  const lanes: Lane[] = [{ source, warehouse }];
  const opened: OwnConnection[] = [];
  try {
    if (options.connect) {
      const open = async (side: 'source' | 'warehouse') => {
        const client = await options.connect!(side);
        opened.push(client);
        return client;
      };
      lanes.push({ source: await open('source'), warehouse: await open('warehouse') });
    }
    const facts = VERIFIED_TABLES.filter(isFact);
    const tables: TableReport[] = [];
    const references: ReferenceFindings[] = [];
    let dates: DateReport | undefined;
    const tableTask = (table: VerifiedTable) => async (lane: Lane) => {
      tables[VERIFIED_TABLES.indexOf(table)] = await readTable(lane, table, limit);
    };
    // The large tables first (facts, dim_transaction), so that the lanes end close together.
    const large = (table: VerifiedTable) => isFact(table) || table === 'dim_transaction';
    const tasks = [
      ...VERIFIED_TABLES.filter(large).map(tableTask),
      ...facts.map((table, i) => async (lane: Lane) => {
        references[i] = await findReferences(lane.warehouse, [table], limit);
      }),
      ...VERIFIED_TABLES.filter((t) => !large(t)).map(tableTask),
    ];
    // Both snapshots stay open for the whole comparison: each side is read as of one instant.
    await inSnapshot(
      source,
      lanes.slice(1).map((l) => l.source),
      () =>
        inSnapshot(
          warehouse,
          lanes.slice(1).map((l) => l.warehouse),
          async () => {
            await runOnLanes(lanes, tasks);
            // dim_date's rows, in the same snapshot, for the dates the reference check found.
            const referenced = [...new Set(references.flatMap((r) => r.dates))];
            const { rows } = await warehouse.query<DateRow>(datesSql(), [referenced]);
            dates = compareDates(rows, limit);
          },
        ),
    );
    const reference: ReferenceReport = {
      checked: references.reduce((n, r) => n + r.report.checked, 0),
      dangling: references.flatMap((r) => r.report.dangling),
    };
    const empty: VerifyReport['empty'] = [];
    if (tables.every((t) => t.sourceRows === 0)) empty.push('source');
    if (tables.every((t) => t.warehouseRows === 0)) empty.push('warehouse');
    const ok =
      empty.length === 0 && !tables.some(tableFails) && !datesFail(dates!) && !referencesFail(reference);
    return { ok, tables, dates: dates!, references: reference, empty };
  } finally {
    await Promise.all(opened.map((c) => c.end().catch(() => undefined)));
  }
}

const MAX_VALUE_CHARS = 60;

function show(value: Value): string {
  if (value === null) return 'NULL';
  const text = JSON.stringify(value);
  return text.length > MAX_VALUE_CHARS ? `${text.slice(0, MAX_VALUE_CHARS - 2)}…"` : text;
}

function describe(d: Difference, key: string): string {
  const who = `${key} ${d.key}`;
  switch (d.kind) {
    case 'missing':
      return `${who}: missing from the warehouse`;
    case 'deleted':
      return `${who}: deleted in the warehouse, live in the source`;
    case 'placeholder':
      return `${who}: only a placeholder in the warehouse`;
    case 'extra':
      return `${who}: live in the warehouse, not in the source`;
    case 'different':
      return `${who}: ${d.columns.map((c) => `${c.column} source ${show(c.source)} ≠ warehouse ${show(c.warehouse)}`).join('; ')}`;
    default:
      return d satisfies never;
  }
}

function describeDate(d: DateDifference): string {
  switch (d.kind) {
    case 'missing':
      return `${d.date}: missing from dim_date`;
    case 'different':
      return `${d.date}: ${d.columns.map((c) => `${c.column} expected ${show(c.expected)} ≠ warehouse ${show(c.warehouse)}`).join('; ')}`;
    default:
      return d satisfies never;
  }
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
const counted = (parts: [number, string][]) =>
  parts.filter(([n]) => n > 0).map(([n, what]) => `${n} ${what}`);

function tableLines(t: TableReport, width: number): string[] {
  const rereads = t.rereads ?? { keys: 0, versions: 0, examples: [] };
  const problems = counted([
    [t.missing, 'missing'],
    [t.deleted, 'deleted but live in the source'],
    [t.extra, 'extra'],
    [t.different, 'different'],
  ]);
  if (rereads.keys > 0)
    problems.push(`${plural(rereads.versions, 're-read version')} of ${plural(rereads.keys, 'key')}`);
  const extras = [
    t.versions !== undefined ? `${t.versions} versions` : '',
    ...counted([
      [t.excluded.placeholders, 'placeholders'],
      [t.excluded.deleted, 'deleted'],
    ]),
  ].filter(Boolean);
  const lines = [
    `${problems.length ? '✗' : '✓'} ${t.table.padEnd(width)}  source ${t.sourceRows}, warehouse ${t.warehouseRows}` +
      `${extras.length ? ` (${extras.join(', ')})` : ''}${problems.length ? `: ${problems.join(', ')}` : ''}`,
  ];
  for (const d of t.differences) lines.push(`    ${describe(d, t.key)}`);
  const unshown = differencesOf(t) - t.differences.length;
  if (unshown > 0) lines.push(`    … and ${unshown} more`);
  for (const e of rereads.examples)
    lines.push(
      `    ${t.key} ${e.key}: ${plural(e.versions, 'version')} equal to the version before ${e.versions === 1 ? 'it' : 'them'} (a re-read, no change)`,
    );
  const unshownKeys = rereads.keys - rereads.examples.length;
  if (unshownKeys > 0) lines.push(`    … and ${plural(unshownKeys, 'more key', 'more keys')}`);
  return lines;
}

function dateLines(d: DateReport, width: number): string[] {
  const problems = counted([
    [d.missing, 'missing'],
    [d.wrong, 'wrong'],
  ]);
  const lines = [
    `${problems.length ? '✗' : '✓'} ${'dim_date'.padEnd(width)}  ${d.referenced} referenced dates` +
      (problems.length ? `: ${problems.join(', ')}` : ', all present with correct attributes'),
  ];
  for (const x of d.differences) lines.push(`    ${describeDate(x)}`);
  const unshown = d.missing + d.wrong - d.differences.length;
  if (unshown > 0) lines.push(`    … and ${unshown} more`);
  return lines;
}

function describeDangling(d: DanglingReference): string {
  const more = d.keys > d.examples.length ? ', …' : '';
  const shown = d.examples.length ? `: ${d.examples.join(', ')}${more}` : '';
  return (
    `${d.table}.${d.column} → ${d.references}.${WAREHOUSE_TABLES[d.references].key}: ` +
    `${plural(d.rows, 'row')}, ${plural(d.keys, 'missing key')}${shown}`
  );
}

function referenceLines(r: ReferenceReport, width: number): string[] {
  const head = `${referencesFail(r) ? '✗' : '✓'} ${'references'.padEnd(width)}  ${r.checked} fact → dimension references`;
  if (!referencesFail(r)) return [`${head}, every row's target present`];
  return [
    `${head}: ${r.dangling.length} dangling`,
    ...r.dangling.map((d) => `    ${describeDangling(d)}`),
    `    (${DANGLING_ADVICE})`,
  ];
}

function verdict(report: VerifyReport): string {
  if (report.empty.length) return 'nothing to compare: an empty database proves nothing';
  if (report.ok)
    return `warehouse matches the source (${report.tables.length} tables, ${report.dates.referenced} dates)`;
  const tables = report.tables.filter(tableFails).length;
  const r = report.references;
  const where = [
    tables > 0 ? `${tables} of ${report.tables.length} tables` : '',
    datesFail(report.dates) ? 'dim_date' : '',
    referencesFail(r) ? `${r.dangling.length} of ${r.checked} references` : '',
  ].filter(Boolean);
  return `warehouse differs from the source in ${where.join(' and in ')}`;
}

/** Outstanding quarantine and dead letters to report with the comparison. */
export interface OutstandingSection {
  report: OutstandingReport;
  /** `--allow-quarantine`: listed, not failing. */
  allowed: boolean;
}

/**
 * The report as text: one line per table (rows compared, what differs, re-read versions) with its
 * first differences indented, then dim_date, then the references, then an empty side, then
 * quarantine, then the verdict.
 */
export function renderVerifyReport(report: VerifyReport, outstanding?: OutstandingSection): string {
  const width = Math.max(
    'references'.length,
    'quarantine'.length,
    ...report.tables.map((t) => t.table.length),
  );
  const lines = [
    ...report.tables.flatMap((t) => tableLines(t, width)),
    ...dateLines(report.dates, width),
    ...referenceLines(report.references, width),
  ];
  if (report.empty.includes('source')) lines.push('✗ the source has no rows in any compared table');
  if (report.empty.includes('warehouse'))
    lines.push('✗ the warehouse has no current rows in any compared table');
  let end = verdict(report);
  if (outstanding) {
    lines.push(...renderOutstanding(outstanding.report, width, outstanding.allowed));
    const o = outstanding.report;
    if (o.checked && o.total > 0)
      end += `; ${o.total} quarantined or dead-lettered${outstanding.allowed ? ' (allowed)' : ''}`;
  }
  lines.push(end);
  return `${lines.join('\n')}\n`;
}
