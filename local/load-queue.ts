import path from 'node:path';
import { DurableQueue } from './durable-queue';
import { deadLetterFileOf, LOCAL_QUEUE_DEFAULTS } from './queue-event-source';

/** Where `totes up` keeps the load queue under its data directory (local/local-stack.ts). */
export function loadQueueDir(dataDir: string): string {
  return path.join(dataDir, 'queues', 'load');
}

/**
 * The load queue of the stack on `dataDir`, for another process to send to (`totes reconcile`):
 * sending is a new file, safe while `totes up` consumes.
 */
export function openLoadQueue(dataDir: string): DurableQueue {
  return new DurableQueue({
    dir: path.join(loadQueueDir(dataDir), 'queue'),
    deadLetterFile: deadLetterFileOf(loadQueueDir(dataDir)),
    visibilityTimeoutMs: LOCAL_QUEUE_DEFAULTS.visibilityTimeoutMs,
    maxReceiveCount: LOCAL_QUEUE_DEFAULTS.maxReceiveCount,
  });
}
