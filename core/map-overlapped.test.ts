import { mapOverlapped } from './map-overlapped';

/** A promise and the functions that settle it. */
function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

const turns = () => new Promise((r) => setImmediate(r));

describe('mapOverlapped', () => {
  it('starts items in order, at most inFlight at once, and returns results in the items’ order', async () => {
    const gates = [0, 1, 2, 3].map(() => deferred<string>());
    const started: number[] = [];
    const running = mapOverlapped([0, 1, 2, 3], 2, (item) => {
      started.push(item);
      return gates[item]!.promise;
    });
    await turns();
    expect(started).toEqual([0, 1]);
    gates[1]!.resolve('b'); // the second finishes first: the third starts, the first still runs
    await turns();
    expect(started).toEqual([0, 1, 2]);
    gates[0]!.resolve('a');
    await turns();
    expect(started).toEqual([0, 1, 2, 3]);
    gates[3]!.resolve('d');
    gates[2]!.resolve('c');
    await expect(running).resolves.toEqual(['a', 'b', 'c', 'd']);
  });

  it('after a failure starts nothing more, waits for the running ones, then throws the first failure in item order', async () => {
    const gates = [0, 1, 2, 3].map(() => deferred<string>());
    const started: number[] = [];
    let settled = false;
    const running = mapOverlapped([0, 1, 2, 3], 2, (item) => {
      started.push(item);
      return gates[item]!.promise;
    }).finally(() => (settled = true));
    await turns();
    gates[1]!.reject(new Error('second'));
    await turns();
    expect(started).toEqual([0, 1]); // no third start
    expect(settled).toBe(false); // the first still runs
    gates[0]!.reject(new Error('first'));
    await expect(running).rejects.toThrow('first');
  });

  it('runs one at a time with inFlight 1, handles no items, and refuses a bad inFlight', async () => {
    const order: string[] = [];
    await mapOverlapped([1, 2], 1, async (item) => {
      order.push(`start ${item}`);
      await turns();
      order.push(`end ${item}`);
    });
    expect(order).toEqual(['start 1', 'end 1', 'start 2', 'end 2']);
    await expect(mapOverlapped([], 2, async () => 1)).resolves.toEqual([]);
    await expect(mapOverlapped([1], 0, async () => 1)).rejects.toThrow(RangeError);
  });
});
