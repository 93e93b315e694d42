import type { Client } from 'pg';
import { TOTESYS_TABLES } from '../core/totesys-tables';
import { createTestDatabase, withClient } from '../test/support/pg';
import {
  TOTESYS_COLUMNS,
  createTotesysSchema,
  dropTotesysSchema,
  inspectTotesys,
  quoteIdent,
  totesysDdl,
} from './schema';

let url: string;

beforeAll(async () => {
  url = await createTestDatabase('totesys_schema');
  await withClient(url, createTotesysSchema);
});

const query = <T extends object>(sql: string, values: unknown[] = []) =>
  withClient(url, async (c: Client) => (await c.query<T>(sql, values)).rows);

describe('totesys schema (real Postgres)', () => {
  it('creates the 11 tables and the two enum types with their labels in order', async () => {
    const found = await withClient(url, inspectTotesys);
    expect(found).toEqual({
      tables: [...TOTESYS_TABLES],
      populatedTables: [],
      enumTypes: ['PaymentTypeName', 'TransactionType'],
    });
    const labels = await query<{ typname: string; labels: string[] }>(
      `SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)::text[] AS labels
         FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY t.typname ORDER BY t.typname`,
    );
    expect(labels).toEqual([
      {
        typname: 'PaymentTypeName',
        labels: ['SALES_RECEIPT', 'SALES_REFUND', 'PURCHASE_PAYMENT', 'PURCHASE_REFUND'],
      },
      { typname: 'TransactionType', labels: ['SALE', 'PURCHASE'] },
    ]);
  });

  it('gives every column its exact type, nullability and position', async () => {
    const columns = await query<{ table_name: string; column_name: string; type: string; nullable: boolean }>(
      `SELECT c.relname AS table_name, a.attname AS column_name,
              format_type(a.atttypid, a.atttypmod) AS type, NOT a.attnotnull AS nullable
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY c.relname, a.attnum`,
    );
    const expected = TOTESYS_TABLES.flatMap((table) =>
      TOTESYS_COLUMNS[table].map((c) => ({
        table_name: table,
        column_name: c.name,
        type: c.type
          .replace('timestamp(3)', 'timestamp(3) without time zone')
          .replace('varchar(3)', 'character varying(3)'),
        nullable: c.nullable === true,
      })),
    ).sort((a, b) => a.table_name.localeCompare(b.table_name));
    expect(columns).toEqual(expected);
    // Spot checks against the reference, independent of TOTESYS_COLUMNS.
    const type = (t: string, c: string) =>
      columns.find((x) => x.table_name === t && x.column_name === c)?.type;
    expect(type('sales_order', 'unit_price')).toBe('numeric(10,2)');
    expect(type('payment', 'payment_date')).toBe('text');
    expect(type('purchase_order', 'agreed_delivery_date')).toBe('text');
    expect(type('currency', 'currency_code')).toBe('character varying(3)');
    expect(type('address', 'last_updated')).toBe('timestamp(3) without time zone');
    expect(type('payment_type', 'payment_type_name')).toBe('"PaymentTypeName"');
    expect(type('transaction', 'transaction_type')).toBe('"TransactionType"');
    expect(
      columns
        .filter((c) => c.nullable)
        .map((c) => `${c.table_name}.${c.column_name}`)
        .sort(),
    ).toEqual([
      'address.address_line_2',
      'address.district',
      'counterparty.commercial_contact',
      'counterparty.delivery_contact',
      'department.location',
      'department.manager',
      'transaction.purchase_order_id',
      'transaction.sales_order_id',
    ]);
  });

  it('defaults created_at to CURRENT_TIMESTAMP, ids to an owned sequence, and nothing else', async () => {
    const defaults = await query<{ table_name: string; column_name: string; column_default: string }>(
      `SELECT table_name, column_name, column_default FROM information_schema.columns
        WHERE table_schema = 'public' AND column_default IS NOT NULL ORDER BY table_name, column_name`,
    );
    expect(defaults).toHaveLength(22);
    for (const table of TOTESYS_TABLES) {
      const of = defaults.filter((d) => d.table_name === table);
      expect(of).toHaveLength(2);
      expect(of).toEqual(
        expect.arrayContaining([
          {
            table_name: table,
            column_name: `${table}_id`,
            column_default: `nextval('${table}_${table}_id_seq'::regclass)`,
          },
          { table_name: table, column_name: 'created_at', column_default: 'CURRENT_TIMESTAMP' },
        ]),
      );
    }
  });

  it('names primary keys <table>_pkey and makes the one-to-one links unique', async () => {
    const constraints = await query<{ conname: string; contype: string; columns: string }>(
      `SELECT conname, contype, pg_get_constraintdef(oid) AS columns FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace AND contype IN ('p', 'u') ORDER BY conname`,
    );
    for (const table of TOTESYS_TABLES)
      expect(constraints).toContainEqual({
        conname: `${table}_pkey`,
        contype: 'p',
        columns: `PRIMARY KEY (${table}_id)`,
      });
    expect(constraints.filter((c) => c.contype === 'u').map((c) => c.columns)).toEqual([
      'UNIQUE (transaction_id)',
      'UNIQUE (purchase_order_id)',
      'UNIQUE (sales_order_id)',
    ]);
  });

  it('makes every foreign key ON UPDATE CASCADE ON DELETE RESTRICT, transaction’s two ON DELETE SET NULL', async () => {
    const fks = await query<{ conname: string; confupdtype: string; confdeltype: string; def: string }>(
      `SELECT conname, confupdtype, confdeltype, pg_get_constraintdef(oid) AS def FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace AND contype = 'f' ORDER BY conname`,
    );
    expect(fks).toHaveLength(17);
    for (const fk of fks) {
      expect(fk.confupdtype).toBe('c');
      expect(fk.confdeltype).toBe(fk.conname.startsWith('transaction_') ? 'n' : 'r');
    }
    expect(fks.map((f) => f.conname)).toContain('counterparty_legal_address_id_fkey');
    expect(fks.find((f) => f.conname === 'payment_transaction_id_fkey')?.def).toBe(
      'FOREIGN KEY (transaction_id) REFERENCES transaction(transaction_id) ON UPDATE CASCADE ON DELETE RESTRICT',
    );
  });

  it('keeps milliseconds and no time zone, and stamps created_at itself', async () => {
    const [row] = await withClient(url, async (c) => {
      await c.query('BEGIN');
      const r = await c.query(
        `INSERT INTO currency (currency_code, last_updated) VALUES ('GBP', '2025-01-02 03:04:05.678912')
         RETURNING last_updated::text, created_at IS NOT NULL AS stamped`,
      );
      await c.query('ROLLBACK');
      return r.rows;
    });
    expect(row).toEqual({ last_updated: '2025-01-02 03:04:05.679', stamped: true });
  });

  it('refuses to create over an existing schema; drop removes everything', async () => {
    await expect(withClient(url, createTotesysSchema)).rejects.toThrow(/already exists/);
    const other = await createTestDatabase('totesys_schema_drop');
    await withClient(other, async (c) => {
      await createTotesysSchema(c);
      await dropTotesysSchema(c);
      expect(await inspectTotesys(c)).toEqual({ tables: [], populatedTables: [], enumTypes: [] });
      await dropTotesysSchema(c); // and is a no-op when there is nothing to drop
    });
  });

  it('quotes identifiers, so odd names are never read as SQL', () => {
    expect(quoteIdent('transaction')).toBe('"transaction"');
    expect(quoteIdent('a"b')).toBe('"a""b"');
    expect(totesysDdl().tables[0]).toBe(
      `CREATE TYPE "PaymentTypeName" AS ENUM ('SALES_RECEIPT', 'SALES_REFUND', 'PURCHASE_PAYMENT', 'PURCHASE_REFUND')`,
    );
  });
});
