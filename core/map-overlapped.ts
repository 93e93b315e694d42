/**
 * `fn` over `items`, started in order with at most `inFlight` running at once, results in the
 * items' order: what one item waits for (a request) overlaps the next item's work. A failure stops
 * new starts; once the ones running have settled, the first failure (in the items' order) is thrown,
 * so nothing is left running behind the caller's back.
 */
export async function mapOverlapped<T, R>(
  items: readonly T[],
  inFlight: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  if (!(Number.isInteger(inFlight) && inFlight >= 1)) throw new RangeError('inFlight must be an integer ≥ 1');
  const results = new Array<R>(items.length);
  const failures = new Map<number, unknown>();
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length && failures.size === 0) {
      const index = next++;
      try {
        results[index] = await fn(items[index]!, index);
      } catch (e) {
        failures.set(index, e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, items.length) }, lane));
  if (failures.size > 0) throw failures.get(Math.min(...failures.keys()));
  return results;
}
