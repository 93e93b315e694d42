import { parentPort, workerData } from 'node:worker_threads';
import { rawTextClient } from '../capture/pg-text';
import { copySnapshotTables, type TableLayout } from '../capture/snapshot';

/**
 * bench:snapshot's worker-thread side: one worker copies and encodes its share of the tables
 * (capture/snapshot.ts copySnapshotTables on one connection of its own, inside the same exported
 * snapshot) and posts the finished record Buffers to the main thread, which discards them. It
 * measures whether encoding off the main thread pays on this machine; it is not capture's path
 * (its ordinals start at 0 in each worker, and nothing holds the worker back while the main
 * thread lags).
 */

export interface SnapshotWorkerJob {
  url: string;
  snapshot: string;
  layouts: TableLayout[];
  flushBytes: number;
}

async function main(): Promise<void> {
  // Started ahead of the run (loading the code is not what is measured): the job comes with `go`.
  parentPort!.postMessage({ ready: true });
  const go = await new Promise<{ snapshot: string }>((resolve) => parentPort!.once('message', resolve));
  const { url, layouts, flushBytes } = workerData as Omit<SnapshotWorkerJob, 'snapshot'>;
  const { snapshot } = go;
  const { rows } = await copySnapshotTables({
    connect: async () => {
      const client = rawTextClient(url);
      await client.connect();
      return client;
    },
    snapshotName: snapshot,
    layouts,
    lsn: '0/1',
    epoch: 1,
    connections: 1,
    flushBytes,
    put: async (records) => {
      const data = records.map((r) => r.data);
      // A Buffer that owns its memory moves without a copy; a pooled small one is copied.
      const own = data.filter((d) => d.byteOffset === 0 && d.byteLength === d.buffer.byteLength);
      parentPort!.postMessage(
        { records: data },
        own.map((d) => d.buffer as ArrayBuffer),
      );
    },
  });
  parentPort!.postMessage({ rows });
}

main().catch((e) => {
  throw e;
});
