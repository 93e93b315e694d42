import path from 'node:path';
import type { Logger } from '../core/logger';
import type { LocalKinesis, LocalKinesisOptions } from './kinesalite';
import { StageWorkers } from './stage-workers';

/** kinesalite on a worker thread: the same `LocalKinesis`, and the worker (for profiles). */
export interface ThreadedKinesis extends LocalKinesis {
  readonly workers: StageWorkers;
}

/**
 * Starts kinesalite on a worker thread of its own (local/kinesalite-stage.ts): what `totes up`
 * runs, so Kinesis' CPU leaves the stack's main event loop. Rejects as `startKinesalite` does (a
 * port in use: EADDRINUSE). Should the thread die, the stage workers log it and start another,
 * which cannot take over (it listens on a port of its own, and the store may still be locked): as
 * with kinesalite in the main thread, the stack then has to be restarted.
 */
export async function startKinesaliteThread(
  options: LocalKinesisOptions,
  logger: Logger,
): Promise<ThreadedKinesis> {
  const workers = await StageWorkers.start({
    stage: 'kinesalite',
    module: path.join(__dirname, `kinesalite-stage${path.extname(__filename)}`),
    factory: 'kinesaliteStage',
    options,
    logger,
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
