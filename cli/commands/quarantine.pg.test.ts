import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'pg';
import { changeBatchFactory, changeFactory } from '../../core/csv-codec.fixtures';
import {
  encodeChangeBatchAsCsv,
  encodeSchemaObject,
  schemaObjectFor,
  schemaObjectKey,
} from '../../core/csv-codec';
import { openLoadQueue } from '../../local/load-queue';
import { writeRuntimeInfo } from '../../local/runtime-info';
import { createLoadHandler, loadQuarantineKeyFor } from '../../processors/load/create-handler';
import { migrateWarehouse } from '../../processors/load/migrate';
import type { QuarantineEntry } from '../../processors/reconcile/quarantine';
import { createTransformHandler, quarantineKeyFor } from '../../processors/transform/create-handler';
import { runTotes } from '../../test/support/cli';
import { useLocalS3 } from '../../test/support/local-s3';
import { createTestDatabase } from '../../test/support/pg';
import { s3EventFactory } from '../../test/support/s3-events';
import { objectOf, parquetOf, rowOf, at } from '../../test/support/warehouse-rows';

// `totes quarantine` against a data directory whose runtime.json names a real s3rver, and a real
// warehouse: what the transform and the load set aside is listed with its reason, shown, and
// re-driven after a fix; a retry without a fix is quarantined again (no loop).

const INGESTION = 'ingestion';
const PROCESSED = 'processed';
// The data directory needs only runtime.json naming s3rver: where s3rver keeps its files is its own.
const local = useLocalS3([INGESTION, PROCESSED]);
let root: string;
let warehouseUrl: string;
let pool: Pool;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-quarantine-cli-'));
  await writeRuntimeInfo(root, {
    kinesisEndpoint: 'http://127.0.0.1:1',
    streamName: 'changes',
    s3Endpoint: local.s3.endpoint,
    ingestionBucket: INGESTION,
    processedBucket: PROCESSED,
    pid: process.pid,
  });
  warehouseUrl = await createTestDatabase('quarantine_cli');
  pool = new Pool({ connectionString: warehouseUrl, max: 2 });
  const c = await pool.connect();
  await migrateWarehouse(c).finally(() => c.release());
});
afterAll(async () => {
  await pool.end();
  fs.rmSync(root, { recursive: true, force: true });
});

/** The event S3 sends for objects as they are now (with their real ETags, which marks record). */
async function eventFor(...objects: { bucket: string; key: string }[]) {
  const specs = [];
  for (const o of objects) {
    const head = await local.client.send(new HeadObjectCommand({ Bucket: o.bucket, Key: o.key }));
    specs.push({ ...o, eTag: head.ETag!.replace(/"/g, ''), size: head.ContentLength });
  }
  return s3EventFactory(specs);
}

const put = (bucket: string, key: string, body: string | Buffer) =>
  local.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));

async function read(bucket: string, key: string): Promise<string> {
  const response = await local.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return response.Body!.transformToString();
}

/** Currency changes (they map straight to dim_currency); an id that is not an integer is rejected. */
function currencyBatch(ids: string[]) {
  return changeBatchFactory({
    table: 'currency',
    columns: [
      { name: 'currency_id', type: 'int4', key: true },
      { name: 'currency_code', type: 'text', key: false },
    ],
    changes: ids.map((id, seq) => changeFactory({ lsn: '00000000/0A000000', seq, values: [id, 'GBP'] })),
  });
}

/** What `totes up` does with the load queue: hand each message to the load handler. */
async function drainLoadQueue(): Promise<string[]> {
  const load = createLoadHandler({ s3: local.client, warehouse: pool });
  const queue = openLoadQueue(root);
  const statuses: string[] = [];
  for (const message of await queue.receive(100)) {
    statuses.push(...(await load(JSON.parse(message.body))).objects.map((o) => `${o.status} ${o.key}`));
    await queue.delete(message.receiptHandle);
  }
  return statuses;
}

const base = () => ['--data-dir', root, '--warehouse-url', warehouseUrl];
const list = async () => {
  const run = await runTotes('quarantine', 'list', ...base(), '--json');
  return { code: run.code, entries: JSON.parse(run.out) as QuarantineEntry[] };
};
const currencies = async () =>
  (await pool.query('SELECT "currency_id" FROM "dim_currency" ORDER BY 1')).rows.map((r) => r.currency_id);

it('lists what was set aside with its reasons, shows it, and re-drives it after a fix', async () => {
  // Prepare: transform rejects one change of an input (a currency_id that is not an integer) and
  // cannot read another input at all; load cannot read a Parquet object.
  const batch = currencyBatch(['1', '7x']);
  const schema = schemaObjectFor(batch);
  await put(INGESTION, schemaObjectKey('currency', schema.fingerprint), encodeSchemaObject(schema));
  const folder = `totesys/currency/schema=${schema.fingerprint}/2025/02/28/09`;
  const good = `${folder}/good.csv`;
  const bad = `${folder}/bad.csv`;
  await put(INGESTION, good, encodeChangeBatchAsCsv(batch));
  await put(INGESTION, bad, 'not,"a valid\nchange csv');
  const transform = createTransformHandler({ s3: local.client, processedBucket: PROCESSED });
  await transform(await eventFor({ bucket: INGESTION, key: good }, { bucket: INGESTION, key: bad }));
  const junk = 'dim_currency/2025/02/28/09/junk.parquet';
  await put(PROCESSED, junk, 'junk');
  const load = createLoadHandler({ s3: local.client, warehouse: pool });
  await load(await eventFor({ bucket: PROCESSED, key: junk }));
  const rowsId = quarantineKeyFor('currency', good, 'rejected');
  const pointerId = quarantineKeyFor('currency', bad, 'object');
  const loadId = `${loadQuarantineKeyFor(junk)}.reason.json`;

  // Act + Assess 1: list, as JSON and for a person; exit 1 while anything waits.
  const first = await list();
  expect(first.code).toBe(1);
  expect(first.entries.map((e) => [e.kind, e.id, e.key, e.status])).toEqual(
    expect.arrayContaining([
      ['transform-rows', rowsId, good, 'rows waiting'],
      ['transform-object', pointerId, bad, 'quarantined'],
      ['load-object', loadId, junk, 'quarantined'],
    ]),
  );
  expect(first.entries).toHaveLength(3);
  expect(first.entries.find((e) => e.id === rowsId)).toMatchObject({
    rows: 1,
    reasons: { 'currency_id: not an integer': 1 },
  });
  const human = await runTotes('quarantine', 'list', ...base());
  expect(human.out).toContain(`quarantined  ${loadId}`);
  expect(human.out).toContain('reason: not a readable Parquet file');
  expect(human.out).toContain('1 change(s) rejected by transform from');
  expect(human.out).toContain('rows waiting: edit the values in the file');

  // show: the whole document, values included (the operator corrects them there).
  const shown = await runTotes('quarantine', 'show', rowsId, ...base());
  expect(shown).toMatchObject({ code: 0 });
  expect(shown.out).toContain('"values":["7x","GBP"]');

  // Act 2: retry without a fix: the unreadable input is transformed again and quarantined again.
  expect((await runTotes('quarantine', 'retry', pointerId, ...base())).out).toContain(
    `sent again   ${pointerId}`,
  );
  expect((await list()).entries.find((e) => e.id === pointerId)).toMatchObject({ status: 'quarantined' });
  // Rows still rejected stay in their file, untouched.
  const unchanged = await read(PROCESSED, rowsId);
  expect((await runTotes('quarantine', 'retry', rowsId, ...base())).out).toContain(
    '1 change(s) still rejected',
  );
  expect(await read(PROCESSED, rowsId)).toBe(unchanged);

  // Act 3: the operator corrects the rejected value in the file and retries: the change loads.
  await put(PROCESSED, rowsId, unchanged.replace('"7x"', '"7"'));
  const replay = await runTotes('quarantine', 'retry', rowsId, ...base());
  expect(replay.out).toMatch(
    /replayed .* 1 change\(s\) into dim_currency\/2025\/02\/28\/09\/\w+\.replay-\w+\.parquet/,
  );
  expect(await drainLoadQueue()).toEqual([expect.stringMatching(/^loaded .*\.replay-\w+\.parquet$/)]);
  expect(await currencies()).toEqual([7]);

  // Act 4: corrected versions replace the unreadable objects under their keys: listed as
  // corrected (the mark covers the old ETag only), and `retry --all` sends them through.
  await put(INGESTION, bad, encodeChangeBatchAsCsv(currencyBatch(['2'])));
  await put(
    PROCESSED,
    junk,
    await parquetOf(objectOf('dim_currency', [rowOf('dim_currency', 3, {}, at(1))])),
  );
  expect((await list()).entries.map((e) => [e.id, e.status])).toEqual([
    [loadId, 'corrected'],
    [pointerId, 'corrected'], // quarantined again by the retry without a fix: newer
  ]);
  const all = await runTotes('quarantine', 'retry', '--all', ...base(), '--json');
  expect(JSON.parse(all.out)).toEqual([
    expect.objectContaining({ id: loadId, outcome: 'sent again' }),
    expect.objectContaining({ id: pointerId, outcome: 'sent again' }),
  ]);
  // The corrected CSV was transformed (its Parquet reaches load by S3's notification in `totes up`);
  // the corrected Parquet went to the load queue and loads.
  expect(await drainLoadQueue()).toEqual([`loaded ${junk}`]);
  expect(await currencies()).toEqual([3, 7]);

  // Assess: nothing is left in quarantine.
  expect(await list()).toEqual({ code: 0, entries: [] });
  expect((await runTotes('quarantine', 'list', ...base())).out).toBe('nothing quarantined\n');
});

it('says when a marked object loaded since (done) or no longer exists (gone), and retry then only clears or reports', async () => {
  // Prepare: two Parquet objects load cannot read, both quarantined.
  const loadedSince = 'dim_currency/2025/03/01/10/loaded-since.parquet';
  const vanished = 'dim_currency/2025/03/01/10/vanished.parquet';
  await put(PROCESSED, loadedSince, 'junk');
  await put(PROCESSED, vanished, 'junk');
  const load = createLoadHandler({ s3: local.client, warehouse: pool });
  await load(await eventFor({ bucket: PROCESSED, key: loadedSince }, { bucket: PROCESSED, key: vanished }));
  // Act: one is replaced by a loadable version that loads (by its own notification); the other is deleted.
  await put(
    PROCESSED,
    loadedSince,
    await parquetOf(objectOf('dim_currency', [rowOf('dim_currency', 4, {}, at(1))])),
  );
  expect((await load(await eventFor({ bucket: PROCESSED, key: loadedSince }))).objects[0].status).toBe(
    'loaded',
  );
  await local.client.send(new DeleteObjectCommand({ Bucket: PROCESSED, Key: vanished }));
  const doneId = `${loadQuarantineKeyFor(loadedSince)}.reason.json`;
  const goneId = `${loadQuarantineKeyFor(vanished)}.reason.json`;

  // Assess: listed as done and gone; nothing waits, so the exit code is 0.
  const listed = await list();
  expect(listed.code).toBe(0);
  expect(listed.entries.map((e) => [e.id, e.status])).toEqual(
    expect.arrayContaining([
      [doneId, 'done'],
      [goneId, 'gone'],
    ]),
  );
  // Without a warehouse, a load since is not recognised: the mark is taken as corrected.
  const blind = await runTotes('quarantine', 'list', '--data-dir', root);
  expect(blind.out).toContain(`corrected    ${doneId}`);
  expect(blind.out).toContain('(no warehouse given: objects loaded since are not recognised)');
  // retry clears the mark of the done one, and cannot send the gone one.
  const retried = await runTotes('quarantine', 'retry', doneId, goneId, ...base());
  expect(retried.out).toBe(`mark cleared ${doneId}\nobject gone  ${goneId}\n`);
  expect((await list()).entries.map((e) => e.id)).toEqual([goneId]);
  expect(await drainLoadQueue()).toEqual([]);
});

/** Runs `fn` with `vars` set in this process's environment, as they would be for the CLI in AWS. */
async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const before = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(before)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

it('lists, shows and retries against AWS buckets, its S3 client configured from the environment', async () => {
  // Prepare: a Parquet object load cannot read, quarantined; then a loadable version of it loads.
  const key = 'dim_currency/2025/03/02/11/aws.parquet';
  await put(PROCESSED, key, 'junk');
  const load = createLoadHandler({ s3: local.client, warehouse: pool });
  await load(await eventFor({ bucket: PROCESSED, key }));
  const id = `${loadQuarantineKeyFor(key)}.reason.json`;
  const aws = [
    '--ingestion-bucket',
    INGESTION,
    '--processed-bucket',
    PROCESSED,
    '--warehouse-url',
    warehouseUrl,
  ];
  // The SDK's own configuration, as an operator's shell or CI would give it: s3rver stands in for S3
  // through AWS_ENDPOINT_URL_S3 (an IP address makes the SDK address buckets by path), and predates
  // the SDK's default CRC32 checksums.
  // https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html
  const env = {
    AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${new URL(local.s3.endpoint).port}`,
    AWS_REGION: 'eu-west-2',
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REQUEST_CHECKSUM_CALCULATION: 'WHEN_REQUIRED',
    AWS_RESPONSE_CHECKSUM_VALIDATION: 'WHEN_REQUIRED',
  };

  await withEnv(env, async () => {
    // Act + Assess: listed with its reason, and shown.
    const listed = await runTotes('quarantine', 'list', ...aws, '--json');
    expect(listed.code).toBe(1);
    expect((JSON.parse(listed.out) as QuarantineEntry[]).find((e) => e.id === id)).toMatchObject({
      kind: 'load-object',
      key,
      status: 'quarantined',
    });
    const shown = await runTotes('quarantine', 'show', id, ...aws);
    expect(shown).toMatchObject({ code: 0 });
    expect(shown.out).toContain('not a readable Parquet file');
  });

  // A corrected version loads (by its own notification): retry only clears the mark, sending nothing
  // to the queue or the function (neither exists here: a call to them would fail the command).
  await put(PROCESSED, key, await parquetOf(objectOf('dim_currency', [rowOf('dim_currency', 5, {}, at(1))])));
  expect((await load(await eventFor({ bucket: PROCESSED, key }))).objects[0].status).toBe('loaded');
  await withEnv(env, async () => {
    const redrive = [
      '--load-queue-url',
      'http://127.0.0.1:1/queue',
      '--transform-function',
      'totes-transform',
    ];
    const retried = await runTotes('quarantine', 'retry', id, ...aws, ...redrive);
    expect(retried).toMatchObject({ code: 0, out: `mark cleared ${id}\n` });
    const after = await runTotes('quarantine', 'list', ...aws, '--json');
    expect((JSON.parse(after.out) as QuarantineEntry[]).map((e) => e.id)).not.toContain(id);
  });
});

it('refuses bad usage and unknown entries', async () => {
  expect((await runTotes('quarantine')).code).toBe(2);
  expect((await runTotes('quarantine', 'show', ...base())).code).toBe(2);
  expect((await runTotes('quarantine', 'retry', ...base())).code).toBe(2);
  expect((await runTotes('quarantine', 'retry', 'x', '--all', ...base())).code).toBe(2);
  expect((await runTotes('quarantine', 'list', '--ingestion-bucket', 'a')).code).toBe(2);
  expect(
    (await runTotes('quarantine', 'retry', 'x', '--ingestion-bucket', 'a', '--processed-bucket', 'b')).code,
  ).toBe(2);
  const unknown = await runTotes('quarantine', 'show', 'quarantine/load/nope.parquet.reason.json', ...base());
  expect(unknown.code).toBe(2);
  expect(unknown.err).toContain('is not a quarantine entry');
  const noStack = await runTotes('quarantine', 'list', '--data-dir', path.join(root, 'none'));
  expect(noStack.code).toBe(3);
  expect((await runTotes('quarantine', '--help')).out).toContain(
    'Usage: totes quarantine list|show ID|retry',
  );
});
