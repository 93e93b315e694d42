import { PutObjectCommand } from '@aws-sdk/client-s3';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import type { Change, ChangeBatch } from '../core/change-event';
import {
  encodeChangeBatchAsCsv,
  encodeSchemaObject,
  schemaObjectFor,
  schemaObjectKey,
} from '../core/csv-codec';
import { SOURCE_LAYOUTS } from '../core/star-mapping.fixtures';
import { startEmbeddedCluster } from '../local/embedded-postgres';
import { s3ClientFor, startS3rver } from '../local/s3rver';
import { LOAD_V8_FLAGS } from '../processors/load/create-handler';
import { migrateWarehouse } from '../processors/load/migrate';
import { benchArgsOrExit, positiveNumber } from './options';
import { DEFAULT_EXPORT_DIR, readExportTable } from './totesys-export';

/**
 * `npm run bench:streaming`: transform and load of one large Firehose object (default 128 MiB of
 * CSV), each stage in a process of its own (bench/streaming-stage.ts) so its peak RSS is measured
 * alone. The object is the totesys export's payments, repeated with shifted ids, as WAL inserts
 * in 500-change batches (what Firehose concatenates). s3rver and an embedded Postgres 17
 * warehouse run in this process, under the OS temp directory, removed at the end.
 *
 * Options: HELP below (`--help`).
 */

const HELP = `Usage: npm run bench:streaming -- [options]

Transform and load of one large Firehose object (payments as WAL inserts), each stage in a process
of its own so its peak RSS is measured alone; s3rver and an embedded Postgres 17 warehouse under the
OS temp directory. See bench/README.md.

Options:
  --mib N         size of the CSV object in MiB (default 128)
  --heap-mib N    run the stages with --max-old-space-size=N, as a Lambda of that memory would
  --keep          keep the temp directory
  -h, --help      show this help
`;

const INGESTION = 'ingestion';
const PROCESSED = 'processed';
const BATCH = 500;

/** CSV of payments until `bytes`: the export's rows, ids shifted by a million per round. */
function paymentsCsv(bytes: number): {
  csv: Buffer;
  changes: number;
  schema: ReturnType<typeof schemaObjectFor>;
} {
  const { columns, rows } = readExportTable(DEFAULT_EXPORT_DIR, 'payment');
  const layout = columns.map((name) => SOURCE_LAYOUTS.payment.find((c) => c.name === name)!);
  const idColumns = ['payment_id', 'transaction_id'].map((c) => columns.indexOf(c));
  const pieces: Buffer[] = [];
  let size = 0;
  let seq = 0;
  let schema: ReturnType<typeof schemaObjectFor> | null = null;
  for (let round = 0; size < bytes; round += 1)
    for (let start = 0; start < rows.length && size < bytes; start += BATCH) {
      const changes: Change[] = rows.slice(start, start + BATCH).map((values) => ({
        op: 'insert',
        lsn: `0/${(0x1000000 + seq * 0x80).toString(16).toUpperCase()}`,
        seq: seq++,
        ts: '2025-02-28T09:15:02.123456Z',
        values: values.map((v, i) =>
          idColumns.includes(i) && v !== null ? String(Number(v) + round * 1_000_000) : v,
        ),
      }));
      const batch: ChangeBatch = {
        v: 1,
        schema: 'public',
        table: 'payment',
        columns: layout,
        epoch: 1_764_600_000_000,
        changes,
      };
      schema ??= schemaObjectFor(batch);
      const piece = Buffer.from(encodeChangeBatchAsCsv(batch));
      pieces.push(piece);
      size += piece.length;
    }
  return { csv: Buffer.concat(pieces), changes: seq, schema: schema! };
}

function runStage(args: string[], heapMiB: number | null): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [
        ...(heapMiB ? [`--max-old-space-size=${heapMiB}`] : []),
        // The load runs with the V8 flags its function has in AWS.
        ...(args[0] === 'load' ? LOAD_V8_FLAGS : []),
        '--import',
        'tsx',
        path.join(__dirname, 'streaming-stage.ts'),
        ...args,
      ],
      { maxBuffer: 64 * 2 ** 20 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${args[0]} failed: ${stderr || error.message}`));
        else resolve(JSON.parse(stdout.trim().split('\n').at(-1)!));
      },
    );
  });
}

const mib = (n: number) => `${n.toFixed(0)} MiB`;

async function main(): Promise<void> {
  const { targetMiB, heapMiB, keep } = benchArgsOrExit(
    { mib: { type: 'string' }, 'heap-mib': { type: 'string' }, keep: { type: 'boolean' } },
    HELP,
    (values) => ({
      targetMiB: positiveNumber('mib', values.mib, 128),
      // V8 grows its heap lazily up to ~2 GiB here before collecting hard; a Lambda of 512 MB caps
      // it. With --heap-mib the stages run with --max-old-space-size, as such a function would.
      heapMiB: values['heap-mib'] === undefined ? null : positiveNumber('heap-mib', values['heap-mib'], 0),
      keep: values.keep === true,
    }),
  );
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-bench-streaming-'));
  fs.chmodSync(root, 0o755);
  const s3 = await startS3rver({ dataDir: path.join(root, 's3'), buckets: [INGESTION, PROCESSED] });
  const client = s3ClientFor(s3.endpoint);
  const cluster = await startEmbeddedCluster({ dataDir: path.join(root, 'pg') });
  try {
    process.stderr.write(`generating ${targetMiB} MiB of CSV…\n`);
    const { csv, changes, schema } = paymentsCsv(targetMiB * 2 ** 20);
    const key = `totesys/payment/schema=${schema.fingerprint}/2025/02/28/09/bench-streaming-1`;
    await client.send(
      new PutObjectCommand({
        Bucket: INGESTION,
        Key: schemaObjectKey(schema.table, schema.fingerprint),
        Body: encodeSchemaObject(schema),
      }),
    );
    await client.send(new PutObjectCommand({ Bucket: INGESTION, Key: key, Body: csv }));
    const csvBytes = csv.length;
    process.stderr.write(`transform: ${changes.toLocaleString('en')} changes…\n`);
    const transform = await runStage(['transform', s3.endpoint, INGESTION, key, PROCESSED], heapMiB);
    const outcome = (transform.report as { objects: { outputKey: string; rows: number; status: string }[] })
      .objects[0];
    if (outcome.status !== 'written') throw new Error(`transform: ${JSON.stringify(outcome)}`);
    const parquetBytes = fs.statSync(
      path.join(root, 's3', PROCESSED, `${outcome.outputKey}._S3rver_object`),
    ).size;

    const admin = new Client({ connectionString: cluster.url });
    await admin.connect();
    await admin.query('CREATE DATABASE bench_streaming');
    await admin.end();
    const url = cluster.urlFor('bench_streaming');
    const warehouse = new Client({ connectionString: url });
    await warehouse.connect();
    await migrateWarehouse(warehouse);
    process.stderr.write(`load: ${outcome.rows.toLocaleString('en')} rows…\n`);
    const load = await runStage(['load', s3.endpoint, PROCESSED, outcome.outputKey, url], heapMiB);
    const loaded = (await warehouse.query('SELECT count(*)::int AS n FROM fact_payment')).rows[0].n;
    await warehouse.end();

    const line = (name: string, r: Record<string, unknown>) =>
      `  ${name.padEnd(10)} peak RSS ${mib(r.peakRssMiB as number).padStart(8)} (baseline ${mib(r.baselineRssMiB as number)})   ${(r.wallSeconds as number).toFixed(1).padStart(6)} s wall   ${(r.cpuSeconds as number).toFixed(1).padStart(6)} s CPU   ${((outcome.rows / (r.wallSeconds as number)) | 0).toLocaleString('en')} rows/s`;
    process.stdout.write(
      [
        `bench:streaming — one CSV object of ${(csvBytes / 2 ** 20).toFixed(1)} MiB: ${changes.toLocaleString('en')} payment inserts → ${outcome.rows.toLocaleString('en')} fact_payment rows, Parquet ${(parquetBytes / 2 ** 20).toFixed(1)} MiB; ${heapMiB ? `--max-old-space-size=${heapMiB}` : 'heap not capped'}; load average ${os.loadavg()[0].toFixed(1)}`,
        line('transform', transform),
        line('load', load),
        `  warehouse fact_payment rows: ${loaded.toLocaleString('en')}`,
        '',
      ].join('\n'),
    );
  } finally {
    client.destroy();
    await cluster.stop();
    await s3.stop();
    if (!keep) fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
