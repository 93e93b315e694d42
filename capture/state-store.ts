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
