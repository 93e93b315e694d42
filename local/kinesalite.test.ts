import { PutRecordsCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readAllRecords } from '../test/support/kinesis';
import { ensureStream, kinesisClientFor, startKinesalite, StreamNotActiveError } from './kinesalite';

const STREAM = 'persisted-changes';
const tempDirs: string[] = [];

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-kinesalite-'));
  tempDirs.push(dir);
  return dir;
}

afterAll(() => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

async function putAll(client: KinesisClient, payloads: string[]): Promise<string[]> {
  const sequenceNumbers: string[] = [];
  for (let i = 0; i < payloads.length; i += 500) {
    const chunk = payloads.slice(i, i + 500);
    const res = await client.send(
      new PutRecordsCommand({
        StreamName: STREAM,
        Records: chunk.map((p, j) => ({ PartitionKey: `key-${(i + j) % 7}`, Data: Buffer.from(p) })),
      }),
    );
    expect(res.FailedRecordCount ?? 0).toBe(0);
    for (const r of res.Records ?? []) sequenceNumbers.push(r.SequenceNumber as string);
  }
  return sequenceNumbers;
}

describe('startKinesalite', () => {
  it('keeps streams and records on disk across a restart on the same dataDir', async () => {
    // Prepare: a stream with 1,200 records written to a kinesalite backed by a temp dir.
    const dataDir = path.join(tempDir(), 'nested', 'kinesis');
    const payloads = Array.from({ length: 1_200 }, (_, i) => `change-${i}-${'x'.repeat(i % 50)}`);
    const first = await startKinesalite({ dataDir });
    const writer = kinesisClientFor(first.endpoint);
    let written: string[];
    try {
      expect(await ensureStream(writer, STREAM, 2)).toEqual({ created: true, openShardCount: 2 });
      written = await putAll(writer, payloads);
    } finally {
      writer.destroy();
      await first.stop();
    }

    // Act: a new server on the same directory.
    const second = await startKinesalite({ dataDir });
    const reader = kinesisClientFor(second.endpoint);
    try {
      // Assess: the stream is still there (not re-created) and every record reads back intact.
      expect(await ensureStream(reader, STREAM, 2)).toEqual({ created: false, openShardCount: 2 });
      const read = await readAllRecords(reader, STREAM);
      expect(read.map((r) => r.data.toString()).sort()).toEqual([...payloads].sort());
      expect(read.map((r) => r.sequenceNumber).sort()).toEqual([...written].sort());
      expect(new Set(read.map((r) => r.shardId)).size).toBe(2);
    } finally {
      reader.destroy();
      await second.stop();
    }
  });

  it('keeps nothing without a dataDir', async () => {
    const first = await startKinesalite();
    const client = kinesisClientFor(first.endpoint);
    try {
      expect((await ensureStream(client, STREAM, 1)).created).toBe(true);
    } finally {
      client.destroy();
      await first.stop();
    }
    const second = await startKinesalite();
    const again = kinesisClientFor(second.endpoint);
    try {
      expect((await ensureStream(again, STREAM, 1)).created).toBe(true);
    } finally {
      again.destroy();
      await second.stop();
    }
  });

  it('listens on the requested port and refuses one already taken', async () => {
    const first = await startKinesalite();
    try {
      expect(first.endpoint).toBe(`http://127.0.0.1:${first.port}`);
      await expect(startKinesalite({ port: first.port })).rejects.toMatchObject({ code: 'EADDRINUSE' });
    } finally {
      await first.stop();
    }
  });

  it('ensureStream waits through CREATING before resolving', async () => {
    const kinesis = await startKinesalite({ createStreamMs: 150 });
    const client = kinesisClientFor(kinesis.endpoint);
    try {
      const started = Date.now();
      expect(await ensureStream(client, STREAM, 1)).toEqual({ created: true, openShardCount: 1 });
      expect(Date.now() - started).toBeGreaterThanOrEqual(100);
    } finally {
      client.destroy();
      await kinesis.stop();
    }
  });
});

describe('ensureStream against a fake client', () => {
  type Send = Pick<KinesisClient, 'send'>;
  const named = (name: string) => Object.assign(new Error(name), { name });

  it('throws StreamNotActiveError when the stream never becomes ACTIVE', async () => {
    const client = {
      send: async () => ({ StreamDescriptionSummary: { StreamStatus: 'CREATING' } }),
    } as unknown as Send;
    const error = await ensureStream(client, 'stuck', 1, { timeoutMs: 60, pollIntervalMs: 10 }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StreamNotActiveError);
    expect(error).toMatchObject({ streamName: 'stuck', lastStatus: 'CREATING', timeoutMs: 60 });
  });

  it('accepts a stream created concurrently by someone else', async () => {
    let describes = 0;
    const client = {
      send: async (command: { constructor: { name: string } }) => {
        if (command.constructor.name === 'CreateStreamCommand') throw named('ResourceInUseException');
        describes += 1;
        if (describes === 1) throw named('ResourceNotFoundException');
        return { StreamDescriptionSummary: { StreamStatus: 'ACTIVE', OpenShardCount: 3 } };
      },
    } as unknown as Send;
    expect(await ensureStream(client, 'raced', 3)).toEqual({ created: false, openShardCount: 3 });
  });

  it('passes on errors other than a missing or in-use stream', async () => {
    const client = {
      send: async () => {
        throw named('AccessDeniedException');
      },
    } as unknown as Send;
    await expect(ensureStream(client, 'denied', 1)).rejects.toMatchObject({ name: 'AccessDeniedException' });
    const createFails = {
      send: async (command: { constructor: { name: string } }) => {
        if (command.constructor.name === 'CreateStreamCommand') throw named('LimitExceededException');
        throw named('ResourceNotFoundException');
      },
    } as unknown as Send;
    await expect(ensureStream(createFails, 'limited', 1)).rejects.toMatchObject({
      name: 'LimitExceededException',
    });
  });
});
