import { CHANGE_BATCH_VERSION, CHANGE_OPS, type Change, type ChangeBatch } from './change-event';
import { HOSTILE_VALUES, STAFF_COLUMNS } from './csv-codec.fixtures';
import {
  csvField,
  decodeCsvObject,
  encodeChangeBatchAsCsv,
  encodeChangeBatchAsCsvWithStringify,
  schemaObjectFor,
} from './csv-codec';

/**
 * The hand-written CSV encoder against csv-stringify, the encoder the format was defined with:
 * byte for byte, over generated values built from the characters that decide quoting.
 */

/** A small deterministic generator (mulberry32), so a failure names a seed that reproduces it. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Pieces that matter to quoting: quote, comma, CR, LF, every kind of white space `\s` knows at
 * either end (tab, vertical tab, form feed, NBSP, the Unicode spaces, line and paragraph
 * separators, the BOM), semicolon, backslash, plain and non-ASCII text, a lone surrogate.
 */
const PIECES = [
  '"',
  '""',
  ',',
  '\r',
  '\n',
  '\r\n',
  ' ',
  '\t',
  '\v',
  '\f',
  '\u00a0',
  '\u1680',
  '\u2000',
  '\u200a',
  '\u200b',
  '\u2028',
  '\u2029',
  '\u202f',
  '\u205f',
  '\u3000',
  '\ufeff',
  '\u0085',
  ';',
  '\\',
  'a',
  'plain',
  '12.30',
  'ü',
  '日本',
  '😀',
  '\ud800',
  '@layout',
  '=',
];

function value(next: () => number): string | null {
  const roll = next();
  if (roll < 0.1) return null;
  if (roll < 0.15) return '';
  let text = '';
  const length = 1 + Math.floor(next() * 4);
  for (let i = 0; i < length; i++) text += PIECES[Math.floor(next() * PIECES.length)];
  return text;
}

function batchOf(next: () => number, width: number, changes: number): ChangeBatch {
  const columns = Array.from({ length: width }, (_, i) => ({ name: `c${i}`, type: 'text', key: i === 0 }));
  return {
    v: CHANGE_BATCH_VERSION,
    ...(next() < 0.5 ? { epoch: Math.floor(next() * 2 ** 40) } : {}),
    schema: 'public',
    table: 't',
    columns,
    changes: Array.from({ length: changes }, (_, seq): Change => {
      const op = CHANGE_OPS[Math.floor(next() * CHANGE_OPS.length)];
      const change: Change = {
        op,
        lsn: `0/${(seq + 1).toString(16)}`,
        seq,
        ts: next() < 0.1 ? ` 2025-02-28T09:15:02.123456Z,"x"` : '2025-02-28T09:15:02.123456Z',
        values: op === 'truncate' || op === 'snapshot_end' ? [] : columns.map(() => value(next)),
      };
      if (next() < 0.2) change.epoch = Math.floor(next() * 1000);
      if (op === 'snapshot_end') change.rows = Math.floor(next() * 1e6);
      if (op === 'update' && next() < 0.3) change.unchanged = [1, 2].filter((i) => i < width);
      if ((op === 'insert' || op === 'update') && next() < 0.1)
        change.ref = next() < 0.5 ? 'k,ey "1"' : 'key';
      return change;
    }),
  };
}

describe('the hand-written CSV encoder', () => {
  it('writes the bytes csv-stringify wrote, over 2,000 generated batches of awkward values', () => {
    let lines = 0;
    for (let seed = 1; seed <= 2000; seed++) {
      const next = random(seed);
      const batch = batchOf(next, 1 + Math.floor(next() * 6), 1 + Math.floor(next() * 5));
      const expected = encodeChangeBatchAsCsvWithStringify(batch);
      const actual = encodeChangeBatchAsCsv(batch);
      if (actual !== expected)
        throw new Error(`seed ${seed}: ${JSON.stringify(actual)} ≠ ${JSON.stringify(expected)}`);
      lines += batch.changes.length;
    }
    expect(lines).toBeGreaterThan(5000);
  });

  it('writes the bytes csv-stringify wrote for every hostile value, alone and in every pair', () => {
    for (const a of HOSTILE_VALUES)
      for (const b of HOSTILE_VALUES) {
        const batch: ChangeBatch = {
          v: CHANGE_BATCH_VERSION,
          schema: 'public',
          table: 'staff',
          columns: STAFF_COLUMNS,
          changes: [
            {
              op: 'insert',
              lsn: '0/1',
              seq: 0,
              ts: '2025-02-28T09:15:02.123456Z',
              values: [a, b, a, null, b],
            },
          ],
        };
        expect(encodeChangeBatchAsCsv(batch)).toBe(encodeChangeBatchAsCsvWithStringify(batch));
      }
  });

  it('reads back what it writes: NULL and the empty string apart', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const next = random(seed);
      const batch = batchOf(next, 3, 4);
      batch.changes = batch.changes.filter((c) => c.ref === undefined && !c.ts.startsWith(' '));
      if (!batch.changes.length) continue;
      const decoded = decodeCsvObject(encodeChangeBatchAsCsv(batch), schemaObjectFor(batch));
      expect(decoded.map((c) => c.values)).toEqual(batch.changes.map((c) => c.values));
    }
  });

  it('quotes a field exactly when csv-stringify did', () => {
    expect(csvField(null)).toBe('');
    expect(csvField('')).toBe('""');
    expect(csvField('a"b')).toBe('"a""b"');
    expect(csvField('\u00a0x')).toBe('"\u00a0x"');
    expect(csvField('x\u200b')).toBe('x\u200b'); // a zero-width space is not white space to \s
    expect(csvField('plain')).toBe('plain');
  });
});
