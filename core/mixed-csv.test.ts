import { changeBatchFactory, changeFactory } from './csv-codec.fixtures';
import { decodeCsvObject, schemaFingerprint, schemaObjectFor } from './csv-codec';
import { encodeChangeBatchAsMixedCsv, MixedCsvError, parseMixedObjectKey, splitMixedCsv } from './mixed-csv';

/** The segments with each layout's runs joined and read as text. */
function split(text: string) {
  return splitMixedCsv(Buffer.from(text, 'utf8')).map(({ table, fingerprint, runs }) => ({
    table,
    fingerprint,
    text: Buffer.concat(runs).toString('utf8'),
  }));
}

const TYPES = [
  { name: 'payment_type_id', type: 'int4', key: true },
  { name: 'payment_type_name', type: 'text', key: false },
];
const CURRENCY = [
  { name: 'currency_id', type: 'int4', key: true },
  { name: 'currency_code', type: 'text', key: false },
];

describe('mixed-table CSV (fast mode)', () => {
  it('splits concatenated records by layout, keeping each layout’s lines in order and exact', () => {
    // A value that holds a line starting with the layout tag must not split its record.
    const hostile = 'SALES\n@layout,currency,0123456789abcdef\n"x",';
    const types1 = changeBatchFactory({
      table: 'payment_type',
      columns: TYPES,
      changes: [changeFactory({ values: ['1', hostile] })],
    });
    const currency = changeBatchFactory({
      table: 'currency',
      columns: CURRENCY,
      changes: [changeFactory({ values: ['7', 'EUR'], lsn: '00000000/02000000' })],
    });
    const types2 = changeBatchFactory({
      table: 'payment_type',
      columns: TYPES,
      changes: [
        changeFactory({ values: ['2', ''], lsn: '00000000/03000000' }),
        changeFactory({ op: 'delete', values: ['1', null], lsn: '00000000/03000000', seq: 1 }),
      ],
    });
    // Firehose concatenates the records' data as they come.
    const object = [types1, currency, types2].map(encodeChangeBatchAsMixedCsv).join('');

    const segments = split(object);

    expect(segments.map((s) => [s.table, s.fingerprint])).toEqual([
      ['payment_type', schemaFingerprint(TYPES)],
      ['currency', schemaFingerprint(CURRENCY)],
    ]);
    expect(decodeCsvObject(segments[0].text, schemaObjectFor(types1))).toEqual([
      ...types1.changes,
      ...types2.changes,
    ]);
    expect(decodeCsvObject(segments[1].text, schemaObjectFor(currency))).toEqual(currency.changes);
  });

  it('refuses data before any layout record, and a malformed layout record', () => {
    expect(() => split('insert,0,0/1,0,2025-02-28T09:15:02.123456Z,,,1,GBP\n')).toThrow(MixedCsvError);
    expect(() => split('@layout,currency,nothex\n')).toThrow(/malformed layout record/);
    expect(split('')).toEqual([]);
  });

  it('recognises fast mode keys only', () => {
    expect(parseMixedObjectKey('totesys/_mixed/2025/02/28/09/totes-1-2025-02-28-09-15-00-abc')).toEqual({
      hour: '2025/02/28/09',
      name: 'totes-1-2025-02-28-09-15-00-abc',
    });
    expect(
      parseMixedObjectKey('totesys/currency/schema=0123456789abcdef/2025/02/28/09/x.csv'),
    ).toBeUndefined();
    expect(parseMixedObjectKey('totesys/_mixed/2025/02/28/x')).toBeUndefined();
  });
});

describe('splitMixedCsv against a character-by-character split', () => {
  /** The split as it was first written: every character tested, every record appended on its own. */
  function reference(text: string) {
    const segments = new Map<string, { table: string; fingerprint: string; text: string }>();
    let current: { table: string; fingerprint: string; text: string } | undefined;
    let recordStart = text.charCodeAt(0) === 0xfeff ? 1 : 0;
    let inQuotes = false;
    const take = (start: number, end: number) => {
      if (start >= end) return;
      const line = text.slice(start, end);
      if (line.startsWith('@layout,')) {
        const [, table, fingerprint, ...rest] = line.replace(/\r?\n$/, '').split(',');
        if (!table || !/^[0-9a-f]{16}$/.test(fingerprint ?? '') || rest.length) throw new Error('malformed');
        const id = `${table}/${fingerprint}`;
        current = segments.get(id) ?? { table, fingerprint, text: '' };
        segments.set(id, current);
        return;
      }
      if (!current) throw new Error('data first');
      current.text += line;
    };
    for (let i = recordStart; i < text.length; i++) {
      const c = text[i];
      if (c === '"') inQuotes = !inQuotes;
      else if (c === '\n' && !inQuotes) {
        take(recordStart, i + 1);
        recordStart = i + 1;
      }
    }
    take(recordStart, text.length);
    return [...segments.values()];
  }

  it('gives the same segments for records of any shape, quotes and line ends included', () => {
    const pieces = [
      '@layout,currency,0123456789abcdef\n',
      '@layout,staff,fedcba9876543210\n',
      '@layout,staff,fedcba9876543210',
      'insert,1,0/1,0,ts,,,,1,GBP\n',
      'update,1,0/2,1,ts,,,,2,"a ""quoted"" value"\n',
      'insert,1,0/3,2,ts,,,,3,"two\nlines\n@layout,x,0123456789abcdef\n"\n',
      'insert,1,0/4,3,ts,,,,4,"open quote\n',
      '\r\n',
      '\n',
      'x,y"z\n',
      '"',
      // Characters of two, three and four bytes: the split scans bytes, the reference characters.
      'insert,1,0/5,4,ts,,,,5,"£ é € 😀\n@layout,y,0123456789abcdef"\n',
      '£"€\n',
    ];
    let seed = 11;
    const random = (below: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % below;
    };
    for (let i = 0; i < 2000; i++) {
      const text =
        (random(5) === 0 ? '\ufeff' : '') +
        Array.from({ length: random(8) }, () => pieces[random(pieces.length)]).join('');
      let expected: unknown;
      try {
        expected = reference(text);
      } catch {
        expected = 'throws';
      }
      let actual: unknown;
      try {
        actual = split(text);
      } catch {
        actual = 'throws';
      }
      expect([text, actual]).toEqual([text, expected]);
    }
  });
});
