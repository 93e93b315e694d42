import { BUSY_WINDOW_CHANGES, lingerAfter } from './linger';

describe('lingerAfter', () => {
  const settings = { lingerMs: 20, busyLingerMs: 100 };

  it('keeps the short linger after a quiet window, a lone change included', () => {
    expect(lingerAfter(0, settings)).toBe(20);
    expect(lingerAfter(1, settings)).toBe(20);
    expect(lingerAfter(BUSY_WINDOW_CHANGES - 1, settings)).toBe(20);
  });

  it('lingers longer after a busy window, and back once a window is quiet again', () => {
    expect(lingerAfter(BUSY_WINDOW_CHANGES, settings)).toBe(100);
    expect(lingerAfter(5_000, settings)).toBe(100);
    expect(lingerAfter(3, settings)).toBe(20);
  });

  it('never lingers less when busy than when quiet', () => {
    expect(lingerAfter(5_000, { lingerMs: 50, busyLingerMs: 10 })).toBe(50);
  });
});
