import { PutObjectCommand } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { S3Trigger } from '../../local/s3-trigger';
import { s3ClientFor, startS3rver, type S3Event } from '../../local/s3rver';
import { silentLogger } from '../../core/logger';
import { waitFor } from '../../test/support/pg';
import { metricsFor } from '../shared/metrics';
import { createTransformHandler } from '../transform/create-handler';
import { createLoadHandler } from './create-handler';
import {
  NotADataDirError,
  outstandingProblems,
  renderOutstanding,
  type OutstandingReport,
} from './outstanding-problems';

/**
 * The items are made by the code that makes them in the local stack (s3rver's store, the transform
 * and load handlers, the S3 trigger's dead-letter file), so a stage that moves its quarantine
 * elsewhere fails here rather than passing verify silently.
 */
let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-outstanding-'));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const tempDir = () => fs.mkdtempSync(path.join(root, 'data-'));

const eventFor = (bucket: string, key: string): S3Event => ({
  Records: [
    {
      eventVersion: '2.1',
      eventSource: 'aws:s3',
      awsRegion: 'us-east-1',
      eventTime: new Date().toISOString(),
      eventName: 'ObjectCreated:Put',
      s3: {
        s3SchemaVersion: '1.0',
        configurationId: 'test',
        bucket: { name: bucket, arn: `arn:aws:s3:::${bucket}` },
        object: { key, size: 1, sequencer: '01' },
      },
    },
  ],
});

const quiet = (stage: string) => metricsFor({ stage, write: () => undefined });

const checked = (r: OutstandingReport) => {
  if (!r.checked) throw new Error('not checked');
  return r;
};

describe('outstandingProblems', () => {
  it('finds what the transform and the load quarantined, Firehose errors and dead letters', async () => {
    const dataDir = tempDir();
    const s3 = await startS3rver({ dataDir: path.join(dataDir, 's3'), buckets: ['ingestion', 'processed'] });
    const client = s3ClientFor(s3.endpoint);
    try {
      const put = (bucket: string, key: string, body: string) =>
        client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
      // Nothing yet: the buckets exist, empty.
      expect(await outstandingProblems(dataDir)).toEqual({ checked: true, dataDir, total: 0, items: [] });

      // The transform: a CSV whose schema object is missing cannot be read.
      const csvKey = 'totesys/payment/schema=0123456789abcdef/2025/02/28/09/a.csv';
      await put('ingestion', csvKey, 'x\n');
      const transform = createTransformHandler({
        s3: client,
        processedBucket: 'processed',
        metrics: quiet('transform'),
      });
      expect((await transform(eventFor('ingestion', csvKey))).objects[0].status).toBe('quarantined');
      // The load: an object that is not Parquet (it never gets as far as the warehouse).
      await put('processed', 'fact_payment/2025/02/28/09/b.parquet', 'not parquet');
      const load = createLoadHandler({
        s3: client,
        warehouse: { connect: () => Promise.reject(new Error('no warehouse in this test')) },
        metrics: quiet('load'),
      });
      expect(
        (await load(eventFor('processed', 'fact_payment/2025/02/28/09/b.parquet'))).objects[0].status,
      ).toBe('quarantined');
      // Firehose's error output, as the local delivery stream writes it.
      await put('ingestion', 'errors/processing-failed/2025/02/28/09/c', '{}');
      await put('ingestion', 'errors/processing-failed/2025/02/28/09/d', '{}');
      // An invocation that failed after its retries.
      const trigger = new S3Trigger({
        name: 'load',
        s3,
        client,
        bucket: 'processed',
        prefix: 'boom/',
        handler: () => Promise.reject(new Error('boom')),
        concurrency: 1,
        stateDir: path.join(dataDir, 'triggers'),
        logger: silentLogger,
        retryDelaysMs: [],
      });
      await trigger.start();
      try {
        await put('processed', 'boom/e.parquet', 'x');
        await waitFor('the dead letter', () => (trigger.stats.deadLettered === 1 ? true : undefined));
      } finally {
        await trigger.stop();
      }
    } finally {
      client.destroy();
      await s3.stop();
    }
    // An empty dead-letter file (emptied by an operator) holds nothing.
    fs.writeFileSync(path.join(dataDir, 'triggers', 'transform.dead-letter.jsonl'), '\n');

    const report = checked(await outstandingProblems(dataDir, { limit: 1 }));

    expect(report.total).toBe(5);
    expect(report.items).toEqual([
      {
        kind: 'quarantined',
        what: 'changes the transform rejected, or objects it could not read',
        location: 's3/processed/quarantine/transform/',
        count: 1,
        unit: 'object',
        examples: [
          expect.stringMatching(
            /^quarantine\/transform\/payment\/2025\/02\/28\/09\/[0-9a-f]{32}\.object\.jsonl$/,
          ),
        ],
      },
      {
        kind: 'quarantined',
        what: 'objects the load could not apply',
        location: 's3/processed/quarantine/load/',
        count: 1,
        unit: 'object',
        examples: ['quarantine/load/fact_payment/2025/02/28/09/b.parquet'],
      },
      {
        kind: 'rejected',
        what: 'records the delivery stream could not process',
        location: 's3/ingestion/errors/',
        count: 2,
        unit: 'object',
        examples: ['errors/processing-failed/2025/02/28/09/c'],
      },
      {
        kind: 'dead-lettered',
        what: 'events whose handler failed after every retry',
        location: 'triggers/load.dead-letter.jsonl',
        count: 1,
        unit: 'event',
        examples: [expect.stringMatching(/^\{"at":".+","error":"Error: boom",.*…$/)],
      },
    ]);

    const lines = renderOutstanding(report, 12);
    expect(lines[0]).toBe(
      `✗ quarantine    2 quarantined objects, 2 rejected objects, 1 dead-lettered event in ${dataDir}`,
    );
    expect(lines).toContain(
      '    s3/ingestion/errors/: 2 objects, records the delivery stream could not process',
    );
    expect(lines).toContain('      errors/processing-failed/2025/02/28/09/c');
    expect(lines).toContain('      … and 1 more');
    expect(renderOutstanding(report, 12, true)[0]).toMatch(
      /^! quarantine .* \(allowed by --allow-quarantine\)$/,
    );
  });

  it('refuses a directory that is not a data directory, and says when it did not look', async () => {
    const dir = tempDir();
    await expect(outstandingProblems(dir)).rejects.toBeInstanceOf(NotADataDirError);
    await expect(outstandingProblems(dir)).rejects.toThrow(/has neither s3\/ nor triggers\//);
    await expect(outstandingProblems(path.join(dir, 'absent'))).rejects.toThrow(/does not exist/);
    fs.mkdirSync(path.join(dir, 'triggers'));
    expect(await outstandingProblems(dir)).toMatchObject({ checked: true, total: 0 });
    expect(renderOutstanding({ checked: true, dataDir: dir, total: 0, items: [] }, 10)).toEqual([
      `✓ quarantine  nothing quarantined or dead-lettered in ${dir}`,
    ]);
    expect(renderOutstanding({ checked: false, reason: 'no data directory' }, 10)).toEqual([
      '- quarantine  not checked: no data directory',
    ]);
  });
});
