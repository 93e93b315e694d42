import { parseColdStartOptions } from './cold-start-options';
import { formatColdStartReport } from './cold-start-report';
import { runColdStart } from './cold-start-run';
import { BenchUsageError } from './options';
import { runScript } from './script-driver';

/** `npm run bench:coldstart`: parses the options, runs cold-start-run.ts, prints and saves the report. */

runScript({
  name: 'bench:coldstart',
  parse: parseColdStartOptions,
  isUsageError: (e) => e instanceof BenchUsageError,
  stopping: 'the stack',
  log: { label: 'stack log', file: 'stack.log' },
  run: runColdStart,
  format: formatColdStartReport,
  // A warehouse that never verified is a failed run, not a slow one.
  exitCode: (result) => (result.verify.ok ? 0 : 1),
});
