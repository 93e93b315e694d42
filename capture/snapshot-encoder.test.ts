import type { Column } from '../core/change-event';
import { ChangeBatcher, type BatchRecord, type ChangeBatcherLimits } from './change-batcher';
import { parseCopyTextRow } from './snapshot';
import { SnapshotEncoder } from './snapshot-encoder';

/**
 * SnapshotEncoder must write exactly the records ChangeBatcher writes for the same snapshot rows:
 * each row is given to both, ChangeBatcher as the values parseCopyTextRow decodes (what capture
 * did before), and the records are compared byte for byte.
 */

const COLUMNS: Column[] = [
  { name: 'id', type: 'int4', key: true },
  { name: 'name', type: 'text', key: false },
  { name: 'note', type: 'text', key: false },
];
const LSN = '0/16B3748';
const TS = '2025-02-28T09:15:02.123456Z';

/** A value as COPY's text format writes it (https://www.postgresql.org/docs/current/sql-copy.html). */
function copyField(value: string | null): string {
  if (value === null) return '\\N';
  return value.replace(
    /[\\\t\n\r\b\f\v]/g,
    (c) =>
      ({ '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r', '\b': '\\b', '\f': '\\f', '\v': '\\v' })[c]!,
  );
}
const line = (values: (string | null)[]) => Buffer.from(`${values.map(copyField).join('\t')}\n`, 'utf8');

const NOTES: (string | null)[] = [
  'plain text',
  null,
  '',
  'say "hi"',
  'back\\slash',
  'tab\there',
  'two\nlines\r\n',
  'bell\u0007 and \u001f',
  'ünïcødé — 😀',
  '\u2028 line separator',
  '\\N',
  'N',
  '123.45',
];

/** An encoder for the `staff` rows of these tests, at LSN and TS. */
const encoderFor = (options: { epoch: number; firstSeq: number; limits?: ChangeBatcherLimits }) =>
  new SnapshotEncoder({ schema: 'public', table: 'staff', columns: COLUMNS, lsn: LSN, ts: TS, ...options });

function encodeBoth(
  lines: Buffer[],
  limits: ChangeBatcherLimits,
  drainEvery = 0,
): { expected: BatchRecord[]; actual: BatchRecord[] } {
  const batcher = new ChangeBatcher(limits);
  batcher.epoch = 1733100000000;
  // The ordinals cross a digit boundary.
  const encoder = encoderFor({ epoch: batcher.epoch, firstSeq: 9_999_990, limits });
  const expected: BatchRecord[] = [];
  const actual: BatchRecord[] = [];
  let seq = 9_999_990;
  lines.forEach((l, i) => {
    const values = parseCopyTextRow(l, COLUMNS.length);
    batcher.add('public', 'staff', COLUMNS, { op: 'snapshot', lsn: LSN, seq: seq++, ts: TS, values });
    encoder.addCopyRow(l);
    expect(encoder.byteCount).toBe(batcher.byteCount);
    if (drainEvery && i % drainEvery === drainEvery - 1) {
      expected.push(...batcher.drain());
      actual.push(...encoder.drain());
    }
  });
  batcher.add('public', 'staff', COLUMNS, {
    op: 'snapshot_end',
    lsn: LSN,
    seq: seq++,
    ts: TS,
    values: [],
    rows: lines.length,
  });
  encoder.end();
  expect(encoder.rows).toBe(lines.length);
  expect(encoder.nextSeq).toBe(seq);
  expected.push(...batcher.drain());
  actual.push(...encoder.drain());
  return { expected, actual };
}

const readable = (records: BatchRecord[]) =>
  records.map((r) => ({
    ...r,
    data: r.data.toString('utf8'),
    oversized: r.oversized?.map((o) => ({ ...o, body: Buffer.from(o.body).toString('utf8') })),
  }));

describe('SnapshotEncoder', () => {
  it('writes the records ChangeBatcher writes, whatever the values hold', () => {
    const lines = NOTES.flatMap((note, i) => [
      line([String(i), `name ${i}`, note]),
      line([String(i + 100), note, null]),
    ]);
    // COPY never writes octal or hex escapes, but its text format has them: decoded the same way.
    lines.push(Buffer.from('200\t\\303\\274\\x41\\q\tlast\n'));
    // Bytes that are not UTF-8 (a SQL_ASCII database) are decoded as ChangeBatcher saw them.
    lines.push(Buffer.concat([Buffer.from('201\tbad '), Buffer.from([0xff, 0xfe]), Buffer.from('\t\\N\n')]));
    const { expected, actual } = encodeBoth(lines, { maxRecordBytes: 256 * 1024, maxChangesPerRecord: 2000 });
    expect(actual.length).toBe(1);
    expect(readable(actual)).toEqual(readable(expected));
    const batch = JSON.parse(actual[0].data.toString('utf8'));
    expect(batch.changes.map((c: { values: unknown[] }) => c.values[2]).slice(0, 4)).toEqual([
      'plain text',
      null,
      null,
      null,
    ]);
  });

  it('seals records at the same byte and change limits, drains at the same points', () => {
    const lines = Array.from({ length: 500 }, (_, i) =>
      line([String(i), 'x'.repeat(i % 37), NOTES[i % NOTES.length]]),
    );
    for (const limits of [
      { maxRecordBytes: 2000, maxChangesPerRecord: 2000 },
      { maxRecordBytes: 256 * 1024, maxChangesPerRecord: 7 },
    ]) {
      for (const drainEvery of [0, 45]) {
        const { expected, actual } = encodeBoth(lines, limits, drainEvery);
        expect(actual.length).toBeGreaterThan(5);
        expect(readable(actual)).toEqual(readable(expected));
      }
    }
  });

  it('sends a row too big for a record by the same claim check', () => {
    const lines = [
      line(['1', 'small', 'a']),
      line(['2', 'big', 'y'.repeat(3000)]),
      line(['3', 'medium', 'z'.repeat(700)]),
      line(['4', 'small', 'b']),
    ];
    const { expected, actual } = encodeBoth(lines, {
      maxRecordBytes: 4096,
      maxChangesPerRecord: 100,
      maxInlineChangeBytes: 2048,
    });
    expect(actual.some((r) => r.oversized?.length)).toBe(true);
    expect(readable(actual)).toEqual(readable(expected));
  });

  it('grows its record for a row longer than a record, as ChangeBatcher lets it through', () => {
    const lines = [
      line(['1', 'a', 'w'.repeat(100_000)]),
      line(['2', 'b', 'say "hi"'.repeat(20_000)]),
      line(['3', 'c', null]),
    ];
    const { expected, actual } = encodeBoth(lines, { maxRecordBytes: 1000, maxChangesPerRecord: 10 });
    expect(actual.length).toBe(3); // each long row alone, then row 3 with the end
    expect(readable(actual)).toEqual(readable(expected));
  });

  it('refuses a line of the wrong width', () => {
    const encoder = encoderFor({ epoch: 0, firstSeq: 0 });
    expect(() => encoder.addCopyRow(Buffer.from('1\ta\n'))).toThrow(/2 fields, expected 3/);
  });
});
