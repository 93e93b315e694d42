import { arrayParameter } from './statement-batch';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { prepareValue } = require('pg/lib/utils') as { prepareValue: (value: unknown) => unknown };

describe('arrayParameter', () => {
  it("writes string elements exactly as node-postgres' arrayString does", () => {
    const strings = [
      'plain',
      '',
      'NULL',
      'null',
      'a,b',
      '{x}',
      'say "hi"',
      'back\\slash',
      '\\"',
      ' sp ',
      'é ✓',
      '2025-02-28',
      '1/1A',
    ];
    expect(arrayParameter(strings)).toBe(prepareValue(strings));
    expect(arrayParameter([])).toBe(prepareValue([]));
    expect(arrayParameter(['x', null, undefined])).toBe(prepareValue(['x', null, undefined]));
  });

  it('writes numbers and booleans unquoted, NULLs as NULL', () => {
    expect(arrayParameter([3, -1, 0, 2_147_483_647, 1.5, 1_764_600_000_000, null])).toBe(
      '{3,-1,0,2147483647,1.5,1764600000000,NULL}',
    );
    expect(arrayParameter([true, false, null])).toBe('{true,false,NULL}');
  });

  it('leaves any other array to node-postgres', () => {
    expect(arrayParameter([[1, 2]])).toBeUndefined();
    expect(arrayParameter([Buffer.from('x')])).toBeUndefined();
    expect(arrayParameter([new Date(0)])).toBeUndefined();
    expect(arrayParameter([{ a: 1 }])).toBeUndefined();
    expect(arrayParameter([1n])).toBeUndefined();
  });
});
