import { DeleteStreamCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import { CreateBucketCommand, GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KinesisSink } from '../capture/kinesis-sink';
import { encodeChangeBatch, type Change, type ChangeBatch } from '../core/change-event';
import { identityOf, staffBatch } from '../core/csv-codec.fixtures';
import { decodeCsvObject, decodeSchemaObject, parseDataObjectKey, schemaObjectKey } from '../core/csv-codec';
import { createHandler } from '../processors/firehose-transform/create-handler';
import { waitFor } from '../test/support/pg';
import { DeliveryStream } from './delivery-stream';
import { ensureStream, kinesisClientFor, startKinesalite, type LocalKinesis } from './kinesalite';
import {
  EmptyReplayWindowError,
  InvalidReplayPointError,
  parseReplayPoint,
  replay,
  SequenceNumberNotFoundError,
  type ReplayProgress,
} from './replay';
import { listObjectsSince, s3ClientFor, startS3rver, type LocalS3 } from './s3rver';

let kinesis: LocalKinesis;
let kc: KinesisClient;
let s3: LocalS3;
let sc: S3Client;
let root: string;
let counter = 0;
const streams: string[] = [];

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-replay-test-'));
  kinesis = await startKinesalite();
  kc = kinesisClientFor(kinesis.endpoint);
  s3 = await startS3rver({ dataDir: path.join(root, 's3'), buckets: [] });
  sc = s3ClientFor(s3.endpoint);
});

afterEach(async () => {
  for (const StreamName of streams.splice(0)) await kc.send(new DeleteStreamCommand({ StreamName }));
});

afterAll(async () => {
  kc.destroy();
  sc.destroy();
  await kinesis.stop();
  await s3.stop();
  fs.rmSync(root, { recursive: true, force: true });
});

async function environment(shards: number) {
  counter += 1;
  const streamName = `replay-${counter}`;
  const bucket = `replay-bucket-${counter}`;
  await ensureStream(kc, streamName, shards);
  streams.push(streamName);
  await sc.send(new CreateBucketCommand({ Bucket: bucket }));
  const sink = new KinesisSink({ client: kc, streamName });
  const put = async (batches: ChangeBatch[]) =>
    (
      await sink.put(
        batches.map((b) => ({ partitionKey: `staff:${b.changes[0].values[0]}`, data: encodeChangeBatch(b) })),
      )
    ).sequenceNumbers;
  return { streamName, bucket, put };
}

/** Changes by identity in the objects whose name starts with `namePrefix` (live or replay). */
async function delivered(bucket: string, namePrefix: string): Promise<Map<string, Change>> {
  const out = new Map<string, Change>();
  for (const o of await listObjectsSince(sc, bucket, new Date(0), { prefix: 'totesys/' })) {
    if (!path.basename(o.key).startsWith(namePrefix)) continue;
    const where = parseDataObjectKey(o.key)!;
    const schema = decodeSchemaObject(await text(bucket, schemaObjectKey(where.table, where.fingerprint)));
    for (const c of decodeCsvObject(await text(bucket, o.key), schema))
      out.set(identityOf(where.table, c), c);
  }
  return out;
}

async function text(bucket: string, key: string): Promise<string> {
  return (await sc.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToString();
}

function identities(batches: ChangeBatch[]): Map<string, Change> {
  return new Map(batches.flatMap((b) => b.changes.map((c) => [identityOf(b.table, c), c] as const)));
}

/** Delivers the whole stream once, as the live path would. */
async function deliverLive(streamName: string, bucket: string, expected: number): Promise<void> {
  const live = new DeliveryStream({
    kinesis: kc,
    streamName,
    s3: sc,
    bucket,
    transform: createHandler({ s3: sc, bucket }),
    checkpointDir: path.join(root, `live-${streamName}`),
    // The records are in the stream already (the default, LATEST, would pass over them).
    startingPosition: { type: 'TRIM_HORIZON' },
    pollIntervalMs: 20,
    bufferingHints: { intervalMs: 100 },
  });
  const running = live.run();
  await waitFor('live delivery', () => (live.metrics().recordsIn === expected ? true : undefined));
  await live.stop();
  await running;
}

describe('replay against kinesalite and s3rver', () => {
  it('re-delivers the window from a time: the same rows again, with the same identities', async () => {
    // Prepare: batches before and after a point in time, all delivered live once.
    const env = await environment(2);
    const before = Array.from({ length: 6 }, (_, i) => staffBatch({ firstId: i * 4, count: 4 }));
    const after = Array.from({ length: 6 }, (_, i) => staffBatch({ firstId: 100 + i * 4, count: 4 }));
    await env.put(before);
    const from = new Date();
    await waitFor('the clock to pass `from`', () => (Date.now() > from.getTime() + 2 ? true : undefined));
    await env.put(after);
    await deliverLive(env.streamName, env.bucket, before.length + after.length);
    const progress: ReplayProgress[] = [];

    // Act
    const result = await replay({
      kinesis: kc,
      streamName: env.streamName,
      s3: sc,
      bucket: env.bucket,
      from: { kind: 'time', at: from },
      atTimestamp: 'scan',
      pollIntervalMs: 20,
      bufferingHints: { intervalMs: 100 },
      onProgress: (p) => progress.push(p),
      progressIntervalMs: 20,
    });

    // Assess: exactly the window, each change identical to its live delivery.
    const replayed = await delivered(env.bucket, 'totes-replay-');
    const live = await delivered(env.bucket, 'totes-ingestion-');
    expect(replayed).toEqual(identities(after));
    for (const [id, change] of replayed) expect(live.get(id)).toEqual(change);
    expect(live).toEqual(identities([...before, ...after]));
    expect(result).toMatchObject({ records: after.length, fraction: 1, errorObjects: 0 });
    expect(result.window.from).toEqual(from);
    expect(progress.at(-1)).toEqual(result);
    expect(progress.every((p, i) => i === 0 || p.records >= progress[i - 1].records)).toBe(true);
  });

  it('re-delivers between two sequence numbers, inclusive', async () => {
    const env = await environment(1);
    const batches = Array.from({ length: 10 }, (_, i) => staffBatch({ firstId: i * 2, count: 2 }));
    const sequenceNumbers: string[] = [];
    for (const b of batches) sequenceNumbers.push(...(await env.put([b])));

    const result = await replay({
      kinesis: kc,
      streamName: env.streamName,
      s3: sc,
      bucket: env.bucket,
      from: parseReplayPoint(sequenceNumbers[3]),
      to: parseReplayPoint(sequenceNumbers[6]),
      pollIntervalMs: 20,
      bufferingHints: { intervalMs: 100 },
    });

    expect(await delivered(env.bucket, 'totes-replay-')).toEqual(identities(batches.slice(3, 7)));
    expect(result.records).toBe(4);
  });

  it('asks Kinesis for AT_TIMESTAMP iterators in native mode', async () => {
    // kinesalite answers AT_TIMESTAMP when a record at or after the time exists, as here.
    const env = await environment(1);
    await env.put([staffBatch({ firstId: 0, count: 2 })]);
    // kinesalite keeps arrival times to the second, so `from` is the next whole second: records put
    // before it can never compare equal to it, whatever the resolution.
    const from = new Date(Math.floor(Date.now() / 1000) * 1000 + 1000);
    await waitFor(
      'the clock to pass `from`',
      () => (Date.now() > from.getTime() + 10 ? true : undefined),
      5000,
    );
    const later = [staffBatch({ firstId: 2, count: 2 })];
    await env.put(later);

    await replay({
      kinesis: kc,
      streamName: env.streamName,
      s3: sc,
      bucket: env.bucket,
      from: { kind: 'time', at: from },
      to: { kind: 'time', at: new Date(Date.now() + 60_000) },
      atTimestamp: 'native',
      pollIntervalMs: 20,
      bufferingHints: { intervalMs: 100 },
    });

    expect(await delivered(env.bucket, 'totes-replay-')).toEqual(identities(later));
  });

  it('refuses empty windows and unknown sequence numbers', async () => {
    const env = await environment(1);
    const [seq] = await env.put([staffBatch({ firstId: 0, count: 1 })]);
    const base = { kinesis: kc, streamName: env.streamName, s3: sc, bucket: env.bucket };
    await expect(
      replay({ ...base, from: { kind: 'time', at: new Date() }, to: { kind: 'time', at: new Date(0) } }),
    ).rejects.toBeInstanceOf(EmptyReplayWindowError);
    const unknown = `${BigInt(seq) + 10n ** 30n}`;
    await expect(
      replay({ ...base, from: { kind: 'sequence', sequenceNumber: unknown } }),
    ).rejects.toBeInstanceOf(SequenceNumberNotFoundError);
  });

  it('stops early, writing nothing, when aborted before it starts', async () => {
    const env = await environment(1);
    await env.put([staffBatch({ firstId: 0, count: 1 })]);
    const result = await replay({
      kinesis: kc,
      streamName: env.streamName,
      s3: sc,
      bucket: env.bucket,
      from: { kind: 'time', at: new Date(0) },
      signal: AbortSignal.abort(),
    });
    expect(result).toMatchObject({ records: 0, objects: 0, fraction: 0 });
  });
});

describe('parseReplayPoint', () => {
  it('reads ISO 8601 times and sequence numbers', () => {
    expect(parseReplayPoint('2025-02-28T09:15:00Z')).toEqual({
      kind: 'time',
      at: new Date('2025-02-28T09:15:00Z'),
    });
    expect(parseReplayPoint('2025-02-28T10:15:00.5+01:00')).toEqual({
      kind: 'time',
      at: new Date('2025-02-28T09:15:00.500Z'),
    });
    expect(parseReplayPoint(' 49546986683135544286507457936321625675700192471156785154 ')).toEqual({
      kind: 'sequence',
      sequenceNumber: '49546986683135544286507457936321625675700192471156785154',
    });
  });

  it.each(['yesterday', '', '12345', '2025-13-45T99:00:00Z', '2025/02/28'])('refuses %j', (text) => {
    expect(() => parseReplayPoint(text)).toThrow(InvalidReplayPointError);
  });
});
