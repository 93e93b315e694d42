import { pullAhead } from './pull-ahead';

/** A source of `count` items whose pulls the test settles one by one; notes what happened. */
function heldSource(count: number, failAt?: number) {
  const events: string[] = [];
  const pending: (() => void)[] = [];
  async function* items() {
    try {
      for (let i = 0; i < count; i += 1) {
        events.push(`pull ${i}`);
        await new Promise<void>((resolve) => pending.push(resolve));
        if (i === failAt) throw new Error(`item ${i} failed`);
        yield i;
      }
    } finally {
      events.push('source closed');
    }
  }
  /** Settles the pull waiting, if any; lets the promises run. */
  const release = async () => {
    pending.shift()?.();
    for (let i = 0; i < 5; i += 1) await Promise.resolve();
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { items, events, release, waiting: () => pending.length };
}

const one = { bytes: Number.POSITIVE_INFINITY, bytesOf: () => 0 };

describe('pullAhead', () => {
  it('gives every item in order', async () => {
    async function* numbers() {
      for (let i = 0; i < 10; i += 1) yield i;
    }
    const seen: number[] = [];
    for await (const n of pullAhead(numbers(), { items: 3, ...one })) seen.push(n);
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('pulls while the consumer holds an item, up to `items` waiting, one pull at a time', async () => {
    const source = heldSource(10);
    const ahead = pullAhead(source.items(), { items: 3, ...one });
    const first = ahead.next();
    await source.release();
    expect(await first).toEqual({ value: 0, done: false });
    // The consumer works on item 0: the next ones are pulled meanwhile, one at a time.
    expect(source.waiting()).toBe(1);
    for (let i = 0; i < 5; i += 1) await source.release();
    // Items 1–3 wait; no fourth pull until one is taken.
    expect(source.events).toEqual(['pull 0', 'pull 1', 'pull 2', 'pull 3']);
    expect(await ahead.next()).toEqual({ value: 1, done: false });
    expect(source.events.at(-1)).toBe('pull 4');
    const stopped = ahead.return(undefined);
    await source.release();
    await stopped;
  });

  it('stops pulling at `bytes` waiting', async () => {
    const source = heldSource(10);
    const ahead = pullAhead(source.items(), { items: 100, bytes: 25, bytesOf: () => 10 });
    const first = ahead.next();
    for (let i = 0; i < 6; i += 1) await source.release();
    await first;
    // 10, 20 bytes: a third item may pass the limit; then no more.
    expect(source.events).toEqual(['pull 0', 'pull 1', 'pull 2', 'pull 3']);
    await ahead.return(undefined);
  });

  it("passes on the source's failure after the items pulled before it", async () => {
    const source = heldSource(10, 2);
    const ahead = pullAhead(source.items(), { items: 5, ...one });
    const first = ahead.next();
    for (let i = 0; i < 4; i += 1) await source.release();
    expect(await first).toEqual({ value: 0, done: false });
    expect(await ahead.next()).toEqual({ value: 1, done: false });
    await expect(ahead.next()).rejects.toThrow('item 2 failed');
    expect(source.events).toEqual(['pull 0', 'pull 1', 'pull 2', 'source closed']);
  });

  it('a consumer that stops early stops the pulling and closes the source once its pull settled', async () => {
    const source = heldSource(10);
    const ahead = pullAhead(source.items(), { items: 3, ...one });
    const first = ahead.next();
    await source.release();
    await first;
    // Item 1 is being pulled when the consumer stops.
    const stopped = ahead.return(undefined);
    await source.release();
    await stopped;
    expect(source.events).toEqual(['pull 0', 'pull 1', 'source closed']);
    expect(source.waiting()).toBe(0);
  });

  it('pulls one at a time when `bytes` allows none ahead', async () => {
    async function* numbers() {
      for (let i = 0; i < 3; i += 1) yield i;
    }
    const seen: number[] = [];
    for await (const n of pullAhead(numbers(), { items: 3, bytes: 0, bytesOf: () => 1 })) seen.push(n);
    expect(seen).toEqual([0, 1, 2]);
  });

  it("passes on what `bytesOf` throws as the source's failure, and closes the source", async () => {
    const unhandled: unknown[] = [];
    const note = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', note);
    try {
      const source = heldSource(10);
      const ahead = pullAhead(source.items(), {
        items: 3,
        bytes: 100,
        bytesOf: (n) => {
          if (n === 1) throw new Error('no size');
          return 1;
        },
      });
      const first = ahead.next();
      for (let i = 0; i < 3; i += 1) await source.release();
      expect(await first).toEqual({ value: 0, done: false });
      await expect(ahead.next()).rejects.toThrow('no size');
      await new Promise((resolve) => setImmediate(resolve));
      expect(source.events).toEqual(['pull 0', 'pull 1', 'source closed']);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', note);
    }
  });

  it('refuses a limit of no items', async () => {
    async function* none() {}
    await expect(pullAhead(none(), { items: 0, ...one }).next()).rejects.toThrow(RangeError);
  });
});
