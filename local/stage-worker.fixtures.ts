import { getHeapStatistics } from 'node:v8';
import { threadId } from 'node:worker_threads';
import type { StageFactory } from './stage-factories';

/**
 * A stage for local/stage-workers.test.ts, built in a worker like the real ones: it answers with
 * the thread it ran on, fails its first `failures` invocations, and on request hangs or ends its
 * thread — faults a real handler produces only by accident.
 */
export interface TestStageOptions {
  failures: number;
  /** Every invocation hangs (as a handler stuck on a peer that never answers). */
  hang?: boolean;
}

export const testStage: StageFactory<TestStageOptions> = (options, context) => {
  let invocations = 0;
  return {
    handler: async (event) => {
      invocations += 1;
      const action = (event as { action?: string } | null)?.action;
      context.logger.child({ invocation: invocations }).info('invoked', { threadId, action });
      context.metrics().add('Invocations').flush();
      if (action === 'exit') process.exit(3);
      if (action === 'heap') return { heapLimitBytes: getHeapStatistics().heap_size_limit };
      if (action === 'hang' || options.hang) return new Promise(() => undefined);
      if (invocations <= options.failures)
        throw Object.assign(new Error(`failure ${invocations} of ${options.failures}`), { code: 'FLAKY' });
      return { threadId, invocations };
    },
    close: async () => undefined,
  };
};

export const notAFactory = 42;
