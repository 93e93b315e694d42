import {
  CHANGE_BATCH_VERSION,
  CHANGE_OPS,
  decodeChangeBatch,
  POINTER_BATCH_VERSION,
  type ChangeBatch,
} from '../../core/change-event';
import { isLsn } from '../../core/lsn';
import { inflateRecord, isGzip } from '../../core/record-compression';
import type { ScratchBuffer } from './scratch-buffer';

/**
 * decodeChangeBatch with a fast path. The zod schema (core/change-event.ts) validates every change
 * by walking it and copying it; on capture's records that was about half of the record
 * transformation's CPU beyond the bare JSON.parse (bench:transform). Here the parsed JSON is
 * checked by hand against the same rules and used as it is when it passes; anything the check is
 * not sure of — an unknown key (zod would strip it), a null where a field is optional, any rule
 * broken — goes to decodeChangeBatch, which then gives the result, or the error and its issues,
 * exactly as before. So the fast path only ever accepts what the schema accepts, unchanged.
 */

const BATCH_KEYS = new Set(['v', 'epoch', 'schema', 'table', 'columns', 'changes']);
const COLUMN_KEYS = new Set(['name', 'type', 'key']);
const CHANGE_KEYS = new Set(['op', 'epoch', 'lsn', 'seq', 'ts', 'values', 'rows', 'unchanged', 'ref']);
const OPS = new Set<string>(CHANGE_OPS);

const isObject = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x);
const isCount = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;
const isName = (x: unknown): x is string => typeof x === 'string' && x.length > 0;

function onlyKeys(o: Record<string, unknown>, allowed: ReadonlySet<string>): boolean {
  for (const key in o) if (!allowed.has(key)) return false;
  return true;
}

function isPlainChange(c: unknown, width: number, version: unknown): boolean {
  if (!isObject(c) || !onlyKeys(c, CHANGE_KEYS)) return false;
  const { op, values } = c;
  if (typeof op !== 'string' || !OPS.has(op)) return false;
  if (c.epoch !== undefined && !isCount(c.epoch)) return false;
  if (typeof c.lsn !== 'string' || !isLsn(c.lsn)) return false;
  if (!isCount(c.seq)) return false;
  if (typeof c.ts !== 'string' || c.ts.length < 20) return false;
  if (c.rows !== undefined && !isCount(c.rows)) return false;
  if (!Array.isArray(values)) return false;
  const noValues = op === 'truncate' || op === 'snapshot_end';
  if (values.length !== (noValues ? 0 : width)) return false;
  for (const v of values) if (v !== null && typeof v !== 'string') return false;
  if (c.unchanged !== undefined) {
    if (!Array.isArray(c.unchanged)) return false;
    for (const i of c.unchanged) if (!isCount(i) || i >= width) return false;
  }
  if (c.ref !== undefined && (!isName(c.ref) || version !== POINTER_BATCH_VERSION || noValues)) return false;
  return true;
}

/** True only when ChangeBatchSchema would accept `json` and return it unchanged (no key stripped). */
export function isPlainChangeBatch(json: unknown): json is ChangeBatch {
  if (!isObject(json) || !onlyKeys(json, BATCH_KEYS)) return false;
  const { v, columns, changes } = json;
  if (v !== CHANGE_BATCH_VERSION && v !== POINTER_BATCH_VERSION) return false;
  if (json.epoch !== undefined && !isCount(json.epoch)) return false;
  if (!isName(json.schema) || !isName(json.table)) return false;
  if (!Array.isArray(columns) || columns.length === 0) return false;
  for (const c of columns)
    if (
      !isObject(c) ||
      !onlyKeys(c, COLUMN_KEYS) ||
      !isName(c.name) ||
      !isName(c.type) ||
      typeof c.key !== 'boolean'
    )
      return false;
  if (!Array.isArray(changes) || changes.length === 0) return false;
  for (const c of changes) if (!isPlainChange(c, columns.length, v)) return false;
  return true;
}

/** What decodeChangeBatch returns or throws for the same bytes. */
export function decodeRecordData(record: Buffer): ChangeBatch {
  // Capture's records are gzip unless it was told otherwise (core/record-compression.ts); one that
  // does not inflate gets decodeChangeBatch's error for it.
  let data = record;
  if (isGzip(record))
    try {
      data = inflateRecord(record) as Buffer;
    } catch {
      return decodeChangeBatch(record);
    }
  let json: unknown;
  try {
    json = parseInPieces(data) ?? JSON.parse(data.toString('utf8'));
  } catch {
    return decodeChangeBatch(data); // throws its "not JSON" error
  }
  if (!isPlainChangeBatch(json)) return decodeChangeBatch(data);
  // As decodeChangeBatch does: each change carries its epoch from here on.
  if (json.epoch !== undefined) for (const change of json.changes) change.epoch ??= json.epoch;
  return json;
}

const CHANGES_OPEN = Buffer.from('"changes":[');
/** Where one change object ends and the next starts, as capture writes them. */
const BETWEEN_CHANGES = Buffer.from('},{"');
/** The pieces are about this big (at least, and under 1.5 × unless a change is bigger). */
const PIECE_BYTES = 64 * 1024;
/** Records up to this size are parsed whole (a string this big is an ordinary heap object). */
const WHOLE_BYTES = 96 * 1024;

/**
 * JSON.parse of a big record's text, without making that text one string: V8 keeps a string over
 * 128 KiB in a memory mapping of its own, which on the 2-core machine cost ~6 ns per byte to
 * allocate (page faults, mmap/munmap), as much as JSON.parse itself (bench:transform). Capture
 * writes a record as `{…,"changes":[` + its changes, comma-separated, + `]}`; this parses the text
 * before the changes with an empty array (`…"changes":[]}`) and the changes in pieces of
 * PIECE_BYTES or more (`[` + whole changes + `]`), cut at the comma of a `},{"`. Undefined — parse
 * the whole text instead — for a small record, one not of that shape, or when any part does not
 * parse or a piece holds no value.
 *
 * When every part parses, the result is JSON.parse's of the whole text, wherever the cuts fell:
 * `[` + p1 + `,` + p2 + … + `]` is a valid array of the values of the pieces when each `[pᵢ]` is a
 * non-empty one, and a valid value put in place of the empty array's in a valid text gives a valid
 * text that parses to the same members around it (a cut inside a string or a nested value leaves a
 * piece that does not parse). Each part is cut next to ASCII bytes (`[`, `}`, `,`, `{`, `]`), which
 * end any UTF-8 sequence, so its characters are those of its bytes in the whole text.
 */
function parseInPieces(data: Buffer): unknown {
  const n = data.length;
  if (n <= WHOLE_BYTES || data[n - 2] !== 0x5d || data[n - 1] !== 0x7d) return undefined; // `]}`
  const open = data.indexOf(CHANGES_OPEN);
  if (open < 0) return undefined;
  const start = open + CHANGES_OPEN.length;
  const end = n - 2;
  try {
    const head: unknown = JSON.parse(`${data.toString('utf8', 0, start)}]}`);
    if (!isObject(head) || !Array.isArray(head.changes) || head.changes.length !== 0) return undefined;
    const changes: unknown[] = [];
    for (let at = start; at < end;) {
      const between = end - at > WHOLE_BYTES ? data.indexOf(BETWEEN_CHANGES, at + PIECE_BYTES) : -1;
      const cut = between >= 0 && between < end ? between + 1 : end;
      const piece: unknown = JSON.parse(`[${data.toString('utf8', at, cut)}]`);
      if (!Array.isArray(piece) || piece.length === 0) return undefined;
      for (const change of piece) changes.push(change);
      at = cut + 1; // past the comma
    }
    head.changes = changes;
    return head;
  } catch {
    return undefined;
  }
}

/** Each base64 character's 6-bit value (standard alphabet only), -1 for anything else. */
const SEXTET = new Int8Array(128).fill(-1);
for (const [i, c] of [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'].entries())
  SEXTET[c.charCodeAt(0)] = i;

/**
 * Decodes strict, padded standard base64 (what Firehose sends), or returns undefined: exactly the
 * texts that Node's base64 encoding of the decoded bytes gives back. Node's decoder is lenient (it
 * skips whitespace and any character outside both alphabets, and reads the URL-safe `-` and `_`),
 * so the checks are: a length that is a multiple of 4; no `-` or `_`; `=` only as the 1–2 last
 * characters; no other character skipped (every skipped one shortens the output below
 * 3 × length / 4 − padding bytes); and zero bits below the last byte of a padded end, which the
 * decoder drops. Encoding the bytes again to compare, as this did before, cost ~1.5× the decoding
 * itself (~20% of the record transformation at 2,000-change records); indexOf is a native scan.
 * decode-record.test.ts holds it to that comparison. With `scratch`, the bytes are decoded into it
 * (valid until its next use), not into a new Buffer.
 */
export function decodeStrictBase64(data: string, scratch?: ScratchBuffer): Buffer | undefined {
  const n = data.length;
  if (n % 4 !== 0) return undefined;
  const padding = n === 0 ? 0 : data.charCodeAt(n - 1) !== 0x3d ? 0 : data.charCodeAt(n - 2) !== 0x3d ? 1 : 2;
  const equals = data.indexOf('=');
  if (equals !== -1 && equals < n - padding) return undefined;
  if (data.indexOf('-') !== -1 || data.indexOf('_') !== -1) return undefined;
  if (padding > 0) {
    const code = data.charCodeAt(n - padding - 1);
    const last = code < 128 ? SEXTET[code] : -1;
    if (last < 0 || (last & (padding === 1 ? 0x03 : 0x0f)) !== 0) return undefined;
  }
  const bytes = scratch ? scratch.decode(data, 'base64') : Buffer.from(data, 'base64');
  return bytes.length === (n / 4) * 3 - padding ? bytes : undefined;
}
