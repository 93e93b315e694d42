import { startKinesalite, type LocalKinesisOptions } from './kinesalite';
import type { StageFactory } from './stage-factories';

/**
 * kinesalite as a stage worker's "stage" (local/stage-workers.ts), so `totes up` serves Kinesis on
 * a thread of its own instead of the stack's main event loop, which also serves s3rver to every
 * stage, runs the local Firehose and the triggers (bench/README.md, "10k/s: the local runtime,
 * session 9": kinesalite was about a quarter of that thread at 10k/s). Same server, same LevelDB
 * store, same HTTP endpoint: only the thread changes.
 *
 * The worker starts kinesalite when it is built; the handler answers with its port once it listens
 * (or with the start's error, e.g. EADDRINUSE, its code kept); `close` stops it (the store is
 * flushed and its LOCK released, as `LocalKinesis.stop`).
 *
 * This module imports nothing of the stage workers themselves (the worker requires it by path).
 */
export const kinesaliteStage: StageFactory<LocalKinesisOptions> = (options) => {
  const started = startKinesalite(options);
  // Reported by the handler; a worker nobody asks must not die of an unhandled rejection.
  started.catch(() => undefined);
  return {
    handler: async () => ({ port: (await started).port }),
    close: async () => {
      const kinesis = await started.catch(() => undefined);
      await kinesis?.stop();
    },
  };
};
