import { parse } from 'csv-parse/sync';
import fs from 'node:fs';
import path from 'node:path';
import type { ClientBase } from 'pg';
import type { Change } from '../core/change-event';
import { toWarehouseRows } from '../core/star-mapping';
import { TOTESYS_TABLES, type TotesysTable } from '../core/totesys-tables';
import type { WarehouseRow, WarehouseTableName } from '../core/warehouse-model';
import { applyBatch } from '../processors/load/apply-batch';
import { prepareBatch } from '../processors/load/load-batch';

/**
 * Loads the public totesys export (../shared/data/totesys-2025-02/, one CSV per table) into a
 * warehouse the way the pipeline does, minus the transport: every row becomes a snapshot change
 * (values as the text Postgres would send), mapped by the transform's star mapping and applied by
 * the load, in objects of `rowsPerObject` rows. `copies` > 1 repeats the order tables (sales and
 * purchase orders, transactions, payments) with their ids shifted by a million per copy: the same
 * business, N times the volume, for the 10× benchmark.
 */
export const DEFAULT_EXPORT_DIR = path.resolve(__dirname, '..', '..', 'shared', 'data', 'totesys-2025-02');

/** Order tables and the id columns a copy shifts (ids that point at another order table too). */
export const COPIED: Partial<Record<TotesysTable, readonly string[]>> = {
  sales_order: ['sales_order_id'],
  purchase_order: ['purchase_order_id'],
  transaction: ['transaction_id', 'sales_order_id', 'purchase_order_id'],
  payment: ['payment_id', 'transaction_id'],
};
export const ID_SHIFT = 1_000_000;

export interface ExportLoadOptions {
  dir?: string;
  copies?: number;
  rowsPerObject?: number;
  onProgress?: (table: string, rows: number) => void;
}

export function readExportTable(
  dir: string,
  table: TotesysTable,
): { columns: string[]; rows: (string | null)[][] } {
  const records = parse(fs.readFileSync(path.join(dir, `${table}.csv`)), {
    relax_column_count: false,
  }) as string[][];
  const [columns, ...rows] = records;
  // The export writes NULL as an empty unquoted field; totesys has no empty strings.
  return { columns, rows: rows.map((r) => r.map((v) => (v === '' ? null : v))) };
}

/**
 * The star rows of `changes` to the export's `table`: the export is known-good data, so a change the
 * mapping rejects is a defect in the benchmark, thrown rather than counted.
 */
export function starRowsOf(
  table: TotesysTable,
  columns: readonly string[],
  changes: readonly Change[],
): { table: WarehouseTableName; rows: WarehouseRow[] } {
  const mapped = toWarehouseRows(
    table,
    columns.map((name) => ({ name })),
    changes,
  );
  if (mapped.rejected.length) throw new Error(`${table}: ${mapped.rejected[0].reason}`);
  return { table: mapped.table, rows: mapped.rows };
}

/** Loads the export; returns the source rows loaded per table. */
export async function loadTotesysExport(
  warehouse: ClientBase,
  options: ExportLoadOptions = {},
): Promise<Record<string, number>> {
  const dir = options.dir ?? DEFAULT_EXPORT_DIR;
  const copies = options.copies ?? 1;
  const perObject = options.rowsPerObject ?? 10_000;
  const ts = '2025-02-28T12:00:00.000000Z';
  const counts: Record<string, number> = {};
  let seq = 0;
  for (const table of TOTESYS_TABLES) {
    const { columns, rows } = readExportTable(dir, table);
    const shifted = COPIED[table] ?? [];
    const indices = shifted.map((c) => columns.indexOf(c));
    const all: (string | null)[][] = [];
    for (let copy = 0; copy < (shifted.length ? copies : 1); copy += 1)
      for (const row of rows)
        all.push(
          copy === 0
            ? row
            : row.map((v, i) =>
                indices.includes(i) && v !== null ? String(Number(v) + copy * ID_SHIFT) : v,
              ),
        );
    for (let start = 0; start < all.length; start += perObject) {
      const changes: Change[] = all.slice(start, start + perObject).map((values) => ({
        op: 'snapshot',
        lsn: '0/1000000',
        seq: seq++,
        ts,
        values,
      }));
      await applyBatch(warehouse, prepareBatch(starRowsOf(table, columns, changes)), {
        objectKey: `export/${table}/${start}`,
      });
      options.onProgress?.(table, Math.min(start + perObject, all.length));
    }
    counts[table] = all.length;
  }
  return counts;
}
