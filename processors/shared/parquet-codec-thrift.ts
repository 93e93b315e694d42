import Int64 from 'node-int64';

/**
 * Thrift's compact protocol (https://github.com/apache/thrift/blob/master/doc/specs/thrift-compact-protocol.md),
 * written the way the `thrift` package's TCompactProtocol writes it, for the Parquet metadata the
 * columnar writer serialises with @dsnp/parquetjs' generated types (page headers, column chunk
 * metadata, page indexes, the footer). The package's protocol makes a Buffer for every byte and
 * every varint (`new Buffer([b])`, the deprecated constructor) and its buffered transport copies
 * each of them: on small files (fast mode's objects of a few hundred rows) that serialisation was
 * ~40% of the transform's CPU (bench/README.md, bench:transform section). This one writes into one
 * reused byte buffer. Anything it does not write (doubles, maps of unknown shape, messages) throws,
 * and serializeCompact then falls back to the package's serialisation.
 * parquet-codec-thrift.test.ts holds the two to identical bytes.
 */

/** Thrift type ids → compact type ids (TCompactProtocol.TTypeToCType). */
const COMPACT_TYPE = [0, 0, 1, 3, 7, 0, 4, 0, 5, 0, 6, 8, 12, 11, 10, 9, 13];
const BOOL = 2;
const CT_BOOLEAN_TRUE = 1;
const CT_BOOLEAN_FALSE = 2;

const WRITE = Symbol.for('write');
const TWO_32 = 2 ** 32;

class CompactWriter {
  bytes = Buffer.allocUnsafe(1024);
  at = 0;
  private readonly lastFields: number[] = [];
  private lastFieldId = 0;
  private boolField: { type: number; id: number } | undefined;

  reset(): void {
    this.at = 0;
    this.lastFields.length = 0;
    this.lastFieldId = 0;
    this.boolField = undefined;
  }

  private room(n: number): void {
    if (this.at + n <= this.bytes.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.at + n));
    this.bytes.copy(grown, 0, 0, this.at);
    this.bytes = grown;
  }

  writeByte(b: number): void {
    this.room(1);
    this.bytes[this.at++] = b & 0xff;
  }

  private varint32(value: number): void {
    this.room(5);
    let n = value;
    for (;;) {
      if ((n & ~0x7f) === 0) {
        this.bytes[this.at++] = n & 0xff;
        return;
      }
      this.bytes[this.at++] = ((n & 0x7f) | 0x80) & 0xff;
      n >>>= 7;
    }
  }

  private varint64(hiIn: number, loIn: number): void {
    this.room(10);
    let hi = hiIn >>> 0;
    let lo = loIn >>> 0;
    for (;;) {
      if ((lo & ~0x7f) === 0 && hi === 0) {
        this.bytes[this.at++] = lo & 0xff;
        return;
      }
      this.bytes[this.at++] = ((lo & 0x7f) | 0x80) & 0xff;
      const mask = hi << 25;
      lo = (lo >>> 7) | mask;
      hi >>>= 7;
    }
  }

  writeStructBegin(): void {
    this.lastFields.push(this.lastFieldId);
    this.lastFieldId = 0;
  }

  writeStructEnd(): void {
    this.lastFieldId = this.lastFields.pop()!;
  }

  private fieldBegin(compactType: number, id: number): void {
    if (id > this.lastFieldId && id - this.lastFieldId <= 15)
      this.writeByte(((id - this.lastFieldId) << 4) | compactType);
    else {
      this.writeByte(compactType);
      this.writeI16(id);
    }
    this.lastFieldId = id;
  }

  writeFieldBegin(_name: string, type: number, id: number): void {
    if (type === BOOL) this.boolField = { type, id };
    else this.fieldBegin(COMPACT_TYPE[type], id);
  }

  writeFieldEnd(): void {}

  writeFieldStop(): void {
    this.writeByte(0);
  }

  private collectionBegin(elemType: number, size: number): void {
    if (size <= 14) this.writeByte((size << 4) | COMPACT_TYPE[elemType]);
    else {
      this.writeByte(0xf0 | COMPACT_TYPE[elemType]);
      this.varint32(size);
    }
  }

  writeListBegin(elemType: number, size: number): void {
    this.collectionBegin(elemType, size);
  }

  writeListEnd(): void {}

  writeSetBegin(elemType: number, size: number): void {
    this.collectionBegin(elemType, size);
  }

  writeSetEnd(): void {}

  writeMapBegin(keyType: number, valType: number, size: number): void {
    if (size === 0) this.writeByte(0);
    else {
      this.varint32(size);
      this.writeByte((COMPACT_TYPE[keyType] << 4) | COMPACT_TYPE[valType]);
    }
  }

  writeMapEnd(): void {}

  writeBool(value: boolean): void {
    const type = value ? CT_BOOLEAN_TRUE : CT_BOOLEAN_FALSE;
    if (this.boolField) {
      const { id } = this.boolField;
      this.boolField = undefined;
      this.fieldBegin(type, id);
    } else this.writeByte(type);
  }

  writeI16(value: number): void {
    this.writeI32(value);
  }

  writeI32(value: number): void {
    this.varint32((value << 1) ^ (value & 0x80000000 ? 0xffffffff : 0));
  }

  writeI64(value: unknown): void {
    // A safe integer as node-int64 holds it (two's complement, high and low words), without one:
    // its constructor calls the deprecated `new Buffer(8)`, whose deprecation check walks the stack
    // (node:buffer showFlaggedDeprecation: 2% of the transform worker at 10k changes/s).
    if (typeof value === 'number' && Number.isSafeInteger(value)) {
      const high = Math.floor(value / TWO_32);
      this.i64Words(high >>> 0, (value - high * TWO_32) >>> 0);
      return;
    }
    let v = value;
    if (typeof v === 'string') v = new Int64(parseInt(v, 10));
    else if (typeof v === 'number') v = new Int64(v);
    if (!(v instanceof Int64)) throw new Error(`Expected Int64 or Number, found: ${String(value)}`);
    // At 0, not the Int64's offset, as the package reads it (TCompactProtocol.i64ToZigzag).
    const buffer = (v as unknown as { buffer: Buffer }).buffer;
    this.i64Words(buffer.readUInt32BE(0), buffer.readUInt32BE(4));
  }

  /** The zigzag varint of the 64-bit two's complement `hi`:`lo` (unsigned 32-bit words). */
  private i64Words(hi: number, lo: number): void {
    const sign = hi >>> 31 ? 0xffffffff : 0;
    this.varint64(((hi << 1) | (lo >>> 31)) ^ sign, (lo << 1) ^ sign);
  }

  private stringOrBinary(arg: unknown, encoding: 'utf8' | 'latin1'): void {
    if (typeof arg === 'string') {
      const n = Buffer.byteLength(arg, encoding);
      this.varint32(n);
      this.room(n);
      this.at += this.bytes.write(arg, this.at, n, encoding);
    } else if (arg instanceof Uint8Array) {
      this.varint32(arg.length);
      this.room(arg.length);
      this.bytes.set(arg, this.at);
      this.at += arg.length;
    } else throw new Error(`called without a string/Buffer argument: ${String(arg)}`);
  }

  writeString(arg: unknown): void {
    this.stringOrBinary(arg, 'utf8');
  }

  writeBinary(arg: unknown): void {
    this.stringOrBinary(arg, 'latin1');
  }
}

const writer = new CompactWriter();

/**
 * A generated Thrift object's compact serialisation, as `@dsnp/parquetjs/dist/lib/util`
 * serializeThrift gives it; `fallback` (that function) for anything this writer does not write.
 */
export function serializeCompact(obj: object, fallback: (obj: never) => Buffer): Buffer {
  writer.reset();
  try {
    (obj as Record<symbol, (protocol: CompactWriter) => void>)[WRITE](writer);
  } catch {
    return fallback(obj as never);
  }
  const out = Buffer.allocUnsafe(writer.at);
  writer.bytes.copy(out, 0, 0, writer.at);
  return out;
}
