/**
 * Postgres log sequence numbers. Text form `XXXXXXXX/XXXXXXXX` (two hex halves of a 64-bit WAL
 * position, https://www.postgresql.org/docs/current/datatype-pg-lsn.html); compared as bigints.
 */
export type Lsn = string;

const LSN_PATTERN = /^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/;

export function isLsn(text: string): boolean {
  return LSN_PATTERN.test(text);
}

export function lsnToBigInt(lsn: Lsn): bigint {
  if (!isLsn(lsn)) throw new Error(`not an LSN: ${JSON.stringify(lsn)}`);
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

export function bigIntToLsn(value: bigint): Lsn {
  if (value < 0n || value > 0xffffffffffffffffn) throw new Error(`LSN out of range: ${value}`);
  const hi = (value >> 32n).toString(16).toUpperCase().padStart(8, '0');
  const lo = (value & 0xffffffffn).toString(16).toUpperCase().padStart(8, '0');
  return `${hi}/${lo}`;
}

/** Canonical text (upper case, zero padded) so that equal positions compare equal as strings too. */
export function normaliseLsn(lsn: Lsn): Lsn {
  return bigIntToLsn(lsnToBigInt(lsn));
}

export function compareLsn(a: Lsn, b: Lsn): number {
  const x = lsnToBigInt(a);
  const y = lsnToBigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

export function maxLsn(a: Lsn, b: Lsn): Lsn {
  return compareLsn(a, b) >= 0 ? a : b;
}

export function addToLsn(lsn: Lsn, delta: bigint): Lsn {
  return bigIntToLsn(lsnToBigInt(lsn) + delta);
}

export const ZERO_LSN: Lsn = '00000000/00000000';
