import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Pool } from 'pg';
import { changeBatchFactory, changeFactory } from '../core/csv-codec.fixtures';
import {
  encodeChangeBatchAsCsv,
  encodeSchemaObject,
  schemaObjectFor,
  schemaObjectKey,
} from '../core/csv-codec';
import { silentLogger } from '../core/logger';
import {
  encodeChangeBatchAsMixedCsv,
  MIXED_ROOT,
  mixedPartKey,
  parseMixedObjectKey,
} from '../core/mixed-csv';
import { createLoadHandler } from '../processors/load/create-handler';
import { migrateWarehouse } from '../processors/load/migrate';
import { listQuarantine, retryQuarantine } from '../processors/reconcile/quarantine';
import { listAll, loadedVersionsIn, reconcile, redriveDeadLetters } from '../processors/reconcile/reconcile';
import { objectCreatedRecord } from '../processors/shared/s3-event';
import { outputKeyFor } from '../processors/transform/create-handler';
import { mixedManifestKeyFor } from '../processors/transform/transform-mixed-object';
import { createTestDatabase, waitFor } from '../test/support/pg';
import { openLoadQueue } from './load-queue';
import { localLoadDeadLetters, localReconcileDeps, localRedrivers } from './local-reconcile';
import { QueueEventSource } from './queue-event-source';
import { s3ClientFor, startS3rver, type LocalS3 } from './s3rver';

// The reconciler on the local stack: real s3rver buckets, a real warehouse, the on-disk load queue.

const INGESTION = 'ingestion';
const PROCESSED = 'processed';
let s3: LocalS3;
let client: S3Client;
let root: string;
let warehouse: Client;
let pool: Pool;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-reconcile-'));
  s3 = await startS3rver({ dataDir: path.join(root, 's3'), buckets: [INGESTION, PROCESSED] });
  client = s3ClientFor(s3.endpoint);
  const url = await createTestDatabase('reconcile_local');
  warehouse = new Client({ connectionString: url });
  await warehouse.connect();
  await migrateWarehouse(warehouse);
  pool = new Pool({ connectionString: url, max: 2 });
});
afterAll(async () => {
  client.destroy();
  await s3.stop();
  await warehouse.end();
  await pool.end();
  fs.rmSync(root, { recursive: true, force: true });
});

const put = (bucket: string, key: string, body: string) =>
  client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));

/** Currency inserts (a table that maps straight to dim_currency). */
function currencyBatch(ids: number[]) {
  return changeBatchFactory({
    table: 'currency',
    columns: [
      { name: 'currency_id', type: 'int4', key: true },
      { name: 'currency_code', type: 'text', key: false },
    ],
    changes: ids.map((id) =>
      changeFactory({ lsn: `00000000/0${id}000000`, values: [String(id), ['GBP', 'USD', 'EUR'][id % 3]] }),
    ),
  });
}

/** The reconciler on the local stack of `dataDir` (its load queue), these buckets and warehouse. */
const depsFor = (dataDir: string) =>
  localReconcileDeps({
    dataDir,
    s3: client,
    ingestionBucket: INGESTION,
    processedBucket: PROCESSED,
    warehouse,
    logger: silentLogger,
  });

/** An hour partition of today, where the reconciler looks by default. */
function hourPath(): string {
  const d = new Date();
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}/${pad(d.getUTCMonth() + 1)}/${pad(d.getUTCDate())}/${pad(d.getUTCHours())}`;
}

it('finds, re-drives and counts unfinished work; never loops a quarantined object; takes a corrected one', async () => {
  // Prepare: a valid currency CSV and an unreadable one, both delivered but never transformed.
  const dataDir = path.join(root, 'data');
  const batch = currencyBatch([1, 2, 3]);
  const schema = schemaObjectFor(batch);
  await put(INGESTION, schemaObjectKey(batch.table, schema.fingerprint), encodeSchemaObject(schema));
  const folder = `totesys/${batch.table}/schema=${schema.fingerprint}/${hourPath()}`;
  const good = `${folder}/good.csv`;
  const bad = `${folder}/bad.csv`;
  await put(INGESTION, good, encodeChangeBatchAsCsv(batch));
  await put(INGESTION, bad, 'not,"a valid\nchange csv');
  const deps = depsFor(dataDir);
  const run = () => reconcile(deps, { graceMs: 0 });

  // Act 1: both are outstanding; the reconciler transforms them (one output, one quarantine pointer).
  const first = await run();
  expect(first.counts.transform).toMatchObject({ outstanding: 2, done: 0 });
  expect(first.redriven.transform).toBe(2);
  expect(await reconcile(deps, { graceMs: 60_000 })).toMatchObject({
    counts: { load: { 'in-flight': 1 } }, // just written: still on its way
    redriven: { load: 0 },
  });

  // Act 2: the good one's Parquet was never loaded: sent to the load queue. The quarantined one is not sent again.
  const second = await run();
  expect(second.counts.transform).toMatchObject({ done: 1, quarantined: 1, outstanding: 0 });
  expect(second.counts.load).toMatchObject({ outstanding: 1 });
  expect(second.redriven).toEqual({ transform: 0, load: 1 });
  // While the queue holds that message, loads are not sent again (they may be on their way).
  expect(await run()).toMatchObject({ redriven: { load: 0 }, loadRedriveSkipped: 'load queue busy' });

  // Act 3: the load queue's consumer (totes up's, here alone) loads it.
  const queue = openLoadQueue(dataDir);
  const consumer = new QueueEventSource({
    name: 'load',
    queue,
    handler: createLoadHandler({ s3: client, warehouse: pool }),
    batchSize: 10,
    maximumConcurrency: 2,
    pollIntervalMs: 20,
    logger: silentLogger,
  });
  consumer.start();
  try {
    await waitFor('the load', async () =>
      (
        await loadedVersionsIn(
          warehouse,
          second.outstanding.map((i) => i.key),
        )
      ).length === 1
        ? true
        : undefined,
    );
    await waitFor('the queue to empty', async () =>
      (await queue.depth()).inFlight === 0 ? true : undefined,
    );

    // Assess: nothing outstanding; the quarantined object stays quarantined, run after run.
    const third = await run();
    expect(third.counts).toEqual({
      transform: { done: 1, quarantined: 1, 'in-flight': 0, outstanding: 0 },
      load: { done: 1, quarantined: 0, 'in-flight': 0, outstanding: 0 },
    });

    // Act 4: the bad object is replaced by a corrected one (a new version): it is outstanding again, and goes through.
    await put(INGESTION, bad, encodeChangeBatchAsCsv(currencyBatch([4, 5])));
    const corrected = await run();
    expect(corrected.counts.transform).toMatchObject({ outstanding: 1 });
    expect(corrected.redriven.transform).toBe(1);
    const fourth = await run();
    expect(fourth.counts.transform).toMatchObject({ done: 2, quarantined: 0 });
    await waitFor('the corrected object loaded', async () =>
      (await run()).counts.load.done === 2 ? true : undefined,
    );

    // Act 4b: a loaded Parquet object is replaced under its key by other content (a new ETag): load
    // bookkeeping is per version, so it is outstanding again, is sent again, and loads.
    const outputs = (await listAll(client, PROCESSED, 'dim_currency/')).map((o) => o.key).sort();
    expect(outputs).toHaveLength(2);
    const other = await client.send(new GetObjectCommand({ Bucket: PROCESSED, Key: outputs[1] }));
    await client.send(
      new PutObjectCommand({
        Bucket: PROCESSED,
        Key: outputs[0],
        Body: Buffer.from(await other.Body!.transformToByteArray()),
      }),
    );
    await waitFor('the replaced object sent again', async () =>
      (await run()).redriven.load === 1 ? true : undefined,
    );
    await waitFor('the replaced object loaded', async () =>
      (await run()).counts.load.done === 2 ? true : undefined,
    );
    expect((await loadedVersionsIn(warehouse, [outputs[0]])).length).toBe(2);

    // Act 5: a Parquet object load cannot read is quarantined by load, and then never sent again.
    const junk = `dim_currency/${hourPath()}/junk.parquet`;
    await put(PROCESSED, junk, 'junk');
    await queue.send(
      JSON.stringify({
        Records: [
          objectCreatedRecord({
            bucket: PROCESSED,
            key: junk,
            lastModified: new Date(),
            configurationId: 'test',
          }),
        ],
      }),
    );
    await waitFor('the junk quarantined', async () =>
      (await run()).counts.load.quarantined === 1 ? true : undefined,
    );
    expect((await run()).redriven.load).toBe(0);

    // Act 6: dead letters go through the same model: loaded and quarantined ones are dropped, the rest sent again.
    const missing = `dim_currency/${hourPath()}/never-loaded.parquet`;
    await put(PROCESSED, missing, 'never loaded (and not Parquet either)');
    const loaded = fourth.outstanding.length ? fourth.outstanding[0].key : second.outstanding[0].key;
    for (const key of [loaded, junk, missing]) {
      const id = `000000000000001-${key.replace(/\W/g, '')}`;
      const record = objectCreatedRecord({
        bucket: PROCESSED,
        key,
        lastModified: new Date(),
        configurationId: 'test',
      });
      const body = JSON.stringify({ Records: [record] });
      fs.appendFileSync(
        queue.deadLetterFile,
        `${JSON.stringify({ id, body, sentAt: 1, receiveCount: 100, visibleAt: 0, deadLetteredAt: 2 })}\n`,
      );
    }
    await consumer.stop();
    const result = await redriveDeadLetters(deps, await localLoadDeadLetters(dataDir));
    expect(result).toEqual({ redriven: 1, dropped: 2 });
    expect(await queue.deadLetters()).toEqual([]);
    const [message] = await queue.receive(10);
    expect(JSON.parse(message.body).Records[0].s3.object.key).toBe(missing);
  } finally {
    await consumer.stop();
  }
}, 90_000);

it('never loops an object replaced by a version that fails too: the new version is quarantined in its turn', async () => {
  // Prepare: an unreadable CSV and an unreadable Parquet object, each quarantined by its stage.
  const dataDir = path.join(root, 'data-replaced');
  const schema = schemaObjectFor(currencyBatch([1]));
  await put(INGESTION, schemaObjectKey('currency', schema.fingerprint), encodeSchemaObject(schema));
  const csv = `totesys/currency/schema=${schema.fingerprint}/${hourPath()}/replaced.csv`;
  const parquet = `dim_currency/${hourPath()}/replaced.parquet`;
  await put(INGESTION, csv, 'not,"a valid\nchange csv');
  await put(PROCESSED, parquet, 'not parquet');
  const deps = depsFor(dataDir);
  const load = createLoadHandler({ s3: client, warehouse: pool });
  const queue = openLoadQueue(dataDir);
  /** One reconciler run, then the load queue handled as `totes up` would. */
  const run = async () => {
    const result = await reconcile(deps, { graceMs: 0, lookbackDays: 1 });
    for (const message of await queue.receive(10)) {
      await load(JSON.parse(message.body));
      await queue.delete(message.receiptHandle);
    }
    return result;
  };
  const mine = (r: Awaited<ReturnType<typeof run>>) =>
    r.outstanding.filter((i) => [csv, parquet].includes(i.key));
  await run();
  await run();
  expect(mine(await run())).toEqual([]);

  // Act: both are replaced by versions that fail too (new ETags: not covered by the old marks).
  await put(INGESTION, csv, 'still,"not valid\ncsv');
  await put(PROCESSED, parquet, 'still not parquet');
  const first = await run();

  // Assess: sent once each, quarantined in their turn, then never sent again.
  expect(
    mine(first)
      .map((i) => i.key)
      .sort(),
  ).toEqual([parquet, csv].sort());
  expect(mine(await run())).toEqual([]);
  expect(mine(await run())).toEqual([]);
}, 60_000);

it('in fast mode, re-drives a mixed object never transformed, counts it done once its manifest is written, and never loops an unreadable one', async () => {
  // Prepare: two mixed-table objects as fast-mode Firehose writes them, never transformed: one
  // valid (currency rows after its layout record), one without a layout record.
  const dataDir = path.join(root, 'data-mixed');
  const batch = currencyBatch([4, 5]);
  const schema = schemaObjectFor(batch);
  await put(INGESTION, schemaObjectKey(batch.table, schema.fingerprint), encodeSchemaObject(schema));
  const good = `${MIXED_ROOT}${hourPath()}/mixed-good`;
  const bad = `${MIXED_ROOT}${hourPath()}/mixed-bad`;
  await put(INGESTION, good, encodeChangeBatchAsMixedCsv(batch));
  await put(INGESTION, bad, encodeChangeBatchAsCsv(batch)); // no @layout record first
  const deps = depsFor(dataDir);
  const mixedState = async () => {
    const { outstanding } = await reconcile(deps, { graceMs: 0, dryRun: true });
    return [good, bad].map((k) => outstanding.some((i) => i.key === k));
  };
  expect(await mixedState()).toEqual([true, true]);

  // Act: one run re-drives both through transform (in process): the good one becomes its table's
  // Parquet and manifest, the bad one is quarantined.
  const run = await reconcile(deps, { graceMs: 0 });
  expect(run.redriven.transform).toBeGreaterThanOrEqual(2);

  // Assert: neither is outstanding any more — the good one is done (its manifest exists), the
  // unreadable one quarantined; no per-table CSV was written, and the Parquet is load's work now.
  expect(await mixedState()).toEqual([false, false]);
  expect(await listAll(client, PROCESSED, mixedManifestKeyFor(good))).toHaveLength(1);
  const part = mixedPartKey(parseMixedObjectKey(good)!, batch.table, schema.fingerprint);
  expect(await listAll(client, INGESTION, part)).toEqual([]);
  const again = await reconcile(deps, { graceMs: 0, dryRun: true });
  expect(again.outstanding.map((i) => i.key)).not.toContain(bad);
  expect(again.outstanding.map((i) => i.key)).toContain(outputKeyFor('dim_currency', part));
});

it('in fast mode, quarantines a mixed object with a bad layout (naming it) and leaves it alone, then `quarantine retry` after the fix completes it', async () => {
  // Prepare: a mixed object of two layouts, currency (described) and payment_type, whose schema
  // object is missing; the other layout's Parquet must not wait for it.
  const dataDir = path.join(root, 'data-mixed-retry');
  const currency = currencyBatch([6]);
  const currencySchema = schemaObjectFor(currency);
  await put(
    INGESTION,
    schemaObjectKey(currency.table, currencySchema.fingerprint),
    encodeSchemaObject(currencySchema),
  );
  const types = changeBatchFactory({
    table: 'payment_type',
    columns: [
      { name: 'payment_type_id', type: 'int4', key: true },
      { name: 'payment_type_name', type: 'text', key: false },
      { name: 'added_later', type: 'text', key: false },
    ],
    changes: [changeFactory({ lsn: '00000000/07000000', values: ['9', 'REFUND', 'x'] })],
  });
  const typesSchema = schemaObjectFor(types);
  const key = `${MIXED_ROOT}${hourPath()}/mixed-retry`;
  await put(INGESTION, key, encodeChangeBatchAsMixedCsv(currency) + encodeChangeBatchAsMixedCsv(types));
  const deps = depsFor(dataDir);
  const quarantineDeps = { s3: client, ingestionBucket: INGESTION, processedBucket: PROCESSED };
  const outstanding = async () =>
    (await reconcile(deps, { graceMs: 0, dryRun: true })).outstanding.map((i) => i.key);

  // Act 1: the reconciler sends it through transform.
  await reconcile(deps, { graceMs: 0 });

  // Assert 1: quarantined, the bad layout named; currency's Parquet written (load's work now); the
  // object is not sent again.
  const mixed = parseMixedObjectKey(key)!;
  const currencyOutput = outputKeyFor(
    'dim_currency',
    mixedPartKey(mixed, 'currency', currencySchema.fingerprint),
  );
  const [entry] = (await listQuarantine(quarantineDeps)).filter((e) => e.key === key);
  expect(entry).toMatchObject({ kind: 'transform-object', status: 'quarantined' });
  expect(entry.reason).toBe(
    `payment_type (layout ${typesSchema.fingerprint}): schema object ${schemaObjectKey('payment_type', typesSchema.fingerprint)} does not exist`,
  );
  expect(await outstanding()).not.toContain(key);
  expect(await outstanding()).toContain(currencyOutput);

  // Act 2: the fix, then `totes quarantine retry`.
  await put(
    INGESTION,
    schemaObjectKey(types.table, typesSchema.fingerprint),
    encodeSchemaObject(typesSchema),
  );
  const retried = await retryQuarantine(
    quarantineDeps,
    entry.id,
    localRedrivers({ dataDir, s3: client, processedBucket: PROCESSED, logger: silentLogger }),
  );

  // Assert 2: sent again, done (its manifest), the payment_type Parquet written, no entry left.
  expect(retried.outcome).toBe('sent again');
  expect(await listAll(client, PROCESSED, mixedManifestKeyFor(key))).toHaveLength(1);
  const typesOutput = outputKeyFor(
    'dim_payment_type',
    mixedPartKey(mixed, 'payment_type', typesSchema.fingerprint),
  );
  expect(await listAll(client, PROCESSED, typesOutput)).toHaveLength(1);
  expect((await listQuarantine(quarantineDeps)).filter((e) => e.key === key)).toEqual([]);
  expect(await outstanding()).not.toContain(key);
});
