import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Client } from 'pg';
import { encodeChangeBatch } from '../core/change-event';
import { INGESTION_PREFIX } from '../core/csv-codec';
import { changeBatchFactory, changeFactory } from '../core/csv-codec.fixtures';
import { evaluatePrefix } from '../local/delivery-stream-prefix';
import { INGESTION_BUCKET, PROCESSED_BUCKET } from '../local/local-stack';
import { listObjectsSince, s3ClientFor, startS3rver, type LocalS3 } from '../local/s3rver';
import { migrateWarehouse } from '../processors/load/migrate';
import { s3EventFactory, sqsEventFactory } from '../test/support/s3-events';
import { createTestDatabase } from '../test/support/pg';
import { EMF_METRICS, LOG_METRICS, METRIC_NAMESPACE } from './pipeline-metrics';
import { matchesJsonFilter } from './test-support/filter-pattern';
import { logicalId, synthTotes, type SynthesizedTotes } from './test-support/synth';

/**
 * What deploys is what was tested: the functions' bundles exactly as the CDK asset build makes them
 * (`cdk synth`: esbuild, minified, the SDK bundled, migrations copied beside), run one after the
 * other through a change's whole path — Firehose record transformation, transform, load from an SQS
 * message — each in a process of its own with the environment its function gets, against s3rver and
 * a real warehouse. The AWS SDK inside the bundles finds s3rver through AWS_ENDPOINT_URL_S3 (an IP
 * address makes it address buckets by path, as s3rver wants).
 */

const run = promisify(execFile);
const INVOKE = path.join(__dirname, 'test-support', 'invoke-bundle.ts');

let synth: SynthesizedTotes;
let s3: LocalS3;
let client: S3Client;
let warehouseUrl: string;

beforeAll(async () => {
  // Bundling on, as `cdk synth` does it (synthTotes skips it by default).
  synth = synthTotes({ 'aws:cdk:bundling-stacks': ['**'] });
  s3 = await startS3rver({
    dataDir: fs.mkdtempSync(path.join(synth.outdir, 's3-')),
    buckets: [INGESTION_BUCKET, PROCESSED_BUCKET],
  });
  client = s3ClientFor(s3.endpoint);
  warehouseUrl = await createTestDatabase('bundles');
  const c = new Client({ connectionString: warehouseUrl });
  await c.connect();
  await migrateWarehouse(c).finally(() => c.end());
}, 240_000);
afterAll(async () => {
  client?.destroy();
  await s3?.stop();
  synth?.cleanup();
});

/** The directory of a function's bundle in cdk.out, from its template's code location. */
function bundleOf(prefix: string): string {
  const id = logicalId(synth.pipeline, 'AWS::Lambda::Function', `${prefix}Function`);
  const key = synth.pipeline.findResources('AWS::Lambda::Function')[id].Properties.Code.S3Key as string;
  return path.join(synth.outdir, `asset.${key.replace(/\.zip$/, '')}`);
}

/** Every line the bundles wrote, by stream: EMF documents on stdout, Powertools' log lines. */
const emitted: { prefix: string; stream: 'stdout' | 'stderr'; line: string }[] = [];

async function invoke(prefix: string, event: unknown, env: Record<string, string>): Promise<unknown> {
  const endpoint = new URL(s3.endpoint);
  const child = run(process.execPath, ['--import', 'tsx', INVOKE, path.join(bundleOf(prefix), 'index.js')], {
    env: {
      PATH: process.env.PATH,
      AWS_LAMBDA_FUNCTION_NAME: `totes-${prefix}`,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${endpoint.port}`,
      LOG_LEVEL: 'info',
      NODE_OPTIONS: '--enable-source-maps',
      ...env,
    },
    timeout: 60_000,
  });
  child.child.stdin!.end(JSON.stringify(event));
  const { stdout, stderr } = await child;
  for (const [stream, text] of [
    ['stdout', stdout.slice(0, stdout.lastIndexOf('@@reply@@'))],
    ['stderr', stderr],
  ] as const)
    for (const line of text.split('\n').filter((l) => l.trim() !== ''))
      emitted.push({ prefix, stream, line });
  const reply = JSON.parse(stdout.slice(stdout.lastIndexOf('@@reply@@') + '@@reply@@'.length)) as {
    ok: boolean;
    result?: unknown;
    error?: string;
  };
  if (!reply.ok) throw new Error(`${prefix} bundle failed: ${reply.error}`);
  return reply.result;
}

it('carries a change through the bundled firehose-transform, transform and load functions', async () => {
  // Prepare: one change batch as capture puts it on the stream.
  const batch = changeBatchFactory({
    table: 'currency',
    columns: [
      { name: 'currency_id', type: 'int4', key: true },
      { name: 'currency_code', type: 'text', key: false },
    ],
    changes: [changeFactory({ values: ['7', 'EUR'] })],
  });
  const arrivalMs = Date.UTC(2025, 1, 28, 9, 15, 0);
  expect(fs.readdirSync(bundleOf('Migrate'))).toContain('migrations');

  // Act 1: Firehose's record transformation, as Firehose invokes it.
  const transformed = (await invoke(
    'FirehoseTransform',
    {
      invocationId: 'inv-1',
      deliveryStreamArn: 'arn:aws:firehose:us-east-1:000000000000:deliverystream/totes',
      sourceKinesisStreamArn: 'arn:aws:kinesis:us-east-1:000000000000:stream/totes',
      region: 'us-east-1',
      records: [
        {
          recordId: 'r1',
          approximateArrivalTimestamp: arrivalMs,
          data: encodeChangeBatch(batch).toString('base64'),
          kinesisRecordMetadata: {
            shardId: 'shardId-000000000000',
            partitionKey: 'currency:7',
            approximateArrivalTimestamp: arrivalMs,
            sequenceNumber: '49590338271490256608559692538361571095921575989136588898',
            subsequenceNumber: 0,
          },
        },
      ],
    },
    { INGESTION_BUCKET },
  )) as { records: { result: string; data: string; metadata: { partitionKeys: Record<string, string> } }[] };
  expect(transformed.records[0].result).toBe('Ok');

  // …and Firehose writes the object where its prefix says.
  const key = `${evaluatePrefix(INGESTION_PREFIX, {
    timestampMs: arrivalMs,
    partitionKeys: transformed.records[0].metadata.partitionKeys,
  })}totes-1-2025-02-28-09-16-00-bundle.csv`;
  await client.send(
    new PutObjectCommand({
      Bucket: INGESTION_BUCKET,
      Key: key,
      Body: Buffer.from(transformed.records[0].data, 'base64'),
    }),
  );

  // Act 2: transform, as S3 invokes it.
  const report = (await invoke('Transform', s3EventFactory({ bucket: INGESTION_BUCKET, key }), {
    PROCESSED_BUCKET,
  })) as { objects: { status: string; outputKey: string }[] };
  expect(report.objects).toEqual([expect.objectContaining({ status: 'written' })]);
  const [parquet] = await listObjectsSince(client, PROCESSED_BUCKET, new Date(0));
  expect(parquet.key).toBe(report.objects[0].outputKey);

  // Act 3: load, from the queue's event source mapping.
  const loaded = await invoke(
    'Load',
    sqsEventFactory([s3EventFactory({ bucket: PROCESSED_BUCKET, key: parquet.key })]),
    { WAREHOUSE_URL: warehouseUrl },
  );

  // Assess: a clean partial batch response, and the row in the warehouse.
  expect(loaded).toEqual({ batchItemFailures: [] });
  const c = new Client({ connectionString: warehouseUrl });
  await c.connect();
  try {
    const { rows } = await c.query('SELECT currency_id, currency_code FROM dim_currency');
    expect(rows).toEqual([expect.objectContaining({ currency_id: 7, currency_code: 'EUR' })]);
  } finally {
    await c.end();
  }
}, 180_000);

/** The metrics alarms read: a metric of their own, or each metric of their math expression. */
function alarmMetrics(): {
  alarm: string;
  name: string;
  namespace: string;
  dimensions: Record<string, string>;
}[] {
  const out = [];
  for (const [alarm, r] of Object.entries(synth.pipeline.findResources('AWS::CloudWatch::Alarm'))) {
    const p = r.Properties;
    const stats = p.MetricName
      ? [{ MetricName: p.MetricName, Namespace: p.Namespace, Dimensions: p.Dimensions }]
      : (p.Metrics ?? []).flatMap((m: { MetricStat?: { Metric: unknown } }) =>
          m.MetricStat ? [m.MetricStat.Metric] : [],
        );
    for (const m of stats as {
      MetricName: string;
      Namespace: string;
      Dimensions?: { Name: string; Value: unknown }[];
    }[])
      out.push({
        alarm,
        name: m.MetricName,
        namespace: m.Namespace,
        dimensions: Object.fromEntries((m.Dimensions ?? []).map((d) => [d.Name, d.Value as string])),
      });
  }
  return out;
}

it("the alarms read what the bundled functions emit: Powertools' EMF documents and log lines", async () => {
  // Prepare: the path of a change ran above; now a record Firehose's transformation must refuse.
  const failed = (await invoke(
    'FirehoseTransform',
    {
      invocationId: 'inv-2',
      deliveryStreamArn: 'arn:aws:firehose:us-east-1:000000000000:deliverystream/totes',
      sourceKinesisStreamArn: 'arn:aws:kinesis:us-east-1:000000000000:stream/totes',
      region: 'us-east-1',
      records: [
        {
          recordId: 'bad',
          approximateArrivalTimestamp: Date.now(),
          data: 'not base64 at all!',
          kinesisRecordMetadata: {
            shardId: 'shardId-000000000000',
            partitionKey: 'currency:8',
            approximateArrivalTimestamp: Date.now(),
            sequenceNumber: '49590338271490256608559692538361571095921575989136588899',
            subsequenceNumber: 0,
          },
        },
      ],
    },
    { INGESTION_BUCKET },
  )) as { records: { result: string }[] };
  expect(failed.records[0].result).toBe('ProcessingFailed');

  // Assess 1: every alarm on a metric of the functions that ran finds it in an emitted EMF document
  // — same namespace, a dimension set of exactly the alarm's dimension names, the same values.
  const documents = emitted
    .filter((e) => e.stream === 'stdout' && e.line.startsWith('{"_aws"'))
    .map(
      (e) =>
        JSON.parse(e.line) as Record<string, unknown> & {
          _aws: {
            CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string }[] }[];
          };
        },
    );
  const ran = new Set(['firehose-transform', 'transform', 'load']);
  const read = alarmMetrics().filter((m) => m.namespace === METRIC_NAMESPACE && ran.has(m.dimensions.Stage));
  expect(read.map((m) => `${m.name} ${m.dimensions.Stage}`)).toEqual(
    expect.arrayContaining([
      `${EMF_METRICS.objectsQuarantined} transform`,
      `${EMF_METRICS.objectsQuarantined} load`,
      `${EMF_METRICS.changesRejected} transform`,
      `${EMF_METRICS.warehouseFreshness} load`,
    ]),
  );
  for (const m of read) {
    const names = Object.keys(m.dimensions).sort();
    const found = documents.some(
      (d) =>
        d._aws.CloudWatchMetrics.some(
          (c) =>
            c.Namespace === m.namespace &&
            c.Metrics.some((x) => x.Name === m.name) &&
            c.Dimensions.some((set) => [...set].sort().join() === names.join()),
        ) && Object.entries(m.dimensions).every(([k, v]) => d[k] === v),
    );
    expect({ alarm: m.alarm, metric: m.name, found }).toEqual({
      alarm: m.alarm,
      metric: m.name,
      found: true,
    });
  }

  // Assess 2: the log-based metric counts the error line firehose-transform wrote for the refused
  // record, and none of the other lines the bundles wrote.
  const filters = Object.values(synth.pipeline.findResources('AWS::Logs::MetricFilter')).filter(
    (f) => f.Properties.MetricTransformations[0].MetricName === LOG_METRICS.recordsFailedTransformation,
  );
  expect(filters).toHaveLength(1);
  const pattern = filters[0].Properties.FilterPattern as string;
  const logLines = emitted.filter((e) => e.stream === 'stderr' || !e.line.startsWith('{"_aws"'));
  const counted = logLines.filter((e) => matchesJsonFilter(pattern, e.line));
  expect(counted).toEqual([expect.objectContaining({ prefix: 'FirehoseTransform', stream: 'stderr' })]);
  expect(JSON.parse(counted[0].line)).toMatchObject({ level: 'ERROR', service: 'firehose-transform' });
  // Powertools' INFO lines were written too (LOG_LEVEL=info), and are not counted.
  const levelOf = (line: string) => {
    try {
      return (JSON.parse(line) as { level?: unknown }).level;
    } catch {
      return undefined; // not a log line (a Node warning, say)
    }
  };
  expect(logLines.some((e) => levelOf(e.line) === 'INFO')).toBe(true);
}, 60_000);
