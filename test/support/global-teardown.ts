import { removeDataDir } from '../../local/postgres-placement';
import type { TestClusterState } from './global-setup';

export default async function globalTeardown(): Promise<void> {
  const state = (globalThis as Record<string, unknown>).__totesTestCluster as TestClusterState | undefined;
  if (!state) return;
  await new Promise<void>((resolve) => {
    state.child.once('exit', () => resolve());
    state.child.kill('SIGTERM');
  });
  // The cluster's files may live outside the root, linked from it (local/postgres-placement.ts).
  removeDataDir(state.root);
}
