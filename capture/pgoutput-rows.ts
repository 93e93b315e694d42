import type { Pgoutput } from 'pg-logical-replication';

/**
 * pgoutput's row messages (Insert, Update, Delete), parsed straight into arrays of column text.
 *
 * pg-logical-replication parses every column of every row through a Buffer view and a TextDecoder
 * into an object keyed by column name, which capture then turned back into an array in column
 * order: measured in `npm run bench --cpu-profile`, that was a quarter of capture's CPU plus much
 * of its garbage. Here an ASCII value is a substring of the message read once as Latin-1 (others
 * are decoded as UTF-8) and the tuple is an array in the relation's column order, which is what a
 * change event carries. Everything else (Begin,
 * Commit, Relation, Type, Message, Truncate, Origin) is still parsed by the library.
 *
 * Protocol version 1 only (capture asks for it: no streamed transactions, so no xid before the
 * relation id). https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
 */

/**
 * Column values in the relation's order: the text Postgres sent, `null` for SQL NULL, `undefined`
 * for a value not sent (an unchanged TOASTed value, or a non-key column of a key-only tuple).
 */
export type TextTuple = (string | null | undefined)[];

export interface RowInsert {
  tag: 'insert';
  relation: Pgoutput.MessageRelation;
  new: TextTuple;
  /** JSON.stringify(new), when it was cheaper to write while parsing (no value needs escaping). */
  newJson?: string;
}

export interface RowUpdate {
  tag: 'update';
  relation: Pgoutput.MessageRelation;
  /** The old key ('K'), when the update changed it: key columns only, others `undefined`. */
  key: TextTuple | null;
  /** The old row ('O', REPLICA IDENTITY FULL). */
  old: TextTuple | null;
  new: TextTuple;
  newJson?: string;
}

export interface RowDelete {
  tag: 'delete';
  relation: Pgoutput.MessageRelation;
  key: TextTuple | null;
  old: TextTuple | null;
  /** JSON.stringify(old), as newJson. */
  oldJson?: string;
}

export type RowMessage = RowInsert | RowUpdate | RowDelete;

/** What capture's stream hands over: row messages parsed here, the rest as the library parses them. */
export type StreamMessage = Exclude<Pgoutput.Message, { tag: RowMessage['tag'] }> | RowMessage;

const INSERT = 0x49; // 'I'
const UPDATE = 0x55; // 'U'
const DELETE = 0x44; // 'D'
const KEY = 0x4b; // 'K'
const OLD = 0x4f; // 'O'
const NEW = 0x4e; // 'N'
const TEXT = 0x74; // 't'
const NULL = 0x6e; // 'n'
const UNCHANGED = 0x75; // 'u'

export class RowParseError extends Error {
  override readonly name = 'RowParseError';
}

/** True for the tags parseRowMessage handles. */
export function isRowMessage(buffer: Buffer): boolean {
  const tag = buffer[0];
  return tag === INSERT || tag === UPDATE || tag === DELETE;
}

/** Parses an Insert, Update or Delete message; `relations` are the Relation messages seen so far, by OID. */
export function parseRowMessage(
  buffer: Buffer,
  relations: ReadonlyMap<number, Pgoutput.MessageRelation>,
): RowMessage {
  const reader = new TupleReader(buffer);
  const tag = reader.byte();
  const relationOid = reader.uint32();
  const relation = relations.get(relationOid);
  if (!relation) throw new RowParseError(`row for relation ${relationOid} before its Relation message`);
  const width = relation.columns.length;
  const kind = reader.byte();
  switch (tag) {
    case INSERT:
      if (kind !== NEW) throw unexpected(kind, 'Insert');
      return { tag: 'insert', relation, new: reader.tuple(width, null), newJson: reader.json };
    case UPDATE: {
      let key: TextTuple | null = null;
      let old: TextTuple | null = null;
      if (kind === KEY) key = keyOnly(relation, reader.tuple(width, null));
      else if (kind === OLD) old = reader.tuple(width, null);
      else if (kind !== NEW) throw unexpected(kind, 'Update');
      if (kind !== NEW && reader.byte() !== NEW) throw new RowParseError('Update without its new tuple');
      // Under REPLICA IDENTITY FULL an unchanged TOASTed value is known from the old row.
      const tuple = reader.tuple(width, old);
      return { tag: 'update', relation, key, old, new: tuple, newJson: reader.json };
    }
    case DELETE: {
      if (kind === KEY)
        return { tag: 'delete', relation, key: keyOnly(relation, reader.tuple(width, null)), old: null };
      if (kind === OLD) {
        const old = reader.tuple(width, null);
        return { tag: 'delete', relation, key: null, old, oldJson: reader.json };
      }
      throw unexpected(kind, 'Delete');
    }
    default:
      throw new RowParseError(`not a row message: ${String.fromCharCode(tag)}`);
  }
}

function unexpected(kind: number, what: string): RowParseError {
  return new RowParseError(`unexpected tuple kind ${String.fromCharCode(kind)} in ${what}`);
}

/**
 * A key tuple carries every column, the non-key ones as nulls that mean "not sent": as
 * pg-logical-replication does, keep only the key columns (flag bit 1).
 */
function keyOnly(relation: Pgoutput.MessageRelation, tuple: TextTuple): TextTuple {
  const { columns } = relation;
  // A new array: the parsed one carries the JSON of all its values.
  return tuple.map((value, i) => ((columns[i].flags & 1) !== 1 || value === null ? undefined : value));
}

/**
 * Node's Buffer#latin1Slice and #utf8Slice: what `toString('latin1' | 'utf8', start, end)` call
 * after checking their arguments. Undocumented but part of Buffer since Node 0.x; the tests parse
 * real frames through them.
 */
type SliceableBuffer = Buffer & {
  latin1Slice(start: number, end: number): string;
  utf8Slice(start: number, end: number): string;
};

class TupleReader {
  private at = 0;
  private readonly buffer: SliceableBuffer;
  /**
   * The whole message as Latin-1, made once: an ASCII value is then a substring of it, which
   * costs a third of decoding each value on its own (bench, 12 columns of bench_order). Values
   * with any byte ≥ 0x80 are decoded as UTF-8 instead.
   */
  private latin1: string | null = null;
  /** JSON.stringify of the last tuple's values, when no value needed escaping. */
  json: string | undefined = undefined;

  constructor(buffer: Buffer) {
    this.buffer = buffer as SliceableBuffer;
  }

  byte(): number {
    this.need(1);
    return this.buffer[this.at++];
  }

  uint32(): number {
    this.need(4);
    const b = this.buffer;
    const at = this.at;
    this.at = at + 4;
    return ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
  }

  /** TupleData: Int16 column count, then per column its kind and, for text, Int32 length and bytes. */
  tuple(width: number, unchangedFrom: TextTuple | null): TextTuple {
    this.need(2);
    const count = this.buffer.readUInt16BE(this.at);
    this.at += 2;
    if (count !== width)
      throw new RowParseError(
        `tuple has ${count} columns, its relation ${width} (a Relation message was missed)`,
      );
    const values: TextTuple = new Array<string | null | undefined>(count);
    const { buffer } = this;
    // While every value is ASCII with nothing JSON escapes (", \, control characters), the values'
    // JSON is each one in quotes: written here, it saves the batcher a JSON.stringify per change.
    let plain = true;
    let json = '';
    for (let i = 0; i < count; i++) {
      const kind = this.byte();
      if (kind === TEXT) {
        const length = this.uint32();
        this.need(length);
        const start = this.at;
        const end = start + length;
        let ascii = true;
        for (let j = start; j < end; j++) {
          const c = buffer[j];
          if (c >= 0x80) {
            ascii = false;
            plain = false;
            break;
          }
          if (c < 0x20 || c === 0x22 || c === 0x5c) plain = false;
        }
        const value = ascii
          ? (this.latin1 ??= buffer.latin1Slice(0, buffer.length)).substring(start, end)
          : buffer.utf8Slice(start, end);
        values[i] = value;
        if (plain) json += i === 0 ? `"${value}"` : `,"${value}"`;
        this.at = end;
      } else if (kind === NULL) {
        values[i] = null;
        if (plain) json += i === 0 ? 'null' : ',null';
      } else if (kind === UNCHANGED) {
        values[i] = unchangedFrom ? unchangedFrom[i] : undefined;
        plain = false;
      } else {
        // 'b' (binary) is only sent when asked for with the binary option; capture never asks.
        throw new RowParseError(`unexpected column kind ${String.fromCharCode(kind)}`);
      }
    }
    this.json = plain ? `[${json}]` : undefined;
    return values;
  }

  private need(bytes: number): void {
    if (this.at + bytes > this.buffer.length) throw new RowParseError('pgoutput message ends early');
  }
}
