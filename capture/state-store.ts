/* eslint-disable security/detect-non-literal-fs-filename -- one file where the operator puts it (TOTES_STATE_FILE) and a temporary sibling */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

/**
 * What capture must remember beyond the slot itself: whether the initial snapshot for the current
 * slot finished. A slot that exists without this record belongs to a snapshot that was interrupted,
 * so capture drops it and starts again (delivering the snapshot twice is harmless; a gap is not).
 */
export const CaptureStateSchema = z.object({
  slot: z.string(),
  consistentPoint: z.string(),
  snapshotCompletedAt: z.string(),
  snapshotRows: z.number().int().nonnegative(),
});
export type CaptureState = z.infer<typeof CaptureStateSchema>;

export interface StateStore {
  load(): Promise<CaptureState | null>;
  save(state: CaptureState): Promise<void>;
  clear(): Promise<void>;
  /** Where the state lives, for logs. */
  readonly location: string;
}

/** A JSON file, replaced atomically (write, fsync, rename) so a crash leaves the old or the new. */
export class FileStateStore implements StateStore {
  constructor(readonly location: string) {}

  async load(): Promise<CaptureState | null> {
    let text: string;
    try {
      text = await fs.promises.readFile(this.location, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    return CaptureStateSchema.parse(JSON.parse(text));
  }

  async save(state: CaptureState): Promise<void> {
    await fs.promises.mkdir(path.dirname(this.location), { recursive: true });
    const tmp = `${this.location}.${process.pid}.tmp`;
    const handle = await fs.promises.open(tmp, 'w');
    try {
      await handle.writeFile(JSON.stringify(CaptureStateSchema.parse(state), null, 2));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.promises.rename(tmp, this.location);
  }

  async clear(): Promise<void> {
    await fs.promises.rm(this.location, { force: true });
  }
}

/** In memory: tests, and `totes capture --no-snapshot-state` style one-offs. */
export class MemoryStateStore implements StateStore {
  readonly location = 'memory';
  constructor(private state: CaptureState | null = null) {}
  async load(): Promise<CaptureState | null> {
    return this.state;
  }
  async save(state: CaptureState): Promise<void> {
    this.state = CaptureStateSchema.parse(state);
  }
  async clear(): Promise<void> {
    this.state = null;
  }
}

/** Minimal S3 surface the store needs (the SDK's S3Client satisfies it). */
export interface S3Like {
  send(command: unknown): Promise<unknown>;
}

/**
 * An object in S3: what capture uses on Fargate, whose disk does not outlive the task. A PutObject
 * replaces the whole object atomically, so readers see the old state or the new one.
 */
export class S3StateStore implements StateStore {
  readonly location: string;

  constructor(
    private readonly s3: S3Like,
    private readonly bucket: string,
    private readonly key: string,
    private readonly commands: {
      get: (input: { Bucket: string; Key: string }) => unknown;
      put: (input: { Bucket: string; Key: string; Body: string; ContentType: string }) => unknown;
      del: (input: { Bucket: string; Key: string }) => unknown;
    },
  ) {
    this.location = `s3://${bucket}/${key}`;
  }

  async load(): Promise<CaptureState | null> {
    try {
      const out = (await this.s3.send(this.commands.get({ Bucket: this.bucket, Key: this.key }))) as {
        Body?: { transformToString(): Promise<string> };
      };
      const text = await out.Body!.transformToString();
      return CaptureStateSchema.parse(JSON.parse(text));
    } catch (e) {
      if ((e as Error).name === 'NoSuchKey') return null;
      throw e;
    }
  }

  async save(state: CaptureState): Promise<void> {
    const body = JSON.stringify(CaptureStateSchema.parse(state), null, 2);
    await this.s3.send(
      this.commands.put({ Bucket: this.bucket, Key: this.key, Body: body, ContentType: 'application/json' }),
    );
  }

  async clear(): Promise<void> {
    await this.s3.send(this.commands.del({ Bucket: this.bucket, Key: this.key }));
  }
}
