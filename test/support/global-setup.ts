import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

/**
 * One embedded Postgres cluster (wal_level=logical) for the whole test run; every *.pg.test.ts file
 * creates its own database and slot on it (test/support/pg.ts). Its URL reaches the workers through
 * the environment, which they inherit.
 */
export default async function globalSetup(): Promise<void> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-test-'));
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(__dirname, 'cluster-process.ts'), path.join(root, 'pg')],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const url = await new Promise<string>((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout! });
    lines.once('line', (line) => resolve(JSON.parse(line).url));
    child.once('exit', (code) => reject(new Error(`test Postgres exited early with code ${code}`)));
  });
  process.env.TOTES_TEST_PG_URL = url;
  (globalThis as Record<string, unknown>).__totesTestCluster = { child, root };
}

export type TestClusterState = { child: ChildProcess; root: string };
