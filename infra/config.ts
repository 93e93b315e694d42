import { TOTESYS_TABLES } from '../core/totesys-tables';

/**
 * The CDK app's settings, read once from context (`cdk.json`, or `--context key=value` on the
 * command line, where every value arrives as a string) and passed down as plain values. Every key
 * has a default here, so `cdk synth` works with no context at all; `cdk.json` repeats the defaults
 * so they are visible and editable in one place (a test keeps the two equal). docs/deploy.md lists
 * them for operators.
 */
export const CONTEXT_DEFAULTS = {
  // ---------------------------------------------------------------- Kinesis
  /**
   * ON_DEMAND scales to the initial snapshot's burst and back with no shard arithmetic; PROVISIONED
   * is cheaper once the change rate is steady and known (1 MiB/s or 1,000 records/s per shard).
   */
  'totes:streamMode': 'ON_DEMAND',
  /** Shards when PROVISIONED (ignored on demand). */
  'totes:shardCount': 1,
  /**
   * The replay window: how long Kinesis keeps changes Firehose (or a replay) can read again.
   * 168 h = 7 days, enough to notice and fix a broken downstream over a weekend.
   */
  'totes:retentionHours': 168,

  // ---------------------------------------------------------------- Firehose
  /**
   * `default`: Firehose partitions by table (dynamic partitioning) and buffers each table for the
   * interval below. `fast`: no dynamic partitioning, zero buffering — Firehose writes mixed-table
   * objects within seconds and transform splits them by table. docs/deploy.md ("Freshness modes")
   * gives the expected commit → warehouse p99 of each, from AWS's documented limits. Switching
   * replaces the delivery stream (replay after it, docs/deploy.md).
   */
  'totes:freshness': 'default',
  /**
   * The micro-batch: how long Firehose gathers each table's records before writing an object. Lower
   * means fresher data but more, smaller objects (each one a transform and a load invocation).
   * Dynamic partitioning has no zero buffering and 60 s is the shortest interval it takes; delivery
   * can take about 1.5x the interval. https://docs.aws.amazon.com/firehose/latest/dev/buffering.html
   */
  'totes:firehoseBufferIntervalSeconds': 60,
  /**
   * Flush a table's buffer early once this big. 64 MiB is the minimum Firehose accepts with dynamic
   * partitioning; at totesys' change rate the interval, not the size, ends almost every batch.
   */
  'totes:firehoseBufferSizeMiB': 64,

  // ---------------------------------------------------------------- source and capture
  /**
   * Secrets Manager secret holding the source connection (a postgres:// URL, or the JSON shape RDS
   * secrets use). Empty: the stateful stack creates an empty secret for you to fill before the
   * pipeline stack is deployed.
   */
  'totes:sourceSecretArn': '',
  /** Where the source database is, for the capture task's security group (narrow it!). */
  'totes:sourceCidr': '0.0.0.0/0',
  'totes:sourcePort': 5432,
  /**
   * TLS to the source (capture's PGSSLMODE, which a `sslmode` in a URL secret overrides):
   * `verify-full` checks the certificate and host name (the image trusts the RDS CA bundle; RDS
   * refuses plain connections from PG 15 on), `no-verify` encrypts without checking, `disable` for
   * a source without TLS.
   */
  'totes:sourceSslMode': 'verify-full',
  'totes:slot': 'totes_slot',
  'totes:publication': 'totes_pub',
  /** Comma-separated tables capture reads (default: the 11 totesys tables). */
  'totes:tables': TOTESYS_TABLES.join(','),
  /**
   * Capture's transactional heartbeat: keeps an idle slot from pinning WAL and bounds the lag an
   * idle source reports. Every heartbeat is one tiny commit on the source.
   */
  'totes:heartbeatIntervalMs': 10_000,
  /** Fargate task size: decoding is CPU-bound; memory holds the batches in flight (2 x 1 MiB). */
  'totes:captureCpu': 512,
  'totes:captureMemoryMiB': 1024,
  /**
   * X86_64 builds the image on any machine without emulation; ARM64 (Graviton) is about 20% cheaper
   * but needs an arm64 Docker builder (or QEMU) where `cdk deploy` runs.
   */
  'totes:captureCpuArchitecture': 'X86_64',
  /**
   * Capture tasks: 1 (one slot, one reader), or 0 to deploy everything else first. `auto`: 1 when
   * totes:sourceSecretArn names your secret, 0 when the stack creates an empty one (capture could
   * not connect before you fill it, and its failing first deployment would fail the stack's).
   */
  'totes:captureDesiredCount': 'auto',

  // ---------------------------------------------------------------- network
  /** An existing VPC to use (needs an account and region for the lookup); empty creates one. */
  'totes:vpcId': '',

  // ---------------------------------------------------------------- warehouse
  /** `create`: an RDS Postgres in the VPC. `existing`: one you run, named by totes:warehouseSecretArn. */
  'totes:warehouse': 'create',
  'totes:warehouseSecretArn': '',
  /** Where an existing warehouse is, for the load function's security group. */
  'totes:warehouseCidr': '0.0.0.0/0',
  'totes:warehousePort': 5432,
  'totes:warehouseInstanceType': 't4g.small',
  /** A standby in a second AZ doubles the cost; the pipeline can replay from Kinesis and S3 meanwhile. */
  'totes:warehouseMultiAz': false,
  /**
   * Load invocations at once: the maximum concurrency of the load queue's event source mapping
   * (2 to 1,000). Each holds one warehouse connection and upserts into the same dimension rows, so
   * more would add connections and lock waits, not throughput. Unlike reserved concurrency it needs
   * no unreserved account capacity (new accounts have a limit of 10) and throttles nothing: the
   * queue holds the rest. https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html
   */
  'totes:loadMaxConcurrency': 5,
  /**
   * Receives of one load message before the queue moves it to its dead-letter queue. With the
   * visibility timeout at 6x the load timeout (30 minutes), 100 receives wait out about two days of
   * warehouse outage; the reconciler re-drives anything older.
   */
  'totes:loadMaxReceiveCount': 100,
  /** How often the reconciler looks for objects a stage never finished. */
  'totes:reconcileIntervalMinutes': 15,

  // ---------------------------------------------------------------- storage and logs
  /** CSV objects are read once by transform within minutes; after that only replays read them. */
  'totes:ingestionInfrequentAccessAfterDays': 30,
  /** Overwritten or deleted object versions are kept this long, then expire. */
  'totes:noncurrentVersionExpirationDays': 30,
  'totes:logRetentionDays': 30,
  'totes:tracing': false,

  // ---------------------------------------------------------------- alarms
  /** Where alarms are emailed (a subscription to confirm); empty: no subscription. */
  'totes:alarmEmail': '',
  /** Commit on the source → accepted by Kinesis. Idle, it stays near the heartbeat interval. */
  'totes:maxCaptureLagSeconds': 120,
  /** WAL the slot keeps on the source's disk: the first sign of a stuck or slow capture. 2 GiB. */
  'totes:maxRetainedWalBytes': 2 * 1024 ** 3,
  /** Age of the oldest record Firehose has not read yet. */
  'totes:maxIteratorAgeMs': 300_000,
  /**
   * Commit on the source → in the warehouse, measured on capture's heartbeat by the reconciler on
   * its schedule (core/pipeline-heartbeat.ts): no heartbeat loaded, or no run, breaches too.
   */
  'totes:maxWarehouseFreshnessSeconds': 600,
  /**
   * When the source is an RDS instance: its identifier. The slot's lag and the WAL it retains are
   * then also alarmed from RDS' own metrics (OldestReplicationSlotLag, TransactionLogsDiskUsage),
   * which keep coming when capture is dead or hung. Empty: capture's own figures only.
   */
  'totes:sourceRdsInstanceId': '',
  /** Age of the oldest message in the load queue: loads are failing or far behind. */
  'totes:maxLoadQueueAgeSeconds': 3600,
  /**
   * Warehouse connections. A db.t4g.small has about 2 GiB, so RDS's default max_connections
   * (LEAST(DBInstanceClassMemory/9531392, 5000)) is about 200: alarm well before it.
   */
  'totes:maxWarehouseConnections': 100,
  /** CPU credits left on a burstable (t-class) warehouse: below this it is about to be throttled. */
  'totes:minWarehouseCpuCredits': 20,
  /** Free storage on a created warehouse (autoscaling adds storage, up to its maximum). */
  'totes:minWarehouseFreeStorageBytes': 2 * 1024 ** 3,
} as const;

export type ContextKey = keyof typeof CONTEXT_DEFAULTS;

export const FRESHNESS_MODES = ['default', 'fast'] as const;
export type FreshnessMode = (typeof FRESHNESS_MODES)[number];
export const STREAM_MODES = ['ON_DEMAND', 'PROVISIONED'] as const;
export type StreamModeName = (typeof STREAM_MODES)[number];
export const WAREHOUSE_MODES = ['create', 'existing'] as const;
export type WarehouseMode = (typeof WAREHOUSE_MODES)[number];
export const CPU_ARCHITECTURES = ['X86_64', 'ARM64'] as const;
export type CpuArchitectureName = (typeof CPU_ARCHITECTURES)[number];
export const SOURCE_SSL_MODES = ['verify-full', 'no-verify', 'disable'] as const;
export type SourceSslMode = (typeof SOURCE_SSL_MODES)[number];

/** Retention values CloudWatch Logs accepts. */
export const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
] as const;

/** Fargate's valid CPU units and, for each, the memory sizes (MiB) it allows up to 4 vCPU. */
const FARGATE_MEMORY_MIB: Record<number, (m: number) => boolean> = {
  256: (m) => [512, 1024, 2048].includes(m),
  512: (m) => m >= 1024 && m <= 4096 && m % 1024 === 0,
  1024: (m) => m >= 2048 && m <= 8192 && m % 1024 === 0,
  2048: (m) => m >= 4096 && m <= 16384 && m % 1024 === 0,
  4096: (m) => m >= 8192 && m <= 30720 && m % 1024 === 0,
};

export interface TotesConfig {
  /** Set only when a VPC lookup needs a concrete environment; otherwise stacks are env-agnostic. */
  env?: { account: string; region: string };
  stream: { mode: StreamModeName; shardCount: number; retentionHours: number };
  firehose: { freshness: FreshnessMode; bufferIntervalSeconds: number; bufferSizeMiB: number };
  source: { secretArn: string | null; cidr: string; port: number; sslMode: SourceSslMode };
  capture: {
    slot: string;
    publication: string;
    tables: string[];
    heartbeatIntervalMs: number;
    cpu: number;
    memoryMiB: number;
    cpuArchitecture: CpuArchitectureName;
    desiredCount: 0 | 1;
  };
  vpcId: string | null;
  warehouse:
    | { mode: 'create'; port: number; instanceType: string; multiAz: boolean }
    | { mode: 'existing'; secretArn: string; cidr: string; port: number };
  load: { maxConcurrency: number; maxReceiveCount: number };
  reconcile: { intervalMinutes: number };
  storage: { ingestionInfrequentAccessAfterDays: number; noncurrentVersionExpirationDays: number };
  logRetentionDays: (typeof LOG_RETENTION_DAYS)[number];
  tracing: boolean;
  alarms: {
    email: string | null;
    maxCaptureLagSeconds: number;
    maxRetainedWalBytes: number;
    maxIteratorAgeMs: number;
    maxWarehouseFreshnessSeconds: number;
    /** The source's RDS instance, whose replication-slot metrics are alarmed; null: not RDS. */
    sourceRdsInstanceId: string | null;
    maxLoadQueueAgeSeconds: number;
    maxWarehouseConnections: number;
    minWarehouseCpuCredits: number;
    minWarehouseFreeStorageBytes: number;
  };
}

export class TotesConfigError extends Error {
  override readonly name = 'TotesConfigError';
  constructor(readonly problems: string[]) {
    super(`invalid context:\n  - ${problems.join('\n  - ')}`);
  }
}

type Lookup = (key: string) => unknown;

/** Reads and checks every `totes:*` context value; all problems are reported at once. */
export function readTotesConfig(
  context: Lookup,
  env: Record<string, string | undefined> = process.env,
): TotesConfig {
  const problems: string[] = [];
  const raw = <K extends ContextKey>(key: K): unknown => {
    const value = context(key);
    return value === undefined || value === null ? CONTEXT_DEFAULTS[key] : value;
  };
  const str = (key: ContextKey): string => String(raw(key)).trim();
  const oneOf = <T extends string>(key: ContextKey, allowed: readonly T[]): T => {
    const value = str(key);
    if ((allowed as readonly string[]).includes(value)) return value as T;
    problems.push(`${key} must be one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
    return CONTEXT_DEFAULTS[key] as T;
  };
  const int = (key: ContextKey, min: number, max: number, why = ''): number => {
    const value = raw(key);
    const n = typeof value === 'number' ? value : Number(String(value).trim());
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`${key} must be an integer from ${min} to ${max}${why}, got ${JSON.stringify(value)}`);
      return CONTEXT_DEFAULTS[key] as number;
    }
    return n;
  };
  const bool = (key: ContextKey): boolean => {
    const value = raw(key);
    if (value === true || value === 'true') return true;
    if (value === false || value === 'false') return false;
    problems.push(`${key} must be true or false, got ${JSON.stringify(value)}`);
    return CONTEXT_DEFAULTS[key] as boolean;
  };
  const cidr = (key: ContextKey): string => {
    const value = str(key);
    if (/^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/.test(value)) return value;
    problems.push(`${key} must be an IPv4 CIDR such as 10.0.0.0/16, got ${JSON.stringify(value)}`);
    return CONTEXT_DEFAULTS[key] as string;
  };
  const secretArn = (key: ContextKey): string | null => {
    const value = str(key);
    if (value === '') return null;
    if (/^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$/.test(value)) return value;
    problems.push(`${key} must be a Secrets Manager secret ARN, got ${JSON.stringify(value)}`);
    return null;
  };
  const name = (key: ContextKey): string => {
    const value = str(key);
    // Postgres identifiers capture puts into SQL: keep them plain so they never need quoting.
    if (/^[a-z_][a-z0-9_]{0,62}$/.test(value)) return value;
    problems.push(`${key} must be a lower-case Postgres identifier, got ${JSON.stringify(value)}`);
    return CONTEXT_DEFAULTS[key] as string;
  };

  const streamMode = oneOf('totes:streamMode', STREAM_MODES);
  // Kinesis accepts 24 h to 365 days of retention.
  const retentionHours = int('totes:retentionHours', 24, 8760);
  // Per-account shard quotas start at 200 (500 in some regions); more needs a quota increase.
  const shardCount = int('totes:shardCount', 1, 200);

  const freshness = oneOf('totes:freshness', FRESHNESS_MODES);
  // Fast mode buffers nothing: the interval is 0 whatever is set, and objects may be small.
  const bufferIntervalSeconds =
    freshness === 'fast'
      ? 0
      : int('totes:firehoseBufferIntervalSeconds', 60, 900, ' (dynamic partitioning has no zero buffering)');
  const bufferSizeMiB =
    freshness === 'fast'
      ? int('totes:firehoseBufferSizeMiB', 1, 128)
      : int('totes:firehoseBufferSizeMiB', 64, 128, ' (64 is the dynamic-partitioning minimum)');

  const tables = str('totes:tables')
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  if (tables.length === 0) problems.push('totes:tables must name at least one table');
  for (const t of tables)
    if (!/^([a-z_][a-z0-9_]*\.)?[a-z_][a-z0-9_]*$/.test(t))
      problems.push(`totes:tables: ${JSON.stringify(t)} is not a plain table name`);

  const cpu = int('totes:captureCpu', 256, 4096);
  const memoryMiB = int('totes:captureMemoryMiB', 512, 30720);
  const memoryFits = FARGATE_MEMORY_MIB[cpu];
  if (!memoryFits)
    problems.push(`totes:captureCpu must be one of ${Object.keys(FARGATE_MEMORY_MIB).join(', ')}`);
  else if (!memoryFits(memoryMiB))
    problems.push(`totes:captureMemoryMiB ${memoryMiB} is not a Fargate size for ${cpu} CPU units`);

  const desiredRaw = str('totes:captureDesiredCount');
  let captureDesiredCount: 0 | 1 = str('totes:sourceSecretArn') === '' ? 0 : 1;
  if (desiredRaw === '0' || desiredRaw === '1') captureDesiredCount = Number(desiredRaw) as 0 | 1;
  else if (desiredRaw !== 'auto')
    problems.push(`totes:captureDesiredCount must be auto, 0 or 1, got ${JSON.stringify(desiredRaw)}`);

  const warehouseMode = oneOf('totes:warehouse', WAREHOUSE_MODES);
  const warehousePort = int('totes:warehousePort', 1, 65535);
  let warehouse: TotesConfig['warehouse'];
  if (warehouseMode === 'existing') {
    const arn = secretArn('totes:warehouseSecretArn');
    if (!arn && str('totes:warehouseSecretArn') === '')
      problems.push('totes:warehouse=existing needs totes:warehouseSecretArn (the connection secret)');
    warehouse = {
      mode: 'existing',
      secretArn: arn ?? '',
      cidr: cidr('totes:warehouseCidr'),
      port: warehousePort,
    };
  } else {
    const instanceType = str('totes:warehouseInstanceType');
    if (!/^[a-z][a-z0-9-]*\.[a-z0-9]+$/.test(instanceType))
      problems.push(
        `totes:warehouseInstanceType must look like t4g.small, got ${JSON.stringify(instanceType)}`,
      );
    warehouse = {
      mode: 'create',
      port: warehousePort,
      instanceType,
      multiAz: bool('totes:warehouseMultiAz'),
    };
  }

  const vpcId = str('totes:vpcId') || null;
  if (vpcId && !/^vpc-[0-9a-f]{8,17}$/.test(vpcId))
    problems.push(`totes:vpcId must look like vpc-0123abcd, got ${JSON.stringify(vpcId)}`);
  let stackEnv: TotesConfig['env'];
  if (vpcId) {
    // Vpc.fromLookup reads the VPC at synth time, which needs a concrete account and region.
    const account = env.CDK_DEFAULT_ACCOUNT;
    const region = env.CDK_DEFAULT_REGION;
    if (!account || !region)
      problems.push('totes:vpcId needs an account and region: run cdk with AWS credentials configured');
    else stackEnv = { account, region };
  }

  const logRetentionDays = int('totes:logRetentionDays', 1, 3653);
  if (!(LOG_RETENTION_DAYS as readonly number[]).includes(logRetentionDays))
    problems.push(`totes:logRetentionDays must be one of ${LOG_RETENTION_DAYS.join(', ')}`);

  const email = str('totes:alarmEmail') || null;
  // eslint-disable-next-line regexp/no-super-linear-backtracking -- the operator's own cdk context value, read once at synth
  if (email && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email))
    problems.push(`totes:alarmEmail must be an email address, got ${JSON.stringify(email)}`);

  const config: TotesConfig = {
    ...(stackEnv ? { env: stackEnv } : {}),
    stream: { mode: streamMode, shardCount, retentionHours },
    firehose: { freshness, bufferIntervalSeconds, bufferSizeMiB },
    source: {
      secretArn: secretArn('totes:sourceSecretArn'),
      cidr: cidr('totes:sourceCidr'),
      port: int('totes:sourcePort', 1, 65535),
      sslMode: oneOf('totes:sourceSslMode', SOURCE_SSL_MODES),
    },
    capture: {
      slot: name('totes:slot'),
      publication: name('totes:publication'),
      tables,
      // Below a second the heartbeat is a write load of its own; above wal_sender_timeout (60 s) an
      // idle source reports a minute of lag for nothing.
      heartbeatIntervalMs: int('totes:heartbeatIntervalMs', 1_000, 60_000),
      cpu,
      memoryMiB,
      cpuArchitecture: oneOf('totes:captureCpuArchitecture', CPU_ARCHITECTURES),
      desiredCount: captureDesiredCount,
    },
    vpcId,
    warehouse,
    load: {
      // An SQS event source mapping's maximum concurrency is 2 to 1,000; above 50 the warehouse's
      // connection limit, not Lambda, is the ceiling.
      maxConcurrency: int('totes:loadMaxConcurrency', 2, 50),
      // SQS's redrive policy accepts 1 to 1,000 receives.
      maxReceiveCount: int('totes:loadMaxReceiveCount', 1, 1000),
    },
    // EventBridge rates are whole minutes.
    reconcile: { intervalMinutes: int('totes:reconcileIntervalMinutes', 5, 1440) },
    storage: {
      // S3 moves objects to Standard-IA no sooner than 30 days after creation.
      ingestionInfrequentAccessAfterDays: int('totes:ingestionInfrequentAccessAfterDays', 30, 3650),
      noncurrentVersionExpirationDays: int('totes:noncurrentVersionExpirationDays', 1, 3650),
    },
    logRetentionDays: logRetentionDays as TotesConfig['logRetentionDays'],
    tracing: bool('totes:tracing'),
    alarms: {
      email,
      maxCaptureLagSeconds: int('totes:maxCaptureLagSeconds', 1, 86_400),
      maxRetainedWalBytes: int('totes:maxRetainedWalBytes', 1, Number.MAX_SAFE_INTEGER),
      maxIteratorAgeMs: int('totes:maxIteratorAgeMs', 1_000, 7 * 86_400_000),
      maxWarehouseFreshnessSeconds: int('totes:maxWarehouseFreshnessSeconds', 60, 86_400),
      sourceRdsInstanceId: str('totes:sourceRdsInstanceId') || null,
      maxLoadQueueAgeSeconds: int('totes:maxLoadQueueAgeSeconds', 60, 14 * 86_400),
      maxWarehouseConnections: int('totes:maxWarehouseConnections', 1, 5000),
      minWarehouseCpuCredits: int('totes:minWarehouseCpuCredits', 0, 10_000),
      minWarehouseFreeStorageBytes: int('totes:minWarehouseFreeStorageBytes', 1, Number.MAX_SAFE_INTEGER),
    },
  };
  if (problems.length > 0) throw new TotesConfigError(problems);
  return config;
}

/** Settings a synth should warn about (they work, but are wider than they should be). */
export function configWarnings(config: TotesConfig): string[] {
  const warnings: string[] = [];
  if (config.source.cidr === '0.0.0.0/0')
    warnings.push('totes:sourceCidr is 0.0.0.0/0: set it to the source database address range');
  if (config.warehouse.mode === 'existing' && config.warehouse.cidr === '0.0.0.0/0')
    warnings.push('totes:warehouseCidr is 0.0.0.0/0: set it to the warehouse address range');
  if (!config.alarms.email) warnings.push('totes:alarmEmail is empty: alarms reach the SNS topic but nobody');
  if (config.capture.desiredCount === 0)
    warnings.push(
      'capture is off (totes:captureDesiredCount resolves to 0): fill the source secret, check it with ' +
        '`totes doctor`, then deploy with --context totes:captureDesiredCount=1',
    );
  return warnings;
}
