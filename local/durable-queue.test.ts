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

  it('keeps a receive on disk for a restart, and another instance sees it (a sender, or a depth reader)', async () => {
    const consumer = queue();
    const other = queue();
    await other.send('from another process');
    now += 1;
    const own = await consumer.send('own');
    const ownFile = path.join(consumer.messagesDir, `${own}.json`);
    const sentInode = fs.statSync(ownFile).ino;
    const received = await consumer.receive(10);
    // Rewritten in its own file: no new file (each costs an inode allocation).
    expect(fs.statSync(ownFile).ino).toBe(sentInode);
    expect(received.map((m) => m.body)).toEqual(['from another process', 'own']);
    expect(await other.depth()).toEqual({ visible: 0, inFlight: 2, deadLetters: 0 });
    // Each file still holds its whole message, with the receive in it.
    const files = fs.readdirSync(consumer.messagesDir).filter((f) => f.endsWith('.json'));
    expect(files).toHaveLength(2);
    for (const f of files)
      expect(JSON.parse(fs.readFileSync(path.join(consumer.messagesDir, f), 'utf8'))).toMatchObject({
        receiveCount: 1,
        visibleAt: now + 1_000,
      });
    const receivedAt = now;
    now += 1;
    await other.send('later');
    expect((await consumer.receive(10)).map((m) => m.body)).toEqual(['later']);
    // A restarted consumer: invisible until the timeout, then handed out again with its count.
    const restarted = queue();
    expect(await restarted.receive(10)).toEqual([]);
    now = receivedAt + 1_001;
    expect((await restarted.receive(10)).map((m) => [m.body, m.receiveCount])).toEqual([
      ['from another process', 2],
      ['own', 2],
      ['later', 2],
    ]);
    expect(await other.depth()).toEqual({ visible: 0, inFlight: 3, deadLetters: 0 });
  });

  it('reads a message again when another instance caught it half rewritten by the consumer', async () => {
    // Prepare: a received message, rewritten in place by the consumer; a depth reader (`totes
    // reconcile`) in another process reads its file while a rewrite is half done.
    const consumer = queue();
    const reader = queue();
    const id = await consumer.send('m');
    await consumer.receive(10);
    const file = path.join(consumer.messagesDir, `${id}.json`);
    const whole = fs.readFileSync(file, 'utf8');
    const readFile = fs.readFileSync;
    let torn = 0;
    const spy = jest.spyOn(fs, 'readFileSync').mockImplementation(((
      f: fs.PathOrFileDescriptor,
      o?: unknown,
    ) => {
      if (f === file && torn < 2) {
        torn += 1;
        return `${whole.slice(0, 40)}${' '.repeat(5)}${whole.slice(45, -3)}`; // old and new bytes mixed
      }
      return readFile(f, o as BufferEncoding);
    }) as typeof fs.readFileSync);
    try {
      // Act, Assess: the torn reads are read again, and the depth is right.
      expect(await reader.depth()).toEqual({ visible: 0, inFlight: 1, deadLetters: 0 });
      expect(torn).toBe(2);
    } finally {
      spy.mockRestore();
    }
  });

  it('reads the message files of earlier versions (compact JSON) and receives them as before', async () => {
    const q = queue();
    const messagesDir = q.messagesDir;
    const write = (id: string, message: object) =>
      fs.writeFileSync(path.join(messagesDir, `${id}.json`), JSON.stringify({ id, ...message }));
    write('000000000999000-aaaaaaaaaaaa', {
      body: 'waiting',
      sentAt: 999_000,
      receiveCount: 0,
      visibleAt: 0,
    });
    write('000000000999001-bbbbbbbbbbbb', {
      body: 'in flight',
      sentAt: 999_001,
      receiveCount: 2,
      visibleAt: now + 500,
    });
    const [first] = await q.receive(10);
    expect([first.body, first.receiveCount]).toEqual(['waiting', 1]);
    now += 500;
    const [second] = await q.receive(10);
    expect([second.body, second.receiveCount]).toEqual(['in flight', 3]);
    expect(await q.delete(first.receiptHandle)).toBe(true);
    expect(await queue().depth()).toEqual({ visible: 0, inFlight: 1, deadLetters: 0 });
  });

  it("writes a later message over a deleted one's file, and a spare taken by another process is no loss", async () => {
    const q = queue();
    const fileOf = (id: string) => path.join(q.messagesDir, `${id}.json`);
    const first = await q.send('a message whose file outlives it');
    const { ino } = fs.statSync(fileOf(first));
    const [received] = await q.receive(1);
    expect(await q.delete(received.receiptHandle)).toBe(true);
    expect(fs.readdirSync(q.messagesDir)).toEqual([]);
    const second = await q.send('short');
    expect(fs.statSync(fileOf(second)).ino).toBe(ino);
    expect(JSON.parse(fs.readFileSync(fileOf(second), 'utf8'))).toMatchObject({
      body: 'short',
      receiveCount: 0,
    });

    // Two instances list the same spare; the one that comes second creates a file.
    now += 1;
    const [again] = await q.receive(1);
    await q.delete(again.receiptHandle);
    const other = queue();
    await other.send('took the spare');
    now += 1;
    await q.send('found it gone');
    expect((await q.receive(10)).map((m) => m.body)).toEqual(['took the spare', 'found it gone']);
    expect(fs.readdirSync(q.spareDir)).toEqual([]);
  });
});
