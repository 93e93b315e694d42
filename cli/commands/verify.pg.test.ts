import { PutObjectCommand } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { PROCESSED_BUCKET } from '../../local/local-stack';
import { s3ClientFor, startS3rver } from '../../local/s3rver';
import { migrateWarehouse } from '../../processors/load/migrate';
import { createTestDatabase } from '../../test/support/pg';
import { loadSourceSnapshot } from '../../test/support/warehouse-rows';
import { createTotesysSchema, installTotesys } from '../../totesys';
import { runTotes } from '../../test/support/cli';

let sourceUrl: string;
let warehouseUrl: string;
let warehouse: Client;
/** A local stack's data directory with nothing outstanding. */
let cleanDir: string;
let root: string;
const tempDir = () => fs.mkdtempSync(path.join(root, 'data-'));

const verify = (...args: string[]) => runTotes('verify', ...args);
/** verify of the test's source and warehouse, looking at a data directory with nothing outstanding. */
const verifyClean = (...args: string[]) =>
  verify('--source-url', sourceUrl, '--warehouse-url', warehouseUrl, '--data-dir', cleanDir, ...args);

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
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-verify-cli-'));
  cleanDir = tempDir();
  fs.mkdirSync(path.join(cleanDir, 'triggers'));
});

afterAll(async () => {
  await warehouse.end();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('totes verify (real Postgres)', () => {
  it('exits 0 and says so when the warehouse matches the source', async () => {
    const { code, out, err } = await verifyClean();
    expect(err).toBe('');
    expect(code).toBe(0);
    expect(out).toMatch(/^✓ dim_location +source 30, warehouse 30\n/);
    expect(out).toMatch(/✓ fact_payment +source \d+, warehouse \d+ \(\d+ versions\)\n/);
    expect(out).toMatch(/\n✓ dim_date +\d+ referenced dates, all present with correct attributes\n/);
    expect(out).toMatch(/\n✓ references +24 fact → dimension references, every row's target present\n/);
    expect(out).toContain(`\n✓ quarantine           nothing quarantined or dead-lettered in ${cleanDir}\n`);
    expect(out).toMatch(/warehouse matches the source \(10 tables, \d+ dates\)\n$/);
  });

  it('exits 1 with the diff when a row was tampered with, as text or JSON, after --wait gave up', async () => {
    const original = (await warehouse.query(`SELECT "file_name" FROM "dim_design" WHERE "design_id" = 1`))
      .rows[0].file_name;
    await warehouse.query(`UPDATE "dim_design" SET "file_name" = 'tampered.json' WHERE "design_id" = 1`);
    try {
      const text = await verifyClean('--wait', '1');
      expect(text.code).toBe(1);
      expect(text.out).toMatch(/✗ dim_design +source \d+, warehouse \d+: 1 different\n/);
      expect(text.out).toMatch(/ {4}design_id 1: file_name source ".+" ≠ warehouse "tampered.json"\n/);
      const json = await verifyClean('--json', '--limit', '0');
      expect(json.code).toBe(1);
      const report = JSON.parse(json.out);
      expect(report).toMatchObject({ ok: false, matches: false, exitCode: 1 });
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
    process.env.TOTES_DATA_DIR = cleanDir;
    try {
      const { code, out } = await verify('--limit', '3');
      expect(code).toBe(0);
      expect(out).toContain(`nothing quarantined or dead-lettered in ${cleanDir}`);
    } finally {
      delete process.env.TOTES_SOURCE_URL;
      delete process.env.TOTES_WAREHOUSE_URL;
      delete process.env.TOTES_DATA_DIR;
    }
  });

  it('exits 4 while work is quarantined or dead-lettered, 0 with --allow-quarantine', async () => {
    const dataDir = tempDir();
    const s3 = await startS3rver({ dataDir: path.join(dataDir, 's3'), buckets: [PROCESSED_BUCKET] });
    const client = s3ClientFor(s3.endpoint);
    try {
      await client.send(
        new PutObjectCommand({
          Bucket: PROCESSED_BUCKET,
          Key: 'quarantine/load/fact_payment/x.parquet',
          Body: 'x',
        }),
      );
    } finally {
      client.destroy();
      await s3.stop();
    }
    fs.mkdirSync(path.join(dataDir, 'triggers'));
    fs.writeFileSync(path.join(dataDir, 'triggers', 'transform.dead-letter.jsonl'), '{"error":"boom"}\n');
    const args = ['--source-url', sourceUrl, '--warehouse-url', warehouseUrl, '--data-dir', dataDir];

    const failing = await verify(...args);
    expect(failing.code).toBe(4);
    expect(failing.out).toContain(
      `\n✗ quarantine           1 quarantined object, 1 dead-lettered event in ${dataDir}\n` +
        `    s3/${PROCESSED_BUCKET}/quarantine/load/: 1 object, objects the load could not apply\n` +
        '      quarantine/load/fact_payment/x.parquet\n' +
        '    triggers/transform.dead-letter.jsonl: 1 event, events whose handler failed after every retry\n' +
        '      {"error":"boom"}\n',
    );
    expect(failing.out).toMatch(
      /warehouse matches the source \(10 tables, \d+ dates\); 2 quarantined or dead-lettered\n$/,
    );

    const allowed = await verify(...args, '--allow-quarantine');
    expect(allowed.code).toBe(0);
    expect(allowed.out).toMatch(/\n! quarantine .*\(allowed by --allow-quarantine\)\n/);
    expect(allowed.out).toMatch(/; 2 quarantined or dead-lettered \(allowed\)\n$/);

    const json = JSON.parse((await verify(...args, '--json')).out);
    expect(json).toMatchObject({
      ok: false,
      matches: true,
      exitCode: 4,
      allowQuarantine: false,
      outstanding: { checked: true, dataDir, total: 2 },
    });
  });

  it('says when it did not look for quarantine, and fails on a data directory that is not there', async () => {
    const cwd = process.cwd();
    process.chdir(tempDir());
    try {
      const { code, out } = await verify('--source-url', sourceUrl, '--warehouse-url', warehouseUrl);
      expect(code).toBe(0);
      expect(out).toContain(
        '\n- quarantine           not checked: no data directory at ./.totes (give --data-dir for a local stack)\n',
      );
    } finally {
      process.chdir(cwd);
    }
    const missing = path.join(tempDir(), 'absent');
    const { code, err } = await verify(
      '--source-url',
      sourceUrl,
      '--warehouse-url',
      warehouseUrl,
      '--data-dir',
      missing,
    );
    expect(code).toBe(3);
    expect(err).toBe(`totes verify: the data directory ${missing} does not exist\n`);
  });

  it('exits 1 on an empty source and warehouse: nothing compared proves nothing', async () => {
    const emptySource = await createTestDatabase('verify_cli_empty_source');
    const emptyWarehouse = await createTestDatabase('verify_cli_empty_warehouse');
    const s = new Client({ connectionString: emptySource });
    const w = new Client({ connectionString: emptyWarehouse });
    await Promise.all([s.connect(), w.connect()]);
    try {
      await createTotesysSchema(s);
      await migrateWarehouse(w);
    } finally {
      await Promise.all([s.end(), w.end()]);
    }
    const { code, out } = await verify(
      '--source-url',
      emptySource,
      '--warehouse-url',
      emptyWarehouse,
      '--data-dir',
      cleanDir,
    );
    expect(code).toBe(1);
    expect(out).toContain('✗ the source has no rows in any compared table\n');
    expect(out).toMatch(/nothing to compare: an empty database proves nothing\n$/);
  });

  it('documents its checks, options and exit codes in --help', async () => {
    const { code, out } = await verify('--help');
    expect(code).toBe(0);
    expect(out).toContain('--allow-quarantine');
    expect(out).toContain('--data-dir VALUE');
    expect(out).toMatch(/0 when all is well, 1 when the warehouse differs from the source/);
    expect(out).toContain('4 when it matches but work is quarantined or dead-lettered');
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
