// s3rver ships no types; this is the part of its programmatic API the project uses
// (https://github.com/jamhall/s3rver#programmatically-running-s3rver).
declare module 's3rver' {
  import type { EventEmitter } from 'node:events';
  import type { RequestListener } from 'node:http';

  interface S3rverOptions {
    /** Suppresses its request log and Koa's error log. */
    silent?: boolean;
    /** Where buckets and objects live on disk. */
    directory?: string;
    configureBuckets?: { name: string; configs?: (string | Buffer)[] }[];
  }

  /** A Koa application; emits `event` with an S3-notification-shaped object after each write. */
  class S3rver extends EventEmitter {
    constructor(options?: S3rverOptions);
    /** Creates `configureBuckets` (its `run()` would also listen, but loses listen errors). */
    configureBuckets(): Promise<void>;
    /** The request handler, for an HTTP server of one's own. */
    callback(): RequestListener;
    /** Its winston logger; s3rver closes it when its own server closes. */
    logger: { close(): void; exceptions: { unhandle(): void } };
    /** Its filesystem store (lib/stores/filesystem.js); local/s3rver.ts makes its PUTs atomic. */
    store: FilesystemStore;
    /** Koa's middleware list (composed when `callback()` is called); the first is its request log. */
    middleware: ((...args: never[]) => unknown)[];
    /** Koa's prototype of each request's context; its `logger` is what controllers log to. */
    context: { logger: Record<'info' | 'warn' | 'error' | 'debug', (...args: unknown[]) => void> };
  }

  interface StoredObject {
    bucket: string;
    key: string;
    content: Buffer | NodeJS.ReadableStream;
    metadata: Record<string, string>;
  }

  interface FilesystemStore {
    /** The `directory` option: each bucket is a directory in it. */
    rootDirectory: string;
    getBucketPath(bucket: string): string;
    getResourcePath(bucket: string, key: string | undefined, resource: string): string;
    /** A bucket's model (lib/models/bucket.js), or null when there is no such directory. */
    getBucket(bucket: string): Promise<{ name: string; creationDate: Date } | null>;
    /** A configuration (cors, website, tagging) of a bucket or object, or null when it has none. */
    getSubresource(bucket: string, key: string | undefined, resourceType: string): Promise<unknown>;
    /** Rejects with ENOENT when the object does not exist. */
    getMetadata(bucket: string, key: string): Promise<Record<string, string | number>>;
    putMetadata(bucket: string, key: string, metadata: Record<string, string>, md5: string): Promise<void>;
    putObject(object: StoredObject): Promise<{ size: number; md5: string }>;
    /** The object's model with a content stream, or null when there is no such object. */
    getObject(
      bucket: string,
      key: string,
      options?: { start?: number; end?: number },
    ): Promise<import('s3rver/lib/models/object') | null>;
    /** The destination's metadata, as getMetadata gives it. */
    copyObject(
      srcBucket: string,
      srcKey: string,
      destBucket: string,
      destKey: string,
      replacementMetadata: Record<string, string> | null,
    ): Promise<Record<string, string | number>>;
    deleteObject(bucket: string, key: string): Promise<void>;
    putSubresource(bucket: string, key: string | undefined, resource: { type: string }): Promise<void>;
    deleteSubresource(bucket: string, key: string | undefined, resourceType: string): Promise<void>;
  }
  export = S3rver;
}

// s3rver's S3 error (lib/models/error.js): its status comes from the code, its detail becomes XML elements.
declare module 's3rver/lib/models/error' {
  class S3Error extends Error {
    constructor(code: string, message: string, detail?: Record<string, string>);
    readonly code: string;
    readonly status: number;
  }
  export = S3Error;
}

// s3rver's bucket model (lib/models/bucket.js), as its store's getBucket returns it.
declare module 's3rver/lib/models/bucket' {
  class S3Bucket {
    constructor(name: string, creationDate: Date);
    readonly name: string;
    readonly creationDate: Date;
  }
  export = S3Bucket;
}

// s3rver's object model (lib/models/object.js): the stored metadata headers it keeps.
declare module 's3rver/lib/models/object' {
  class S3Object {
    static readonly ALLOWED_METADATA: readonly string[];
    constructor(
      bucket: string,
      key: string,
      content: NodeJS.ReadableStream | Buffer | null,
      metadata: Record<string, string | number>,
    );
    /** Set for a ranged GET: the bytes it answers with. */
    range?: { start: number; end: number };
  }
  export = S3Object;
}
