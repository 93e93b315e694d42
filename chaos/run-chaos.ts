import { runScript } from '../bench/script-driver';
import { ChaosUsageError, HELP, parseChaosOptions } from './chaos-options';
import { formatChaosReport } from './chaos-report';
import { runChaos } from './chaos-run';

/** `npm run chaos`: parses the options, runs chaos-run.ts, prints and saves the report. */

runScript({
  name: 'chaos',
  parse: (argv) => {
    const options = parseChaosOptions(argv);
    if (!options) process.stdout.write(HELP);
    return options;
  },
  isUsageError: (e) => e instanceof ChaosUsageError,
  stopping: 'totes up',
  log: { label: "totes up's log", file: 'totes-up.log' },
  run: runChaos,
  format: formatChaosReport,
  exitCode: (report) => (report.ok ? 0 : 1),
  announceRoot: true,
});
