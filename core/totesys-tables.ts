/**
 * The 11 tables of the totesys source database that the pipeline captures, in foreign-key order
 * (a table appears after every table it references), which is the order seeds and snapshots use.
 * See ../shared/reference/totesys.md §1 for their columns.
 */
export const TOTESYS_TABLES = [
  'address',
  'currency',
  'department',
  'design',
  'payment_type',
  'counterparty',
  'staff',
  'sales_order',
  'purchase_order',
  'transaction',
  'payment',
] as const;

export type TotesysTable = (typeof TOTESYS_TABLES)[number];

export function isTotesysTable(name: string): name is TotesysTable {
  return (TOTESYS_TABLES as readonly string[]).includes(name);
}
