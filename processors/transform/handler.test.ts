import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { Change, ChangeBatch } from '../../core/change-event';
import { changeBatchFactory } from '../../core/csv-codec.fixtures';
import {
  encodeChangeBatchAsCsv,
  encodeSchemaObject,
  schemaObjectFor,
  schemaObjectKey,
  type SchemaObject,
} from '../../core/csv-codec';
import { createLogger } from '../../core/logger';
import {
  SOURCE_LAYOUTS,
  sourceChange,
  type SourceChangeOptions,
  type SourceRecord,
} from '../../core/star-mapping.fixtures';
import { toWarehouseRows } from '../../core/star-mapping';
import type { TotesysTable } from '../../core/totesys-tables';
import { type LocalS3, type S3Event as LocalS3Event } from '../../local/s3rver';
import { useLocalS3 } from '../../test/support/local-s3';
import { s3EventFactory, type S3ObjectSpec } from '../../test/support/s3-events';
import { decodeParquet } from '../shared/parquet-codec';
import { metricsFor } from '../shared/metrics';
import {
  createTransformHandler,
  InvalidS3EventError,
  MissingConfigurationError,
  outputKeyFor,
  quarantineKeyFor,
  readTransformConfig,
  TransformRetryableError,
  type TransformHandlerDeps,
} from './create-handler';

/** Needs no Postgres: a real s3rver (two buckets) in a temp directory, real CSV and Parquet. */
const INGESTION = 'ingestion';
const PROCESSED = 'processed';

const local = useLocalS3([INGESTION, PROCESSED]);
let s3: LocalS3;
let client: S3Client;
beforeAll(() => ({ s3, client } = local));

interface Harness {
  handler: ReturnType<typeof createTransformHandler>;
  logs: Record<string, unknown>[];
  logText: () => string;
  metrics: Record<string, unknown>[];
}

function harness(overrides: Partial<TransformHandlerDeps> = {}): Harness {
  const logs: Record<string, unknown>[] = [];
  const lines: string[] = [];
  const metrics: Record<string, unknown>[] = [];
  const handler = createTransformHandler({
    s3: client,
    processedBucket: PROCESSED,
    logger: createLogger({
      service: 'transform',
      level: 'debug',
      write: (line) => {
        lines.push(line);
        logs.push(JSON.parse(line));
      },
    }),
    metrics: metricsFor({ stage: 'transform', write: (line) => metrics.push(JSON.parse(line)) }),
    ...overrides,
  });
  return { handler, logs, logText: () => lines.join(''), metrics };
}

let objectCounter = 0;

/** Puts the schema object (unless told not to) and the CSV of `batches` as Firehose would. */
async function putDataObject(
  batches: ChangeBatch[],
  options: { withSchema?: boolean; body?: string; schema?: SchemaObject; hour?: string; name?: string } = {},
): Promise<S3ObjectSpec> {
  const schema = options.schema ?? schemaObjectFor(batches[0]);
  if (options.withSchema !== false)
    await client.send(
      new PutObjectCommand({
        Bucket: INGESTION,
        Key: schemaObjectKey(schema.table, schema.fingerprint),
        Body: encodeSchemaObject(schema),
      }),
    );
  objectCounter += 1;
  // A space and a plus in the name make the event key's URL encoding matter.
  const name =
    options.name ?? `totes ingestion+1-2025-02-28-09-15-02-${String(objectCounter).padStart(8, '0')}`;
  const key = `totesys/${schema.table}/schema=${schema.fingerprint}/${options.hour ?? '2025/02/28/09'}/${name}`;
  const body = options.body ?? batches.map(encodeChangeBatchAsCsv).join('');
  await client.send(new PutObjectCommand({ Bucket: INGESTION, Key: key, Body: body }));
  return { bucket: INGESTION, key, size: Buffer.byteLength(body) };
}

function batchOf(table: TotesysTable, changes: Change[]): ChangeBatch {
  return changeBatchFactory({ table, columns: SOURCE_LAYOUTS[table], changes });
}

const change = (table: TotesysTable, overrides: SourceRecord = {}, options: SourceChangeOptions = {}) =>
  sourceChange(table, overrides, options);

async function readBody(bucket: string, key: string): Promise<Buffer> {
  const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await response.Body!.transformToByteArray());
}

async function listKeys(bucket: string, prefix?: string): Promise<string[]> {
  const response = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  return (response.Contents ?? []).map((o) => o.Key!).sort();
}

/** Polls until `probe` returns a value, or fails after `timeoutMs`. */
async function waitFor<T>(probe: () => T | undefined, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('transform handler against s3rver', () => {
  it('turns a CSV object into one Parquet object at a deterministic key, naming its source', async () => {
    // Prepare
    const changes = [
      change('sales_order', {}, { op: 'snapshot', lsn: '0/1000000', seq: 0 }),
      change(
        'sales_order',
        { units_sold: '1', last_updated: '2025-02-28 09:15:02' },
        { op: 'update', lsn: '0/2000000', seq: 0 },
      ),
      change('sales_order', {}, { op: 'delete', lsn: '0/3000000', seq: 1 }),
    ];
    const object = await putDataObject([batchOf('sales_order', changes)]);
    const { handler, logText, metrics } = harness();
    // Act
    const report = await handler(s3EventFactory(object), { awsRequestId: 'req-1' });
    // Assess
    const outputKey = outputKeyFor('fact_sales_order', object.key);
    expect(outputKey).toMatch(/^fact_sales_order\/2025\/02\/28\/09\/[0-9a-f]{32}\.parquet$/);
    expect(report.objects).toEqual([
      {
        bucket: INGESTION,
        key: object.key,
        status: 'written',
        sourceTable: 'sales_order',
        targetTable: 'fact_sales_order',
        outputKey,
        quarantineKey: undefined,
        rows: 3,
        rejected: 0,
      },
    ]);
    const parquet = await decodeParquet(await readBody(PROCESSED, outputKey));
    expect(parquet.table).toBe('fact_sales_order');
    expect(parquet.rows).toEqual(toWarehouseRows('sales_order', SOURCE_LAYOUTS.sales_order, changes).rows);
    expect(parquet.rows[1]).toMatchObject({
      sales_order_id: 2,
      units_sold: 1,
      unit_price: '3.94',
      created_time: '14:20:52.186',
      last_updated_date: '2025-02-28',
      last_updated_time: '09:15:02.000',
      _lsn: '00000000/02000000',
    });
    const head = await client.send(new HeadObjectCommand({ Bucket: PROCESSED, Key: outputKey }));
    expect(head.Metadata).toMatchObject({
      'source-key': object.key,
      'source-bucket': INGESTION,
      'source-table': 'sales_order',
      rows: '3',
      'rejected-changes': '0',
    });
    expect(metrics).toHaveLength(1);
    expect(metrics[0]).toMatchObject({
      Stage: 'transform',
      requestId: 'req-1',
      ObjectsWritten: 1,
      RowsWritten: 3,
      ChangesRejected: 0,
      ObjectsQuarantined: 0,
      ObjectsFailed: 0,
    });
    expect(logText()).toContain('"requestId":"req-1"');
    expect(logText()).not.toContain('3.94');
  });

  it('handles several records per event: every table kind, hostile text, other prefixes ignored', async () => {
    const hostile = 'comma, "quote"\nnew line ünï 😀';
    const address = await putDataObject([
      batchOf('address', [change('address', { address_line_1: hostile, district: '' })]),
    ]);
    const purchase = await putDataObject([
      batchOf('purchase_order', [change('purchase_order', { item_code: hostile }, { seq: 0 })]),
      batchOf('purchase_order', [change('purchase_order', { purchase_order_id: '2' }, { seq: 1 })]),
    ]);
    const currency = await putDataObject([
      batchOf('currency', [change('currency', { currency_code: 'JPY' }, { op: 'update', unchanged: [] })]),
    ]);
    const { handler } = harness();
    const report = await handler(
      s3EventFactory([
        address,
        purchase,
        currency,
        { bucket: INGESTION, key: schemaObjectKey('address', 'x') },
        { bucket: INGESTION, key: 'errors/processing-failed/2025/02/28/09/x' },
      ]),
    );
    expect(report.objects.map((o) => [o.status, o.targetTable ?? o.reason])).toEqual([
      ['written', 'dim_location'],
      ['written', 'fact_purchase_order'],
      ['written', 'dim_currency'],
      ['ignored', 'outside totesys/'],
      ['ignored', 'outside totesys/'],
    ]);
    const location = await decodeParquet(await readBody(PROCESSED, report.objects[0].outputKey!));
    expect(location.rows[0]).toMatchObject({
      location_id: 1,
      address_line_1: hostile,
      address_line_2: null,
      district: '',
    });
    const orders = await decodeParquet(await readBody(PROCESSED, report.objects[1].outputKey!));
    expect(orders.rows.map((r) => [r.purchase_order_id, r.item_code])).toEqual([
      [1, hostile],
      [2, 'ZDOI5EA'],
    ]);
    const currencies = await decodeParquet(await readBody(PROCESSED, report.objects[2].outputKey!));
    expect(currencies.rows[0]).toMatchObject({ currency_code: 'JPY', currency_name: 'Yen', _op: 'upsert' });
  });

  it('writes nothing new when the same event is delivered again', async () => {
    const object = await putDataObject([batchOf('staff', [change('staff')])]);
    const event = s3EventFactory(object);
    const first = harness();
    await first.handler(event);
    const before = await listKeys(PROCESSED);
    const outputKey = outputKeyFor('stg_staff', object.key);
    const etag = (await client.send(new HeadObjectCommand({ Bucket: PROCESSED, Key: outputKey }))).ETag;
    // Act: a redelivery, to a new container (cold schema cache) as S3 may do.
    const second = harness();
    const report = await second.handler(event);
    // Assess
    expect(report.objects.map((o) => o.status)).toEqual(['duplicate']);
    expect(await listKeys(PROCESSED)).toEqual(before);
    expect((await client.send(new HeadObjectCommand({ Bucket: PROCESSED, Key: outputKey }))).ETag).toBe(etag);
    expect(second.metrics[0]).toMatchObject({ ObjectsDuplicate: 1, ObjectsWritten: 0 });
  });

  it('quarantines a bad change with its reason and writes the rest', async () => {
    const changes = [
      change('payment', { payment_id: '10' }, { seq: 0 }),
      change('payment', { payment_id: '11', payment_date: '2024-02-30' }, { seq: 1 }),
      change('payment', { payment_id: '12', paid: 'f' }, { seq: 2 }),
      change('payment', {}, { op: 'truncate', seq: 3 }),
    ];
    const object = await putDataObject([batchOf('payment', changes)]);
    const { handler, logs, logText, metrics } = harness();
    const report = await handler(s3EventFactory(object));
    const [outcome] = report.objects;
    // The truncate is a row like any change (the load deletes what it covers); the bad date is not.
    expect(outcome).toMatchObject({ status: 'written', rows: 3, rejected: 1 });
    expect(outcome.quarantineKey).toBe(quarantineKeyFor('payment', object.key, 'rejected'));
    expect(outcome.quarantineKey).toMatch(
      /^quarantine\/transform\/payment\/2025\/02\/28\/09\/[0-9a-f]{32}\.rejected\.jsonl$/,
    );
    const rows = (await decodeParquet(await readBody(PROCESSED, outcome.outputKey!))).rows;
    expect(rows.map((r) => [r._op, r.payment_id, r.paid])).toEqual([
      ['upsert', 10, true],
      ['upsert', 12, false],
      ['truncate', null, null],
    ]);
    const quarantined = (await readBody(PROCESSED, outcome.quarantineKey!))
      .toString('utf8')
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(quarantined).toEqual([
      {
        stage: 'transform',
        sourceBucket: INGESTION,
        sourceKey: object.key,
        table: 'payment',
        reason: 'payment_date: not a calendar date in YYYY-MM-DD form',
        change: { epoch: 0, ...changes[1] },
      },
    ]);
    const errors = logs.filter((l) => l.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({
      msg: 'change rejected and quarantined',
      key: object.key,
      seq: 1,
      lsn: changes[1].lsn,
    });
    expect(logText()).not.toContain('2024-02-30');
    expect(metrics[0]).toMatchObject({ ChangesRejected: 1, RowsWritten: 3, ObjectsWritten: 1 });
    // A redelivery leaves both objects as they are.
    expect((await handler(s3EventFactory(object))).objects[0].status).toBe('duplicate');
  });

  it('caps per-change error logs and logs the total', async () => {
    const changes = Array.from({ length: 25 }, (_, seq) =>
      change('sales_order', { units_sold: '2.0' }, { seq }),
    );
    const object = await putDataObject([batchOf('sales_order', changes)]);
    const { handler, logs } = harness();
    const [outcome] = (await handler(s3EventFactory(object))).objects;
    expect(outcome).toMatchObject({ status: 'written', rows: 0, rejected: 25 });
    expect(logs.filter((l) => l.msg === 'change rejected and quarantined')).toHaveLength(20);
    expect(logs.find((l) => l.msg === 'more changes rejected than logged individually')).toMatchObject({
      rejected: 25,
    });
    expect((await decodeParquet(await readBody(PROCESSED, outcome.outputKey!))).rows).toEqual([]);
  });

  it('fails only the record whose schema object is missing, with a pointer in the quarantine', async () => {
    const good = await putDataObject([batchOf('design', [change('design')])]);
    const orphanLayout = [...SOURCE_LAYOUTS.design, { name: 'added_later', type: 'text', key: false }];
    const orphanBatch = changeBatchFactory({
      table: 'design',
      columns: orphanLayout,
      changes: [change('design', { added_later: 'x' }, { columns: orphanLayout })],
    });
    const orphan = await putDataObject([orphanBatch], { withSchema: false });
    const { handler, logs, metrics } = harness();
    const report = await handler(s3EventFactory([orphan, good]));
    expect(report.objects.map((o) => o.status)).toEqual(['quarantined', 'written']);
    const reason = `schema object ${schemaObjectKey('design', schemaObjectFor(orphanBatch).fingerprint)} does not exist`;
    expect(report.objects[0]).toMatchObject({ key: orphan.key, reason });
    expect(await listKeys(PROCESSED, outputKeyFor('dim_design', orphan.key))).toEqual([]);
    const pointerKey = quarantineKeyFor('design', orphan.key, 'object');
    expect(report.objects[0].quarantineKey).toBe(pointerKey);
    const pointer = JSON.parse((await readBody(PROCESSED, pointerKey)).toString('utf8'));
    expect(pointer).toMatchObject({
      kind: 'unreadable-object',
      stage: 'transform',
      reason,
      source: { bucket: INGESTION, key: orphan.key, size: orphan.size },
    });
    expect(logs.find((l) => l.level === 'error')).toMatchObject({
      msg: 'object quarantined: it cannot be transformed',
      key: orphan.key,
      reason,
    });
    expect(metrics[0]).toMatchObject({ ObjectsQuarantined: 1, ObjectsWritten: 1, ObjectsFailed: 0 });

    // Redelivery keeps the first pointer; once the schema object exists, a re-drive succeeds.
    const etag = (await client.send(new HeadObjectCommand({ Bucket: PROCESSED, Key: pointerKey }))).ETag;
    expect((await handler(s3EventFactory(orphan))).objects[0].status).toBe('quarantined');
    expect((await client.send(new HeadObjectCommand({ Bucket: PROCESSED, Key: pointerKey }))).ETag).toBe(
      etag,
    );
    await putDataObject([orphanBatch], { name: 'unused-redrive-helper' });
    expect((await handler(s3EventFactory(orphan))).objects[0]).toMatchObject({ status: 'written', rows: 1 });
  });

  it('quarantines objects it cannot read: bad CSV, a layout without a needed column, a foreign schema object', async () => {
    const garbage = await putDataObject([batchOf('staff', [change('staff')])], {
      body: 'insert,"unterminated\n',
    });
    const narrowLayout = SOURCE_LAYOUTS.sales_order.filter((c) => c.name !== 'unit_price');
    const narrow = await putDataObject([
      changeBatchFactory({
        table: 'sales_order',
        columns: narrowLayout,
        changes: [change('sales_order', {}, { columns: narrowLayout })],
      }),
    ]);
    const staffSchema = schemaObjectFor(batchOf('staff', [change('staff')]));
    const wrongSchemaKey = `totesys/staff/schema=${'f'.repeat(16)}/2025/02/28/09/wrong-schema`;
    await client.send(
      new PutObjectCommand({
        Bucket: INGESTION,
        Key: schemaObjectKey('staff', 'f'.repeat(16)),
        Body: encodeSchemaObject(staffSchema),
      }),
    );
    await client.send(new PutObjectCommand({ Bucket: INGESTION, Key: wrongSchemaKey, Body: 'x' }));
    const invalidSchemaKey = `totesys/staff/schema=${'e'.repeat(16)}/2025/02/28/09/invalid-schema`;
    await client.send(
      new PutObjectCommand({
        Bucket: INGESTION,
        Key: schemaObjectKey('staff', 'e'.repeat(16)),
        Body: '{"format":1}',
      }),
    );
    await client.send(new PutObjectCommand({ Bucket: INGESTION, Key: invalidSchemaKey, Body: 'x' }));
    const { handler, logText } = harness();
    const report = await handler(
      s3EventFactory([
        garbage,
        narrow,
        { bucket: INGESTION, key: wrongSchemaKey },
        { bucket: INGESTION, key: invalidSchemaKey },
      ]),
    );
    expect(report.objects.map((o) => [o.status, o.reason])).toEqual([
      [
        'quarantined',
        expect.stringMatching(/^CSV object of staff \(schema [0-9a-f]{16}\), record 1: not valid CSV$/),
      ],
      ['quarantined', 'layout of sales_order lacks column(s) the warehouse needs: unit_price'],
      ['quarantined', `schema object ${schemaObjectKey('staff', 'f'.repeat(16))} describes another layout`],
      ['quarantined', `schema object ${schemaObjectKey('staff', 'e'.repeat(16))} is invalid`],
    ]);
    expect(logText()).not.toContain('unterminated');
  });

  it('quarantines keys under totesys/ outside the layout, ignores tables the warehouse does not use', async () => {
    await client.send(new PutObjectCommand({ Bucket: INGESTION, Key: 'totesys/README', Body: 'hello' }));
    const { handler } = harness();
    const report = await handler(
      s3EventFactory([
        { bucket: INGESTION, key: 'totesys/README' },
        { bucket: INGESTION, key: `totesys/_prisma_migrations/schema=${'a'.repeat(16)}/2025/02/28/09/x` },
        { bucket: INGESTION, key: 'totesys/staff/x', eventName: 'ObjectRemoved:Delete' },
        { bucket: PROCESSED, key: 'fact_payment/2025/02/28/09/x.parquet' },
      ]),
    );
    expect(report.objects.map((o) => [o.status, o.reason])).toEqual([
      ['quarantined', 'key does not follow the ingestion layout'],
      ['ignored', 'no warehouse table is built from _prisma_migrations'],
      ['ignored', 'event ObjectRemoved:Delete'],
      ['ignored', 'event from the processed bucket'],
    ]);
    expect(report.objects[0].quarantineKey).toMatch(
      /^quarantine\/transform\/README\/unpartitioned\/[0-9a-f]{32}\.object\.jsonl$/,
    );
  });

  it('quarantines an event key that is not URL-encoded', async () => {
    const event = s3EventFactory({ bucket: INGESTION, key: 'totesys/x' });
    event.Records[0].s3.object.key = 'totesys/%E0%A4%A';
    const report = await harness().handler(event);
    expect(report.objects[0]).toMatchObject({
      status: 'quarantined',
      key: 'totesys/%E0%A4%A',
      reason: 'object key is not URL-encoded',
    });
    expect(report.objects[0].quarantineKey).toMatch(/^quarantine\/transform\/_unknown\/unpartitioned\//);
  });

  it('ignores the S3 test event and refuses a payload that is not an S3 event', async () => {
    const { handler } = harness();
    expect(await handler({ Service: 'Amazon S3', Event: 's3:TestEvent', Bucket: INGESTION })).toEqual({
      objects: [],
    });
    await expect(handler({ Records: [{ eventSource: 'aws:sqs' }] })).rejects.toThrow(InvalidS3EventError);
    await expect(handler('nope')).rejects.toThrow(/not an S3 event notification/);
  });

  it('finishes the other records, then throws so Lambda retries, when S3 fails transiently', async () => {
    const flaky = await putDataObject([batchOf('department', [change('department')])]);
    const steady = await putDataObject([batchOf('transaction', [change('transaction')])]);
    const unavailable = Object.assign(new Error('Service Unavailable'), {
      name: 'SlowDown',
      $metadata: { httpStatusCode: 503 },
    });
    const failing: Pick<S3Client, 'send'> = {
      send: ((command: { input: { Key?: string } }) =>
        command instanceof GetObjectCommand && command.input.Key === flaky.key
          ? Promise.reject(unavailable)
          : client.send(command as never)) as S3Client['send'],
    };
    const { handler, logs, metrics } = harness({ s3: failing });
    const event = s3EventFactory([flaky, steady]);
    const error = await handler(event).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransformRetryableError);
    expect((error as TransformRetryableError).failures).toEqual([
      { bucket: INGESTION, key: flaky.key, reason: expect.stringContaining('GetObject') },
    ]);
    expect(logs.find((l) => l.level === 'error')).toMatchObject({
      key: flaky.key,
      err: { name: 'S3AccessError', cause: { name: 'SlowDown' } },
    });
    expect(metrics[0]).toMatchObject({ ObjectsFailed: 1, ObjectsWritten: 1 });
    expect(await listKeys(PROCESSED, quarantineKeyFor('department', flaky.key, 'object'))).toEqual([]);
    // Lambda's retry of the whole event: the failed object is written, the other skipped.
    const retry = await harness().handler(event);
    expect(retry.objects.map((o) => o.status)).toEqual(['written', 'duplicate']);
  });

  it('reads the object as a stream: a connection lost mid-body is retryable and writes nothing', async () => {
    const object = await putDataObject([batchOf('department', [change('department'), change('department')])]);
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    const cut: Pick<S3Client, 'send'> = {
      send: (async (command: unknown) => {
        const response = await client.send(command as never);
        if (!(command instanceof GetObjectCommand) || command.input.Key !== object.key) return response;
        const bytes = await (
          response as { Body: { transformToByteArray(): Promise<Uint8Array> } }
        ).Body.transformToByteArray();
        async function* firstHalfThenReset() {
          yield bytes.subarray(0, Math.floor(bytes.length / 2));
          throw reset;
        }
        return { ...(response as object), Body: firstHalfThenReset() };
      }) as S3Client['send'],
    };
    const error = await harness({ s3: cut })
      .handler(s3EventFactory(object))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransformRetryableError);
    expect((error as TransformRetryableError).failures[0].reason).toContain('GetObject');
    expect(await listKeys(PROCESSED, outputKeyFor('stg_department', object.key))).toEqual([]);
    expect((await harness().handler(s3EventFactory(object))).objects[0]).toMatchObject({
      status: 'written',
      rows: 2,
    });
  });

  it('treats a lost conditional write (412) as a concurrent duplicate', async () => {
    const object = await putDataObject([batchOf('payment_type', [change('payment_type')])]);
    const preconditionFailed = Object.assign(
      new Error('At least one of the pre-conditions you specified did not hold'),
      {
        name: 'PreconditionFailed',
        $metadata: { httpStatusCode: 412 },
      },
    );
    const racing: Pick<S3Client, 'send'> = {
      send: ((command: unknown) =>
        command instanceof PutObjectCommand
          ? Promise.reject(preconditionFailed)
          : client.send(command as never)) as S3Client['send'],
    };
    const { handler, metrics } = harness({ s3: racing });
    const report = await handler(s3EventFactory(object));
    expect(report.objects[0]).toMatchObject({ status: 'duplicate', rows: 1 });
    expect(metrics[0]).toMatchObject({ ObjectsDuplicate: 1, ObjectsWritten: 0 });
  });

  it('fails the record when the existence check itself fails', async () => {
    const object = await putDataObject([batchOf('counterparty', [change('counterparty')])]);
    const broken: Pick<S3Client, 'send'> = {
      send: ((command: unknown) =>
        command instanceof HeadObjectCommand
          ? Promise.reject(Object.assign(new Error('boom'), { $metadata: { httpStatusCode: 500 } }))
          : client.send(command as never)) as S3Client['send'],
    };
    await expect(harness({ s3: broken }).handler(s3EventFactory(object))).rejects.toThrow(
      TransformRetryableError,
    );
  });

  it('stores a non-ASCII source key URI-encoded in the object metadata', async () => {
    const object = await putDataObject([batchOf('currency', [change('currency')])], { name: 'ünïcödé-1' });
    const report = await harness().handler(s3EventFactory(object));
    const head = await client.send(
      new HeadObjectCommand({ Bucket: PROCESSED, Key: report.objects[0].outputKey! }),
    );
    expect(head.Metadata).toMatchObject({
      'source-key': encodeURIComponent(object.key),
      'encoded-fields': 'source-key',
    });
  });

  it('transforms on the event s3rver itself emits for a Firehose-style PUT', async () => {
    const events: LocalS3Event[] = [];
    const unsubscribe = s3.onObjectCreated((event) => {
      events.push(event);
    });
    try {
      const object = await putDataObject([batchOf('address', [change('address', { address_id: '31' })])], {
        withSchema: true,
        name: 'with space+plus=equals',
      });
      const event = await waitFor(() =>
        events.find((e) => e.Records[0].s3.object.key.endsWith('with+space%2Bplus%3Dequals')),
      );
      const report = await harness().handler(event);
      expect(report.objects).toEqual([
        expect.objectContaining({ key: object.key, status: 'written', rows: 1 }),
      ]);
    } finally {
      unsubscribe();
    }
  });
});

describe('configuration', () => {
  it('requires PROCESSED_BUCKET', () => {
    expect(() => readTransformConfig({})).toThrow(MissingConfigurationError);
    expect(() => readTransformConfig({ PROCESSED_BUCKET: '  ' })).toThrow('PROCESSED_BUCKET');
    expect(readTransformConfig({ PROCESSED_BUCKET: 'totes-processed' })).toEqual({
      processedBucket: 'totes-processed',
    });
  });

  it('the Lambda entry fails at cold start without it and builds a handler with it', () => {
    const saved = { ...process.env };
    try {
      delete process.env.PROCESSED_BUCKET;
      jest.isolateModules(() => {
        // A fresh module registry has its own error classes: match on name and message.
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        expect(() => require('./handler')).toThrow(/environment variable PROCESSED_BUCKET is required/);
      });
      process.env.PROCESSED_BUCKET = PROCESSED;
      process.env.LOG_LEVEL = 'debug';
      process.env.AWS_REGION = 'eu-west-2';
      jest.isolateModules(() => {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        expect(typeof require('./handler').handler).toBe('function');
      });
    } finally {
      process.env = saved;
    }
  });
});
