import { Client } from 'pg';
import { installTotesys } from '../../totesys';
import { createTestDatabase } from '../../test/support/pg';
import { at, loadSourceSnapshot, objectOf, parquetOf, rowOf } from '../../test/support/warehouse-rows';
import { decodeParquet } from '../shared/parquet-codec';
import { applyBatch } from './apply-batch';
import { prepareBatch } from './load-batch';
import { migrateWarehouse } from './migrate';
import { compareTable, MissingTableError, renderVerifyReport, verifyWarehouse } from './verify';

let source: Client;
let warehouse: Client;
let sourceUrl: string;

beforeAll(async () => {
  sourceUrl = await createTestDatabase('verify_source');
  source = new Client({ connectionString: sourceUrl });
  await source.connect();
  await installTotesys(source, { scale: 0.02, seed: 7 });
  warehouse = new Client({ connectionString: await createTestDatabase('verify_warehouse') });
  await warehouse.connect();
  await migrateWarehouse(warehouse);
  await loadSourceSnapshot(sourceUrl, warehouse);
});

afterAll(async () => {
  await Promise.all([source.end(), warehouse.end()]);
});

describe('verifyWarehouse (real Postgres)', () => {
  it('passes on a warehouse loaded from the source, counting every table', async () => {
    const report = await verifyWarehouse(source, warehouse);
    expect(report.ok).toBe(true);
    const counts = Object.fromEntries(report.tables.map((t) => [t.table, [t.sourceRows, t.warehouseRows]]));
    const { rows } = await source.query(`SELECT (SELECT count(*) FROM "sales_order")::int AS n`);
    expect(counts.fact_sales_order).toEqual([rows[0].n, rows[0].n]);
    expect(counts.dim_staff).toEqual([20, 20]);
    expect(counts.dim_location).toEqual([30, 30]);
    expect(renderVerifyReport(report)).toMatch(/warehouse matches the source \(10 tables\)\n$/);
  });

  it('compares the latest version of each fact, and leaves placeholders and deletes out', async () => {
    // An older version of sales order 1 arriving late changes nothing; a placeholder and a deleted
    // row are not compared.
    const older = objectOf('fact_sales_order', [rowOf('fact_sales_order', 1, { units_sold: 1 }, at(0, 1))]);
    await applyBatch(warehouse, prepareBatch(await decodeParquet(await parquetOf(older))), {
      objectKey: older.key,
    });
    await warehouse.query(
      `INSERT INTO "dim_design" ("design_id", "design_name", "file_location", "file_name", "_lsn", "_seq", "_inferred")
       VALUES (99999, '(unknown)', '(unknown)', '(unknown)', '0/0', 0, true)`,
    );
    const report = await verifyWarehouse(source, warehouse);
    expect(report.ok).toBe(true);
    const designs = report.tables.find((t) => t.table === 'dim_design')!;
    expect(designs.placeholders).toBe(1);
    const sales = report.tables.find((t) => t.table === 'fact_sales_order')!;
    expect(sales.versions).toBe(sales.sourceRows + 1);
    await warehouse.query('DELETE FROM "dim_design" WHERE "design_id" = 99999');
  });

  it('fails with a readable diff when the warehouse was tampered with or lags behind', async () => {
    const department = (
      await warehouse.query(`SELECT "department_name" FROM "dim_staff" WHERE "staff_id" = 3`)
    ).rows[0].department_name;
    const price = (await source.query(`SELECT "unit_price" FROM "sales_order" WHERE "sales_order_id" = 2`))
      .rows[0].unit_price;
    await warehouse.query(`UPDATE "dim_staff" SET "department_name" = 'Tampered' WHERE "staff_id" = 3`);
    await warehouse.query(`UPDATE "dim_location" SET "_deleted" = true WHERE "location_id" = 2`);
    await warehouse.query(
      `UPDATE "fact_payment" SET "payment_amount" = "payment_amount" + 0.01 WHERE "payment_id" = 5`,
    );
    await warehouse.query(
      `INSERT INTO "dim_currency" ("currency_id", "currency_code", "currency_name", "_lsn", "_seq")
       VALUES (77, 'JPY', 'Yen', '0/1', 0)`,
    );
    // A source change the pipeline has not delivered yet.
    await source.query(`UPDATE "sales_order" SET "unit_price" = 3.10 WHERE "sales_order_id" = 2`);
    try {
      const report = await verifyWarehouse(source, warehouse, { limit: 5 });

      expect(report.ok).toBe(false);
      const byTable = Object.fromEntries(report.tables.map((t) => [t.table, t]));
      expect(byTable.dim_staff.differences).toEqual([
        {
          kind: 'different',
          key: '3',
          columns: [{ column: 'department_name', source: department, warehouse: 'Tampered' }],
        },
      ]);
      expect(byTable.dim_location).toMatchObject({ missing: 1, deleted: 1, warehouseRows: 29 });
      expect(byTable.dim_currency).toMatchObject({ extra: 1, differences: [{ kind: 'extra', key: '77' }] });
      expect(byTable.fact_sales_order.differences).toEqual([
        {
          kind: 'different',
          key: '2',
          columns: [{ column: 'unit_price', source: '3.10', warehouse: price }],
        },
      ]);
      const text = renderVerifyReport(report);
      expect(text).toContain('✗ dim_staff');
      expect(text).toContain(`staff_id 3: department_name source "${department}" ≠ warehouse "Tampered"`);
      expect(text).toContain('location_id 2: missing from the warehouse');
      expect(text).toContain('currency_id 77: in the warehouse, not in the source');
      expect(text).toMatch(/payment_id 5: payment_amount source "[\d.]+" ≠ warehouse "[\d.]+"/);
      expect(text).toMatch(/warehouse differs from the source in 5 of 10 tables\n$/);
      expect(text).toContain('✓ dim_design');
    } finally {
      await warehouse.query(`UPDATE "dim_staff" SET "department_name" = $1 WHERE "staff_id" = 3`, [
        department,
      ]);
      await warehouse.query(`UPDATE "dim_location" SET "_deleted" = false WHERE "location_id" = 2`);
      await warehouse.query(
        `UPDATE "fact_payment" SET "payment_amount" = "payment_amount" - 0.01 WHERE "payment_id" = 5`,
      );
      await warehouse.query(`DELETE FROM "dim_currency" WHERE "currency_id" = 77`);
      await source.query(`UPDATE "sales_order" SET "unit_price" = $1 WHERE "sales_order_id" = 2`, [price]);
    }
    expect((await verifyWarehouse(source, warehouse)).ok).toBe(true);
  });

  it('says which side is missing a table', async () => {
    const empty = new Client({ connectionString: await createTestDatabase('verify_empty') });
    await empty.connect();
    try {
      await expect(verifyWarehouse(empty, warehouse)).rejects.toThrow(/source has no table address/);
      await expect(verifyWarehouse(source, empty)).rejects.toBeInstanceOf(MissingTableError);
    } finally {
      await empty.end();
    }
  });
});

describe('compareTable', () => {
  it('lists the first differences in key order and counts the rest', () => {
    const row = (id: number, name: string | null) => ({
      payment_type_id: String(id),
      payment_type_name: name,
    });
    const report = compareTable(
      'dim_payment_type',
      [row(10, 'A'), row(2, 'B'), row(3, null), row(4, 'D')],
      [row(2, 'b'), row(3, 'C'), row(4, 'D'), row(11, 'E')],
      2,
    );
    expect(report).toMatchObject({ missing: 1, extra: 1, different: 2 });
    expect(report.differences.map((d) => `${d.kind} ${d.key}`)).toEqual(['different 2', 'different 3']);
    const text = renderVerifyReport({ ok: false, tables: [report] });
    expect(text).toContain('payment_type_id 3: payment_type_name source NULL ≠ warehouse "C"');
    expect(text).toContain('… and 2 more');
  });

  it('shortens long values in the text', () => {
    const long = 'x'.repeat(500);
    const report = compareTable(
      'dim_payment_type',
      [{ payment_type_id: '1', payment_type_name: long }],
      [{ payment_type_id: '1', payment_type_name: 'y' }],
      10,
    );
    expect(renderVerifyReport({ ok: false, tables: [report] })).toMatch(/source "x{57}…" ≠ warehouse "y"/);
  });
});
