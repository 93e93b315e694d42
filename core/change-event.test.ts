import {
  compareChangePosition,
  decodeChangeBatch,
  encodeChangeBatch,
  InvalidChangeBatchError,
  microsToIso,
  type ChangeBatch,
} from './change-event';

const batch = (): ChangeBatch => ({
  v: 1,
  schema: 'public',
  table: 'counterparty',
  columns: [
    { name: 'counterparty_id', type: 'int4', key: true },
    { name: 'counterparty_legal_name', type: 'text', key: false },
    { name: 'commercial_contact', type: 'text', key: false },
  ],
  changes: [
    {
      op: 'insert',
      lsn: '0/16B3748',
      seq: 0,
      ts: '2025-02-28T09:15:02.123456Z',
      values: ['2', 'Leannon, "P" and\nMorar 🧵', ''],
    },
    {
      op: 'update',
      lsn: '0/16B3800',
      seq: 1,
      ts: '2025-02-28T09:15:03.000001Z',
      values: ['2', 'x', null],
      unchanged: [2],
    },
    { op: 'truncate', lsn: '0/16B3900', seq: 0, ts: '2025-02-28T09:15:04.000000Z', values: [] },
  ],
});

describe('change batch wire format', () => {
  it('round-trips hostile text, NULL versus empty string, and the unchanged-TOAST marker', () => {
    const decoded = decodeChangeBatch(encodeChangeBatch(batch()));
    expect(decoded).toEqual(batch());
    expect(decoded.changes[0].values[2]).toBe('');
    expect(decoded.changes[1].values[2]).toBeNull();
    expect(decoded.changes[1].unchanged).toEqual([2]);
  });

  it('decodes from a string too', () => {
    expect(decodeChangeBatch(JSON.stringify(batch())).table).toBe('counterparty');
  });

  it('rejects what is not JSON', () => {
    expect(() => decodeChangeBatch('{nope')).toThrow(InvalidChangeBatchError);
    expect(() => decodeChangeBatch('{nope')).toThrow(/not JSON/);
  });

  it('names every issue of a batch that does not fit the schema', () => {
    const bad = batch() as unknown as { changes: Array<Record<string, unknown>> };
    bad.changes[0].values = ['1'];
    bad.changes[1].lsn = 'zz';
    bad.changes[1].unchanged = [7];
    try {
      decodeChangeBatch(JSON.stringify(bad));
      throw new Error('expected a failure');
    } catch (e) {
      expect(e).toBeInstanceOf(InvalidChangeBatchError);
      const issues = (e as InvalidChangeBatchError).issues;
      expect(issues).toEqual(
        expect.arrayContaining([
          'changes.0.values: has 1 values, expected 3',
          'changes.1.lsn: not an LSN (expected XXXXXXXX/XXXXXXXX)',
          'changes.1.unchanged: index 7 out of range',
        ]),
      );
    }
  });

  it('rejects an unknown version or op', () => {
    expect(() => decodeChangeBatch(JSON.stringify({ ...batch(), v: 3 }))).toThrow(/v:/);
    const b = batch();
    (b.changes[0] as { op: string }).op = 'upsert';
    expect(() => decodeChangeBatch(JSON.stringify(b))).toThrow(/op/);
  });
});

describe('pointer changes (core/oversized-change.ts)', () => {
  const pointerBatch = (v: number, op = 'update') => {
    const b = batch();
    return JSON.stringify({
      ...b,
      v,
      changes: [{ ...b.changes[0], op, ref: 'oversized/counterparty/x.json' }],
    });
  };

  it('are read from a v2 batch, ref kept', () => {
    expect(decodeChangeBatch(pointerBatch(2)).changes[0].ref).toBe('oversized/counterparty/x.json');
  });

  it('are refused in a v1 batch (a reader before pointers would load its NULLs) and on a table op', () => {
    expect(() => decodeChangeBatch(pointerBatch(1))).toThrow(/changes\.0\.ref: a pointer needs a v2 batch/);
    expect(() => decodeChangeBatch(pointerBatch(2, 'truncate'))).toThrow(/ref/);
  });
});

describe('positions', () => {
  it('orders by commit LSN numerically, then by ordinal', () => {
    const sorted = [
      { lsn: '0/10', seq: 0 },
      { lsn: '0/9', seq: 5 },
      { lsn: '0/9', seq: 1 },
      { lsn: '1/0', seq: 0 },
    ].sort(compareChangePosition);
    expect(sorted).toEqual([
      { lsn: '0/9', seq: 1 },
      { lsn: '0/9', seq: 5 },
      { lsn: '0/10', seq: 0 },
      { lsn: '1/0', seq: 0 },
    ]);
  });
});

describe('microsToIso', () => {
  it('keeps microseconds that a Date would drop', () => {
    expect(microsToIso(1740734102123456n)).toBe('2025-02-28T09:15:02.123456Z');
    expect(microsToIso(1740734102000001n)).toBe('2025-02-28T09:15:02.000001Z');
  });
});
