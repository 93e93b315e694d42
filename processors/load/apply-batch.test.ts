import type { ClientBase } from 'pg';
import { createLogger } from '../../core/logger';
import { at, rowOf } from '../../test/support/warehouse-rows';
import { applyBatch, isDataError, WarehouseDataError, WarehouseUnavailableError } from './apply-batch';
import { prepareBatch } from './load-batch';

/** A client that answers from a script: `fail(n)` makes the n-th non-transaction statement throw. */
function scriptedClient(failures: Record<number, unknown>) {
  const statements: string[] = [];
  let n = 0;
  const client = {
    query: async (text: string) => {
      statements.push(text.split('\n')[0]);
      if (['BEGIN', 'COMMIT', 'ROLLBACK'].includes(text)) return { rowCount: null, rows: [] };
      n += 1;
      if (failures[n]) throw failures[n];
      return { rowCount: 0, rows: [] };
    },
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
