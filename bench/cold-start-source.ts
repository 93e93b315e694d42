import type { Client } from 'pg';
import { quoteIdent, quoteLiteral } from '../capture/pg-text';
import { TOTESYS_TABLES, type TotesysTable } from '../core/totesys-tables';
import { createTotesysSchema } from '../totesys';
import { copyFrom } from './pg-copy';
import { COPIED, ID_SHIFT, readExportTable } from './totesys-export';
import { totesysCsvFiles } from './workloads';

/**
 * The source of `npm run bench:coldstart`: the totesys export (../shared/data/totesys-2025-02) with
 * its order tables (sales and purchase orders, transactions, payments) repeated, ids shifted by a
 * million per copy (as bench/totesys-export.ts does for the warehouse), until the source holds
 * exactly `rows` rows. The dimension tables are loaded once, as they are: more orders of the same
 * business, not more businesses. Every table is loaded with `COPY … FROM STDIN`, one statement per
 * copy, under the schema's foreign keys (so a broken reference fails the build, not the verify).
 *
 * The last copy is partial, and still closed under the foreign keys: orders first (they reference
 * only dimensions), then transactions whose order is in, then payments whose transaction is in
 * (pickPartialCopy).
 */

/** The order tables in foreign-key order, with the column a row's parent is named by. */
const ORDER_TABLES = ['sales_order', 'purchase_order', 'transaction', 'payment'] as const;
type OrderTable = (typeof ORDER_TABLES)[number];

export interface ExportRows {
  columns: string[];
  rows: (string | null)[][];
}

export interface SourceBuild {
  /** Rows in the source after the build: exactly the rows asked for. */
  rows: number;
  perTable: Record<string, number>;
  /** Whole copies of the order tables, and the rows of the partial one after them. */
  copies: number;
  partialRows: number;
  /** COPY text sent, bytes. */
  bytes: number;
}

/** The rows of the dimension tables (loaded once), below which no source can be built. */
export function dimensionRows(tables: Map<TotesysTable, ExportRows>): number {
  return TOTESYS_TABLES.filter((t) => !(ORDER_TABLES as readonly string[]).includes(t)).reduce(
    (n, t) => n + tables.get(t)!.rows.length,
    0,
  );
}

const column = (t: ExportRows, name: string) => {
  const i = t.columns.indexOf(name);
  if (i < 0) throw new Error(`the export has no column ${name}`);
  return i;
};

/**
 * Which rows (indices into each order table) make a copy of `wanted` rows, closed under the foreign
 * keys: a share of each table in proportion, then — if references left it short — more rows in
 * foreign-key order (orders, then transactions whose order is in, then payments whose transaction
 * is in) until it holds exactly `wanted`. A whole copy is closed, so any count up to it is reached.
 */
export function pickPartialCopy(
  tables: Map<TotesysTable, ExportRows>,
  wanted: number,
): Map<OrderTable, number[]> {
  const of = (t: OrderTable) => tables.get(t)!;
  const perCopy = ORDER_TABLES.reduce((n, t) => n + of(t).rows.length, 0);
  if (wanted > perCopy) throw new Error(`a partial copy holds at most ${perCopy} rows, not ${wanted}`);
  const share = wanted / perCopy;
  const chosen = new Map<OrderTable, Set<number>>(ORDER_TABLES.map((t) => [t, new Set<number>()]));
  const ids = (t: OrderTable, col: string) => {
    const i = column(of(t), col);
    return new Set([...chosen.get(t)!].map((r) => of(t).rows[r]![i]));
  };
  const tx = of('transaction');
  const [txSales, txPurchase] = [column(tx, 'sales_order_id'), column(tx, 'purchase_order_id')];
  const payTx = column(of('payment'), 'transaction_id');
  /** Whether a row's parents (within the order tables) are in. */
  const eligible = (t: OrderTable): ((row: (string | null)[]) => boolean) => {
    if (t === 'transaction') {
      const sales = ids('sales_order', 'sales_order_id');
      const purchases = ids('purchase_order', 'purchase_order_id');
      return (r) =>
        (r[txSales] === null || sales.has(r[txSales]!)) &&
        (r[txPurchase] === null || purchases.has(r[txPurchase]!));
    }
    if (t === 'payment') {
      const transactions = ids('transaction', 'transaction_id');
      return (r) => r[payTx] === null || transactions.has(r[payTx]!);
    }
    return () => true;
  };
  let total = 0;
  const fill = (t: OrderTable, quota: number) => {
    const ok = eligible(t);
    const set = chosen.get(t)!;
    of(t).rows.forEach((row, i) => {
      if (set.size < quota && total < wanted && !set.has(i) && ok(row)) {
        set.add(i);
        total += 1;
      }
    });
  };
  for (const t of ORDER_TABLES) fill(t, Math.floor(of(t).rows.length * share));
  for (const t of ORDER_TABLES) fill(t, Infinity);
  return new Map(ORDER_TABLES.map((t) => [t, [...chosen.get(t)!].sort((a, b) => a - b)]));
}

/** A value in COPY's text format (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.2). */
function copyText(value: string | null): string {
  if (value === null) return '\\N';
  return value.replace(/[\\\t\n\r]/g, (c) => ({ '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' })[c]!);
}

function copyOf(t: ExportRows, table: OrderTable, copy: number, indices?: readonly number[]): Buffer {
  const shifted = (COPIED[table] ?? []).map((c) => column(t, c));
  const lines: string[] = [];
  for (const i of indices ?? t.rows.keys()) {
    const row = t.rows[i]!;
    lines.push(
      row
        .map((v, c) =>
          copyText(copy > 0 && v !== null && shifted.includes(c) ? String(Number(v) + copy * ID_SHIFT) : v),
        )
        .join('\t'),
    );
  }
  return Buffer.from(lines.length ? `${lines.join('\n')}\n` : '');
}

export function readExport(dir: string): Map<TotesysTable, ExportRows> {
  if (!totesysCsvFiles(dir)) throw new Error(`the totesys export is not in ${dir}`);
  return new Map(TOTESYS_TABLES.map((t) => [t, readExportTable(dir, t)]));
}

/** Builds the source in `client`'s database, which must not hold totesys yet. */
export async function buildColdStartSource(
  client: Client,
  dir: string,
  rows: number,
  progress: (message: string) => void,
): Promise<SourceBuild> {
  const tables = readExport(dir);
  const dims = dimensionRows(tables);
  if (rows < dims) throw new Error(`--rows must be at least ${dims} (the export's dimension tables)`);
  const perCopy = ORDER_TABLES.reduce((n, t) => n + tables.get(t)!.rows.length, 0);
  const copies = Math.floor((rows - dims) / perCopy);
  const partialRows = rows - dims - copies * perCopy;
  if (copies + 1 >= ID_SHIFT / 1000)
    throw new Error(`--rows ${rows} needs ${copies + 1} copies: ids would pass the integer range`);
  const partial = pickPartialCopy(tables, partialRows);
  await createTotesysSchema(client);
  const perTable: Record<string, number> = {};
  let bytes = 0;
  const copyIn = async (table: TotesysTable, text: Buffer) => {
    bytes += text.length;
    const copied = await copyFrom(client, `COPY ${quoteIdent(table)} FROM STDIN`, text);
    perTable[table] = (perTable[table] ?? 0) + copied;
  };
  for (const table of TOTESYS_TABLES) {
    const t = tables.get(table)!;
    if (!(ORDER_TABLES as readonly string[]).includes(table)) {
      await copyIn(table, Buffer.from(t.rows.map((r) => `${r.map(copyText).join('\t')}\n`).join('')));
      continue;
    }
    const order = table as OrderTable;
    for (let copy = 0; copy < copies; copy += 1) await copyIn(table, copyOf(t, order, copy));
    if (partial.get(order)!.length) await copyIn(table, copyOf(t, order, copies, partial.get(order)));
    progress(`source: ${table} ${perTable[table]!.toLocaleString('en-GB')} rows`);
  }
  for (const table of TOTESYS_TABLES) {
    const key = quoteIdent(`${table}_id`);
    await client.query(
      `SELECT setval(pg_get_serial_sequence(${quoteLiteral(table)}, ${quoteLiteral(`${table}_id`)}),
                     (SELECT max(${key}) FROM ${quoteIdent(table)}))`,
    );
  }
  // Hint bits set and statistics taken now, so neither the snapshot's first read nor autovacuum
  // does that work inside the measurement.
  progress('source: VACUUM (FREEZE, ANALYZE) and CHECKPOINT');
  await client.query('VACUUM (FREEZE, ANALYZE)');
  await client.query('CHECKPOINT');
  const total = Object.values(perTable).reduce((a, b) => a + b, 0);
  if (total !== rows) throw new Error(`the source holds ${total} rows, not ${rows}`);
  return { rows: total, perTable, copies, partialRows, bytes };
}
