import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stopLeftoverPostmaster } from './embedded-postgres';

// A postmaster left by a SIGKILLed `totes up` can hold a fast shutdown: a walsender waits for its
// client to take the last WAL, and the client (the orphaned capture, whose Kinesis died with
// `totes up`) has stopped reading. The restart then failed ("did not shut down in 30000 ms",
// `totes up` exit 1: seen once in CI's pipeline e2e). A process that ignores SIGINT stands in for
// that postmaster: only the escalation to an immediate shutdown (SIGQUIT) ends it.
it('escalates to an immediate shutdown when the fast shutdown does not finish', async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-leftover-'));
  const child = spawn(
    process.execPath,
    ['-e', "process.on('SIGINT', () => {}); process.stdout.write('ready\\n'); setInterval(() => {}, 1000);"],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.once('exit', (_code, signal) => resolve(signal)),
  );
  try {
    await new Promise((resolve) => child.stdout!.once('data', resolve));
    fs.writeFileSync(path.join(dataDir, 'postmaster.pid'), `${child.pid}\n${dataDir}\n`);

    await expect(stopLeftoverPostmaster(dataDir, { fastMs: 200, immediateMs: 20_000 })).resolves.toBe(true);
    expect(await exited).toBe('SIGQUIT');
  } finally {
    child.kill('SIGKILL');
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});
