import { TOTESYS_TABLES } from '../core/totesys-tables';
import type { LogLevel } from '../core/logger';
import { CAPTURE_DEFAULTS } from './capture-service';
import { ConfigError } from './source-secret';
import { RECORD_COMPRESSIONS, type RecordCompression } from '../core/record-compression';

/**
 * Capture's settings, read once from the environment at the entry point and passed down as plain
 * values. In AWS the task definition sets these (and injects the source secret); locally `totes up`
 * and `totes capture` set them from flags.
 */
export interface CaptureSettings {
  /** A connection URL, or null when `sourceSecretArn` names a Secrets Manager secret instead. */
  sourceUrl: string | null;
  sourceSecretArn: string | null;
  schema: string;
  tables: string[];
  publication: string;
  slot: string;
  streamName: string;
  /** Set for kinesalite; unset in AWS. */
  kinesisEndpoint: string | null;
  /**
   * Where a change too big for one stream record is stored (its pointer goes through the stream):
   * the ingestion bucket, under `oversized/`. null: such a change stops capture, named, unconfirmed.
   */
  oversizedBucket: string | null;
  /** Set for s3rver; unset in AWS. */
  s3Endpoint: string | null;
  region: string;
  state: { kind: 'file'; path: string } | { kind: 's3'; bucket: string; key: string };
  heartbeatIntervalMs: number;
  statsIntervalMs: number;
  lingerMs: number;
  busyLingerMs: number;
  flushBytes: number;
  logLevel: LogLevel;
  /** What to do when the slot was invalidated: take a reconciling snapshot, or refuse to start. */
  onSlotLost: 'resync' | 'fail';
  /**
   * gzip (the default) or none: how stream records are written (core/record-compression.ts). The
   * project's readers take both; `none` is for another consumer of the stream that expects JSON.
   */
  recordCompression: RecordCompression;
}

export { ConfigError, sourceUrlFromSecret } from './source-secret';

type Env = Record<string, string | undefined>;

function positiveInt(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0)
    throw new ConfigError(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return value;
}

function parseStateLocation(env: Env): CaptureSettings['state'] {
  const s3 = env.TOTES_STATE_S3_URI;
  if (s3) {
    const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(s3);
    if (!m)
      throw new ConfigError(`TOTES_STATE_S3_URI must look like s3://bucket/key, got ${JSON.stringify(s3)}`);
    return { kind: 's3', bucket: m[1], key: m[2] };
  }
  return { kind: 'file', path: env.TOTES_STATE_FILE || '.totes/capture-state.json' };
}

const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

export function captureSettingsFromEnv(env: Env): CaptureSettings {
  const sourceUrl = env.TOTES_SOURCE_URL || null;
  const sourceSecretArn = env.TOTES_SOURCE_SECRET_ARN || null;
  if (!sourceUrl && !sourceSecretArn) {
    throw new ConfigError(
      'set TOTES_SOURCE_URL (postgres://…) or TOTES_SOURCE_SECRET_ARN (a Secrets Manager secret)',
    );
  }
  const streamName = env.TOTES_STREAM_NAME;
  if (!streamName) throw new ConfigError('set TOTES_STREAM_NAME to the Kinesis stream capture writes to');
  const logLevel = (env.TOTES_LOG_LEVEL || 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel))
    throw new ConfigError(`TOTES_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);
  const onSlotLost = env.TOTES_ON_SLOT_LOST || CAPTURE_DEFAULTS.onSlotLost;
  if (onSlotLost !== 'resync' && onSlotLost !== 'fail')
    throw new ConfigError(`TOTES_ON_SLOT_LOST must be resync or fail, got ${JSON.stringify(onSlotLost)}`);
  const recordCompression = (env.TOTES_RECORD_COMPRESSION || 'gzip') as RecordCompression;
  if (!RECORD_COMPRESSIONS.includes(recordCompression))
    throw new ConfigError(
      `TOTES_RECORD_COMPRESSION must be ${RECORD_COMPRESSIONS.join(' or ')}, got ${JSON.stringify(env.TOTES_RECORD_COMPRESSION)}`,
    );
  const lingerMs = positiveInt(env, 'TOTES_LINGER_MS', CAPTURE_DEFAULTS.lingerMs);
  const busyLingerMs = positiveInt(
    env,
    'TOTES_BUSY_LINGER_MS',
    Math.max(CAPTURE_DEFAULTS.busyLingerMs, lingerMs),
  );
  if (busyLingerMs < lingerMs)
    throw new ConfigError(
      `TOTES_BUSY_LINGER_MS (${busyLingerMs}) must be at least TOTES_LINGER_MS (${lingerMs}): it is the linger under load (capture/linger.ts)`,
    );
  const tables = (env.TOTES_TABLES || TOTESYS_TABLES.join(','))
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  return {
    sourceUrl,
    sourceSecretArn,
    schema: env.TOTES_SCHEMA || CAPTURE_DEFAULTS.schema,
    tables,
    publication: env.TOTES_PUBLICATION || CAPTURE_DEFAULTS.publication,
    slot: env.TOTES_SLOT || CAPTURE_DEFAULTS.slot,
    streamName,
    kinesisEndpoint: env.TOTES_KINESIS_ENDPOINT || null,
    oversizedBucket: env.TOTES_OVERSIZED_BUCKET || null,
    s3Endpoint: env.TOTES_S3_ENDPOINT || null,
    region: env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1',
    state: parseStateLocation(env),
    heartbeatIntervalMs: positiveInt(
      env,
      'TOTES_HEARTBEAT_INTERVAL_MS',
      CAPTURE_DEFAULTS.heartbeatIntervalMs,
    ),
    statsIntervalMs: positiveInt(env, 'TOTES_STATS_INTERVAL_MS', CAPTURE_DEFAULTS.statsIntervalMs),
    lingerMs,
    busyLingerMs,
    flushBytes: positiveInt(env, 'TOTES_FLUSH_BYTES', CAPTURE_DEFAULTS.flushBytes),
    logLevel,
    onSlotLost,
    recordCompression,
  };
}
