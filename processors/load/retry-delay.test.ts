import {
  BUSY_RETRY_FIRST_SECONDS,
  BUSY_RETRY_MAX_SECONDS,
  loadRetryDelaySeconds,
  sqlStateInChain,
} from './retry-delay';
import { WarehouseUnavailableError } from './apply-batch';

/** A node-postgres error as the driver throws it: SQLSTATE in `code`. */
const pgError = (code: string, message = 'server said no') => Object.assign(new Error(message), { code });

describe('loadRetryDelaySeconds', () => {
  const noJitter = () => 0;

  it('retries a load that waited past the lock timeout after seconds, not the queue’s 30 minutes', () => {
    const timedOut = new WarehouseUnavailableError('fact_payment', 1, {
      cause: pgError('55P03', 'canceling statement due to lock timeout'),
    });
    expect(loadRetryDelaySeconds(timedOut, 1, undefined, noJitter)).toBe(BUSY_RETRY_FIRST_SECONDS);
  });

  it('leaves a statement timeout (the object’s own statement too slow) to the queue', () => {
    const slow = new WarehouseUnavailableError('fact_payment', 1, {
      cause: pgError('57014', 'canceling statement due to statement timeout'),
    });
    expect(loadRetryDelaySeconds(slow, 1, undefined, noJitter)).toBeUndefined();
  });

  it('comes back sooner only in the first half of the queue’s receives', () => {
    const e = pgError('40P01');
    expect([1, 2, 3].map((n) => loadRetryDelaySeconds(e, n, 5, noJitter))).toEqual([15, 30, undefined]);
    expect(loadRetryDelaySeconds(e, 50, 100, noJitter)).toBe(BUSY_RETRY_MAX_SECONDS);
    expect(loadRetryDelaySeconds(e, 51, 100, noJitter)).toBeUndefined();
    expect(loadRetryDelaySeconds(e, 1, 1, noJitter)).toBeUndefined();
  });

  it.each(['55P03', '40P01', '40001'])('treats SQLSTATE %s as a busy warehouse', (code) => {
    const e = new WarehouseUnavailableError('fact_sales_order', 3, { cause: pgError(code) });
    expect(loadRetryDelaySeconds(e, 1, undefined, noJitter)).toBe(BUSY_RETRY_FIRST_SECONDS);
  });

  it('doubles the delay with each receive, up to the cap', () => {
    const e = pgError('55P03');
    const delays = [1, 2, 3, 4, 5, 6, 7, 8, 100].map((n) => loadRetryDelaySeconds(e, n, undefined, noJitter));
    expect(delays).toEqual([15, 30, 60, 120, 240, 480, 600, 600, 600]);
    expect(Math.max(...(delays as number[]))).toBe(BUSY_RETRY_MAX_SECONDS);
  });

  it('adds up to half the delay again at random, so collided loads spread out', () => {
    const e = pgError('40P01');
    expect(loadRetryDelaySeconds(e, 2, undefined, () => 0)).toBe(30);
    expect(loadRetryDelaySeconds(e, 2, undefined, () => 0.5)).toBe(38);
    expect(loadRetryDelaySeconds(e, 2, undefined, () => 0.999)).toBe(45);
  });

  it('takes a missing receive count as the first receive', () => {
    expect(loadRetryDelaySeconds(pgError('55P03'), undefined, undefined, noJitter)).toBe(
      BUSY_RETRY_FIRST_SECONDS,
    );
  });

  it('leaves a warehouse that is down, or any other failure, to the queue’s visibility timeout', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.5:5432'), { code: 'ECONNREFUSED' });
    expect(loadRetryDelaySeconds(refused, 1)).toBeUndefined();
    expect(
      loadRetryDelaySeconds(new WarehouseUnavailableError('dim_staff', 1, { cause: refused }), 1),
    ).toBeUndefined();
    expect(
      loadRetryDelaySeconds(pgError('57P01', 'terminating connection due to administrator command'), 1),
    ).toBeUndefined();
    expect(loadRetryDelaySeconds(new Error('S3 said 503'), 1)).toBeUndefined();
    expect(loadRetryDelaySeconds(undefined, 1)).toBeUndefined();
  });
});

describe('sqlStateInChain', () => {
  it('finds the SQLSTATE however deep the cause chain wraps it', () => {
    const inner = pgError('40001');
    const wrapped = new Error('outer', { cause: new Error('middle', { cause: inner }) });
    expect(sqlStateInChain(wrapped)).toBe('40001');
  });

  it('ignores codes that are not SQLSTATEs, and cycles', () => {
    const cyclic: { code: string; cause?: unknown } = { code: 'EPIPE' };
    cyclic.cause = cyclic;
    expect(sqlStateInChain(cyclic)).toBeUndefined();
  });
});
