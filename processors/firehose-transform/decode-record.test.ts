import { isDeepStrictEqual } from 'node:util';
import { gzipSync } from 'node:zlib';
import { decodeChangeBatch, InvalidChangeBatchError } from '../../core/change-event';
import { decodeRecordData, decodeStrictBase64, isPlainChangeBatch } from './decode-record';
import { ScratchBuffer } from './scratch-buffer';

/**
 * decodeRecordData must return (or throw) exactly what decodeChangeBatch does for the same bytes:
 * a valid batch, and a batch with each of the schema's rules broken one at a time.
 */

const valid = () => ({
  v: 1,
  epoch: 1764600000000,
  schema: 'public',
  table: 'staff',
  columns: [
    { name: 'staff_id', type: 'int4', key: true },
    { name: 'first_name', type: 'text', key: false },
  ],
  changes: [
    { op: 'insert', lsn: '0/16B3748', seq: 0, ts: '2025-02-28T09:15:02.123456Z', values: ['1', 'a "b",\nc'] },
    {
      op: 'update',
      epoch: 7,
      lsn: '0/16B3748',
      seq: 1,
      ts: '2025-02-28T09:15:02.123456Z',
      values: ['1', null],
      unchanged: [1],
    },
    { op: 'delete', lsn: '0/16B3750', seq: 0, ts: '2025-02-28T09:15:02.123456Z', values: ['1', null] },
    { op: 'truncate', lsn: '0/16B3758', seq: 0, ts: '2025-02-28T09:15:02.123456Z', values: [] },
    { op: 'snapshot_end', lsn: '0/16B3758', seq: 1, ts: '2025-02-28T09:15:02.123456Z', values: [], rows: 3 },
  ],
});
type Batch = ReturnType<typeof valid> & Record<string, unknown>;
type Edit = (b: Batch) => void;
const change = (b: Batch, i = 0) => b.changes[i] as Record<string, unknown>;

/** One rule broken per edit, plus what the fast path must hand to zod (unknown keys, nulls). */
const EDITS: Record<string, Edit> = {
  'as it is': () => {},
  'no epoch': (b) => delete (b as Partial<Batch>).epoch,
  'pointer batch with a ref': (b) => {
    b.v = 2;
    change(b).ref = 'oversized/staff/x.json';
  },
  'ref in a v1 batch': (b) => (change(b).ref = 'k'),
  'ref on a truncate': (b) => {
    b.v = 2;
    change(b, 3).ref = 'k';
  },
  'empty ref': (b) => {
    b.v = 2;
    change(b).ref = '';
  },
  'version 3': (b) => (b.v = 3),
  'version as text': (b) => ((b as Record<string, unknown>).v = '1'),
  'negative epoch': (b) => (b.epoch = -1),
  'fractional epoch': (b) => (b.epoch = 1.5),
  'null epoch': (b) => ((b as Record<string, unknown>).epoch = null),
  'empty table': (b) => (b.table = ''),
  'schema a number': (b) => ((b as Record<string, unknown>).schema = 5),
  'no columns': (b) => (b.columns = []),
  'column without type': (b) => delete (b.columns[0] as Partial<(typeof b.columns)[0]>).type,
  'column key as text': (b) => ((b.columns[0] as Record<string, unknown>).key = 'true'),
  'column with an extra key': (b) => ((b.columns[0] as Record<string, unknown>).comment = 'x'),
  'batch with an extra key': (b) => (b.extra = 1),
  'no changes': (b) => (b.changes = []),
  'unknown op': (b) => (change(b).op = 'upsert'),
  'bad lsn': (b) => (change(b).lsn = '16B3748'),
  'negative seq': (b) => (change(b).seq = -1),
  'short ts': (b) => (change(b).ts = '2025-02-28'),
  'too few values': (b) => (change(b).values = ['1']),
  'values on a truncate': (b) => (change(b, 3).values = ['1', '2']),
  'a number value': (b) => (change(b).values = ['1', 2]),
  'unchanged out of range': (b) => (change(b, 1).unchanged = [2]),
  'unchanged not a list': (b) => (change(b, 1).unchanged = 1),
  'null rows': (b) => (change(b, 4).rows = null),
  'change with an extra key': (b) => (change(b).source = 'x'),
  'change a list': (b) => ((b.changes as unknown[])[0] = []),
  'batch a list': () => {},
};

/** The batch with `count` more changes after its own, plain inserts with some of `texts` as values. */
function big(batch: Batch, count: number, texts: string[] = ['plain', 'ünïcödé', '😀']): Batch {
  for (let i = 0; i < count; i++)
    batch.changes.push({
      op: 'insert',
      lsn: '0/16B3760',
      seq: i + 2,
      ts: '2025-02-28T09:15:02.123456Z',
      values: [String(i), `${texts[i % texts.length]} ${i} ${'y'.repeat(i % 97)}`],
    });
  return batch;
}

function outcome(decode: (data: Buffer) => unknown, data: Buffer): unknown {
  try {
    return { ok: decode(data) };
  } catch (e) {
    return {
      error: (e as Error).name,
      message: (e as Error).message,
      issues: (e as InvalidChangeBatchError).issues,
    };
  }
}

describe('decodeRecordData', () => {
  it.each(Object.keys(EDITS))('%s: the same result as decodeChangeBatch', (name) => {
    const batch = valid() as Batch;
    EDITS[name](batch);
    const data = Buffer.from(name === 'batch a list' ? '[1]' : JSON.stringify(batch));
    expect(outcome(decodeRecordData, data)).toEqual(outcome(decodeChangeBatch, data));
  });

  // A record over 96 KiB is parsed in pieces (its text before the changes, then about 64 KiB of
  // changes at a time): each rule broken in a big record too, early or late in it.
  it.each(Object.keys(EDITS).filter((name) => name !== 'batch a list'))(
    '%s, in a record of many pieces: the same result as decodeChangeBatch',
    (name) => {
      const batch = big(valid() as Batch, 2000);
      EDITS[name](batch);
      if (name === 'as it is') expect(JSON.stringify(batch).length).toBeGreaterThan(3 * 96 * 1024);
      const data = Buffer.from(JSON.stringify(batch));
      expect(outcome(decodeRecordData, data)).toEqual(outcome(decodeChangeBatch, data));
      const late = big(valid() as Batch, 2000);
      late.changes.reverse();
      EDITS[name](late);
      late.changes.reverse(); // the edited change is now one of the last
      const lateData = Buffer.from(JSON.stringify(late));
      expect(outcome(decodeRecordData, lateData)).toEqual(outcome(decodeChangeBatch, lateData));
    },
  );

  it('a record of many pieces: values that look like the cut between changes, multi-byte text at every offset, and damage anywhere give what decodeChangeBatch gives', () => {
    const batch = big(valid() as Batch, 1500, [
      '},{"op":"insert"',
      '},{',
      '"},{"',
      '\\"},{"',
      '"changes":[',
      ']}',
      'ü',
      '日本',
      '😀',
    ]);
    // One change bigger than a piece.
    (batch.changes as unknown[]).splice(700, 0, { ...batch.changes[700], values: ['0', 'x'.repeat(70_000)] });
    const text = JSON.stringify(batch);
    const good = Buffer.from(text);
    // Parsed in pieces (never the whole text as one string), to what the schema gives.
    const parse = jest.spyOn(JSON, 'parse');
    const parsed = outcome(decodeRecordData, good);
    const longest = Math.max(...parse.mock.calls.map(([t]) => t.length));
    parse.mockRestore();
    expect(longest).toBeLessThan(70_000 + 2 * 64 * 1024);
    expect(good.length).toBeGreaterThan(2 * longest);
    expect(parsed).toEqual({ ok: decodeChangeBatch(good) });
    // Damage: one byte replaced, inserted or removed, at random offsets and next to every kind of
    // place a cut may fall.
    let seed = 11;
    const random = (below: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % below;
    };
    const cuts = [...text.matchAll(/\},\{"|"changes":\[|\]\}$/g)].map((m) =>
      Buffer.byteLength(text.slice(0, m.index)),
    );
    const bytes = [...'[]{},":\\ 0a\n'].map((c) => c.charCodeAt(0)).concat([0xc3, 0xff]);
    for (let i = 0; i < 120; i++) {
      const at = i % 2 === 0 ? random(good.length) : cuts[random(cuts.length)] + random(6) - 2;
      const b = Buffer.from([bytes[random(bytes.length)]]);
      const edit = random(3);
      const data = Buffer.concat([
        good.subarray(0, at),
        edit === 2 ? Buffer.alloc(0) : b,
        good.subarray(edit === 1 ? at : at + 1),
      ]);
      const [actual, expected] = [outcome(decodeRecordData, data), outcome(decodeChangeBatch, data)];
      // isDeepStrictEqual first: jest's toEqual takes seconds over 1,500 changes.
      if (!isDeepStrictEqual(actual, expected)) expect([i, actual]).toEqual([i, expected]);
    }
  });

  it('a record of many pieces not shaped as capture writes it: nested lists of objects, a second changes key, white space at the end', () => {
    const batch = big(valid() as Batch, 1500);
    const text = JSON.stringify(batch);
    const variants = [
      `${text} `,
      `${text.slice(0, -2)},{"op":"insert","x":[{},{"a":1}]}]}`,
      `${text.slice(0, -1)},"changes":[${JSON.stringify(batch.changes[0])}]}`,
      text.replace('"changes":[', '"changes":[ ').replace(/\]\}$/, ' ]}'),
      text.replace('},{"', '} , {"'),
      text.replace('"schema"', '"x":[{},{"a":1}],"schema"'),
    ];
    for (const variant of variants) {
      const data = Buffer.from(variant);
      expect(outcome(decodeRecordData, data)).toEqual(outcome(decodeChangeBatch, data));
    }
  });

  it('takes the fast path for valid batches, and hands everything else to the schema', () => {
    const fast = Object.keys(EDITS)
      .filter((name) => name !== 'batch a list')
      .filter((name) => {
        const batch = valid() as Batch;
        EDITS[name](batch);
        return isPlainChangeBatch(JSON.parse(JSON.stringify(batch)));
      });
    expect(fast).toEqual(['as it is', 'no epoch', 'pointer batch with a ref']);
  });

  it('not JSON, and not UTF-8: the same errors', () => {
    for (const data of [Buffer.from('{"v":1,'), Buffer.from([0xff, 0xfe, 0x7b]), Buffer.from('null')])
      expect(outcome(decodeRecordData, data)).toEqual(outcome(decodeChangeBatch, data));
  });

  it('inflates a gzip record first, as decodeChangeBatch does, with its errors when it does not inflate', () => {
    for (const name of Object.keys(EDITS)) {
      const batch = valid() as Batch;
      EDITS[name](batch);
      const data = gzipSync(Buffer.from(JSON.stringify(batch)));
      expect(outcome(decodeRecordData, data)).toEqual(outcome(decodeChangeBatch, data));
    }
    const gz = gzipSync(Buffer.from(JSON.stringify(valid())));
    expect(decodeRecordData(gz)).toEqual(decodeRecordData(Buffer.from(JSON.stringify(valid()))));
    const broken = gz.subarray(0, 20);
    expect(outcome(decodeRecordData, broken)).toEqual(outcome(decodeChangeBatch, broken));
    expect(() => decodeRecordData(broken)).toThrow(/does not inflate/);
  });

  it('copies the batch epoch onto changes that have none, keeping their own', () => {
    const batch = decodeRecordData(Buffer.from(JSON.stringify(valid())));
    expect(batch.changes.map((c) => c.epoch)).toEqual([
      1764600000000, 7, 1764600000000, 1764600000000, 1764600000000,
    ]);
  });
});

describe('decodeStrictBase64', () => {
  /** The definition it replaced: the bytes, when encoding them again gives back the same text. */
  const reference = (data: string) => {
    const bytes = Buffer.from(data, 'base64');
    return bytes.toString('base64') === data ? bytes : undefined;
  };

  it('accepts exactly what encoding the decoded bytes again gives back', () => {
    const texts: string[] = [
      '',
      '=',
      '==',
      '====',
      'QQ==',
      'QR==',
      'QUI=',
      'QUJ=',
      'QUJD',
      'QQ=A',
      'Q===',
      'QQ',
    ];
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n\t.é*';
    let seed = 7;
    const random = (below: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % below;
    };
    for (let i = 0; i < 3000; i++) {
      const bytes = Buffer.from(Array.from({ length: random(12) }, () => random(256)));
      const good = bytes.toString('base64');
      texts.push(good);
      // One character replaced, inserted or removed, anywhere.
      const at = random(good.length + 1);
      const c = alphabet[random(alphabet.length)];
      texts.push(good.slice(0, at) + c + good.slice(at + 1));
      texts.push(good.slice(0, at) + c + good.slice(at));
      texts.push(good.slice(0, at) + good.slice(at + 1));
    }
    // Into a new Buffer, and into one scratch buffer reused for every text (as the handler does).
    const scratch = new ScratchBuffer(4);
    for (const text of texts) {
      const expected = reference(text)?.toString('hex');
      expect([text, decodeStrictBase64(text)?.toString('hex')]).toEqual([text, expected]);
      expect([text, decodeStrictBase64(text, scratch)?.toString('hex')]).toEqual([text, expected]);
    }
  });
});
