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
 * One statement per fact table: one scan of every version, each reference an anti-join against its
 * dimension's key (a LEFT JOIN … IS NULL; the dimensions are small, so each is a hash join,
 * https://www.postgresql.org/docs/current/planner-optimizer.html), counted per reference with
 * FILTER, the first dangling keys in key order. NULLs never dangle (a foreign key ignores them too).
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

/**
 * $1: examples wanted per reference. One row: for reference i, `n<i>` the dangling rows, `k<i>` the
 * distinct keys they name, `e<i>` the first of those as text.
 */
export function referencesSql(table: WarehouseTableName): string {
  const refs = referencesOf(table);
  const key = (r: Reference, i: number) => `r${i}.${q(WAREHOUSE_TABLES[r.references].key)}`;
  const joins = refs.map(
    (r, i) => `LEFT JOIN ${q(r.references)} AS r${i} ON ${key(r, i)} = f.${q(r.column)}`,
  );
  const missing = (r: Reference, i: number) => `${key(r, i)} IS NULL AND f.${q(r.column)} IS NOT NULL`;
  const text = (r: Reference) => (r.references === 'dim_date' ? `to_char(k, 'YYYY-MM-DD')` : 'k::text');
  // Only the dangling values (normally none) are kept, then counted and sampled.
  const dangling = refs.map((r, i) => `CASE WHEN ${missing(r, i)} THEN f.${q(r.column)} END AS d${i}`);
  const select = refs.flatMap((r, i) => [
    `(SELECT count(d${i}) FROM dangling)::int AS n${i}`,
    `(SELECT count(DISTINCT d${i}) FROM dangling)::int AS k${i}`,
    `(SELECT coalesce(array_agg(${text(r)} ORDER BY k), '{}') FROM
       (SELECT DISTINCT d${i} AS k FROM dangling WHERE d${i} IS NOT NULL ORDER BY 1 LIMIT $1) AS e) AS e${i}`,
  ]);
  return `WITH dangling AS MATERIALIZED (
    SELECT ${dangling.join(', ')}
      FROM ${q(table)} AS f ${joins.join(' ')}
     WHERE ${refs.map(missing).join(' OR ')}
  )
  SELECT ${select.join(',\n         ')}`;
}

/** Checks every reference of every fact table in `tables`; run it inside verify's snapshot. */
export async function checkReferences(
  warehouse: ClientBase,
  tables: readonly WarehouseTableName[],
  limit: number,
): Promise<ReferenceReport> {
  const report: ReferenceReport = { checked: 0, dangling: [] };
  for (const table of tables) {
    const refs = referencesOf(table);
    if (!refs.length) continue;
    report.checked += refs.length;
    const { rows } = await warehouse.query(referencesSql(table), [limit]);
    const found = rows[0] as Record<string, number & string[]>;
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
  return report;
}

/** What to do about dangling references, for the report. */
export const DANGLING_ADVICE =
  'the load writes every row a fact refers to before the fact and never erases one, so a row was ' +
  'deleted by hand or written around the load; `totes resync --table T` re-reads T: the source ' +
  "table of the dimension (the fact's, for dim_date), restoring rows the source still has";
