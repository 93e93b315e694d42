import { lingerAfter } from './linger';

describe('lingerAfter', () => {
  const settings = { lingerMs: 20, busyLingerMs: 100 };
  const after = (changes: number, sinceLastFlushMs: number) =>
    lingerAfter({ changes, sinceLastFlushMs }, settings);

  it('keeps the short linger after a quiet window, a lone change and the first flush included', () => {
    expect(after(0, 5_000)).toBe(20);
    expect(after(1, 250)).toBe(20);
    expect(after(50_000, Infinity)).toBe(20);
  });

  it('lingers longer at 10,000 changes/s, and stays so while the rate holds', () => {
    // A transaction of 250 changes every 25 ms: one a window of 20 ms; then four a window of 100.
    expect(after(250, 25)).toBe(100);
    expect(after(1_000, 110)).toBe(100);
  });

  it('goes back to the short linger when the rate falls, whichever linger the window had', () => {
    // 2,000 changes/s: 50 every 25 ms, or 220 in 110 ms — the same rate, the same answer.
    expect(after(50, 25)).toBe(20);
    expect(after(220, 110)).toBe(20);
  });

  it('does not count one large transaction now and then as load: the next lone commit waits as before', () => {
    // 150 changes every half second (review, session 12); one of 5,000 after ten quiet seconds.
    expect(after(150, 500)).toBe(20);
    expect(after(5_000, 10_000)).toBe(20);
  });
});
