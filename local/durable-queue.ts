import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { writeOver } from './write-over';

/**
 * The local stand-in for an SQS standard queue with a redrive policy: one JSON file per message
 * under `<dir>/messages/`, so messages survive a crash or `kill -9` of `totes up`, and another
 * process (`totes reconcile`) can send to it.
 *
 * The semantics the load stage relies on, as SQS has them
 * (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html,
 * https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html):
 * - a received message is invisible for the visibility timeout; unless deleted by then, it is
 *   received again (its receive count goes up);
 * - a message received more than `maxReceiveCount` times moves to the dead-letter queue
 *   (`<dir>/dead-letter/`) instead of being handed out again;
 * - a message older than the retention period is deleted.
 *
 * Dead letters are lines of one JSON-lines file (`deadLetterFile`, named `<queue>.dead-letter.jsonl`
 * like every local dead-letter file, which is where `totes verify` looks for them).
 *
 * One consumer process at a time (the local event source mapping); any number of senders. Every
 * message write is a new file renamed into place, or (a receive) one write() of at most a page
 * over a file of the same length, so a crash (`kill -9`) leaves each message whole.
 */

/** Reads of a message file another instance makes before it takes a parse failure for damage. */
const TORN_READ_ATTEMPTS = 5;

export const StoredMessageSchema = z.object({
  id: z.string().min(1),
  body: z.string(),
  sentAt: z.number(),
  receiveCount: z.number().int().min(0),
  /** Epoch ms before which it is not handed out (0: visible). */
  visibleAt: z.number(),
  /** Set in the dead-letter queue: why and when it moved there. */
  deadLetteredAt: z.number().optional(),
});
export type StoredMessage = z.infer<typeof StoredMessageSchema>;

export interface ReceivedMessage {
  messageId: string;
  /** Valid for this receive only: a later receive of the same message gets a new one. */
  receiptHandle: string;
  body: string;
  receiveCount: number;
  sentAt: number;
}

export interface DurableQueueOptions {
  /** Holds one file per message. */
  dir: string;
  /** The dead-letter queue: a JSON-lines file, one message per line. */
  deadLetterFile: string;
  visibilityTimeoutMs: number;
  /** Receives after which a message moves to the dead-letter queue (SQS's redrive policy). */
  maxReceiveCount: number;
  /** SQS keeps messages 4 days by default, 14 at most; locally 14. */
  retentionMs?: number;
  now?: () => number;
}

export interface QueueDepth {
  /** Visible now. */
  visible: number;
  /** Received and not yet deleted or visible again. */
  inFlight: number;
  deadLetters: number;
}

export const FOURTEEN_DAYS_MS = 14 * 24 * 3600_000;

export class DurableQueue {
  readonly messagesDir: string;
  /** Files of deleted messages, for later sends to write over (see `remove`). */
  readonly spareDir: string;
  readonly deadLetterFile: string;
  /** Messages this instance moved to the dead-letter queue. */
  movedToDeadLetters = 0;
  private readonly now: () => number;
  /**
   * What this instance knows of each message file: its message and its length on disk. Senders only
   * create new files, and the one consumer (see above) is the only writer of an existing one, so for
   * the consumer a message it sent, read or wrote need not be read again (the queue's own CPU grew
   * with its depth); for an instance that only sends, a file's content may have changed since.
   */
  private readonly known = new Map<string, { message: StoredMessage; length: number }>();
  /** Set once this instance receives: then it is the consumer, and `known` is the files' content. */
  private consumer = false;
  /** Names in `spareDir` this instance may take (another process may have taken one first). */
  private readonly spares: string[];

  constructor(private readonly o: DurableQueueOptions) {
    this.messagesDir = path.join(o.dir, 'messages');
    this.spareDir = path.join(o.dir, 'spare');
    this.deadLetterFile = o.deadLetterFile;
    this.now = o.now ?? Date.now;
    // eslint-disable-next-line security/detect-non-literal-fs-filename -- the queue's own directory, named by totes up
    fs.mkdirSync(this.messagesDir, { recursive: true });
    // eslint-disable-next-line security/detect-non-literal-fs-filename -- the same
    fs.mkdirSync(path.dirname(this.deadLetterFile), { recursive: true });
    // eslint-disable-next-line security/detect-non-literal-fs-filename -- the same
    fs.mkdirSync(this.spareDir, { recursive: true });
    // eslint-disable-next-line security/detect-non-literal-fs-filename -- the same
    this.spares = fs.readdirSync(this.spareDir);
  }

  /** Enqueues a message; resolves once it is on disk. */
  async send(body: string): Promise<string> {
    const sentAt = this.now();
    // Sortable by send time, unique across processes.
    const id = `${String(sentAt).padStart(15, '0')}-${randomBytes(6).toString('hex')}`;
    await this.write(this.messagesDir, { id, body, sentAt, receiveCount: 0, visibleAt: 0 });
    return id;
  }

  /**
   * Up to `max` visible messages, oldest first, each made invisible for the visibility timeout.
   * Messages past their receives go to the dead-letter queue; messages past retention are deleted.
   *
   * `held`: ids of messages the caller is still working on. They are never handed out again, and
   * their visibility is extended (SQS's ChangeMessageVisibility) before it runs out, so they count
   * as in flight and, should the caller die, come back one visibility timeout later.
   */
  async receive(max: number, held: ReadonlySet<string> = new Set()): Promise<ReceivedMessage[]> {
    this.becomeConsumer();
    const now = this.now();
    const out: ReceivedMessage[] = [];
    const ids = await this.ids(this.messagesDir);
    this.forgetAllBut(ids);
    // A file is read only when its message is not known yet (sent by another process, or before a
    // restart), and only when it decides something: not past the `max`th message handed out.
    for (const id of ids) {
      const isHeld = held.has(id);
      if (!isHeld && out.length >= max) break;
      const message = await this.read(this.messagesDir, id);
      if (!message) continue;
      if (isHeld) {
        if (message.visibleAt - now < this.o.visibilityTimeoutMs / 2)
          await this.write(this.messagesDir, { ...message, visibleAt: now + this.o.visibilityTimeoutMs });
        continue;
      }
      if (message.visibleAt > now) continue;
      if (now - message.sentAt > (this.o.retentionMs ?? FOURTEEN_DAYS_MS)) {
        await this.remove(this.messagesDir, message.id);
        continue;
      }
      if (message.receiveCount >= this.o.maxReceiveCount) {
        await this.moveToDeadLetters(message, now);
        continue;
      }
      const received = {
        ...message,
        receiveCount: message.receiveCount + 1,
        visibleAt: now + this.o.visibilityTimeoutMs,
      };
      await this.write(this.messagesDir, received);
      out.push({
        messageId: message.id,
        receiptHandle: `${message.id}#${received.receiveCount}`,
        body: message.body,
        receiveCount: received.receiveCount,
        sentAt: message.sentAt,
      });
    }
    return out;
  }

  /** Deletes a received message; a handle from an earlier receive of it deletes nothing. */
  async delete(receiptHandle: string): Promise<boolean> {
    const [id, count] = receiptHandle.split('#');
    this.becomeConsumer();
    const message = await this.read(this.messagesDir, id);
    if (!message || String(message.receiveCount) !== count) return false;
    await this.remove(this.messagesDir, id);
    return true;
  }

  async depth(): Promise<QueueDepth> {
    const now = this.now();
    const messages = await this.list(this.messagesDir);
    const inFlight = messages.filter((m) => m.visibleAt > now).length;
    return {
      visible: messages.length - inFlight,
      inFlight,
      deadLetters: (await this.deadLetters()).length,
    };
  }

  async deadLetters(): Promise<StoredMessage[]> {
    let text: string;
    try {
      // eslint-disable-next-line security/detect-non-literal-fs-filename -- the queue's own file
      text = await fs.promises.readFile(this.deadLetterFile, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    return text
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => StoredMessageSchema.parse(JSON.parse(line)));
  }

  /** Sends a dead letter's body again as a new message and removes the dead letter. */
  async redrive(deadLetterId: string): Promise<void> {
    const message = (await this.deadLetters()).find((m) => m.id === deadLetterId);
    if (!message) return;
    await this.send(message.body);
    await this.dropDeadLetter(deadLetterId);
  }

  /** Removes a dead letter without sending it again (the file is rewritten, then renamed over). */
  async dropDeadLetter(deadLetterId: string): Promise<void> {
    const kept = (await this.deadLetters()).filter((m) => m.id !== deadLetterId);
    const tmp = `${this.deadLetterFile}.${process.pid}.tmp`;
    // eslint-disable-next-line security/detect-non-literal-fs-filename -- beside the queue's own file
    await fs.promises.writeFile(tmp, kept.map((m) => `${JSON.stringify(m)}\n`).join(''));
    // eslint-disable-next-line security/detect-non-literal-fs-filename -- the same two files
    await fs.promises.rename(tmp, this.deadLetterFile);
  }

  private async moveToDeadLetters(message: StoredMessage, now: number): Promise<void> {
    const line = `${JSON.stringify({ ...message, visibleAt: 0, deadLetteredAt: now })}\n`;
    // eslint-disable-next-line security/detect-non-literal-fs-filename -- the queue's own file
    await fs.promises.appendFile(this.deadLetterFile, line);
    await this.remove(this.messagesDir, message.id);
    this.movedToDeadLetters += 1;
  }

  /** The ids of the messages in `dir`, oldest first. */
  private async ids(dir: string): Promise<string[]> {
    // eslint-disable-next-line security/detect-non-literal-fs-filename -- the queue's own directory
    const files = (await fs.promises.readdir(dir)).filter((f) => f.endsWith('.json')).sort();
    return files.map((file) => file.slice(0, -'.json'.length));
  }

  private async list(dir: string): Promise<StoredMessage[]> {
    const messages: StoredMessage[] = [];
    for (const id of await this.ids(dir)) {
      const message = await this.read(dir, id);
      if (message) messages.push(message);
    }
    return messages;
  }

  /** What an instance read before it consumed may have been rewritten by the consumer since. */
  private becomeConsumer(): void {
    if (this.consumer) return;
    this.known.clear();
    this.consumer = true;
  }

  /** Drops what is known of messages no longer in the queue (deleted by another process). */
  private forgetAllBut(ids: readonly string[]): void {
    if (this.known.size === 0) return;
    const present = new Set(ids);
    for (const id of this.known.keys()) if (!present.has(id)) this.known.delete(id);
  }

  // A message's file is a few hundred bytes: read, written and removed synchronously (~10 µs each
  // here, against 50–200 µs of CPU through libuv's thread pool, on the stack's main thread).
  private async read(dir: string, id: string): Promise<StoredMessage | undefined> {
    const known = this.consumer && dir === this.messagesDir ? this.known.get(id) : undefined;
    if (known) return known.message;
    // Another instance (`totes reconcile` reading the depth) can read a file while the consumer
    // rewrites it in place, and a read is not atomic against a write of the same page: old and new
    // bytes mixed (23 reads in 776,000 in a test of this on this machine). The rewrite is one
    // write() of one page, so the next read finds it whole; only the consumer's own reads see no
    // concurrent rewrite.
    for (let attempt = 1; ; attempt += 1) {
      let text: string;
      try {
        // eslint-disable-next-line security/detect-non-literal-fs-filename -- ids are the queue's own file names
        text = fs.readFileSync(path.join(dir, `${id}.json`), 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw e;
      }
      let message: StoredMessage;
      try {
        message = StoredMessageSchema.parse(JSON.parse(text));
      } catch (e) {
        if (this.consumer || attempt >= TORN_READ_ATTEMPTS) throw e;
        continue;
      }
      if (dir === this.messagesDir) this.known.set(id, { message, length: Buffer.byteLength(text) });
      return message;
    }
  }

  /**
   * A new message is written to a temporary file and renamed into place. A received one (its
   * receive count and visibility changed) is rewritten in its own file when the file is as long as
   * before and within one page: one write() of one page is whole or absent after a kill -9, and
   * rewriting creates no file: creating one (an inode allocation) costs 0.02–1 ms of kernel CPU on
   * this machine's ext4, varying from minute to minute (bench/README.md, "the local stack's
   * files"). Its numbers are padded (JSON allows spaces) so their rewrites keep its length.
   */
  private async write(dir: string, message: StoredMessage): Promise<void> {
    const file = path.join(dir, `${message.id}.json`);
    const text = serialize(message);
    const length = Buffer.byteLength(text);
    const known = dir === this.messagesDir ? this.known.get(message.id) : undefined;
    if (known && known.length === length && length <= PAGE_BYTES) {
      try {
        writeOver(file, text);
        this.known.set(message.id, { message, length });
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
    const tmp = path.join(dir, `.${message.id}.${process.pid}.tmp`);
    // eslint-disable-next-line security/detect-non-literal-fs-filename -- the queue's own directory and ids
    if (!this.writeOverSpare(tmp, text)) fs.writeFileSync(tmp, text);
    // eslint-disable-next-line security/detect-non-literal-fs-filename -- the same
    fs.renameSync(tmp, file);
    if (dir === this.messagesDir) this.known.set(message.id, { message, length });
  }

  /**
   * Takes a spare file as `tmp` and writes `text` over it; false when there is none left. Renames
   * are atomic, so of two processes taking one spare, one gets it and the other ENOENT; a spare
   * taken and not yet written is a temporary file, which no listing shows.
   */
  private writeOverSpare(tmp: string, text: string): boolean {
    for (let spare = this.spares.pop(); spare !== undefined; spare = this.spares.pop()) {
      try {
        // eslint-disable-next-line security/detect-non-literal-fs-filename -- the queue's own directories
        fs.renameSync(path.join(this.spareDir, spare), tmp);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw e;
      }
      writeOver(tmp, text, { truncate: true });
      return true;
    }
    return false;
  }

  /**
   * A deleted message's file becomes a spare (up to MAX_SPARES) instead of being unlinked, and a
   * later send writes over it instead of creating a file (see `write`): the files of a steady flow
   * of messages are neither allocated nor freed.
   */
  private async remove(dir: string, id: string): Promise<void> {
    const file = path.join(dir, `${id}.json`);
    try {
      if (dir === this.messagesDir && this.spares.length < MAX_SPARES) {
        const spare = randomBytes(6).toString('hex');
        // eslint-disable-next-line security/detect-non-literal-fs-filename -- the queue's own directories and ids
        fs.renameSync(file, path.join(this.spareDir, spare));
        this.spares.push(spare);
      }
      // eslint-disable-next-line security/detect-non-literal-fs-filename -- the queue's own directory and ids
      else fs.unlinkSync(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (dir === this.messagesDir) this.known.delete(id);
  }
}

/** Spare files a queue keeps: more than the messages a steady flow has deleted and not yet replaced. */
const MAX_SPARES = 256;

/** A page: the most a write() puts in a file whole, should the process be killed during it. */
const PAGE_BYTES = 4096;

/** A message file's JSON, its numbers padded to the widths they reach, so a rewrite keeps the length. */
function serialize(m: StoredMessage): string {
  const pad = (n: number, width: number) => String(n).padStart(width, ' ');
  return (
    `{"id":${JSON.stringify(m.id)},"body":${JSON.stringify(m.body)},"sentAt":${m.sentAt},` +
    `"receiveCount":${pad(m.receiveCount, 6)},"visibleAt":${pad(m.visibleAt, 15)}}`
  );
}
