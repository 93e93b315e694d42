import type { ClientBase } from 'pg';
import {
  CURRENCY_NAMES,
  WAREHOUSE_TABLES,
  type WarehouseColumn,
  type WarehouseTableName,
} from '../../core/warehouse-model';
import { quoteIdent } from '../../core/warehouse-sql';

/**
 * `totes verify`: does the warehouse hold what the source holds?
 * - every dimension's current rows (not `_deleted`, not `_inferred` placeholders) against the source
 *   rows joined as totesys.md §2 says (dim_staff = staff ⋈ department, dim_counterparty =
 *   counterparty ⋈ its legal address, currency names per the decided ISO 4217 names);
 * - every fact's latest version per source row (highest (_lsn, _seq) per natural key) against the
 *   source row;
 * - row counts, which follow from the two.
 * Every value is compared as text in one canonical form (dates YYYY-MM-DD, times HH:MM:SS.mmm,
 * numerics as Postgres prints numeric(10,2)), so `3.9` and `3.90` or a lost millisecond differ.
 * Each side is read in one REPEATABLE READ snapshot, so neither is torn by concurrent writes; a
 * pipeline still catching up shows as differences (`totes verify --wait` retries until it converges).
 * Memory holds one table of each side at a time.
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

export type Difference =
  | { kind: 'missing'; key: string; source: Row }
  | { kind: 'extra'; key: string; warehouse: Row }
  | { kind: 'different'; key: string; columns: { column: string; source: Value; warehouse: Value }[] };

export interface TableReport {
  table: WarehouseTableName;
  key: string;
  sourceRows: number;
  /** Current rows compared: live dimension rows, or the latest version of each fact. */
  warehouseRows: number;
  missing: number;
  extra: number;
  different: number;
  /** The first differences (up to the limit), in key order. */
  differences: Difference[];
  /** Dimension rows left out of the comparison: placeholders and deleted rows. */
  placeholders?: number;
  deleted?: number;
  /** Fact versions in all (history included). */
  versions?: number;
}

export interface VerifyReport {
  ok: boolean;
  tables: TableReport[];
}

export interface VerifyOptions {
  /** Differences listed per table; default 10. */
  limit?: number;
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
type VerifiedTable = (typeof VERIFIED_TABLES)[number];

const q = quoteIdent;
const ts = (alias: string, column: string) => ({
  date: `to_char(${alias}.${q(column)}, 'YYYY-MM-DD')`,
  time: `to_char(${alias}.${q(column)}, 'HH24:MI:SS.MS')`,
});

/**
 * Per table: the source FROM clause, and for each warehouse column the source expression (text).
 * dim_currency's name is not in the source: null here, filled from CURRENCY_NAMES.
 */
const SOURCE: Readonly<Record<VerifiedTable, { from: string; columns: Record<string, string | null> }>> = {
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
    from: '"currency" AS s',
    columns: { currency_id: 's."currency_id"', currency_code: 's."currency_code"', currency_name: null },
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
      agreed_payment_date: 's."agreed_payment_date"',
      agreed_delivery_date: 's."agreed_delivery_date"',
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
      agreed_delivery_date: 's."agreed_delivery_date"',
      agreed_payment_date: 's."agreed_payment_date"',
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
      payment_date: 's."payment_date"',
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

/** A warehouse column as canonical text. */
function warehouseText(c: WarehouseColumn, alias: string): string {
  const ref = `${alias}.${q(c.name)}`;
  switch (c.type) {
    case 'date':
      return `to_char(${ref}, 'YYYY-MM-DD')`;
    case 'time':
      return `to_char(${ref}, 'HH24:MI:SS.MS')`;
    case 'text':
    case 'varchar':
      return ref;
    default:
      return `${ref}::text`;
  }
}

function sourceSql(table: VerifiedTable): string {
  const spec = SOURCE[table];
  const select = WAREHOUSE_TABLES[table].columns.map(
    (c) => `${spec.columns[c.name] === null ? 'NULL' : `(${spec.columns[c.name]})::text`} AS ${q(c.name)}`,
  );
  return `SELECT ${select.join(', ')} FROM ${spec.from}`;
}

function warehouseSql(table: VerifiedTable): string {
  const spec = WAREHOUSE_TABLES[table];
  const select = spec.columns.map((c) => `${warehouseText(c, 't')} AS ${q(c.name)}`).join(', ');
  if (spec.kind === 'fact')
    // The latest version of each source row: https://www.postgresql.org/docs/current/sql-select.html#SQL-DISTINCT
    return `SELECT DISTINCT ON (t.${q(spec.key)}) ${select} FROM ${q(table)} AS t ORDER BY t.${q(spec.key)}, t."_lsn" DESC, t."_seq" DESC`;
  return `SELECT ${select} FROM ${q(table)} AS t WHERE NOT t."_deleted" AND NOT t."_inferred"`;
}

function statsSql(table: VerifiedTable): string {
  return WAREHOUSE_TABLES[table].kind === 'fact'
    ? `SELECT count(*)::int AS versions FROM ${q(table)}`
    : `SELECT count(*) FILTER (WHERE "_inferred")::int AS placeholders,
              count(*) FILTER (WHERE "_deleted" AND NOT "_inferred")::int AS deleted FROM ${q(table)}`;
}

async function requireTables(client: ClientBase, side: 'source' | 'warehouse', tables: readonly string[]) {
  const { rows } = await client.query<{ name: string; found: string | null }>(
    'SELECT name, to_regclass(quote_ident(name))::text AS found FROM unnest($1::text[]) AS name',
    [tables],
  );
  const missing = rows.find((r) => r.found === null);
  if (missing) throw new MissingTableError(side, missing.name);
}

function byKey(rows: Row[], key: string): Map<string, Row> {
  return new Map(rows.map((r) => [r[key] as string, r]));
}

export function compareTable(
  table: WarehouseTableName,
  source: Row[],
  warehouse: Row[],
  limit: number,
): TableReport {
  const spec = WAREHOUSE_TABLES[table];
  const key = spec.key;
  const left = byKey(source, key);
  const right = byKey(warehouse, key);
  const keys = [...new Set([...left.keys(), ...right.keys()])].sort((a, b) => Number(a) - Number(b));
  const report: TableReport = {
    table,
    key,
    sourceRows: source.length,
    warehouseRows: warehouse.length,
    missing: 0,
    extra: 0,
    different: 0,
    differences: [],
  };
  const note = (d: Difference) => {
    if (report.differences.length < limit) report.differences.push(d);
  };
  for (const k of keys) {
    const s = left.get(k);
    const w = right.get(k);
    if (!w) {
      report.missing += 1;
      note({ kind: 'missing', key: k, source: s! });
    } else if (!s) {
      report.extra += 1;
      note({ kind: 'extra', key: k, warehouse: w });
    } else {
      const columns = spec.columns
        .filter((c) => s[c.name] !== w[c.name])
        .map((c) => ({ column: c.name, source: s[c.name], warehouse: w[c.name] }));
      if (columns.length) {
        report.different += 1;
        note({ kind: 'different', key: k, columns });
      }
    }
  }
  return report;
}

async function inSnapshot<T>(client: ClientBase, fn: () => Promise<T>): Promise<T> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    return await fn();
  } finally {
    await client.query('COMMIT');
  }
}

/** Compares a totesys source database with the warehouse loaded from it. */
export async function verifyWarehouse(
  source: ClientBase,
  warehouse: ClientBase,
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  const limit = options.limit ?? 10;
  await requireTables(source, 'source', SOURCE_TABLES);
  await requireTables(warehouse, 'warehouse', VERIFIED_TABLES);
  const sourceRows = await inSnapshot(source, async () => {
    const out = new Map<VerifiedTable, Row[]>();
    for (const table of VERIFIED_TABLES) out.set(table, (await source.query<Row>(sourceSql(table))).rows);
    return out;
  });
  for (const row of sourceRows.get('dim_currency')!)
    row.currency_name = CURRENCY_NAMES[row.currency_code as string] ?? row.currency_code;
  const tables = await inSnapshot(warehouse, async () => {
    const reports: TableReport[] = [];
    for (const table of VERIFIED_TABLES) {
      const rows = (await warehouse.query<Row>(warehouseSql(table))).rows;
      const report = compareTable(table, sourceRows.get(table)!, rows, limit);
      Object.assign(report, (await warehouse.query(statsSql(table))).rows[0]);
      reports.push(report);
    }
    return reports;
  });
  return { ok: tables.every((t) => t.missing + t.extra + t.different === 0), tables };
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
    case 'extra':
      return `${who}: in the warehouse, not in the source`;
    case 'different':
      return `${who}: ${d.columns.map((c) => `${c.column} source ${show(c.source)} ≠ warehouse ${show(c.warehouse)}`).join('; ')}`;
    default:
      return d satisfies never;
  }
}

/** The report as text: one line per table, then its first differences indented. */
export function renderVerifyReport(report: VerifyReport): string {
  const width = Math.max(...report.tables.map((t) => t.table.length));
  const lines: string[] = [];
  for (const t of report.tables) {
    const problems = [
      t.missing ? `${t.missing} missing` : '',
      t.extra ? `${t.extra} extra` : '',
      t.different ? `${t.different} different` : '',
    ].filter(Boolean);
    const extras = [
      t.versions !== undefined ? `${t.versions} versions` : '',
      t.placeholders ? `${t.placeholders} placeholders` : '',
      t.deleted ? `${t.deleted} deleted` : '',
    ].filter(Boolean);
    lines.push(
      `${problems.length ? '✗' : '✓'} ${t.table.padEnd(width)}  source ${t.sourceRows}, warehouse ${t.warehouseRows}` +
        `${extras.length ? ` (${extras.join(', ')})` : ''}${problems.length ? `: ${problems.join(', ')}` : ''}`,
    );
    for (const d of t.differences) lines.push(`    ${describe(d, t.key)}`);
    const unshown = t.missing + t.extra + t.different - t.differences.length;
    if (unshown > 0) lines.push(`    … and ${unshown} more`);
  }
  const failing = report.tables.filter((t) => t.missing + t.extra + t.different > 0);
  lines.push(
    report.ok
      ? `warehouse matches the source (${report.tables.length} tables)`
      : `warehouse differs from the source in ${failing.length} of ${report.tables.length} tables`,
  );
  return `${lines.join('\n')}\n`;
}
