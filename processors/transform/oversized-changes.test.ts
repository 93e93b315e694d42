import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { encodeChangeBatch, type Change } from '../../core/change-event';
import { changeBatchFactory } from '../../core/csv-codec.fixtures';
import {
  encodeChangeBatchAsCsv,
  encodeSchemaObject,
  schemaObjectFor,
  schemaObjectKey,
} from '../../core/csv-codec';
import { oversizedObjectKey, pointerChange } from '../../core/oversized-change';
import { SOURCE_LAYOUTS, sourceChange } from '../../core/star-mapping.fixtures';
import { toWarehouseRows } from '../../core/star-mapping';
import { useLocalS3 } from '../../test/support/local-s3';
import { s3EventFactory } from '../../test/support/s3-events';
import { decodeParquet } from '../shared/parquet-codec';
import {
  createTransformHandler,
  outputKeyFor,
  quarantineKeyFor,
  TransformRetryableError,
} from './create-handler';

// Transform's half of the claim check against a real s3rver: a pointer line in a CSV object is
// replaced by the change stored under oversized/ before mapping; a missing or foreign stored event
// quarantines the object with table, key and position; an S3 failure on the way is retried.

const INGESTION = 'ingestion';
const PROCESSED = 'processed';
const layout = SOURCE_LAYOUTS.design;

const local = useLocalS3([INGESTION, PROCESSED]);

const put = (Bucket: string, Key: string, Body: string | Uint8Array) =>
  local.client.send(new PutObjectCommand({ Bucket, Key, Body }));

async function readBody(bucket: string, key: string): Promise<Buffer> {
  const response = await local.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await response.Body!.transformToByteArray());
}

let objects = 0;

/**
 * A design update with a 2 MiB name, as capture sends it: its event stored under oversized/ (unless
 * `store` is false) and a pointer line in a CSV object beside an ordinary change.
 */
async function objectWithPointer(options: { store?: boolean; seq?: number } = {}) {
  objects += 1;
  const id = String(100 + objects);
  const big = `${id}:${'É"\n,'.repeat(512 * 1024)}`;
  const full = sourceChange(
    'design',
    { design_id: id, design_name: big },
    { op: 'update', lsn: '0/5000000', seq: options.seq ?? 1 },
  );
  const body = encodeChangeBatch(changeBatchFactory({ table: 'design', columns: layout, changes: [full] }));
  const ref = oversizedObjectKey('design', body);
  if (options.store !== false) await put(INGESTION, ref, body);
  const ordinary = sourceChange('design', { design_id: '1' }, { op: 'update', lsn: '0/5000000', seq: 0 });
  const batch = {
    ...changeBatchFactory({ table: 'design', columns: layout, changes: [ordinary] }),
    v: 2 as const,
  };
  batch.changes.push(pointerChange(layout, full, ref));
  const schema = schemaObjectFor(batch);
  await put(INGESTION, schemaObjectKey('design', schema.fingerprint), encodeSchemaObject(schema));
  const key = `totesys/design/schema=${schema.fingerprint}/2025/02/28/09/totes-oversized-${objects}`;
  const csv = encodeChangeBatchAsCsv(batch);
  await put(INGESTION, key, csv);
  return { object: { bucket: INGESTION, key, size: Buffer.byteLength(csv) }, full, ordinary, ref, big, id };
}

describe('transform: pointer lines (oversized changes)', () => {
  it('writes the stored change in the pointer’s place, its value byte for byte', async () => {
    // Prepare
    const { object, full, ordinary, big, id } = await objectWithPointer();
    const handler = createTransformHandler({ s3: local.client, processedBucket: PROCESSED });

    // Act
    const report = await handler(s3EventFactory(object));

    // Assess
    expect(report.objects[0]).toMatchObject({ status: 'written', rows: 2, rejected: 0 });
    const parquet = await decodeParquet(await readBody(PROCESSED, outputKeyFor('dim_design', object.key)));
    const expected = toWarehouseRows('design', layout, [ordinary, full as Change]).rows;
    expect(parquet.rows.length).toBe(expected.length);
    const row = parquet.rows.find((r) => String(r.design_id) === id)!;
    // Compared as strings with ===: jest's diff of two 2 MiB values would be slow and unreadable.
    expect(row.design_name === big).toBe(true);
    expect(parquet.rows).toEqual(expected);
  });

  it('quarantines the object, naming table, key and position, when the stored event is missing', async () => {
    const { object, ref, id } = await objectWithPointer({ store: false, seq: 7 });
    const handler = createTransformHandler({ s3: local.client, processedBucket: PROCESSED });

    const [outcome] = (await handler(s3EventFactory(object))).objects;

    const reason =
      `oversized change design (design_id=${id}) at epoch 0, lsn 0/5000000, seq 7: ` +
      `its event s3://${INGESTION}/${ref} does not exist`;
    expect(outcome).toMatchObject({ status: 'quarantined', reason });
    const pointer = JSON.parse(
      (await readBody(PROCESSED, quarantineKeyFor('design', object.key, 'object'))).toString(),
    );
    expect(pointer).toMatchObject({ kind: 'unreadable-object', reason, source: { key: object.key } });
  });

  it('quarantines the object when the stored event is not the one the pointer names', async () => {
    const { object, ref } = await objectWithPointer();
    await put(INGESTION, ref, '{"v":1}');
    const handler = createTransformHandler({ s3: local.client, processedBucket: PROCESSED });

    const [outcome] = (await handler(s3EventFactory(object))).objects;

    expect(outcome.status).toBe('quarantined');
    expect(outcome.reason).toMatch(
      /^oversized change design \(design_id=\d+\) at .*holds other bytes than its name says/,
    );
  });

  it('fails retryably, quarantining nothing, when reading the stored event fails transiently', async () => {
    const { object, ref } = await objectWithPointer();
    const unavailable = Object.assign(new Error('Service Unavailable'), {
      name: 'SlowDown',
      $metadata: { httpStatusCode: 503 },
    });
    // A fake for one fault s3rver cannot produce on demand: a 503 for one key only.
    const failing: Pick<S3Client, 'send'> = {
      send: ((command: { input: { Key?: string } }) =>
        command instanceof GetObjectCommand && command.input.Key === ref
          ? Promise.reject(unavailable)
          : local.client.send(command as never)) as S3Client['send'],
    };
    const handler = createTransformHandler({ s3: failing, processedBucket: PROCESSED });

    const error = await handler(s3EventFactory(object)).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(TransformRetryableError);
    expect((error as TransformRetryableError).failures[0].reason).toContain(ref);
    const retry = await createTransformHandler({ s3: local.client, processedBucket: PROCESSED })(
      s3EventFactory(object),
    );
    expect(retry.objects[0].status).toBe('written');
  });
});
