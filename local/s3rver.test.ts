import { decodeS3ObjectKey } from '../processors/shared/s3-event';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '../core/logger';
import { waitFor } from '../test/support/pg';
import {
  encodeS3EventKey,
  listObjectsSince,
  LocalS3StartError,
  s3ClientFor,
  startS3rver,
  type S3Event,
} from './s3rver';

const dirs: string[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-s3rver-'));
  dirs.push(dir);
  return dir;
}

afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

async function withS3<T>(
  dataDir: string,
  fn: (client: S3Client, s3: Awaited<ReturnType<typeof startS3rver>>) => Promise<T>,
  options: { logger?: ReturnType<typeof createLogger> } = {},
): Promise<T> {
  const s3 = await startS3rver({ dataDir, buckets: ['ingestion', 'processed'], logger: options.logger });
  const client = s3ClientFor(s3.endpoint);
  try {
    return await fn(client, s3);
  } finally {
    client.destroy();
    await s3.stop();
  }
}

describe('startS3rver', () => {
  it('creates its buckets and keeps objects on disk across a restart', async () => {
    const dataDir = path.join(tempDir(), 'nested', 's3');
    await withS3(dataDir, async (client) => {
      await client.send(new PutObjectCommand({ Bucket: 'ingestion', Key: 'a/b.csv', Body: 'hello' }));
    });
    expect(fs.existsSync(path.join(dataDir, 'processed'))).toBe(true);
    await withS3(dataDir, async (client) => {
      const res = await client.send(new GetObjectCommand({ Bucket: 'ingestion', Key: 'a/b.csv' }));
      expect(await res.Body!.transformToString()).toBe('hello');
      await expect(
        client.send(new HeadObjectCommand({ Bucket: 'processed', Key: 'none' })),
      ).rejects.toMatchObject({
        name: 'NotFound',
      });
    });
  });

  it('emits S3-shaped ObjectCreated events with URL-encoded keys, and none for deletes', async () => {
    await withS3(tempDir(), async (client, s3) => {
      const events: S3Event[] = [];
      const unsubscribe = s3.onObjectCreated((e) => {
        events.push(e);
      });
      const key = 'totesys/staff/schema=0123456789abcdef/2025/02/28/09/a file+x.csv';
      await client.send(new PutObjectCommand({ Bucket: 'ingestion', Key: key, Body: 'a,b\n' }));
      // (s3rver decodes CopySource with decodeURI, so copy from a key without reserved characters.)
      await client.send(new PutObjectCommand({ Bucket: 'processed', Key: 'plain.csv', Body: 'x' }));
      await client.send(
        new CopyObjectCommand({ Bucket: 'processed', Key: 'copy.csv', CopySource: 'processed/plain.csv' }),
      );
      await client.send(new DeleteObjectCommand({ Bucket: 'ingestion', Key: key }));
      await waitFor('three events', () => (events.length === 3 ? true : undefined));
      unsubscribe();
      await client.send(new PutObjectCommand({ Bucket: 'ingestion', Key: 'after', Body: 'x' }));

      const [put, , copy] = events.map((e) => e.Records[0]);
      expect(put).toMatchObject({
        eventSource: 'aws:s3',
        eventName: 'ObjectCreated:Put',
        s3: {
          bucket: { name: 'ingestion', arn: 'arn:aws:s3:::ingestion' },
          object: {
            key: 'totesys/staff/schema%3D0123456789abcdef/2025/02/28/09/a+file%2Bx.csv',
            size: 4,
          },
        },
      });
      expect(decodeS3ObjectKey(put.s3.object.key)).toBe(key);
      expect(copy).toMatchObject({
        eventName: 'ObjectCreated:Copy',
        s3: { bucket: { name: 'processed' }, object: { key: 'copy.csv' } },
      });
      expect(events).toHaveLength(3);
    });
  });

  it('keeps a failing listener from failing the write, and logs it', async () => {
    const lines: string[] = [];
    const logger = createLogger({ service: 'test', write: (l) => lines.push(l) });
    await withS3(
      tempDir(),
      async (client, s3) => {
        let calls = 0;
        s3.onObjectCreated(() => {
          throw new Error('listener bug');
        });
        s3.onObjectCreated(async () => {
          calls += 1;
        });
        await client.send(new PutObjectCommand({ Bucket: 'ingestion', Key: 'k', Body: 'v' }));
        await waitFor('the log line and the healthy listener', () =>
          lines.length === 1 && calls === 1 ? true : undefined,
        );
        expect(JSON.parse(lines[0])).toMatchObject({
          level: 'error',
          err: { message: 'listener bug' },
          key: 'k',
        });
      },
      { logger },
    );
  });

  it('never shows a partly written object, even to a reader racing the PUT', async () => {
    await withS3(tempDir(), async (client) => {
      const body = Buffer.alloc(16 * 1024 * 1024, 'x');
      const writing = client.send(new PutObjectCommand({ Bucket: 'ingestion', Key: 'big', Body: body }));
      let done = false;
      void writing.then(() => (done = true));
      const seen = new Set<number>();
      while (!done) {
        const listed = await listObjectsSince(client, 'ingestion', new Date(0));
        for (const o of listed) seen.add(o.size);
      }
      await writing;
      seen.add(
        (await client.send(new HeadObjectCommand({ Bucket: 'ingestion', Key: 'big' }))).ContentLength!,
      );
      expect([...seen]).toEqual([body.length]);
      // Read back whole (streamed: larger than what a GET reads in one call).
      const got = await client.send(new GetObjectCommand({ Bucket: 'ingestion', Key: 'big' }));
      expect(Buffer.from(await got.Body!.transformToByteArray()).equals(body)).toBe(true);
    });
  });

  it('honours If-None-Match: * on PUT as S3 does: 412 PreconditionFailed, the object and its events unchanged', async () => {
    await withS3(tempDir(), async (client, s3) => {
      const created: string[] = [];
      s3.onObjectCreated((e) => {
        created.push(decodeS3ObjectKey(e.Records[0].s3.object.key));
      });
      const put = (key: string, body: string) =>
        client.send(new PutObjectCommand({ Bucket: 'processed', Key: key, Body: body, IfNoneMatch: '*' }));
      await put('once/a.parquet', 'first');
      await expect(put('once/a.parquet', 'second')).rejects.toMatchObject({
        name: 'PreconditionFailed',
        $metadata: { httpStatusCode: 412 },
      });
      const res = await client.send(new GetObjectCommand({ Bucket: 'processed', Key: 'once/a.parquet' }));
      expect(await res.Body!.transformToString()).toBe('first');
      // Without the condition a PUT still replaces the object, as in S3.
      await client.send(new PutObjectCommand({ Bucket: 'processed', Key: 'once/a.parquet', Body: 'third' }));
      const after = await client.send(new GetObjectCommand({ Bucket: 'processed', Key: 'once/a.parquet' }));
      expect(await after.Body!.transformToString()).toBe('third');
      // Concurrent conditional writes of one new key: exactly one wins.
      const racing = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) => put('once/raced.parquet', `writer ${i}`)),
      );
      expect(racing.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of racing)
        if (r.status === 'rejected') expect(r.reason).toMatchObject({ name: 'PreconditionFailed' });
      await waitFor('the writes that succeeded to be announced', () =>
        created.length === 3 ? true : undefined,
      );
      expect(created.sort()).toEqual(['once/a.parquet', 'once/a.parquet', 'once/raced.parquet']);
      // The losers left no partial files behind.
      const dir = path.join(s3.dataDir, 'processed', 'once');
      expect(fs.readdirSync(dir).filter((f) => f.includes('.partial-'))).toEqual([]);
    });
  });

  it("keeps an object's md5 and metadata across a restart without a file of their own for each", async () => {
    const dataDir = tempDir();
    const key = 'star/2026/12/03/09/a.parquet';
    const md5 = createHash('md5').update('parquet bytes').digest('hex');
    await withS3(dataDir, async (client) => {
      await client.send(
        new PutObjectCommand({
          Bucket: 'processed',
          Key: key,
          Body: 'parquet bytes',
          ContentType: 'application/vnd.apache.parquet',
          Metadata: { 'source-bucket': 'ingestion' },
        }),
      );
    });
    expect(fs.readdirSync(path.join(dataDir, 'processed', 'star/2026/12/03/09')).sort()).toEqual([
      '.totes-object-metadata.jsonl',
      'a.parquet._S3rver_object',
    ]);
    await withS3(dataDir, async (client) => {
      const head = await client.send(new HeadObjectCommand({ Bucket: 'processed', Key: key }));
      expect(head).toMatchObject({
        ETag: `"${md5}"`,
        ContentType: 'application/vnd.apache.parquet',
        ContentLength: 13,
        Metadata: { 'source-bucket': 'ingestion' },
      });
      const got = await client.send(new GetObjectCommand({ Bucket: 'processed', Key: key }));
      expect(got.ETag).toBe(`"${md5}"`);
      expect(await got.Body!.transformToString()).toBe('parquet bytes');
      const ranged = await client.send(
        new GetObjectCommand({ Bucket: 'processed', Key: key, Range: 'bytes=8-' }),
      );
      expect(await ranged.Body!.transformToString()).toBe('bytes');
      expect(ranged.ContentRange).toBe('bytes 8-12/13');
    });
  });

  it('keeps the journal of a key written over and over to about one line per object', async () => {
    const dataDir = tempDir();
    const journal = path.join(dataDir, 'ingestion', 'again', '.totes-object-metadata.jsonl');
    await withS3(dataDir, async (client) => {
      let next = 0;
      const put = async () => {
        for (let i = next++; i < 1100; i = next++)
          await client.send(
            new PutObjectCommand({ Bucket: 'ingestion', Key: 'again/k', Body: `version ${i}` }),
          );
      };
      await Promise.all(Array.from({ length: 8 }, put));
      await client.send(new PutObjectCommand({ Bucket: 'ingestion', Key: 'again/last', Body: 'last' }));
    });
    expect(fs.readFileSync(journal, 'utf8').split('\n').length).toBeLessThan(1100);
    await withS3(dataDir, async (client) => {
      const last = await client.send(new GetObjectCommand({ Bucket: 'ingestion', Key: 'again/last' }));
      expect(last.ETag).toBe(`"${createHash('md5').update('last').digest('hex')}"`);
      const k = await client.send(new GetObjectCommand({ Bucket: 'ingestion', Key: 'again/k' }));
      expect(k.ETag).toBe(
        `"${createHash('md5')
          .update(await k.Body!.transformToString())
          .digest('hex')}"`,
      );
    });
  }, 60_000);

  it('reads objects written with the md5 and metadata files of earlier versions, and replaces them', async () => {
    const dataDir = tempDir();
    await withS3(dataDir, async () => undefined);
    // As s3rver 3.7's store (and this module before the journal) left an object.
    const dir = path.join(dataDir, 'ingestion', 'old');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'a.csv._S3rver_object'), 'a,b\n');
    fs.writeFileSync(
      path.join(dir, 'a.csv._S3rver_object.md5'),
      createHash('md5').update('a,b\n').digest('hex'),
    );
    fs.writeFileSync(
      path.join(dir, 'a.csv._S3rver_metadata.json'),
      JSON.stringify({ 'content-type': 'text/csv', 'x-amz-meta-table': 'staff' }, null, 2),
    );
    // Without its md5 file (s3rver computes one), and without either.
    fs.writeFileSync(path.join(dir, 'b.csv._S3rver_object'), 'b\n');
    fs.writeFileSync(
      path.join(dir, 'b.csv._S3rver_metadata.json'),
      JSON.stringify({ 'content-type': 'text/csv' }),
    );
    fs.writeFileSync(path.join(dir, 'c.csv._S3rver_object'), 'c\n');
    const etag = (body: string) => `"${createHash('md5').update(body).digest('hex')}"`;
    await withS3(dataDir, async (client) => {
      const a = await client.send(new GetObjectCommand({ Bucket: 'ingestion', Key: 'old/a.csv' }));
      expect(a).toMatchObject({ ETag: etag('a,b\n'), ContentType: 'text/csv', Metadata: { table: 'staff' } });
      expect(await a.Body!.transformToString()).toBe('a,b\n');
      const b = await client.send(new HeadObjectCommand({ Bucket: 'ingestion', Key: 'old/b.csv' }));
      expect(b).toMatchObject({ ETag: etag('b\n'), ContentType: 'text/csv' });
      const c = await client.send(new GetObjectCommand({ Bucket: 'ingestion', Key: 'old/c.csv' }));
      expect(c.ETag).toBe(etag('c\n'));
      expect(await c.Body!.transformToString()).toBe('c\n');
      const listed = await listObjectsSince(client, 'ingestion', new Date(0), { prefix: 'old/' });
      expect(listed.map((o) => [o.key, o.size])).toEqual(
        expect.arrayContaining([
          ['old/a.csv', 4],
          ['old/b.csv', 2],
          ['old/c.csv', 2],
        ]),
      );
      // A new version of an old object: its metadata is the new PUT's, its old files are gone.
      await client.send(new PutObjectCommand({ Bucket: 'ingestion', Key: 'old/a.csv', Body: 'new\n' }));
      const replaced = await client.send(new HeadObjectCommand({ Bucket: 'ingestion', Key: 'old/a.csv' }));
      expect(replaced).toMatchObject({
        ETag: etag('new\n'),
        ContentType: 'application/octet-stream',
        Metadata: {},
      });
      expect(fs.existsSync(path.join(dir, 'a.csv._S3rver_object.md5'))).toBe(false);
      expect(fs.existsSync(path.join(dir, 'a.csv._S3rver_metadata.json'))).toBe(false);
    });
  });

  it('never takes a journal line for a later version of the file (a PUT killed before its line was written)', async () => {
    const dataDir = tempDir();
    await withS3(dataDir, async (client) => {
      await client.send(
        new PutObjectCommand({ Bucket: 'ingestion', Key: 'k.csv', Body: 'first', ContentType: 'text/csv' }),
      );
    });
    // The file a later PUT renamed into place before the kill: of the same size, and written within
    // the same second, so that only its inode (and mtime) tell it from the one the line describes.
    const file = path.join(dataDir, 'ingestion', 'k.csv._S3rver_object');
    const described = fs.statSync(file);
    fs.writeFileSync(`${file}.next`, 'secon');
    fs.utimesSync(`${file}.next`, described.atime, described.mtime);
    fs.renameSync(`${file}.next`, file);
    expect(fs.statSync(file).size).toBe(described.size);
    await withS3(dataDir, async (client) => {
      const got = await client.send(new GetObjectCommand({ Bucket: 'ingestion', Key: 'k.csv' }));
      expect(got.ETag).toBe(`"${createHash('md5').update('secon').digest('hex')}"`);
      expect(await got.Body!.transformToString()).toBe('secon');
    });
  });

  it('leaves no md5 of an earlier version to describe a new one whose PUT was killed after its rename', async () => {
    // Prepare: an object as s3rver 3.7 left it, with its `.md5` file.
    const dataDir = tempDir();
    await withS3(dataDir, async () => undefined);
    const dir = path.join(dataDir, 'ingestion', 'old');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'a.csv._S3rver_object');
    fs.writeFileSync(file, 'old\n');
    fs.writeFileSync(`${file}.md5`, createHash('md5').update('old\n').digest('hex'));
    // Act: a new version whose PUT dies (as a kill -9 would end it) right after its rename.
    const rename = fs.renameSync;
    const killed = jest.spyOn(fs, 'renameSync').mockImplementation((from, to) => {
      rename(from, to);
      if (to === file) throw new Error('killed after the rename');
    });
    try {
      await withS3(dataDir, async (client) => {
        await expect(
          client.send(new PutObjectCommand({ Bucket: 'ingestion', Key: 'old/a.csv', Body: 'new\n' })),
        ).rejects.toBeDefined();
      });
    } finally {
      killed.mockRestore();
    }
    // Assess: after a restart the object reads as the new content, with the new content's ETag.
    await withS3(dataDir, async (client) => {
      const got = await client.send(new GetObjectCommand({ Bucket: 'ingestion', Key: 'old/a.csv' }));
      expect(await got.Body!.transformToString()).toBe('new\n');
      expect(got.ETag).toBe(`"${createHash('md5').update('new\n').digest('hex')}"`);
    });
  });

  it("copies an object with its metadata (or the request's, with REPLACE), and deletes it with its directories", async () => {
    await withS3(tempDir(), async (client, s3) => {
      await client.send(
        new PutObjectCommand({
          Bucket: 'ingestion',
          Key: 'a/b/src.csv',
          Body: 'x,y\n',
          ContentType: 'text/csv',
          Metadata: { table: 'staff' },
        }),
      );
      await client.send(
        new CopyObjectCommand({
          Bucket: 'processed',
          Key: 'c/copy.csv',
          CopySource: 'ingestion/a/b/src.csv',
        }),
      );
      await client.send(
        new CopyObjectCommand({
          Bucket: 'processed',
          Key: 'c/replaced.csv',
          CopySource: 'ingestion/a/b/src.csv',
          MetadataDirective: 'REPLACE',
          ContentType: 'text/plain',
          Metadata: { other: 'yes' },
        }),
      );
      const copy = await client.send(new GetObjectCommand({ Bucket: 'processed', Key: 'c/copy.csv' }));
      expect(copy).toMatchObject({ ContentType: 'text/csv', Metadata: { table: 'staff' } });
      expect(await copy.Body!.transformToString()).toBe('x,y\n');
      const replaced = await client.send(
        new HeadObjectCommand({ Bucket: 'processed', Key: 'c/replaced.csv' }),
      );
      expect(replaced).toMatchObject({ ContentType: 'text/plain', Metadata: { other: 'yes' } });

      await client.send(new DeleteObjectCommand({ Bucket: 'ingestion', Key: 'a/b/src.csv' }));
      await expect(
        client.send(new HeadObjectCommand({ Bucket: 'ingestion', Key: 'a/b/src.csv' })),
      ).rejects.toMatchObject({ name: 'NotFound' });
      expect(fs.readdirSync(path.join(s3.dataDir, 'ingestion'))).toEqual([]);
    });
  });

  it('reports a directory it cannot use', async () => {
    const file = path.join(tempDir(), 'not-a-dir');
    fs.writeFileSync(file, '');
    await expect(startS3rver({ dataDir: path.join(file, 's3'), buckets: ['b'] })).rejects.toThrow();
    const taken = await startS3rver({ dataDir: tempDir(), buckets: [] });
    try {
      await expect(startS3rver({ dataDir: tempDir(), buckets: [], port: taken.port })).rejects.toBeInstanceOf(
        LocalS3StartError,
      );
    } finally {
      await taken.stop();
    }
  });
});

describe('listObjectsSince', () => {
  it('lists objects modified from the second `since` falls in, oldest first, under a prefix', async () => {
    await withS3(tempDir(), async (client) => {
      await client.send(new PutObjectCommand({ Bucket: 'ingestion', Key: 'p/old', Body: '1' }));
      await client.send(new PutObjectCommand({ Bucket: 'ingestion', Key: 'q/other', Body: '1' }));
      // `q/other` was written after `p/old`, so it is the later of the two (or in the same second).
      const [other] = await listObjectsSince(client, 'ingestion', new Date(0), { prefix: 'q/' });
      // LastModified has whole seconds: write a marker until one lands in a later second than
      // both, and list from the marker's own time. (A `since` from this process' clock raced the
      // file system's coarser clock: an object written just after it could carry a time before it.
      // Waiting on `p/old` alone failed when a second boundary fell between the first two writes:
      // `q/other` then shared the new objects' second and sorted after them.)
      let since = other.lastModified;
      await waitFor(
        'a marker written in the next second',
        async () => {
          await client.send(new PutObjectCommand({ Bucket: 'ingestion', Key: 'm/marker', Body: '' }));
          [{ lastModified: since }] = await listObjectsSince(client, 'ingestion', new Date(0), {
            prefix: 'm/',
          });
          return since.getTime() >= other.lastModified.getTime() + 1000 ? true : undefined;
        },
        10_000,
      );
      await client.send(new PutObjectCommand({ Bucket: 'ingestion', Key: 'p/new-b', Body: '22' }));
      await client.send(new PutObjectCommand({ Bucket: 'ingestion', Key: 'p/new-a', Body: '1' }));

      const listed = await listObjectsSince(client, 'ingestion', since, { prefix: 'p/' });

      expect(listed.map((o) => o.key).sort()).toEqual(['p/new-a', 'p/new-b']);
      const all = await listObjectsSince(client, 'ingestion', new Date(0));
      expect(all).toHaveLength(5);
      for (const list of [listed, all])
        for (let i = 1; i < list.length; i++) {
          const [a, b] = [list[i - 1], list[i]];
          const order = a.lastModified.getTime() - b.lastModified.getTime() || a.key.localeCompare(b.key);
          expect(order).toBeLessThan(0);
        }
      expect(all.filter((o) => o.key !== 'm/marker').map((o) => o.key)).toEqual([
        'p/old',
        'q/other',
        ...listed.map((o) => o.key),
      ]);
    });
  });
});

describe('event keys', () => {
  it('encode as S3 does and decode back', () => {
    for (const key of ['a b', 'x=1/y+z', 'ünï/😀', 'plain/path.csv'])
      expect(decodeS3ObjectKey(encodeS3EventKey(key))).toBe(key);
    expect(encodeS3EventKey('a b/c=d')).toBe('a+b/c%3Dd');
  });
});

it('refuses an object key that would leave its bucket directory', async () => {
  const root = tempDir();
  const dataDir = path.join(root, 's3');
  await withS3(dataDir, async (client) => {
    await expect(
      client.send(new PutObjectCommand({ Bucket: 'ingestion', Key: '../../escaped/x', Body: 'no' })),
    ).rejects.toThrow();
  });
  expect(fs.existsSync(path.join(root, 'escaped'))).toBe(false);
});
