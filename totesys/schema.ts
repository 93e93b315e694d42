/**
 * The totesys source schema (shared/reference/totesys.md §1) as data: one column list per table that
 * both renders the DDL and tells the seeder each column's type. Types, key and constraint names
 * follow the Prisma-made original (`<table>_pkey`, `<table>_<column>_fkey`, `<table>_<column>_key`),
 * so the pipeline is tested against the same catalogue it will meet in production.
 */
import type { ClientBase } from 'pg';
import { TOTESYS_TABLES, type TotesysTable } from '../core/totesys-tables';

/** Base class of the errors this module throws on purpose (as opposed to driver or SQL errors). */
export class TotesysError extends Error {
  override readonly name: string = 'TotesysError';
}

export const PAYMENT_TYPE_NAMES = [
  'SALES_RECEIPT',
  'SALES_REFUND',
  'PURCHASE_PAYMENT',
  'PURCHASE_REFUND',
] as const;
export type PaymentTypeName = (typeof PAYMENT_TYPE_NAMES)[number];

export const TRANSACTION_TYPES = ['SALE', 'PURCHASE'] as const;
export type TransactionType = (typeof TRANSACTION_TYPES)[number];

/** The two enum types, by their (case-sensitive, hence always quoted) Postgres names. */
export const TOTESYS_ENUMS = {
  PaymentTypeName: PAYMENT_TYPE_NAMES,
  TransactionType: TRANSACTION_TYPES,
} as const;

export type PgType =
  | 'integer'
  | 'text'
  | 'varchar(3)'
  | 'numeric(10,2)'
  | 'boolean'
  | 'timestamp(3)'
  | '"PaymentTypeName"'
  | '"TransactionType"';

export interface ColumnSpec {
  readonly name: string;
  readonly type: PgType;
  readonly nullable?: true;
  /** The primary key: `serial`, i.e. integer NOT NULL with an owned sequence as its default. */
  readonly primaryKey?: true;
  readonly unique?: true;
  readonly references?: TotesysTable;
  /** Every FK is ON DELETE RESTRICT except transaction's two, which are ON DELETE SET NULL. */
  readonly onDelete?: 'SET NULL';
  readonly defaultNow?: true;
}

const id = (table: TotesysTable): ColumnSpec => ({ name: `${table}_id`, type: 'integer', primaryKey: true });
const ref = (name: string, references: TotesysTable, extra: Partial<ColumnSpec> = {}): ColumnSpec => ({
  name,
  type: 'integer',
  references,
  ...extra,
});
const text = (name: string, extra: Partial<ColumnSpec> = {}): ColumnSpec => ({
  name,
  type: 'text',
  ...extra,
});
const nullableText = (name: string): ColumnSpec => text(name, { nullable: true });
const createdAt: ColumnSpec = { name: 'created_at', type: 'timestamp(3)', defaultNow: true };
const lastUpdated: ColumnSpec = { name: 'last_updated', type: 'timestamp(3)' };

/** Columns of each table in the source's own column order (which differs between tables). */
export const TOTESYS_COLUMNS: Readonly<Record<TotesysTable, readonly ColumnSpec[]>> = {
  address: [
    id('address'),
    text('address_line_1'),
    nullableText('address_line_2'),
    nullableText('district'),
    text('city'),
    text('postal_code'),
    text('country'),
    text('phone'),
    createdAt,
    lastUpdated,
  ],
  counterparty: [
    id('counterparty'),
    text('counterparty_legal_name'),
    ref('legal_address_id', 'address'),
    nullableText('commercial_contact'),
    nullableText('delivery_contact'),
    createdAt,
    lastUpdated,
  ],
  currency: [id('currency'), { name: 'currency_code', type: 'varchar(3)' }, createdAt, lastUpdated],
  department: [
    id('department'),
    text('department_name'),
    nullableText('location'),
    nullableText('manager'),
    createdAt,
    lastUpdated,
  ],
  design: [
    id('design'),
    createdAt,
    text('design_name'),
    text('file_location'),
    text('file_name'),
    lastUpdated,
  ],
  staff: [
    id('staff'),
    text('first_name'),
    text('last_name'),
    ref('department_id', 'department'),
    text('email_address'),
    createdAt,
    lastUpdated,
  ],
  payment_type: [
    id('payment_type'),
    { name: 'payment_type_name', type: '"PaymentTypeName"' },
    createdAt,
    lastUpdated,
  ],
  sales_order: [
    id('sales_order'),
    createdAt,
    lastUpdated,
    ref('design_id', 'design'),
    ref('staff_id', 'staff'),
    ref('counterparty_id', 'counterparty'),
    { name: 'units_sold', type: 'integer' },
    { name: 'unit_price', type: 'numeric(10,2)' },
    ref('currency_id', 'currency'),
    text('agreed_delivery_date'),
    text('agreed_payment_date'),
    ref('agreed_delivery_location_id', 'address'),
  ],
  purchase_order: [
    id('purchase_order'),
    createdAt,
    lastUpdated,
    ref('staff_id', 'staff'),
    ref('counterparty_id', 'counterparty'),
    text('item_code'),
    { name: 'item_quantity', type: 'integer' },
    { name: 'item_unit_price', type: 'numeric(10,2)' },
    ref('currency_id', 'currency'),
    text('agreed_delivery_date'),
    text('agreed_payment_date'),
    ref('agreed_delivery_location_id', 'address'),
  ],
  transaction: [
    id('transaction'),
    { name: 'transaction_type', type: '"TransactionType"' },
    ref('sales_order_id', 'sales_order', { nullable: true, unique: true, onDelete: 'SET NULL' }),
    ref('purchase_order_id', 'purchase_order', { nullable: true, unique: true, onDelete: 'SET NULL' }),
    createdAt,
    lastUpdated,
  ],
  payment: [
    id('payment'),
    createdAt,
    lastUpdated,
    ref('transaction_id', 'transaction', { unique: true }),
    ref('counterparty_id', 'counterparty'),
    { name: 'payment_amount', type: 'numeric(10,2)' },
    ref('currency_id', 'currency'),
    ref('payment_type_id', 'payment_type'),
    { name: 'paid', type: 'boolean' },
    text('payment_date'),
    { name: 'company_ac_number', type: 'integer' },
    { name: 'counterparty_ac_number', type: 'integer' },
  ],
};

/** Every totesys table's primary key column is `<table>_id`. */
export function primaryKeyOf(table: TotesysTable): string {
  return `${table}_id`;
}

/** Double-quotes an SQL identifier, so names are never interpreted (reserved words, case, quotes). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

function columnDdl(c: ColumnSpec): string {
  const type = c.primaryKey ? 'serial' : c.type;
  const parts = [quoteIdent(c.name), type];
  if (!c.nullable) parts.push('NOT NULL');
  if (c.defaultNow) parts.push('DEFAULT CURRENT_TIMESTAMP');
  return parts.join(' ');
}

function tableDdl(table: TotesysTable): string {
  const columns = TOTESYS_COLUMNS[table];
  const lines = columns.map(columnDdl);
  const pk = columns.find((c) => c.primaryKey)!;
  lines.push(`CONSTRAINT ${quoteIdent(`${table}_pkey`)} PRIMARY KEY (${quoteIdent(pk.name)})`);
  for (const c of columns.filter((c) => c.unique))
    lines.push(`CONSTRAINT ${quoteIdent(`${table}_${c.name}_key`)} UNIQUE (${quoteIdent(c.name)})`);
  return `CREATE TABLE ${quoteIdent(table)} (\n  ${lines.join(',\n  ')}\n)`;
}

function foreignKeysDdl(table: TotesysTable): string[] {
  return TOTESYS_COLUMNS[table]
    .filter((c) => c.references)
    .map((c) => {
      const target = c.references!;
      return (
        `ALTER TABLE ${quoteIdent(table)} ADD CONSTRAINT ${quoteIdent(`${table}_${c.name}_fkey`)} ` +
        `FOREIGN KEY (${quoteIdent(c.name)}) REFERENCES ${quoteIdent(target)} (${quoteIdent(primaryKeyOf(target))}) ` +
        `ON UPDATE CASCADE ON DELETE ${c.onDelete ?? 'RESTRICT'}`
      );
    });
}

/**
 * The DDL, one statement per entry, in two parts: the enum types and the tables with their keys,
 * then the foreign keys. A bulk load runs between the two when it can (as pg_dump does): a foreign
 * key added to loaded tables is checked in one pass instead of row by row, which halves seed time.
 */
export function totesysDdl(): { tables: string[]; foreignKeys: string[] } {
  const types = Object.entries(TOTESYS_ENUMS).map(
    ([name, values]) => `CREATE TYPE ${quoteIdent(name)} AS ENUM (${values.map(quoteLiteral).join(', ')})`,
  );
  return {
    tables: [...types, ...TOTESYS_TABLES.map(tableDdl)],
    foreignKeys: TOTESYS_TABLES.flatMap(foreignKeysDdl),
  };
}

/** Creates the enum types, the 11 tables and their foreign keys. Fails if any of them already exists. */
export async function createTotesysSchema(client: ClientBase): Promise<void> {
  const ddl = totesysDdl();
  await client.query([...ddl.tables, ...ddl.foreignKeys].join(';\n'));
}

/**
 * Drops the 11 tables and the enum types if present. No CASCADE: an object someone else built on
 * these tables (a view, a foreign key) makes this fail loudly rather than vanish with them.
 */
export async function dropTotesysSchema(client: ClientBase): Promise<void> {
  await client.query(`DROP TABLE IF EXISTS ${TOTESYS_TABLES.map(quoteIdent).join(', ')}`);
  await client.query(`DROP TYPE IF EXISTS ${Object.keys(TOTESYS_ENUMS).map(quoteIdent).join(', ')}`);
}

/** What of the totesys schema exists in the connection's current schema (normally `public`). */
export interface TotesysInspection {
  tables: TotesysTable[];
  /** Tables that exist and hold at least one row. */
  populatedTables: TotesysTable[];
  enumTypes: string[];
}

export async function inspectTotesys(client: ClientBase): Promise<TotesysInspection> {
  const tables = await client.query<{ relname: TotesysTable }>(
    `SELECT relname FROM pg_class
      WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'p') AND relname = ANY($1)`,
    [TOTESYS_TABLES],
  );
  const present = TOTESYS_TABLES.filter((t) => tables.rows.some((r) => r.relname === t));
  const populatedTables: TotesysTable[] = [];
  for (const table of present) {
    const { rows } = await client.query(`SELECT EXISTS (SELECT 1 FROM ${quoteIdent(table)}) AS populated`);
    if (rows[0].populated) populatedTables.push(table);
  }
  const types = await client.query<{ typname: string }>(
    'SELECT typname FROM pg_type WHERE typnamespace = current_schema()::regnamespace AND typname = ANY($1)',
    [Object.keys(TOTESYS_ENUMS)],
  );
  return { tables: present, populatedTables, enumTypes: types.rows.map((r) => r.typname).sort() };
}
