import { SAMPLE_ROWS, SOURCE_LAYOUTS, sourceChange } from '../../core/star-mapping.fixtures';
import { toWarehouseRows } from '../../core/star-mapping';
import type { TotesysTable } from '../../core/totesys-tables';
import { decodeParquet, encodeParquet } from './parquet-codec';

/**
 * The columnar writer (parquet-codec-writer.ts) against the library's own appendRow: the same rows
 * must give the same bytes, across row groups and pages, with NULLs in every kind of column.
 */

/** Rows of `table` from the mapping: upserts with varied values, deletes (mostly NULL), a truncate. */
function rowsOf(table: TotesysTable, count: number) {
  const sample = SAMPLE_ROWS[table];
  const changes = Array.from({ length: count }, (_, i) => {
    const overrides: Record<string, string | null> = {};
    for (const [name, value] of Object.entries(sample))
      if (value !== null && /^\d+$/.test(value)) overrides[name] = String(Number(value) + (i % 7));
    if (i % 5 === 3)
      for (const name of Object.keys(sample)) if (!name.endsWith('_id')) overrides[name] = null;
    return sourceChange(table, i % 5 === 3 ? {} : overrides, {
      op: i % 11 === 4 ? 'delete' : i % 13 === 6 ? 'truncate' : 'update',
      seq: i,
    });
  });
  const mapped = toWarehouseRows(table, SOURCE_LAYOUTS[table], changes);
  return { target: mapped.table, rows: mapped.rows };
}

describe('the columnar writer against the library', () => {
  it.each(['payment', 'sales_order', 'purchase_order', 'address', 'currency'] as const)(
    '%s: the same bytes as the library shredding, over several row groups',
    async (table) => {
      const { target, rows } = rowsOf(table, 61);
      expect(rows.length).toBeGreaterThan(40);
      for (const rowGroupRows of [1, 2, 7, 4096]) {
        const fast = await encodeParquet(target, rows, { rowGroupRows });
        const library = await encodeParquet(target, rows, { rowGroupRows, libraryShredding: true });
        expect(fast.equals(library)).toBe(true);
      }
      expect((await decodeParquet(await encodeParquet(target, rows))).rows).toEqual(rows);
    },
  );

  it('writes non-ASCII text and money of every sign the same as the library', async () => {
    const { target, rows } = rowsOf('payment', 6);
    const texts = ['Zoë', '名前 ✓', 'emoji 🧾', '', 'a\u0000b', 'plain'];
    const amounts = ['-0.01', '0.00', '12345678.99', '-12345678.99', '7.5', '100'];
    const varied = rows.map((row, i) => ({ ...row, _lsn: texts[i], payment_amount: amounts[i] }));
    const fast = await encodeParquet(target, varied, { rowGroupRows: 4 });
    expect(
      fast.equals(await encodeParquet(target, varied, { rowGroupRows: 4, libraryShredding: true })),
    ).toBe(true);
    const decoded = (await decodeParquet(fast)).rows;
    expect(decoded.map((r) => r._lsn)).toEqual(texts);
    expect(decoded.map((r) => r.payment_amount)).toEqual([
      '-0.01',
      '0.00',
      '12345678.99',
      '-12345678.99',
      '7.50',
      '100.00',
    ]);
  });

  it('reads times by position to the same milliseconds as the pattern', async () => {
    const times = ['00:00:00.000', '00:00:00.001', '09:05:07.080', '23:59:59.999', '12:34:56.7', '12:34:56'];
    const { target, rows } = rowsOf('payment', times.length);
    const timed = rows.map((row, i) => ({ ...row, created_time: times[i] }));
    const decoded = (await decodeParquet(await encodeParquet(target, timed))).rows;
    expect(decoded.map((r) => r.created_time)).toEqual([
      '00:00:00.000',
      '00:00:00.001',
      '09:05:07.080',
      '23:59:59.999',
      '12:34:56.700',
      '12:34:56.000',
    ]);
    await expect(encodeParquet(target, [{ ...rows[0], created_time: '12:34:5x.000' }])).rejects.toThrow(
      'is not an HH:MM:SS.mmm time',
    );
  });
});

describe("the columnar writer, beyond the mapping's rows", () => {
  it('writes several pages per row group as the library does (more rows than a page)', async () => {
    const { target, rows } = rowsOf('payment', 61);
    // 8,192 rows make a page (the library's default); 9,000 rows in one row group make two.
    const many = Array.from({ length: 9000 }, (_, i) => ({
      ...rows[i % rows.length],
      _seq: i,
      _lsn: `0/${(i >> 3).toString(16).toUpperCase()}`,
    }));
    const options = { rowGroupRows: 10_000 };
    const fast = await encodeParquet(target, many, options);
    expect(fast.equals(await encodeParquet(target, many, { ...options, libraryShredding: true }))).toBe(true);
    expect((await decodeParquet(fast)).rows).toEqual(many);
  });

  it('writes money extremes, repeated values and all-NULL columns the same as the library', async () => {
    const { target, rows } = rowsOf('payment', 20);
    const amounts = ['-99999999.99', '99999999.99', '0.00', '-0.00', '-1.00', '1.00', '-0.01', '0.01'];
    const varied = rows.map((row, i) => ({
      ...row,
      payment_amount: amounts[i % amounts.length],
      paid: i % 3 === 0 ? null : i % 2 === 0,
      _row_hash: null,
      _commit_ts: i < 10 ? 'same' : 'later',
      payment_date: i % 4 === 0 ? '0099-01-01' : '2024-02-29',
    }));
    for (const rowGroupRows of [3, 4096]) {
      const fast = await encodeParquet(target, varied, { rowGroupRows });
      const library = await encodeParquet(target, varied, { rowGroupRows, libraryShredding: true });
      expect(fast.equals(library)).toBe(true);
    }
  });

  it('refuses a value of the wrong kind for its column, naming the column', async () => {
    const { target, rows } = rowsOf('payment', 1);
    await expect(encodeParquet(target, [{ ...rows[0], _lsn: 12 }])).rejects.toThrow('column _lsn');
    await expect(encodeParquet(target, [{ ...rows[0], payment_id: '12' }])).rejects.toThrow(
      'column payment_id',
    );
    await expect(encodeParquet(target, [{ ...rows[0], payment_id: 2 ** 31 }])).rejects.toThrow(
      'column payment_id',
    );
    await expect(encodeParquet(target, [{ ...rows[0], _seq: 1.5 }])).rejects.toThrow('column _seq');
    await expect(encodeParquet(target, [{ ...rows[0], paid: 't' }])).rejects.toThrow('column paid');
  });
});
