import { parse } from 'csv-parse/sync';
import type { Change, Column } from './change-event';
import {
  changeBatchFactory,
  changeFactory,
  HOSTILE_VALUES,
  staffBatch,
  STAFF_COLUMNS,
} from './csv-codec.fixtures';
import {
  CSV_METADATA_COLUMNS,
  CsvDecodeError,
  CsvObjectDecoder,
  decodeCsvObject,
  decodeSchemaObject,
  encodeChangeBatchAsCsv,
  encodeSchemaObject,
  InvalidSchemaObjectError,
  isLayoutSafeTableName,
  parseDataObjectKey,
  schemaFingerprint,
  schemaObjectFor,
  schemaObjectKey,
  parseCsvRecords,
  type SchemaObject,
} from './csv-codec';

const COLUMNS: Column[] = [
  { name: 'id', type: 'int4', key: true },
  { name: 'v', type: 'text', key: false },
];

/** What a decoder returns for a change written without an epoch: epoch 0, stated. */
const withEpoch = (changes: readonly Change[], epoch = 0): Change[] => changes.map((c) => ({ epoch, ...c }));

/** The schema object format 1 wrote (before epochs): objects written then must still decode. */
function formatOneSchema(columns: readonly Column[]): SchemaObject {
  return {
    ...schemaObjectFor({ schema: 'public', table: 't', columns: [...columns] }),
    formatVersion: 1,
    metadataColumns: ['op', 'lsn', 'seq', 'commit_ts', 'unchanged'],
    fingerprint: schemaFingerprint(columns, 1),
  };
}

describe('encodeChangeBatchAsCsv / decodeCsvObject', () => {
  it('round-trips every hostile value exactly, NULL and the empty string apart', () => {
    // Prepare: one change per hostile value, with the value in the middle of the row.
    const columns: Column[] = [...COLUMNS, { name: 'tail', type: 'text', key: false }];
    const changes = HOSTILE_VALUES.map((value, i) =>
      changeFactory({ lsn: `0/${(i + 1).toString(16)}`, seq: i, values: [String(i), value, value] }),
    );
    const batch = changeBatchFactory({ table: 'hostile', columns, changes });

    // Act
    const csv = encodeChangeBatchAsCsv(batch);
    const back = decodeCsvObject(csv, schemaObjectFor(batch));

    // Assess
    expect(back).toEqual(withEpoch(changes));
    expect(back[0].values[1]).toBeNull();
    expect(back[1].values[1]).toBe('');
    expect(csv.startsWith('insert,0,0/1,0,2025-02-28T09:15:02.123456Z,,,,0,,\n')).toBe(true);
    expect(csv.split('\n')[1]).toBe('insert,0,0/2,1,2025-02-28T09:15:02.123456Z,,,,1,"",""');
  });

  it('keeps numerics and timestamps as their exact text', () => {
    const values = ['00012.3400', '1e-7', 'NaN', '-Infinity', '2025-02-28 09:15:02.000001', '24:00:00'];
    const changes = values.map((v, i) => changeFactory({ seq: i, values: ['1', v] }));
    const batch = changeBatchFactory({ columns: COLUMNS, changes });
    expect(decodeCsvObject(encodeChangeBatchAsCsv(batch), schemaObjectFor(batch))).toEqual(
      withEpoch(changes),
    );
  });

  it('carries the batch epoch onto every line, and a snapshot end marker with its row count', () => {
    const changes = [
      changeFactory({ op: 'snapshot', seq: 0, values: ['1', 'a'] }),
      changeFactory({ op: 'snapshot_end', seq: 1, values: [], rows: 1 }),
    ].map(({ epoch: _none, ...change }) => change);
    const batch = { ...changeBatchFactory({ columns: COLUMNS, changes }), epoch: 1764600000000 };
    const csv = encodeChangeBatchAsCsv(batch);
    expect(csv.split('\n')[1]).toBe(
      'snapshot_end,1764600000000,00000000/01000000,1,2025-02-28T09:15:02.123456Z,,1,,,',
    );
    expect(decodeCsvObject(csv, schemaObjectFor(batch))).toEqual(withEpoch(changes, 1764600000000));
  });

  it('reads objects written in format 1 (no epoch, no row count) as epoch 0', () => {
    const schema = formatOneSchema(COLUMNS);
    expect(decodeSchemaObject(encodeSchemaObject(schema))).toEqual(schema);
    expect(decodeCsvObject('insert,0/1,4,2025-02-28T09:15:02.123456Z,,1,x\n', schema)).toEqual([
      { op: 'insert', epoch: 0, lsn: '0/1', seq: 4, ts: '2025-02-28T09:15:02.123456Z', values: ['1', 'x'] },
    ]);
  });

  it('reads objects written in format 2 (no ref column)', () => {
    const schema: SchemaObject = {
      ...schemaObjectFor({ schema: 'public', table: 't', columns: COLUMNS }),
      formatVersion: 2,
      metadataColumns: ['op', 'epoch', 'lsn', 'seq', 'commit_ts', 'unchanged', 'rows'],
      fingerprint: schemaFingerprint(COLUMNS, 2),
    };
    expect(decodeSchemaObject(encodeSchemaObject(schema))).toEqual(schema);
    expect(decodeCsvObject('insert,5,0/1,4,2025-02-28T09:15:02.123456Z,,,1,x\n', schema)).toEqual([
      { op: 'insert', epoch: 5, lsn: '0/1', seq: 4, ts: '2025-02-28T09:15:02.123456Z', values: ['1', 'x'] },
    ]);
  });

  it('carries a pointer line (ref) through with its key and nothing else', () => {
    const changes = [changeFactory({ op: 'update', values: ['7', null], ref: 'oversized/t/abc.json' })];
    const batch = { ...changeBatchFactory({ columns: COLUMNS, changes }), v: 2 as const };
    const csv = encodeChangeBatchAsCsv(batch);
    expect(csv).toBe('update,0,00000000/01000000,0,2025-02-28T09:15:02.123456Z,,,oversized/t/abc.json,7,\n');
    expect(decodeCsvObject(csv, schemaObjectFor(batch))).toEqual(withEpoch(changes));
  });

  it('carries the unchanged-TOAST marker distinct from NULL, and truncates with no values', () => {
    const columns: Column[] = [...COLUMNS, { name: 'doc', type: 'text', key: false }];
    const changes = [
      changeFactory({ op: 'update', seq: 0, values: ['1', null, null], unchanged: [1, 2] }),
      changeFactory({ op: 'update', seq: 1, values: ['1', null, 'x'] }),
      changeFactory({ op: 'delete', seq: 2, values: ['1', null, null] }),
      changeFactory({ op: 'truncate', seq: 3, values: [] }),
    ];
    const batch = changeBatchFactory({ columns, changes });
    const csv = encodeChangeBatchAsCsv(batch);
    expect(csv.split('\n')[0]).toBe('update,0,00000000/01000000,0,2025-02-28T09:15:02.123456Z,1;2,,,1,,');
    expect(csv.split('\n')[3]).toBe('truncate,0,00000000/01000000,3,2025-02-28T09:15:02.123456Z,,,,,,');
    expect(decodeCsvObject(csv, schemaObjectFor(batch))).toEqual(withEpoch(changes));
  });

  it('round-trips a 1 MB value with every awkward character in it', () => {
    const chunk = 'a,b"c\nd\r\ne 😀 ';
    const big = chunk.repeat(Math.ceil(1_000_000 / chunk.length));
    const batch = changeBatchFactory({ columns: COLUMNS, changes: [changeFactory({ values: ['1', big] })] });
    const [back] = decodeCsvObject(encodeChangeBatchAsCsv(batch), schemaObjectFor(batch));
    expect(back.values[1]).toBe(big);
  });

  it('reads concatenated batches (what Firehose writes) as one object', () => {
    const a = staffBatch({ firstId: 0, count: 30 });
    const b = staffBatch({ firstId: 30, count: 30 });
    const object = Buffer.from(encodeChangeBatchAsCsv(a) + encodeChangeBatchAsCsv(b));
    expect(decodeCsvObject(object, schemaObjectFor(a))).toEqual(withEpoch([...a.changes, ...b.changes]));
  });

  it('writes lines a standard CSV reader splits into the documented columns', () => {
    const batch = staffBatch({ firstId: 7, count: 1 });
    const [row] = parse(encodeChangeBatchAsCsv(batch)) as string[][];
    expect(row).toHaveLength(CSV_METADATA_COLUMNS.length + STAFF_COLUMNS.length);
    expect(row.slice(0, 5)).toEqual(['insert', '0', batch.changes[0].lsn, '0', batch.changes[0].ts]);
  });

  it.each([
    ['a record with too few fields', 'insert,0/1,0,2025-02-28T09:15:02.123456Z,,1\n', 1, /has 6 fields/],
    ['a bad op', 'upsert,0/1,0,2025-02-28T09:15:02.123456Z,,1,x\n', 1, /op/],
    ['a bad LSN', 'insert,zz,0,2025-02-28T09:15:02.123456Z,,1,x\n', 1, /lsn/],
    ['a bad seq', 'insert,0/1,-1,2025-02-28T09:15:02.123456Z,,1,x\n', 1, /seq/],
    ['a bad unchanged list', 'insert,0/1,0,2025-02-28T09:15:02.123456Z,a;b,1,x\n', 1, /unchanged/],
    ['an unchanged index out of range', 'update,0/1,0,2025-02-28T09:15:02.123456Z,5,1,\n', 1, /range/],
    ['broken quoting', 'insert,0/1,0,2025-02-28T09:15:02.123456Z,,1,"x"y\n', 1, /not valid CSV/],
    ['a bad second record', 'insert,0/1,0,2025-02-28T09:15:02.123456Z,,1,x\ninsert,0/1,1,,,1,x\n', 2, /ts/],
  ])('rejects %s with the record number (format 1)', (_what, text, record, reason) => {
    const schema = formatOneSchema(COLUMNS);
    const error = (() => {
      try {
        decodeCsvObject(text, schema);
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(CsvDecodeError);
    expect(error).toMatchObject({ table: 't', fingerprint: schema.fingerprint, record });
    expect((error as Error).message).toMatch(reason);
  });

  it.each([
    ['a bad epoch', 'insert,-1,0/1,0,2025-02-28T09:15:02.123456Z,,,,1,x\n', /epoch/],
    ['a bad row count', 'snapshot_end,1,0/1,0,2025-02-28T09:15:02.123456Z,,x,,,\n', /rows/],
    [
      'a pointer on a truncate',
      'truncate,1,0/1,0,2025-02-28T09:15:02.123456Z,,,oversized/t/x.json,,\n',
      /pointer/,
    ],
  ])('rejects %s with the record number (format 3)', (_what, text, reason) => {
    const schema = schemaObjectFor({ schema: 'public', table: 't', columns: COLUMNS });
    expect(() => decodeCsvObject(text, schema)).toThrow(CsvDecodeError);
    expect(() => decodeCsvObject(text, schema)).toThrow(reason);
  });

  it('decodes an empty object as no changes', () => {
    expect(decodeCsvObject('', schemaObjectFor({ schema: 'p', table: 't', columns: COLUMNS }))).toEqual([]);
  });
});

describe('CsvObjectDecoder (an object read in pieces)', () => {
  it('decodes the same changes wherever the pieces are cut, inside quotes and UTF-8 characters too', () => {
    const columns: Column[] = [...COLUMNS, { name: 'tail', type: 'text', key: false }];
    const changes = HOSTILE_VALUES.map((value, i) =>
      changeFactory({ lsn: `0/${(i + 1).toString(16)}`, seq: i, values: [String(i), value, value] }),
    );
    const batch = changeBatchFactory({ table: 'hostile', columns, changes });
    const bytes = Buffer.from(encodeChangeBatchAsCsv(batch) + encodeChangeBatchAsCsv(batch));
    const schema = schemaObjectFor(batch);
    const whole = decodeCsvObject(bytes, schema);
    expect(whole).toHaveLength(2 * changes.length);
    for (const size of [1, 2, 3, 7, 64, 1000]) {
      const decoder = new CsvObjectDecoder(schema);
      const out: Change[] = [];
      for (let at = 0; at < bytes.length; at += size)
        out.push(...decoder.push(bytes.subarray(at, at + size)));
      out.push(...decoder.end());
      expect(out).toEqual(whole);
    }
  });

  it('returns each record as soon as its line ends, and the last one without a line feed at the end', () => {
    const schema = formatOneSchema(COLUMNS);
    const decoder = new CsvObjectDecoder(schema);
    expect(decoder.push('insert,0/1,0,2025-02-28T09:15:02.123456Z,,1,"a\n')).toEqual([]);
    expect(decoder.push('b"\ninsert,0/1,1,2025-02-28T09:15:02.123456Z,,2,')).toMatchObject([
      { seq: 0, values: ['1', 'a\nb'] },
    ]);
    expect(decoder.push('x')).toEqual([]);
    expect(decoder.end()).toMatchObject([{ seq: 1, values: ['2', 'x'] }]);
  });

  it('numbers records from the start of the object in its errors', () => {
    const schema = formatOneSchema(COLUMNS);
    const decoder = new CsvObjectDecoder(schema);
    const good = 'insert,0/1,0,2025-02-28T09:15:02.123456Z,,1,x\n';
    decoder.push(good + good);
    expect(() => decoder.push(`${good}insert,0/1,1,,,1,x\n`)).toThrow(
      expect.objectContaining({ record: 4, name: 'CsvDecodeError' }),
    );
    const broken = new CsvObjectDecoder(schema);
    broken.push(good);
    expect(() => broken.push('insert,0/1,0,2025-02-28T09:15:02.123456Z,,1,"x"y\n')).toThrow(
      expect.objectContaining({ record: 2 }),
    );
  });
});

describe('schemaFingerprint', () => {
  it('is 16 hex digits and stable across runs (pinned value)', () => {
    expect(schemaFingerprint(STAFF_COLUMNS)).toMatch(/^[0-9a-f]{16}$/);
    // Pinned: a change here silently re-homes every object; bump CSV_FORMAT_VERSION instead.
    expect(schemaFingerprint(COLUMNS)).toBe(schemaFingerprint([...COLUMNS.map((c) => ({ ...c }))]));
    expect(schemaFingerprint(COLUMNS, 1)).toBe('7bbef13c4c9f6658');
    expect(schemaFingerprint(COLUMNS, 2)).toBe('95bf2805d90dbf4b');
    expect(schemaFingerprint(COLUMNS)).toBe('9e9e4891b729ff0d');
  });

  it('changes with any name, type, key flag or order change', () => {
    const base = schemaFingerprint(COLUMNS);
    const variants: Column[][] = [
      [COLUMNS[0], { ...COLUMNS[1], name: 'w' }],
      [COLUMNS[0], { ...COLUMNS[1], type: 'varchar' }],
      [COLUMNS[0], { ...COLUMNS[1], key: true }],
      [COLUMNS[1], COLUMNS[0]],
      [...COLUMNS, { name: 'added', type: 'text', key: false }],
    ];
    const all = new Set([base, ...variants.map(schemaFingerprint)]);
    expect(all.size).toBe(variants.length + 1);
  });
});

describe('schema objects', () => {
  it('encode deterministically and decode back', () => {
    const schema = schemaObjectFor({ schema: 'public', table: 'staff', columns: STAFF_COLUMNS });
    const text = encodeSchemaObject(schema);
    expect(
      encodeSchemaObject(schemaObjectFor({ schema: 'public', table: 'staff', columns: STAFF_COLUMNS })),
    ).toBe(text);
    expect(decodeSchemaObject(Buffer.from(text))).toEqual(schema);
    expect(JSON.parse(text)).toMatchObject({
      format: 'totes-change-csv',
      formatVersion: 3,
      metadataColumns: ['op', 'epoch', 'lsn', 'seq', 'commit_ts', 'unchanged', 'rows', 'ref'],
    });
  });

  it('rejects non-JSON, wrong shapes and a fingerprint that does not match the columns', () => {
    expect(() => decodeSchemaObject('{')).toThrow(InvalidSchemaObjectError);
    expect(() => decodeSchemaObject('{"format":"x"}')).toThrow(/format/);
    const schema = schemaObjectFor({ schema: 'public', table: 'staff', columns: STAFF_COLUMNS });
    const forged = JSON.stringify({ ...schema, columns: COLUMNS });
    expect(() => decodeSchemaObject(forged)).toThrow(/fingerprint does not match/);
  });
});

describe('ingestion layout', () => {
  it('names schema objects and parses data keys', () => {
    expect(schemaObjectKey('staff', 'b9e2c2a2a5a0b1d8')).toBe('_schemas/staff/b9e2c2a2a5a0b1d8.json');
    expect(
      parseDataObjectKey('totesys/staff/schema=b9e2c2a2a5a0b1d8/2025/02/28/09/totes-ingestion-1-x.csv'),
    ).toEqual({ table: 'staff', fingerprint: 'b9e2c2a2a5a0b1d8' });
    expect(parseDataObjectKey('_schemas/staff/b9e2c2a2a5a0b1d8.json')).toBeUndefined();
    expect(parseDataObjectKey('totesys/staff/schema=nothex/2025/02/28/09/x.csv')).toBeUndefined();
  });

  it('accepts ordinary table names and refuses ones that would break the key layout', () => {
    for (const ok of ['staff', 'sales_order', 'T1', 'a.b', 'x-y', '$x'])
      expect(isLayoutSafeTableName(ok)).toBe(true);
    for (const bad of ['', 'a/b', 'a=b', 'a b', '.hidden', 'x'.repeat(200), 'tab\t'])
      expect(isLayoutSafeTableName(bad)).toBe(false);
  });
});

describe('parseCsvRecords', () => {
  it('tells NULL (empty, unquoted) from the empty string (""), with CRLF, a BOM and no final newline', () => {
    expect(parseCsvRecords('\ufeffa,,""\r\n"x,""y""\n",b,\nlast,"z"')).toEqual([
      ['a', null, ''],
      ['x,"y"\n', 'b', null],
      ['last', 'z'],
    ]);
  });

  it('refuses what is not CSV, naming the record', () => {
    expect(() => parseCsvRecords('a,b\n"open')).toThrow(/record 2: unterminated quoted field/);
    expect(() => parseCsvRecords('a"b,c\n')).toThrow(/record 1: quote inside an unquoted field/);
    expect(() => parseCsvRecords('"a"b,c\n')).toThrow(/record 1: unexpected "b" after a field/);
  });
});
