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
    getResourcePath(bucket: string, key: string, resource: string): string;
    putMetadata(bucket: string, key: string, metadata: Record<string, string>, md5: string): Promise<void>;
    putObject(object: StoredObject): Promise<{ size: number; md5: string }>;
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
