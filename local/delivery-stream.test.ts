import { DeleteStreamCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import { CreateBucketCommand, GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KinesisSink, type SinkRecord } from '../capture/kinesis-sink';
import { encodeChangeBatch, type Change, type ChangeBatch } from '../core/change-event';
import {
  changeBatchFactory,
  changeFactory,
  HOSTILE_VALUES,
  identityOf,
  staffBatch,
  STAFF_COLUMNS,
} from '../core/csv-codec.fixtures';
import { decodeCsvObject, decodeSchemaObject, parseDataObjectKey, schemaObjectKey } from '../core/csv-codec';
import { createHandler } from '../processors/firehose-transform/create-handler';
import type { FirehoseTransform } from '../processors/firehose-transform/firehose-types';
import { waitFor } from '../test/support/pg';
import { CHECKPOINT_FILE, CheckpointMismatchError, CheckpointStore } from './delivery-stream-checkpoint';
import {
  DELIVERY_ERROR_CODES,
  DeliveryStream,
  DeliveryStreamAlreadyRunningError,
  KinesisReadError,
  ObjectWriteError,
  type DeliveryStreamOptions,
  type ProcessingFailedRecord,
} from './delivery-stream';
import { formatUtc } from './delivery-stream-prefix';
import { ensureStream, kinesisClientFor, startKinesalite, type LocalKinesis } from './kinesalite';
import { listObjectsSince, s3ClientFor, startS3rver, type LocalS3 } from './s3rver';

let kinesis: LocalKinesis;
let kc: KinesisClient;
let s3: LocalS3;
let sc: S3Client;
let root: string;
let counter = 0;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-delivery-'));
  kinesis = await startKinesalite();
  kc = kinesisClientFor(kinesis.endpoint);
  s3 = await startS3rver({ dataDir: path.join(root, 's3'), buckets: [] });
  sc = s3ClientFor(s3.endpoint);
});

// kinesalite allows 10 shards per account, as AWS's default did: free each test's stream.
const streams: string[] = [];
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

/** A fresh stream (2 shards), bucket and checkpoint directory per test. */
async function environment(shards = 2) {
  counter += 1;
  const streamName = `changes-${counter}`;
  const bucket = `ingestion-${counter}`;
  await ensureStream(kc, streamName, shards);
  streams.push(streamName);
  await sc.send(new CreateBucketCommand({ Bucket: bucket }));
  const checkpointDir = path.join(root, `checkpoint-${counter}`);
  const sink = new KinesisSink({ client: kc, streamName });
  const put = (batches: ChangeBatch[]) =>
    sink.put(
      batches.map((b, i): SinkRecord => ({
        partitionKey: `${b.table}:${b.changes[0].values[0] ?? i}`,
        data: encodeChangeBatch(b),
      })),
    );
  const deliveryStream = (overrides: Partial<DeliveryStreamOptions> = {}) =>
    new DeliveryStream({
      kinesis: kc,
      streamName,
      s3: sc,
      bucket,
      transform: createHandler({ s3: sc, bucket }),
      checkpointDir,
      pollIntervalMs: 20,
      bufferingHints: { intervalMs: 200 },
      // Most tests put records first; the default (LATEST, as Firehose) has tests of its own.
      startingPosition: { type: 'TRIM_HORIZON' },
      ...overrides,
    });
  return { streamName, bucket, checkpointDir, sink, put, deliveryStream };
}

interface DataObject {
  key: string;
  table: string;
  fingerprint: string;
  size: number;
  changes: Change[];
}

/** Every CSV object in the bucket, decoded with the schema object its key names. */
async function readIngested(bucket: string): Promise<DataObject[]> {
  const out: DataObject[] = [];
  for (const o of await listObjectsSince(sc, bucket, new Date(0), { prefix: 'totesys/' })) {
    const where = parseDataObjectKey(o.key);
    if (!where) throw new Error(`unexpected key ${o.key}`);
    const schema = decodeSchemaObject(await getText(bucket, schemaObjectKey(where.table, where.fingerprint)));
    out.push({
      key: o.key,
      ...where,
      size: o.size,
      changes: decodeCsvObject(await getText(bucket, o.key), schema),
    });
  }
  return out;
}

async function getText(bucket: string, key: string): Promise<string> {
  const res = await sc.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return res.Body!.transformToString();
}

/** identity → change, over every object; throws if one identity came with two different contents. */
function byIdentity(objects: DataObject[]): { changes: Map<string, Change>; copies: number } {
  const changes = new Map<string, Change>();
  let copies = 0;
  for (const o of objects)
    for (const c of o.changes) {
      const id = identityOf(o.table, c);
      const seen = changes.get(id);
      if (seen) {
        copies += 1;
        expect(c).toEqual(seen);
      }
      changes.set(id, c);
    }
  return { changes, copies };
}

function expected(batches: ChangeBatch[]): Map<string, Change> {
  return new Map(batches.flatMap((b) => b.changes.map((c) => [identityOf(b.table, c), c] as const)));
}

async function waitForAll(bucket: string, batches: ChangeBatch[], timeoutMs = 20_000) {
  const want = expected(batches);
  return waitFor(
    `${want.size} changes in ${bucket}`,
    async () => {
      const objects = await readIngested(bucket);
      const got = byIdentity(objects);
      return [...want.keys()].every((id) => got.changes.has(id)) ? { objects, ...got } : undefined;
    },
    timeoutMs,
  );
}

/**
 * Fault injection: wraps a client so that, once `cut()` (or the `cutAfter` predicate) fires, every
 * call hangs forever, like a process that froze or died mid-call. A call the predicate matches is
 * carried out first, so its effect lands without its caller ever hearing of it.
 */
function powerSwitch() {
  let off = false;
  const never = new Promise<never>(() => undefined);
  return {
    cut: () => {
      off = true;
    },
    wrap<C extends { send: (...args: never[]) => Promise<unknown> }>(
      client: C,
      cutAfter?: (command: { constructor: { name: string }; input: Record<string, unknown> }) => boolean,
    ): C {
      return {
        send: async (command: never) => {
          if (off) return never;
          const result = await client.send(command);
          if (cutAfter?.(command)) off = true;
          return off ? never : result;
        },
      } as unknown as C;
    },
  };
}

/** Fault injection: the calls `fail` picks throw the error it returns, the rest go through. */
function faulty<C extends { send: (...args: never[]) => Promise<unknown> }>(
  client: C,
  fail: (command: { constructor: { name: string }; input: Record<string, unknown> }) => Error | undefined,
): C {
  return {
    send: async (command: never) => {
      const error = fail(command);
      if (error) throw error;
      return client.send(command);
    },
  } as unknown as C;
}

const transient = (name: string) => Object.assign(new Error(`injected ${name}`), { name, $fault: 'server' });

describe('DeliveryStream against kinesalite and s3rver', () => {
  it('delivers hostile values from several tables as CSV objects that read back exactly', async () => {
    // Prepare: hostile staff rows over three records, another table, TOAST and truncate markers.
    const env = await environment();
    const currencyColumns = [
      { name: 'currency_id', type: 'int4', key: true },
      { name: 'currency_code', type: 'text', key: false },
      { name: 'notes', type: 'text', key: false },
    ];
    const batches = [
      staffBatch({ firstId: 0, count: HOSTILE_VALUES.length }),
      staffBatch({ firstId: 100, count: HOSTILE_VALUES.length }),
      staffBatch({ firstId: 200, count: 5 }),
      changeBatchFactory({
        table: 'currency',
        columns: currencyColumns,
        changes: [
          changeFactory({ lsn: '0/5000', seq: 0, values: ['1', 'GBP', 'big'] }),
          changeFactory({ op: 'update', lsn: '0/6000', seq: 0, values: ['1', 'EUR', null], unchanged: [2] }),
          changeFactory({ op: 'delete', lsn: '0/7000', seq: 0, values: ['1', null, null] }),
          changeFactory({ op: 'truncate', lsn: '0/8000', seq: 0, values: [] }),
        ],
      }),
    ];
    const hourBefore = formatUtc('yyyy/MM/dd/HH', Date.now());
    const ds = env.deliveryStream();
    const running = ds.run();

    // Act
    const put = await env.put(batches);
    const result = await waitForAll(env.bucket, batches);
    await ds.stop();
    await running;

    // Assess: exactly what went in, each change once (nothing was redelivered).
    expect(result.copies).toBe(0);
    expect(result.changes).toEqual(expected(batches));
    const hours = new Set([hourBefore, formatUtc('yyyy/MM/dd/HH', Date.now())]);
    for (const o of result.objects) {
      const m =
        /^totesys\/(\w+)\/schema=([0-9a-f]{16})\/(\d{4}\/\d{2}\/\d{2}\/\d{2})\/totes-ingestion-1-\d{4}(-\d{2}){5}-shardId-\d{12}-\d+-[0-9a-f]{8}\.csv$/.exec(
          o.key,
        );
      expect(m).not.toBeNull();
      expect(hours.has(m![3])).toBe(true);
      expect(new Set(o.changes.map(() => o.table)).size).toBe(1);
    }
    expect(new Set(result.objects.map((o) => o.table))).toEqual(new Set(['staff', 'currency']));
    const metrics = ds.metrics();
    expect(metrics).toMatchObject({
      recordsIn: batches.length,
      recordsOk: batches.length,
      recordsFailed: 0,
      objectsOut: result.objects.length,
      bufferedRecords: 0,
      bufferedPartitions: 0,
      oldestBufferedAgeMs: 0,
    });
    expect(metrics.bytesOut).toBe(result.objects.reduce((n, o) => n + o.size, 0));
    // The checkpoint names the last record of every shard that had records.
    const saved = await new CheckpointStore(env.checkpointDir, env.streamName, ds.name).load();
    for (const seq of saved.values()) expect(put.sequenceNumbers).toContain(seq);
    expect(saved.size).toBe(
      new Set(metrics.shards.filter((s) => s.recordsIn > 0).map((s) => s.shardId)).size,
    );
  });

  it('gives a column added mid-stream its own schema object and prefix; old objects stay readable', async () => {
    const env = await environment(1);
    const ds = env.deliveryStream();
    const running = ds.run();
    const v1 = [staffBatch({ firstId: 0, count: 10 })];
    await env.put(v1);
    await waitForAll(env.bucket, v1);

    const columns = [...STAFF_COLUMNS, { name: 'nickname', type: 'text', key: false }];
    const v2 = [staffBatch({ columns, firstId: 10, count: 10, firstLsn: '00000001/00000000' })];
    await env.put(v2);
    const result = await waitForAll(env.bucket, [...v1, ...v2]);
    await ds.stop();
    await running;

    const fingerprints = new Set(result.objects.map((o) => o.fingerprint));
    expect(fingerprints.size).toBe(2);
    const byLayout = (n: number) => result.objects.filter((o) => o.changes[0].values.length === n);
    expect(byLayout(5).flatMap((o) => o.changes)).toEqual(v1[0].changes);
    expect(byLayout(6).flatMap((o) => o.changes)).toEqual(v2[0].changes);
  });

  it('flushes a partition when it reaches the size hint, keeping objects within it', async () => {
    // Prepare: an interval far beyond the test, so only size can flush before stop().
    const env = await environment(1);
    const sizeBytes = 4_096;
    const ds = env.deliveryStream({ bufferingHints: { sizeBytes, intervalMs: 600_000 } });
    const running = ds.run();
    const batches = Array.from({ length: 40 }, (_, i) => staffBatch({ firstId: i * 5, count: 5 }));

    // Act
    await env.put(batches);
    const flushed = await waitFor('objects flushed by size', async () => {
      const objects = await readIngested(env.bucket);
      return ds.metrics().recordsIn === batches.length && objects.length >= 3 ? objects : undefined;
    });
    const whileRunning = ds.metrics();
    await ds.stop();
    await running;

    // Assess: objects written while running were full (within the hint, and nearly at it).
    for (const o of flushed) {
      expect(o.size).toBeLessThanOrEqual(sizeBytes);
      expect(o.size).toBeGreaterThan(sizeBytes / 2);
    }
    expect(whileRunning.bufferedRecords).toBeGreaterThan(0);
    const all = await waitForAll(env.bucket, batches);
    expect(all.copies).toBe(0);
  });

  it('flushes a partition when its first record has waited the interval hint', async () => {
    const env = await environment(1);
    const intervalMs = 400;
    const ds = env.deliveryStream({ bufferingHints: { sizeBytes: 64 * 1024 * 1024, intervalMs } });
    const running = ds.run();

    for (const firstId of [0, 10]) {
      const batch = staffBatch({ firstId, count: 10 });
      const putAt = Date.now();
      await env.put([batch]);
      const seen = await waitFor('an object flushed by time', async () => {
        const objects = await readIngested(env.bucket);
        return objects.some((o) => o.changes.some((c) => c.values[0] === String(firstId)))
          ? Date.now()
          : undefined;
      });
      // Assess: written no sooner than the interval after the record arrived, with the run going on.
      expect(seen - putAt).toBeGreaterThanOrEqual(intervalMs - 50);
    }
    expect(ds.metrics().objectsOut).toBe(2);
    await ds.stop();
    await running;
  });

  it('loses nothing when killed without stop(): a new instance resumes from the checkpoint', async () => {
    // Prepare: small reads (so checkpoints are saved as it goes) and a size hint that writes often.
    const env = await environment(2);
    const batches = Array.from({ length: 60 }, (_, i) => staffBatch({ firstId: i * 3, count: 3 }));
    await env.put(batches);
    const power = powerSwitch();
    let dataObjects = 0;
    const crashing = env.deliveryStream({
      kinesis: power.wrap(kc),
      // The fifth data object lands in S3, then the process "dies" before hearing so.
      s3: power.wrap(sc, (command) => {
        if (command.constructor.name !== 'PutObjectCommand') return false;
        if (!String(command.input.Key).startsWith('totesys/')) return false;
        return ++dataObjects === 5;
      }),
      transform: createHandler({ s3: power.wrap(sc), bucket: env.bucket }),
      getRecordsLimit: 5,
      bufferingHints: { sizeBytes: 1_500, intervalMs: 600_000 },
    });

    // Act: run until the power goes, then drop the instance.
    void crashing.run();
    await waitFor('the crash', () => (dataObjects >= 5 ? true : undefined));
    const checkpointAtCrash = JSON.parse(
      await fs.promises.readFile(path.join(env.checkpointDir, CHECKPOINT_FILE), 'utf8'),
    ) as { shards: Record<string, string> };
    const restarted = env.deliveryStream();
    const running = restarted.run();
    const result = await waitForAll(env.bucket, batches);
    await restarted.stop();
    await running;

    // Assess: everything arrived; what came twice came with the same identity and content
    // (byIdentity checks that); the restart read from the checkpoint, not from the beginning.
    expect(result.changes).toEqual(expected(batches));
    expect(result.copies).toBeGreaterThan(0);
    expect(Object.keys(checkpointAtCrash.shards).length).toBeGreaterThan(0);
    expect(restarted.metrics().recordsIn).toBeLessThan(batches.length);
  });

  it('starts, as Firehose, where the stream is when it FIRST starts, durably (LATEST, then its checkpoint)', async () => {
    // Prepare: records already in the stream before the delivery stream ever ran.
    const env = await environment(2);
    const before = [staffBatch({ firstId: 0, count: 2 }), staffBatch({ firstId: 2, count: 2 })];
    await env.put(before);
    const latest = { startingPosition: undefined };

    // Act 1: start it with the default, and write only once it is ready.
    const first = env.deliveryStream(latest);
    const runningFirst = first.run();
    await first.ready();
    const during = [staffBatch({ firstId: 4, count: 2 }), staffBatch({ firstId: 6, count: 2 })];
    await env.put(during);
    await waitForAll(env.bucket, during);
    await first.stop();
    await runningFirst;

    // Assess 1: what was there before the first start is passed over, never delivered.
    const once = byIdentity(await readIngested(env.bucket)).changes;
    expect(once).toEqual(expected(during));
    expect(first.metrics().recordsBeforeStart).toBe(before.length);

    // Act 2: a second delivery stream whose first start is recorded, then dies before delivering
    // anything; records arrive while it is down; a new instance on the same checkpoint starts.
    const second = await environment(1);
    const power = powerSwitch();
    const dying = second.deliveryStream({ ...latest, kinesis: power.wrap(kc) });
    void dying.run();
    await dying.ready();
    power.cut();
    const whileDown = [staffBatch({ firstId: 100, count: 2 })];
    await second.put(whileDown);
    const restarted = second.deliveryStream(latest);
    const runningRestarted = restarted.run();
    await restarted.ready();

    // Assess 2: the restart reads from the FIRST start, not from where the stream is now (a
    // non-durable LATEST would lose what arrived while it was down).
    const result = await waitForAll(second.bucket, whileDown);
    await restarted.stop();
    await runningRestarted;
    expect(result.changes).toEqual(expected(whileDown));
    const file = JSON.parse(
      await fs.promises.readFile(path.join(second.checkpointDir, CHECKPOINT_FILE), 'utf8'),
    );
    expect(Date.parse(file.firstStartedAt)).toBeLessThan(Date.now());
  });

  it('keeps reading everything retained when its checkpoint predates the recorded first start', async () => {
    const env = await environment(1);
    const old = [staffBatch({ firstId: 0, count: 2 })];
    await env.put(old);
    await new CheckpointStore(env.checkpointDir, env.streamName, 'totes-ingestion').save(new Map());
    const ds = env.deliveryStream({ startingPosition: undefined });
    const running = ds.run();

    const result = await waitForAll(env.bucket, old);
    await ds.stop();
    await running;

    expect(result.changes).toEqual(expected(old));
  });

  it('after a clean stop, a restart delivers only new records', async () => {
    const env = await environment(2);
    const first = [staffBatch({ firstId: 0, count: 4 }), staffBatch({ firstId: 4, count: 4 })];
    const a = env.deliveryStream();
    const runningA = a.run();
    await env.put(first);
    await waitForAll(env.bucket, first);
    await a.stop();
    await runningA;

    const second = [staffBatch({ firstId: 8, count: 4 }), staffBatch({ firstId: 12, count: 4 })];
    await env.put(second);
    const b = env.deliveryStream();
    const runningB = b.run();
    const result = await waitForAll(env.bucket, [...first, ...second]);
    await b.stop();
    await runningB;

    expect(result.copies).toBe(0);
    expect(b.metrics().recordsIn).toBe(second.length);
  });

  it("writes records the function fails to errors/processing-failed/, in Firehose's error shape", async () => {
    // Prepare: garbage between valid batches, on one shard so order is known.
    const env = await environment(1);
    const valid = [staffBatch({ firstId: 0, count: 3 }), staffBatch({ firstId: 3, count: 3 })];
    const garbage = [Buffer.from('not json'), Buffer.from('{"v":1,"table":"x"}')];
    const put = await env.sink.put([
      { partitionKey: 'a', data: encodeChangeBatch(valid[0]) },
      { partitionKey: 'b', data: garbage[0] },
      { partitionKey: 'c', data: garbage[1] },
      { partitionKey: 'd', data: encodeChangeBatch(valid[1]) },
    ]);
    const ds = env.deliveryStream();
    const running = ds.run();

    // Act
    await waitForAll(env.bucket, valid);
    const errorObjects = await waitFor('error objects', async () => {
      const listed = await listObjectsSince(sc, env.bucket, new Date(0), { prefix: 'errors/' });
      const lines = (await Promise.all(listed.map((o) => getText(env.bucket, o.key))))
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as ProcessingFailedRecord);
      return lines.length === 2 ? { listed, lines } : undefined;
    });
    await ds.stop();
    await running;

    // Assess
    for (const o of errorObjects.listed)
      expect(o.key).toMatch(/^errors\/processing-failed\/\d{4}\/\d{2}\/\d{2}\/\d{2}\/totes-ingestion-1-/);
    expect(errorObjects.lines.map((l) => Buffer.from(l.rawData, 'base64'))).toEqual(garbage);
    for (const line of errorObjects.lines) {
      expect(line).toMatchObject({ attemptsMade: 1, errorCode: DELIVERY_ERROR_CODES.processingFailed });
      expect(Object.keys(line).sort()).toEqual([
        'arrivalTimestamp',
        'attemptEndingTimestamp',
        'attemptsMade',
        'errorCode',
        'errorMessage',
        'lambdaArn',
        'rawData',
      ]);
    }
    expect(ds.metrics()).toMatchObject({ recordsFailed: 2, errorObjectsOut: 1 });
    // Failed records do not hold the checkpoint back: it reached the last record.
    const saved = await new CheckpointStore(env.checkpointDir, env.streamName, ds.name).load();
    expect([...saved.values()]).toEqual([put.sequenceNumbers[3]]);
  });

  it('retries a failing function, then sends its records to the error prefix', async () => {
    const env = await environment(1);
    const batch = staffBatch({ firstId: 0, count: 2 });
    await env.put([batch]);
    const real = createHandler({ s3: sc, bucket: env.bucket });

    // A function that fails twice, then works: the data arrives, nothing goes to errors.
    let calls = 0;
    const flaky: FirehoseTransform = async (event) => {
      calls += 1;
      if (calls <= 2) throw new Error('cold start timeout');
      return real(event);
    };
    const a = env.deliveryStream({ transform: flaky });
    const runningA = a.run();
    await waitForAll(env.bucket, [batch]);
    await a.stop();
    await runningA;
    expect(a.metrics()).toMatchObject({ invocations: 3, recordsOk: 1, recordsFailed: 0 });

    // A function that always fails: after 1 + transformRetries attempts, the record is an error.
    const broken = env.deliveryStream({
      name: 'broken',
      checkpointDir: path.join(env.checkpointDir, 'broken'),
      transform: async () => {
        throw new Error('boom');
      },
      transformRetries: 1,
    });
    const runningB = broken.run();
    await waitFor('the error object', () => (broken.metrics().errorObjectsOut === 1 ? true : undefined));
    await broken.stop();
    await runningB;
    const [line] = await errorLines(env.bucket, 'broken-');
    expect(line).toMatchObject({
      attemptsMade: 2,
      errorCode: DELIVERY_ERROR_CODES.invocationFailed,
      errorMessage: 'boom',
    });
  });

  it('treats Dropped as delivered, and malformed responses or missing partition keys as errors', async () => {
    const env = await environment(1);
    const batches = [0, 1, 2, 3].map((firstId) => staffBatch({ firstId, count: 1 }));
    await env.put(batches);
    let invocation = 0;
    const quirky: FirehoseTransform = async (event) => {
      invocation += 1;
      const [record] = event.records;
      switch (invocation) {
        case 1:
          return { records: [{ recordId: record.recordId, result: 'Dropped', data: '' }] };
        case 2:
          return { records: [{ recordId: record.recordId, result: 'Ok', data: record.data }] };
        case 3:
          return { records: [] };
        default:
          return { records: [{ recordId: record.recordId, result: 'Bogus' }] } as never;
      }
    };
    const ds = env.deliveryStream({ name: 'quirky', transform: quirky, maxInvocationBytes: 1 });
    const running = ds.run();
    await waitFor('three outcomes', () => {
      const m = ds.metrics();
      return m.recordsDropped === 1 && m.recordsFailed === 3 && m.errorObjectsOut === 1 ? m : undefined;
    });
    await ds.stop();
    await running;
    const lines = await errorLines(env.bucket, 'quirky-');
    expect(lines.map((l) => l.errorCode).sort()).toEqual(
      [
        DELIVERY_ERROR_CODES.missingPartitionKey,
        DELIVERY_ERROR_CODES.invalidResponse,
        DELIVERY_ERROR_CODES.invalidResponse,
      ].sort(),
    );
  });

  it('reads a shard at most once per poll interval, as Kinesis allows (5 GetRecords per shard per second)', async () => {
    // Prepare: a backlog of many one-record pages on one shard; the stream's clock stands still
    // until the test moves it, so only the clock, never real time, can make a read due.
    const env = await environment(1);
    const batches = Array.from({ length: 12 }, (_, i) => staffBatch({ firstId: i, count: 1 }));
    await env.put(batches);
    let clock = 1_000_000;
    let reads = 0;
    const ds = env.deliveryStream({
      now: () => clock,
      pollIntervalMs: 20,
      getRecordsLimit: 1,
      kinesis: faulty(kc, (command) => {
        if (command.constructor.name === 'GetRecordsCommand') reads += 1;
        return undefined;
      }),
    });
    const running = ds.run();
    let ticking: NodeJS.Timeout | undefined;
    try {
      await waitFor('the first read', () => (reads > 0 ? true : undefined));
      // Many poll intervals of real time: a loop that re-read a busy shard at once would have read
      // the whole backlog by now.
      await new Promise((resolve) => setTimeout(resolve, 400));
      expect(reads).toBe(1);
      clock += 20;
      await waitFor('the second read', () => (reads > 1 ? true : undefined));
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(reads).toBe(2);
      // A clock stepped back a minute (NTP) does not stop the reads for a minute.
      clock -= 60_000;
      await waitFor('a read after the clock stepped back', () => (reads > 2 ? true : undefined));
      clock += 60_000;
      // Then, with time moving, the backlog is read to the end and delivered.
      ticking = setInterval(() => (clock += 20), 5);
      const result = await waitForAll(env.bucket, batches);
      expect(result.copies).toBe(0);
    } finally {
      clearInterval(ticking);
      await ds.stop();
      await running;
    }
    expect(ds.metrics().getRecordsCalls).toBe(reads);
  });

  it('rides out Kinesis and S3 failures and expired iterators, losing and repeating nothing', async () => {
    const env = await environment(2);
    const batches = Array.from({ length: 8 }, (_, i) => staffBatch({ firstId: i * 2, count: 2 }));
    await env.put(batches);
    const injected: Record<string, number> = {};
    const once = (what: string, times: number, error: Error) => {
      injected[what] = (injected[what] ?? 0) + 1;
      return injected[what] <= times ? error : undefined;
    };
    const ds = env.deliveryStream({
      getRecordsLimit: 3,
      kinesis: faulty(kc, (command) => {
        switch (command.constructor.name) {
          case 'ListShardsCommand':
            return once('list', 1, transient('ServiceUnavailableException'));
          case 'GetShardIteratorCommand':
            return once('iterator', 1, transient('InternalFailure'));
          case 'GetRecordsCommand':
            return (
              once('records', 1, transient('ProvisionedThroughputExceededException')) ??
              once(
                'expired',
                2,
                Object.assign(new Error('Iterator expired'), { name: 'ExpiredIteratorException' }),
              )
            );
          default:
            return undefined;
        }
      }),
      s3: faulty(sc, (command) =>
        String(command.input.Key).startsWith('totesys/')
          ? once('put', 2, transient('InternalError'))
          : undefined,
      ),
    });
    const running = ds.run();
    const result = await waitForAll(env.bucket, batches);
    await ds.stop();
    await running;

    expect(result.copies).toBe(0);
    expect(result.changes).toEqual(expected(batches));
    expect(injected.put).toBeGreaterThan(2);
    expect(injected.expired).toBeGreaterThan(2);
  });

  it('gives up writing once stopping while S3 is down, and the next run delivers it all', async () => {
    const env = await environment(1);
    const batches = [staffBatch({ firstId: 0, count: 3 })];
    await env.put(batches);
    let attempts = 0;
    const down = env.deliveryStream({
      s3: faulty(sc, (command) => {
        if (!String(command.input.Key).startsWith('totesys/')) return undefined;
        attempts += 1;
        return transient('ServiceUnavailable');
      }),
    });
    const runningDown = down.run();
    await waitFor('a failed write', () => (attempts > 0 ? true : undefined));
    await down.stop();
    await runningDown;
    expect(down.metrics()).toMatchObject({ objectsOut: 0, recordsIn: 1 });
    expect(await new CheckpointStore(env.checkpointDir, env.streamName, 'totes-ingestion').load()).toEqual(
      new Map(),
    );

    const healthy = env.deliveryStream();
    const running = healthy.run();
    const result = await waitForAll(env.bucket, batches);
    await healthy.stop();
    await running;
    expect(result.copies).toBe(0);
  });

  it('fails run() on a stream that does not exist, and refuses a second run()', async () => {
    const env = await environment(1);
    const missing = env.deliveryStream({
      streamName: 'no-such-stream',
      checkpointDir: path.join(root, 'none'),
    });
    const error = await missing.run().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KinesisReadError);
    expect(error).toMatchObject({ streamName: 'no-such-stream', operation: 'ListShards' });
    expect(() => missing.run()).toThrow(DeliveryStreamAlreadyRunningError);
  });

  it('fails run() when the bucket does not exist, keeping the records unacknowledged', async () => {
    const env = await environment(1);
    await env.put([staffBatch({ firstId: 0, count: 1 })]);
    const ds = env.deliveryStream({
      bucket: 'no-such-bucket',
      transform: createHandler({ s3: sc, bucket: env.bucket }),
    });
    const error = await ds.run().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ObjectWriteError);
    expect(error).toMatchObject({ bucket: 'no-such-bucket' });
    expect(await new CheckpointStore(env.checkpointDir, env.streamName, 'totes-ingestion').load()).toEqual(
      new Map(),
    );
  });

  it('refuses a checkpoint directory that belongs to another stream', async () => {
    const env = await environment(1);
    await new CheckpointStore(env.checkpointDir, 'another-stream', 'totes-ingestion').save(
      new Map([['shardId-000000000000', '1']]),
    );
    await expect(env.deliveryStream().run()).rejects.toBeInstanceOf(CheckpointMismatchError);
  });
});

async function errorLines(bucket: string, namePrefix: string): Promise<ProcessingFailedRecord[]> {
  const listed = await listObjectsSince(sc, bucket, new Date(0), { prefix: 'errors/' });
  const texts = await Promise.all(
    listed.filter((o) => path.basename(o.key).startsWith(namePrefix)).map((o) => getText(bucket, o.key)),
  );
  return texts
    .join('')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as ProcessingFailedRecord);
}
