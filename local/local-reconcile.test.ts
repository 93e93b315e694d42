import { createLogger } from '../core/logger';
import { startScheduledReconcile } from './local-reconcile';

afterEach(() => jest.useRealTimers());

describe('startScheduledReconcile', () => {
  it('runs on schedule, one run at a time, logs a failed run and carries on, and stops', async () => {
    jest.useFakeTimers();
    const lines: string[] = [];
    const logger = createLogger({ service: 'test', write: (l) => lines.push(l) });
    let calls = 0;
    let concurrent = 0;
    let maxConcurrent = 0;
    let release: () => void = () => undefined;
    const schedule = startScheduledReconcile(
      async () => {
        calls += 1;
        concurrent += 1;
        maxConcurrent = Math.max(maxConcurrent, concurrent);
        // The second run is slow: it outlasts two more intervals.
        if (calls === 2) await new Promise<void>((r) => (release = r));
        concurrent -= 1;
        if (calls === 1) throw new Error('warehouse down');
      },
      { intervalMs: 1_000, logger },
    );

    await jest.advanceTimersByTimeAsync(999);
    expect(calls).toBe(0);
    await jest.advanceTimersByTimeAsync(1);
    expect(schedule.runs).toBe(1);
    expect(JSON.parse(lines[0])).toMatchObject({
      level: 'warn',
      msg: expect.stringContaining('scheduled reconcile failed'),
    });
    await jest.advanceTimersByTimeAsync(3_000);
    expect([calls, schedule.runs]).toEqual([2, 1]); // the ticks during the slow run are skipped
    release();
    await jest.advanceTimersByTimeAsync(0);
    expect(schedule.runs).toBe(2);
    await jest.advanceTimersByTimeAsync(1_000);
    expect(schedule.runs).toBe(3);

    await schedule.stop();
    await jest.advanceTimersByTimeAsync(10_000);
    expect(schedule.runs).toBe(3);
    expect(maxConcurrent).toBe(1);
  });
});
