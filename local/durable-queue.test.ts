import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DurableQueue } from './durable-queue';

let dir: string;
let now: number;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-queue-'));
  now = 1_000_000;
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const queue = (overrides: Partial<ConstructorParameters<typeof DurableQueue>[0]> = {}) =>
  new DurableQueue({
    dir,
    deadLetterFile: path.join(dir, 'q.dead-letter.jsonl'),
    visibilityTimeoutMs: 1_000,
    maxReceiveCount: 3,
    now: () => now,
    ...overrides,
  });

describe('DurableQueue (SQS semantics on disk)', () => {
  it('hands a message out once per visibility timeout until it is deleted', async () => {
    const q = queue();
    await q.send('a');
    now += 1;
    await q.send('b');

    const first = await q.receive(10);
    expect(first.map((m) => [m.body, m.receiveCount])).toEqual([
      ['a', 1],
      ['b', 1],
    ]);
    expect(await q.receive(10)).toEqual([]);
    expect(await q.depth()).toEqual({ visible: 0, inFlight: 2, deadLetters: 0 });

    expect(await q.delete(first[0].receiptHandle)).toBe(true);
    now += 1_000;
    const again = await q.receive(10);
    expect(again.map((m) => [m.body, m.receiveCount])).toEqual([['b', 2]]);
    // A handle from the earlier receive no longer deletes it.
    expect(await q.delete(first[1].receiptHandle)).toBe(false);
    expect(await q.delete(again[0].receiptHandle)).toBe(true);
    expect(await q.depth()).toEqual({ visible: 0, inFlight: 0, deadLetters: 0 });
  });

  it('survives a new instance (another process, a restart): messages are files', async () => {
    await queue().send('kept');
    const [m] = await queue().receive(1);
    expect(m.body).toBe('kept');
  });

  it('moves a message received maxReceiveCount times to the dead-letter queue, and redrives it', async () => {
    const q = queue();
    await q.send('poison');
    for (let i = 0; i < 3; i++) {
      expect(await q.receive(1)).toHaveLength(1);
      now += 1_000;
    }

    expect(await q.receive(1)).toEqual([]);
    expect(q.movedToDeadLetters).toBe(1);
    const [dead] = await q.deadLetters();
    expect(dead).toMatchObject({ body: 'poison', receiveCount: 3, deadLetteredAt: now });

    await q.redrive(dead.id);
    expect(await q.deadLetters()).toEqual([]);
    expect((await q.receive(1)).map((m) => [m.body, m.receiveCount])).toEqual([['poison', 1]]);
    await q.send('x');
    expect(await q.receive(5)).toHaveLength(1);
  });

  it('drops dead letters on request and deletes messages past retention', async () => {
    const q = queue({ retentionMs: 10_000, maxReceiveCount: 1 });
    await q.send('old');
    await q.receive(1);
    now += 1_000;
    await q.receive(1);
    const [dead] = await q.deadLetters();
    await q.dropDeadLetter(dead.id);
    expect(await q.depth()).toEqual({ visible: 0, inFlight: 0, deadLetters: 0 });

    await q.send('expiring');
    now += 10_001;
    expect(await q.receive(1)).toEqual([]);
    expect(fs.readdirSync(q.messagesDir)).toEqual([]);
  });
});
