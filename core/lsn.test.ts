import { addToLsn, bigIntToLsn, compareLsn, isLsn, lsnToBigInt, maxLsn, normaliseLsn, ZERO_LSN } from './lsn';

describe('lsn', () => {
  it('parses both halves as hex', () => {
    expect(lsnToBigInt('0/16B3748')).toBe(0x16b3748n);
    expect(lsnToBigInt('1/0')).toBe(1n << 32n);
    expect(lsnToBigInt('FFFFFFFF/FFFFFFFF')).toBe(0xffffffffffffffffn);
  });

  it('formats canonically and round-trips', () => {
    expect(bigIntToLsn(0x16b3748n)).toBe('00000000/016B3748');
    expect(normaliseLsn('a/1b')).toBe('0000000A/0000001B');
    expect(ZERO_LSN).toBe(bigIntToLsn(0n));
  });

  it('compares numerically, not as text', () => {
    expect(compareLsn('0/9', '0/10')).toBe(-1);
    expect(compareLsn('1/0', '0/FFFFFFFF')).toBe(1);
    expect(compareLsn('0/A', '00000000/0000000a')).toBe(0);
    expect(maxLsn('0/9', '0/10')).toBe('0/10');
    expect(maxLsn('0/11', '0/10')).toBe('0/11');
  });

  it('adds across the half boundary', () => {
    expect(addToLsn('0/FFFFFFFF', 1n)).toBe('00000001/00000000');
    expect(addToLsn('1/0', -1n)).toBe('00000000/FFFFFFFF');
  });

  it('rejects what is not an LSN', () => {
    expect(isLsn('0/0')).toBe(true);
    expect(isLsn('0-0')).toBe(false);
    expect(() => lsnToBigInt('nope')).toThrow('not an LSN');
    expect(() => bigIntToLsn(-1n)).toThrow('out of range');
    expect(() => bigIntToLsn(1n << 64n)).toThrow('out of range');
  });
});
