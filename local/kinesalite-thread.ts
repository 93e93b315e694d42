import path from 'node:path';
import type { Logger } from '../core/logger';
import type { LocalKinesis, LocalKinesisOptions } from './kinesalite';
import { StageWorkers, type StageWorkerError } from './stage-workers';

/** kinesalite on a worker thread: the same `LocalKinesis`, and the worker (for profiles). */
export interface ThreadedKinesis extends LocalKinesis {
  readonly workers: StageWorkers;
}

/**
 * Starts kinesalite on a worker thread of its own (local/kinesalite-stage.ts): what `totes up`
 * runs, so Kinesis' CPU leaves the stack's main event loop. Rejects as `startKinesalite` does (a
 * port in use: EADDRINUSE). Should the thread die, no other is started: it could not take over (the
 * store's lock is the dead thread's until the process ends). It is logged as an error and `onDeath`
 * is called: `totes up` then stops, as it did when kinesalite, on the main thread, took the process
 * with it; the stream is on disk, and the next `totes up` carries on from it.
 */
export async function startKinesaliteThread(
  options: LocalKinesisOptions,
  logger: Logger,
  onDeath: (error: StageWorkerError) => void = () => undefined,
): Promise<ThreadedKinesis> {
  const workers = await StageWorkers.start({
    stage: 'kinesalite',
    module: path.join(__dirname, `kinesalite-stage${path.extname(__filename)}`),
    factory: 'kinesaliteStage',
    options,
    logger,
    onDeath: (error) => {
      logger.error(
        "kinesalite's thread exited: Kinesis is down until the stack restarts (the stream is kept on disk)",
        {
          err: error,
        },
      );
      onDeath(error);
    },
  });
  let port: number;
  try {
    ({ port } = (await workers.handler(null)) as { port: number });
  } catch (e) {
    await workers.stop();
    throw e;
  }
  return { endpoint: `http://127.0.0.1:${port}`, port, workers, stop: () => workers.stop() };
}
