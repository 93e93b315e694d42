import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'pg';
import { s3ClientFor, startS3rver, type LocalS3 } from '../../local/s3rver';
import { createTestDatabase } from '../../test/support/pg';
import { s3EventFactory } from '../../test/support/s3-events';
import {
  at,
  dumpWarehouse,
  objectOf,
  parquetOf,
  rowOf,
  scenarioObjects,
  type TestObject,
} from '../../test/support/warehouse-rows';
import { createLoadHandler, LoadRetryableError, type LoadHandlerDeps } from './create-handler';
import { migrateWarehouse } from './migrate';

/**
 * Large objects are applied in parts of `partRows` rows (create-handler.ts): the same warehouse as
 * loading each object whole, the object's own key in load_log only once every part is in, a
 * malformed row anywhere quarantining the object before anything is applied, and a retry after a
 * failed part resuming where it stopped.
 */
const BUCKET = 'processed';
let s3: LocalS3;
let client: S3Client;
let dataDir: string;
const pools: Pool[] = [];

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-load-parts-'));
  s3 = await startS3rver({ dataDir, buckets: [BUCKET] });
  client = s3ClientFor(s3.endpoint);
});

afterAll(async () => {
  client.destroy();
  await s3.stop();
  await Promise.all(pools.map((p) => p.end()));
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function warehouse(name: string): Promise<Pool> {
  const pool = new Pool({ connectionString: await createTestDatabase(name), max: 2 });
  pools.push(pool);
  const c = await pool.connect();
  await migrateWarehouse(c);
  c.release();
  return pool;
}

async function put(object: TestObject) {
  const body = await parquetOf(object);
  await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: object.key, Body: body }));
  return { bucket: BUCKET, key: object.key, size: body.length };
}

const handlerOn = (pool: Pool, overrides: Partial<LoadHandlerDeps> = {}) =>
  createLoadHandler({ s3: client, warehouse: pool, ...overrides });

async function dumpOf(pool: Pool) {
  const c = await pool.connect();
  try {
    return await dumpWarehouse(c);
  } finally {
    c.release();
  }
}

describe('loading an object in parts', () => {
  it('builds the same warehouse as loading every object whole, row by row in parts', async () => {
    const objects = scenarioObjects().map((o) => ({ ...o, key: `parts/${o.key}` }));
    const specs = [];
    for (const object of objects) specs.push(await put(object));
    const whole = await warehouse('load_parts_whole');
    const parted = await warehouse('load_parts_parted');

    for (const spec of specs) await handlerOn(whole)(s3EventFactory(spec));
    const reports = [];
    for (const spec of specs) reports.push(await handlerOn(parted, { partRows: 1 })(s3EventFactory(spec)));

    expect(reports.map((r) => r.objects[0].status)).toEqual(specs.map(() => 'loaded'));
    expect(reports.map((r) => r.objects[0].rows)).toEqual(objects.map((o) => o.rows.length));
    const [a, b] = [await dumpOf(whole), await dumpOf(parted)];
    const parts = b.load_log as { object_key: string; rows: number }[];
    delete a.load_log;
    delete b.load_log;
    expect(b).toEqual(a);
    // Every object's own key, with its rows; and one key per part before its last.
    for (const o of objects)
      expect(parts.filter((p) => p.object_key.startsWith(o.key)).map((p) => [p.object_key, p.rows])).toEqual(
        expect.arrayContaining([
          [o.key, o.rows.length],
          ...o.rows.slice(0, -1).map((_, i) => [`${o.key}#rows-${i}`, 1]),
        ]),
      );
  });

  it('quarantines an object with a malformed row in a later part before applying any part', async () => {
    const pool = await warehouse('load_parts_malformed');
    const rows = [1, 2, 3, 4, 5].map((id) => rowOf('fact_payment', id, {}, at(id)));
    rows[4] = { ...rows[4], _lsn: 'not an lsn' };
    const spec = await put(objectOf('fact_payment', rows, 'malformed-last'));
    const report = await handlerOn(pool, { partRows: 2 })(s3EventFactory(spec));
    expect(report.objects[0]).toMatchObject({
      status: 'quarantined',
      reason: expect.stringContaining('row 4: _lsn is not an LSN'),
    });
    const dump = await dumpOf(pool);
    expect({ facts: dump.fact_payment, loaded: dump.load_log }).toEqual({ facts: [], loaded: [] });
  });

  it('resumes after a failed part: the parts already loaded are skipped, then the object is loaded', async () => {
    const pool = await warehouse('load_parts_resume');
    const rows = [1, 2, 3, 4, 5].map((id) => rowOf('fact_payment', id, {}, at(id)));
    const spec = await put(objectOf('fact_payment', rows, 'resumed'));
    let connects = 0;
    const failingSecond = {
      connect: () => {
        connects += 1;
        // The first connection looks the object up in load_log; the third applies the second part.
        return connects === 3 ? Promise.reject(new Error('connection refused')) : pool.connect();
      },
    };
    await expect(
      handlerOn(pool, { partRows: 2, warehouse: failingSecond })(s3EventFactory(spec)),
    ).rejects.toThrow(LoadRetryableError);
    expect(((await dumpOf(pool)).load_log as { object_key: string }[]).map((l) => l.object_key)).toEqual([
      `${spec.key}#rows-0`,
    ]);

    const retry = await handlerOn(pool, { partRows: 2 })(s3EventFactory(spec));
    expect(retry.objects[0]).toMatchObject({ status: 'loaded', rows: 5 });
    const dump = await dumpOf(pool);
    expect(dump.fact_payment).toHaveLength(5);
    expect((dump.load_log as { object_key: string }[]).map((l) => l.object_key).sort()).toEqual(
      [spec.key, `${spec.key}#rows-0`, `${spec.key}#rows-2`].sort(),
    );

    // Once loaded whole, a redelivery is answered by one load_log lookup: no part is applied again.
    let lookups = 0;
    const counting = {
      connect: () => {
        lookups += 1;
        return pool.connect();
      },
    };
    const again = await handlerOn(pool, { partRows: 2, warehouse: counting })(s3EventFactory(spec));
    expect(again.objects[0]).toMatchObject({ status: 'duplicate', rows: 5 });
    expect(lookups).toBe(1);
  });

  it('checks in a separate pass, then decodes again, an object above heldRows: the same warehouse, the same quarantine', async () => {
    const objects = scenarioObjects().map((o) => ({ ...o, key: `unheld/${o.key}` }));
    const specs = [];
    for (const object of objects) specs.push(await put(object));
    const whole = await warehouse('load_parts_unheld_whole');
    const unheld = await warehouse('load_parts_unheld');
    for (const spec of specs) await handlerOn(whole)(s3EventFactory(spec));
    for (const spec of specs) await handlerOn(unheld, { partRows: 1, heldRows: 1 })(s3EventFactory(spec));
    const [a, b] = [await dumpOf(whole), await dumpOf(unheld)];
    delete a.load_log;
    delete b.load_log;
    expect(b).toEqual(a);

    const pool = await warehouse('load_parts_unheld_malformed');
    const rows = [1, 2, 3, 4, 5].map((id) => rowOf('fact_payment', id, {}, at(id)));
    rows[4] = { ...rows[4], _lsn: 'not an lsn' };
    const spec = await put(objectOf('fact_payment', rows, 'unheld-malformed-last'));
    const report = await handlerOn(pool, { partRows: 2, heldRows: 4 })(s3EventFactory(spec));
    expect(report.objects[0]).toMatchObject({
      status: 'quarantined',
      reason: expect.stringContaining('row 4: _lsn is not an LSN'),
    });
    const dump = await dumpOf(pool);
    expect({ facts: dump.fact_payment, loaded: dump.load_log }).toEqual({ facts: [], loaded: [] });
  });
});
