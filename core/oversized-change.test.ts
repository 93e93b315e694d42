import { CHANGE_BATCH_VERSION, type Change, type ChangeBatch, type Column } from './change-event';
import { CSV_FORMAT_VERSION, encodeChangeBatchAsCsv } from './csv-codec';
import {
  csvLineBytes,
  describeChange,
  InvalidOversizedObjectError,
  isOversized,
  MAX_INLINE_CHANGE_BYTES,
  FIREHOSE_MAX_RECORD_BYTES,
  oversizedObjectKey,
  parseOversizedObjectKey,
  pointerChange,
  resolvePointer,
} from './oversized-change';

const COLUMNS: Column[] = [
  { name: 'design_id', type: 'int4', key: true },
  { name: 'design_name', type: 'text', key: false },
  { name: 'file_name', type: 'text', key: false },
];

const change: Change = {
  op: 'update',
  epoch: 1764600000000,
  lsn: '0/16B3748',
  seq: 3,
  ts: '2025-02-28T09:15:02.123456Z',
  values: ['7', 'x'.repeat(1000), 'f.png'],
};

/** The one-change batch capture stores, and the key it stores it under. */
function stored(c: Change = change, columns: Column[] = COLUMNS, table = 'design') {
  const batch: ChangeBatch = {
    v: CHANGE_BATCH_VERSION,
    epoch: c.epoch,
    schema: 'public',
    table,
    columns,
    changes: [{ ...c, epoch: undefined }],
  };
  const body = Buffer.from(JSON.stringify(batch));
  return { body, key: oversizedObjectKey(table, body) };
}

const expected = { table: 'design', columns: COLUMNS, formatVersion: CSV_FORMAT_VERSION };

describe('oversized object keys', () => {
  it('are named by the table and the SHA-256 of the bytes, so a retry writes the same key', () => {
    const { body, key } = stored();
    expect(key).toMatch(/^oversized\/design\/[0-9a-f]{64}\.json$/);
    expect(oversizedObjectKey('design', Buffer.from(body))).toBe(key);
    expect(oversizedObjectKey('design', Buffer.from(`${body.toString()} `))).not.toBe(key);
    expect(parseOversizedObjectKey(key)).toEqual({ table: 'design', sha256: key.slice(-69, -5) });
  });

  it('parse only their own shape', () => {
    expect(
      parseOversizedObjectKey('totesys/design/schema=0123456789abcdef/2025/02/28/09/a.csv'),
    ).toBeUndefined();
    expect(parseOversizedObjectKey('oversized/design/abc.json')).toBeUndefined();
  });
});

describe('isOversized', () => {
  it('stays under Firehose’s per-record limit with a margin', () => {
    expect(MAX_INLINE_CHANGE_BYTES).toBeLessThan(FIREHOSE_MAX_RECORD_BYTES);
  });

  it('is true for a record over the limit, and measures the CSV line only past half of it', () => {
    const csv = jest.fn(() => 0);
    expect(isOversized(101, csv, 100)).toBe(true);
    expect(isOversized(50, csv, 100)).toBe(false);
    expect(csv).not.toHaveBeenCalled();
    expect(isOversized(60, () => 101, 100)).toBe(true);
    expect(isOversized(60, () => 100, 100)).toBe(false);
  });

  it('measures the CSV line exactly as the Firehose transformation renders it', () => {
    const batch = { epoch: change.epoch, schema: 'public', table: 'design', columns: COLUMNS };
    const line = encodeChangeBatchAsCsv({ ...batch, v: CHANGE_BATCH_VERSION, changes: [change] });
    expect(csvLineBytes(batch, { ...change, values: ['7', 'é"', null] })).toBe(
      Buffer.byteLength('update,1764600000000,0/16B3748,3,2025-02-28T09:15:02.123456Z,,,,7,"é""",\n'),
    );
    expect(csvLineBytes(batch, change)).toBe(Buffer.byteLength(line));
  });
});

describe('pointerChange', () => {
  it('keeps the op, position and key columns, and nothing else', () => {
    expect(pointerChange(COLUMNS, change, 'oversized/design/k.json')).toEqual({
      op: 'update',
      epoch: 1764600000000,
      lsn: '0/16B3748',
      seq: 3,
      ts: '2025-02-28T09:15:02.123456Z',
      values: ['7', null, null],
      ref: 'oversized/design/k.json',
    });
    const { epoch: _none, ...noEpoch } = change;
    expect(pointerChange(COLUMNS, noEpoch, 'k')).not.toHaveProperty('epoch');
  });

  it('is described by table, key and position', () => {
    expect(describeChange('design', COLUMNS, change)).toBe(
      'design (design_id=7) at epoch 1764600000000, lsn 0/16B3748, seq 3',
    );
    expect(describeChange('t', COLUMNS, { ...change, epoch: undefined, values: [null, 'a', 'b'] })).toBe(
      't (no key) at epoch 0, lsn 0/16B3748, seq 3',
    );
  });
});

describe('resolvePointer', () => {
  const pointerTo = (key: string, overrides: Partial<Change> = {}) => ({
    ...pointerChange(COLUMNS, change, key),
    ...overrides,
  });

  it('gives back the whole change the pointer stands for, byte for byte', () => {
    const { body, key } = stored();
    expect(resolvePointer(pointerTo(key), expected, body)).toEqual(change);
  });

  it.each<[string, (s: ReturnType<typeof stored>) => [Change, Uint8Array], RegExp]>([
    ['a ref that is no oversized key', (s) => [pointerTo('totesys/x.csv'), s.body], /not an oversized key/],
    [
      'a key of another table',
      (s) => [pointerTo(s.key.replace('/design/', '/staff/')), s.body],
      /not an oversized key of design/,
    ],
    ['bytes that are not the named ones', (s) => [pointerTo(s.key), Buffer.from(' ')], /other bytes/],
    [
      'bytes that are not a change batch',
      () => {
        const body = Buffer.from('{"v":1}');
        return [pointerTo(oversizedObjectKey('design', body)), body];
      },
      /not a change batch/,
    ],
    [
      'another change',
      () => {
        const other = stored({ ...change, seq: 4 });
        return [pointerTo(other.key), other.body];
      },
      /another change/,
    ],
    [
      'another column layout',
      () => {
        const other = stored(change, [COLUMNS[0], COLUMNS[2], COLUMNS[1]]);
        return [pointerTo(other.key), other.body];
      },
      /another column layout/,
    ],
    [
      'a change of another table',
      () => {
        const other = stored(change, COLUMNS, 'staff');
        const body = other.body;
        return [pointerTo(oversizedObjectKey('design', body)), body];
      },
      /one change of design/,
    ],
  ])('refuses %s', (_what, make, reason) => {
    const [pointer, body] = make(stored());
    expect(() => resolvePointer(pointer, expected, body)).toThrow(InvalidOversizedObjectError);
    expect(() => resolvePointer(pointer, expected, body)).toThrow(reason);
  });
});
