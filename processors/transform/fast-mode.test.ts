import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { encodeChangeBatch, type ChangeBatch } from '../../core/change-event';
import { changeBatchFactory, changeFactory } from '../../core/csv-codec.fixtures';
import { MIXED_INGESTION_PREFIX } from '../../core/mixed-csv';
import { toWarehouseRows } from '../../core/star-mapping';
import { evaluatePrefix } from '../../local/delivery-stream-prefix';
import { useLocalS3 } from '../../test/support/local-s3';
import { s3EventFactory } from '../../test/support/s3-events';
import { createHandler as createFirehoseTransform } from '../firehose-transform/create-handler';
import { decodeParquet } from '../shared/parquet-codec';
import { createTransformHandler, outputKeyFor, quarantineKeyFor } from './create-handler';

// Fast mode (no dynamic partitioning): Firehose's record transformation in mixed mode, Firehose's
// concatenation into one object of several tables, and transform splitting it by table, then
// turning each part into its Parquet — against a real s3rver. Needs no Postgres.

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

it('splits a mixed-table object by table into ordinary objects, each then transformed to its Parquet', async () => {
  // Prepare: three records of two tables, interleaved, as a zero-buffer Firehose delivers them.
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
  const first = types('1', 'SALES_RECEIPT\n@layout,currency,0123456789abcdef', '00000000/01000000');
  const second = types('2', 'PURCHASE_PAYMENT', '00000000/02000000');
  const mixedKey = await deliverMixed([first, currency, second], 'totes-1-2025-02-28-09-15-00-mixed');
  const transform = createTransformHandler({ s3: client, processedBucket: PROCESSED });

  // Act 1: transform on the mixed object (its ObjectCreated event).
  const split = await transform(s3EventFactory({ bucket: INGESTION, key: mixedKey }));

  // Assess 1: one ordinary object per layout, under the default layout; nothing in processed yet.
  const parts = split.objects[0].parts!;
  expect(split.objects[0].status).toBe('split');
  expect(parts).toHaveLength(2);
  expect(
    parts.every((k) =>
      /^totesys\/(currency|payment_type)\/schema=[0-9a-f]{16}\/2025\/02\/28\/09\/totes-1-2025-02-28-09-15-00-mixed$/.test(
        k,
      ),
    ),
  ).toBe(true);
  expect(await keys(PROCESSED, '')).toEqual([]);

  // Act 2: the parts' own ObjectCreated events.
  const report = await transform(s3EventFactory(parts.map((key) => ({ bucket: INGESTION, key }))));

  // Assess 2: each table's Parquet holds exactly its changes.
  expect(report.objects.map((o) => o.status)).toEqual(['written', 'written']);
  const byTable = Object.fromEntries(report.objects.map((o) => [o.targetTable, o.outputKey!]));
  const currencyRows = (await decodeParquet(await body(PROCESSED, byTable.dim_currency))).rows;
  expect(currencyRows).toEqual(toWarehouseRows('currency', CURRENCY, currency.changes).rows);
  const typeRows = (await decodeParquet(await body(PROCESSED, byTable.dim_payment_type))).rows;
  expect(typeRows).toEqual(
    toWarehouseRows('payment_type', PAYMENT_TYPE, [...first.changes, ...second.changes]).rows,
  );
  expect(byTable.dim_currency).toBe(
    outputKeyFor(
      'dim_currency',
      parts.find((k) => k.includes('/currency/'))!,
    ),
  );

  // Act 3: S3 delivers the mixed object's event again.
  const before = await Promise.all(parts.map((k) => body(INGESTION, k)));
  const again = await transform(s3EventFactory({ bucket: INGESTION, key: mixedKey }));

  // Assess 3: the same parts, untouched.
  expect(again.objects[0]).toMatchObject({ status: 'split', parts });
  expect(await Promise.all(parts.map((k) => body(INGESTION, k)))).toEqual(before);
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
