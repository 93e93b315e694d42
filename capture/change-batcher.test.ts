import { decodeChangeBatch, type Change, type Column } from '../core/change-event';
import { ChangeBatcher, partitionKeyFor } from './change-batcher';

const columns: Column[] = [
  { name: 'id', type: 'int4', key: true },
  { name: 'name', type: 'text', key: false },
];
const change = (seq: number, name = 'x'): Change => ({
  op: 'insert',
  lsn: '00000000/00000100',
  seq,
  ts: '2025-02-28T09:15:02.123456Z',
  values: [String(seq), name],
});

describe('ChangeBatcher', () => {
  it('packs the changes of one table into one valid record, in order', () => {
    const b = new ChangeBatcher();
    for (let i = 0; i < 5; i++) b.add('public', 'design', columns, change(i));
    expect(b.openChangeCount).toBe(5);
    const records = b.drain();
    expect(records).toHaveLength(1);
    const batch = decodeChangeBatch(records[0].data);
    expect(batch.table).toBe('design');
    expect(batch.columns).toEqual(columns);
    expect(batch.changes.map((c) => c.seq)).toEqual([0, 1, 2, 3, 4]);
    expect(records[0]).toMatchObject({ partitionKey: 'design:0', table: 'design', changes: 5 });
    expect(b.isEmpty).toBe(true);
  });

  it('keeps tables and column layouts apart (a column added mid-stream starts a new batch)', () => {
    const b = new ChangeBatcher();
    b.add('public', 'design', columns, change(0));
    b.add('public', 'staff', columns, change(1));
    const wider = [...columns, { name: 'extra', type: 'text', key: false }];
    b.add('public', 'design', wider, { ...change(2), values: ['2', 'x', 'new'] });
    const batches = b.drain().map((r) => decodeChangeBatch(r.data));
    expect(batches.map((x) => [x.table, x.columns.length, x.changes.length])).toEqual([
      ['design', 2, 1],
      ['staff', 2, 1],
      ['design', 3, 1],
    ]);
  });

  it('seals a record before it would pass the byte limit, and never exceeds it', () => {
    const b = new ChangeBatcher({ maxRecordBytes: 2000, maxChangesPerRecord: 10_000 });
    for (let i = 0; i < 100; i++) b.add('public', 'design', columns, change(i, 'y'.repeat(50)));
    expect(b.sealedRecordCount).toBeGreaterThan(1);
    expect(b.sealedByteCount).toBeGreaterThan(0);
    const full = b.takeSealed();
    const rest = b.drain();
    const all = [...full, ...rest];
    for (const r of all) expect(r.data.length).toBeLessThanOrEqual(2000);
    const seqs = all.flatMap((r) => decodeChangeBatch(r.data).changes.map((c) => c.seq));
    expect(seqs).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it('seals at the change-count limit', () => {
    const b = new ChangeBatcher({ maxRecordBytes: 1 << 20, maxChangesPerRecord: 3 });
    for (let i = 0; i < 7; i++) b.add('public', 'design', columns, change(i));
    expect(b.takeSealed().map((r) => r.changes)).toEqual([3, 3]);
    expect(b.drain().map((r) => r.changes)).toEqual([1]);
  });

  it('counts multi-byte characters as bytes', () => {
    const b = new ChangeBatcher({ maxRecordBytes: 400, maxChangesPerRecord: 10_000 });
    for (let i = 0; i < 10; i++) b.add('public', 'design', columns, change(i, '🧵'.repeat(20)));
    for (const r of b.drain()) expect(r.data.length).toBeLessThanOrEqual(400);
  });
});

describe('partitionKeyFor', () => {
  it('uses table and key, the table alone for truncates, and stays within 256 characters', () => {
    expect(partitionKeyFor('staff', columns, change(7))).toBe('staff:7');
    expect(partitionKeyFor('staff', columns, { ...change(0), op: 'truncate', values: [] })).toBe('staff');
    const long = partitionKeyFor('t', [{ name: 'k', type: 'text', key: true }], {
      ...change(0),
      values: ['k'.repeat(400)],
    });
    expect(long).toHaveLength(256);
  });
});
