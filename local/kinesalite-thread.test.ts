import { PutRecordsCommand } from '@aws-sdk/client-kinesis';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isMainThread } from 'node:worker_threads';
import type { Worker } from 'node:worker_threads';
import { createLogger, silentLogger } from '../core/logger';
import { waitFor } from '../test/support/pg';
import { readAllRecords } from '../test/support/kinesis';
import { ensureStream, kinesisClientFor, startKinesalite } from './kinesalite';
import { startKinesaliteThread } from './kinesalite-thread';
import { StageWorkerError } from './stage-workers';

const STREAM = 'threaded-changes';
const tempDirs: string[] = [];

afterAll(() => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

describe('startKinesaliteThread', () => {
  it('serves kinesalite from a worker thread, its store on disk across a restart, released on stop', async () => {
    // Prepare: a stream with records, written through the threaded server.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-kinesalite-thread-'));
    tempDirs.push(dir);
    const dataDir = path.join(dir, 'kinesis');
    const payloads = Array.from({ length: 300 }, (_, i) => `change-${i}`);
    const threaded = await startKinesaliteThread({ dataDir }, silentLogger);
    const writer = kinesisClientFor(threaded.endpoint);
    try {
      expect(isMainThread).toBe(true);
      expect(threaded.workers.threadIds).toHaveLength(1);
      expect(threaded.workers.threadIds[0]).toBeGreaterThan(0);
      expect(threaded.endpoint).toBe(`http://127.0.0.1:${threaded.port}`);
      expect(await ensureStream(writer, STREAM, 2)).toEqual({ created: true, openShardCount: 2 });
      const res = await writer.send(
        new PutRecordsCommand({
          StreamName: STREAM,
          Records: payloads.map((p, i) => ({ PartitionKey: `k${i % 5}`, Data: Buffer.from(p) })),
        }),
      );
      expect(res.FailedRecordCount ?? 0).toBe(0);
    } finally {
      writer.destroy();
      await threaded.stop();
    }

    // Act: kinesalite on this thread, on the same directory (it opens only once the thread let go).
    const again = await startKinesalite({ dataDir });
    const reader = kinesisClientFor(again.endpoint);
    try {
      // Assess: the stream and every record are there.
      expect(await ensureStream(reader, STREAM, 2)).toEqual({ created: false, openShardCount: 2 });
      const read = await readAllRecords(reader, STREAM);
      expect(read.map((r) => r.data.toString()).sort()).toEqual([...payloads].sort());
    } finally {
      reader.destroy();
      await again.stop();
    }
  });

  it('says so when its thread dies, and starts no other (it could not take over the port and store)', async () => {
    const errors: Record<string, unknown>[] = [];
    const logger = createLogger({
      service: 'test',
      level: 'error',
      write: (line) => errors.push(JSON.parse(line)),
    });
    const deaths: Error[] = [];
    const threaded = await startKinesaliteThread({}, logger, (e) => deaths.push(e));
    try {
      // Not stopped: the thread ends as an uncaught exception would end it.
      const slots = (threaded.workers as unknown as { slots: { worker: Worker }[] }).slots;
      await slots[0].worker.terminate();
      await waitFor('the death to be reported', async () => (deaths.length ? true : undefined));
      expect(deaths[0]).toBeInstanceOf(StageWorkerError);
      expect(deaths[0].message).toMatch(/kinesalite worker exited/);
      expect(errors.map((e) => e.msg)).toEqual([expect.stringMatching(/kinesalite's thread exited/)]);
      expect(threaded.workers.restarts).toBe(0);
    } finally {
      await threaded.stop();
    }
  });

  it('rejects as startKinesalite does when the port is taken', async () => {
    const first = await startKinesalite();
    try {
      await expect(startKinesaliteThread({ port: first.port }, silentLogger)).rejects.toMatchObject({
        code: 'EADDRINUSE',
      });
    } finally {
      await first.stop();
    }
  });
});
