import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { silentLogger } from '../core/logger';
import { DurableQueue } from './durable-queue';
import { QueueEventSource, type LocalSqsEvent } from './queue-event-source';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-event-source-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

async function until(what: string, done: () => boolean, deadlineMs = 20_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe('QueueEventSource (the local SQS event source mapping)', () => {
  it('never hands a message out again while its invocation still runs, however long it takes', async () => {
    // AWS stops a function at its timeout, and the queue's visibility timeout is 6 × that, so a
    // message never comes back while its invocation runs. Locally the function has no timeout: a
    // load slower than the visibility timeout (18–52 s on a busy machine, against 30 s) was
    // handed out again and done twice, each again slowing the rest.
    let now = 1_000_000;
    const queue = new DurableQueue({
      dir,
      deadLetterFile: path.join(dir, 'q.dead-letter.jsonl'),
      visibilityTimeoutMs: 1_000,
      maxReceiveCount: 5,
      now: () => now,
    });
    let receives = 0;
    const receive = queue.receive.bind(queue);
    queue.receive = (...args) => {
      receives += 1;
      return receive(...args);
    };
    const invocations: LocalSqsEvent[] = [];
    let finish!: () => void;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    const source = new QueueEventSource({
      name: 'load',
      queue,
      handler: async (event) => {
        invocations.push(event);
        if (invocations.length === 1) await finished;
        return { batchItemFailures: [] };
      },
      batchSize: 10,
      maximumConcurrency: 2,
      pollIntervalMs: 1,
      logger: silentLogger,
    });
    await queue.send('slow object');
    source.start();
    try {
      await until('the first invocation', () => invocations.length === 1);
      // Long past the visibility timeout, and polled several times since.
      now += 10_000;
      const polled = receives;
      await until('three more polls', () => receives >= polled + 3);
      // It still counts as in flight for `totes status`.
      expect(await queue.depth()).toEqual({ visible: 0, inFlight: 1, deadLetters: 0 });
      finish();
      await until('the message deleted', () => source.stats.messagesDeleted === 1);
    } finally {
      finish();
      await source.stop();
    }
    expect(invocations).toHaveLength(1);
    expect(invocations[0].Records[0].attributes.ApproximateReceiveCount).toBe('1');
    expect(await queue.depth()).toEqual({ visible: 0, inFlight: 0, deadLetters: 0 });
  });
});
