import { PutObjectCommand } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { silentLogger } from '../core/logger';
import { decodeS3ObjectKey } from '../processors/shared/s3-event';
import { waitFor } from '../test/support/pg';
import { S3Trigger } from './s3-trigger';
import { s3ClientFor, startS3rver, type S3Event } from './s3rver';

describe('S3Trigger', () => {
  it('catches up after a restart on what was created while stopped, from a watermark rewritten in place', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-s3-trigger-'));
    const s3 = await startS3rver({ dataDir: path.join(dir, 's3'), buckets: ['b'] });
    const client = s3ClientFor(s3.endpoint);
    const handled: string[] = [];
    const trigger = () =>
      new S3Trigger({
        name: 't',
        s3,
        client,
        bucket: 'b',
        concurrency: 1,
        stateDir: path.join(dir, 'triggers'),
        logger: silentLogger,
        handler: async (event: S3Event) => {
          handled.push(decodeS3ObjectKey(event.Records[0].s3.object.key));
        },
      });
    try {
      const first = trigger();
      await first.start();
      await client.send(new PutObjectCommand({ Bucket: 'b', Key: 'one', Body: '1' }));
      await waitFor('the first object handled', () => (handled.length === 1 ? true : undefined));
      await first.stop();
      const watermark = path.join(dir, 'triggers', 't.watermark.json');
      const { ino } = fs.statSync(watermark);

      await client.send(new PutObjectCommand({ Bucket: 'b', Key: 'two', Body: '2' }));
      const second = trigger();
      await second.start();
      await waitFor('the missed object handled', () => (handled.includes('two') ? true : undefined));
      await second.stop();
      // Saved again in the same file: no inode allocated and freed per save.
      expect(fs.statSync(watermark).ino).toBe(ino);
      expect(JSON.parse(fs.readFileSync(watermark, 'utf8'))).toEqual({ handledBefore: expect.any(String) });
      expect(fs.readdirSync(path.join(dir, 'triggers'))).toEqual(['t.watermark.json']);
    } finally {
      client.destroy();
      await s3.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
