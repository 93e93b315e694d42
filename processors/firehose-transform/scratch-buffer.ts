/**
 * A byte buffer the record transformation reuses from record to record, for the bytes it only
 * passes through: a record's data decoded from base64, and its CSV before it is encoded to base64.
 * A new Buffer (and the flat string a whole record's CSV was) of a few hundred KB per record cost
 * more than the decoding itself on the 2-core machine: such allocations are fresh memory mappings
 * there, ~6 ns per byte in page faults and mmap/munmap (bench:transform). Grown, never shrunk: it
 * holds as much as the largest record of the container's life.
 *
 * What it hands out is valid until its next use: callers read it before the next record.
 */
export class ScratchBuffer {
  private bytes: Buffer;
  private length = 0;

  constructor(initialBytes = 64 * 1024) {
    this.bytes = Buffer.allocUnsafeSlow(initialBytes);
  }

  /** Room for `more` bytes after the current content, keeping it. */
  private reserve(more: number): void {
    const need = this.length + more;
    if (need <= this.bytes.length) return;
    const bigger = Buffer.allocUnsafeSlow(Math.max(need, this.bytes.length * 2));
    this.bytes.copy(bigger, 0, 0, this.length);
    this.bytes = bigger;
  }

  /** Empties it. */
  clear(): this {
    this.length = 0;
    return this;
  }

  /**
   * The bytes of `text` in `encoding` ('base64': decoded as Buffer.from(text, 'base64') decodes,
   * leniently), in place of the content: the same bytes Buffer.from gives.
   */
  decode(text: string, encoding: 'base64'): Buffer {
    this.length = 0;
    // Base64 decodes to at most 3 bytes per 4 characters (fewer when characters are skipped).
    this.reserve(Math.ceil(text.length / 4) * 3);
    this.length = this.bytes.write(text, 0, encoding);
    return this.bytes.subarray(0, this.length);
  }

  /** Appends the UTF-8 bytes of `text`, as Buffer.from(text, 'utf8') encodes it. */
  append(text: string): void {
    // A UTF-16 code unit is at most 3 bytes of UTF-8 (a surrogate pair: 4 for 2 units), so the
    // whole text fits and `write` never stops early.
    this.reserve(text.length * 3);
    this.length += this.bytes.write(text, this.length, 'utf8');
  }

  /** The content in base64. */
  toBase64(): string {
    return this.bytes.toString('base64', 0, this.length);
  }
}
