import { parse } from 'csv-parse/sync';
import fs from 'node:fs';
import path from 'node:path';
import type { Change, Column } from './change-event';
import { SOURCE_LAYOUTS } from './star-mapping.fixtures';
import { datesReferenced, toWarehouseRows, type StarMappingResult } from './star-mapping';
import { TOTESYS_TABLES, type TotesysTable } from './totesys-tables';

/**
 * The mapping against the public totesys export (../shared/data/totesys-2025-02, see its README):
 * every row of every table, the real oddities included. Each CSV row becomes a snapshot change, as
 * capture's initial copy would produce it. The export writes booleans as true/false and every
 * timestamp with three fraction digits; pgoutput would write t/f and drop trailing zeros, which the
 * unit tests cover.
 */
const DATA_DIR = process.env.TOTES_DATA_DIR ?? path.resolve(__dirname, '../../shared/data/totesys-2025-02');
const present = fs.existsSync(path.join(DATA_DIR, 'sales_order.csv'));
const describeWithData = present ? describe : describe.skip;
if (!present)
  console.warn(`star-mapping data tests skipped: no totesys export at ${DATA_DIR} (set TOTES_DATA_DIR)`);

interface Export {
  columns: Column[];
  records: (string | null)[][];
}

function readExport(table: TotesysTable): Export {
  const [header, ...records] = parse(fs.readFileSync(path.join(DATA_DIR, `${table}.csv`), 'utf8'), {
    // The export's NULL is an empty unquoted field, as in the ingestion CSV layout.
    cast: (value, context) => (value === '' && !context.quoting ? null : value),
  }) as (string | null)[][];
  const types = new Map(SOURCE_LAYOUTS[table].map((c) => [c.name, c]));
  const columns = header.map(
    (name) => types.get(name as string) ?? { name: name as string, type: 'text', key: false },
  );
  return { columns, records };
}

function snapshotChanges(records: (string | null)[][]): Change[] {
  return records.map((values, seq) => ({
    op: 'snapshot',
    lsn: '0/1A2B3C4',
    seq,
    ts: '2025-02-28T09:15:02.123456Z',
    values,
  }));
}

const mapped = new Map<TotesysTable, { input: Export; result: StarMappingResult }>();
function mapTable(table: TotesysTable) {
  let entry = mapped.get(table);
  if (!entry) {
    const input = readExport(table);
    entry = { input, result: toWarehouseRows(table, input.columns, snapshotChanges(input.records)) };
    mapped.set(table, entry);
  }
  return entry;
}

describeWithData('the public totesys export (2025-02)', () => {
  // Tens of thousands of rows: let the worker's heap go before it exits.
  afterAll(() => mapped.clear());

  it.each(TOTESYS_TABLES)('maps every row of %s, rejecting none', (table) => {
    const { input, result } = mapTable(table);
    expect(result.rejected.map((r) => r.reason)).toEqual([]);
    expect(result.rows).toHaveLength(input.records.length);
  });

  it('sales_order: 12,913 versions, prices as the exact text, milliseconds kept', () => {
    const { input, result } = mapTable('sales_order');
    expect(result.rows).toHaveLength(12_913);
    const priceAt = input.columns.findIndex((c) => c.name === 'unit_price');
    const createdAt = input.columns.findIndex((c) => c.name === 'created_at');
    // One assertion over all rows: 12,913 separate expects cost seconds.
    const mismatches = result.rows.filter(
      (row, i) =>
        row.unit_price !== input.records[i][priceAt] ||
        `${row.created_date} ${row.created_time}` !== input.records[i][createdAt],
    );
    expect(mismatches).toEqual([]);
    expect(result.rows[0]).toMatchObject({
      sales_order_id: 1,
      created_date: '2022-11-03',
      created_time: '14:20:52.186',
      sales_staff_id: 13,
      units_sold: 84754,
      unit_price: '2.43',
      currency_id: 3,
      design_id: 9,
      agreed_delivery_date: '2022-11-10',
      agreed_payment_date: '2022-11-03',
      agreed_delivery_location_id: 4,
      _op: 'snapshot',
      _lsn: '00000000/01A2B3C4',
    });
    const dates = datesReferenced('fact_sales_order', result.rows);
    expect(dates[0]).toBe('2022-11-03');
    expect(dates.every((d) => /^\d{4}-\d{2}-\d{2}$/.test(d))).toBe(true);
  });

  it('payment: amounts exact, true/false read, account numbers dropped', () => {
    const { result } = mapTable('payment');
    expect(result.rows).toHaveLength(18_239);
    expect(result.rows[0]).toEqual(
      expect.objectContaining({
        payment_id: 1,
        last_updated_date: '2022-11-05',
        last_updated_time: '07:55:39.412',
        payment_amount: '56925.44',
        paid: true,
        payment_date: '2022-11-07',
      }),
    );
    expect(result.rows[1]).toMatchObject({ payment_amount: '552548.62', created_time: '14:20:52.187' });
    expect(result.rows[0]).not.toHaveProperty('company_ac_number');
    expect(new Set(result.rows.map((r) => r.paid))).toEqual(new Set([true, false]));
  });

  it('address: 30 locations, empty optional lines as NULL', () => {
    const { result } = mapTable('address');
    expect(result.rows).toHaveLength(30);
    expect(result.rows[0]).toMatchObject({
      location_id: 1,
      address_line_1: '6826 Herzog Via',
      address_line_2: null,
      district: 'Avon',
      phone: '1803 637401',
    });
    expect(result.rows[1]).toMatchObject({ location_id: 2, district: null, postal_code: '99305-7380' });
  });

  it('keeps the real oddities: Leds, commas in counterparty names, currency names', () => {
    expect(mapTable('department').result.rows.find((r) => r.department_id === 4)).toMatchObject({
      location: 'Leds',
    });
    expect(
      mapTable('counterparty').result.rows.some((r) => String(r.counterparty_legal_name).includes(',')),
    ).toBe(true);
    expect(mapTable('currency').result.rows.map((r) => [r.currency_code, r.currency_name])).toEqual([
      ['GBP', 'Pound Sterling'],
      ['USD', 'US Dollar'],
      ['EUR', 'Euro'],
    ]);
  });
});
