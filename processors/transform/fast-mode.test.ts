import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { encodeChangeBatch, type ChangeBatch } from '../../core/change-event';
import { changeBatchFactory, changeFactory } from '../../core/csv-codec.fixtures';
import { encodeSchemaObject, schemaObjectFor, schemaObjectKey } from '../../core/csv-codec';
import {
  encodeChangeBatchAsMixedCsv,
  MIXED_INGESTION_PREFIX,
  MIXED_ROOT,
  mixedPartKey,
  parseMixedObjectKey,
} from '../../core/mixed-csv';
import { toWarehouseRows } from '../../core/star-mapping';
import { evaluatePrefix } from '../../local/delivery-stream-prefix';
import { useLocalS3 } from '../../test/support/local-s3';
import { s3EventFactory } from '../../test/support/s3-events';
import { createHandler as createFirehoseTransform } from '../firehose-transform/create-handler';
import { decodeParquet } from '../shared/parquet-codec';
import {
  createTransformHandler,
  outputKeyFor,
  quarantineKeyFor,
  TransformRetryableError,
} from './create-handler';
import { mixedManifestKeyFor } from './transform-mixed-object';

// Fast mode (no dynamic partitioning): Firehose's record transformation in mixed mode, Firehose's
// concatenation into one object of several tables, and transform turning it straight into each
// table's Parquet in one invocation — against a real s3rver. Needs no Postgres.

const INGESTION = 'ingestion';
const PROCESSED = 'processed';
const local = useLocalS3([INGESTION, PROCESSED]);
let client: S3Client;
beforeAll(() => ({ client } = local));

const CURRENCY = [
  { name: 'currency_id', type: 'int4', key: true },
  { name: 'currency_code', type: 'text', key: false },
];
const PAYMENT_TYPE = [
  { name: 'payment_type_id', type: 'int4', key: true },
  { name: 'payment_type_name', type: 'text', key: false },
];

async function keys(bucket: string, prefix: string): Promise<string[]> {
  const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  return (listed.Contents ?? []).map((o) => o.Key!).sort();
}

async function body(bucket: string, key: string): Promise<Buffer> {
  const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await response.Body!.transformToByteArray());
}

/** Firehose in fast mode: the records through the processor, their data concatenated into one object. */
async function deliverMixed(batches: ChangeBatch[], name: string): Promise<string> {
  const processor = createFirehoseTransform({ s3: client, bucket: INGESTION, mixedObjects: true });
  const arrivalMs = Date.UTC(2025, 1, 28, 9, 15, 0);
  const result = await processor({
    invocationId: 'inv',
    deliveryStreamArn: 'arn:aws:firehose:eu-west-2:000000000000:deliverystream/totes',
    region: 'eu-west-2',
    records: batches.map((b, i) => ({
      recordId: `r${i}`,
      approximateArrivalTimestamp: arrivalMs,
      data: encodeChangeBatch(b).toString('base64'),
    })),
  });
  expect(result.records.every((r) => r.result === 'Ok' && r.metadata === undefined)).toBe(true);
  const key = `${evaluatePrefix(MIXED_INGESTION_PREFIX, { timestampMs: arrivalMs, partitionKeys: {} })}${name}`;
  const data = Buffer.concat(result.records.map((r) => Buffer.from(r.data, 'base64')));
  await client.send(new PutObjectCommand({ Bucket: INGESTION, Key: key, Body: data }));
  return key;
}

/** Every object under a prefix with its ETag and write time: what "wrote nothing new" compares. */
async function listing(bucket: string, prefix = ''): Promise<string[]> {
  const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  return (listed.Contents ?? []).map((o) => `${o.Key} ${o.ETag} ${o.LastModified?.toISOString()}`).sort();
}

/** The per-table CSV objects the older design split a mixed object into (none must be written). */
async function partObjects(name: string): Promise<string[]> {
  return (await keys(INGESTION, 'totesys/')).filter(
    (k) => !k.startsWith(MIXED_ROOT) && k.endsWith(`/${name}`),
  );
}

function currencyAndTypes(salt: string) {
  const currency = changeBatchFactory({
    table: 'currency',
    columns: CURRENCY,
    changes: [changeFactory({ values: ['7', 'EUR'] })],
  });
  const types = (id: string, name: string, lsn: string) =>
    changeBatchFactory({
      table: 'payment_type',
      columns: PAYMENT_TYPE,
      changes: [changeFactory({ values: [id, name], lsn })],
    });
  const first = types('1', `SALES_RECEIPT\n@layout,currency,0123456789abcdef${salt}`, '00000000/01000000');
  const second = types('2', 'PURCHASE_PAYMENT', '00000000/02000000');
  return { currency, first, second };
}

type S3Command = Parameters<S3Client['send']>[0];

/**
 * A client holding the first command `held` picks until a later command `awaited` picks is sent (or
 * 10 s pass, which code sending them one after the other would need); `sentBeforeAnswer()` says
 * whether that one went out before the held one was answered; `sent` is every command, in order.
 * `done()` clears the timer.
 */
function holdingClient(held: (command: S3Command) => boolean, awaited: (command: S3Command) => boolean) {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const timer = setTimeout(() => release(), 10_000);
  let holding = false;
  let answered = false;
  let before = false;
  const sent: S3Command[] = [];
  const send = (command: S3Command) => {
    sent.push(command);
    if (!holding && held(command)) {
      holding = true;
      return released.then(() => client.send(command)).finally(() => (answered = true));
    }
    if (awaited(command)) {
      before ||= !answered;
      release();
    }
    return client.send(command);
  };
  return {
    client: { send } as unknown as S3Client,
    sent,
    sentBeforeAnswer: () => before,
    done: () => clearTimeout(timer),
  };
}

it('transforms a mixed-table object straight into each table’s Parquet in one invocation, writing no per-table CSV', async () => {
  // Prepare: three records of two tables, interleaved, as a zero-buffer Firehose delivers them.
  const { currency, first, second } = currencyAndTypes('');
  const name = 'totes-1-2025-02-28-09-15-00-mixed';
  const mixedKey = await deliverMixed([first, currency, second], name);
  const transform = createTransformHandler({ s3: client, processedBucket: PROCESSED });

  // Act: transform on the mixed object (its ObjectCreated event), once.
  const report = await transform(s3EventFactory({ bucket: INGESTION, key: mixedKey }));

  // Assess: one Parquet object per layout, keyed as the per-table object of that layout would be;
  // each holds exactly its table's changes; no per-table CSV in the ingestion bucket; the mixed
  // object's manifest (what the reconciler counts as done) names them.
  const [outcome] = report.objects;
  expect(outcome).toMatchObject({
    key: mixedKey,
    status: 'written',
    manifestKey: mixedManifestKeyFor(mixedKey),
  });
  expect(outcome.parts!.map((p) => p.status)).toEqual(['written', 'written']);
  const byTable = Object.fromEntries(outcome.parts!.map((p) => [p.targetTable, p.outputKey!]));
  const hour = parseMixedObjectKey(mixedKey)!;
  const fingerprintOf = (columns: typeof CURRENCY) =>
    schemaObjectFor({ schema: 'public', table: 'x', columns }).fingerprint;
  expect(byTable).toEqual({
    dim_currency: outputKeyFor('dim_currency', mixedPartKey(hour, 'currency', fingerprintOf(CURRENCY))),
    dim_payment_type: outputKeyFor(
      'dim_payment_type',
      mixedPartKey(hour, 'payment_type', fingerprintOf(PAYMENT_TYPE)),
    ),
  });
  const currencyRows = (await decodeParquet(await body(PROCESSED, byTable.dim_currency))).rows;
  expect(currencyRows).toEqual(toWarehouseRows('currency', CURRENCY, currency.changes).rows);
  const typeRows = (await decodeParquet(await body(PROCESSED, byTable.dim_payment_type))).rows;
  expect(typeRows).toEqual(
    toWarehouseRows('payment_type', PAYMENT_TYPE, [...first.changes, ...second.changes]).rows,
  );
  expect(await partObjects(name)).toEqual([]);
  const manifest = JSON.parse((await body(PROCESSED, mixedManifestKeyFor(mixedKey))).toString('utf8'));
  expect(manifest.parts.map((p: { outputKey: string }) => p.outputKey).sort()).toEqual(
    Object.values(byTable).sort(),
  );
});

it('builds the next layout’s Parquet while the one before it is being written', async () => {
  // Prepare: a mixed object of two layouts, and a client that holds the first Parquet PUT until a
  // second one is sent (or 10 s pass, which a transform writing one layout at a time would need).
  const { currency, first, second } = currencyAndTypes('-overlap');
  const mixedKey = await deliverMixed([first, currency, second], 'totes-1-2025-02-28-09-15-00-overlap');
  const isParquetPut = (command: S3Command) =>
    command instanceof PutObjectCommand && String(command.input.Key).endsWith('.parquet');
  const s3 = holdingClient(isParquetPut, isParquetPut);
  const transform = createTransformHandler({ s3: s3.client, processedBucket: PROCESSED });

  // Act
  const report = await transform(s3EventFactory({ bucket: INGESTION, key: mixedKey }));
  s3.done();

  // Assess: both written, the second PUT sent while the first was held.
  expect(report.objects[0]!.parts!.map((p) => p.status)).toEqual(['written', 'written']);
  expect(s3.sent.filter(isParquetPut)).toHaveLength(2);
  expect(s3.sentBeforeAnswer()).toBe(true);
});

it('reads the mixed object while it looks for its manifest', async () => {
  // Prepare: a client that holds the manifest's HEAD until the mixed object's GET is sent (or 10 s
  // pass, which a transform reading only after the HEAD answered would need).
  const { currency, first, second } = currencyAndTypes('-read-early');
  const mixedKey = await deliverMixed([first, currency, second], 'totes-1-2025-02-28-09-15-00-early');
  const s3 = holdingClient(
    (command) => command instanceof HeadObjectCommand && command.input.Key === mixedManifestKeyFor(mixedKey),
    (command) => command instanceof GetObjectCommand && command.input.Key === mixedKey,
  );
  const transform = createTransformHandler({ s3: s3.client, processedBucket: PROCESSED });

  // Act
  const report = await transform(s3EventFactory({ bucket: INGESTION, key: mixedKey }));
  s3.done();

  // Assess
  expect(report.objects[0]!.status).toBe('written');
  expect(s3.sentBeforeAnswer()).toBe(true);
});

it('transforms a layout of several runs and many 64 KiB pieces, with characters cut at the pieces’ edges, to the same rows', async () => {
  // Prepare: payment types whose names hold two-, three- and four-byte characters, ~200 KiB of them
  // in two records with a currency record between: the layout comes in two runs of the object's
  // bytes, read in 64 KiB pieces that cut characters in two somewhere.
  const types = (from: number, lsn: string) =>
    changeBatchFactory({
      table: 'payment_type',
      columns: PAYMENT_TYPE,
      changes: Array.from({ length: 800 }, (_, i) =>
        changeFactory({ values: [String(from + i), `£é€😀 "${i}"\n`.repeat(8)], lsn, seq: i }),
      ),
    });
  const first = types(1, '00000000/01000000');
  const second = types(801, '00000000/03000000');
  const currency = changeBatchFactory({
    table: 'currency',
    columns: CURRENCY,
    changes: [changeFactory({ values: ['7', 'EUR'], lsn: '00000000/02000000' })],
  });
  const mixedKey = await deliverMixed([first, currency, second], 'totes-1-2025-02-28-09-15-00-pieces');
  expect((await body(INGESTION, mixedKey)).length).toBeGreaterThan(3 * 64 * 1024);
  const transform = createTransformHandler({ s3: client, processedBucket: PROCESSED });

  const report = await transform(s3EventFactory({ bucket: INGESTION, key: mixedKey }));

  const parts = Object.fromEntries(report.objects[0].parts!.map((p) => [p.targetTable, p]));
  expect(parts.dim_payment_type).toMatchObject({ status: 'written', rows: 1600 });
  const typeRows = (await decodeParquet(await body(PROCESSED, parts.dim_payment_type.outputKey!))).rows;
  expect(typeRows).toEqual(
    toWarehouseRows('payment_type', PAYMENT_TYPE, [...first.changes, ...second.changes]).rows,
  );
  const currencyRows = (await decodeParquet(await body(PROCESSED, parts.dim_currency.outputKey!))).rows;
  expect(currencyRows).toEqual(toWarehouseRows('currency', CURRENCY, currency.changes).rows);
});

it('writes nothing on a redelivered mixed-object event', async () => {
  const { currency, first, second } = currencyAndTypes('');
  const mixedKey = await deliverMixed([first, currency, second], 'totes-1-2025-02-28-09-15-01-again');
  const transform = createTransformHandler({ s3: client, processedBucket: PROCESSED });
  await transform(s3EventFactory({ bucket: INGESTION, key: mixedKey }));
  const before = await listing(PROCESSED);

  const again = await transform(s3EventFactory({ bucket: INGESTION, key: mixedKey }));

  expect(again.objects[0]).toMatchObject({ status: 'duplicate', manifestKey: mixedManifestKeyFor(mixedKey) });
  expect(await listing(PROCESSED)).toEqual(before);
});

it('resumes a mixed object that failed midway: the Parquet written stays as it is, the rest is written, then the manifest', async () => {
  // Prepare: S3 refuses the second Parquet PUT once (a 503, as S3 throttles), so the first
  // invocation writes one table's Parquet and fails retryably, as a crash midway would leave it.
  const { currency, first, second } = currencyAndTypes('');
  const mixedKey = await deliverMixed([first, currency, second], 'totes-1-2025-02-28-09-15-02-crash');
  const before = await listing(PROCESSED, 'dim_');
  let parquetPuts = 0;
  const flaky = {
    send: (command: Parameters<S3Client['send']>[0]) => {
      if (
        command instanceof PutObjectCommand &&
        command.input.Key?.endsWith('.parquet') &&
        ++parquetPuts === 2
      )
        return Promise.reject(
          Object.assign(new Error('Slow Down'), { name: 'SlowDown', $metadata: { httpStatusCode: 503 } }),
        );
      return client.send(command as PutObjectCommand);
    },
  } as Pick<S3Client, 'send'>;
  await expect(
    createTransformHandler({ s3: flaky, processedBucket: PROCESSED })(
      s3EventFactory({ bucket: INGESTION, key: mixedKey }),
    ),
  ).rejects.toThrow(TransformRetryableError);
  const manifestKey = mixedManifestKeyFor(mixedKey);
  const written = await listing(PROCESSED, 'dim_');
  expect(written.filter((l) => !before.includes(l))).toHaveLength(1);
  expect(await keys(PROCESSED, manifestKey)).toEqual([]);

  // Act: Lambda's retry (S3 answers normally now).
  const retry = await createTransformHandler({ s3: client, processedBucket: PROCESSED })(
    s3EventFactory({ bucket: INGESTION, key: mixedKey }),
  );

  // Assess: the Parquet written before is untouched, the other one written, then the manifest.
  expect(retry.objects[0].status).toBe('written');
  expect(retry.objects[0].parts!.map((p) => p.status).sort()).toEqual(['duplicate', 'written']);
  const after = await listing(PROCESSED, 'dim_');
  expect(after.filter((l) => written.includes(l))).toEqual(written);
  expect(after.length).toBe(written.length + 1);
  expect(await keys(PROCESSED, manifestKey)).toEqual([manifestKey]);
});

it('quarantines a mixed object with an unreadable layout, naming the table, writes the other tables, and completes once fixed', async () => {
  // Prepare: a currency layout Firehose described, and a payment_type layout whose schema object
  // was never written (the reconciler would re-drive the object once the mark is released).
  const { currency, first, second } = currencyAndTypes('');
  const good = await deliverMixed([currency], 'totes-1-2025-02-28-09-15-03-source');
  const types = encodeChangeBatchAsMixedCsv({
    ...first,
    columns: [...PAYMENT_TYPE, { name: 'extra', type: 'text', key: false }],
    changes: [changeFactory({ values: ['1', 'X', 'y'] })],
  });
  const key = good.replace(/source$/, 'bad-layout');
  await client.send(
    new PutObjectCommand({
      Bucket: INGESTION,
      Key: key,
      Body: Buffer.concat([await body(INGESTION, good), Buffer.from(types)]),
    }),
  );
  const transform = createTransformHandler({ s3: client, processedBucket: PROCESSED });

  // Act
  const report = await transform(s3EventFactory({ bucket: INGESTION, key }));

  // Assess: the object is quarantined with the table and why; currency's Parquet is written
  // anyway; no manifest, so the reconciler does not count it done.
  const [outcome] = report.objects;
  expect(outcome).toMatchObject({
    status: 'quarantined',
    quarantineKey: quarantineKeyFor('_mixed', key, 'object'),
  });
  expect(outcome.reason).toMatch(/^payment_type \(layout [0-9a-f]{16}\): schema object .* does not exist$/);
  expect(outcome.parts!.map((p) => [p.sourceTable, p.status])).toEqual([
    ['currency', 'written'],
    ['payment_type', 'quarantined'],
  ]);
  expect(await keys(PROCESSED, mixedManifestKeyFor(key))).toEqual([]);

  // Act 2: the fix (the schema object appears), then the mark is released and the object sent again.
  const schema = schemaObjectFor({
    ...second,
    columns: [...PAYMENT_TYPE, { name: 'extra', type: 'text', key: false }],
  });
  await client.send(
    new PutObjectCommand({
      Bucket: INGESTION,
      Key: schemaObjectKey('payment_type', schema.fingerprint),
      Body: encodeSchemaObject(schema),
    }),
  );
  const currencyOutput = outcome.parts![0].outputKey!;
  const currencyBefore = await listing(PROCESSED, currencyOutput);
  const fixed = await transform(s3EventFactory({ bucket: INGESTION, key }));

  // Assess 2: payment_type written, currency left as it was, the manifest written.
  expect(fixed.objects[0].status).toBe('written');
  expect(fixed.objects[0].parts!.map((p) => p.status)).toEqual(['duplicate', 'written']);
  expect(await listing(PROCESSED, currencyOutput)).toEqual(currencyBefore);
  expect(await keys(PROCESSED, mixedManifestKeyFor(key))).toEqual([mixedManifestKeyFor(key)]);
});

it('quarantines the rejected changes of a mixed object under their table, keyed as their layout’s part, and writes the rest', async () => {
  const bad = changeBatchFactory({
    table: 'currency',
    columns: CURRENCY,
    changes: [changeFactory({ values: ['2.5', 'GBP'] }), changeFactory({ values: ['8', 'USD'] })],
  });
  const mixedKey = await deliverMixed([bad], 'totes-1-2025-02-28-09-15-04-rejects');
  const transform = createTransformHandler({ s3: client, processedBucket: PROCESSED });

  const report = await transform(s3EventFactory({ bucket: INGESTION, key: mixedKey }));

  const [part] = report.objects[0].parts!;
  const partKey = mixedPartKey(parseMixedObjectKey(mixedKey)!, 'currency', schemaObjectFor(bad).fingerprint);
  expect(part).toMatchObject({
    status: 'written',
    rows: 1,
    rejected: 1,
    quarantineKey: quarantineKeyFor('currency', partKey, 'rejected'),
  });
  const [line] = (await body(PROCESSED, part.quarantineKey!))
    .toString('utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  expect(line).toMatchObject({ sourceBucket: INGESTION, sourceKey: partKey, mixedKey, table: 'currency' });
});

it('quarantines a mixed object that does not start with a layout record', async () => {
  const key = 'totesys/_mixed/2025/02/28/10/totes-1-broken';
  await client.send(
    new PutObjectCommand({
      Bucket: INGESTION,
      Key: key,
      Body: 'insert,0,0/1,0,2025-02-28T09:15:02.123456Z,,,1,GBP\n',
    }),
  );
  const transform = createTransformHandler({ s3: client, processedBucket: PROCESSED });

  const report = await transform(s3EventFactory({ bucket: INGESTION, key }));

  expect(report.objects[0]).toMatchObject({
    status: 'quarantined',
    quarantineKey: quarantineKeyFor('_mixed', key, 'object'),
    reason: 'data before the first layout record',
  });
});
