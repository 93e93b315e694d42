import { Client } from 'pg';
import { WAREHOUSE_TABLES, type WarehouseTableName, type WarehouseType } from '../../core/warehouse-model';
import { createTestDatabase, testClusterUrl, withDatabase } from '../../test/support/pg';
import { at, loadSourceSnapshot, lsnOf } from '../../test/support/warehouse-rows';
import { createTotesysSchema, installTotesys } from '../../totesys';
import { migrateWarehouse } from './migrate';
import {
  compareTable,
  expectedDimDate,
  MissingTableError,
  renderVerifyReport,
  tableDigest,
  VERIFIED_TABLES,
  type VerifiedTable,
  verifyWarehouse,
  type VerifyOptions,
  type VerifyReport,
} from './verify';

/**
 * Every scenario gets its own copy of a source and a warehouse loaded from it (CREATE DATABASE …
 * TEMPLATE, https://www.postgresql.org/docs/current/manage-ag-templatedbs.html), so a scenario builds
 * the warehouse state it needs with plain SQL and never has to undo it.
 */
let sourceTemplate: string;
let warehouseTemplate: string;
const clients: Client[] = [];
/** Each database's URL, by the client connected to it (for verify's extra connections). */
const urls = new Map<Client, string>();

beforeAll(async () => {
  const sourceUrl = await createTestDatabase('verify_source');
  const source = new Client({ connectionString: sourceUrl });
  await source.connect();
  await installTotesys(source, { scale: 0.02, seed: 7 });
  await source.end();
  const warehouseUrl = await createTestDatabase('verify_warehouse');
  const warehouse = new Client({ connectionString: warehouseUrl });
  await warehouse.connect();
  await migrateWarehouse(warehouse);
  await loadSourceSnapshot(sourceUrl, warehouse);
  await warehouse.end();
  sourceTemplate = new URL(sourceUrl).pathname.slice(1);
  warehouseTemplate = new URL(warehouseUrl).pathname.slice(1);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end()));
});

let copies = 0;
async function copyOf(template: string): Promise<Client> {
  copies += 1;
  const name = `${template}_${copies}`;
  const admin = new Client({ connectionString: testClusterUrl() });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await admin.query(`CREATE DATABASE "${name}" TEMPLATE "${template}"`);
  } finally {
    await admin.end();
  }
  return connected(withDatabase(testClusterUrl(), name));
}

async function connected(url: string): Promise<Client> {
  const client = new Client({ connectionString: url });
  await client.connect();
  clients.push(client);
  urls.set(client, url);
  return client;
}

/** verify's second connection to a side, as `totes verify` opens it. */
const connectTo = (source: Client, warehouse: Client) => async (side: 'source' | 'warehouse') => {
  const client = new Client({ connectionString: urls.get(side === 'source' ? source : warehouse) });
  await client.connect();
  return client;
};

/**
 * verifyWarehouse on one connection per side and on two (tables read at once, each side's second
 * connection in the first one's snapshot): the two reports must be the same. Returns the second.
 */
async function verify(source: Client, warehouse: Client, options: VerifyOptions = {}): Promise<VerifyReport> {
  const one = await verifyWarehouse(source, warehouse, options);
  const two = await verifyWarehouse(source, warehouse, { ...options, connect: connectTo(source, warehouse) });
  expect(two).toEqual(one);
  return two;
}

async function emptyDatabase(name: string): Promise<Client> {
  return connected(await createTestDatabase(name));
}

/** A source and a warehouse loaded from it, both private to the test. */
async function pair(): Promise<{ source: Client; warehouse: Client }> {
  return { source: await copyOf(sourceTemplate), warehouse: await copyOf(warehouseTemplate) };
}

interface Version {
  epoch?: number;
  lsn: string;
  seq?: number;
  hash?: string | null;
  deleted?: boolean;
  /** Read by a snapshot (default) rather than a WAL change. */
  snapshot?: boolean;
  /** Column values to change (SQL expressions). */
  set?: Record<string, string>;
}

/** Adds a version of fact `key`: a copy of its latest version at another position. */
async function addVersion(w: Client, table: WarehouseTableName, key: number, v: Version): Promise<void> {
  const spec = WAREHOUSE_TABLES[table];
  const columns = spec.columns.map((c) => c.name);
  const values = columns.map((c) => v.set?.[c] ?? `t."${c}"`);
  await w.query(
    `INSERT INTO "${table}" (${columns.map((c) => `"${c}"`).join(', ')}, "_epoch", "_lsn", "_seq", "_commit_ts", "_row_hash", "_deleted", "_snapshot")
     SELECT ${values.join(', ')}, $2, $3, $4, t."_commit_ts", $5, $6, $7
       FROM "${table}" AS t WHERE t."${spec.key}" = $1
      ORDER BY t."_epoch" DESC, t."_lsn" DESC, t."_seq" DESC LIMIT 1`,
    [key, v.epoch ?? 0, v.lsn, v.seq ?? 0, v.hash ?? null, v.deleted ?? false, v.snapshot ?? true],
  );
}

async function setHash(
  w: Client,
  table: WarehouseTableName,
  key: number,
  hash: string | null,
): Promise<void> {
  await w.query(`UPDATE "${table}" SET "_row_hash" = $2 WHERE "${WAREHOUSE_TABLES[table].key}" = $1`, [
    key,
    hash,
  ]);
}

async function hashOf(w: Client, key: number): Promise<string> {
  const { rows } = await w.query(
    `SELECT "_row_hash" FROM "fact_sales_order" WHERE "sales_order_id" = $1 ORDER BY "_epoch" DESC, "_lsn" DESC, "_seq" DESC LIMIT 1`,
    [key],
  );
  return rows[0]._row_hash;
}

/** Another value of a column's type, NULL included (SQL). */
function otherValue(column: string, type: WarehouseType): string {
  const c = `"${column}"`;
  switch (type) {
    case 'int':
      return `coalesce(${c}, 0) + 1000000`;
    case 'numeric(10,2)':
      return `coalesce(${c}, 0) + 0.01`;
    case 'date':
      return `coalesce(${c}, '2000-01-01') + 1`;
    case 'time':
      return `coalesce(${c}, '00:00') + interval '1 millisecond'`;
    case 'boolean':
      return `NOT coalesce(${c}, false)`;
    default:
      return `CASE WHEN ${c} = 'x' THEN 'y' ELSE 'x' END`;
  }
}

const tableOf = (report: VerifyReport, table: string) => report.tables.find((t) => t.table === table)!;

describe('verifyWarehouse (real Postgres)', () => {
  it('passes on a warehouse loaded from the source: every table, every referenced date', async () => {
    const { source, warehouse } = await pair();
    const report = await verify(source, warehouse);
    expect(report.ok).toBe(true);
    expect(report.empty).toEqual([]);
    // No row crossed the wire: every table's digests were equal.
    expect(report.tables.map((t) => t.comparedBy)).toEqual(VERIFIED_TABLES.map(() => 'digest'));
    const counts = Object.fromEntries(report.tables.map((t) => [t.table, [t.sourceRows, t.warehouseRows]]));
    const { rows } = await source.query(`SELECT (SELECT count(*) FROM "sales_order")::int AS n`);
    expect(counts.fact_sales_order).toEqual([rows[0].n, rows[0].n]);
    expect(counts.dim_staff).toEqual([20, 20]);
    expect(counts.dim_location).toEqual([30, 30]);
    expect(tableOf(report, 'fact_sales_order')).toMatchObject({
      compared: 'fact_sales_order_current',
      rereads: { keys: 0, versions: 0, examples: [] },
    });
    // Attributes as the load computes them (Postgres' to_char/extract) equal verify's own (TS).
    const { rows: dates } = await warehouse.query(`SELECT count(*)::int AS n FROM "dim_date"`);
    expect(report.dates).toMatchObject({ referenced: dates[0].n, missing: 0, wrong: 0 });
    expect(report.dates.referenced).toBeGreaterThan(100);
    const text = renderVerifyReport(report);
    expect(text).toMatch(/^✓ dim_date +\d+ referenced dates, all present with correct attributes$/m);
    expect(report.references).toEqual({ checked: 24, dangling: [] });
    expect(text).toMatch(/^✓ references +24 fact → dimension references, every row's target present$/m);
    expect(text).toMatch(/warehouse matches the source \(10 tables, \d+ dates\)\n$/);
  });

  it("changes a table's digest with any one column of any row, NULL against '', and a row no longer current", async () => {
    const { source, warehouse } = await pair();
    /** The warehouse's digest of `table` after `change` (rolled back), against the source's. */
    const digestAfter = async (table: VerifiedTable, change: string, params: unknown[] = []) => {
      await warehouse.query('BEGIN');
      try {
        await warehouse.query(change, params);
        return await tableDigest(warehouse, 'warehouse', table);
      } finally {
        await warehouse.query('ROLLBACK');
      }
    };
    for (const table of VERIFIED_TABLES) {
      const spec = WAREHOUSE_TABLES[table];
      const expected = await tableDigest(source, 'source', table);
      expect({ table, digest: await tableDigest(warehouse, 'warehouse', table) }).toEqual({
        table,
        digest: expected,
      });
      const { rows } = await warehouse.query<{ k: string }>(
        `SELECT min("${spec.key}")::text AS k FROM "${spec.kind === 'fact' ? `${table}_current` : table}"`,
      );
      for (const c of spec.columns) {
        const set = `UPDATE "${table}" SET "${c.name}" = ${otherValue(c.name, c.type)} WHERE "${spec.key}" = $1`;
        const after = await digestAfter(table, set, [rows[0].k]);
        expect({ table, column: c.name, rows: after.rows, same: after.sum === expected.sum }).toEqual({
          table,
          column: c.name,
          rows: expected.rows,
          same: false,
        });
      }
      // A row the warehouse no longer holds as current: a deleted dimension row, a fact key whose
      // latest version a delete ended.
      const gone =
        spec.kind === 'fact'
          ? await (async () => {
              await warehouse.query('BEGIN');
              try {
                await addVersion(warehouse, table, Number(rows[0].k), { lsn: 'F/0', deleted: true });
                return await tableDigest(warehouse, 'warehouse', table);
              } finally {
                await warehouse.query('ROLLBACK');
              }
            })()
          : await digestAfter(table, `UPDATE "${table}" SET "_deleted" = true WHERE "${spec.key}" = $1`, [
              rows[0].k,
            ]);
      expect({ table, rows: gone.rows }).toEqual({ table, rows: expected.rows - 1 });
      expect(gone.sum).not.toBe(expected.sum);
    }
    // NULL and '' apart: dim_location 1's address_line_2 each way gives two digests.
    const set = (value: string) =>
      digestAfter(
        'dim_location',
        `UPDATE "dim_location" SET "address_line_2" = ${value} WHERE "location_id" = 1`,
      );
    expect((await set('NULL')).sum).not.toBe((await set("''")).sum);
    // The same letters split at another place between two columns: two digests.
    const names = (first: string, last: string) =>
      digestAfter(
        'dim_staff',
        `UPDATE "dim_staff" SET "first_name" = '${first}', "last_name" = '${last}' WHERE "staff_id" = 2`,
      );
    expect((await names('Ann', 'Bee')).sum).not.toBe((await names('AnnB', 'ee')).sum);
  });

  it('finds a change in any one column of any table: the digest covers every column, and the rows say which', async () => {
    // Arrange: in each compared table, row i gets column i changed in the warehouse (the key
    // column too: its row is then missing and another extra).
    const { source, warehouse } = await pair();
    const changed = new Map<string, { key: string; column: string }[]>();
    for (const table of VERIFIED_TABLES) {
      const spec = WAREHOUSE_TABLES[table];
      const relation = spec.kind === 'fact' ? `${table}_current` : table;
      const { rows } = await warehouse.query<{ k: string }>(
        `SELECT "${spec.key}"::text AS k FROM "${relation}" ORDER BY "${spec.key}" LIMIT ${spec.columns.length}`,
      );
      expect(rows).toHaveLength(spec.columns.length);
      const list = spec.columns.map((c, i) => ({ key: rows[i].k, column: c.name }));
      for (const { key, column } of list) {
        const type = spec.columns.find((c) => c.name === column)!.type;
        await warehouse.query(
          `UPDATE "${table}" SET "${column}" = ${otherValue(column, type)} WHERE "${spec.key}" = $1`,
          [key],
        );
      }
      changed.set(table, list);
    }

    // Act
    const report = await verify(source, warehouse, { limit: 100 });

    // Assess: every change found, each in its column only.
    for (const table of VERIFIED_TABLES) {
      const t = tableOf(report, table);
      const list = changed.get(table)!;
      const keyChange = list.find((c) => c.column === WAREHOUSE_TABLES[table].key)!;
      expect({ table, comparedBy: t.comparedBy, missing: t.missing, extra: t.extra }).toEqual({
        table,
        comparedBy: 'rows',
        missing: 1,
        extra: 1,
      });
      expect(t.differences).toContainEqual(expect.objectContaining({ kind: 'missing', key: keyChange.key }));
      const different = t.differences.filter((d) => d.kind === 'different');
      expect(different.map((d) => [d.key, d.columns.map((c) => c.column)])).toEqual(
        list.filter((c) => c !== keyChange).map((c) => [c.key, [c.column]]),
      );
    }
  });

  it("reads on its second connections as of the first connections' snapshot", async () => {
    // Arrange: as the second warehouse connection begins its transaction (after the first one's
    // snapshot), another session changes a row of every table and commits.
    const { source, warehouse } = await pair();
    const tamper = async () => {
      const other = await connected(urls.get(warehouse)!);
      for (const table of VERIFIED_TABLES) {
        const spec = WAREHOUSE_TABLES[table];
        const column = spec.columns.find((c) => c.name !== spec.key)!;
        await other.query(
          `UPDATE "${table}" SET "${column.name}" = ${otherValue(column.name, column.type)}
            WHERE "${spec.key}" = (SELECT min("${spec.key}") FROM "${table}")`,
        );
      }
    };
    const connect = async (side: 'source' | 'warehouse') => {
      const client = await connectTo(source, warehouse)(side);
      if (side === 'warehouse') {
        const query = client.query.bind(client) as (text: unknown, ...rest: unknown[]) => Promise<unknown>;
        let tampered = false;
        Object.assign(client, {
          query: async (text: unknown, ...rest: unknown[]) => {
            if (!tampered && typeof text === 'string' && text.startsWith('BEGIN')) {
              tampered = true;
              await tamper();
            }
            return query(text, ...rest);
          },
        });
      }
      return client;
    };

    // Act
    const during = await verifyWarehouse(source, warehouse, { connect });
    const after = await verifyWarehouse(source, warehouse);

    // Assess: the verify that ran saw none of it (on either connection); the next one sees all.
    expect(during.ok).toBe(true);
    expect(during.tables.every((t) => t.comparedBy === 'digest')).toBe(true);
    expect(after.tables.filter((t) => t.different === 1).map((t) => t.table)).toEqual([...VERIFIED_TABLES]);
  });

  it("compares each fact's current view: the epoch orders versions, and a deleted latest version is not current", async () => {
    const { source, warehouse } = await pair();
    // Sales order 1: a later epoch with a lower LSN is the newer version (a new slot generation).
    await addVersion(warehouse, 'fact_sales_order', 1, { epoch: 5, lsn: '0/10', set: { units_sold: '1' } });
    // Payment 3: its latest version was ended by a delete, but the source still has the row.
    await addVersion(warehouse, 'fact_payment', 3, { lsn: '1/0', deleted: true });
    // Purchase order 99999: deleted from the source and in the warehouse: history only, fine.
    await addVersion(warehouse, 'fact_purchase_order', 1, {
      lsn: '2/0',
      deleted: true,
      set: { purchase_order_id: '99999' },
    });
    const report = await verify(source, warehouse);

    expect(report.ok).toBe(false);
    const sales = tableOf(report, 'fact_sales_order');
    expect(sales.differences).toEqual([
      {
        kind: 'different',
        key: '1',
        columns: [{ column: 'units_sold', source: expect.any(String), warehouse: '1' }],
      },
    ]);
    expect(tableOf(report, 'fact_payment')).toMatchObject({
      deleted: 1,
      missing: 0,
      differences: [{ kind: 'deleted', key: '3' }],
    });
    expect(tableOf(report, 'fact_purchase_order')).toMatchObject({
      extra: 0,
      deleted: 0,
      excluded: { deleted: 1 },
      differences: [],
    });
    const text = renderVerifyReport(report);
    expect(text).toMatch(
      /^✗ fact_payment +source \d+, warehouse \d+ \(\d+ versions, 1 deleted\): 1 deleted but live in the source$/m,
    );
    expect(text).toContain('payment_id 3: deleted in the warehouse, live in the source');
    expect(text).toMatch(/^✓ fact_purchase_order .*\(\d+ versions, 1 deleted\)$/m);
  });

  it("checks dimensions' deleted flags and placeholders against the source", async () => {
    const { source, warehouse } = await pair();
    await warehouse.query(`UPDATE "dim_location" SET "_deleted" = true WHERE "location_id" = 2`);
    await warehouse.query(`UPDATE "dim_payment_type" SET "_inferred" = true WHERE "payment_type_id" = 1`);
    await warehouse.query(
      `INSERT INTO "dim_currency" ("currency_id", "currency_code", "currency_name", "_lsn", "_seq")
       VALUES (77, 'JPY', 'Yen', '0/1', 0)`,
    );
    // Rows the source does not have either, not live in the warehouse: both right.
    await warehouse.query(
      `INSERT INTO "dim_design" ("design_id", "design_name", "file_location", "file_name", "_lsn", "_seq", "_deleted", "_inferred")
       VALUES (99998, 'Gone', '/x', 'gone.json', '0/9', 0, true, false),
              (99999, '(unknown)', '(unknown)', '(unknown)', '0/0', 0, false, true)`,
    );
    const report = await verify(source, warehouse, { limit: 5 });

    expect(report.ok).toBe(false);
    expect(tableOf(report, 'dim_location')).toMatchObject({
      deleted: 1,
      missing: 0,
      warehouseRows: 29,
      excluded: { deleted: 1, placeholders: 0 },
      differences: [{ kind: 'deleted', key: '2' }],
    });
    expect(tableOf(report, 'dim_payment_type')).toMatchObject({
      missing: 1,
      differences: [{ kind: 'placeholder', key: '1' }],
    });
    expect(tableOf(report, 'dim_currency')).toMatchObject({
      extra: 1,
      differences: [{ kind: 'extra', key: '77' }],
    });
    expect(tableOf(report, 'dim_design')).toMatchObject({
      differences: [],
      excluded: { deleted: 1, placeholders: 1 },
    });
    const text = renderVerifyReport(report);
    expect(text).toContain('location_id 2: deleted in the warehouse, live in the source');
    expect(text).toContain('payment_type_id 1: only a placeholder in the warehouse');
    expect(text).toContain('currency_id 77: live in the warehouse, not in the source');
    expect(text).toMatch(/^✓ dim_design .*\(1 placeholders, 1 deleted\)$/m);
    expect(text).toMatch(/warehouse differs from the source in 3 of 10 tables\n$/);
  });

  it('still compares values: a tampered dimension or fact, a source change not delivered yet', async () => {
    const { source, warehouse } = await pair();
    const department = (
      await warehouse.query(`SELECT "department_name" FROM "dim_staff" WHERE "staff_id" = 3`)
    ).rows[0].department_name;
    const price = (await source.query(`SELECT "unit_price" FROM "sales_order" WHERE "sales_order_id" = 2`))
      .rows[0].unit_price;
    await warehouse.query(`UPDATE "dim_staff" SET "department_name" = 'Tampered' WHERE "staff_id" = 3`);
    await warehouse.query(
      `UPDATE "fact_payment" SET "payment_amount" = "payment_amount" + 0.01 WHERE "payment_id" = 5`,
    );
    await source.query(`UPDATE "sales_order" SET "unit_price" = 3.10 WHERE "sales_order_id" = 2`);
    const report = await verify(source, warehouse);

    expect(tableOf(report, 'dim_staff').differences).toEqual([
      {
        kind: 'different',
        key: '3',
        columns: [{ column: 'department_name', source: department, warehouse: 'Tampered' }],
      },
    ]);
    expect(tableOf(report, 'fact_sales_order').differences).toEqual([
      { kind: 'different', key: '2', columns: [{ column: 'unit_price', source: '3.10', warehouse: price }] },
    ]);
    const text = renderVerifyReport(report);
    expect(text).toContain(`staff_id 3: department_name source "${department}" ≠ warehouse "Tampered"`);
    expect(text).toMatch(/payment_id 5: payment_amount source "[\d.]+" ≠ warehouse "[\d.]+"/);
    expect(text).toMatch(/warehouse differs from the source in 3 of 10 tables\n$/);
  });

  it('tells an empty string from NULL, and values from the same text split across other columns', async () => {
    // Arrange: dim_location 1 has address_line_2 NULL in the source (the export's first address),
    // the warehouse gets ''; dim_staff 2's names hold the same letters split at another place.
    const { source, warehouse } = await pair();
    await source.query(`UPDATE "address" SET "address_line_2" = NULL WHERE "address_id" = 1`);
    await warehouse.query(`UPDATE "dim_location" SET "address_line_2" = '' WHERE "location_id" = 1`);
    await source.query(`UPDATE "staff" SET "first_name" = 'Ann', "last_name" = 'Bee' WHERE "staff_id" = 2`);
    await warehouse.query(
      `UPDATE "dim_staff" SET "first_name" = 'AnnB', "last_name" = 'ee' WHERE "staff_id" = 2`,
    );

    // Act
    const report = await verify(source, warehouse);

    // Assess
    expect(tableOf(report, 'dim_location').differences).toEqual([
      { kind: 'different', key: '1', columns: [{ column: 'address_line_2', source: null, warehouse: '' }] },
    ]);
    expect(tableOf(report, 'dim_staff').differences).toEqual([
      {
        kind: 'different',
        key: '2',
        columns: [
          { column: 'first_name', source: 'Ann', warehouse: 'AnnB' },
          { column: 'last_name', source: 'Bee', warehouse: 'ee' },
        ],
      },
    ]);
    expect(report.ok).toBe(false);
  });

  it("tells text apart by its characters whatever the columns' collation: 'ABC' is not 'abc' under a case-insensitive one", async () => {
    // Arrange: email_address under a nondeterministic ICU collation on both sides (comparing and
    // hashing ignore case there), and dim_staff 1's address in upper case in the warehouse only.
    const { source, warehouse } = await pair();
    for (const [client, table] of [
      [source, 'staff'],
      [warehouse, 'dim_staff'],
    ] as const) {
      await client.query(
        `CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)`,
      );
      const { rows } = await client.query<{ type: string }>(
        `SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute
          WHERE attrelid = $1::regclass AND attname = 'email_address'`,
        [table],
      );
      await client.query(
        `ALTER TABLE "${table}" ALTER COLUMN "email_address" TYPE ${rows[0].type} COLLATE ci`,
      );
    }
    const { rows } = await warehouse.query<{ name: string; upper: string }>(
      `UPDATE "dim_staff" SET "email_address" = upper("email_address") WHERE "staff_id" = 1
       RETURNING "email_address" AS upper, (SELECT "email_address" FROM "dim_staff" WHERE "staff_id" = 1) AS name`,
    );
    expect(rows[0].upper).not.toBe(rows[0].name);
    // The collation at work: the two names are equal under it.
    const { rows: same } = await warehouse.query<{ equal: boolean }>(
      `SELECT $1::text COLLATE ci = $2::text COLLATE ci AS equal`,
      [rows[0].name, rows[0].upper],
    );
    expect(same[0].equal).toBe(true);

    // Act
    const report = await verify(source, warehouse);

    // Assess
    expect(tableOf(report, 'dim_staff')).toMatchObject({
      comparedBy: 'rows',
      differences: [
        {
          kind: 'different',
          key: '1',
          columns: [{ column: 'email_address', source: rows[0].name, warehouse: rows[0].upper }],
        },
      ],
    });
    expect(report.ok).toBe(false);
  });

  it("finds any column's values swapped between two rows: each row's hash counts on its own", async () => {
    // Every column still holds the same values, only in other rows: a sum of hashes linear in the
    // columns' hashes (as a record hash is, modulo 2^64) would often not see it.
    const { source, warehouse } = await pair();
    /** Swaps `column` between the rows of keys a and b, in a transaction rolled back after the digest. */
    const digestSwapped = async (table: VerifiedTable, column: string, a: string, b: string) => {
      const key = WAREHOUSE_TABLES[table].key;
      await warehouse.query('BEGIN');
      try {
        await warehouse.query(
          `UPDATE "${table}" AS t SET "${column}" = o."${column}" FROM "${table}" AS o
            WHERE (t."${key}", o."${key}") IN (($1::int, $2::int), ($2, $1))`,
          [a, b],
        );
        return await tableDigest(warehouse, 'warehouse', table);
      } finally {
        await warehouse.query('ROLLBACK');
      }
    };
    let swaps = 0;
    for (const table of VERIFIED_TABLES) {
      const spec = WAREHOUSE_TABLES[table];
      const expected = await tableDigest(source, 'source', table);
      const relation = spec.kind === 'fact' ? `${table}_current` : table;
      for (const c of spec.columns.filter((c) => c.name !== spec.key)) {
        // Up to four pairs of rows (in key order) that differ in the column.
        const { rows } = await warehouse.query<{ a: string; b: string }>(
          `SELECT a::text, b::text FROM (
             SELECT "${spec.key}" AS a, lead("${spec.key}") OVER w AS b,
                    "${c.name}" IS DISTINCT FROM lead("${c.name}") OVER w AS differ, row_number() OVER w AS i
               FROM "${relation}" WINDOW w AS (ORDER BY "${spec.key}")) AS p
            WHERE differ AND b IS NOT NULL AND i % 2 = 1 ORDER BY a LIMIT 4`,
        );
        for (const { a, b } of rows) {
          const after = await digestSwapped(table, c.name, a, b);
          expect({ table, column: c.name, a, b, rows: after.rows, same: after.sum === expected.sum }).toEqual(
            {
              table,
              column: c.name,
              a,
              b,
              rows: expected.rows,
              same: false,
            },
          );
          swaps += 1;
        }
      }
    }
    expect(swaps).toBeGreaterThan(100);
    // And verify reads such a table's rows and names both.
    await warehouse.query(
      `UPDATE "dim_staff" AS t SET "first_name" = o."first_name" FROM "dim_staff" AS o
        WHERE (t."staff_id", o."staff_id") IN ((1, 2), (2, 1))`,
    );
    const report = await verify(source, warehouse);
    expect(report.ok).toBe(false);
    expect(tableOf(report, 'dim_staff')).toMatchObject({ comparedBy: 'rows', different: 2 });
  });

  it('compares the dates the source keeps as text as text, and needs no particular DateStyle', async () => {
    // The source's text date `2023-1-5` is not the warehouse's 2023-01-05, although it means it.
    const { source, warehouse } = await pair();
    const { rows } = await source.query(
      `SELECT "agreed_payment_date" AS d FROM "sales_order" WHERE "sales_order_id" = 1`,
    );
    const [y, m, d] = (rows[0].d as string).split('-');
    const loose = `${y}-${Number(m)}-${Number(d)}`;
    // Some date of the source with a leading zero to drop (the export's are all YYYY-MM-DD).
    expect(loose).not.toBe(rows[0].d);
    // Sessions that print dates otherwise: verify's own transactions say ISO.
    await source.query(`SET DateStyle = 'SQL, DMY'`);
    await warehouse.query(`SET DateStyle = 'German'`);
    expect((await verifyWarehouse(source, warehouse)).ok).toBe(true);

    await source.query(`UPDATE "sales_order" SET "agreed_payment_date" = $1 WHERE "sales_order_id" = 1`, [
      loose,
    ]);
    const report = await verifyWarehouse(source, warehouse);
    expect(tableOf(report, 'fact_sales_order').differences).toEqual([
      {
        kind: 'different',
        key: '1',
        columns: [{ column: 'agreed_payment_date', source: loose, warehouse: rows[0].d }],
      },
    ]);
    // The session's own setting is left as it was.
    expect((await warehouse.query('SHOW DateStyle')).rows[0].DateStyle).toBe('German, DMY');
  });

  it('finds re-read versions: consecutive versions of a key with equal row hashes and no delete between', async () => {
    const { source, warehouse } = await pair();
    const T = 'fact_sales_order';
    // 1: re-read once, and only the epoch makes the two versions consecutive: by LSN alone,
    // version z would sit between them.
    await setHash(warehouse, T, 1, 'h1');
    await addVersion(warehouse, T, 1, { epoch: 7, lsn: '0/3', hash: 'z' });
    await addVersion(warehouse, T, 1, { epoch: 7, lsn: '0/5', hash: 'x1' });
    await addVersion(warehouse, T, 1, { epoch: 8, lsn: '0/1', hash: 'x1' });
    // 2: a delete between the two equal versions (deleted, then inserted again as it was).
    await setHash(warehouse, T, 2, 'h2');
    await addVersion(warehouse, T, 2, { lsn: '5/0', hash: 'h2' });
    await warehouse.query(
      `INSERT INTO "fact_delete" ("warehouse_table", "key", "_epoch", "_lsn", "_seq", "reason") VALUES ($1, 2, 0, '4/0', 0, 'delete')`,
      [T],
    );
    // 3: hashes unknown (rows loaded before hashes existed): nothing can be said.
    await addVersion(warehouse, T, 3, { lsn: '5/0', hash: null });
    // 4: a real change between two equal hashes: h4, x, h4.
    await setHash(warehouse, T, 4, 'h4');
    await addVersion(warehouse, T, 4, { lsn: '5/0', hash: 'x' });
    await addVersion(warehouse, T, 4, { lsn: '6/0', hash: 'h4' });
    // 5: a TRUNCATE of the source table between them.
    await setHash(warehouse, T, 5, 'h5');
    await addVersion(warehouse, T, 5, { lsn: '9/0', hash: 'h5' });
    await warehouse.query(
      `INSERT INTO "source_truncate" ("source_table", "_epoch", "_lsn", "_seq") VALUES ('sales_order', 0, '8/0', 0)`,
    );
    // 6: read three times: two re-read versions. A delete of another table's key 6, and a delete
    // of key 6 after all of its versions, change nothing.
    await setHash(warehouse, T, 6, 'h6');
    await addVersion(warehouse, T, 6, { lsn: '5/0', hash: 'h6' });
    await addVersion(warehouse, T, 6, { lsn: '6/0', hash: 'h6' });
    await warehouse.query(
      `INSERT INTO "fact_delete" ("warehouse_table", "key", "_epoch", "_lsn", "_seq", "reason")
       VALUES ('fact_payment', 6, 0, '5/80', 0, 'delete'), ($1, 6, 0, '7/0', 0, 'delete')`,
      [T],
    );
    await addVersion(warehouse, T, 6, { lsn: '7/10', hash: 'h6' });
    // 7: a WAL update that rewrote the row with the same values (SET x = x) is history, not a re-read.
    await setHash(warehouse, T, 7, 'h7');
    await addVersion(warehouse, T, 7, { lsn: '5/0', hash: 'h7', snapshot: false });
    // A payment re-read: another table, counted on its own.
    await setHash(warehouse, 'fact_payment', 1, 'p1');
    await addVersion(warehouse, 'fact_payment', 1, { epoch: 1, lsn: '0/1', hash: 'p1' });

    const report = await verify(source, warehouse, { limit: 2 });

    expect(report.ok).toBe(false);
    const sales = tableOf(report, T);
    // No value differs: the re-reads alone fail the run.
    expect(sales).toMatchObject({ missing: 0, extra: 0, different: 0, deleted: 0 });
    expect(sales.rereads).toEqual({
      keys: 2,
      versions: 3,
      examples: [
        { key: '1', versions: 1 },
        { key: '6', versions: 2 },
      ],
    });
    expect(tableOf(report, 'fact_payment').rereads).toEqual({
      keys: 1,
      versions: 1,
      examples: [{ key: '1', versions: 1 }],
    });
    expect(tableOf(report, 'fact_purchase_order').rereads).toEqual({ keys: 0, versions: 0, examples: [] });
    const text = renderVerifyReport(report);
    expect(text).toMatch(
      /^✗ fact_sales_order +source \d+, warehouse \d+ \(\d+ versions\): 3 re-read versions of 2 keys$/m,
    );
    expect(text).toContain(
      '    sales_order_id 6: 2 versions equal to the version before them (a re-read, no change)',
    );
    expect(text).toMatch(/warehouse differs from the source in 2 of 10 tables\n$/);

    const few = await verify(source, warehouse, { limit: 1 });
    expect(tableOf(few, T).rereads).toMatchObject({ keys: 2, versions: 3, examples: [{ key: '1' }] });
    expect(renderVerifyReport(few)).toContain('    … and 1 more key');
  });

  it('passes after re-snapshots through the real load: equal rows add no version, a changed row one', async () => {
    const { source, warehouse } = await pair();
    const sourceUrl = withDatabase(testClusterUrl(), source.database!);
    await loadSourceSnapshot(sourceUrl, warehouse, at(50));
    let report = await verify(source, warehouse);
    expect(report.ok).toBe(true);
    const sales = () => tableOf(report, 'fact_sales_order');
    expect(sales().versions).toBe(sales().sourceRows);

    await source.query(`UPDATE "sales_order" SET "units_sold" = "units_sold" + 1 WHERE "sales_order_id" = 3`);
    await loadSourceSnapshot(sourceUrl, warehouse, at(60));
    report = await verify(source, warehouse);
    expect(report.ok).toBe(true);
    expect(sales()).toMatchObject({ versions: sales().sourceRows + 1, rereads: { keys: 0 } });

    // Had the load kept a re-read, verify would say so.
    await addVersion(warehouse, 'fact_sales_order', 4, { lsn: lsnOf(70), hash: await hashOf(warehouse, 4) });
    report = await verify(source, warehouse);
    expect(report.ok).toBe(false);
    expect(sales().rereads).toEqual({ keys: 1, versions: 1, examples: [{ key: '4', versions: 1 }] });
  });

  it('checks that dim_date holds every date a fact refers to, with the right attributes', async () => {
    const { source, warehouse } = await pair();
    const date = (sql: string, params: string[] = []) =>
      warehouse.query(sql, params).then((r) => r.rows[0].d as string);
    const created = await date(
      `SELECT to_char("created_date", 'YYYY-MM-DD') AS d FROM "fact_sales_order" ORDER BY "sales_order_id" LIMIT 1`,
    );
    const paid = await date(
      `SELECT to_char("payment_date", 'YYYY-MM-DD') AS d FROM "fact_payment"
        WHERE "payment_date" <> $1::date ORDER BY "payment_id" LIMIT 1`,
      [created],
    );
    // No foreign key keeps dim_date rows (migration 007); the load never deletes one.
    // A date referenced only by an older version still needs its row.
    await addVersion(warehouse, 'fact_purchase_order', 1, {
      lsn: '0/2',
      set: { agreed_delivery_date: `'1999-12-31'` },
    });
    await warehouse.query(`DELETE FROM "dim_date" WHERE "date_id" IN ($1, '1999-12-31')`, [created]);
    await warehouse.query(
      `UPDATE "dim_date" SET "day_of_week" = "day_of_week" % 7 + 1, "day_name" = 'Someday', "quarter" = 5 WHERE "date_id" = $1`,
      [paid],
    );
    const report = await verify(source, warehouse);

    expect(report.ok).toBe(false);
    expect(report.tables.every((t) => t.differences.length === 0)).toBe(true);
    const expected = expectedDimDate(paid);
    expect(report.dates).toMatchObject({ missing: 2, wrong: 1 });
    expect(report.dates.differences).toEqual([
      { kind: 'missing', date: '1999-12-31' },
      ...[
        { kind: 'missing', date: created },
        {
          kind: 'different',
          date: paid,
          columns: [
            {
              column: 'day_of_week',
              expected: expected.day_of_week,
              warehouse: String((Number(expected.day_of_week) % 7) + 1),
            },
            { column: 'day_name', expected: expected.day_name, warehouse: 'Someday' },
            { column: 'quarter', expected: expected.quarter, warehouse: '5' },
          ],
        },
      ].sort((a, b) => a.date.localeCompare(b.date)),
    ]);
    const text = renderVerifyReport(report);
    expect(text).toMatch(/^✗ dim_date +\d+ referenced dates: 2 missing, 1 wrong$/m);
    expect(text).toContain(`    ${created}: missing from dim_date`);
    expect(text).toContain(`    ${paid}: day_of_week expected "${expected.day_of_week}" ≠ warehouse`);
    expect(text).toContain(`; day_name expected "${expected.day_name}" ≠ warehouse "Someday"; quarter`);
    // The fact rows referring to the missing dates are dangling references too.
    expect(report.references.dangling.map((d) => d.references)).toContain('dim_date');
    expect(report.references.dangling.every((d) => d.references === 'dim_date')).toBe(true);
    expect(text).toMatch(/warehouse differs from the source in dim_date and in \d+ of 24 references\n$/);
  });

  it('finds fact versions whose dimension or date row does not exist, per reference', async () => {
    const { source, warehouse } = await pair();
    // Postgres enforces no foreign key of the facts (migration 007): the load writes the referenced
    // rows (placeholders if need be) first, and verify checks every reference.
    // An older version of one key per fact with every reference dangling: only history, so the
    // current rows still equal the source's and only the reference check can see it.
    const dangling = (table: WarehouseTableName) =>
      WAREHOUSE_TABLES[table].columns
        .filter((c) => c.references)
        .map((c) => ({
          column: c.name,
          references: c.references!,
          value: c.references === 'dim_date' ? '1999-12-31' : String(990_000 + c.name.length),
        }));
    const facts = ['fact_sales_order', 'fact_purchase_order', 'fact_payment'] as const;
    for (const table of facts)
      await addVersion(warehouse, table, 2, {
        lsn: '0/0',
        hash: null,
        snapshot: false,
        set: Object.fromEntries(dangling(table).map((d) => [d.column, `'${d.value}'`])),
      });
    const report = await verify(source, warehouse);

    expect(report.ok).toBe(false);
    expect(report.tables.every((t) => t.differences.length === 0)).toBe(true);
    const expected = facts.flatMap((table) =>
      dangling(table).map((d) => ({
        table,
        column: d.column,
        references: d.references,
        rows: 1,
        keys: 1,
        examples: [d.value],
      })),
    );
    expect(expected).toHaveLength(9 + 8 + 7);
    expect(report.references).toEqual({ checked: 24, dangling: expected });
    const text = renderVerifyReport(report);
    expect(text).toMatch(/^✗ references +24 fact → dimension references: 24 dangling$/m);
    expect(text).toContain(
      '    fact_sales_order.design_id → dim_design.design_id: 1 row, 1 missing key: 990009',
    );
    expect(text).toContain(
      '    fact_payment.payment_date → dim_date.date_id: 1 row, 1 missing key: 1999-12-31',
    );
    expect(text).toMatch(/warehouse differs from the source in dim_date and in 24 of 24 references\n$/);
  });

  it('counts the rows and the distinct keys of each dangling reference, its first keys in order', async () => {
    // design_id: a reference counted per value in the fact's one scan; transaction_id (dim_transaction,
    // a row per payment): an anti-join of every version. Both must say the same things.
    const { source, warehouse } = await pair();
    const old = (table: WarehouseTableName, key: number, set: Record<string, string>) =>
      addVersion(warehouse, table, key, { lsn: '0/0', hash: null, snapshot: false, set });
    await old('fact_sales_order', 3, { design_id: '990100' });
    await old('fact_sales_order', 4, { design_id: '990100' });
    await old('fact_payment', 5, { transaction_id: '990202' });
    await old('fact_payment', 3, { transaction_id: '990202' });
    await old('fact_payment', 4, { transaction_id: '990201' });

    const report = await verify(source, warehouse);
    expect(report.ok).toBe(false);
    expect(report.tables.every((t) => t.differences.length === 0)).toBe(true);
    expect(report.references.dangling).toEqual([
      {
        table: 'fact_sales_order',
        column: 'design_id',
        references: 'dim_design',
        rows: 2,
        keys: 1,
        examples: ['990100'],
      },
      {
        table: 'fact_payment',
        column: 'transaction_id',
        references: 'dim_transaction',
        rows: 3,
        keys: 2,
        examples: ['990201', '990202'],
      },
    ]);
    const few = await verify(source, warehouse, { limit: 1 });
    expect(few.references.dangling.map((d) => [d.rows, d.keys, d.examples])).toEqual([
      [2, 1, ['990100']],
      [3, 2, ['990201']],
    ]);
    expect(renderVerifyReport(few)).toContain(
      '    fact_payment.transaction_id → dim_transaction.transaction_id: 3 rows, 2 missing keys: 990201, …',
    );
  });

  it('fails on an empty source or an empty warehouse: comparing nothing proves nothing', async () => {
    const emptySource = await emptyDatabase('verify_empty_source');
    await createTotesysSchema(emptySource);
    const emptyWarehouse = await emptyDatabase('verify_empty_warehouse');
    await migrateWarehouse(emptyWarehouse);

    const both = await verify(emptySource, emptyWarehouse);
    expect(both.ok).toBe(false);
    expect(both.empty).toEqual(['source', 'warehouse']);
    expect(both.tables.every((t) => t.differences.length === 0)).toBe(true);
    const text = renderVerifyReport(both);
    expect(text).toContain('✗ the source has no rows in any compared table');
    expect(text).toContain('✗ the warehouse has no current rows in any compared table');
    expect(text).toMatch(/nothing to compare: an empty database proves nothing\n$/);

    const { source } = await pair();
    const one = await verify(source, emptyWarehouse);
    expect(one).toMatchObject({ ok: false, empty: ['warehouse'] });
    expect(tableOf(one, 'dim_location').missing).toBe(30);
  });

  it('says which side is missing a table or view', async () => {
    const { source, warehouse } = await pair();
    const empty = await emptyDatabase('verify_no_tables');
    await expect(verifyWarehouse(empty, warehouse)).rejects.toThrow(/source has no table address/);
    await expect(verifyWarehouse(source, empty)).rejects.toBeInstanceOf(MissingTableError);
    // CASCADE: the reporting views (migration 003) are built on it.
    await warehouse.query(`DROP VIEW "fact_payment_current" CASCADE`);
    await expect(verifyWarehouse(source, warehouse)).rejects.toThrow(
      /the warehouse has no table fact_payment_current/,
    );
  });
});

describe('expectedDimDate', () => {
  it('computes ISO weekdays, English names and quarters', () => {
    expect(expectedDimDate('2024-12-30')).toEqual({
      year: '2024',
      month: '12',
      day: '30',
      day_of_week: '1',
      day_name: 'Monday',
      month_name: 'December',
      quarter: '4',
    });
    expect(expectedDimDate('2023-01-01')).toMatchObject({
      day_of_week: '7',
      day_name: 'Sunday',
      quarter: '1',
    });
    expect(expectedDimDate('2024-02-29')).toMatchObject({ day_name: 'Thursday', month_name: 'February' });
    expect(expectedDimDate('0099-07-04')).toMatchObject({ year: '99', day_name: 'Saturday', quarter: '3' });
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
      [row(10, 'A'), row(2, 'B'), row(3, null), row(4, 'D'), row(5, 'E')],
      [row(2, 'b'), row(3, 'C'), row(4, 'D'), row(11, 'E')],
      2,
      new Map([['5', 'deleted' as const]]),
    );
    expect(report).toMatchObject({ missing: 1, extra: 1, different: 2, deleted: 1 });
    expect(report.differences.map((d) => `${d.kind} ${d.key}`)).toEqual(['different 2', 'different 3']);
    const text = renderVerifyReport({
      ok: false,
      tables: [report],
      dates: noDates,
      references: noReferences,
      empty: [],
    });
    expect(text).toContain('payment_type_id 3: payment_type_name source NULL ≠ warehouse "C"');
    expect(text).toContain('… and 3 more');
  });

  it('shortens long values in the text', () => {
    const long = 'x'.repeat(500);
    const report = compareTable(
      'dim_payment_type',
      [{ payment_type_id: '1', payment_type_name: long }],
      [{ payment_type_id: '1', payment_type_name: 'y' }],
      10,
    );
    expect(
      renderVerifyReport({
        ok: false,
        tables: [report],
        dates: noDates,
        references: noReferences,
        empty: [],
      }),
    ).toMatch(/source "x{57}…" ≠ warehouse "y"/);
  });
});

const noDates = { referenced: 0, missing: 0, wrong: 0, differences: [] };
const noReferences = { checked: 24, dangling: [] };
