import { runCapture } from '../../capture/main';
import { defineCommand } from '../command';

/**
 * `totes capture`: the capture service on its own (what runs on Fargate). Every flag has an
 * environment variable twin, which is how the container is configured; a flag wins over its twin.
 */
const FLAG_TO_ENV = {
  'source-url': 'TOTES_SOURCE_URL',
  stream: 'TOTES_STREAM_NAME',
  'kinesis-endpoint': 'TOTES_KINESIS_ENDPOINT',
  tables: 'TOTES_TABLES',
  schema: 'TOTES_SCHEMA',
  publication: 'TOTES_PUBLICATION',
  slot: 'TOTES_SLOT',
  'state-file': 'TOTES_STATE_FILE',
  'state-s3-uri': 'TOTES_STATE_S3_URI',
  'heartbeat-interval-ms': 'TOTES_HEARTBEAT_INTERVAL_MS',
  'log-level': 'TOTES_LOG_LEVEL',
  'on-slot-lost': 'TOTES_ON_SLOT_LOST',
  'record-compression': 'TOTES_RECORD_COMPRESSION',
} as const;

const options = Object.fromEntries(Object.keys(FLAG_TO_ENV).map((k) => [k, { type: 'string' as const }])) as {
  [K in keyof typeof FLAG_TO_ENV]: { type: 'string' };
};

export const command = defineCommand({
  name: 'capture',
  summary:
    'Stream changes from Postgres logical replication (pgoutput) into a Kinesis stream. On first start it creates ' +
    'the publication and slot and delivers a consistent snapshot of the tables, then every committed change. ' +
    'Runs until SIGTERM/Ctrl-C, then drains: flushes, confirms and exits 0. Logs are JSON lines on stderr.',
  usage: 'capture --source-url URL --stream NAME [options]',
  options,
  optionHelp: {
    'source-url': 'Source Postgres URL (env TOTES_SOURCE_URL; or TOTES_SOURCE_SECRET_ARN in AWS).',
    stream: 'Kinesis stream to write to (env TOTES_STREAM_NAME).',
    'kinesis-endpoint': 'Kinesis endpoint override, e.g. kinesalite (env TOTES_KINESIS_ENDPOINT).',
    tables: 'Comma-separated tables to capture (default: the 11 totesys tables).',
    schema: 'Schema of the tables (default public).',
    publication: 'Publication name (default totes_pub; created when missing).',
    slot: 'Replication slot name (default totes_slot; created when missing).',
    'state-file': 'Where to remember the completed snapshot (default .totes/capture-state.json).',
    'state-s3-uri': 'Keep that state in S3 instead: s3://bucket/key.',
    'heartbeat-interval-ms': 'Heartbeat period that keeps an idle slot moving (default 10000).',
    'log-level': 'debug | info | warn | error (default info).',
    'on-slot-lost':
      'resync (default): a slot invalidated by max_slot_wal_keep_size is replaced and a reconciling snapshot ' +
      'runs under a new epoch; fail: refuse to start, for an operator to decide.',
    'record-compression':
      'gzip (default): stream records are gzip (about 5× fewer bytes on the stream); none: JSON, for another ' +
      'consumer of the stream that expects it. The pipeline reads both.',
  },
  async run(values) {
    const env: Record<string, string | undefined> = { ...process.env };
    for (const [flag, name] of Object.entries(FLAG_TO_ENV)) {
      const value = values[flag as keyof typeof FLAG_TO_ENV];
      if (value !== undefined) env[name] = value;
    }
    return runCapture(env);
  },
});
