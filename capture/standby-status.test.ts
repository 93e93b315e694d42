import { encodeStandbyStatusUpdate, POSTGRES_EPOCH_MS } from './standby-status';

describe('encodeStandbyStatusUpdate', () => {
  it('writes the three positions exactly, the clock in µs since 2000-01-01 and the reply flag', () => {
    // 2026-12-02T00:00:00.123Z: 9,832 days and 123 ms after the Postgres epoch.
    const now = Date.UTC(2026, 11, 2, 0, 0, 0, 123);

    const message = encodeStandbyStatusUpdate('1A/0000BEEF', now, true);

    expect(message).toHaveLength(34);
    expect(message.toString('latin1', 0, 1)).toBe('r');
    for (const at of [1, 9, 17]) expect(message.readBigUInt64BE(at)).toBe(0x1a_0000_beefn);
    expect(message.readBigInt64BE(25)).toBe(9_832n * 86_400_000_000n + 123_000n);
    expect(message.readUInt8(33)).toBe(1);
  });

  it('counts from the Postgres epoch (not a week before it) and asks for no reply by default', () => {
    const message = encodeStandbyStatusUpdate('0/0', POSTGRES_EPOCH_MS + 1.5);

    expect(message.readBigInt64BE(25)).toBe(1_500n);
    expect(message.readUInt8(33)).toBe(0);
    expect(new Date(POSTGRES_EPOCH_MS).toISOString()).toBe('2000-01-01T00:00:00.000Z');
  });
});
