import { Client } from 'pg';
import { migrateWarehouse } from '../../processors/load/migrate';
import { installTotesys } from '../../totesys';
import { createTestDatabase } from './pg';
import { at, loadSourceSnapshot } from './warehouse-rows';

export interface ReportingWarehouse {
  sourceUrl: string;
  warehouseUrl: string;
  /** A sales order whose latest version is a deleted one: it must be absent from every report. */
  deletedSalesOrderId: number;
}

/**
 * A warehouse with history in it, for the reporting, health and dashboard tests: a small totesys
 * (seeded, scale 0.02) loaded as a snapshot at position 1; then edits in the source (a price, units,
 * a payment flipping to paid, a design renamed) and a second snapshot at position 2, so every fact
 * has two versions and only the latest may count; and one sales order whose latest version is
 * marked deleted.
 */
export async function seedReportingWarehouse(name: string): Promise<ReportingWarehouse> {
  const sourceUrl = await createTestDatabase(`${name}_source`);
  const warehouseUrl = await createTestDatabase(`${name}_warehouse`);
  const source = new Client({ connectionString: sourceUrl });
  const warehouse = new Client({ connectionString: warehouseUrl });
  await source.connect();
  await warehouse.connect();
  try {
    await installTotesys(source, { scale: 0.02, seed: 11 });
    await migrateWarehouse(warehouse);
    await loadSourceSnapshot(sourceUrl, warehouse, at(1));
    await source.query(
      `UPDATE "sales_order" SET "units_sold" = "units_sold" + 1000 WHERE "sales_order_id" % 3 = 0`,
    );
    await source.query(`UPDATE "sales_order" SET "unit_price" = 3.99 WHERE "sales_order_id" % 7 = 0`);
    await source.query(`UPDATE "purchase_order" SET "item_quantity" = 500 WHERE "purchase_order_id" % 4 = 0`);
    await source.query(`UPDATE "payment" SET "paid" = NOT "paid" WHERE "payment_id" % 5 = 0`);
    // Payments due today, due next week and overdue since yesterday: the edges of "overdue".
    for (const [id, days] of [
      [2, 0],
      [3, 7],
      [4, -1],
    ])
      await source.query(
        `UPDATE "payment" SET "paid" = false, "payment_date" = to_char(current_date + $2::int, 'YYYY-MM-DD')
          WHERE "payment_id" = $1`,
        [id, days],
      );
    await source.query(`UPDATE "design" SET "design_name" = 'Renamed' WHERE "design_id" = 1`);
    await loadSourceSnapshot(sourceUrl, warehouse, at(2));
    const { rows } = await warehouse.query<{ id: number }>(
      `UPDATE "fact_sales_order" SET "_deleted" = true
        WHERE "sales_record_id" = (SELECT "sales_record_id" FROM "fact_sales_order"
                                    ORDER BY "sales_order_id", "_lsn" DESC LIMIT 1)
        RETURNING "sales_order_id" AS id`,
    );
    return { sourceUrl, warehouseUrl, deletedSalesOrderId: rows[0].id };
  } finally {
    await Promise.all([source.end(), warehouse.end()]);
  }
}
