import type { ClientBase } from 'pg';
import { createLogger } from '../../core/logger';
import { at, rowOf, tableEventOf } from '../../test/support/warehouse-rows';
import {
  applyBatch,
  ApplyBatchError,
  applyObject,
  isDataError,
  WarehouseDataError,
  WarehouseUnavailableError,
} from './apply-batch';
import { MalformedObjectError, prepareBatch } from './load-batch';
import { oneStatementAtATime } from '../../test/support/statement-batches';

/** A client that answers from a script: `fail(n)` makes the n-th non-transaction statement throw. */
function scriptedClient(failures: Record<number, unknown>) {
  const statements: string[] = [];
  let n = 0;
  const client = {
    query: oneStatementAtATime(async (text) => {
      statements.push((text as string).split('\n')[0]);
      if (['BEGIN', 'COMMIT', 'ROLLBACK'].includes(text as string)) return { rowCount: null, rows: [] };
      n += 1;
      if (failures[n]) throw failures[n];
      return { rowCount: 0, rows: [] };
    }),
  };
  return { client: client as unknown as ClientBase, statements };
}

const pgError = (code: string, extra: Record<string, string> = {}) =>
  Object.assign(new Error(`postgres says ${code}`), { code, ...extra });

const batch = prepareBatch({ table: 'dim_design', rows: [rowOf('dim_design', 1, {}, at(1))] });

describe('applyBatch retries and failures', () => {
  it('runs a deadlocked transaction again, and says so', async () => {
    const lines: string[] = [];
    const { client, statements } = scriptedClient({ 2: pgError('40P01') });
    const outcome = await applyBatch(client, batch, {
      objectKey: 'k',
      logger: createLogger({ service: 'test', write: (l) => lines.push(l) }),
    });
    expect(outcome.attempts).toBe(2);
    expect(statements.filter((s) => ['BEGIN', 'ROLLBACK', 'COMMIT'].includes(s))).toEqual([
      'BEGIN',
      'ROLLBACK',
      'BEGIN',
      'COMMIT',
    ]);
    expect(JSON.parse(lines[0])).toMatchObject({
      level: 'warn',
      sqlState: '40P01',
      attempt: 1,
      objectKey: 'k',
    });
  });

  it('gives up after the last attempt with a retryable error', async () => {
    const { client } = scriptedClient({ 1: pgError('40001'), 2: pgError('40001') });
    const failure = await applyBatch(client, batch, { objectKey: 'k', maxAttempts: 2 }).catch((e) => e);
    expect(failure).toBeInstanceOf(WarehouseUnavailableError);
    expect(failure).toMatchObject({ table: 'dim_design', attempts: 2 });
    expect(failure.message).toBe(
      'loading the dim_design object failed after 2 attempt(s): postgres says 40001',
    );
  });

  it('does not retry a connection failure or a data error, and names the constraint of the latter', async () => {
    const broken = scriptedClient({ 1: new Error('Connection terminated') });
    await expect(applyBatch(broken.client, batch, { objectKey: 'k' })).rejects.toBeInstanceOf(
      WarehouseUnavailableError,
    );
    const refused = scriptedClient({ 2: pgError('23514', { constraint: 'c', column: 'x' }) });
    const failure = await applyBatch(refused.client, batch, { objectKey: 'k' }).catch((e) => e);
    expect(failure).toBeInstanceOf(WarehouseDataError);
    expect(failure.detail).toBe('SQLSTATE 23514, constraint c, column x');
    expect(failure.message).not.toContain('postgres says');
  });

  it('tells data errors from the rest by SQLSTATE class', () => {
    expect(isDataError(pgError('22008'))).toBe(true);
    expect(isDataError(pgError('23505'))).toBe(true);
    expect(isDataError(pgError('40P01'))).toBe(false);
    expect(isDataError(pgError('ECONNRESET'))).toBe(false);
    expect(isDataError(new Error('x'))).toBe(false);
  });
});

describe('applyObject: an object of several parts in one transaction', () => {
  /** A client whose statements each take a turn of the event loop, logging into `events`. */
  function slowClient(events: string[], failOn?: RegExp) {
    return {
      query: oneStatementAtATime(async (text) => {
        const first = (text as string).split('\n')[0];
        events.push(`sql ${first.slice(0, 30)}`);
        await new Promise((resolve) => setImmediate(resolve));
        if (failOn?.test(first)) throw new Error('Connection terminated');
        return { rowCount: 0, rows: [] };
      }),
    } as unknown as ClientBase;
  }
  const partOf = (id: number) =>
    prepareBatch({ table: 'fact_payment', rows: [rowOf('fact_payment', id, {}, at(id))] }, { firstRow: id });

  it('prepares the next part while the current one is applied, and commits once', async () => {
    const events: string[] = [];
    async function* parts() {
      for (const id of [1, 2]) {
        events.push(`prepare ${id}`);
        await new Promise((resolve) => setImmediate(resolve));
        yield partOf(id);
      }
    }
    const outcome = await applyObject(slowClient(events), 'fact_payment', parts, { objectKey: 'k' });
    expect(outcome).toMatchObject({ rows: 2, duplicate: false, attempts: 1 });
    const at = (e: string) => events.indexOf(e);
    // Part 2 is prepared after part 1's first statement went out, before its last one did.
    const part1 = events
      .slice(at('prepare 1') + 1)
      .findIndex((e) => e.startsWith('sql INSERT INTO "fact_payment"'));
    expect(at('prepare 2')).toBeGreaterThan(at('prepare 1') + 1);
    expect(at('prepare 2')).toBeLessThan(at('prepare 1') + 1 + part1);
    expect(events.filter((e) => /BEGIN|COMMIT|ROLLBACK|load_log/.test(e))).toEqual([
      'sql BEGIN',
      'sql SELECT 1 FROM "load_log" WHERE',
      'sql INSERT INTO "load_log" ("objec',
      'sql COMMIT',
    ]);
  });

  it('rolls back only once the part in flight settled, passing on what the parts threw as it is', async () => {
    const events: string[] = [];
    const malformed = new MalformedObjectError('fact_payment', ['row 1: _lsn is not an LSN']);
    async function* parts() {
      yield partOf(1);
      await new Promise((resolve) => setImmediate(resolve));
      throw malformed;
    }
    await expect(applyObject(slowClient(events), 'fact_payment', parts, { objectKey: 'k' })).rejects.toBe(
      malformed,
    );
    expect(events.at(-1)).toBe('sql ROLLBACK');
    expect(events.filter((e) => e.startsWith('sql INSERT INTO "fact_payment"'))).toHaveLength(1);
    expect(events.some((e) => e.includes('INSERT INTO "load_log"'))).toBe(false);

    // A statement failing while the next part is prepared: that preparation ends first.
    const failed: string[] = [];
    let prepared = 0;
    async function* counted() {
      for (const id of [1, 2, 3]) {
        await new Promise((resolve) => setImmediate(resolve));
        prepared += 1;
        failed.push(`prepared ${id}`);
        yield partOf(id);
      }
    }
    const failure = await applyObject(
      slowClient(failed, /^INSERT INTO "fact_payment"/),
      'fact_payment',
      counted,
      {
        objectKey: 'k',
      },
    ).catch((e) => e);
    expect(failure).toBeInstanceOf(WarehouseUnavailableError);
    expect(prepared).toBe(2);
    expect(failed.at(-1)).toBe('sql ROLLBACK');
  });

  it("takes a dimension's load lock first, exclusive when a part works over the whole table; refuses parts without claims that hide one", async () => {
    // A TRUNCATE: whole-table work, as snapshot rows are (whose bookkeeping this client cannot answer).
    const dimensionPart = (id: number, truncate = false) =>
      prepareBatch(
        {
          table: 'dim_design',
          rows: [
            truncate ? tableEventOf('dim_design', 'truncate', at(id)) : rowOf('dim_design', id, {}, at(id)),
          ],
        },
        { firstRow: id },
      );
    const locks = (events: string[]) => events.filter((e) => e.includes('pg_advisory_xact_lock'));
    const shared: string[] = [];
    await applyObject(slowClient(shared), 'dim_design', () => [dimensionPart(1)], { objectKey: 'k' });
    expect(locks(shared)[0]).toBe('sql SELECT pg_advisory_xact_lock_s');
    const exclusive: string[] = [];
    await applyObject(slowClient(exclusive), 'dim_design', () => [dimensionPart(1, true)], {
      objectKey: 'k',
    });
    expect(locks(exclusive)[0]).toBe('sql SELECT pg_advisory_xact_lock($');
    // The mode must be known before the first row: an object in parts says it in its claims.
    const hidden: string[] = [];
    const failure = await applyObject(
      slowClient(hidden),
      'dim_design',
      () => [dimensionPart(1), dimensionPart(2, true)],
      { objectKey: 'k' },
    ).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(WarehouseUnavailableError);
    expect((failure as Error).cause).toBeInstanceOf(ApplyBatchError);
    expect(hidden.at(-1)).toBe('sql ROLLBACK');
  });
});
