import { PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import { PgoutputDecoder } from './pgoutput-decoder';
import { isRowMessage, parseRowMessage, RowParseError } from './pgoutput-rows';
import { RawTextPgoutputPlugin } from './replication-stream';

// Byte-exact pgoutput frames (protocol 1) built in code, as node-postgres' pg-protocol tests do:
// https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html

class Frame {
  private readonly parts: Buffer[] = [];
  byte(c: string | number): this {
    this.parts.push(Buffer.from([typeof c === 'string' ? c.charCodeAt(0) : c]));
    return this;
  }
  int16(n: number): this {
    const b = Buffer.alloc(2);
    b.writeInt16BE(n);
    this.parts.push(b);
    return this;
  }
  int32(n: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32BE(n);
    this.parts.push(b);
    return this;
  }
  int64(n: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(n);
    this.parts.push(b);
    return this;
  }
  cstring(s: string): this {
    this.parts.push(Buffer.from(`${s}\0`, 'utf8'));
    return this;
  }
  /** TupleData: 't' text, null as 'n', undefined as 'u' (unchanged TOAST). */
  tuple(values: readonly (string | null | undefined)[]): this {
    this.int16(values.length);
    for (const v of values) {
      if (v === null) this.byte('n');
      else if (v === undefined) this.byte('u');
      else {
        const text = Buffer.from(v, 'utf8');
        this.byte('t').int32(text.length);
        this.parts.push(text);
      }
    }
    return this;
  }
  done(): Buffer {
    return Buffer.concat(this.parts);
  }
}

const OID = 16385;
const relationFrame = new Frame()
  .byte('R')
  .int32(OID)
  .cstring('public')
  .cstring('payment')
  .byte('d')
  .int16(3)
  .byte(1)
  .cstring('payment_id')
  .int32(23)
  .int32(-1)
  .byte(0)
  .cstring('amount')
  .int32(1700)
  .int32(-1)
  .byte(0)
  .cstring('notes')
  .int32(25)
  .int32(-1)
  .done();
const beginFrame = new Frame().byte('B').int64(0x16b3748n).int64(793_000_000_000_000n).int32(770).done();
const commitFrame = new Frame()
  .byte('C')
  .byte(0)
  .int64(0x16b3748n)
  .int64(0x16b3780n)
  .int64(793_000_000_000_000n)
  .done();
const row = (tag: 'I' | 'U' | 'D') => new Frame().byte(tag).int32(OID);

/** Every row shape pgoutput sends, multi-byte text and empty strings included. */
const rowFrames: Buffer[] = [
  row('I').byte('N').tuple(['1', '56925.44', 'naïve € 🧵 "quoted" \\ \n']).done(),
  row('I').byte('N').tuple(['2', '0.00', '']).done(),
  row('I').byte('N').tuple(['3', '1.50', null]).done(),
  // Update, key unchanged, a TOASTed note not sent.
  row('U').byte('N').tuple(['1', '2.00', undefined]).done(),
  // Update that changed the key: old key first ('K': non-key columns null).
  row('U').byte('K').tuple(['2', null, null]).byte('N').tuple(['20', '0.00', 'moved']).done(),
  // REPLICA IDENTITY FULL: old row, and the unchanged TOAST value comes from it.
  row('U').byte('O').tuple(['3', '1.50', 'long text']).byte('N').tuple(['3', '9.99', undefined]).done(),
  row('U').byte('O').tuple(['3', '9.99', 'x']).byte('N').tuple(['30', '9.99', undefined]).done(),
  row('D').byte('K').tuple(['20', null, null]).done(),
  row('D').byte('O').tuple(['30', '9.99', 'x']).done(),
];

/** pgoutput parsed by the library alone, values kept as text: how capture read it before. */
class LibraryTextPlugin extends PgoutputPlugin {
  override parse(buffer: Buffer): Pgoutput.Message {
    const message = super.parse(buffer);
    if (message.tag === 'relation')
      for (const column of message.columns) column.parser = (raw: unknown) => raw;
    return message;
  }
}

const options = { protoVersion: 1 as const, publicationNames: ['p'] };

function decodeAll(plugin: PgoutputPlugin, frames: readonly Buffer[]): unknown[] {
  const decoder = new PgoutputDecoder();
  return frames.map((f) => decoder.decode(plugin.parse(f)));
}

describe('parseRowMessage (byte-exact frames)', () => {
  it('decodes every row shape into the change events the library-parsed stream gave', () => {
    // Prepare
    const frames = [relationFrame, beginFrame, ...rowFrames, commitFrame];

    // Act
    const ours = decodeAll(new RawTextPgoutputPlugin(options), frames);
    const library = decodeAll(new LibraryTextPlugin(options), frames);

    // Assess: identical but for the values' JSON the parser wrote where no value needs escaping
    // (JSON.stringify's, exactly), and the cases that matter say what they should.
    const jsons: (string | undefined)[] = [];
    const stripped = ours.map((item) => {
      const strip = (i: unknown) => {
        if ((i as { kind?: string } | null)?.kind !== 'change') return i;
        const { valuesJson, ...rest } = i as { valuesJson?: string; change: { values: unknown[] } };
        if (valuesJson !== undefined) expect(valuesJson).toBe(JSON.stringify(rest.change.values));
        jsons.push(valuesJson);
        return rest;
      };
      return Array.isArray(item) ? item.map(strip) : strip(item);
    });
    expect(stripped).toEqual(library);
    // Plain rows carry it; multi-byte text, quotes, backslashes, control characters, unchanged
    // TOAST values and key-only tuples do not.
    const plain = [false, true, true, false, false, true, false, false, false, false, true];
    expect(jsons.map((j) => j !== undefined)).toEqual(plain);
    const changes = ours
      .flatMap((item) => (Array.isArray(item) ? item : [item]))
      .filter(
        (item): item is { kind: 'change'; change: { op: string; values: unknown[]; unchanged?: number[] } } =>
          (item as { kind?: string } | null)?.kind === 'change',
      );
    expect(changes.map((c) => [c.change.op, c.change.values, c.change.unchanged])).toEqual([
      ['insert', ['1', '56925.44', 'naïve € 🧵 "quoted" \\ \n'], undefined],
      ['insert', ['2', '0.00', ''], undefined],
      ['insert', ['3', '1.50', null], undefined],
      ['update', ['1', '2.00', null], [2]],
      ['delete', ['2', null, null], undefined],
      ['update', ['20', '0.00', 'moved'], undefined],
      ['update', ['3', '9.99', 'long text'], undefined],
      ['delete', ['3', null, null], undefined],
      ['update', ['30', '9.99', 'x'], undefined],
      ['delete', ['20', null, null], undefined],
      ['delete', ['30', '9.99', 'x'], undefined],
    ]);
  });

  it('takes only Insert, Update and Delete', () => {
    expect(rowFrames.every(isRowMessage)).toBe(true);
    expect([relationFrame, beginFrame, commitFrame].some(isRowMessage)).toBe(false);
  });

  it('refuses a row before its Relation, a short message, a binary column and a tuple of the wrong width', () => {
    const plugin = new RawTextPgoutputPlugin(options);
    expect(() => plugin.parse(rowFrames[0])).toThrow(/before its Relation message/);
    plugin.parse(relationFrame);
    const relations = new Map([
      [OID, new LibraryTextPlugin(options).parse(relationFrame) as Pgoutput.MessageRelation],
    ]);
    expect(() => parseRowMessage(rowFrames[0].subarray(0, rowFrames[0].length - 3), relations)).toThrow(
      RowParseError,
    );
    const binary = row('I').byte('N').int16(3).byte('b').int32(1).byte(1).byte('n').byte('n').done();
    expect(() => parseRowMessage(binary, relations)).toThrow(/unexpected column kind b/);
    const narrow = row('I').byte('N').tuple(['1', '2']).done();
    expect(() => parseRowMessage(narrow, relations)).toThrow(/a Relation message was missed/);
    const oddKind = row('D').byte('N').tuple(['1', null, null]).done();
    expect(() => parseRowMessage(oddKind, relations)).toThrow(/unexpected tuple kind N in Delete/);
  });
});
