import { lingerAfter } from './linger';

describe('lingerAfter', () => {
  const settings = { lingerMs: 20, busyLingerMs: 100 };
  const after = (changes: number, commits: number, durationMs: number) =>
    lingerAfter({ changes, commits, durationMs }, settings);

  it('keeps the short linger after a quiet window, a lone change included', () => {
    expect(after(0, 0, 0)).toBe(20);
    expect(after(1, 1, 20)).toBe(20);
  });

  it('lingers longer at 10,000 changes/s, and stays so while the rate holds', () => {
    // ~200 changes in four commits over a 20 ms window; then ~1,000 in twenty over 100 ms.
    expect(after(200, 4, 20)).toBe(100);
    expect(after(1_000, 20, 100)).toBe(100);
  });

  it('goes back to the short linger when the rate falls, whichever linger the window had', () => {
    // 2,000 changes/s: 40 in 20 ms, or 200 in 100 ms — the same rate, the same answer.
    expect(after(40, 2, 20)).toBe(20);
    expect(after(200, 10, 100)).toBe(20);
  });

  it('does not count one large transaction as load: the next lone commit waits as before', () => {
    expect(after(150, 1, 20)).toBe(20);
    expect(after(5_000, 1, 3)).toBe(20);
  });
});
