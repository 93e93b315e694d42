import fs from 'node:fs';
import type { TestClusterState } from './global-setup';

export default async function globalTeardown(): Promise<void> {
  const state = (globalThis as Record<string, unknown>).__totesTestCluster as TestClusterState | undefined;
  if (!state) return;
  await new Promise<void>((resolve) => {
    state.child.once('exit', () => resolve());
    state.child.kill('SIGTERM');
  });
  fs.rmSync(state.root, { recursive: true, force: true });
}
