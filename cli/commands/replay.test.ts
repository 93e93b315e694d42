import type { KinesisClient } from '@aws-sdk/client-kinesis';
import type { S3Client } from '@aws-sdk/client-s3';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KinesisSink } from '../../capture/kinesis-sink';
import { captureOutput } from '../../test/support/cli';
import { encodeChangeBatch } from '../../core/change-event';
import { staffBatch } from '../../core/csv-codec.fixtures';
import { ensureStream, kinesisClientFor, startKinesalite, type LocalKinesis } from '../../local/kinesalite';
import { writeRuntimeInfo } from '../../local/runtime-info';
import { listObjectsSince, s3ClientFor, startS3rver, type LocalS3 } from '../../local/s3rver';
import { runCommand, UsageError } from '../command';
import { COMMANDS } from '../totes';
import { command } from './replay';

const STREAM = 'totes-changes';
const BUCKET = 'totes-ingestion';

let kinesis: LocalKinesis;
let s3: LocalS3;
let kc: KinesisClient;
let sc: S3Client;
let dataDir: string;

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-replay-cli-'));
  kinesis = await startKinesalite();
  s3 = await startS3rver({ dataDir: path.join(dataDir, 's3'), buckets: [BUCKET, 'totes-processed'] });
  kc = kinesisClientFor(kinesis.endpoint);
  sc = s3ClientFor(s3.endpoint);
  await ensureStream(kc, STREAM, 2);
});

afterAll(async () => {
  kc.destroy();
  sc.destroy();
  await kinesis.stop();
  await s3.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

const totesReplay = (args: string[]) => captureOutput(() => runCommand(command, args, process.stdout));

describe('totes replay', () => {
  it('is a registered command with --help', async () => {
    expect(COMMANDS.replay.load()).toBe(command);
    const { code, out } = await totesReplay(['--help']);
    expect(code).toBe(0);
    expect(out).toMatch(/^Usage: totes replay --from/);
    for (const option of ['--from', '--to', '--data-dir', '--stream', '--bucket', '--region'])
      expect(out).toContain(option);
  });

  it('replays from the running `totes up` found through DIR/runtime.json, showing progress', async () => {
    // Prepare: what `totes up` would have written, and changes in the stream.
    await writeRuntimeInfo(dataDir, {
      kinesisEndpoint: kinesis.endpoint,
      streamName: STREAM,
      s3Endpoint: s3.endpoint,
      ingestionBucket: BUCKET,
      processedBucket: 'totes-processed',
      pid: process.pid,
    });
    const batches = Array.from({ length: 5 }, (_, i) => staffBatch({ firstId: i * 3, count: 3 }));
    await new KinesisSink({ client: kc, streamName: STREAM }).put(
      batches.map((b, i) => ({ partitionKey: `k${i}`, data: encodeChangeBatch(b) })),
    );

    // Act
    const { code, out, err } = await totesReplay(['--from', '2000-01-01T00:00:00Z', '--data-dir', dataDir]);

    // Assess
    expect(code).toBe(0);
    expect(out).toMatch(
      /^replayed: 5 records into \d+ objects \(\d+ bytes\) in s3:\/\/totes-ingestion in [\d.]+ s\n$/,
    );
    expect(err).toContain(`replaying local stream ${STREAM} → s3://${BUCKET}`);
    expect(err).toMatch(/100% of 2000-01-01T00:00:00.000Z → .*: 5 records/);
    const objects = await listObjectsSince(sc, BUCKET, new Date(0), { prefix: 'totesys/staff/' });
    expect(objects.length).toBeGreaterThan(0);
    expect(objects.every((o) => path.basename(o.key).startsWith('totes-replay-'))).toBe(true);
  });

  it('says so when no `totes up` runs on the data directory', async () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-replay-cli-empty-'));
    const stale = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-replay-cli-stale-'));
    try {
      const missing = await totesReplay(['--from', '2025-01-01T00:00:00Z', '--data-dir', empty]);
      expect(missing.code).toBe(1);
      expect(missing.err).toMatch(/is `totes up` running/);
      await writeRuntimeInfo(stale, {
        kinesisEndpoint: kinesis.endpoint,
        streamName: STREAM,
        s3Endpoint: s3.endpoint,
        ingestionBucket: BUCKET,
        processedBucket: 'totes-processed',
        pid: spawnSync(process.execPath, ['-e', '0']).pid!,
      });
      expect((await totesReplay(['--from', '2025-01-01T00:00:00Z', '--data-dir', stale])).err).toMatch(
        /not running: start `totes up` again/,
      );
    } finally {
      fs.rmSync(empty, { recursive: true, force: true });
      fs.rmSync(stale, { recursive: true, force: true });
    }
  });

  it('reports a failing replay with exit code 1', async () => {
    const { code, err } = await totesReplay(['--from', '1'.repeat(56), '--data-dir', dataDir]);
    expect(code).toBe(1);
    expect(err).toMatch(/failed: sequence number 1{56} is not in stream/);
  });

  it.each([
    [[], /--from is required/],
    [['--from', 'soon'], /neither an ISO 8601 time/],
    [['--from', '2025-01-01', '--to', 'later'], /neither/],
    [['--from', '2025-01-01', 'extra'], /unexpected argument/],
    [['--from', '2025-01-01', '--stream', 's', '--data-dir', 'd'], /either --data-dir/],
    [['--from', '2025-01-01', '--bucket', 'b'], /go with --stream/],
  ])('refuses %j', async (args, message) => {
    await expect(totesReplay(args)).rejects.toThrow(message);
    await expect(totesReplay(args)).rejects.toBeInstanceOf(UsageError);
  });

  it('needs a bucket in AWS mode', async () => {
    const saved = process.env.TOTES_INGESTION_BUCKET;
    delete process.env.TOTES_INGESTION_BUCKET;
    try {
      await expect(totesReplay(['--from', '2025-01-01', '--stream', 'live'])).rejects.toThrow(
        /--bucket is required/,
      );
    } finally {
      if (saved !== undefined) process.env.TOTES_INGESTION_BUCKET = saved;
    }
  });
});
