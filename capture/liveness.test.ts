import { assessLiveness, silenceTimeoutFor } from './liveness';

const limits = { stallTimeoutMs: 60_000, silenceTimeoutMs: 180_000 };
const base = {
  now: 1_000_000,
  workPending: false,
  lastProgressAt: 1_000_000,
  lastServerMessageAt: 1_000_000,
  paused: false,
};

describe('assessLiveness', () => {
  it('is fine while work moves and the server talks', () => {
    expect(assessLiveness({ ...base, workPending: true, lastProgressAt: base.now - 59_000 }, limits)).toEqual(
      { ok: true },
    );
  });

  it('fails when work has been pending without progress past the stall timeout', () => {
    const verdict = assessLiveness({ ...base, workPending: true, lastProgressAt: base.now - 61_000 }, limits);
    expect(verdict).toEqual({
      ok: false,
      reason: expect.stringMatching(/^no progress for 61 s with changes pending/),
    });
  });

  it('does not call an idle capture stuck, however long it idles', () => {
    expect(assessLiveness({ ...base, lastProgressAt: 0 }, limits)).toEqual({ ok: true });
  });

  it('fails when the server has been silent past the limit while reading, not while paused', () => {
    const silent = { ...base, lastServerMessageAt: base.now - 181_000 };
    expect(assessLiveness(silent, limits)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/nothing heard/),
    });
    expect(assessLiveness({ ...silent, paused: true }, limits)).toEqual({ ok: true });
  });

  it('sets the silence limit well over wal_sender_timeout, with a floor, and none when disabled', () => {
    expect(silenceTimeoutFor(60_000)).toBe(180_000);
    expect(silenceTimeoutFor(1_000)).toBe(30_000);
    expect(silenceTimeoutFor(0)).toBe(Infinity);
  });
});
