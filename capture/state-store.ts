/* eslint-disable security/detect-non-literal-fs-filename -- one file where the operator puts it (TOTES_STATE_FILE) and a temporary sibling */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

/**
 * What capture must remember beyond the slot itself: the capture generation (epoch) its changes
 * carry, which tables it has snapshotted, and whether the snapshot of the current slot finished.
 * Saved when the slot is created (snapshot not finished) and again when the snapshot finished.
 * Losing it loses nothing: a healthy slot is kept and a reconciling snapshot runs beside it under a
 * new epoch (capture-service.ts).
 */
export const CaptureStateSchema = z.object({
  slot: z.string(),
  consistentPoint: z.string(),
  /** Null while the slot's snapshot runs. */
  snapshotCompletedAt: z.string().nullable(),
  snapshotRows: z.number().int().nonnegative(),
  /** The capture generation; state written before epochs existed reads as 0. */
  epoch: z.number().int().nonnegative().default(0),
  /** Tables snapshotted (schema-less names); absent in state written before this was kept. */
  tables: z.array(z.string()).optional(),
  /** Set when the slot was lost while a snapshot ran: retention is too small to ever finish. */
  lostDuringSnapshot: z
    .object({ at: z.string(), maxSlotWalKeepSize: z.string().nullable(), snapshotSeconds: z.number() })
    .optional(),
});
export type CaptureState = z.infer<typeof CaptureStateSchema>;

/** `totes resync`: asks the running (or next) capture for a reconciling snapshot. */
export const ResyncRequestSchema = z.object({
  requestedAt: z.string(),
  /** Tables to snapshot again; empty = every captured table. */
  tables: z.array(z.string()),
});
export type ResyncRequest = z.infer<typeof ResyncRequestSchema>;

export interface StateStore {
  load(): Promise<CaptureState | null>;
  save(state: CaptureState): Promise<void>;
  clear(): Promise<void>;
  /** The pending resync request, kept beside the state (its own object: no lost updates). */
  loadResyncRequest(): Promise<ResyncRequest | null>;
  saveResyncRequest(request: ResyncRequest): Promise<void>;
  clearResyncRequest(): Promise<void>;
  /** Where the state lives, for logs. */
  readonly location: string;
}

/** JSON files, replaced atomically (write, fsync, rename) so a crash leaves the old or the new. */
export class FileStateStore implements StateStore {
  constructor(readonly location: string) {}

  private get requestLocation(): string {
    return `${this.location}.resync.json`;
  }

  private async read(file: string): Promise<unknown> {
    let text: string;
    try {
      text = await fs.promises.readFile(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    return JSON.parse(text);
  }

  private async write(file: string, value: unknown): Promise<void> {
    await fs.promises.mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    const handle = await fs.promises.open(tmp, 'w');
    try {
      await handle.writeFile(JSON.stringify(value, null, 2));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.promises.rename(tmp, file);
  }

  async load(): Promise<CaptureState | null> {
    const json = await this.read(this.location);
    return json === null ? null : CaptureStateSchema.parse(json);
  }

  async save(state: CaptureState): Promise<void> {
    await this.write(this.location, CaptureStateSchema.parse(state));
  }

  async clear(): Promise<void> {
    await fs.promises.rm(this.location, { force: true });
  }

  async loadResyncRequest(): Promise<ResyncRequest | null> {
    const json = await this.read(this.requestLocation);
    return json === null ? null : ResyncRequestSchema.parse(json);
  }

  async saveResyncRequest(request: ResyncRequest): Promise<void> {
    await this.write(this.requestLocation, ResyncRequestSchema.parse(request));
  }

  async clearResyncRequest(): Promise<void> {
    await fs.promises.rm(this.requestLocation, { force: true });
  }
}

/** In memory: tests, and `totes capture --no-snapshot-state` style one-offs. */
export class MemoryStateStore implements StateStore {
  readonly location = 'memory';
  private request: ResyncRequest | null = null;
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
  async loadResyncRequest(): Promise<ResyncRequest | null> {
    return this.request;
  }
  async saveResyncRequest(request: ResyncRequest): Promise<void> {
    this.request = ResyncRequestSchema.parse(request);
  }
  async clearResyncRequest(): Promise<void> {
    this.request = null;
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

  private async read(key: string): Promise<unknown> {
    try {
      const out = (await this.s3.send(this.commands.get({ Bucket: this.bucket, Key: key }))) as {
        Body?: { transformToString(): Promise<string> };
      };
      return JSON.parse(await out.Body!.transformToString());
    } catch (e) {
      if ((e as Error).name === 'NoSuchKey') return null;
      throw e;
    }
  }

  private async write(key: string, value: unknown): Promise<void> {
    const body = JSON.stringify(value, null, 2);
    await this.s3.send(
      this.commands.put({ Bucket: this.bucket, Key: key, Body: body, ContentType: 'application/json' }),
    );
  }

  async load(): Promise<CaptureState | null> {
    const json = await this.read(this.key);
    return json === null ? null : CaptureStateSchema.parse(json);
  }

  async save(state: CaptureState): Promise<void> {
    await this.write(this.key, CaptureStateSchema.parse(state));
  }

  async clear(): Promise<void> {
    await this.s3.send(this.commands.del({ Bucket: this.bucket, Key: this.key }));
  }

  async loadResyncRequest(): Promise<ResyncRequest | null> {
    const json = await this.read(`${this.key}.resync.json`);
    return json === null ? null : ResyncRequestSchema.parse(json);
  }

  async saveResyncRequest(request: ResyncRequest): Promise<void> {
    await this.write(`${this.key}.resync.json`, ResyncRequestSchema.parse(request));
  }

  async clearResyncRequest(): Promise<void> {
    await this.s3.send(this.commands.del({ Bucket: this.bucket, Key: `${this.key}.resync.json` }));
  }
}
