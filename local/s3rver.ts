/* eslint-disable security/detect-non-literal-fs-filename -- the operator's --data-dir, and object paths from s3rver's own key mapping, kept inside the bucket (makePutsAtomic) */
import { ListObjectsV2Command, S3Client, type ListObjectsV2CommandOutput } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import S3rver from 's3rver';
import S3Bucket from 's3rver/lib/models/bucket';
import S3Error from 's3rver/lib/models/error';
import S3Object from 's3rver/lib/models/object';
import { silentLogger, type Logger } from '../core/logger';

/**
 * S3 served in-process by the `s3rver` npm package, with its buckets on disk under a data directory,
 * and its ObjectCreated notifications handed to subscribers in the shape S3 gives Lambda, so the
 * later stages are triggered locally exactly as in AWS.
 *
 * Notifications are NOT durable: s3rver emits them in memory while answering the PUT, so an object
 * written while nobody listens, or while the listener's process dies, never gets one. (S3's own
 * notifications are at-least-once and may arrive late, so consumers must cope with both anyway.)
 * A restarted pipeline catches up with `listObjectsSince`, then deduplicates by key.
 *
 * s3rver 3.7 writes an object's file in place, so a LIST or GET racing a PUT (or a `kill -9` in the
 * middle of one) sees a truncated object, which S3 never shows. `startS3rver` replaces its store's
 * write with write-to-temp-then-rename, so an object is either absent or complete (`kill -9` safe;
 * like the rest of the local stack, not power-loss safe: no fsync).
 *
 * s3rver 3.7 also ignores `If-None-Match: *` on PUT, which S3 honours (conditional writes: a PUT of
 * an existing key fails with 412 PreconditionFailed, and of two concurrent ones exactly one wins,
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html). The atomic write
 * honours it too: a conditional PUT hard-links its complete temporary file to the key, which fails
 * when the key exists — the check and the creation are one step, as in S3.
 *
 * The store also keeps an object's md5 and metadata in a journal per directory instead of two files
 * per object, and answers its lookups synchronously (makeStoreCheap): the stack's main thread
 * serves every stage's S3 requests.
 */

/** Where an object-created notification comes from, as S3 sends it to Lambda. */
export interface S3EventRecord {
  eventVersion: string;
  eventSource: 'aws:s3';
  awsRegion: string;
  eventTime: string;
  eventName: string;
  s3: {
    s3SchemaVersion: string;
    configurationId: string;
    bucket: { name: string; arn: string };
    /** `key` is URL-encoded, as in S3 (a space is `+`): decode it with `decodeS3ObjectKey` (processors/shared/s3-event.ts). */
    object: { key: string; size?: number; eTag?: string; sequencer: string };
  };
}

/** The event a Lambda S3 trigger receives. https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html */
export interface S3Event {
  Records: S3EventRecord[];
}

export type S3EventListener = (event: S3Event) => void | Promise<void>;

export interface LocalS3 {
  /** `http://127.0.0.1:<port>`, for `s3ClientFor`. */
  readonly endpoint: string;
  readonly port: number;
  /** Directory holding the buckets; an object `k` of bucket `b` is the file `b/k._S3rver_object`. */
  readonly dataDir: string;
  /**
   * Calls `listener` with an S3-shaped event for every object created (PUT, POST, COPY) from now
   * on. Listener failures are logged, never passed back to the writer. Returns an unsubscribe.
   */
  onObjectCreated(listener: S3EventListener): () => void;
  stop(): Promise<void>;
}

export interface LocalS3Options {
  /** Buckets and objects live here and survive restarts. */
  dataDir: string;
  /** Created on start if missing. */
  buckets: readonly string[];
  /** 0 (default) lets the OS pick a free port at bind time. */
  port?: number;
  logger?: Logger;
}

/** Base class of every error this module throws. */
export class LocalS3Error extends Error {
  override name = 'LocalS3Error';
}

export class LocalS3StartError extends LocalS3Error {
  override name = 'LocalS3StartError';
  constructor(
    readonly dataDir: string,
    options: { cause: unknown },
  ) {
    super(
      `s3rver could not start on ${dataDir}: ${(options.cause as Error)?.message ?? options.cause}`,
      options,
    );
  }
}

/** S3 URL-encodes keys in notifications, a space as `+` (as HTML forms do). */
export function encodeS3EventKey(key: string): string {
  return encodeURIComponent(key).replace(/%2F/g, '/').replace(/%20/g, '+');
}

/** s3rver's event, restated in S3's terms; undefined for removals. */
function toS3Event(raw: S3Event): S3Event | undefined {
  const records = raw.Records.filter((r) => r.eventName.startsWith('ObjectCreated:')).map(
    (r): S3EventRecord => ({
      eventVersion: '2.1',
      eventSource: 'aws:s3',
      awsRegion: r.awsRegion,
      eventTime: r.eventTime,
      eventName: r.eventName,
      s3: {
        s3SchemaVersion: '1.0',
        configurationId: 'local',
        bucket: { name: r.s3.bucket.name, arn: `arn:aws:s3:::${r.s3.bucket.name}` },
        object: { ...r.s3.object, key: encodeS3EventKey(r.s3.object.key) },
      },
    }),
  );
  return records.length ? { Records: records } : undefined;
}

/**
 * Set for the handling of a request the store must tell apart but cannot see (it sees no headers nor
 * methods): a PUT that carries `If-None-Match: *`, and a HEAD (which needs no content read).
 */
const requestKind = new AsyncLocalStorage<'put-if-absent' | 'head'>();

/** S3's answer to a conditional write whose key exists. */
function preconditionFailed(): Error {
  return new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', {
    Condition: 'If-None-Match',
  });
}

/** The metadata s3rver keeps of a PUT's headers: its allowed headers and x-amz-meta-*. */
function keptMetadata(metadata: Record<string, string>): Record<string, string> {
  const kept: Record<string, string> = {};
  for (const [name, value] of Object.entries(metadata))
    if (S3Object.ALLOWED_METADATA.includes(name) || name.startsWith('x-amz-meta-')) kept[name] = value;
  return kept;
}

/** Beside the objects of each directory of a bucket: their metadata, a line per PUT. */
const JOURNAL_FILE = '.totes-object-metadata.jsonl';

/** A journal line: an object file's md5 and kept metadata, and which file (inode, size, mtime) it describes. */
interface JournalEntry {
  /** The object's file name in its directory (`<last key segment>._S3rver_object`). */
  name: string;
  ino: number;
  size: number;
  mtimeMs: number;
  md5: string;
  metadata: Record<string, string>;
}

/**
 * An object's md5 and metadata, without a file of their own: s3rver keeps two beside each object
 * (`.md5`, `metadata.json`), and creating a file (an inode allocation) costs 0.02–1 ms of kernel
 * CPU on this machine's ext4, varying from minute to minute, twice per PUT, on the stack's main
 * thread (bench/README.md, "the local stack's files"). Here each directory of a bucket has one append-only journal of its objects' metadata: a
 * PUT appends a line (one write to an existing file). A line describes one version of the object's
 * file (its inode, size and mtime), so a line left behind by a later PUT that died between its
 * rename and its append, or a file replaced by other means, is never taken for the object's:
 * without a matching line the object's own metadata files are read (data directories written
 * before the journal; s3rver computes a missing md5). The last matching line wins. Directories are
 * read once and cached (the pipeline reads what it just wrote, in the same few directories); one
 * s3rver serves a data directory, so the cache sees every append.
 */
class MetadataJournals {
  /** Directory → its journal: each object file's last line, and how many lines the file has; least recently used first. */
  private readonly cache = new Map<string, { entries: Map<string, JournalEntry>; lines: number }>();
  constructor(private readonly maxDirectories = 64) {}

  append(dir: string, entry: JournalEntry): void {
    const file = path.join(dir, JOURNAL_FILE);
    const journal = this.journalOf(dir);
    // One write() with O_APPEND: a line is whole or absent after a kill -9.
    fs.appendFileSync(file, `${JSON.stringify(entry)}\n`);
    journal.entries.set(entry.name, entry);
    journal.lines += 1;
    // Keys written again and again would grow it without end: rewritten (temporary file, rename)
    // with one line per object once most of its lines are superseded.
    if (journal.lines > 2 * journal.entries.size + 1024) {
      const lines = [...journal.entries.values()].map((e) => `${JSON.stringify(e)}\n`);
      fs.writeFileSync(`${file}.compacting`, lines.join(''));
      fs.renameSync(`${file}.compacting`, file);
      journal.lines = lines.length;
    }
  }

  /** The line for this version of the file, if there is one. */
  lookup(dir: string, name: string, stat: fs.Stats): JournalEntry | undefined {
    const entry = this.journalOf(dir).entries.get(name);
    return entry && entry.ino === stat.ino && entry.size === stat.size && entry.mtimeMs === stat.mtimeMs
      ? entry
      : undefined;
  }

  forget(dir: string): void {
    this.cache.delete(dir);
  }

  private journalOf(dir: string): { entries: Map<string, JournalEntry>; lines: number } {
    let journal = this.cache.get(dir);
    if (journal) this.cache.delete(dir);
    else journal = this.read(dir);
    this.cache.set(dir, journal);
    if (this.cache.size > this.maxDirectories) this.cache.delete(this.cache.keys().next().value!);
    return journal;
  }

  private read(dir: string): { entries: Map<string, JournalEntry>; lines: number } {
    const entries = new Map<string, JournalEntry>();
    let text: string;
    try {
      text = fs.readFileSync(path.join(dir, JOURNAL_FILE), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { entries, lines: 0 };
      throw e;
    }
    let lines = 0;
    for (const line of text.split('\n')) {
      if (line === '') continue;
      lines += 1;
      try {
        const entry = JSON.parse(line) as JournalEntry;
        entries.set(entry.name, entry);
      } catch {
        // Not a line this module wrote whole (a disk's, not a process', failure): its object's own
        // files, or s3rver's computed md5, stand in.
      }
    }
    return { entries, lines };
  }
}

/**
 * Objects up to this size are read whole, synchronously, for a GET; larger ones are streamed
 * (bench:local-s3: 10 KiB objects cost 40% less CPU read whole, 100 KiB about the same, 1 MiB more).
 */
const READ_WHOLE_MAX_BYTES = 128 * 1024;
/** A PUT's body is written in writes of about this much (a socket hands it over in ~16–64 KiB chunks). */
const WRITE_BATCH_BYTES = 1024 * 1024;

/**
 * s3rver's FilesystemStore, made cheaper on the stack's main thread and safe against a `kill -9`,
 * with the same files for the objects themselves (`<bucket>/<key>._S3rver_object`, which
 * processors/load/outstanding-problems.ts and listings rely on):
 * - a PUT writes the object to a temporary file and renames it into place, so an object is either
 *   absent or complete; with `If-None-Match: *` it hard-links instead, which fails when the key
 *   exists — the check and the creation are one step, as in S3;
 * - its md5 and metadata go to the directory's journal (MetadataJournals) instead of two files;
 *   objects written before the journal keep being read from their `.md5` and `metadata.json`;
 * - the body is written with synchronous calls as the chunks come (one `write` per MiB), and a
 *   GET's content of up to 128 KiB read with one: s3rver's streams went through libuv's thread
 *   pool and back several times per request; a HEAD opens no content at all;
 * - its per-request lookups (the bucket's directory, its CORS and website configurations, an
 *   object's metadata) are synchronous too: each is a `stat`, or the read of a small file in the
 *   page cache, ~7 µs here, against 50–150 µs through the thread pool (bench/README.md, "10k/s: the
 *   local runtime, session 9"); a bucket configuration found absent is remembered until one is put.
 */
function makeStoreCheap(store: S3rver['store']): void {
  const journals = new MetadataJournals();
  const asyncMetadata = store.getMetadata.bind(store);
  const asyncSubresource = store.getSubresource.bind(store);
  const putSubresource = store.putSubresource.bind(store);
  const deleteSubresource = store.deleteSubresource.bind(store);
  const asyncGetObject = store.getObject.bind(store);
  const absentConfigurations = new Set<string>();

  const objectPathOf = (bucket: string, key: string) => {
    const objectPath = store.getResourcePath(bucket, key, 'object');
    // s3rver joins the key's segments onto the bucket's directory, so `..` in a key would leave it.
    if (path.relative(path.join(store.rootDirectory, bucket), objectPath).startsWith('..'))
      throw new Error(`object key ${JSON.stringify(key)} leaves its bucket's directory`);
    return objectPath;
  };
  const unlinkIfThere = (file: string) => {
    try {
      fs.unlinkSync(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  };

  /** An object's md5 and kept metadata, and its file's stat; ENOENT when there is no such object. */
  const describe = async (bucket: string, key: string) => {
    const objectPath = store.getResourcePath(bucket, key, 'object');
    const stat = fs.statSync(objectPath); // ENOENT for a missing object, as s3rver's own
    const entry = journals.lookup(path.dirname(objectPath), path.basename(objectPath), stat);
    if (entry) return { stat, md5: entry.md5, metadata: entry.metadata };
    // Written before the journal (or its line lost to a kill -9): the object's own metadata files.
    let md5: string;
    try {
      md5 = fs.readFileSync(`${objectPath}.md5`, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      // s3rver's own lookup computes the md5 (and keeps it in a `.md5` file).
      const {
        etag,
        'last-modified': _,
        'content-length': __,
        ...metadata
      } = await asyncMetadata(bucket, key);
      return { stat, md5: JSON.parse(String(etag)) as string, metadata: metadata as Record<string, string> };
    }
    let metadata: Record<string, string> = {};
    try {
      metadata = JSON.parse(
        fs.readFileSync(store.getResourcePath(bucket, key, 'metadata.json'), 'utf8'),
      ) as Record<string, string>;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    return { stat, md5, metadata };
  };

  store.getMetadata = async (bucket, key) => {
    const { stat, md5, metadata } = await describe(bucket, key);
    return {
      ...metadata,
      etag: JSON.stringify(md5),
      'last-modified': stat.mtime.toUTCString(),
      'content-length': stat.size,
    };
  };

  store.putObject = async (object) => {
    const objectPath = objectPathOf(object.bucket, object.key);
    const dir = path.dirname(objectPath);
    fs.mkdirSync(dir, { recursive: true });
    // Not ending in `._S3rver_object`, so listings never show it.
    const partial = `${objectPath}.partial-${randomBytes(6).toString('hex')}`;
    const md5 = createHash('md5');
    let size = 0;
    let stat: fs.Stats;
    const conditional = requestKind.getStore() === 'put-if-absent';
    try {
      const fd = fs.openSync(partial, 'wx');
      try {
        const source = Buffer.isBuffer(object.content) ? [object.content] : object.content;
        let batch: Buffer[] = [];
        let batchBytes = 0;
        const flush = () => {
          const bytes = batch.length === 1 ? batch[0] : Buffer.concat(batch, batchBytes);
          for (let written = 0; written < bytes.length;)
            written += fs.writeSync(fd, bytes, written, bytes.length - written);
          batch = [];
          batchBytes = 0;
        };
        for await (const chunk of source as AsyncIterable<Buffer>) {
          md5.update(chunk);
          size += chunk.length;
          batch.push(chunk);
          batchBytes += chunk.length;
          if (batchBytes >= WRITE_BATCH_BYTES) flush();
        }
        if (batchBytes > 0) flush();
        stat = fs.fstatSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      if (!conditional) {
        const replacing = fs.statSync(objectPath, { throwIfNoEntry: false }) !== undefined;
        // An earlier version's own metadata files go before the rename: should this PUT die between
        // its rename and its journal line, no `.md5` of the old content is left to describe the new
        // one (s3rver computes the md5 from the content instead). Dying before the rename leaves the
        // old content, described by its journal line or its computed md5.
        if (replacing) {
          unlinkIfThere(`${objectPath}.md5`);
          unlinkIfThere(store.getResourcePath(object.bucket, object.key, 'metadata.json'));
        }
        fs.renameSync(partial, objectPath);
      } else {
        try {
          fs.linkSync(partial, objectPath); // EEXIST when the key exists, atomically
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw preconditionFailed();
          throw e;
        }
        fs.unlinkSync(partial);
      }
    } catch (e) {
      unlinkIfThere(partial);
      throw e;
    }
    const digest = md5.digest('hex');
    journals.append(dir, {
      name: path.basename(objectPath),
      ino: stat.ino,
      size,
      mtimeMs: stat.mtimeMs,
      md5: digest,
      metadata: keptMetadata(object.metadata),
    });
    return { size, md5: digest };
  };

  // s3rver's copy duplicates the two metadata files, which journaled objects lack: a copy is a PUT
  // of the source's content and metadata (or of the request's, with REPLACE).
  store.copyObject = async (srcBucket, srcKey, destBucket, destKey, replacementMetadata) => {
    const source = await describe(srcBucket, srcKey);
    await store.putObject({
      bucket: destBucket,
      key: destKey,
      content: fs.readFileSync(objectPathOf(srcBucket, srcKey)),
      metadata: replacementMetadata ?? source.metadata,
    });
    return store.getMetadata(destBucket, destKey);
  };

  // As s3rver's: the object's files, then the directories that left empty (a journal alone is empty).
  store.deleteObject = async (bucket, key) => {
    const objectPath = objectPathOf(bucket, key);
    for (const file of [objectPath, `${objectPath}.md5`, store.getResourcePath(bucket, key, 'metadata.json')])
      unlinkIfThere(file);
    const parts = key.split('/').slice(0, -1);
    for (; parts.length > 0; parts.pop()) {
      const dir = path.join(store.getBucketPath(bucket), ...parts);
      const left = fs.readdirSync(dir);
      if (left.some((name) => name !== JOURNAL_FILE)) break;
      unlinkIfThere(path.join(dir, JOURNAL_FILE));
      journals.forget(dir);
      fs.rmdirSync(dir);
    }
  };

  store.getObject = async (bucket, key, options) => {
    let metadata: Awaited<ReturnType<typeof store.getMetadata>>;
    try {
      metadata = await store.getMetadata(bucket, key);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    const size = Number(metadata['content-length']);
    const ranged = options !== undefined && (options.start !== undefined || options.end !== undefined);
    const start = options?.start ?? 0;
    const end = Math.min(options?.end ?? Infinity, Math.max(0, size - 1));
    // Unsatisfiable ranges, and GETs of large objects: s3rver's own answer.
    if (start < 0 || end < start) return asyncGetObject(bucket, key, options);
    let content: Readable | Buffer;
    if (requestKind.getStore() === 'head') content = Readable.from([]);
    else if (end + 1 - start > READ_WHOLE_MAX_BYTES) return asyncGetObject(bucket, key, options);
    else {
      content = Buffer.allocUnsafe(size === 0 ? 0 : end + 1 - start);
      const fd = fs.openSync(store.getResourcePath(bucket, key, 'object'), 'r');
      let read = 0;
      try {
        while (read < content.length) {
          const n = fs.readSync(fd, content, read, content.length - read, start + read);
          if (n === 0) break;
          read += n;
        }
      } finally {
        fs.closeSync(fd);
      }
      // A shorter file than its metadata said: a PUT replaced it in between. s3rver's own answer
      // then, rather than the unread (uninitialised) rest of the buffer.
      if (read < content.length) return asyncGetObject(bucket, key, options);
    }
    const object = new S3Object(bucket, key, content, metadata);
    if (ranged) object.range = { start, end };
    return object;
  };

  store.getBucket = async (bucket) => {
    const stat = fs.statSync(store.getBucketPath(bucket), { throwIfNoEntry: false });
    return stat?.isDirectory() ? new S3Bucket(bucket, stat.birthtime) : null;
  };
  store.getSubresource = async (bucket, key, resourceType) => {
    const configuration = key === undefined ? `${bucket}\0${resourceType}` : undefined;
    if (configuration && absentConfigurations.has(configuration)) return null;
    const file = store.getResourcePath(bucket, key, `${resourceType}.xml`);
    if (!fs.statSync(file, { throwIfNoEntry: false })) {
      if (configuration) absentConfigurations.add(configuration);
      return null;
    }
    return asyncSubresource(bucket, key, resourceType);
  };
  store.putSubresource = async (bucket, key, resource) => {
    absentConfigurations.clear();
    return putSubresource(bucket, key, resource);
  };
  store.deleteSubresource = async (bucket, key, resourceType) => {
    absentConfigurations.clear();
    return deleteSubresource(bucket, key, resourceType);
  };
}

/**
 * s3rver's request log is on even when silent: koa-logger times and formats every request (chalk
 * colours, byte counts) and hands the line to a winston logger whose one transport drops it. Silent
 * as the stack runs it, the log middleware is left out and its controllers' log calls go nowhere.
 */
function dropRequestLog(server: S3rver): void {
  server.middleware = server.middleware.filter((m) => m.name !== 'logger');
  const ignore = () => undefined;
  server.context.logger = { info: ignore, warn: ignore, error: ignore, debug: ignore };
}

function closeLogger(server: S3rver): void {
  server.logger.exceptions.unhandle();
  server.logger.close();
}

export async function startS3rver(options: LocalS3Options): Promise<LocalS3> {
  const dataDir = path.resolve(options.dataDir);
  const logger = (options.logger ?? silentLogger).child({ component: 's3rver' });
  fs.mkdirSync(dataDir, { recursive: true });
  const server = new S3rver({
    silent: true,
    directory: dataDir,
    configureBuckets: options.buckets.map((name) => ({ name })),
  });
  makeStoreCheap(server.store);
  dropRequestLog(server);
  // Listening ourselves: s3rver's run() leaves a listen error (EADDRINUSE) unreported and hanging.
  const handle = server.callback();
  const http = createServer((req, res) => {
    // Only `*` is a condition S3 takes on a write.
    if (req.method === 'PUT' && req.headers['if-none-match']?.trim() === '*')
      requestKind.run('put-if-absent', () => handle(req, res));
    else if (req.method === 'HEAD') requestKind.run('head', () => handle(req, res));
    else handle(req, res);
  });
  try {
    await server.configureBuckets();
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(options.port ?? 0, '127.0.0.1', () => {
        http.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    closeLogger(server);
    throw new LocalS3StartError(dataDir, { cause: e });
  }
  const { port } = http.address() as AddressInfo;
  const listeners = new Set<S3EventListener>();
  server.on('event', (raw: S3Event) => {
    const event = toS3Event(raw);
    if (!event) return;
    for (const listener of listeners) {
      // After the response, as S3 does: a slow or failing subscriber never delays or fails the PUT.
      setImmediate(() => {
        Promise.resolve()
          .then(() => listener(event))
          .catch((err: unknown) =>
            logger.error('S3 event listener failed', { err, key: event.Records[0].s3.object.key }),
          );
      });
    }
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    dataDir,
    onObjectCreated(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async stop() {
      listeners.clear();
      const closed = new Promise<void>((resolve, reject) => http.close((e) => (e ? reject(e) : resolve())));
      // Idle keep-alive sockets of SDK clients would otherwise hold close() open until they time out.
      http.closeIdleConnections();
      await closed;
      closeLogger(server);
    },
  };
}

/**
 * A client for s3rver: path-style addressing (no bucket subdomains on 127.0.0.1), and checksums only
 * when an operation requires them, because s3rver does not understand the aws-chunked trailing
 * checksums the SDK sends by default since 2025. It checks no signatures beyond their shape.
 * https://docs.aws.amazon.com/sdkref/latest/guide/feature-dataintegrity.html
 */
export function s3ClientFor(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: new NodeHttpHandler(),
  });
}

export interface ListedObject {
  key: string;
  size: number;
  lastModified: Date;
}

/**
 * Objects modified at or after `since`, oldest first (then by key): the catch-up for notifications a
 * stopped pipeline missed. S3 (and s3rver) report LastModified to the second, so this includes the
 * whole second `since` falls in; callers deduplicate by key, as they must for S3 events anyway.
 */
export async function listObjectsSince(
  client: Pick<S3Client, 'send'>,
  bucket: string,
  since: Date,
  options: { prefix?: string } = {},
): Promise<ListedObject[]> {
  const floor = Math.floor(since.getTime() / 1000) * 1000;
  const out: ListedObject[] = [];
  let token: string | undefined;
  do {
    const page: ListObjectsV2CommandOutput = await client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: options.prefix, ContinuationToken: token }),
    );
    for (const o of page.Contents ?? []) {
      if (o.Key && o.LastModified && o.LastModified.getTime() >= floor)
        out.push({ key: o.Key, size: o.Size ?? 0, lastModified: o.LastModified });
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out.sort(
    (a, b) => a.lastModified.getTime() - b.lastModified.getTime() || a.key.localeCompare(b.key),
  );
}
