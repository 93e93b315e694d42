import type { ClientBase } from 'pg';
import { WAREHOUSE_TABLES, type WarehouseTableName } from '../../core/warehouse-model';
import { quoteIdent as q } from '../../core/warehouse-sql';

/**
 * `totes verify`'s reference check: every fact version's every reference (the model's
 * `references`, the foreign keys migration 001 declared and 007 dropped) names a row that exists —
 * dates in dim_date, staff, counterparty, currency, design, location, transaction and payment type
 * in their dimension. Postgres no longer enforces them (007: they cost 40–65 µs per fact row and
 * never fired); the load keeps them by writing placeholder rows first and never erasing a dimension
 * row, and this check is how that is proven. A row that exists counts, whatever it holds: a
 * placeholder (`_inferred`) or a `_deleted` row is the row the fact refers to.
 *
 * One statement per fact table, one scan of every version: the values of each reference column
 * counted per value in that scan (GROUP BY GROUPING SETS, one hash table per column: a few hundred
 * values each, https://www.postgresql.org/docs/current/queries-table-expressions.html#QUERIES-GROUPING-SETS),
 * then each distinct value looked up in its dimension. A reference to a dimension with a row per
 * fact row (PER_ROW_DIMENSIONS: dim_transaction) has as many values as versions, so it is an
 * anti-join of the versions against the dimension's key instead. NULLs never dangle (a foreign key
 * ignores them too). The same statement returns the distinct dates the fact refers to, which is
 * what verify's dim_date check needs (no second scan of the facts for it).
 */

export interface DanglingReference {
  table: WarehouseTableName;
  column: string;
  /** The table the column refers to (its key: the table's `key`). */
  references: WarehouseTableName;
  /** Fact versions whose referenced row does not exist. */
  rows: number;
  /** Distinct keys they name. */
  keys: number;
  /** The first missing keys (up to the limit), in key order, as text (dates YYYY-MM-DD). */
  examples: string[];
}

export interface ReferenceReport {
  /** References checked: fact columns with a `references` in the model. */
  checked: number;
  /** The references with dangling rows, in model order. */
  dangling: DanglingReference[];
}

interface Reference {
  column: string;
  references: WarehouseTableName;
}

const referencesOf = (table: WarehouseTableName): Reference[] =>
  WAREHOUSE_TABLES[table].columns.flatMap((c) =>
    c.references ? [{ column: c.name, references: c.references }] : [],
  );

/** Dimensions with about a row per fact row: their references are anti-joined, not grouped. */
const PER_ROW_DIMENSIONS: ReadonlySet<WarehouseTableName> = new Set(['dim_transaction']);

/**
 * $1: examples wanted per reference. One row: for reference i, `n<i>` the dangling rows, `k<i>` the
 * distinct keys they name, `e<i>` the first of those as text; `dates` the distinct dates the fact's
 * dim_date references name, as ISO text (`YYYY-MM-DD`: run with DateStyle ISO, as verify does).
 */
export function referencesSql(table: WarehouseTableName): string {
  const refs = referencesOf(table);
  const column = (r: Reference) => `f.${q(r.column)}`;
  const target = (r: Reference) => q(WAREHOUSE_TABLES[r.references].key);
  const grouped = refs.filter((r) => !PER_ROW_DIMENSIONS.has(r.references));
  // Each grouped reference's values and how many versions hold each (g<i> = 0 in its own set).
  const g = grouped.length
    ? [
        `g AS MATERIALIZED (
    SELECT ${grouped.map((r) => `GROUPING(${column(r)}) AS g${refs.indexOf(r)}, ${column(r)} AS v${refs.indexOf(r)}`).join(', ')},
           count(*) AS n
      FROM ${q(table)} AS f
     GROUP BY GROUPING SETS (${grouped.map((r) => `(${column(r)})`).join(', ')})
  )`,
      ]
    : [];
  // Per reference, its dangling values (k) and the versions naming each (n).
  const dangling = refs.map((r, i) => {
    const missing = (value: string) =>
      `${value} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ${q(r.references)} AS r WHERE r.${target(r)} = ${value})`;
    return PER_ROW_DIMENSIONS.has(r.references)
      ? `d${i} AS MATERIALIZED (
    SELECT ${column(r)} AS k, count(*) AS n FROM ${q(table)} AS f WHERE ${missing(column(r))} GROUP BY 1
  )`
      : `d${i} AS MATERIALIZED (SELECT g.v${i} AS k, g.n FROM g WHERE g.g${i} = 0 AND ${missing(`g.v${i}`)})`;
  });
  const text = (r: Reference) => (r.references === 'dim_date' ? `to_char(k, 'YYYY-MM-DD')` : 'k::text');
  const select = refs.flatMap((r, i) => [
    `(SELECT coalesce(sum(n), 0) FROM d${i})::int AS n${i}`,
    `(SELECT count(*) FROM d${i})::int AS k${i}`,
    `(SELECT coalesce(array_agg(${text(r)} ORDER BY k), '{}') FROM (SELECT k FROM d${i} ORDER BY k LIMIT $1) AS e) AS e${i}`,
  ]);
  const dates = refs.flatMap((r, i) =>
    r.references === 'dim_date' ? [`SELECT g.v${i} AS d FROM g WHERE g.g${i} = 0`] : [],
  );
  select.push(
    dates.length
      ? `(SELECT coalesce(array_agg(DISTINCT x.d::text), '{}') FROM (${dates.join(' UNION ALL ')}) AS x WHERE x.d IS NOT NULL) AS dates`
      : `'{}'::text[] AS dates`,
  );
  return `WITH ${[...g, ...dangling].join(',\n  ')}
  SELECT ${select.join(',\n         ')}`;
}

/** The reference check's findings, and the dates the facts refer to (for the dim_date check). */
export interface ReferenceFindings {
  report: ReferenceReport;
  /** Distinct dates any version of the facts checked names through a dim_date reference, ISO text. */
  dates: string[];
}

/**
 * Checks every reference of every fact table in `tables` and collects the dates they name; verify
 * runs it inside its snapshot.
 */
export async function findReferences(
  warehouse: ClientBase,
  tables: readonly WarehouseTableName[],
  limit: number,
): Promise<ReferenceFindings> {
  const report: ReferenceReport = { checked: 0, dangling: [] };
  const dates = new Set<string>();
  for (const table of tables) {
    const refs = referencesOf(table);
    if (!refs.length) continue;
    report.checked += refs.length;
    const { rows } = await warehouse.query(referencesSql(table), [limit]);
    const found = rows[0] as Record<string, number & string[]>;
    for (const d of found.dates) dates.add(d);
    refs.forEach((r, i) => {
      if (found[`n${i}`] > 0)
        report.dangling.push({
          table,
          ...r,
          rows: found[`n${i}`],
          keys: found[`k${i}`],
          examples: found[`e${i}`],
        });
    });
  }
  return { report, dates: [...dates] };
}

/** What to do about dangling references, for the report. */
export const DANGLING_ADVICE =
  'the load writes every row a fact refers to before the fact and never erases one, so a row was ' +
  'deleted by hand or written around the load; `totes resync --table T` re-reads T: the source ' +
  "table of the dimension (the fact's, for dim_date), restoring rows the source still has";
