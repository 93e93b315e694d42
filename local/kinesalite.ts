import {
  CreateStreamCommand,
  DescribeStreamSummaryCommand,
  KinesisClient,
  type StreamStatus,
} from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import kinesalite from 'kinesalite';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';

/** Kinesis served in-process by the `kinesalite` npm package. */
export interface LocalKinesis {
  /** `http://127.0.0.1:<port>`, for `kinesisClientFor`. */
  readonly endpoint: string;
  readonly port: number;
  /** Closes the LevelDB store (flushing it to `dataDir`) and the HTTP server. */
  stop(): Promise<void>;
}

export interface LocalKinesisOptions {
  /** LevelDB directory that keeps streams and records across restarts; in memory when omitted. */
  dataDir?: string;
  /** 0 (default) lets the OS pick a free port at bind time, which cannot race another process. */
  port?: number;
  /**
   * How long a new stream stays CREATING (kinesalite defaults to 500 ms to mimic AWS). 0 keeps
   * tests fast; `ensureStream` polls for ACTIVE either way, so code written here also works in AWS.
   */
  createStreamMs?: number;
}

/** Base class of every error this module throws. */
export class LocalKinesisError extends Error {
  override name = 'LocalKinesisError';
}

export class StreamNotActiveError extends LocalKinesisError {
  override name = 'StreamNotActiveError';
  constructor(
    readonly streamName: string,
    readonly lastStatus: StreamStatus | undefined,
    readonly timeoutMs: number,
  ) {
    super(
      `stream ${streamName} is not ACTIVE after ${timeoutMs} ms (last status: ${lastStatus ?? 'unknown'})`,
    );
  }
}

export async function startKinesalite(options: LocalKinesisOptions = {}): Promise<LocalKinesis> {
  // leveldown creates the store directory but not its parents.
  // eslint-disable-next-line security/detect-non-literal-fs-filename -- the operator's --data-dir
  if (options.dataDir !== undefined) fs.mkdirSync(options.dataDir, { recursive: true });
  const stateMs = options.createStreamMs ?? 0;
  const server = kinesalite({
    path: options.dataDir,
    createStreamMs: stateMs,
    deleteStreamMs: stateMs,
    updateStreamMs: stateMs,
  });
  const close = () =>
    new Promise<void>((resolve, reject) => server.close((e) => (e ? reject(e) : resolve())));
  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => {
      // The store opened with the server: close it so the data directory's LOCK is released.
      // Closing a server that never listened reports ERR_SERVER_NOT_RUNNING after the store closed.
      void close()
        .catch(() => undefined)
        .then(() => reject(e));
    };
    server.once('error', onError);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', onError);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return { endpoint: `http://127.0.0.1:${port}`, port, stop: close };
}

/**
 * A client for kinesalite: it speaks HTTP/1.1 only, so the SDK must not negotiate HTTP/2, and it
 * checks no signatures, so any credentials do.
 */
export function kinesisClientFor(endpoint: string): KinesisClient {
  return new KinesisClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    requestHandler: new NodeHttpHandler(),
  });
}

export interface EnsureStreamOptions {
  timeoutMs?: number;
  pollIntervalMs?: number;
}

/**
 * Creates the stream unless it exists, then waits until it is ACTIVE (PutRecords fails with
 * ResourceNotFoundException while it is CREATING).
 * https://docs.aws.amazon.com/kinesis/latest/APIReference/API_CreateStream.html
 * Resolves to the stream's open shard count, which an existing stream keeps whatever `shardCount` says.
 */
export async function ensureStream(
  client: Pick<KinesisClient, 'send'>,
  streamName: string,
  shardCount: number,
  options: EnsureStreamOptions = {},
): Promise<{ created: boolean; openShardCount: number }> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const pollIntervalMs = options.pollIntervalMs ?? 20;
  const describe = async () => {
    try {
      return (await client.send(new DescribeStreamSummaryCommand({ StreamName: streamName })))
        .StreamDescriptionSummary;
    } catch (e) {
      if ((e as Error).name === 'ResourceNotFoundException') return undefined;
      throw e;
    }
  };
  let created = false;
  if ((await describe()) === undefined) {
    try {
      await client.send(new CreateStreamCommand({ StreamName: streamName, ShardCount: shardCount }));
      created = true;
    } catch (e) {
      // Another process created it between our describe and create: fine, wait for it below.
      if ((e as Error).name !== 'ResourceInUseException') throw e;
    }
  }
  const deadline = Date.now() + timeoutMs;
  let lastStatus: StreamStatus | undefined;
  for (;;) {
    const summary = await describe();
    lastStatus = summary?.StreamStatus;
    if (summary !== undefined && lastStatus === 'ACTIVE')
      return { created, openShardCount: summary.OpenShardCount ?? shardCount };
    if (Date.now() > deadline) throw new StreamNotActiveError(streamName, lastStatus, timeoutMs);
    await new Promise((resolve) => setTimeout(resolve, pollIntervalMs));
  }
}
