/**
 * One batch of planned totesys changes as ONE SQL statement: data-modifying CTEs fed by `unnest()`
 * arrays, one array parameter per column. A batch of thousands of row changes is then one round
 * trip and one transaction, values are never spliced into the SQL, and the 65,535-parameter limit of
 * a multi-row VALUES list never applies (the seed loads rows the same way, totesys/seed.ts).
 *
 * A new order and its transaction and payment need each other's ids, so the ids are drawn from the
 * tables' own sequences once per row in a MATERIALIZED CTE and the three INSERTs read them from it.
 * Foreign keys between sibling CTEs hold: the constraint triggers fire at the end of the statement,
 * after every sub-statement ran. https://www.postgresql.org/docs/current/queries-with.html#QUERIES-WITH-MODIFYING
 *
 * Sub-statements of one statement share a snapshot, so two of them updating the same row would
 * leave only one update in place ("the other modification will not take effect"): a row is edited at
 * most once per batch, and a second edit of it waits for the next batch.
 *
 * Pure: no database, so the shape of the SQL is tested without one.
 */
import type { EditValue, PlannedChange, RowEdit } from '../totesys/generator';
import { TOTESYS_COLUMNS, quoteIdent } from '../totesys/schema';

/** What the statement needs from the database it runs on, read once (load-generator.ts). */
export interface BatchContext {
  /** `nextval` arguments (regclass text) of each table's key sequence. */
  sequences: Record<'sales_order' | 'purchase_order' | 'transaction' | 'payment', string>;
  paymentTypeIds: Record<'SALES_RECEIPT' | 'PURCHASE_PAYMENT', number>;
}

export interface BatchStatement {
  text: string;
  values: unknown[];
  /** Row changes the statement makes if every update finds its row still to change. */
  planned: number;
  /** Edits left for a later batch: their row is already edited in this one. */
  deferred: PlannedChange[];
  /** New orders in the batch (each is three row changes: order, transaction, payment). */
  orders: number;
}

/** The statement's single result row. */
export interface BatchRow {
  payments: number[];
  max_sales_order: number | null;
  max_purchase_order: number | null;
  max_design: number | null;
  /** Rows the UPDATEs changed (a payment already paid, say, is not a change). */
  updated: number;
  designs: number;
}

type Order = Extract<PlannedChange, { kind: 'new_sales_order' | 'new_purchase_order' }>;
type Edit = Extract<PlannedChange, { edit: RowEdit }>;

class Params {
  readonly values: unknown[] = [];
  /** `$n::type[]` holding one column of the batch. */
  array(column: unknown[], type: string): string {
    this.values.push(column);
    return `$${this.values.length}::${type}[]`;
  }
  scalar(value: unknown, type: string): string {
    this.values.push(value);
    return `$${this.values.length}::${type}`;
  }
}

const nextval = (sequence: string) => `nextval('${sequence.replace(/'/g, "''")}'::regclass)`;
const dayText = (days: string) => `to_char(CURRENT_DATE + ${days}, 'YYYY-MM-DD')`;

/** Columns of each order table that come straight from the planner's draft (same names). */
const ORDER_COLUMNS = {
  sales_order: [
    ['design_id', 'int'],
    ['staff_id', 'int'],
    ['counterparty_id', 'int'],
    ['units_sold', 'int'],
    ['unit_price', 'numeric'],
    ['currency_id', 'int'],
    ['agreed_delivery_location_id', 'int'],
  ],
  purchase_order: [
    ['staff_id', 'int'],
    ['counterparty_id', 'int'],
    ['item_code', 'text'],
    ['item_quantity', 'int'],
    ['item_unit_price', 'numeric'],
    ['currency_id', 'int'],
    ['agreed_delivery_location_id', 'int'],
  ],
} as const;

/** The orders, their transactions and their payments: three INSERTs reading ids from a fourth CTE. */
function ordersCtes(p: Params, ctx: BatchContext, sale: boolean, orders: readonly Order[]): string[] {
  if (orders.length === 0) return [];
  const x = sale ? 'so' : 'po';
  const table = sale ? 'sales_order' : 'purchase_order';
  const columns = ORDER_COLUMNS[table].map(([name]) => name);
  const arrays = [
    ...ORDER_COLUMNS[table].map(([name, type]) =>
      p.array(
        orders.map((o) => (o.order as unknown as Record<string, unknown>)[name]),
        type,
      ),
    ),
    p.array(
      orders.map((o) => o.order.deliveryInDays),
      'int',
    ),
    p.array(
      orders.map((o) => o.order.paymentInDays),
      'int',
    ),
    p.array(
      orders.map((o) => o.order.amount),
      'numeric',
    ),
    p.array(
      orders.map((o) => o.companyAcNumber),
      'int',
    ),
    p.array(
      orders.map((o) => o.counterpartyAcNumber),
      'int',
    ),
  ];
  const names = [...columns, 'delivery_days', 'payment_days', 'amount', 'company_ac', 'counterparty_ac'];
  const paymentType = p.scalar(ctx.paymentTypeIds[sale ? 'SALES_RECEIPT' : 'PURCHASE_PAYMENT'], 'int');
  const key = quoteIdent(`${table}_id`);
  return [
    `${x}_v AS MATERIALIZED (SELECT v.*, ${nextval(ctx.sequences[table])} AS order_id,
      ${nextval(ctx.sequences.transaction)} AS transaction_id, ${nextval(ctx.sequences.payment)} AS payment_id,
      ${dayText('v.delivery_days')} AS delivery_date, ${dayText('v.payment_days')} AS payment_date
      FROM unnest(${arrays.join(', ')}) AS v(${names.join(', ')}))`,
    `${x}_o AS (INSERT INTO ${quoteIdent(table)} (${key}, ${columns.map(quoteIdent).join(', ')},
      "agreed_delivery_date", "agreed_payment_date", "last_updated")
      SELECT order_id, ${columns.join(', ')}, delivery_date, payment_date, CURRENT_TIMESTAMP FROM ${x}_v)`,
    `${x}_t AS (INSERT INTO "transaction" ("transaction_id", "transaction_type", ${key}, "last_updated")
      SELECT transaction_id, '${sale ? 'SALE' : 'PURCHASE'}'::"TransactionType", order_id, CURRENT_TIMESTAMP
      FROM ${x}_v)`,
    `${x}_p AS (INSERT INTO "payment" ("payment_id", "transaction_id", "counterparty_id", "payment_amount",
      "currency_id", "payment_type_id", "paid", "payment_date", "company_ac_number", "counterparty_ac_number",
      "last_updated")
      SELECT payment_id, transaction_id, counterparty_id, amount, currency_id, ${paymentType}, false, payment_date,
        company_ac, counterparty_ac, CURRENT_TIMESTAMP FROM ${x}_v RETURNING "payment_id")`,
  ];
}

function columnType(table: RowEdit['table'], column: string): string {
  const spec = TOTESYS_COLUMNS[table].find((c) => c.name === column);
  if (!spec) throw new Error(`${table} has no column ${column}`);
  return spec.type;
}

const isDays = (v: EditValue | undefined): v is { readonly addDays: number } =>
  v !== null && typeof v === 'object';

/** Edits of the same table, columns and kind of value share one UPDATE … FROM unnest(). */
function shapeOf(edit: RowEdit): string {
  const columns = Object.keys(edit.set)
    .sort()
    .map((c) => {
      return `${c}:${isDays(edit.set[c]) ? 'days' : 'value'}`;
    });
  return `${edit.table}|${edit.touch}|${columns.join(',')}`;
}

function editCte(p: Params, name: string, edits: RowEdit[]): string {
  const { table, touch } = edits[0]!;
  const columns = Object.keys(edits[0]!.set).sort();
  const key = quoteIdent(`${table}_id`);
  const arrays = [
    p.array(
      edits.map((e) => e.id),
      'int',
    ),
  ];
  const assignments = columns.map((column, i) => {
    const days = isDays(edits[0]!.set[column]);
    const values = edits.map((e) => {
      const v = e.set[column];
      return isDays(v) ? v.addDays : v;
    });
    arrays.push(p.array(values, days ? 'int' : columnType(table, column)));
    const col = quoteIdent(column);
    return days ? `${col} = to_char(t.${col}::date + v.c${i}, 'YYYY-MM-DD')` : `${col} = v.c${i}`;
  });
  if (touch) assignments.push('"last_updated" = CURRENT_TIMESTAMP');
  const names = ['id', ...columns.map((_, i) => `c${i}`)].join(', ');
  return `${name} AS (UPDATE ${quoteIdent(table)} AS t SET ${assignments.join(', ')}
      FROM unnest(${arrays.join(', ')}) AS v(${names}) WHERE t.${key} = v.id RETURNING 1)`;
}

/**
 * The statement for `changes`, or null when there is nothing to write. Its one row says which
 * payments it created (they become payable) and the highest new ids (edits may pick them).
 */
export function batchStatement(changes: readonly PlannedChange[], ctx: BatchContext): BatchStatement | null {
  const p = new Params();
  const sales: Order[] = [];
  const purchases: Order[] = [];
  const paid: number[] = [];
  const designs: Extract<PlannedChange, { kind: 'new_design' }>['design'][] = [];
  const shapes = new Map<string, RowEdit[]>();
  const editedRows = new Set<string>();
  const deferred: PlannedChange[] = [];
  for (const change of changes) {
    switch (change.kind) {
      case 'new_sales_order':
        sales.push(change);
        break;
      case 'new_purchase_order':
        purchases.push(change);
        break;
      case 'payment_paid':
        paid.push(change.paymentId);
        break;
      case 'new_design':
        designs.push(change.design);
        break;
      default: {
        const edit = (change satisfies Edit).edit;
        const row = `${edit.table}/${edit.id}`;
        if (editedRows.has(row)) {
          deferred.push(change);
          break;
        }
        editedRows.add(row);
        const shape = shapeOf(edit);
        const same = shapes.get(shape);
        if (same) same.push(edit);
        else shapes.set(shape, [edit]);
      }
    }
  }
  const ctes = [...ordersCtes(p, ctx, true, sales), ...ordersCtes(p, ctx, false, purchases)];
  const updates: string[] = [];
  if (designs.length > 0) {
    const col = (pick: (d: (typeof designs)[number]) => string) => p.array(designs.map(pick), 'text');
    ctes.push(`d AS (INSERT INTO "design" ("design_name", "file_location", "file_name", "last_updated")
      SELECT n, l, f, CURRENT_TIMESTAMP FROM unnest(${col((d) => d.design_name)}, ${col((d) => d.file_location)},
        ${col((d) => d.file_name)}) AS v(n, l, f) RETURNING "design_id")`);
  }
  if (paid.length > 0) {
    ctes.push(`paid AS (UPDATE "payment" SET "paid" = true, "last_updated" = CURRENT_TIMESTAMP
      WHERE "payment_id" = ANY(${p.array(paid, 'int')}) AND NOT "paid" RETURNING 1)`);
    updates.push('paid');
  }
  [...shapes.values()].forEach((edits, i) => {
    ctes.push(editCte(p, `e${i}`, edits));
    updates.push(`e${i}`);
  });
  if (ctes.length === 0) return null;
  const payments = [sales.length > 0 ? 'so_p' : null, purchases.length > 0 ? 'po_p' : null]
    .filter((x) => x !== null)
    .map((x) => `SELECT "payment_id" FROM ${x}`);
  const maxOf = (cte: string, present: boolean, column: string) =>
    present ? `(SELECT max(${column}) FROM ${cte})::int` : 'NULL::int';
  const select = [
    payments.length > 0
      ? `ARRAY(${payments.join(' UNION ALL ')} ORDER BY 1) AS payments`
      : `'{}'::int[] AS payments`,
    `${maxOf('so_v', sales.length > 0, 'order_id')} AS max_sales_order`,
    `${maxOf('po_v', purchases.length > 0, 'order_id')} AS max_purchase_order`,
    `${maxOf('d', designs.length > 0, '"design_id"')} AS max_design`,
    `(${updates.length > 0 ? updates.map((u) => `(SELECT count(*) FROM ${u})`).join(' + ') : '0'})::int AS updated`,
    `${designs.length}::int AS designs`,
  ];
  const orders = sales.length + purchases.length;
  const edits = editedRows.size;
  return {
    text: `WITH ${ctes.join(',\n  ')}\nSELECT ${select.join(', ')}`,
    values: p.values,
    planned: orders * 3 + designs.length + paid.length + edits,
    deferred,
    orders,
  };
}
