import { Client } from 'pg';
import { migrateWarehouse } from '../../processors/load/migrate';
import { createTestDatabase } from '../../test/support/pg';
import { loadSourceSnapshot } from '../../test/support/warehouse-rows';
import { installTotesys } from '../../totesys';
import { runTotes } from '../../test/support/cli';

let sourceUrl: string;
let warehouseUrl: string;
let warehouse: Client;

const verify = (...args: string[]) => runTotes('verify', ...args);

beforeAll(async () => {
  sourceUrl = await createTestDatabase('verify_cli_source');
  warehouseUrl = await createTestDatabase('verify_cli_warehouse');
  const source = new Client({ connectionString: sourceUrl });
  await source.connect();
  await installTotesys(source, { scale: 0.01, seed: 3 });
  await source.end();
  warehouse = new Client({ connectionString: warehouseUrl });
  await warehouse.connect();
  await migrateWarehouse(warehouse);
  await loadSourceSnapshot(sourceUrl, warehouse);
});

afterAll(() => warehouse.end());

describe('totes verify (real Postgres)', () => {
  it('exits 0 and says so when the warehouse matches the source', async () => {
    const { code, out, err } = await verify('--source-url', sourceUrl, '--warehouse-url', warehouseUrl);
    expect(err).toBe('');
    expect(code).toBe(0);
    expect(out).toMatch(/^✓ dim_location +source 30, warehouse 30\n/);
    expect(out).toMatch(/✓ fact_payment +source \d+, warehouse \d+ \(\d+ versions\)\n/);
    expect(out).toMatch(/warehouse matches the source \(10 tables\)\n$/);
  });

  it('exits 1 with the diff when a row was tampered with, as text or JSON, after --wait gave up', async () => {
    const original = (await warehouse.query(`SELECT "file_name" FROM "dim_design" WHERE "design_id" = 1`))
      .rows[0].file_name;
    await warehouse.query(`UPDATE "dim_design" SET "file_name" = 'tampered.json' WHERE "design_id" = 1`);
    try {
      const text = await verify('--source-url', sourceUrl, '--warehouse-url', warehouseUrl, '--wait', '1');
      expect(text.code).toBe(1);
      expect(text.out).toMatch(/✗ dim_design +source \d+, warehouse \d+: 1 different\n/);
      expect(text.out).toMatch(/ {4}design_id 1: file_name source ".+" ≠ warehouse "tampered.json"\n/);
      const json = await verify(
        '--source-url',
        sourceUrl,
        '--warehouse-url',
        warehouseUrl,
        '--json',
        '--limit',
        '0',
      );
      expect(json.code).toBe(1);
      const report = JSON.parse(json.out);
      expect(report.ok).toBe(false);
      expect(report.tables.find((t: { table: string }) => t.table === 'dim_design')).toMatchObject({
        different: 1,
        differences: [],
      });
    } finally {
      await warehouse.query(`UPDATE "dim_design" SET "file_name" = $1 WHERE "design_id" = 1`, [original]);
    }
  });

  it('takes its URLs from the environment', async () => {
    process.env.TOTES_SOURCE_URL = sourceUrl;
    process.env.TOTES_WAREHOUSE_URL = warehouseUrl;
    try {
      expect((await verify('--limit', '3')).code).toBe(0);
    } finally {
      delete process.env.TOTES_SOURCE_URL;
      delete process.env.TOTES_WAREHOUSE_URL;
    }
  });

  it('exits 3 when it cannot compare, without printing the password', async () => {
    const wrong = new URL(warehouseUrl);
    wrong.password = 'hunter2-secret';
    wrong.port = '1';
    const { code, err } = await verify('--source-url', sourceUrl, '--warehouse-url', wrong.toString());
    expect(code).toBe(3);
    expect(err).toMatch(/^totes verify: cannot connect to the warehouse postgres:\/\/postgres:\*\*\*@/);
    expect(err).not.toContain('hunter2-secret');
    const unmigrated = await createTestDatabase('verify_cli_empty');
    const missing = await verify('--source-url', sourceUrl, '--warehouse-url', unmigrated);
    expect(missing).toMatchObject({ code: 3, err: expect.stringContaining('the warehouse has no table') });
    const badSource = await verify('--source-url', wrong.toString(), '--warehouse-url', warehouseUrl);
    expect(badSource.err).toContain('cannot connect to the source');
  });

  it('exits 2 on bad usage', async () => {
    expect((await verify()).code).toBe(2);
    expect((await verify('--source-url', sourceUrl)).err).toContain('--warehouse-url is required');
    expect(
      (await verify('--source-url', sourceUrl, '--warehouse-url', warehouseUrl, '--limit', '-1')).code,
    ).toBe(2);
    expect((await verify('--source-url', sourceUrl, '--warehouse-url', warehouseUrl, 'extra')).code).toBe(2);
  });
});
