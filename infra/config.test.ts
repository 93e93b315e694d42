import fs from 'node:fs';
import path from 'node:path';
import { CAPTURE_DEFAULTS } from '../capture/capture-service';
import { TOTESYS_TABLES } from '../core/totesys-tables';
import { DELIVERY_STREAM_DEFAULTS } from '../local/delivery-stream';
import { CONTEXT_DEFAULTS, configWarnings, readTotesConfig, TotesConfigError } from './config';
import { METRICS_NAMESPACE } from '../processors/shared/metrics';
import { INGESTION_FILE_EXTENSION } from './constructs/delivery-stream';
import { EMF_METRICS, METRIC_NAMESPACE, STAGES } from './pipeline-metrics';

const read = (context: Record<string, unknown>, env: Record<string, string> = {}) =>
  readTotesConfig((key) => context[key], env);

function problems(context: Record<string, unknown>, env: Record<string, string> = {}): string[] {
  try {
    read(context, env);
  } catch (e) {
    if (e instanceof TotesConfigError) return e.problems;
    throw e;
  }
  return [];
}

describe('readTotesConfig', () => {
  it('works with no context at all, env-agnostic, with the documented defaults', () => {
    const config = read({});

    expect(config.env).toBeUndefined();
    expect(config.stream).toEqual({ mode: 'ON_DEMAND', shardCount: 1, retentionHours: 168 });
    expect(config.firehose).toEqual({ freshness: 'default', bufferIntervalSeconds: 60, bufferSizeMiB: 64 });
    expect(config.capture.tables).toEqual([...TOTESYS_TABLES]);
    expect(config.warehouse).toEqual({
      mode: 'create',
      port: 5432,
      instanceType: 't4g.small',
      multiAz: false,
    });
    expect(config.source.secretArn).toBeNull();
    expect(config.alarms.email).toBeNull();
  });

  it('reads values given as strings, as `cdk --context key=value` passes them', () => {
    const config = read({
      'totes:streamMode': 'PROVISIONED',
      'totes:shardCount': '4',
      'totes:firehoseBufferIntervalSeconds': '120',
      'totes:warehouseMultiAz': 'true',
      'totes:tables': 'staff, department',
      'totes:alarmEmail': 'data@example.com',
    });

    expect(config.stream.mode).toBe('PROVISIONED');
    expect(config.stream.shardCount).toBe(4);
    expect(config.firehose.bufferIntervalSeconds).toBe(120);
    expect(config.warehouse).toMatchObject({ mode: 'create', multiAz: true });
    expect(config.capture.tables).toEqual(['staff', 'department']);
    expect(config.alarms.email).toBe('data@example.com');
  });

  it('reports every problem at once', () => {
    const found = problems({
      'totes:streamMode': 'SOMETIMES',
      'totes:firehoseBufferSizeMiB': 5,
      'totes:firehoseBufferIntervalSeconds': 0,
      'totes:retentionHours': 12,
      'totes:captureMemoryMiB': 3000,
      'totes:logRetentionDays': 31,
      'totes:slot': 'Totes-Slot',
    });

    expect(found).toEqual([
      expect.stringContaining('totes:streamMode'),
      expect.stringContaining('totes:retentionHours'),
      expect.stringContaining('totes:firehoseBufferIntervalSeconds must be an integer from 60 to 900'),
      expect.stringContaining('totes:firehoseBufferSizeMiB must be an integer from 64 to 128'),
      expect.stringContaining('totes:captureMemoryMiB 3000 is not a Fargate size'),
      expect.stringContaining('totes:logRetentionDays must be one of'),
      expect.stringContaining('totes:slot'),
    ]);
  });

  it('needs the connection secret for an existing warehouse', () => {
    expect(problems({ 'totes:warehouse': 'existing' })).toEqual([
      expect.stringContaining('needs totes:warehouseSecretArn'),
    ]);
    const arn = 'arn:aws:secretsmanager:eu-west-2:123456789012:secret:totes/warehouse-AbCdEf';
    expect(read({ 'totes:warehouse': 'existing', 'totes:warehouseSecretArn': arn }).warehouse).toEqual({
      mode: 'existing',
      secretArn: arn,
      cidr: '0.0.0.0/0',
      port: 5432,
    });
  });

  it('needs an account and region to look up an existing VPC', () => {
    expect(problems({ 'totes:vpcId': 'vpc-0123abcd' })).toEqual([
      expect.stringContaining('needs an account and region'),
    ]);
    const config = read(
      { 'totes:vpcId': 'vpc-0123abcd' },
      { CDK_DEFAULT_ACCOUNT: '123456789012', CDK_DEFAULT_REGION: 'eu-west-2' },
    );
    expect(config.env).toEqual({ account: '123456789012', region: 'eu-west-2' });
  });

  it('warns about wide-open network settings and a missing alarm address', () => {
    expect(configWarnings(read({}))).toEqual([
      expect.stringContaining('totes:sourceCidr'),
      expect.stringContaining('totes:alarmEmail'),
      expect.stringContaining('capture is off'),
    ]);
    expect(
      configWarnings(
        read({
          'totes:sourceCidr': '10.1.0.0/16',
          'totes:alarmEmail': 'data@example.com',
          'totes:captureDesiredCount': '1',
        }),
      ),
    ).toEqual([]);
  });

  it('has two freshness modes: fast buffers nothing and takes small sizes; default keeps the partitioning minimums', () => {
    expect(read({}).firehose).toEqual({ freshness: 'default', bufferIntervalSeconds: 60, bufferSizeMiB: 64 });
    expect(read({ 'totes:freshness': 'fast', 'totes:firehoseBufferSizeMiB': 1 }).firehose).toEqual({
      freshness: 'fast',
      bufferIntervalSeconds: 0,
      bufferSizeMiB: 1,
    });
    expect(() => read({ 'totes:firehoseBufferSizeMiB': 1 })).toThrow(/dynamic-partitioning minimum/);
    expect(() => read({ 'totes:freshness': 'fastest' })).toThrow(
      /totes:freshness must be one of default, fast/,
    );
    // Transform splits fast mode's mixed objects (processors/transform/fast-mode.test.ts): no warning.
    expect(configWarnings(read({ 'totes:freshness': 'fast' }))).toEqual(configWarnings(read({})));
  });

  it('runs capture by default only once a source secret is named (or when told to)', () => {
    const arn = 'arn:aws:secretsmanager:eu-west-2:123456789012:secret:totes/source-AbCdEf';

    expect(read({}).capture.desiredCount).toBe(0);
    expect(read({ 'totes:sourceSecretArn': arn }).capture.desiredCount).toBe(1);
    expect(read({ 'totes:sourceSecretArn': arn, 'totes:captureDesiredCount': 0 }).capture.desiredCount).toBe(
      0,
    );
    expect(read({ 'totes:captureDesiredCount': '1' }).capture.desiredCount).toBe(1);
    expect(() => read({ 'totes:captureDesiredCount': 2 })).toThrow(
      /captureDesiredCount must be auto, 0 or 1/,
    );
  });
});

describe('defaults kept in step', () => {
  it('cdk.json carries exactly the defaults config.ts applies', () => {
    const cdkJson = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'cdk.json'), 'utf8'));
    const totesKeys = Object.fromEntries(
      Object.entries(cdkJson.context).filter(([k]) => k.startsWith('totes:')),
    );

    expect(totesKeys).toEqual(CONTEXT_DEFAULTS);
    expect(cdkJson.app).toBe('npx tsx infra/bin/totes.ts');
  });

  it('names the same slot, publication and heartbeat as capture does on its own', () => {
    const config = read({});

    expect(config.capture.slot).toBe(CAPTURE_DEFAULTS.slot);
    expect(config.capture.publication).toBe(CAPTURE_DEFAULTS.publication);
    expect(config.capture.heartbeatIntervalMs).toBe(CAPTURE_DEFAULTS.heartbeatIntervalMs);
  });

  it('names objects as the local delivery stream does', () => {
    expect(INGESTION_FILE_EXTENSION).toBe(DELIVERY_STREAM_DEFAULTS.fileExtension);
  });

  it('alarms on EMF metrics the handlers actually publish, under the same namespace and stages', () => {
    // A tripwire, not a proof: the names must appear in the handler sources as string literals.
    const source = (stage: string) =>
      fs.readFileSync(path.join(__dirname, '..', 'processors', stage, 'create-handler.ts'), 'utf8');

    expect(METRIC_NAMESPACE).toBe(METRICS_NAMESPACE);
    for (const stage of [STAGES.transform, STAGES.load]) {
      expect(source(stage)).toContain(`stage: '${stage}'`);
      expect(source(stage)).toContain(`'${EMF_METRICS.objectsQuarantined}'`);
    }
    expect(source(STAGES.transform)).toContain(`'${EMF_METRICS.changesRejected}'`);
    expect(source(STAGES.load)).toContain(`'${EMF_METRICS.warehouseFreshness}'`);
  });
});
