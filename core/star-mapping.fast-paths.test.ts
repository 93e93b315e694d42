import { createHash } from 'node:crypto';
import type { Change, Column } from './change-event';
import { HOSTILE_VALUES } from './csv-codec.fixtures';
import { SOURCE_LAYOUTS, sourceChange } from './star-mapping.fixtures';
import { numericCents, sourceRowHash, toWarehouseRows } from './star-mapping';

/**
 * The mapping's per-change path was rewritten for CPU (bench:transform): the row hash is built by
 * concatenation in a per-batch order, dates and timestamps are read by character position. These
 * tests hold the new code to the old one's exact output, with the old code as the reference.
 */

/** sourceRowHash as it was: pairs, sorted, JSON.stringify, SHA-256. */
function referenceRowHash(columns: readonly Pick<Column, 'name'>[], change: Change): string | undefined {
  if (change.unchanged?.length) return undefined;
  const pairs: [string, string][] = [];
  columns.forEach((c, i) => {
    const value = change.values[i];
    if (value !== null && value !== undefined) pairs.push([c.name, value]);
  });
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return createHash('sha256').update(JSON.stringify(pairs)).digest('hex').slice(0, 32);
}

const TIMESTAMP_TEXT = /^(\d{4}-\d{2}-\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$/;
function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}
function referenceIsDate(text: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  if (!m) return false;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return !(year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month));
}
/** The old timestamp conversion: [date, time] or the reason. */
function referenceDateAndTime(text: string): [string, string] | string {
  const m = TIMESTAMP_TEXT.exec(text);
  if (!m || !referenceIsDate(m[1])) return 'not a timestamp in YYYY-MM-DD HH:MM:SS[.fff] form';
  const [hh, mm, ss] = [Number(m[2]), Number(m[3]), Number(m[4])];
  if (hh > 23 || mm > 59 || ss > 59) return 'not a valid time of day';
  const fraction = m[5] ?? '';
  if (/[1-9]/.test(fraction.slice(3))) return 'has sub-millisecond precision the warehouse cannot keep';
  return [m[1], `${m[2]}:${m[3]}:${m[4]}.${fraction.slice(0, 3).padEnd(3, '0')}`];
}

/** Awkward dates: leap days, month ends, year 1 and 0, non-ASCII digits, wrong separators. */
const DATES = [
  '2025-02-28',
  '2024-02-29',
  '2025-02-29',
  '1900-02-29',
  '2000-02-29',
  '2025-04-31',
  '2025-12-31',
  '2025-13-01',
  '2025-00-10',
  '2025-01-00',
  '0001-01-01',
  '0000-01-01',
  '9999-12-31',
  '2025/02/28',
  '2025-2-28',
  '２０２５-02-28',
  '2025-0٢-28',
  '',
];
const TIMES = [
  '00:00:00',
  '23:59:59',
  '24:00:00',
  '12:60:00',
  '12:00:60',
  '09:15:02.',
  '09:15:02.1',
  '09:15:02.18',
  '09:15:02.186',
  '09:15:02.1860',
  '09:15:02.1861',
  '09:15:02.123456',
  '09:15:02.1234567',
  '09:15:02.12a',
  '9:15:02.123',
  '09-15-02',
];

describe('star mapping fast paths against the old code', () => {
  it('the row hash equals the old one on hostile values, NULLs, reordered and duplicate-sorted names', () => {
    const columns = [
      { name: 'b' },
      { name: 'a' },
      { name: 'é' },
      { name: 'a_b' },
      { name: 'A' },
      { name: '"q"' },
      { name: '\u2028' },
    ];
    let compared = 0;
    for (let i = 0; i < HOSTILE_VALUES.length; i++)
      for (let j = 0; j < HOSTILE_VALUES.length; j += 3) {
        const values = columns.map((_, k) => HOSTILE_VALUES[(i + j * k) % HOSTILE_VALUES.length]);
        const change = {
          op: 'insert',
          lsn: '0/1',
          seq: 0,
          ts: '2025-02-28T09:15:02.123456Z',
          values,
        } as Change;
        expect(sourceRowHash(columns, change)).toBe(referenceRowHash(columns, change));
        compared += 1;
      }
    expect(compared).toBeGreaterThan(200);
    const withUnchanged = {
      op: 'update',
      lsn: '0/1',
      seq: 0,
      ts: 'x',
      values: ['1'],
      unchanged: [0],
    } as Change;
    expect(sourceRowHash([{ name: 'a' }], withUnchanged)).toBeUndefined();
  });

  it('the row hash equals the old one for every UTF-16 code unit in a value (JSON escapes some, not others)', () => {
    const columns = [{ name: 'a' }, { name: 'b' }];
    const differing: number[] = [];
    for (let c = 0; c <= 0xffff; c++) {
      const unit = String.fromCharCode(c);
      const change = {
        op: 'insert',
        lsn: '0/1',
        seq: 0,
        ts: '2025-02-28T09:15:02.123456Z',
        values: [unit, `x${unit}y${c % 7 === 0 ? '\udc00' : ''}`],
      } as Change;
      if (sourceRowHash(columns, change) !== referenceRowHash(columns, change)) differing.push(c);
    }
    expect(differing).toEqual([]);
  });

  it('rows carry the old hash of their whole source row', () => {
    const change = sourceChange('sales_order', { unit_price: '3.10' });
    const [row] = toWarehouseRows('sales_order', SOURCE_LAYOUTS.sales_order, [change]).rows;
    expect(row._row_hash).toBe(referenceRowHash(SOURCE_LAYOUTS.sales_order, change));
  });

  it('timestamps become the old date and time, or are rejected with the old reason', () => {
    let compared = 0;
    for (const date of DATES)
      for (const time of TIMES)
        for (const text of [`${date} ${time}`, `${date}T${time}`, `${date}  ${time}`]) {
          const change = sourceChange('sales_order', { created_at: text });
          const result = toWarehouseRows('sales_order', SOURCE_LAYOUTS.sales_order, [change]);
          const expected = referenceDateAndTime(text);
          if (typeof expected === 'string')
            expect(result.rejected.map((r) => r.reason)).toEqual([`created_at: ${expected}`]);
          else expect([result.rows[0]?.created_date, result.rows[0]?.created_time]).toEqual(expected);
          compared += 1;
        }
    expect(compared).toBe(DATES.length * TIMES.length * 3);
  });

  it('dates are accepted or rejected as before', () => {
    for (const date of [...DATES, '2025-02-28 ', ' 2025-02-28', '2025-02-288']) {
      const change = sourceChange('sales_order', { agreed_payment_date: date });
      const result = toWarehouseRows('sales_order', SOURCE_LAYOUTS.sales_order, [change]);
      if (referenceIsDate(date)) expect(result.rows[0]?.agreed_payment_date).toBe(date);
      else
        expect(result.rejected.map((r) => r.reason)).toEqual([
          'agreed_payment_date: not a calendar date in YYYY-MM-DD form',
        ]);
    }
  });

  /** Texts around the integer and numeric(10,2) forms: signs, zeros, digit counts, separators. */
  function numberLikeTexts(): string[] {
    const texts = new Set<string>([
      '',
      '-',
      '+',
      '.',
      '-.',
      '0',
      '-0',
      '00',
      '-00',
      '1e5',
      ' 1',
      '1 ',
      '1.',
      '.5',
    ]);
    const pieces = [
      '',
      '-',
      '+',
      '0',
      '7',
      '00',
      '09',
      '123',
      '12345678',
      '123456789',
      '2147483647',
      '2147483648',
    ];
    const tails = ['', '.', '.0', '.5', '.05', '.50', '.123', '.1.2', 'x', '\n', '٣'];
    for (const a of pieces) for (const b of pieces) for (const t of tails) texts.add(`${a}${b}${t}`);
    for (const n of [-2147483649, -2147483648, -1, 99999999, 100000000, 4294967296, 1e20])
      texts.add(String(n));
    texts.add('9'.repeat(40));
    texts.add(`-${'9'.repeat(40)}`);
    return [...texts];
  }

  it('integers are read as the old pattern and Number read them, or rejected with the old reason', () => {
    for (const text of numberLikeTexts()) {
      const result = toWarehouseRows('sales_order', SOURCE_LAYOUTS.sales_order, [
        sourceChange('sales_order', { units_sold: text }),
      ]);
      const n = Number(text);
      if (!/^-?(?:0|[1-9]\d*)$/.test(text))
        expect(result.rejected.map((r) => r.reason)).toEqual(['units_sold: not an integer']);
      else if (n < -2147483648 || n > 2147483647)
        expect(result.rejected.map((r) => r.reason)).toEqual(['units_sold: integer out of the int4 range']);
      else expect(Object.is(result.rows[0]?.units_sold, n)).toBe(true);
    }
  });

  it('numeric(10,2) is accepted as the old pattern accepted it, and its cents are the old ones', () => {
    for (const text of numberLikeTexts()) {
      const m = /^(-?)(\d{1,8})(?:\.(\d{1,2}))?$/.exec(text);
      const cents = m ? (m[1] ? -1 : 1) * Number(m[2] + (m[3] ?? '').padEnd(2, '0')) : undefined;
      const actual = numericCents(text);
      expect(actual === undefined ? undefined : Object.is(actual, cents) ? 'same' : actual).toBe(
        cents === undefined ? undefined : 'same',
      );
      const result = toWarehouseRows('sales_order', SOURCE_LAYOUTS.sales_order, [
        sourceChange('sales_order', { unit_price: text }),
      ]);
      if (m) expect(result.rows[0]?.unit_price).toBe(text);
      else
        expect(result.rejected.map((r) => r.reason)).toEqual([
          'unit_price: not a numeric(10,2) value (at most 8 integer and 2 fraction digits)',
        ]);
    }
  });
});
