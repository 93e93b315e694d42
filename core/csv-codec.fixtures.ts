import { addToLsn } from './lsn';
import { CHANGE_BATCH_VERSION, type Change, type ChangeBatch, type Column } from './change-event';

/**
 * Test data shared by the codec, transform, delivery-stream and replay tests: realistic change
 * batches and the values most likely to break a CSV round trip.
 */

/** Values that have broken CSV pipelines somewhere. Index 0 is NULL, index 1 the empty string. */
export const HOSTILE_VALUES: readonly (string | null)[] = [
  null,
  '',
  'plain',
  'comma, inside',
  'quote " inside',
  '"fully quoted"',
  '""',
  'line\nbreak',
  'windows\r\nline',
  'bare\rreturn',
  '\n',
  ' leading and trailing spaces ',
  '\ttab',
  'unicode: ünïcödé Ελληνικά 日本語',
  'emoji: 😀👩‍👩‍👧‍👦🏳️‍🌈',
  'NULL',
  '\\N',
  ';',
  ',,,',
  '12345678901234567890.123456789',
  '-0.00',
  '2025-02-28 09:15:02.123456',
  '2025-02-28 09:15:02.123456+00',
  '=SUM(A1:A2)',
  '\u00a0non-breaking\u00a0',
  '\uFEFFbom first',
];

export const STAFF_COLUMNS: Column[] = [
  { name: 'staff_id', type: 'int4', key: true },
  { name: 'first_name', type: 'text', key: false },
  { name: 'last_name', type: 'text', key: false },
  { name: 'salary', type: 'numeric', key: false },
  { name: 'last_updated', type: 'timestamp', key: false },
];

export interface ChangeSpec {
  op?: Change['op'];
  epoch?: number;
  lsn?: string;
  seq?: number;
  ts?: string;
  values: (string | null)[];
  unchanged?: number[];
  rows?: number;
  ref?: string;
}

export function changeFactory(spec: ChangeSpec): Change {
  const change: Change = {
    op: spec.op ?? 'insert',
    // Decoders state the epoch; fixtures do too, so a round trip compares equal.
    epoch: spec.epoch ?? 0,
    lsn: spec.lsn ?? '00000000/01000000',
    seq: spec.seq ?? 0,
    ts: spec.ts ?? '2025-02-28T09:15:02.123456Z',
    values: spec.values,
  };
  if (spec.unchanged?.length) change.unchanged = spec.unchanged;
  if (spec.rows !== undefined) change.rows = spec.rows;
  if (spec.ref !== undefined) change.ref = spec.ref;
  return change;
}

export interface BatchSpec {
  schema?: string;
  table?: string;
  columns?: Column[];
  changes: Change[];
}

export function changeBatchFactory(spec: BatchSpec): ChangeBatch {
  return {
    v: CHANGE_BATCH_VERSION,
    schema: spec.schema ?? 'public',
    table: spec.table ?? 'staff',
    columns: spec.columns ?? STAFF_COLUMNS,
    changes: spec.changes,
  };
}

/**
 * `count` staff inserts, one per transaction starting at `firstLsn`, each carrying a hostile value
 * in `first_name` (cycling through HOSTILE_VALUES) so every delivery test exercises the codec.
 */
export function staffBatch(options: {
  table?: string;
  columns?: Column[];
  firstId: number;
  count: number;
  firstLsn?: string;
}): ChangeBatch {
  const columns = options.columns ?? STAFF_COLUMNS;
  const base = options.firstLsn ?? '00000000/01000000';
  const changes = Array.from({ length: options.count }, (_, i) => {
    const id = options.firstId + i;
    const row: (string | null)[] = [
      String(id),
      HOSTILE_VALUES[id % HOSTILE_VALUES.length],
      `Last ${id}`,
      `${id}.50`,
      '2025-02-28 09:15:02.123456',
    ];
    for (let c = row.length; c < columns.length; c++) row.push(`extra ${c} of ${id}`);
    return changeFactory({
      lsn: addToLsn(base, BigInt(id) * 0x100n),
      seq: 0,
      ts: `2025-02-28T09:15:${String(id % 60).padStart(2, '0')}.123456Z`,
      values: row.slice(0, columns.length),
    });
  });
  return changeBatchFactory({ table: options.table, columns, changes });
}

/** Position identity of a change, for comparing what went in with what came out. */
export function identityOf(table: string, change: Pick<Change, 'lsn' | 'seq'>): string {
  return `${table}@${change.lsn}#${change.seq}`;
}
