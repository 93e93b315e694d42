/* eslint-disable security/detect-non-literal-fs-filename -- the operator's --data-dir, and object paths from s3rver's own key mapping, kept inside the bucket (makePutsAtomic) */
import { ListObjectsV2Command, S3Client, type ListObjectsV2CommandOutput } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
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

/** Set for the handling of a PUT that carries `If-None-Match: *` (the store sees no headers). */
const onlyIfAbsent = new AsyncLocalStorage<boolean>();

/** S3's answer to a conditional write whose key exists. */
function preconditionFailed(): Error {
  return new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', {
    Condition: 'If-None-Match',
  });
}

/**
 * s3rver's `FilesystemStore.putObject`, made atomic and honouring `If-None-Match: *`; otherwise the
 * same files and md5 bookkeeping.
 */
function makePutsAtomic(store: S3rver['store']): void {
  store.putObject = async (object) => {
    const objectPath = store.getResourcePath(object.bucket, object.key, 'object');
    // s3rver joins the key's segments onto the bucket's directory, so `..` in a key would leave it.
    if (path.relative(path.join(store.rootDirectory, object.bucket), objectPath).startsWith('..'))
      throw new Error(`object key ${JSON.stringify(object.key)} leaves its bucket's directory`);
    fs.mkdirSync(path.dirname(objectPath), { recursive: true });
    // Not ending in `._S3rver_object`, so listings never show it.
    const partial = `${objectPath}.partial-${randomBytes(6).toString('hex')}`;
    const md5 = createHash('md5');
    let size = 0;
    const source = Buffer.isBuffer(object.content) ? Readable.from([object.content]) : object.content;
    const count = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        md5.update(chunk);
        size += chunk.length;
        callback(null, chunk);
      },
    });
    const conditional = onlyIfAbsent.getStore() === true;
    try {
      await pipeline(source, count, fs.createWriteStream(partial));
      if (!conditional) fs.renameSync(partial, objectPath);
      else {
        try {
          fs.linkSync(partial, objectPath); // EEXIST when the key exists, atomically
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw preconditionFailed();
          throw e;
        }
        fs.rmSync(partial, { force: true });
      }
    } catch (e) {
      fs.rmSync(partial, { force: true });
      throw e;
    }
    const digest = md5.digest('hex');
    await store.putMetadata(object.bucket, object.key, object.metadata, digest);
    return { size, md5: digest };
  };
}

/**
 * s3rver's per-request lookups, answered with synchronous calls: the bucket's directory (every
 * request), its CORS and website configurations (every request; absent here), and an object's
 * metadata (GET, HEAD; and its writing, PUT). Each is a `stat`, or the read or write of a file of a
 * few bytes in the page cache: ~7 µs of CPU here synchronously, 50–150 µs through libuv's thread
 * pool and back, several times per request, on the stack's main thread, which every stage's S3
 * requests wait on (bench/README.md, "10k/s: the local runtime, session 9"). Same files, same
 * answers: a missing bucket is null, a missing configuration null, a missing object's metadata
 * ENOENT; an object without its `.md5` file (written before the store kept one) goes to s3rver's
 * own lookup, which computes it.
 */
function makeLookupsSync(store: S3rver['store']): void {
  const asyncMetadata = store.getMetadata.bind(store);
  const asyncSubresource = store.getSubresource.bind(store);
  store.getBucket = async (bucket) => {
    const stat = fs.statSync(store.getBucketPath(bucket), { throwIfNoEntry: false });
    return stat?.isDirectory() ? new S3Bucket(bucket, stat.birthtime) : null;
  };
  store.getSubresource = async (bucket, key, resourceType) => {
    const file = store.getResourcePath(bucket, key, `${resourceType}.xml`);
    if (!fs.statSync(file, { throwIfNoEntry: false })) return null;
    return asyncSubresource(bucket, key, resourceType);
  };
  // As s3rver's own: the md5 file, then the metadata it keeps (its allowed headers and x-amz-meta-*).
  store.putMetadata = async (bucket, key, metadata, md5) => {
    const kept: Record<string, string> = {};
    for (const [name, value] of Object.entries(metadata))
      if (S3Object.ALLOWED_METADATA.includes(name) || name.startsWith('x-amz-meta-')) kept[name] = value;
    if (md5) fs.writeFileSync(store.getResourcePath(bucket, key, 'object.md5'), md5);
    fs.writeFileSync(store.getResourcePath(bucket, key, 'metadata.json'), JSON.stringify(kept, null, 2));
  };
  store.getMetadata = async (bucket, key) => {
    const objectPath = store.getResourcePath(bucket, key, 'object');
    const stat = fs.statSync(objectPath); // ENOENT for a missing object, as s3rver's own
    let md5: string;
    try {
      md5 = fs.readFileSync(`${objectPath}.md5`, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return asyncMetadata(bucket, key);
      throw e;
    }
    const metadataPath = store.getResourcePath(bucket, key, 'metadata.json');
    let stored: Record<string, string> | undefined;
    try {
      stored = JSON.parse(fs.readFileSync(metadataPath, 'utf8')) as Record<string, string>;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    return {
      ...stored,
      etag: JSON.stringify(md5),
      'last-modified': stat.mtime.toUTCString(),
      'content-length': stat.size,
    };
  };
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
  makePutsAtomic(server.store);
  makeLookupsSync(server.store);
  // Listening ourselves: s3rver's run() leaves a listen error (EADDRINUSE) unreported and hanging.
  const handle = server.callback();
  const http = createServer((req, res) => {
    // Only `*` is a condition S3 takes on a write.
    if (req.method === 'PUT' && req.headers['if-none-match']?.trim() === '*')
      onlyIfAbsent.run(true, () => handle(req, res));
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
