import { decodeChangeBatch, type Change, type Column } from '../core/change-event';
import { MAX_INLINE_CHANGE_BYTES, oversizedObjectKey, resolvePointer } from '../core/oversized-change';
import { CSV_FORMAT_VERSION } from '../core/csv-codec';
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

  it('writes ASCII and non-ASCII text alike, in any order within a record', () => {
    // Prepare: plain changes, then accented and astral ones, then plain again, in one record.
    const b = new ChangeBatcher();
    const names = ['plain', 'naïve café', '🧵 thread', 'quote " and \\ back', 'plain again'];

    // Act
    names.forEach((name, i) => b.add('public', 'désign', columns, change(i, name)));
    b.add('public', 'staff', columns, change(9, 'only ascii'));
    const records = b.drain();

    // Assess
    const batches = records.map((r) => decodeChangeBatch(r.data));
    expect(batches.map((x) => x.table)).toEqual(['désign', 'staff']);
    expect(batches[0].changes.map((c) => c.values[1])).toEqual(names);
    expect(batches[1].changes.map((c) => c.values[1])).toEqual(['only ascii']);
    for (const r of records)
      expect(JSON.parse(r.data.toString('utf8'))).toEqual(JSON.parse(r.data.toString()));
  });

  it("writes the values' JSON it is given instead of stringifying them", () => {
    const b = new ChangeBatcher();
    b.add('public', 'design', columns, change(0, 'x'), '["0" , "x"]'); // same values, other spacing
    const record = b.drain()[0];
    expect(record.data.toString('utf8')).toContain('"values":["0" , "x"]}');
    expect(decodeChangeBatch(record.data).changes[0].values).toEqual(['0', 'x']);
  });

  it('writes each change as JSON.stringify would, optional fields included', () => {
    const b = new ChangeBatcher();
    const plain = change(0);
    const withUnchanged: Change = { ...change(1), op: 'update', values: ['1', null], unchanged: [1] };
    const end: Change = { op: 'snapshot_end', lsn: plain.lsn, seq: 2, ts: plain.ts, values: [], rows: 2 };
    const laterTxn: Change = { ...change(3), lsn: '00000000/00000200', ts: '2025-02-28T09:15:03.000001Z' };
    for (const c of [plain, withUnchanged, end, laterTxn]) b.add('public', 'design', columns, c);
    const text = b.drain()[0].data.toString('utf8');
    expect(text).toContain(
      `[${[plain, withUnchanged, end, laterTxn].map((c) => JSON.stringify(c)).join(',')}]`,
    );
  });
});

describe('ChangeBatcher: oversized changes (claim check)', () => {
  it('sends a change too big for a record as a pointer, with its whole event as the payload', () => {
    // Prepare: a small change, a 3 MiB one and another small one of the same table.
    const b = new ChangeBatcher();
    b.epoch = 1764600000000;
    const big = change(1, '€'.repeat(1024 * 1024));

    // Act
    b.add('public', 'design', columns, change(0));
    b.add('public', 'design', columns, big);
    b.add('public', 'design', columns, change(2));
    const records = b.drain();

    // Assess: the pointer rides alone in a v2 record; the neighbours stay inline.
    expect(records).toHaveLength(2);
    const [pointerRecord, inline] = records;
    expect(decodeChangeBatch(inline.data).changes.map((c) => c.seq)).toEqual([0, 2]);
    expect(inline.oversized).toBeUndefined();
    expect(pointerRecord.data.length).toBeLessThan(1024);
    expect(pointerRecord).toMatchObject({ partitionKey: 'design:1', table: 'design', changes: 1 });
    const pointerBatch = decodeChangeBatch(pointerRecord.data);
    expect(pointerBatch.v).toBe(2);
    const [pointer] = pointerBatch.changes;
    const [payload] = pointerRecord.oversized!;
    expect(pointer).toMatchObject({ seq: 1, values: ['1', null], ref: payload.key });
    expect(payload.key).toBe(oversizedObjectKey('design', payload.body));
    expect(payload.change).toBe('design (id=1) at epoch 1764600000000, lsn 00000000/00000100, seq 1');
    expect(payload.bytes).toBeGreaterThan(3 * 1024 * 1024);
    const full = resolvePointer(
      pointer,
      { table: 'design', columns, formatVersion: CSV_FORMAT_VERSION },
      payload.body,
    );
    expect(full).toEqual({ ...big, epoch: 1764600000000 });
    // The payload waits for the flush too, so it counts towards the bytes that trigger one.
    expect(b.isEmpty).toBe(true);
  });

  it('counts the held payload towards the flush threshold', () => {
    const b = new ChangeBatcher();
    b.add('public', 'design', columns, change(1, 'x'.repeat(2 * MAX_INLINE_CHANGE_BYTES)));
    expect(b.byteCount).toBeGreaterThan(2 * MAX_INLINE_CHANGE_BYTES);
    expect(b.sealedRecordCount).toBe(1);
  });

  it('keeps a change just under the limit inline, and measures JSON escapes as bytes', () => {
    const limits = { maxRecordBytes: 256 * 1024, maxChangesPerRecord: 2000, maxInlineChangeBytes: 4000 };
    const b = new ChangeBatcher(limits);
    b.add('public', 'design', columns, change(1, 'y'.repeat(3500)));
    // 1,000 newlines are 2,000 bytes of JSON (`\n`): with 2,000 letters it no longer fits.
    b.add('public', 'design', columns, change(2, `${'\n'.repeat(1000)}${'z'.repeat(2000)}`));
    const records = b.drain();
    expect(records.map((r) => r.oversized?.length ?? 0).sort()).toEqual([0, 1]);
    const inline = records.find((r) => !r.oversized)!;
    expect(decodeChangeBatch(inline.data).changes.map((c) => c.seq)).toEqual([1]);
  });

  it('never sends a truncate or snapshot end by claim check (they carry no values)', () => {
    const b = new ChangeBatcher({ maxRecordBytes: 1000, maxChangesPerRecord: 10, maxInlineChangeBytes: 10 });
    b.add('public', 'design', columns, { ...change(0), op: 'truncate', values: [] });
    expect(b.drain()[0].oversized).toBeUndefined();
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
