/* eslint-disable security/detect-non-literal-fs-filename -- the checkpoint file under the operator's --data-dir */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

/**
 * The delivery stream's durable position: per shard, the sequence number of the last record that is
 * in S3 together with every record before it. A restart reads each shard AFTER that number, so
 * anything not yet durable is read again (at-least-once; redelivered records carry the same
 * identities, and their objects get new, unique names).
 *
 * And when the delivery stream first started (`firstStartedAt`): Firehose reads a Kinesis source
 * from LATEST as of its creation, so a shard it holds no position for is read from there — also
 * after a restart that came before anything was delivered (see DeliveryStream's `LATEST`).
 */
export const CHECKPOINT_FILE = 'checkpoint.json';

export const DeliveryCheckpointSchema = z.object({
  version: z.literal(1),
  streamName: z.string().min(1),
  deliveryStreamName: z.string().min(1),
  /** shardId → last durable sequence number. */
  shards: z.record(z.string(), z.string().regex(/^\d+$/)),
  /** When this delivery stream first ran; absent in files written before it was recorded. */
  firstStartedAt: z.iso.datetime().optional(),
  updatedAt: z.string(),
});
export type DeliveryCheckpoint = z.infer<typeof DeliveryCheckpointSchema>;

/** Base class of every error this module throws. */
export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

/** The directory holds the checkpoint of another stream: reading it would skip or repeat data. */
export class CheckpointMismatchError extends CheckpointError {
  override name = 'CheckpointMismatchError';
  constructor(
    readonly file: string,
    readonly expected: { streamName: string; deliveryStreamName: string },
    readonly found: { streamName: string; deliveryStreamName: string },
  ) {
    super(
      `${file} belongs to delivery stream ${found.deliveryStreamName} on ${found.streamName}, ` +
        `not ${expected.deliveryStreamName} on ${expected.streamName}`,
    );
  }
}

export class InvalidCheckpointError extends CheckpointError {
  override name = 'InvalidCheckpointError';
  constructor(
    readonly file: string,
    options: { cause: unknown },
  ) {
    super(`${file} is not a delivery-stream checkpoint`, options);
  }
}

/** What a checkpoint file holds; `exists` is false before the delivery stream's first start. */
export interface CheckpointState {
  exists: boolean;
  shards: Map<string, string>;
  firstStartedAt: Date | undefined;
}

export class CheckpointStore {
  readonly file: string;
  /** Kept from the file (or set by `begin`) and written with every save. */
  private firstStartedAt: Date | undefined;

  constructor(
    readonly directory: string,
    private readonly streamName: string,
    private readonly deliveryStreamName: string,
    private readonly now: () => number = Date.now,
  ) {
    this.file = path.join(directory, CHECKPOINT_FILE);
  }

  async load(): Promise<Map<string, string>> {
    return (await this.loadState()).shards;
  }

  /**
   * Records the first start, durably, if the file does not exist yet; returns the state either way.
   * Once this resolved, a shard without a position is read from this moment on, whatever happens next.
   */
  async begin(): Promise<CheckpointState> {
    const state = await this.loadState();
    if (state.exists) return state;
    this.firstStartedAt = new Date(this.now());
    await this.save(state.shards);
    return { exists: true, shards: state.shards, firstStartedAt: this.firstStartedAt };
  }

  async loadState(): Promise<CheckpointState> {
    let text: string;
    try {
      text = await fs.promises.readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT')
        return { exists: false, shards: new Map(), firstStartedAt: undefined };
      throw e;
    }
    let checkpoint: DeliveryCheckpoint;
    try {
      checkpoint = DeliveryCheckpointSchema.parse(JSON.parse(text));
    } catch (e) {
      throw new InvalidCheckpointError(this.file, { cause: e });
    }
    if (
      checkpoint.streamName !== this.streamName ||
      checkpoint.deliveryStreamName !== this.deliveryStreamName
    )
      throw new CheckpointMismatchError(
        this.file,
        { streamName: this.streamName, deliveryStreamName: this.deliveryStreamName },
        checkpoint,
      );
    this.firstStartedAt = checkpoint.firstStartedAt ? new Date(checkpoint.firstStartedAt) : undefined;
    return {
      exists: true,
      shards: new Map(Object.entries(checkpoint.shards)),
      firstStartedAt: this.firstStartedAt,
    };
  }

  /** Replaces the file atomically (write, fsync, rename): a crash leaves the old or the new. */
  async save(shards: ReadonlyMap<string, string>): Promise<void> {
    const checkpoint: DeliveryCheckpoint = {
      version: 1,
      streamName: this.streamName,
      deliveryStreamName: this.deliveryStreamName,
      shards: Object.fromEntries([...shards].sort(([a], [b]) => a.localeCompare(b))),
      ...(this.firstStartedAt ? { firstStartedAt: this.firstStartedAt.toISOString() } : {}),
      updatedAt: new Date(this.now()).toISOString(),
    };
    await fs.promises.mkdir(this.directory, { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    const handle = await fs.promises.open(tmp, 'w');
    try {
      await handle.writeFile(`${JSON.stringify(checkpoint, null, 2)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.promises.rename(tmp, this.file);
  }
}
