/** How far `pullAhead` may run ahead of its consumer. */
export interface AheadLimits<T> {
  /** Items pulled and not yet taken, at most (≥ 1). */
  items: number;
  /** Their `bytesOf`, at most: no further pull once this is reached (one item may pass it). */
  bytes: number;
  bytesOf: (item: T) => number;
}

/**
 * `source`'s items in order, pulled ahead of the consumer while it works on the one it took, up
 * to `limits` of items waiting: a producer whose every item costs CPU (a load part decoded,
 * checked, its COPY text built) works while the consumer waits on something else (the warehouse).
 * One pull at a time, in order. What the source throws reaches the consumer after every item
 * pulled before it, where it would have come. A consumer that stops early (`return`, a `break`)
 * stops the pulling: the pull in flight settles, then the source is closed — nothing is left
 * running behind it.
 */
export async function* pullAhead<T>(source: AsyncIterable<T>, limits: AheadLimits<T>): AsyncGenerator<T> {
  if (!(Number.isInteger(limits.items) && limits.items >= 1))
    throw new RangeError('limits.items must be an integer ≥ 1');
  const iterator = source[Symbol.asyncIterator]();
  const ready: { item: T; bytes: number }[] = [];
  let held = 0;
  let pulling: Promise<void> | null = null;
  let failure: { error: unknown } | null = null;
  let finished = false;
  let stopped = false;
  const pull = (): void => {
    if (pulling || stopped || finished || failure) return;
    // With nothing waiting the next item is pulled, whatever the limits: the consumer wants it.
    if (ready.length && (ready.length >= limits.items || held >= limits.bytes)) return;
    pulling = iterator
      .next()
      .then((result) => {
        if (result.done) finished = true;
        else {
          const bytes = limits.bytesOf(result.value);
          ready.push({ item: result.value, bytes });
          held += bytes;
        }
      })
      // The source's failure, or its item's size's: passed on in order, never left unhandled.
      .catch((error: unknown) => {
        failure = { error };
      });
    void pulling.then(() => {
      pulling = null;
      pull();
    });
  };
  try {
    for (;;) {
      const next = ready.shift();
      if (next) {
        held -= next.bytes;
        pull();
        yield next.item;
        continue;
      }
      if (failure) throw (failure as { error: unknown }).error;
      if (finished) return;
      pull();
      await pulling;
    }
  } finally {
    stopped = true;
    await pulling;
    if (!finished) await iterator.return?.();
  }
}
