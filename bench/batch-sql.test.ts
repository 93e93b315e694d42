import type { PlannedChange, RowEdit } from '../totesys/generator';
import { batchStatement, type BatchContext } from './batch-sql';

const ctx: BatchContext = {
  sequences: {
    sales_order: 'public.sales_order_sales_order_id_seq',
    purchase_order: 'public.purchase_order_purchase_order_id_seq',
    transaction: 'public.transaction_transaction_id_seq',
    payment: 'public.payment_payment_id_seq',
  },
  paymentTypeIds: { SALES_RECEIPT: 1, PURCHASE_PAYMENT: 3 },
};

const sale: PlannedChange = {
  kind: 'new_sales_order',
  order: {
    design_id: 1,
    staff_id: 2,
    counterparty_id: 3,
    units_sold: 1000,
    unit_price: '2.95',
    currency_id: 1,
    agreed_delivery_location_id: 4,
    deliveryInDays: 5,
    paymentInDays: 6,
    amount: '2950.00',
  },
  companyAcNumber: 12345678,
  counterpartyAcNumber: 87654321,
};
const edit = (e: Partial<RowEdit>): PlannedChange => ({
  kind: 'address_edit',
  edit: { table: 'address', id: 7, set: { phone: "0800 O'Neil" }, touch: true, ...e },
});

describe('batchStatement', () => {
  it('is null for nothing to write', () => {
    expect(batchStatement([], ctx)).toBeNull();
  });

  it('writes a new order with its transaction and payment from one set of drawn ids, values as parameters only', () => {
    const s = batchStatement([sale, sale], ctx)!;
    expect(s.planned).toBe(6);
    expect(s.orders).toBe(2);
    expect(s.text).toMatch(/so_v AS MATERIALIZED/);
    expect(s.text).toContain("nextval('public.sales_order_sales_order_id_seq'::regclass)");
    expect(s.text).toMatch(/INSERT INTO "transaction"[^;]*'SALE'::"TransactionType"/);
    expect(s.text).not.toContain('2950.00');
    expect(s.values).toContainEqual(['2950.00', '2950.00']);
    expect(s.values).toContain(1); // the SALES_RECEIPT payment type
    expect(s.deferred).toEqual([]);
  });

  it('edits a row at most once per statement and leaves a second edit of it for the next batch', () => {
    const first = edit({});
    const again = edit({ set: { address_line_2: null } });
    const other = edit({ id: 8 });
    const s = batchStatement([first, again, other], ctx)!;
    expect(s.deferred).toEqual([again]);
    expect(s.planned).toBe(2);
    // Same table, columns and kind of value: one UPDATE for both rows, the quote kept out of the SQL.
    expect(s.text.match(/UPDATE "address"/g)).toHaveLength(1);
    expect(s.values).toContainEqual([7, 8]);
    expect(s.values).toContainEqual(["0800 O'Neil", "0800 O'Neil"]);
    expect(s.text).not.toContain('Neil');
  });

  it('moves text dates by days, and leaves last_updated alone for a silent edit', () => {
    const s = batchStatement(
      [
        {
          kind: 'silent_edit',
          edit: { table: 'sales_order', id: 3, set: { agreed_delivery_date: { addDays: 9 } }, touch: false },
        },
      ],
      ctx,
    )!;
    expect(s.text).toContain(
      `"agreed_delivery_date" = to_char(t."agreed_delivery_date"::date + v.c0, 'YYYY-MM-DD')`,
    );
    expect(s.text).not.toContain('last_updated');
    expect(s.values).toEqual([[3], [9]]);
  });

  it('settles payments only if still unpaid, and counts what the updates changed', () => {
    const s = batchStatement([{ kind: 'payment_paid', paymentId: 5 }], ctx)!;
    expect(s.text).toMatch(/WHERE "payment_id" = ANY\(\$1::int\[\]\) AND NOT "paid"/);
    expect(s.text).toMatch(/\(SELECT count\(\*\) FROM paid\)\)::int AS updated/);
    expect(s.planned).toBe(1);
  });
});
