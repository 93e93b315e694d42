import { TOTESYS_COLUMNS, type PgType } from '../totesys/schema';
import type { Change, Column } from './change-event';
import { TOTESYS_TABLES, type TotesysTable } from './totesys-tables';

/**
 * Test data for the star mapping and the transform handler: each totesys table's column layout as
 * capture reports it (pgoutput type names), and one realistic row per table in Postgres' own text
 * rendering (timestamps with trailing fraction zeros dropped, `t`/`f` booleans, money with scale 2).
 */

const PGOUTPUT_TYPE: Record<PgType, string> = {
  integer: 'int4',
  text: 'text',
  'varchar(3)': 'varchar',
  'numeric(10,2)': 'numeric',
  boolean: 'bool',
  'timestamp(3)': 'timestamp',
  '"PaymentTypeName"': 'PaymentTypeName',
  '"TransactionType"': 'TransactionType',
};

/** The layout capture sends for each table: source column order, key = the primary key. */
export const SOURCE_LAYOUTS: Readonly<Record<TotesysTable, Column[]>> = Object.fromEntries(
  TOTESYS_TABLES.map((table) => [
    table,
    TOTESYS_COLUMNS[table].map((c) => ({
      name: c.name,
      type: PGOUTPUT_TYPE[c.type],
      key: c.primaryKey === true,
    })),
  ]),
) as Record<TotesysTable, Column[]>;

export type SourceRecord = Record<string, string | null>;

/** One row per table, as Postgres renders it (from the public export, re-rendered as pgoutput would). */
export const SAMPLE_ROWS: Readonly<Record<TotesysTable, SourceRecord>> = {
  address: {
    address_id: '1',
    address_line_1: '6826 Herzog Via',
    address_line_2: null,
    district: 'Avon',
    city: 'New Patienceburgh',
    postal_code: '28441',
    country: 'Turkey',
    phone: '1803 637401',
    created_at: '2022-11-03 14:20:49.962',
    last_updated: '2022-11-03 14:20:49.962',
  },
  counterparty: {
    counterparty_id: '1',
    counterparty_legal_name: 'Fahey and Sons',
    legal_address_id: '15',
    commercial_contact: 'Micheal Toy',
    delivery_contact: 'Mrs. Lucy Runolfsdottir',
    created_at: '2022-11-03 14:20:51.563',
    last_updated: '2022-11-03 14:20:51.563',
  },
  currency: {
    currency_id: '1',
    currency_code: 'GBP',
    created_at: '2022-11-03 14:20:49.962',
    last_updated: '2022-11-03 14:20:49.962',
  },
  department: {
    department_id: '4',
    department_name: 'Dispatch',
    location: 'Leds',
    manager: 'Mark Ryan',
    created_at: '2022-11-03 14:20:49.962',
    last_updated: '2022-11-03 14:20:49.962',
  },
  design: {
    design_id: '8',
    created_at: '2022-11-03 14:20:49.962',
    design_name: 'Wooden',
    file_location: '/usr',
    file_name: 'wooden-20220717-npgz.json',
    last_updated: '2022-11-03 14:20:49.962',
  },
  staff: {
    staff_id: '1',
    first_name: 'Jeremie',
    last_name: 'Franey',
    department_id: '2',
    email_address: 'jeremie.franey@terrifictotes.com',
    created_at: '2022-11-03 14:20:51.563',
    last_updated: '2022-11-03 14:20:51.563',
  },
  payment_type: {
    payment_type_id: '1',
    payment_type_name: 'SALES_RECEIPT',
    created_at: '2022-11-03 14:20:49.962',
    last_updated: '2022-11-03 14:20:49.962',
  },
  sales_order: {
    sales_order_id: '2',
    created_at: '2022-11-03 14:20:52.186',
    last_updated: '2022-11-03 14:20:52.18',
    design_id: '3',
    staff_id: '19',
    counterparty_id: '8',
    units_sold: '42972',
    unit_price: '3.94',
    currency_id: '2',
    agreed_delivery_date: '2022-11-07',
    agreed_payment_date: '2022-11-08',
    agreed_delivery_location_id: '8',
  },
  purchase_order: {
    purchase_order_id: '1',
    created_at: '2022-11-03 14:20:52.187',
    last_updated: '2022-11-03 14:20:52',
    staff_id: '12',
    counterparty_id: '11',
    item_code: 'ZDOI5EA',
    item_quantity: '371',
    item_unit_price: '361.39',
    currency_id: '2',
    agreed_delivery_date: '2022-11-09',
    agreed_payment_date: '2022-11-07',
    agreed_delivery_location_id: '6',
  },
  transaction: {
    transaction_id: '1',
    transaction_type: 'PURCHASE',
    sales_order_id: null,
    purchase_order_id: '2',
    created_at: '2022-11-03 14:20:52.186',
    last_updated: '2022-11-03 14:20:52.186',
  },
  payment: {
    payment_id: '1',
    created_at: '2022-11-03 14:20:52.186',
    last_updated: '2022-11-05 07:55:39.412',
    transaction_id: '1',
    counterparty_id: '17',
    payment_amount: '56925.44',
    currency_id: '2',
    payment_type_id: '3',
    paid: 't',
    payment_date: '2022-11-07',
    company_ac_number: '17690713',
    counterparty_ac_number: '10134623',
  },
};

export interface SourceChangeOptions {
  op?: Change['op'];
  lsn?: string;
  seq?: number;
  ts?: string;
  /** Column names whose value is an unchanged TOAST value. */
  unchanged?: string[];
  /** Layout to render `values` in (default: the table's own). */
  columns?: readonly Column[];
}

/**
 * A change of `table` whose values are SAMPLE_ROWS[table] overridden by `overrides`, in layout order.
 * Deletes carry only the key columns, as under the default replica identity.
 */
export function sourceChange(
  table: TotesysTable,
  overrides: SourceRecord = {},
  options: SourceChangeOptions = {},
): Change {
  const columns = options.columns ?? SOURCE_LAYOUTS[table];
  const record = { ...SAMPLE_ROWS[table], ...overrides };
  const op = options.op ?? 'insert';
  const unchanged = new Set(options.unchanged ?? []);
  const change: Change = {
    op,
    lsn: options.lsn ?? '0/16B3748',
    seq: options.seq ?? 0,
    ts: options.ts ?? '2025-02-28T09:15:02.123456Z',
    values:
      op === 'truncate' || op === 'snapshot_end'
        ? []
        : columns.map((c) =>
            unchanged.has(c.name) || (op === 'delete' && !c.key) ? null : (record[c.name] ?? null),
          ),
  };
  if (unchanged.size) change.unchanged = columns.flatMap((c, i) => (unchanged.has(c.name) ? [i] : []));
  return change;
}
