import { BenchUsageError } from './options';
import { runPipelineBench } from './pipeline';
import { parsePipelineOptions } from './pipeline-options';
import { formatPipelineReport } from './pipeline-report';
import { runScript } from './script-driver';

/** `npm run bench:pipeline`: parses the options, runs pipeline.ts, prints and saves the report. */

runScript({
  name: 'bench:pipeline',
  parse: parsePipelineOptions,
  isUsageError: (e) => e instanceof BenchUsageError,
  stopping: 'the stack',
  log: { label: 'stack log', file: 'stack.log' },
  run: runPipelineBench,
  format: formatPipelineReport,
  exitCode: () => 0,
});
