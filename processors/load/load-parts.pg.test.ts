import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool, type PoolClient } from 'pg';
import { createLogger } from '../../core/logger';
import { dimDateInsert, placeholderInsert, type SqlStatement } from '../../core/warehouse-sql';
import { s3ClientFor, startS3rver, type LocalS3 } from '../../local/s3rver';
import { createTestDatabase, waitFor } from '../../test/support/pg';
import { s3EventFactory } from '../../test/support/s3-events';
import { oneStatementAtATime } from '../../test/support/statement-batches';
import {
  at,
  deleteOf,
  dumpWarehouse,
  objectOf,
  parquetOf,
  rowOf,
  scenarioObjects,
  tableEventOf,
  type TestObject,
} from '../../test/support/warehouse-rows';
import { applyBatch, applyObject } from './apply-batch';
import {
  createLoadHandler,
  LoadRetryableError,
  type LoadHandlerDeps,
  type LoadReport,
} from './create-handler';
import { prepareBatch } from './load-batch';
import { decodeParquet } from '../shared/parquet-codec';
import { migrateWarehouse } from './migrate';

/**
 * Large objects are prepared and applied in parts of `partRows` rows inside ONE transaction
 * (create-handler.ts, apply-batch.ts `applyObject`): the same warehouse as loading each object
 * whole, the object's own key in load_log once, and a malformed row, data Postgres refuses or a
 * failure in any part leaving nothing of the object behind.
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

async function warehouse(name: string, max = 2): Promise<Pool> {
  const pool = new Pool({ connectionString: await createTestDatabase(name), max });
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

type Query = (...args: unknown[]) => unknown;

/**
 * A pool whose clients' queries go through `wrap`; a client is wrapped once, however often it is
 * checked out (wrapped again on each checkout, a query went through every layer).
 */
function wrappingQueries(pool: Pool, wrap: (query: Query) => Query) {
  const wrapped = new WeakSet<PoolClient>();
  return {
    async connect() {
      const c = await pool.connect();
      if (!wrapped.has(c)) {
        wrapped.add(c);
        (c as unknown as { query: Query }).query = wrap(c.query.bind(c) as Query);
      }
      return c;
    },
  };
}

/** A pool whose clients fail the `n`-th statement matching `pattern` (counted over the pool's life). */
function failingOn(pool: Pool, pattern: RegExp, n: number, error: () => Error) {
  let seen = 0;
  return wrappingQueries(pool, (query) =>
    oneStatementAtATime((...args: unknown[]) => {
      const text = typeof args[0] === 'string' ? args[0] : '';
      if (pattern.test(text) && ++seen === n) return Promise.reject(error());
      return query(...args);
    }),
  );
}

/** A pool whose clients note the text of every COPY they run into `copies`. */
function copiesInto(pool: Pool, copies: string[]) {
  return wrappingQueries(pool, (query) => (...args: unknown[]) => {
    const text = (args[0] as { text?: unknown } | undefined)?.text;
    if (typeof text === 'string' && text.startsWith('COPY ')) copies.push(text);
    return query(...args);
  });
}

const fiveRowObject = async (name: string, edit = (rows: ReturnType<typeof rowOf>[]) => rows) =>
  put(
    objectOf('fact_payment', edit([1, 2, 3, 4, 5].map((id) => rowOf('fact_payment', id, {}, at(id)))), name),
  );

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
    const loaded = b.load_log as { object_key: string; rows: number }[];
    delete a.load_log;
    delete b.load_log;
    expect(b).toEqual(a);
    // Every object's own key once, with its rows: one transaction, no key per part.
    expect(loaded.map((l) => [l.object_key, l.rows]).sort()).toEqual(
      objects.map((o) => [o.key, o.rows.length]).sort(),
    );
  });

  it('quarantines an object with a malformed row in a later part, nothing of it loaded', async () => {
    const pool = await warehouse('load_parts_malformed');
    const spec = await fiveRowObject('malformed-last', (rows) => {
      rows[4] = { ...rows[4], _lsn: 'not an lsn' };
      return rows;
    });
    const report = await handlerOn(pool, { partRows: 2 })(s3EventFactory(spec));
    expect(report.objects[0]).toMatchObject({
      status: 'quarantined',
      reason: expect.stringContaining('row 4: _lsn is not an LSN'),
    });
    const dump = await dumpOf(pool);
    expect({ facts: dump.fact_payment, dates: dump.dim_date, loaded: dump.load_log }).toEqual({
      facts: [],
      dates: [],
      loaded: [],
    });
  });

  it('quarantines an object whose later part Postgres refuses, nothing of it loaded', async () => {
    const pool = await warehouse('load_parts_refused');
    const spec = await fiveRowObject('refused-last', (rows) => {
      rows[4] = rowOf('fact_payment', 5, { payment_date: '0000-01-01' }, at(5));
      return rows;
    });
    const report = await handlerOn(pool, { partRows: 2 })(s3EventFactory(spec));
    expect(report.objects[0]).toMatchObject({
      status: 'quarantined',
      reason: expect.stringContaining('SQLSTATE 22'),
    });
    const dump = await dumpOf(pool);
    expect({ facts: dump.fact_payment, loaded: dump.load_log }).toEqual({ facts: [], loaded: [] });
  });

  it('rolls back every part when one fails; the retry loads the object whole', async () => {
    const pool = await warehouse('load_parts_rollback');
    const spec = await fiveRowObject('rolled-back');
    // The third part's fact insert: two parts are in the transaction when it fails.
    const failing = failingOn(
      pool,
      /^INSERT INTO "fact_payment"/,
      3,
      () => new Error('Connection terminated'),
    );
    await expect(handlerOn(pool, { partRows: 2, warehouse: failing })(s3EventFactory(spec))).rejects.toThrow(
      LoadRetryableError,
    );
    let dump = await dumpOf(pool);
    expect({ facts: dump.fact_payment, loaded: dump.load_log }).toEqual({ facts: [], loaded: [] });

    const retry = await handlerOn(pool, { partRows: 2 })(s3EventFactory(spec));
    expect(retry.objects[0]).toMatchObject({ status: 'loaded', rows: 5 });
    dump = await dumpOf(pool);
    expect(dump.fact_payment).toHaveLength(5);
    expect((dump.load_log as { object_key: string }[]).map((l) => l.object_key)).toEqual([spec.key]);

    // Once loaded, a redelivery is answered by one load_log lookup: nothing is applied again.
    let connects = 0;
    const counting = {
      connect: () => {
        connects += 1;
        return pool.connect();
      },
    };
    const again = await handlerOn(pool, { partRows: 2, warehouse: counting })(s3EventFactory(spec));
    expect(again.objects[0]).toMatchObject({ status: 'duplicate', rows: 5 });
    expect(connects).toBe(1);
  });

  it('runs a conflicted object again from its first part, preparing its parts anew', async () => {
    const pool = await warehouse('load_parts_conflict');
    const spec = await fiveRowObject('conflicted');
    const deadlock = () => Object.assign(new Error('deadlock detected'), { code: '40P01' });
    const failing = failingOn(pool, /^INSERT INTO "fact_payment"/, 2, deadlock);
    const report = await handlerOn(pool, { partRows: 2, warehouse: failing })(s3EventFactory(spec));
    expect(report.objects[0]).toMatchObject({ status: 'loaded', rows: 5, load: { attempts: 2 } });
    const dump = await dumpOf(pool);
    expect(dump.fact_payment).toHaveLength(5);
    expect((dump.load_log as { object_key: string }[]).map((l) => l.object_key)).toEqual([spec.key]);
  });

  it('completes an object whose first parts an earlier version of the load committed on their own', async () => {
    // Before one transaction per object, each part committed alone under `<key>#rows-<first row>`
    // and the object's key came with its last part: a retry of such an object must still end as one load.
    const objects = scenarioObjects().map((o) => ({ ...o, key: `resumed/${o.key}` }));
    const specs = [];
    for (const object of objects) specs.push(await put(object));
    const whole = await warehouse('load_parts_resume_whole');
    const resumed = await warehouse('load_parts_resumed');
    for (const spec of specs) await handlerOn(whole)(s3EventFactory(spec));
    for (const [i, object] of objects.entries()) {
      const decoded = (await decodeParquet(await parquetOf(object))).rows;
      const first = decoded.slice(0, Math.ceil(decoded.length / 2));
      const c = await resumed.connect();
      try {
        await applyBatch(c, prepareBatch({ table: object.table, rows: first }), {
          objectKey: `${object.key}#rows-0`,
        });
      } finally {
        c.release();
      }
      expect((await handlerOn(resumed, { partRows: 1 })(s3EventFactory(specs[i]))).objects[0].status).toBe(
        'loaded',
      );
    }
    const [a, b] = [await dumpOf(whole), await dumpOf(resumed)];
    const loaded = (b.load_log as { object_key: string }[]).map((l) => l.object_key);
    delete a.load_log;
    delete b.load_log;
    expect(b).toEqual(a);
    expect(loaded.filter((k) => !k.includes('#rows-')).sort()).toEqual(objects.map((o) => o.key).sort());
  });

  it('stages the versions of every part by COPY in one transaction: the same facts as loading whole', async () => {
    const objects = scenarioObjects().filter((o) => o.table.startsWith('fact_'));
    const whole = await warehouse('load_parts_copy_whole');
    const parted = await warehouse('load_parts_copy_parted');
    for (const object of objects) {
      const rows = (await decodeParquet(await parquetOf(object))).rows;
      const parts = rows.map((row, i) => prepareBatch({ table: object.table, rows: [row] }, { firstRow: i }));
      for (const [pool, of] of [
        [whole, () => [prepareBatch({ table: object.table, rows })]],
        [parted, () => parts],
      ] as const) {
        const c = await pool.connect();
        try {
          await applyObject(c, object.table, of, { objectKey: object.key, factCopyMinRows: 1 });
        } finally {
          c.release();
        }
      }
    }
    expect(await dumpOf(parted)).toEqual(await dumpOf(whole));
  });

  it("closes the object's parts when its transaction fails: nothing goes on preparing them behind it", async () => {
    const pool = await warehouse('load_parts_closed');
    const rows = [1, 2, 3].map((id) =>
      rowOf('fact_payment', id, id === 2 ? { payment_date: '0000-01-01' } : {}, at(id)),
    );
    const events: string[] = [];
    async function* parts() {
      try {
        for (const [i, row] of rows.entries()) {
          events.push(`part ${i}`);
          yield prepareBatch({ table: 'fact_payment', rows: [row] }, { firstRow: i });
        }
      } finally {
        events.push('closed');
      }
    }
    const c = await pool.connect();
    try {
      // Part 1's payment date is refused by Postgres (SQLSTATE 22008), while part 2 is taken.
      await expect(applyObject(c, 'fact_payment', parts, { objectKey: 'closed' })).rejects.toThrow(
        'SQLSTATE 22',
      );
    } finally {
      c.release();
    }
    expect(events).toEqual(['part 0', 'part 1', 'part 2', 'closed']);
  });

  it('COPYs parts whose text was built ahead straight into the fact: the same facts and record ids as the parameters', async () => {
    // 1,500 versions in parts of 500: parts 2 and 3 have their COPY text built while the part before
    // them is applied; unchanged marks and hostile text ride in it. Then an overlapping object.
    const rows = Array.from({ length: 1500 }, (_, i) =>
      rowOf(
        'fact_purchase_order',
        1 + (i % 400),
        { item_code: i % 7 === 0 ? `tab\there ${i}` : `item ${i}` },
        at(1 + Math.floor(i / 3), i % 3),
        i % 11 === 5 ? { unchanged: ['item_code'] } : {},
      ),
    );
    const first = objectOf('fact_purchase_order', rows.slice(0, 1000), 'ahead-first');
    const overlapping = objectOf('fact_purchase_order', rows.slice(900), 'ahead-overlapping');
    const byParameters = await warehouse('load_parts_ahead_parameters');
    const byHandler = await warehouse('load_parts_ahead_handler');
    for (const object of [first, overlapping]) {
      const c = await byParameters.connect();
      try {
        // The same parts (record ids follow key and position within a part, not across parts).
        const decoded = (await decodeParquet(await parquetOf(object))).rows;
        const parts = () =>
          [0, 500, 1000]
            .filter((at) => at < decoded.length)
            .map((at) =>
              prepareBatch({ table: object.table, rows: decoded.slice(at, at + 500) }, { firstRow: at }),
            );
        await applyObject(c, object.table, parts, {
          objectKey: object.key,
          factCopyMinRows: Number.POSITIVE_INFINITY,
        });
      } finally {
        c.release();
      }
    }
    const reports = [];
    for (const object of [first, overlapping])
      reports.push(await handlerOn(byHandler, { partRows: 500 })(s3EventFactory(await put(object))));
    expect(reports.map((r) => r.objects[0].status)).toEqual(['loaded', 'loaded']);
    // The overlapping object's first part holds versions the first object loaded: loaded again
    // through the staging table, only its 500 new versions written.
    expect(reports.map((r) => [r.objects[0].load?.factCopyFallback, r.objects[0].load?.written])).toEqual([
      [false, 1000],
      [true, 500],
    ]);
    const [a, b] = [await dumpOf(byParameters), await dumpOf(byHandler)];
    // load_log differs only in the ETags the handler records.
    expect((b.load_log as { rows: number }[]).map((l) => l.rows)).toEqual([1000, 600]);
    delete a.load_log;
    delete b.load_log;
    expect(b).toEqual(a);
    // Record ids in the same order (the fallback's rolled-back ids leave a gap, not a reordering).
    const idOrder = async (pool: Pool) =>
      (
        await pool.query(
          'SELECT "purchase_order_id", "_lsn"::text, "_seq" FROM "fact_purchase_order" ORDER BY "purchase_record_id"',
        )
      ).rows;
    expect(await idOrder(byHandler)).toEqual(await idOrder(byParameters));
  });
});

/**
 * Two concurrent loads must not deadlock (issue 12): an object loaded in parts takes every
 * dimension row lock it needs (its dates and placeholders, or its own keys) before its first part,
 * in key order, as every other load does (apply-batch.ts `applyObject`). Each test interleaves two
 * loads deterministically: a third session holds a row the parted load needs, so that load stops
 * there; the other load then runs until it finishes or waits; the held row is released. Before the
 * fix each interleaving was a lock cycle (40P01): Postgres aborted one load, which ran again.
 */
/** Sessions of this database waiting for a lock (row, transaction id or advisory). */
async function waitingSessions(pool: Pool): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
  );
  return rows[0].n;
}

interface Interleaving {
  /** Taken, uncommitted, by a third session before `first` starts; released once `second` ran. */
  held: SqlStatement;
  first: { object: TestObject; partRows: number };
  second: { object: TestObject; partRows: number };
  /** The loads' LoadHandlerDeps.placeholderCopyMinKeys (1: every claimed placeholder of an empty range COPYed). */
  placeholderCopyMinKeys?: number;
}

/**
 * `first` starts and stops at the held row; `second` then runs until it has loaded or waits on a
 * lock; the held row is released and both finish. Returns both loads' status and attempts, and
 * the warnings logged.
 */
async function interleave(pool: Pool, plan: Interleaving) {
  const warnings: Record<string, unknown>[] = [];
  const handler = (partRows: number) =>
    createLoadHandler({
      s3: client,
      warehouse: pool,
      partRows,
      placeholderCopyMinKeys: plan.placeholderCopyMinKeys,
      logger: createLogger({
        service: 'load',
        level: 'warn',
        write: (line) => warnings.push(JSON.parse(line)),
      }),
    });
  const [first, second] = [await put(plan.first.object), await put(plan.second.object)];
  const holder: PoolClient = await pool.connect();
  try {
    await holder.query('BEGIN');
    await holder.query(plan.held.text, plan.held.values);
    const loads: Promise<LoadReport>[] = [];
    loads.push(handler(plan.first.partRows)(s3EventFactory(first)));
    await waitFor('the first load to wait on the held row', async () =>
      (await waitingSessions(pool)) >= 1 ? true : undefined,
    );
    let secondDone = false;
    loads.push(
      handler(plan.second.partRows)(s3EventFactory(second)).finally(() => {
        secondDone = true;
      }),
    );
    await waitFor('the second load to finish or wait', async () =>
      secondDone || (await waitingSessions(pool)) >= 2 ? true : undefined,
    );
    await holder.query('ROLLBACK');
    const reports = await Promise.all(loads);
    return {
      loads: reports.map((r) => [r.objects[0].status, r.objects[0].load?.attempts]),
      // A conflict is logged with its SQLSTATE (40P01: a deadlock) before the load runs again.
      warnings: warnings.map((w) => [w.msg, w.sqlState]),
    };
  } finally {
    holder.release();
  }
}

/** A fact_payment object of one payment per transaction id, in that order. */
const paymentsOf = (transactions: number[], name: string) =>
  objectOf(
    'fact_payment',
    transactions.map((id, i) => rowOf('fact_payment', i + 1, { transaction_id: id }, at(2, i))),
    name,
  );

/** Both loaded at their first attempt; no conflict was logged. */
const NO_CONFLICT = {
  loads: [
    ['loaded', 1],
    ['loaded', 1],
  ],
  warnings: [],
};

describe('lock order of objects loaded in parts', () => {
  it.each([
    ['inserted', undefined],
    ['COPYed', 1],
  ])(
    'a fact object in parts (placeholders %s) and a dimension object sharing keys do not deadlock',
    async (how, placeholderCopyMinKeys) => {
      const pool = await warehouse(`lock_order_fact_parts_${how.toLowerCase()}`, 4);
      // Part 1 refers to transaction 20, part 2 to transaction 10 and to a date only it has (held).
      const facts = objectOf(
        'fact_payment',
        [
          rowOf('fact_payment', 1, { transaction_id: 20 }, at(1)),
          rowOf('fact_payment', 2, { transaction_id: 10, payment_date: '2022-12-25' }, at(2)),
        ],
        'lock-order-facts',
      );
      const transactions = objectOf(
        'dim_transaction',
        [rowOf('dim_transaction', 10, {}, at(3)), rowOf('dim_transaction', 20, {}, at(3, 1))],
        'lock-order-transactions',
      );
      const result = await interleave(pool, {
        held: dimDateInsert(['2022-12-25']),
        first: { object: facts, partRows: 1 },
        second: { object: transactions, partRows: 10_000 },
        placeholderCopyMinKeys,
      });
      expect(result).toEqual(NO_CONFLICT);
      const { rows } = await pool.query(
        'SELECT "transaction_id", "_inferred" FROM "dim_transaction" ORDER BY 1',
      );
      expect(rows).toEqual([
        { transaction_id: 10, _inferred: false },
        { transaction_id: 20, _inferred: false },
      ]);
      expect((await pool.query('SELECT count(*)::int AS n FROM "fact_payment"')).rows[0].n).toBe(2);
    },
  );

  it('a dimension object in parts and a fact object sharing keys do not deadlock', async () => {
    const pool = await warehouse('lock_order_dimension_parts', 4);
    // Part 1 upserts transaction 20; part 2 transaction 5 (held), part 3 transaction 10.
    const transactions = objectOf(
      'dim_transaction',
      [20, 5, 10].map((id, i) => rowOf('dim_transaction', id, {}, at(1, i))),
      'lock-order-transactions-parts',
    );
    const facts = paymentsOf([10, 20], 'lock-order-facts-whole');
    const result = await interleave(pool, {
      held: placeholderInsert('dim_transaction', [5]),
      first: { object: transactions, partRows: 1 },
      second: { object: facts, partRows: 10_000 },
    });
    expect(result).toEqual(NO_CONFLICT);
    const { rows } = await pool.query(
      'SELECT "transaction_id", "_inferred" FROM "dim_transaction" ORDER BY 1',
    );
    expect(rows).toEqual([5, 10, 20].map((id) => ({ transaction_id: id, _inferred: false })));
  });

  it('a one-part dimension object deleting keys below the ones it upserts and a fact object do not deadlock', async () => {
    // Its upsert locks transaction 30; its delete then 7 (held) and 10, which the facts refer to.
    const transactions = objectOf(
      'dim_transaction',
      [
        rowOf('dim_transaction', 30, {}, at(1)),
        deleteOf('dim_transaction', 7, at(1, 1)),
        deleteOf('dim_transaction', 10, at(1, 2)),
      ],
      'lock-order-deletes',
    );
    const facts = paymentsOf([10, 30], 'lock-order-deletes-facts');
    const result = await interleave(await warehouse('lock_order_deletes', 4), {
      held: placeholderInsert('dim_transaction', [7]),
      first: { object: transactions, partRows: 10_000 },
      second: { object: facts, partRows: 10_000 },
    });
    expect(result).toEqual(NO_CONFLICT);
  });

  it('claims the keys a dimension object in parts would lock out of order: the same warehouse as loading it whole', async () => {
    // Keys falling from part to part, so most are claimed (a placeholder first, where there is no
    // row): new and existing rows, a delete, an unchanged TOAST value, a TRUNCATE, a snapshot that
    // completes and reconciles, and derived dimensions on both sides of their joins.
    const objects = [
      objectOf(
        'stg_department',
        [1, 2].map((id, i) => rowOf('stg_department', id, {}, at(1, i))),
      ),
      objectOf('dim_location', [rowOf('dim_location', 7, {}, at(1, 2))]),
      objectOf(
        'stg_counterparty',
        [6, 3, 9].map((address, i) =>
          rowOf('stg_counterparty', i + 1, { legal_address_id: address }, at(2, i)),
        ),
      ),
      objectOf('dim_location', [
        rowOf('dim_location', 9, {}, at(5)),
        rowOf('dim_location', 7, { city: 'York' }, at(5, 1)),
        deleteOf('dim_location', 8, at(5, 2)),
        rowOf('dim_location', 6, {}, at(5, 3), { unchanged: ['address_line_1'] }),
        tableEventOf('dim_location', 'truncate', at(5, 4)),
        rowOf('dim_location', 5, {}, at(6)),
        rowOf('dim_location', 4, {}, at(4)),
        rowOf('dim_location', 3, { city: 'Hull' }, at(7), { op: 'snapshot' }),
        rowOf('dim_location', 2, {}, at(7, 1), { op: 'snapshot' }),
        tableEventOf('dim_location', 'snapshot_end', at(7, 2), 2),
      ]),
      objectOf('stg_staff', [
        rowOf('stg_staff', 4, { department_id: 2 }, at(8)),
        rowOf('stg_staff', 3, { department_id: 1 }, at(8, 1)),
        deleteOf('stg_staff', 2, at(8, 2)),
        rowOf('stg_staff', 1, { department_id: 2 }, at(8, 3)),
      ]),
    ];
    const specs = [];
    for (const object of objects) specs.push(await put(object));
    const whole = await warehouse('lock_order_claims_whole');
    const parted = await warehouse('lock_order_claims_parted');
    for (const spec of specs) {
      expect((await handlerOn(whole)(s3EventFactory(spec))).objects[0].status).toBe('loaded');
      expect((await handlerOn(parted, { partRows: 1 })(s3EventFactory(spec))).objects[0].status).toBe(
        'loaded',
      );
    }
    const [a, b] = [await dumpOf(whole), await dumpOf(parted)];
    delete a.load_log;
    delete b.load_log;
    expect(b).toEqual(a);
    // The snapshot reconciled, the TRUNCATE and the delete applied, the derived rows recomputed.
    const locations = a.dim_location as { location_id: number; _deleted: boolean; _inferred: boolean }[];
    expect(locations.map((l) => [l.location_id, l._deleted, l._inferred])).toEqual([
      [2, false, false],
      [3, false, false],
      [4, true, false],
      [5, true, false],
      [6, true, false],
      [7, true, false],
      [8, true, true],
      [9, true, false],
    ]);
    expect(a.dim_staff).toHaveLength(4);
    expect(a.dim_counterparty).toHaveLength(3);
  });

  it('a dimension object in parts with snapshot rows before its last part and a fact snapshot object do not deadlock', async () => {
    // Snapshot rows in every part (a cold start or a resync): part 1 transaction 10, part 2
    // transaction 20 (held), part 3 transaction 30, rising, so none is claimed. The fact object
    // refers to transaction 30 and holds snapshot rows too: its placeholder for 30, then the
    // snapshot bookkeeping's lock. Before, part 1 already took that lock and held it while part 3
    // waited on 30: a cycle.
    const pool = await warehouse('lock_order_snapshot_parts', 4);
    const transactions = objectOf(
      'dim_transaction',
      [10, 20, 30].map((id, i) => rowOf('dim_transaction', id, {}, at(1, i), { op: 'snapshot' })),
      'lock-order-snapshot-transactions',
    );
    const facts = objectOf(
      'fact_payment',
      [rowOf('fact_payment', 1, { transaction_id: 30 }, at(1, 3), { op: 'snapshot' })],
      'lock-order-snapshot-facts',
    );
    const result = await interleave(pool, {
      held: placeholderInsert('dim_transaction', [20]),
      first: { object: transactions, partRows: 1 },
      second: { object: facts, partRows: 10_000 },
    });
    expect(result).toEqual(NO_CONFLICT);
    const { rows } = await pool.query(
      'SELECT "transaction_id", "_inferred" FROM "dim_transaction" ORDER BY 1',
    );
    expect(rows).toEqual([10, 20, 30].map((id) => ({ transaction_id: id, _inferred: false })));
    const snapshotRows = await pool.query('SELECT sum("row_count")::int AS n FROM "snapshot_part"');
    expect(snapshotRows.rows[0].n).toBe(4);
  });

  it('two fact objects sharing new dates do not deadlock', async () => {
    const pool = await warehouse('lock_order_dates', 4);
    // The parted object's part 1 has 2022-12-20; part 2 has 2022-12-05 (held) and 2022-12-10. The
    // whole object has 2022-12-10 and 2022-12-20; no other date is shared.
    const own = { created_date: '2022-01-01', last_updated_date: '2022-01-01' };
    const parted = objectOf(
      'fact_payment',
      [
        rowOf('fact_payment', 1, { ...own, payment_date: '2022-12-20' }, at(1)),
        rowOf(
          'fact_payment',
          2,
          { ...own, payment_date: '2022-12-10', last_updated_date: '2022-12-05' },
          at(2),
        ),
      ],
      'lock-order-dates-parted',
    );
    const theirs = {
      created_date: '2023-01-01',
      last_updated_date: '2023-01-01',
      agreed_delivery_date: '2023-01-02',
    };
    const whole = objectOf(
      'fact_sales_order',
      [
        rowOf('fact_sales_order', 1, { ...theirs, agreed_payment_date: '2022-12-10' }, at(3)),
        rowOf('fact_sales_order', 2, { ...theirs, agreed_payment_date: '2022-12-20' }, at(3, 1)),
      ],
      'lock-order-dates-whole',
    );
    const result = await interleave(pool, {
      held: dimDateInsert(['2022-12-05']),
      first: { object: parted, partRows: 1 },
      second: { object: whole, partRows: 10_000 },
    });
    expect(result).toEqual(NO_CONFLICT);
  });
});

describe("an object in parts' placeholders by COPY", () => {
  /** The dimensions' COPYs among `copies`. */
  const placeholderCopies = (copies: string[]) =>
    copies.filter((c) => c.startsWith('COPY "dim_')).map((c) => /^COPY "(\w+)"/.exec(c)![1]);

  it('COPYs the placeholders of an empty key range: the same warehouse as inserting them', async () => {
    const objects = [
      objectOf(
        'dim_transaction',
        [1, 2, 3].map((id, i) => rowOf('dim_transaction', id, {}, at(1, i))),
        'pc-tx',
      ),
      // New transactions above every row: COPYed. New designs, staff, locations, currencies too.
      paymentsOf([10, 11, 12, 14], 'pc-new'),
      objectOf(
        'fact_sales_order',
        [1, 2, 3].map((id, i) =>
          rowOf(
            'fact_sales_order',
            id,
            {
              design_id: 20 + id,
              sales_staff_id: 30 + id,
              currency_id: 40 + id,
              agreed_delivery_location_id: 50,
            },
            at(2, i),
          ),
        ),
        'pc-sales',
      ),
      // Transactions 2 and 4 to 5: a row lies in the range (2, a loaded one; 3 too): inserted as before.
      paymentsOf([2, 4, 5], 'pc-overlap'),
    ];
    const specs = [];
    for (const object of objects) specs.push(await put(object));
    const inserted = await warehouse('placeholder_copy_inserted');
    const copied = await warehouse('placeholder_copy_copied');
    const copies: string[] = [];
    const noting = copiesInto(copied, copies);
    const perObject: string[][] = [];
    for (const spec of specs) {
      await handlerOn(inserted, { partRows: 1, placeholderCopyMinKeys: Number.POSITIVE_INFINITY })(
        s3EventFactory(spec),
      );
      const report = await handlerOn(copied, {
        partRows: 1,
        placeholderCopyMinKeys: 1,
        warehouse: noting,
      })(s3EventFactory(spec));
      expect(report.objects[0].status).toBe('loaded');
      perObject.push(placeholderCopies(copies.splice(0)));
    }
    // PLACEHOLDER_ORDER; a fresh warehouse: the payments' currency, type and counterparty too.
    expect(perObject).toEqual([
      [],
      ['dim_currency', 'dim_payment_type', 'dim_transaction', 'dim_counterparty'],
      // Their counterparty (1) has a row by now: its range is not empty.
      ['dim_location', 'dim_currency', 'dim_design', 'dim_staff'],
      [],
    ]);
    const [a, b] = [await dumpOf(inserted), await dumpOf(copied)];
    delete a.load_log;
    delete b.load_log;
    expect(b).toEqual(a);
    expect(
      (b.dim_transaction as { transaction_id: number; _inferred: boolean }[]).map((r) => [
        r.transaction_id,
        r._inferred,
      ]),
    ).toEqual([
      [1, false],
      [2, false],
      [3, false],
      [4, true],
      [5, true],
      [10, true],
      [11, true],
      [12, true],
      [14, true],
    ]);
  });

  it.each([
    // With the currency's, the payment type's and the counterparty's: 3 more.
    ['commits', 'COMMIT', 6],
    ['rolls back', 'ROLLBACK', 7],
  ])(
    'a placeholder a concurrent load inserted since the range was found empty: waited for, then (%s) the rest inserted',
    async (_, end, inserted) => {
      const pool = await warehouse(`placeholder_copy_race_${end.toLowerCase()}`, 3);
      const spec = await put(paymentsOf([100, 101, 102, 103], `pc-race-${end}`));
      const holder = await pool.connect();
      try {
        await holder.query('BEGIN');
        const held = placeholderInsert('dim_transaction', [102]);
        await holder.query(held.text, held.values);
        const copies: string[] = [];
        const loading = handlerOn(pool, {
          partRows: 1,
          placeholderCopyMinKeys: 1,
          warehouse: copiesInto(pool, copies),
        })(s3EventFactory(spec));
        await waitFor('the COPY to wait on the uncommitted placeholder', async () =>
          (await waitingSessions(pool)) >= 1 ? true : undefined,
        );
        // A fresh warehouse: the currencies' and payment types' ranges were empty too.
        expect(placeholderCopies(copies)).toEqual(['dim_currency', 'dim_payment_type', 'dim_transaction']);
        await holder.query(end);
        const report = await loading;
        expect(report.objects[0]).toMatchObject({
          status: 'loaded',
          load: { placeholdersInserted: inserted },
        });
      } finally {
        holder.release();
      }
      const { rows } = await pool.query(
        'SELECT "transaction_id" AS id, "_inferred" AS inferred FROM "dim_transaction" ORDER BY 1',
      );
      expect(rows).toEqual([100, 101, 102, 103].map((id) => ({ id, inferred: true })));
      expect((await pool.query('SELECT count(*)::int AS n FROM "fact_payment"')).rows[0].n).toBe(4);
      // Written outside any savepoint: the dates before the COPY, the facts and load_log after it
      // (a savepoint left open after the fallback put them in a subtransaction of its own).
      const { rows: writers } = await pool.query(
        `SELECT DISTINCT xmin::text AS xid FROM (SELECT xmin FROM "dim_date" UNION ALL
           SELECT xmin FROM "fact_payment" UNION ALL SELECT xmin FROM "load_log") AS w`,
      );
      expect(writers).toHaveLength(1);
    },
  );
});
