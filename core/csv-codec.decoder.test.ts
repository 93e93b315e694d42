import { ChangeSchema, type Change } from './change-event';
import { STAFF_COLUMNS } from './csv-codec.fixtures';
import { CsvDecodeError, decodeCsvObject, parseCsvRecords, schemaObjectFor } from './csv-codec';

/**
 * The decoder checks each change by hand and asks zod only when unsure (bench:transform). These
 * tests hold it to the old decoder — every field through ChangeSchema — on good and bad lines:
 * the same changes (same keys, same order: quarantine lines are their JSON), the same errors.
 */

const schema = schemaObjectFor({ schema: 'public', table: 'staff', columns: STAFF_COLUMNS });

/** The old per-record decoding of format 3, as it was. */
function reference(line: string): Change {
  const [row] = parseCsvRecords(line);
  if (row.length !== 8 + STAFF_COLUMNS.length) throw new Error(`has ${row.length} fields`);
  const [op, epoch, lsn, seq, ts, unchanged, count, ref] = row;
  for (const [name, value] of [
    ['epoch', epoch],
    ['seq', seq],
  ] as const)
    if (value === null || !/^\d+$/.test(value)) throw new Error(`${name} is not a non-negative integer`);
  if (count !== null && !/^\d+$/.test(count)) throw new Error('rows is not a non-negative integer');
  if (unchanged !== null && !/^\d+(;\d+)*$/.test(unchanged))
    throw new Error('unchanged is not a ;-separated list of column indices');
  const noValues = op === 'truncate' || op === 'snapshot_end';
  const change: Record<string, unknown> = {
    op,
    epoch: Number(epoch),
    lsn,
    seq: Number(seq),
    ts,
    values: noValues ? [] : row.slice(8),
  };
  if (unchanged !== null) change.unchanged = unchanged.split(';').map(Number);
  if (count !== null) change.rows = Number(count);
  if (ref !== null) {
    if (noValues) throw new Error(`a ${op} line cannot be a pointer`);
    change.ref = ref;
  }
  const parsed = ChangeSchema.safeParse(change);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`${issue.path.join('.')}: ${issue.message}`);
  }
  for (const index of parsed.data.unchanged ?? [])
    if (index >= STAFF_COLUMNS.length) throw new Error(`unchanged index ${index} out of range`);
  return parsed.data;
}

const TS = '2025-02-28T09:15:02.123456Z';
const LINES = [
  `insert,0,0/16B3748,0,${TS},,,,1,a,b,12.30,2025-02-28 09:15:02.123`,
  `update,1764600000000,0/16B3748,1,${TS},1;2,,,1,,,"",`,
  `delete,0,00000000/016B3748,2,${TS},,,,1,,,,`,
  `truncate,0,0/16B3748,3,${TS},,,,,,,,`,
  `snapshot_end,0,0/16B3748,4,${TS},,55,,,,,,`,
  `snapshot,0,0/16B3748,5,${TS},,,,1,"x,y","""q""",,`,
  `insert,0,0/16B3748,6,${TS},,,oversized/staff/k.json,1,,,,`,
  // Broken, one rule at a time.
  `upsert,0,0/16B3748,0,${TS},,,,1,a,b,c,d`,
  `,0,0/16B3748,0,${TS},,,,1,a,b,c,d`,
  `insert,-1,0/16B3748,0,${TS},,,,1,a,b,c,d`,
  `insert,99999999999999999999,0/16B3748,0,${TS},,,,1,a,b,c,d`,
  `insert,0,0/16B3748,99999999999999999999,${TS},,,,1,a,b,c,d`,
  `insert,0,16B3748,0,${TS},,,,1,a,b,c,d`,
  `insert,0,,0,${TS},,,,1,a,b,c,d`,
  `insert,0,0/16B3748,x,${TS},,,,1,a,b,c,d`,
  `insert,0,0/16B3748,0,2025-02-28,,,,1,a,b,c,d`,
  `insert,0,0/16B3748,0,,,,,1,a,b,c,d`,
  `update,0,0/16B3748,0,${TS},9,,,1,a,b,c,d`,
  `update,0,0/16B3748,0,${TS},1;;2,,,1,a,b,c,d`,
  `snapshot_end,0,0/16B3748,0,${TS},,-5,,,,,,`,
  `snapshot_end,0,0/16B3748,0,${TS},,99999999999999999999,,,,,,`,
  `truncate,0,0/16B3748,0,${TS},,,k,,,,,`,
  `insert,0,0/16B3748,0,${TS},,,"",1,a,b,c,d`,
];

function outcome(decode: () => Change): unknown {
  try {
    return { ok: JSON.stringify(decode()) };
  } catch (e) {
    return {
      error: (e instanceof CsvDecodeError ? e.reason : (e as Error).message).replace(/^has \d+.*/, 'width'),
    };
  }
}

describe('CsvObjectDecoder against the old per-field validation', () => {
  it.each(LINES.map((line, i) => [i, line]))('line %i: the same change or the same error', (_, line) => {
    const decoded = outcome(() => {
      const changes = decodeCsvObject(`${line}\n`, schema);
      expect(changes).toHaveLength(1);
      return changes[0];
    });
    expect(decoded).toEqual(outcome(() => reference(line)));
  });

  it('accepts the good lines, so the comparison is not only of errors', () => {
    expect(decodeCsvObject(`${LINES.slice(0, 7).join('\n')}\n`, schema)).toHaveLength(7);
  });
});
