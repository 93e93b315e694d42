import { decodeParquet, encodeParquet, ParquetCodecError, type WarehouseRow } from './parquet-codec';

const row = (overrides: Partial<WarehouseRow> = {}): WarehouseRow => ({
  payment_id: 1,
  created_date: '2022-11-03',
  created_time: '14:20:52.186',
  last_updated_date: '2024-02-29',
  last_updated_time: '00:00:00.001',
  transaction_id: 1,
  counterparty_id: 17,
  payment_amount: '56925.44',
  currency_id: 2,
  payment_type_id: 3,
  paid: true,
  payment_date: '2022-11-07',
  _op: 'upsert',
  _epoch: 1_764_600_000_000,
  _lsn: '00000000/016B3748',
  _seq: 4_000_000_000,
  _commit_ts: '2025-02-28T09:15:02.123456Z',
  _unchanged: '',
  _row_hash: '0123456789abcdef0123456789abcdef',
  _rows: null,
  ...overrides,
});

describe('parquet codec', () => {
  it('round-trips every column type exactly, money as text, with NULLs', async () => {
    const rows = [
      row(),
      row({ payment_id: 2, payment_amount: '-99999999.99', paid: false, created_time: '23:59:59.999' }),
      row({
        payment_id: 3,
        payment_amount: null,
        paid: null,
        payment_date: null,
        _unchanged: 'payment_amount',
      }),
      row({ payment_id: 4, _op: 'delete', created_date: null, created_time: null, counterparty_id: null }),
      row({ payment_id: null, _op: 'snapshot_end', _rows: 12_345, _row_hash: null }),
    ];
    const decoded = await decodeParquet(await encodeParquet('fact_payment', rows));
    expect(decoded.table).toBe('fact_payment');
    expect(decoded.rows).toEqual(rows);
  });

  it('keeps dates before year 100 and before 1970 (no Date.UTC 19xx shift)', async () => {
    const dates = ['0099-01-01', '0001-01-01', '1969-12-31', '9999-12-31'];
    const rows = dates.map((d) => row({ payment_date: d }));
    const decoded = await decodeParquet(await encodeParquet('fact_payment', rows));
    expect(decoded.rows.map((r) => r.payment_date)).toEqual(dates);
  });

  it('writes an empty file that reads back empty', async () => {
    expect(await decodeParquet(await encodeParquet('dim_currency', []))).toEqual({
      table: 'dim_currency',
      rows: [],
    });
  });

  it('refuses values that are not in canonical form, naming the column', async () => {
    await expect(encodeParquet('fact_payment', [row({ created_date: '03/11/2022' })])).rejects.toThrow(
      /created_date/,
    );
    await expect(encodeParquet('fact_payment', [row({ created_time: 'noon' })])).rejects.toThrow(
      /created_time/,
    );
  });

  it('refuses a file that is not Parquet', async () => {
    await expect(decodeParquet(Buffer.from('PAR1 nope'))).rejects.toThrow(ParquetCodecError);
  });
});
