import { HOSTILE_VALUES } from './csv-codec.fixtures';
import { SAMPLE_ROWS, SOURCE_LAYOUTS, sourceChange } from './star-mapping.fixtures';
import {
  datesReferenced,
  dimDateRow,
  InvalidDateError,
  isMappedSourceTable,
  MissingSourceColumnError,
  requiredSourceColumns,
  sourceRowHash,
  SOURCE_SPECS,
  StarMappingError,
  targetTableOf,
  toWarehouseRows,
  UnknownSourceTableError,
} from './star-mapping';
import { TOTESYS_TABLES, type TotesysTable } from './totesys-tables';
import { SOURCE_POSITION_COLUMNS, TARGET_OF_SOURCE, WAREHOUSE_TABLES } from './warehouse-model';

/** Maps one change of `table` and returns its single row (fails the test if it was rejected). */
function mapOne(
  table: TotesysTable,
  ...args: Parameters<typeof sourceChange> extends [unknown, ...infer R] ? R : never
) {
  const result = toWarehouseRows(table, SOURCE_LAYOUTS[table], [sourceChange(table, ...args)]);
  expect(result.rejected).toEqual([]);
  expect(result.rows).toHaveLength(1);
  return result.rows[0];
}

/** Maps one change of `table` and returns the reason it was rejected. */
function rejectionOf(
  table: TotesysTable,
  ...args: Parameters<typeof sourceChange> extends [unknown, ...infer R] ? R : never
): string {
  const change = sourceChange(table, ...args);
  const result = toWarehouseRows(table, SOURCE_LAYOUTS[table], [change]);
  expect(result.rows).toEqual([]);
  expect(result.rejected).toHaveLength(1);
  expect(result.rejected[0].change).toBe(change);
  return result.rejected[0].reason;
}

const POSITION = {
  _op: 'upsert',
  _epoch: 0,
  _lsn: '00000000/016B3748',
  _seq: 0,
  _commit_ts: '2025-02-28T09:15:02.123456Z',
  _unchanged: '',
  _row_hash: expect.stringMatching(/^[0-9a-f]{32}$/),
  _rows: null,
};

describe('the mapping specification', () => {
  it.each(TOTESYS_TABLES)(
    '%s feeds exactly the columns of its warehouse table, with their types',
    (table) => {
      // Prepare
      const target = WAREHOUSE_TABLES[TARGET_OF_SOURCE[table]];
      // Act
      const produced = SOURCE_SPECS[table].fields.flatMap((f) => f.to.map((to, i) => [to, f.produces[i]]));
      // Assess
      expect(targetTableOf(table)).toBe(TARGET_OF_SOURCE[table]);
      expect(isMappedSourceTable(table)).toBe(true);
      expect(Object.fromEntries(produced)).toEqual(
        Object.fromEntries(target.columns.map((c) => [c.name, c.type])),
      );
      expect(produced).toHaveLength(target.columns.length);
      expect(SOURCE_SPECS[table].fields[0].to).toEqual([target.key]);
    },
  );

  it('knows no other table', () => {
    expect(isMappedSourceTable('_prisma_migrations')).toBe(false);
    expect(isMappedSourceTable('constructor')).toBe(false);
    expect(() => targetTableOf('__proto__')).toThrow(UnknownSourceTableError);
    expect(() => toWarehouseRows('audit_log', [{ name: 'id' }], [])).toThrow(StarMappingError);
  });

  it('lists the source columns it reads, which excludes the ones the warehouse drops', () => {
    expect(requiredSourceColumns('payment')).not.toContain('company_ac_number');
    expect(requiredSourceColumns('counterparty')).toEqual([
      'counterparty_id',
      'counterparty_legal_name',
      'legal_address_id',
    ]);
  });
});

describe('dimensions and staging tables', () => {
  it('address → dim_location renames the key and keeps NULLs', () => {
    expect(mapOne('address', {}, { op: 'snapshot' })).toEqual({
      location_id: 1,
      address_line_1: '6826 Herzog Via',
      address_line_2: null,
      district: 'Avon',
      city: 'New Patienceburgh',
      postal_code: '28441',
      country: 'Turkey',
      phone: '1803 637401',
      ...POSITION,
      _op: 'snapshot',
    });
  });

  it('puts the columns in warehouse order, followed by the bookkeeping columns', () => {
    const row = mapOne('address');
    expect(Object.keys(row)).toEqual([
      ...WAREHOUSE_TABLES.dim_location.columns.map((c) => c.name),
      ...SOURCE_POSITION_COLUMNS,
    ]);
  });

  it.each(HOSTILE_VALUES.filter((v): v is string => v !== null).map((v) => [JSON.stringify(v), v]))(
    'keeps the hostile string %s exactly, in every text column',
    (_label, value) => {
      const row = mapOne('address', {
        address_line_1: value,
        address_line_2: value,
        district: value,
        city: value,
        postal_code: value,
        country: value,
        phone: value,
      });
      for (const c of [
        'address_line_1',
        'address_line_2',
        'district',
        'city',
        'postal_code',
        'country',
        'phone',
      ])
        expect(row[c]).toBe(value);
    },
  );

  it('rejects NULL in a NOT NULL column, naming the columns but not the value', () => {
    expect(rejectionOf('address', { city: null })).toBe('city: NULL, but city is NOT NULL in the warehouse');
  });

  it('maps insert and update to upsert, a snapshot row to snapshot, with the canonical position and commit time', () => {
    for (const op of ['snapshot', 'insert', 'update'] as const) {
      const row = mapOne('design', {}, { op, lsn: 'a/1', seq: 7, ts: '2025-03-01T00:00:00.000001Z' });
      expect(row).toMatchObject({
        _op: op === 'snapshot' ? 'snapshot' : 'upsert',
        _lsn: '0000000A/00000001',
        _seq: 7,
        _commit_ts: '2025-03-01T00:00:00.000001Z',
      });
    }
  });

  it('maps a delete to a row with only the key, marked delete', () => {
    expect(mapOne('design', {}, { op: 'delete', seq: 3 })).toEqual({
      design_id: 8,
      design_name: null,
      file_location: null,
      file_name: null,
      ...POSITION,
      _op: 'delete',
      _seq: 3,
      _row_hash: null,
    });
  });

  it('maps a delete carrying every column (REPLICA IDENTITY FULL) to the key only', () => {
    const columns = SOURCE_LAYOUTS.staff.map((c) => ({ ...c, key: true }));
    const change = sourceChange('staff', {}, { op: 'delete', columns });
    expect(change.values.every((v) => v !== null)).toBe(true);
    const { rows } = toWarehouseRows('staff', columns, [change]);
    expect(rows[0]).toMatchObject({ staff_id: 1, first_name: null, email_address: null, _op: 'delete' });
  });

  it('rejects a delete whose key is not an integer', () => {
    expect(rejectionOf('design', { design_id: '8.0' }, { op: 'delete' })).toBe('design_id: not an integer');
  });

  it('maps a truncate and a snapshot end marker to keyless rows of the table', () => {
    const changes = [
      { ...sourceChange('currency', {}, { op: 'truncate' }), values: [], epoch: 5 },
      sourceChange('currency', {}, { seq: 1 }),
      { ...sourceChange('currency', {}, { op: 'snapshot_end', seq: 2 }), values: [], rows: 7 },
    ];
    const result = toWarehouseRows('currency', SOURCE_LAYOUTS.currency, changes);
    expect(result.rejected).toEqual([]);
    expect(result.rows.map((r) => [r._op, r._epoch, r.currency_id, r._rows])).toEqual([
      ['truncate', 5, null, null],
      ['upsert', 0, 1, null],
      ['snapshot_end', 0, null, 7],
    ]);
  });

  it('rejects a snapshot end marker without its row count', () => {
    const marker = { ...sourceChange('currency', {}, { op: 'snapshot_end' }), values: [] };
    expect(toWarehouseRows('currency', SOURCE_LAYOUTS.currency, [marker]).rejected).toEqual([
      { change: marker, reason: 'snapshot_end without a row count' },
    ]);
  });

  it('hashes the whole source row: every column, not the order, not NULLs; unknown with TOAST', () => {
    const columns = [{ name: 'a' }, { name: 'b' }, { name: 'c' }];
    const change = (values: (string | null)[], unchanged?: number[]) => ({
      op: 'snapshot' as const,
      lsn: '0/1',
      seq: 0,
      ts: '2025-02-28T09:15:02.123456Z',
      values,
      ...(unchanged ? { unchanged } : {}),
    });
    const hash = sourceRowHash(columns, change(['1', 'x', null]));
    expect(hash).toMatch(/^[0-9a-f]{32}$/);
    expect(sourceRowHash([columns[1], columns[0], columns[2]], change(['x', '1', null]))).toBe(hash);
    expect(sourceRowHash(columns.slice(0, 2), change(['1', 'x']))).toBe(hash);
    expect(sourceRowHash(columns, change(['1', 'y', null]))).not.toBe(hash);
    expect(sourceRowHash(columns, change(['1', 'x', '']))).not.toBe(hash);
    expect(sourceRowHash(columns, change(['1', null, null], [1]))).toBeUndefined();
  });

  it('marks snapshot rows as snapshot and carries the row hash and epoch', () => {
    const [row] = toWarehouseRows('sales_order', SOURCE_LAYOUTS.sales_order, [
      { ...sourceChange('sales_order', {}, { op: 'snapshot' }), epoch: 1764600000000 },
    ]).rows;
    expect(row).toMatchObject({ _op: 'snapshot', _epoch: 1764600000000 });
    expect(row._row_hash).toMatch(/^[0-9a-f]{32}$/);
  });

  it.each([
    ['GBP', 'Pound Sterling'],
    ['USD', 'US Dollar'],
    ['EUR', 'Euro'],
    ['XYZ', 'XYZ'],
    ['constructor', 'constructor'],
    ['__proto__', '__proto__'],
    ['gbp', 'gbp'],
  ])('currency %s is named %s', (code, name) => {
    expect(mapOne('currency', { currency_code: code })).toMatchObject({
      currency_id: 1,
      currency_code: code,
      currency_name: name,
    });
  });

  it('payment_type and transaction keep the enum text; transaction ids may be NULL', () => {
    expect(mapOne('payment_type', { payment_type_name: 'PURCHASE_REFUND' })).toMatchObject({
      payment_type_id: 1,
      payment_type_name: 'PURCHASE_REFUND',
    });
    expect(mapOne('transaction')).toEqual({
      transaction_id: 1,
      transaction_type: 'PURCHASE',
      sales_order_id: null,
      purchase_order_id: 2,
      ...POSITION,
    });
    expect(
      mapOne('transaction', { transaction_type: 'SALE', sales_order_id: '5', purchase_order_id: null }),
    ).toMatchObject({
      sales_order_id: 5,
      purchase_order_id: null,
    });
  });

  it('rejects a float-rendered nullable id (2.0), the batch-era bug', () => {
    expect(rejectionOf('transaction', { purchase_order_id: '2.0' })).toBe(
      'purchase_order_id: not an integer',
    );
  });

  it('department → stg_department keeps the real data as it is (Leds) and nullable location and manager', () => {
    expect(mapOne('department')).toEqual({
      department_id: 4,
      department_name: 'Dispatch',
      location: 'Leds',
      manager: 'Mark Ryan',
      ...POSITION,
    });
    expect(mapOne('department', { location: null, manager: null })).toMatchObject({
      location: null,
      manager: null,
    });
  });

  it('staff → stg_staff and counterparty → stg_counterparty carry the join keys and drop the rest', () => {
    expect(mapOne('staff')).toEqual({
      staff_id: 1,
      first_name: 'Jeremie',
      last_name: 'Franey',
      department_id: 2,
      email_address: 'jeremie.franey@terrifictotes.com',
      ...POSITION,
    });
    expect(mapOne('counterparty', { counterparty_legal_name: 'Leannon, Predovic and Morar' })).toEqual({
      counterparty_id: 1,
      counterparty_legal_name: 'Leannon, Predovic and Morar',
      legal_address_id: 15,
      ...POSITION,
    });
  });

  it('design keeps file locations unescaped (no JSON \\/ escaping)', () => {
    expect(mapOne('design', { file_location: '/usr/local/src' })).toMatchObject({
      file_location: '/usr/local/src',
    });
  });
});

describe('unchanged TOAST values', () => {
  it('become NULL with their warehouse names in _unchanged, never a NULL over a real value', () => {
    const row = mapOne('design', {}, { op: 'update', unchanged: ['design_name', 'file_name'] });
    expect(row).toMatchObject({
      design_name: null,
      file_name: null,
      file_location: '/usr',
      _unchanged: 'design_name,file_name',
    });
  });

  it('mark every warehouse column a source column feeds', () => {
    expect(mapOne('currency', {}, { op: 'update', unchanged: ['currency_code'] })).toMatchObject({
      currency_code: null,
      currency_name: null,
      _unchanged: 'currency_code,currency_name',
    });
    expect(
      mapOne('purchase_order', {}, { op: 'update', unchanged: ['item_code', 'last_updated'] }),
    ).toMatchObject({
      item_code: null,
      last_updated_date: null,
      last_updated_time: null,
      _unchanged: 'last_updated_date,last_updated_time,item_code',
    });
  });

  it('are not a NULL for the NOT NULL check, but a key can never be one', () => {
    expect(mapOne('staff', {}, { op: 'update', unchanged: ['email_address'] })).toMatchObject({
      email_address: null,
    });
    expect(rejectionOf('staff', {}, { op: 'update', unchanged: ['staff_id'] })).toMatch(
      /staff_id: the key cannot be/,
    );
  });
});

describe('facts', () => {
  it('sales_order → fact_sales_order: split timestamps, renamed staff, exact money, text dates', () => {
    expect(mapOne('sales_order')).toEqual({
      sales_order_id: 2,
      created_date: '2022-11-03',
      created_time: '14:20:52.186',
      last_updated_date: '2022-11-03',
      last_updated_time: '14:20:52.180',
      sales_staff_id: 19,
      counterparty_id: 8,
      units_sold: 42972,
      unit_price: '3.94',
      currency_id: 2,
      design_id: 3,
      agreed_payment_date: '2022-11-08',
      agreed_delivery_date: '2022-11-07',
      agreed_delivery_location_id: 8,
      ...POSITION,
    });
  });

  it('purchase_order → fact_purchase_order, a timestamp without fraction is .000', () => {
    expect(mapOne('purchase_order', { item_code: 'comma, "quote"\nnewline' })).toEqual({
      purchase_order_id: 1,
      created_date: '2022-11-03',
      created_time: '14:20:52.187',
      last_updated_date: '2022-11-03',
      last_updated_time: '14:20:52.000',
      staff_id: 12,
      counterparty_id: 11,
      item_code: 'comma, "quote"\nnewline',
      item_quantity: 371,
      item_unit_price: '361.39',
      currency_id: 2,
      agreed_delivery_date: '2022-11-09',
      agreed_payment_date: '2022-11-07',
      agreed_delivery_location_id: 6,
      ...POSITION,
    });
  });

  it('payment → fact_payment drops the account numbers and reads t/f booleans', () => {
    expect(mapOne('payment')).toEqual({
      payment_id: 1,
      created_date: '2022-11-03',
      created_time: '14:20:52.186',
      last_updated_date: '2022-11-05',
      last_updated_time: '07:55:39.412',
      transaction_id: 1,
      counterparty_id: 17,
      payment_amount: '56925.44',
      currency_id: 2,
      payment_type_id: 3,
      paid: true,
      payment_date: '2022-11-07',
      ...POSITION,
    });
  });

  it.each([
    ['t', true],
    ['true', true],
    ['f', false],
    ['false', false],
  ])('paid %s is %s', (text, value) => {
    expect(mapOne('payment', { paid: text }).paid).toBe(value);
  });

  it.each(['yes', 'T', '1', ''])('rejects paid %j', (text) => {
    expect(rejectionOf('payment', { paid: text })).toBe('paid: not a boolean (t/f)');
  });

  it.each([
    ['2022-11-03 14:20:52.186', '2022-11-03', '14:20:52.186'],
    ['2022-11-03 14:20:52.18', '2022-11-03', '14:20:52.180'],
    ['2022-11-03 14:20:52.1', '2022-11-03', '14:20:52.100'],
    ['2022-11-03 14:20:52', '2022-11-03', '14:20:52.000'],
    ['2022-11-03 00:00:00.001', '2022-11-03', '00:00:00.001'],
    ['2024-02-29 23:59:59.999', '2024-02-29', '23:59:59.999'],
    ['2022-11-03 14:20:52.123000', '2022-11-03', '14:20:52.123'],
  ])('splits created_at %s into %s and %s, milliseconds exact', (text, dateText, time) => {
    expect(mapOne('sales_order', { created_at: text })).toMatchObject({
      created_date: dateText,
      created_time: time,
    });
  });

  it.each([
    ['2022-11-03 14:20:52.1234', 'created_at: has sub-millisecond precision the warehouse cannot keep'],
    ['2022-11-03T14:20:52.186', 'created_at: not a timestamp in YYYY-MM-DD HH:MM:SS[.fff] form'],
    ['2022-11-03 14:20:52.186+00', 'created_at: not a timestamp in YYYY-MM-DD HH:MM:SS[.fff] form'],
    ['2023-02-29 14:20:52', 'created_at: not a timestamp in YYYY-MM-DD HH:MM:SS[.fff] form'],
    ['2022-11-03 24:00:00', 'created_at: not a valid time of day'],
    ['2022-11-03 12:60:00', 'created_at: not a valid time of day'],
    ['2022-11-03 12:00:60', 'created_at: not a valid time of day'],
    ['infinity', 'created_at: not a timestamp in YYYY-MM-DD HH:MM:SS[.fff] form'],
  ])('rejects created_at %j', (text, reason) => {
    expect(rejectionOf('sales_order', { created_at: text })).toBe(reason);
  });

  it.each([
    '2024-02-30',
    '2023-02-29',
    '2022-13-01',
    '2022-00-10',
    '2022-04-31',
    '2022-11-3',
    '22-11-03',
    '0000-01-01',
    'tomorrow',
    '',
  ])('rejects the text date %j (not a calendar date) as a quarantinable change', (text) => {
    expect(rejectionOf('sales_order', { agreed_delivery_date: text })).toBe(
      'agreed_delivery_date: not a calendar date in YYYY-MM-DD form',
    );
    expect(rejectionOf('payment', { payment_date: text })).toBe(
      'payment_date: not a calendar date in YYYY-MM-DD form',
    );
  });

  it.each(['2024-02-29', '2000-02-29', '2025-12-31', '2031-01-01'])(
    'accepts the real date %s, future ones included',
    (text) => {
      expect(mapOne('purchase_order', { agreed_payment_date: text }).agreed_payment_date).toBe(text);
    },
  );

  it.each(['2.43', '-0.00', '0.5', '99999999.99', '-99999999.99', '7', '2.40'])(
    'keeps money %s as exact text',
    (text) => {
      expect(mapOne('sales_order', { unit_price: text }).unit_price).toBe(text);
    },
  );

  it.each(['2.435', '123456789.00', '1e3', 'NaN', '2,43', ' 2.43', '.5', '+2.43'])(
    'rejects money %j',
    (text) => {
      expect(rejectionOf('sales_order', { unit_price: text })).toBe(
        'unit_price: not a numeric(10,2) value (at most 8 integer and 2 fraction digits)',
      );
    },
  );

  it.each([
    ['2.0', 'not an integer'],
    ['1e3', 'not an integer'],
    ['007', 'not an integer'],
    [' 7', 'not an integer'],
    ['+7', 'not an integer'],
    ['2147483648', 'integer out of the int4 range'],
    ['-2147483649', 'integer out of the int4 range'],
  ])('rejects units_sold %j: %s', (text, reason) => {
    expect(rejectionOf('sales_order', { units_sold: text })).toBe(`units_sold: ${reason}`);
  });

  it.each(['0', '-1', '2147483647', '-2147483648'])('accepts the int %s', (text) => {
    expect(mapOne('sales_order', { units_sold: text }).units_sold).toBe(Number(text));
  });

  it('maps a fact delete to a key-only delete row, after the versions before it', () => {
    const changes = [
      sourceChange('sales_order', {}, { op: 'insert', seq: 0 }),
      sourceChange('sales_order', { units_sold: '1' }, { op: 'update', seq: 1 }),
      sourceChange('sales_order', {}, { op: 'delete', seq: 2 }),
    ];
    const result = toWarehouseRows('sales_order', SOURCE_LAYOUTS.sales_order, changes);
    expect(result.table).toBe('fact_sales_order');
    expect(result.rows.map((r) => [r._seq, r._op, r.units_sold])).toEqual([
      [0, 'upsert', 42972],
      [1, 'upsert', 1],
      [2, 'delete', null],
    ]);
    expect(result.rejected).toEqual([]);
  });

  it('rejects only the bad change of a batch; the others flow in order', () => {
    const changes = [0, 1, 2, 3].map((seq) =>
      sourceChange('payment', seq === 2 ? { payment_date: '2024-02-30' } : { payment_id: String(seq + 10) }, {
        seq,
      }),
    );
    const result = toWarehouseRows('payment', SOURCE_LAYOUTS.payment, changes);
    expect(result.rows.map((r) => r.payment_id)).toEqual([10, 11, 13]);
    expect(result.rejected).toEqual([
      { change: changes[2], reason: 'payment_date: not a calendar date in YYYY-MM-DD form' },
    ]);
  });
});

describe('layouts', () => {
  it('ignores columns added to the source and reads columns by name, in any order', () => {
    const columns = [
      { name: 'nickname', type: 'text', key: false },
      ...[...SOURCE_LAYOUTS.staff].reverse(),
      { name: 'salary', type: 'numeric', key: false },
    ];
    const change = sourceChange('staff', { nickname: 'JJ', salary: 'lots' }, { columns });
    expect(toWarehouseRows('staff', columns, [change]).rows[0]).toMatchObject({
      staff_id: 1,
      first_name: 'Jeremie',
      department_id: 2,
    });
  });

  it('throws MissingSourceColumnError when the layout lacks columns the warehouse needs', () => {
    const columns = SOURCE_LAYOUTS.sales_order.filter(
      (c) => c.name !== 'unit_price' && c.name !== 'created_at',
    );
    const run = () => toWarehouseRows('sales_order', columns, []);
    expect(run).toThrow(MissingSourceColumnError);
    expect(run).toThrow('layout of sales_order lacks column(s) the warehouse needs: created_at, unit_price');
  });

  it('rejects a change whose values do not fit the layout, or whose position is not an LSN', () => {
    const short = { ...sourceChange('currency'), values: ['1'] };
    const badLsn = { ...sourceChange('currency'), lsn: 'nope' };
    const result = toWarehouseRows('currency', SOURCE_LAYOUTS.currency, [short, badLsn]);
    expect(result.rejected.map((r) => r.reason)).toEqual([
      'has 1 values, the layout has 4 columns',
      'lsn is not an LSN',
    ]);
  });

  it('maps an empty batch to no rows', () => {
    expect(toWarehouseRows('payment', SOURCE_LAYOUTS.payment, [])).toEqual({
      table: 'fact_payment',
      rows: [],
      rejected: [],
    });
  });
});

describe('datesReferenced', () => {
  it('lists every date a fact row refers to, distinct and sorted, future agreed dates included', () => {
    const rows = toWarehouseRows('sales_order', SOURCE_LAYOUTS.sales_order, [
      sourceChange('sales_order'),
      sourceChange('sales_order', {
        last_updated: '2025-02-24 08:00:00',
        agreed_delivery_date: '2031-01-01',
      }),
    ]).rows;
    expect(datesReferenced('fact_sales_order', rows)).toEqual([
      '2022-11-03',
      '2022-11-07',
      '2022-11-08',
      '2025-02-24',
      '2031-01-01',
    ]);
  });

  it('skips NULLs (unchanged values) and finds nothing in dimensions', () => {
    const payment = mapOne('payment', {}, { op: 'update', unchanged: ['payment_date'] });
    expect(datesReferenced('fact_payment', [payment])).toEqual(['2022-11-03', '2022-11-05']);
    expect(datesReferenced('dim_location', [mapOne('address')])).toEqual([]);
    expect(datesReferenced('fact_purchase_order', [])).toEqual([]);
  });
});

describe('dimDateRow', () => {
  it('describes 2025-02-24 as Monday, ISO day 1, of February, quarter 1', () => {
    expect(dimDateRow('2025-02-24')).toEqual({
      date_id: '2025-02-24',
      year: 2025,
      month: 2,
      day: 24,
      day_of_week: 1,
      day_name: 'Monday',
      month_name: 'February',
      quarter: 1,
    });
  });

  it('numbers the ISO week Monday 1 … Sunday 7', () => {
    const week = [
      '2025-02-24',
      '2025-02-25',
      '2025-02-26',
      '2025-02-27',
      '2025-02-28',
      '2025-03-01',
      '2025-03-02',
    ].map(dimDateRow);
    expect(week.map((d) => [d.day_of_week, d.day_name])).toEqual([
      [1, 'Monday'],
      [2, 'Tuesday'],
      [3, 'Wednesday'],
      [4, 'Thursday'],
      [5, 'Friday'],
      [6, 'Saturday'],
      [7, 'Sunday'],
    ]);
  });

  it.each([
    ['2025-01-01', 1, 'January'],
    ['2025-03-31', 1, 'March'],
    ['2025-04-01', 2, 'April'],
    ['2025-06-30', 2, 'June'],
    ['2025-07-01', 3, 'July'],
    ['2025-09-30', 3, 'September'],
    ['2025-10-01', 4, 'October'],
    ['2025-12-31', 4, 'December'],
  ])('%s is in quarter %i, month %s', (text, quarter, monthName) => {
    expect(dimDateRow(text)).toMatchObject({ quarter, month_name: monthName });
  });

  it('handles leap days and years before 100 (no Date.UTC 19xx shift)', () => {
    expect(dimDateRow('2024-02-29')).toMatchObject({ day_of_week: 4, day_name: 'Thursday' });
    expect(dimDateRow('2000-01-01')).toMatchObject({ day_of_week: 6, day_name: 'Saturday' });
    // 0099-01-01 in the proleptic Gregorian calendar was a Thursday (as Postgres' isodow says).
    expect(dimDateRow('0099-01-01')).toMatchObject({ year: 99, day_of_week: 4 });
  });

  it('throws InvalidDateError for anything but a calendar date', () => {
    expect(() => dimDateRow('2025-02-30')).toThrow(InvalidDateError);
    expect(() => dimDateRow('2025-2-3')).toThrow('"2025-2-3" is not a calendar date in YYYY-MM-DD form');
  });
});

describe('sample rows', () => {
  it.each(TOTESYS_TABLES)('%s maps without rejection', (table) => {
    expect(Object.keys(SAMPLE_ROWS[table]).sort()).toEqual(SOURCE_LAYOUTS[table].map((c) => c.name).sort());
    mapOne(table);
  });
});
