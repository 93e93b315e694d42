import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { ensureStream, kinesisClientFor, startKinesalite, type LocalKinesis } from '../local/kinesalite';
import { readAllRecords } from '../test/support/kinesis';
import {
  KinesisSink,
  PutRecordsRejectedError,
  SinkRetriesExhaustedError,
  type SinkRecord,
} from './kinesis-sink';

const STREAM = 'sink-roundtrip';

let kinesis: LocalKinesis;
let client: KinesisClient;

beforeAll(async () => {
  kinesis = await startKinesalite();
  client = kinesisClientFor(kinesis.endpoint);
  await ensureStream(client, STREAM, 2);
});

afterAll(async () => {
  client.destroy();
  await kinesis.stop();
});

/**
 * Record i: a unique header then filler, 0.5 B – 12 KiB, so 2,000 of them (~12 MiB) need splitting by
 * size as well as by count. Partition keys repeat over 37 values so both shards get records.
 */
function makeRecords(n: number): SinkRecord[] {
  return Array.from({ length: n }, (_, i) => {
    const size = (i * 7919) % (12 * 1024);
    const data = Buffer.alloc(Math.max(size, 12), i % 251);
    data.write(`#${i}#`, 0, 'latin1');
    return { partitionKey: `table_${i % 37}:${i % 3 === 0 ? 'é' : ''}`, data };
  });
}

describe('KinesisSink against kinesalite', () => {
  it('delivers 2,000 records of varied sizes to a 2-shard stream, each exactly once with its key', async () => {
    // Prepare
    const input = makeRecords(2_000);
    const sink = new KinesisSink({ client, streamName: STREAM });

    // Act
    const result = await sink.put(input);
    const read = await readAllRecords(client, STREAM);

    // Assess: the data multiset and each record's partition key and sequence number survived.
    expect(result.records).toBe(2_000);
    expect(result.calls).toBeGreaterThanOrEqual(4);
    const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
    expect(read.map((r) => hex(r.data)).sort()).toEqual(input.map((r) => hex(r.data)).sort());
    const byData = new Map(read.map((r) => [hex(r.data), r]));
    input.forEach((r, i) => {
      const got = byData.get(hex(r.data));
      expect(got?.partitionKey).toBe(r.partitionKey);
      expect(got?.sequenceNumber).toBe(result.sequenceNumbers[i]);
    });
    const perShard = new Map<string, number>();
    for (const r of read) perShard.set(r.shardId, (perShard.get(r.shardId) ?? 0) + 1);
    expect(perShard.size).toBe(2);
  });

  it('rejects a missing stream with the SDK error as cause, without retrying', async () => {
    const sleeps: number[] = [];
    const sink = new KinesisSink({
      client,
      streamName: 'no-such-stream',
      sleep: async (ms) => {
        sleeps.push(ms);
      },
    });
    const error = await sink.put([{ partitionKey: 'k', data: Buffer.from('x') }]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PutRecordsRejectedError);
    expect(error).toMatchObject({ streamName: 'no-such-stream', errorName: 'ResourceNotFoundException' });
    expect(sleeps).toEqual([]);
  });

  it('retries when Kinesis is unreachable, then gives up with the network error code', async () => {
    const gone = await startKinesalite();
    await gone.stop();
    const unreachable = kinesisClientFor(gone.endpoint);
    try {
      const sink = new KinesisSink({
        client: unreachable,
        streamName: STREAM,
        maxAttempts: 2,
        baseBackoffMs: 1,
      });
      const error = await sink.put([{ partitionKey: 'k', data: Buffer.from('x') }]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SinkRetriesExhaustedError);
      expect(error).toMatchObject({ attempts: 2, lastErrorCode: 'ECONNREFUSED' });
    } finally {
      unreachable.destroy();
    }
  });
});
