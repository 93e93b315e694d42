import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeChangeBatch } from '../../core/change-event';
import {
  changeBatchFactory,
  changeFactory,
  HOSTILE_VALUES,
  staffBatch,
  STAFF_COLUMNS,
} from '../../core/csv-codec.fixtures';
import {
  decodeCsvObject,
  decodeSchemaObject,
  encodeChangeBatchAsCsv,
  encodeSchemaObject,
  schemaFingerprint,
  schemaObjectFor,
  schemaObjectKey,
} from '../../core/csv-codec';
import { createLogger } from '../../core/logger';
import { encodeChangeBatchAsMixedCsv } from '../../core/mixed-csv';
import { compressRecord, isGzip } from '../../core/record-compression';
import { s3ClientFor, startS3rver } from '../../local/s3rver';
import { useLocalS3 } from '../../test/support/local-s3';
import {
  createHandler,
  InvalidTransformationEventError,
  MissingConfigurationError,
  readTransformConfig,
  SchemaObjectWriteError,
} from './create-handler';
import type { FirehoseTransformationEvent, FirehoseTransformationEventRecord } from './firehose-types';

const BUCKET = 'ingestion';

const local = useLocalS3([BUCKET]);
let client: S3Client;
beforeAll(() => ({ client } = local));

/** A Kinesis-sourced Firehose record, as Firehose hands it to the function (cf. powertools' factories). */
let sequence = 49_546_986_683_135_544_286_507_457_936_321_625_675_700_192_471_156_785_154n;
function firehoseRecordFactory(
  data: Uint8Array | string,
  shardId = 'shardId-000000000000',
): FirehoseTransformationEventRecord {
  sequence += 1n;
  const arrival = 1_740_733_702_123;
  return {
    recordId: `${sequence}000000`,
    approximateArrivalTimestamp: arrival,
    data: typeof data === 'string' ? data : Buffer.from(data).toString('base64'),
    kinesisRecordMetadata: {
      shardId,
      partitionKey: 'staff:1',
      approximateArrivalTimestamp: arrival,
      sequenceNumber: String(sequence),
      subsequenceNumber: 0,
    },
  };
}

function firehoseEventFactory(records: FirehoseTransformationEventRecord[]): FirehoseTransformationEvent {
  return {
    invocationId: `invocation-${sequence}`,
    deliveryStreamArn: 'arn:aws:firehose:eu-west-2:123456789012:deliverystream/totes-ingestion',
    sourceKinesisStreamArn: 'arn:aws:kinesis:eu-west-2:123456789012:stream/totes-changes',
    region: 'eu-west-2',
    records,
  };
}

/** Passes every command to the real client and remembers which ones were sent. */
function recording(real: S3Client): { client: Pick<S3Client, 'send'>; sent: string[] } {
  const sent: string[] = [];
  return {
    sent,
    client: {
      send: ((command: { constructor: { name: string }; input: { Key?: string } }) => {
        sent.push(`${command.constructor.name} ${command.input.Key ?? ''}`);
        return real.send(command as never);
      }) as S3Client['send'],
    },
  };
}

function captureLogs() {
  const lines: Record<string, unknown>[] = [];
  const text: string[] = [];
  const logger = createLogger({
    service: 'test',
    level: 'debug',
    write: (line) => {
      text.push(line);
      lines.push(JSON.parse(line));
    },
  });
  return { logger, lines, text };
}

async function getText(key: string): Promise<string> {
  const res = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return res.Body!.transformToString();
}

describe('firehose-transform handler (real s3rver)', () => {
  it('renders valid records as CSV with table and layout partition keys, and fails bad ones alone', async () => {
    // Prepare: two tables, then every kind of bad record between them.
    const staff = staffBatch({ table: 'staff_mix', firstId: 0, count: HOSTILE_VALUES.length });
    const other = changeBatchFactory({
      table: 'currency_mix',
      columns: [
        { name: 'currency_id', type: 'int4', key: true },
        { name: 'currency_code', type: 'text', key: false },
      ],
      changes: [changeFactory({ values: ['1', 'GBP'] })],
    });
    const unsafe = { ...other, table: 'a/b' };
    const notABatch = JSON.stringify({ ...other, changes: [{ ...other.changes[0], values: ['only one'] }] });
    const records = [
      firehoseRecordFactory(encodeChangeBatch(staff)),
      firehoseRecordFactory('not base64 at all!'),
      firehoseRecordFactory(Buffer.from('{"secret": "row contents"')),
      firehoseRecordFactory(Buffer.from(notABatch)),
      firehoseRecordFactory(encodeChangeBatch(unsafe)),
      firehoseRecordFactory(encodeChangeBatch(other), 'shardId-000000000001'),
    ];
    const { logger, lines, text } = captureLogs();
    const handler = createHandler({ s3: client, bucket: BUCKET, logger });

    // Act
    const result = await handler(firehoseEventFactory(records));

    // Assess: one result per record, in order, same ids.
    expect(result.records.map((r) => r.recordId)).toEqual(records.map((r) => r.recordId));
    expect(result.records.map((r) => r.result)).toEqual([
      'Ok',
      'ProcessingFailed',
      'ProcessingFailed',
      'ProcessingFailed',
      'ProcessingFailed',
      'Ok',
    ]);
    const [okStaff, , , , , okOther] = result.records;
    expect(Buffer.from(okStaff.data, 'base64').toString()).toBe(encodeChangeBatchAsCsv(staff));
    expect(okStaff.metadata).toEqual({
      partitionKeys: { table: 'staff_mix', schema: schemaFingerprint(STAFF_COLUMNS) },
    });
    expect(okOther.metadata?.partitionKeys).toEqual({
      table: 'currency_mix',
      schema: schemaFingerprint(other.columns),
    });
    expect(decodeCsvObject(Buffer.from(okStaff.data, 'base64'), schemaObjectFor(staff))).toEqual(
      staff.changes.map((c) => ({ epoch: 0, ...c })),
    );
    // A failed record hands back its original data, which Firehose writes to the error prefix.
    for (const i of [1, 2, 3, 4]) expect(result.records[i].data).toBe(records[i].data);

    // One structured error per failed record, naming it and why, never quoting its data.
    const errors = lines.filter((l) => l.level === 'error');
    expect(errors.map((l) => [l.recordId, l.errorCode])).toEqual([
      [records[1].recordId, 'InvalidBase64'],
      [records[2].recordId, 'NotJson'],
      [records[3].recordId, 'NotAChangeBatch'],
      [records[4].recordId, 'UnsafeTableName'],
    ]);
    expect(errors[2].issues).toEqual(['changes.0.values: has 1 values, expected 2']);
    expect(errors[0]).toMatchObject({
      shardId: 'shardId-000000000000',
      sequenceNumber: records[1].kinesisRecordMetadata?.sequenceNumber,
    });
    const logged = text.join('');
    for (const secret of ['row contents', 'only one', 'GBP', 'Last 3']) expect(logged).not.toContain(secret);
  });

  it('inflates gzip records (capture writes them by default) into the same CSV as uncompressed ones; one that does not inflate fails alone', async () => {
    const staff = staffBatch({ table: 'staff_gzip', firstId: 0, count: HOSTILE_VALUES.length });
    const raw = encodeChangeBatch(staff);
    const gzip = await compressRecord(raw);
    expect(isGzip(gzip)).toBe(true);
    const records = [
      firehoseRecordFactory(raw),
      firehoseRecordFactory(gzip),
      firehoseRecordFactory(gzip.subarray(0, gzip.length - 8)),
    ];
    const { logger, lines, text } = captureLogs();
    const handler = createHandler({ s3: client, bucket: BUCKET, logger });

    const result = await handler(firehoseEventFactory(records));

    expect(result.records.map((r) => r.result)).toEqual(['Ok', 'Ok', 'ProcessingFailed']);
    expect(result.records[1].data).toBe(result.records[0].data);
    expect(result.records[1].metadata).toEqual(result.records[0].metadata);
    expect(Buffer.from(result.records[1].data, 'base64').toString()).toBe(encodeChangeBatchAsCsv(staff));
    // The failed record goes to the error prefix as it came, its code says what is wrong.
    expect(result.records[2].data).toBe(records[2].data);
    const errors = lines.filter((l) => l.level === 'error');
    expect(errors.map((l) => [l.recordId, l.errorCode])).toEqual([[records[2].recordId, 'InvalidGzip']]);
    expect(errors[0].reason).toMatch(/starts as gzip but does not inflate/);
    expect(text.join('')).not.toContain('Last 3');
  });

  it('refuses data that is not strict base64 even where Node would decode it (url-safe alphabet, whitespace, bad padding)', async () => {
    // Arrange: Buffer.from(s, 'base64') accepts all of these silently, so only a strict check catches them.
    const staff = staffBatch({ table: 'staff_strict', firstId: 0, count: 2 });
    const standard = Buffer.from(encodeChangeBatch(staff)).toString('base64');
    const variants = [
      Buffer.from('{"a":">>>???"}').toString('base64url'),
      `${standard.slice(0, 8)}\n${standard.slice(8)}`,
      Buffer.from('{}').toString('base64').replace(/=+$/, ''),
    ];
    expect(variants[0]).toMatch(/[-_]/);
    expect(variants[2]).toHaveLength(3);
    const records = [
      ...variants.map((v) => firehoseRecordFactory(v)),
      firehoseRecordFactory(encodeChangeBatch(staff)),
    ];
    const { logger, lines } = captureLogs();
    const handler = createHandler({ s3: client, bucket: BUCKET, logger });

    // Act
    const result = await handler(firehoseEventFactory(records));

    // Assess
    expect(result.records.map((r) => r.result)).toEqual([
      'ProcessingFailed',
      'ProcessingFailed',
      'ProcessingFailed',
      'Ok',
    ]);
    expect(lines.filter((l) => l.level === 'error').map((l) => l.errorCode)).toEqual([
      'InvalidBase64',
      'InvalidBase64',
      'InvalidBase64',
    ]);
  });

  it("writes each layout's schema object once, and a warm or cold container does not rewrite it", async () => {
    // Prepare
    const batch = staffBatch({ table: 'staff_once', firstId: 0, count: 3 });
    const key = schemaObjectKey('staff_once', schemaFingerprint(STAFF_COLUMNS));
    const first = recording(client);
    const warm = createHandler({ s3: first.client, bucket: BUCKET });

    // Act: two invocations in one container, then a new container.
    await warm(firehoseEventFactory([firehoseRecordFactory(encodeChangeBatch(batch))]));
    await warm(
      firehoseEventFactory([
        firehoseRecordFactory(encodeChangeBatch(batch)),
        firehoseRecordFactory(encodeChangeBatch(batch)),
      ]),
    );
    const second = recording(client);
    await createHandler({ s3: second.client, bucket: BUCKET })(
      firehoseEventFactory([firehoseRecordFactory(encodeChangeBatch(batch))]),
    );

    // Assess
    expect(first.sent).toEqual([`HeadObjectCommand ${key}`, `PutObjectCommand ${key}`]);
    expect(second.sent).toEqual([`HeadObjectCommand ${key}`]);
    const text = await getText(key);
    expect(text).toBe(encodeSchemaObject(schemaObjectFor(batch)));
    expect(decodeSchemaObject(text).columns).toEqual(STAFF_COLUMNS);
  });

  it('writes a second schema object when a column is added mid-stream', async () => {
    const before = staffBatch({ table: 'staff_evolving', firstId: 0, count: 2 });
    const columns = [...STAFF_COLUMNS, { name: 'nickname', type: 'text', key: false }];
    const after = staffBatch({ table: 'staff_evolving', columns, firstId: 2, count: 2 });
    const handler = createHandler({ s3: client, bucket: BUCKET });

    const result = await handler(
      firehoseEventFactory([
        firehoseRecordFactory(encodeChangeBatch(before)),
        firehoseRecordFactory(encodeChangeBatch(after)),
      ]),
    );

    const [a, b] = result.records.map((r) => r.metadata?.partitionKeys.schema);
    expect(a).not.toBe(b);
    expect(decodeSchemaObject(await getText(schemaObjectKey('staff_evolving', a!))).columns).toHaveLength(5);
    expect(decodeSchemaObject(await getText(schemaObjectKey('staff_evolving', b!))).columns).toHaveLength(6);
  });

  it("keys each record by its own layout when a column's type or key flag changes, however often layouts alternate", async () => {
    const retyped = STAFF_COLUMNS.map((c, i) => (i === 1 ? { ...c, type: 'varchar' } : c));
    const rekeyed = STAFF_COLUMNS.map((c, i) => ({ ...c, key: i === 1 }));
    const layouts = [STAFF_COLUMNS, retyped, rekeyed, STAFF_COLUMNS, rekeyed];
    const handler = createHandler({ s3: client, bucket: BUCKET });

    const result = await handler(
      firehoseEventFactory(
        layouts.map((columns, i) =>
          firehoseRecordFactory(
            encodeChangeBatch(staffBatch({ table: 'staff_alternating', columns, firstId: i, count: 1 })),
          ),
        ),
      ),
    );

    expect(result.records.map((r) => r.metadata?.partitionKeys.schema)).toEqual(
      layouts.map((columns) => schemaFingerprint(columns)),
    );
    expect(new Set(layouts.map((columns) => schemaFingerprint(columns))).size).toBe(3);
  });

  it("starts each fast-mode record with its own layout record when layouts alternate (the handler's remembered fingerprint)", async () => {
    const retyped = STAFF_COLUMNS.map((c, i) => (i === 1 ? { ...c, type: 'varchar' } : c));
    const rekeyed = STAFF_COLUMNS.map((c, i) => ({ ...c, key: i === 1 }));
    const layouts = [STAFF_COLUMNS, retyped, retyped, rekeyed, STAFF_COLUMNS, STAFF_COLUMNS, rekeyed];
    const handler = createHandler({
      s3: { send: () => Promise.resolve({}) },
      bucket: BUCKET,
      mixedObjects: true,
    });
    const batches = layouts.map((columns, i) =>
      staffBatch({ table: 'staff_fast_alternating', columns, firstId: i, count: 2 }),
    );

    const result = await handler(
      firehoseEventFactory(batches.map((b) => firehoseRecordFactory(encodeChangeBatch(b)))),
    );

    const texts = result.records.map((r) => Buffer.from(r.data, 'base64').toString('utf8'));
    expect(texts.map((t) => t.slice(0, t.indexOf('\n')))).toEqual(
      layouts.map((columns) => `@layout,staff_fast_alternating,${schemaFingerprint(columns)}`),
    );
    expect(texts).toEqual(batches.map((b) => encodeChangeBatchAsMixedCsv(b)));
  });

  it('renders a pointer (a change stored under oversized/) as one line with ref, in the same partition', async () => {
    // Prepare: an ordinary batch and a v2 pointer batch of the same table and layout.
    const ordinary = staffBatch({ table: 'staff_ptr', firstId: 0, count: 1 });
    const ref = `oversized/staff_ptr/${'a'.repeat(64)}.json`;
    const pointer = {
      ...ordinary,
      v: 2 as const,
      changes: [
        {
          ...ordinary.changes[0],
          seq: 1,
          values: ordinary.changes[0].values.map((v, i) => (i ? null : v)),
          ref,
        },
      ],
    };
    const handler = createHandler({ s3: client, bucket: BUCKET });

    // Act
    const out = await handler(
      firehoseEventFactory([
        firehoseRecordFactory(encodeChangeBatch(ordinary)),
        firehoseRecordFactory(encodeChangeBatch(pointer)),
      ]),
    );

    // Assess
    expect(out.records.map((r) => r.result)).toEqual(['Ok', 'Ok']);
    expect(out.records[1].metadata).toEqual(out.records[0].metadata);
    const [line] = decodeCsvObject(Buffer.from(out.records[1].data, 'base64'), schemaObjectFor(ordinary));
    expect(line).toMatchObject({ seq: 1, ref, values: pointer.changes[0].values });
  });

  it('rejects an event that is not a Firehose transformation event, failing the invocation', async () => {
    const handler = createHandler({ s3: client, bucket: BUCKET });
    await expect(handler({ records: [{ recordId: 'x' }] })).rejects.toBeInstanceOf(
      InvalidTransformationEventError,
    );
    await expect(handler({ Records: [] })).rejects.toThrow(/invocationId/);
  });

  it('fails the invocation (so Firehose retries) when the schema object cannot be ensured', async () => {
    // Fault: an S3 endpoint that is gone.
    const goneDir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-transform-gone-'));
    const gone = await startS3rver({ dataDir: goneDir, buckets: [BUCKET] });
    await gone.stop();
    const unreachable = s3ClientFor(gone.endpoint);
    try {
      const handler = createHandler({ s3: unreachable, bucket: BUCKET });
      const batch = staffBatch({ table: 'staff_unreachable', firstId: 0, count: 1 });
      const error = await handler(
        firehoseEventFactory([firehoseRecordFactory(encodeChangeBatch(batch))]),
      ).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SchemaObjectWriteError);
      expect(error).toMatchObject({
        bucket: BUCKET,
        key: schemaObjectKey('staff_unreachable', schemaFingerprint(STAFF_COLUMNS)),
      });
      expect((error as Error).cause).toBeDefined();
    } finally {
      unreachable.destroy();
      fs.rmSync(goneDir, { recursive: true, force: true });
    }
  });

  it("hands back each record's CSV as exactly its UTF-8 bytes in base64, in either mode, however big or small the records in turn", async () => {
    // Records of many pieces (the CSV is written in ~16k-character pieces into a buffer reused from
    // record to record), small ones after big ones, values of every width of UTF-8 and lone surrogates.
    const values = [...HOSTILE_VALUES, '\ud800', 'x\udc00', '😀', 'ü'.repeat(300), '日'.repeat(5000)];
    const batchOf = (count: number, shift: number) => {
      const batch = staffBatch({ table: 'staff_bytes', firstId: shift, count });
      for (const [i, c] of batch.changes.entries()) c.values[2] = values[(i * 7 + shift) % values.length];
      return batch;
    };
    const batches = [batchOf(3000, 0), batchOf(2, 5), batchOf(1, 1), batchOf(1200, 3), batchOf(40, 2)];
    for (const mixedObjects of [false, true]) {
      const handler = createHandler({
        s3: { send: () => Promise.resolve({}) },
        bucket: BUCKET,
        mixedObjects,
      });
      const result = await handler(
        firehoseEventFactory(batches.map((b) => firehoseRecordFactory(encodeChangeBatch(b)))),
      );
      const expected = batches.map((b) =>
        Buffer.from(
          mixedObjects ? encodeChangeBatchAsMixedCsv(b) : encodeChangeBatchAsCsv(b),
          'utf8',
        ).toString('base64'),
      );
      expect(result.records.map((r) => r.result)).toEqual(batches.map(() => 'Ok'));
      expect(result.records.map((r) => r.data)).toEqual(expected);
    }
    expect(encodeChangeBatchAsCsv(batches[0]).length).toBeGreaterThan(200_000);
  });

  it('returns an empty response for an empty batch', async () => {
    const handler = createHandler({ s3: client, bucket: BUCKET });
    expect(await handler(firehoseEventFactory([]))).toEqual({ records: [] });
  });
});

describe('Lambda entry (handler.ts)', () => {
  const saved = process.env.INGESTION_BUCKET;
  afterEach(() => {
    if (saved === undefined) delete process.env.INGESTION_BUCKET;
    else process.env.INGESTION_BUCKET = saved;
  });

  /** Loads handler.ts as a cold start would: a fresh module registry, with the current environment. */
  function coldStart(): { handler?: unknown; error?: unknown } {
    let loaded: { handler?: unknown; error?: unknown } = {};
    jest.isolateModules(() => {
      try {
        // A module-scope side effect is what is under test, so it must be loaded at this point.
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        loaded = { handler: (require('./handler') as { handler: unknown }).handler };
      } catch (error) {
        loaded = { error };
      }
    });
    return loaded;
  }

  it('fails at cold start without INGESTION_BUCKET', () => {
    delete process.env.INGESTION_BUCKET;
    const { error } = coldStart();
    // A fresh registry means a fresh class: compare by name, not identity.
    expect(error).toMatchObject({ name: MissingConfigurationError.name, variable: 'INGESTION_BUCKET' });
  });

  it('builds the handler at cold start when configured', () => {
    process.env.INGESTION_BUCKET = 'totes-ingestion-123';
    const { handler } = coldStart();
    expect(typeof handler).toBe('function');
  });

  it('reads its configuration from the environment', () => {
    expect(readTransformConfig({ INGESTION_BUCKET: ' b ' })).toEqual({
      ingestionBucket: 'b',
      mixedObjects: false,
    });
    expect(readTransformConfig({ INGESTION_BUCKET: 'b', FRESHNESS_MODE: 'fast' }).mixedObjects).toBe(true);
    expect(() => readTransformConfig({ INGESTION_BUCKET: '' })).toThrow(/INGESTION_BUCKET/);
  });
});
