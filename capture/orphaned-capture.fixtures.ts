import path from 'node:path';
import { createLogger } from '../core/logger';
import { Supervisor } from '../local/supervisor';

// Stands in for `totes up` in capture/orphaned-capture.pg.test.ts: starts `totes capture` under the
// stack's own Supervisor (IPC channel, its own process group, stdout and stderr piped here), with
// this process's environment, and writes the child's pid as one JSON line on stdout. The test then
// kills this process with SIGKILL.
const supervisor = new Supervisor({
  name: 'capture',
  command: process.execPath,
  args: [path.join(__dirname, '..', 'bin', 'totes.js'), 'capture'],
  env: process.env,
  logger: createLogger({ service: 'orphan-parent', level: 'warn' }),
  onOutput: (line) => process.stderr.write(`[capture] ${line}\n`),
});
supervisor.start();
process.stdout.write(`${JSON.stringify({ pid: supervisor.pid })}\n`);
