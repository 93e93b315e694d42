import { parse } from 'csv-parse/sync';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { ChangeBatcher, DEFAULT_BATCHER_LIMITS } from '../capture/change-batcher';
import {
  decodeChangeBatch,
  type Change,
  type ChangeBatch,
  type ChangeOp,
  type Column,
} from '../core/change-event';
import {
  CsvObjectDecoder,
  encodeChangeBatchAsCsv,
  encodeChangeBatchAsCsvWithStringify,
  parseCsvRecords,
  schemaObjectFor,
  type SchemaObject,
} from '../core/csv-codec';
import { toWarehouseRows } from '../core/star-mapping';
import type { TotesysTable } from '../core/totesys-tables';
import type { WarehouseRow, WarehouseTableName } from '../core/warehouse-model';
import { createHandler } from '../processors/firehose-transform/create-handler';
import { decodeRecordData } from '../processors/firehose-transform/decode-record';
import type { FirehoseTransformationEvent } from '../processors/firehose-transform/firehose-types';
import { openParquetWriter } from '../processors/shared/parquet-codec';
import { metricsFor } from '../processors/shared/metrics';
import { createTransformHandler } from '../processors/transform/create-handler';
import { resolveOversizedChanges } from '../processors/transform/oversized-changes';
import { s3EventFactory } from '../test/support/s3-events';
import { benchArgsOrExit, positiveInt } from './options';
import { DEFAULT_EXPORT_DIR, readExportTable } from './totesys-export';
import { median, timed, type Timing } from './timing';

/**
 * `npm run bench:transform`: CPU per change of the two stages between Kinesis and the processed
 * bucket, in-process and without S3, on Kinesis records built the way capture builds them:
 *
 * - **firehose**: the record-transformation handler (processors/firehose-transform) on Firehose
 *   events of capture's records (JSON change batch → CSV lines, base64 both ways), against its floor
 *   in the same run: base64 decoding plus a bare `JSON.parse` of the same records. Its parts are
 *   timed on their own too: `decodeRecordData` (parse + validation) and `encodeChangeBatchAsCsv`.
 * - **transform**: the transform's per-object path (processors/transform `streamToParquet` minus
 *   S3): the CSV object in 64 KiB chunks through `CsvObjectDecoder`, the star mapping and the
 *   Parquet writer; and each of the three alone (decode; mapping of the decoded changes; encoding
 *   of the mapped rows), against a bare csv-parse of the same CSV (no casting: it cannot tell NULL
 *   from '') and the codec's own `parseCsvRecords` alone.
 *
 * The records: the totesys export's order tables (sales and purchase orders, transactions,
 * payments) `--copies` times over with shifted ids, as WAL changes (4 in 5 inserts, 1 in 5
 * updates) in transactions of 50, added to capture's own `ChangeBatcher` (256 KiB / 2,000-change
 * records). The CSV objects are the handler's output concatenated per table, as Firehose's dynamic
 * partitioning writes them.
 *
 * Three `before:` rows time, in the same run and on the same input, the code each step replaced and
 * keeps as its reference: zod decoding (`decodeChangeBatch`), the csv-stringify encoder, and the
 * Parquet library's own shredding.
 *
 * One warm-up round, then `--rounds` rounds; medians of this process' CPU time (user + system,
 * `process.cpuUsage`) and of wall time, per change. On a shared machine the CPU figure is the
 * robust one. Options: --rounds N (5), --copies N (4), --json FILE.
 */

const TABLES: readonly TotesysTable[] = ['sales_order', 'purchase_order', 'transaction', 'payment'];
/** Id columns a copy shifts (bench/totesys-export.ts does the same for the dashboard bench). */
const SHIFTED: Partial<Record<TotesysTable, readonly string[]>> = {
  sales_order: ['sales_order_id'],
  purchase_order: ['purchase_order_id'],
  transaction: ['transaction_id', 'sales_order_id', 'purchase_order_id'],
  payment: ['payment_id', 'transaction_id'],
};
const ID_SHIFT = 1_000_000;
const TXN_CHANGES = 50;
const CHUNK_BYTES = 64 * 1024;
/** Firehose invokes the transformation with up to 6 MB; capture's records are up to 256 KiB. */
const EVENT_BYTES = 3 * 1024 * 1024;

/** Source type names as pgoutput sends them (totesys.md §1); only the fingerprint depends on them. */
function typeOf(name: string): string {
  if (name.endsWith('_id') || name === 'units_sold' || name === 'item_quantity') return 'int4';
  if (name === 'created_at' || name === 'last_updated') return 'timestamp';
  if (name.endsWith('_price') || name === 'payment_amount') return 'numeric';
  if (name === 'paid') return 'bool';
  return 'varchar';
}

export interface Workload {
  records: Buffer[];
  events: FirehoseTransformationEvent[];
  changes: number;
  byTable: Map<TotesysTable, { columns: Column[]; schema: SchemaObject }>;
}

/** The workload; `maxChangesPerRecord` below capture's 2,000 gives the smaller records of a live stream. */
export function buildWorkload(copies: number, maxChangesPerRecord?: number): Workload {
  const batcher = new ChangeBatcher({
    ...DEFAULT_BATCHER_LIMITS,
    maxChangesPerRecord: maxChangesPerRecord ?? DEFAULT_BATCHER_LIMITS.maxChangesPerRecord,
  });
  batcher.epoch = 1_764_600_000_000;
  const sources = TABLES.map((table) => {
    const { columns: names, rows } = readExportTable(DEFAULT_EXPORT_DIR, table);
    const columns = names.map((name, i) => ({ name, type: typeOf(name), key: i === 0 }));
    const shift = (SHIFTED[table] ?? []).map((c) => names.indexOf(c));
    return { table, columns, rows, shift };
  });
  const byTable = new Map(
    sources.map((s) => [
      s.table,
      {
        columns: s.columns,
        schema: schemaObjectFor({ schema: 'public', table: s.table, columns: s.columns }),
      },
    ]),
  );
  let changes = 0;
  let lsn = 0x16b3748;
  const longest = Math.max(...sources.map((s) => s.rows.length));
  for (let copy = 0; copy < copies; copy += 1)
    // Round-robin over the tables, as a business writes them: capture keeps a batch per table.
    for (let r = 0; r < longest; r += 1)
      for (const { table, columns, rows, shift } of sources) {
        if (r >= rows.length) continue;
        const values = rows[r].map((v, i) =>
          copy > 0 && v !== null && shift.includes(i) ? String(Number(v) + copy * ID_SHIFT) : v,
        );
        if (changes % TXN_CHANGES === 0) lsn += 0x1a0;
        const op: ChangeOp = changes % 5 === 4 ? 'update' : 'insert';
        const micros = String(changes % 1_000_000).padStart(6, '0');
        const change: Change = {
          op,
          lsn: `0/${lsn.toString(16).toUpperCase()}`,
          seq: changes % TXN_CHANGES,
          ts: `2026-12-01T12:${String(Math.floor(changes / 60_000) % 60).padStart(2, '0')}:00.${micros}Z`,
          values,
        };
        batcher.add('public', table, columns, change);
        changes += 1;
      }
  const records = batcher.drain().map((r) => r.data);
  const events: FirehoseTransformationEvent[] = [];
  let current: FirehoseTransformationEvent | undefined;
  let bytes = 0;
  for (const [i, data] of records.entries()) {
    const encoded = data.toString('base64');
    if (!current || bytes + encoded.length > EVENT_BYTES) {
      current = {
        invocationId: `bench-${events.length}`,
        deliveryStreamArn: 'arn:aws:firehose:eu-west-2:000000000000:deliverystream/bench',
        region: 'eu-west-2',
        records: [],
      };
      events.push(current);
      bytes = 0;
    }
    current.records.push({
      recordId: `r${i}`,
      approximateArrivalTimestamp: 1_764_600_000_000,
      data: encoded,
    });
    bytes += encoded.length;
  }
  return { records, events, changes, byTable };
}

/** A Writable that keeps the Parquet bytes, as the transform's sink does. */
function collector(): { sink: Writable; size: () => number } {
  const out: Buffer[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      out.push(Buffer.from(chunk));
      done();
    },
  });
  return { sink, size: () => Buffer.concat(out).length };
}

function* chunksOf(bytes: Buffer): Generator<Buffer> {
  for (let at = 0; at < bytes.length; at += CHUNK_BYTES) yield bytes.subarray(at, at + CHUNK_BYTES);
}

interface TableObject {
  table: TotesysTable;
  schema: SchemaObject;
  csv: Buffer;
}

function decodeAll(o: TableObject): Change[] {
  const decoder = new CsvObjectDecoder(o.schema);
  const changes: Change[] = [];
  for (const chunk of chunksOf(o.csv)) for (const c of decoder.push(chunk)) changes.push(c);
  for (const c of decoder.end()) changes.push(c);
  return changes;
}

async function encodeRows(
  target: WarehouseTableName,
  rows: readonly WarehouseRow[],
  libraryShredding = false,
): Promise<number> {
  const { sink, size } = collector();
  const writer = await openParquetWriter(target, sink, { libraryShredding });
  await writer.appendRows(rows);
  await writer.close();
  return size();
}

/** processors/transform streamToParquet, minus S3: chunks → decoder → mapping → writer. */
async function streamObject(o: TableObject, target: WarehouseTableName): Promise<number> {
  const { sink, size } = collector();
  const writer = await openParquetWriter(target, sink);
  const decoder = new CsvObjectDecoder(o.schema);
  const take = async (decoded: Change[]) => {
    const batch = await resolveOversizedChanges(decoded, o.schema, {
      location: 's3://bench',
      read: () => Promise.reject(new Error('no pointers in the bench')),
      isMissing: () => false,
    });
    const mapped = toWarehouseRows(o.schema.table, o.schema.columns, batch);
    if (mapped.rejected.length) throw new Error(`${o.table}: ${mapped.rejected[0].reason}`);
    await writer.appendRows(mapped.rows);
  };
  for (const chunk of chunksOf(o.csv)) await take(decoder.push(chunk));
  await take(decoder.end());
  await writer.close();
  return size();
}

/** What a fast-mode delivery of the local stack holds at 10k changes/s (bench:pipeline: ~1.1 MiB). */
const MIXED_OBJECT_BYTES = 1024 * 1024;

/**
 * The Firehose handler's fast-mode output (layout record, then CSV lines, per record) concatenated
 * into objects of about MIXED_OBJECT_BYTES, as the local Firehose delivers them without dynamic
 * partitioning, with each layout's schema object: the ingestion bucket's contents, keyed.
 */
async function mixedObjects(events: readonly FirehoseTransformationEvent[]): Promise<Map<string, Buffer>> {
  const bucket = new Map<string, Buffer>();
  const s3 = {
    send: (command: { constructor: { name: string }; input: { Key?: string; Body?: unknown } }) => {
      const { Key = '', Body } = command.input;
      if (command.constructor.name === 'HeadObjectCommand')
        return bucket.has(Key)
          ? Promise.resolve({})
          : Promise.reject(Object.assign(new Error('NotFound'), { name: 'NotFound' }));
      if (typeof Body === 'string' || Buffer.isBuffer(Body)) bucket.set(Key, Buffer.from(Body));
      return Promise.resolve({});
    },
  };
  const handler = createHandler({ s3, bucket: 'bench', mixedObjects: true });
  let pending: Buffer[] = [];
  let bytes = 0;
  const flush = () => {
    if (!pending.length) return;
    bucket.set(`totesys/_mixed/2026/12/01/12/bench-${bucket.size}`, Buffer.concat(pending));
    pending = [];
    bytes = 0;
  };
  for (const event of events)
    for (const r of (await handler(event)).records) {
      const data = Buffer.from(r.data, 'base64');
      pending.push(data);
      bytes += data.length;
      if (bytes >= MIXED_OBJECT_BYTES) flush();
    }
  flush();
  return bucket;
}

/**
 * processors/transform's handler on every mixed object, over an S3 in memory: what transform does
 * per change in fast mode (split by layout, decode, map, Parquet per layout, manifest), minus HTTP.
 */
async function transformMixedObjects(ingestion: ReadonlyMap<string, Buffer>): Promise<number> {
  const processed = new Map<string, Buffer>();
  const missing = () => Object.assign(new Error('NotFound'), { name: 'NotFound' });
  const s3 = {
    send: (command: {
      constructor: { name: string };
      input: { Bucket?: string; Key?: string; Body?: unknown };
    }) => {
      const { Bucket, Key = '', Body } = command.input;
      const stored = Bucket === 'processed' ? processed.get(Key) : ingestion.get(Key);
      switch (command.constructor.name) {
        case 'HeadObjectCommand':
          return stored ? Promise.resolve({}) : Promise.reject(missing());
        case 'GetObjectCommand':
          if (!stored) return Promise.reject(missing());
          return Promise.resolve({
            Body: Object.assign([stored], {
              transformToByteArray: () => Promise.resolve(new Uint8Array(stored)),
              transformToString: () => Promise.resolve(stored.toString('utf8')),
            }),
          });
        case 'PutObjectCommand':
          processed.set(Key, Buffer.from(Body as string | Buffer));
          return Promise.resolve({});
        default:
          return Promise.reject(new Error(`bench S3: ${command.constructor.name}`));
      }
    },
  };
  const handler = createTransformHandler({
    s3: s3 as unknown as Parameters<typeof createTransformHandler>[0]['s3'],
    processedBucket: 'processed',
    metrics: metricsFor({ stage: 'transform', write: () => {} }),
  });
  let bytes = 0;
  for (const key of ingestion.keys()) {
    if (!key.startsWith('totesys/_mixed/')) continue;
    const report = await handler(s3EventFactory({ bucket: 'ingestion', key }));
    const parts = report.objects[0].parts ?? [];
    if (report.objects[0].status !== 'written' || parts.some((p) => p.status !== 'written'))
      throw new Error(`${key}: not transformed (${report.objects[0].status})`);
  }
  for (const [key, body] of processed) if (key.endsWith('.parquet')) bytes += body.length;
  return bytes;
}

const PHASES = [
  'firehose: handler (JSON batch → CSV lines)',
  '  floor: base64 decode + JSON.parse',
  '  part: record decoding (decodeRecordData)',
  '  before: decodeChangeBatch (zod)',
  '  part: encodeChangeBatchAsCsv',
  '  before: csv-stringify encoder',
  'transform: stream CSV → star rows → Parquet',
  '  part: CSV decode (CsvObjectDecoder)',
  '  part: star mapping (toWarehouseRows)',
  '  part: Parquet encoding',
  '  before: Parquet encoding, library shredding',
  '  floor: csv-parse, no casting',
  '  floor: parseCsvRecords alone',
  'transform, fast mode: mixed objects → Parquet per layout',
] as const;
type Phase = (typeof PHASES)[number];

async function main(): Promise<void> {
  const args = benchArgsOrExit(
    { rounds: { type: 'string' }, copies: { type: 'string' }, json: { type: 'string' } },
    'Usage: npm run bench:transform -- [--rounds 5] [--copies 4] [--json FILE]\n',
    (values) => ({
      rounds: positiveInt('rounds', values.rounds, 5),
      copies: positiveInt('copies', values.copies, 4),
      json: values.json,
    }),
  );
  const { rounds, copies } = args;
  const loadStart = os.loadavg()[0];
  const built = Date.now();
  const workload = buildWorkload(copies);
  const { changes } = workload;
  process.stderr.write(
    `${changes.toLocaleString('en')} changes in ${workload.records.length} records, ${workload.events.length} events (built in ${Date.now() - built} ms)\n`,
  );

  const handler = createHandler({ s3: { send: () => Promise.resolve({}) }, bucket: 'bench' });
  const outputs = new Map<TotesysTable, Buffer[]>();
  for (const event of workload.events) {
    const result = await handler(event);
    for (const r of result.records) {
      if (r.result !== 'Ok') throw new Error(`record ${r.recordId} failed transformation`);
      const table = r.metadata!.partitionKeys.table as TotesysTable;
      const list = outputs.get(table) ?? [];
      list.push(Buffer.from(r.data, 'base64'));
      outputs.set(table, list);
    }
  }
  const objects: TableObject[] = TABLES.map((table) => ({
    table,
    schema: workload.byTable.get(table)!.schema,
    csv: Buffer.concat(outputs.get(table) ?? []),
  }));
  const csvBytes = objects.reduce((n, o) => n + o.csv.length, 0);
  const jsonBytes = workload.records.reduce((n, r) => n + r.length, 0);
  const targets = new Map(
    objects.map((o) => [o.table, toWarehouseRows(o.table, o.schema.columns, []).table] as const),
  );

  const ingestion = await mixedObjects(workload.events);
  const mixedCount = [...ingestion.keys()].filter((k) => k.startsWith('totesys/_mixed/')).length;

  const samples = new Map<Phase, Timing[]>(PHASES.map((p) => [p, []]));
  let parquetBytes = 0;
  for (let round = 0; round <= rounds; round += 1) {
    const record = (phase: Phase, t: Timing) => {
      if (round > 0) samples.get(phase)!.push(t);
    };
    let t: Timing;
    [, t] = await timed(async () => {
      for (const event of workload.events) await handler(event);
    });
    record('firehose: handler (JSON batch → CSV lines)', t);
    [, t] = await timed(() => {
      for (const event of workload.events)
        for (const r of event.records) JSON.parse(Buffer.from(r.data, 'base64').toString('utf8'));
    });
    record('  floor: base64 decode + JSON.parse', t);
    let batches: ChangeBatch[] = [];
    [batches, t] = await timed(() => workload.records.map((r) => decodeRecordData(r)));
    record('  part: record decoding (decodeRecordData)', t);
    [, t] = await timed(() => workload.records.map((r) => decodeChangeBatch(r)));
    record('  before: decodeChangeBatch (zod)', t);
    [, t] = await timed(() => {
      for (const b of batches) encodeChangeBatchAsCsv(b);
    });
    record('  part: encodeChangeBatchAsCsv', t);
    [, t] = await timed(() => {
      for (const b of batches) encodeChangeBatchAsCsvWithStringify(b);
    });
    record('  before: csv-stringify encoder', t);
    batches = [];

    [parquetBytes, t] = await timed(async () => {
      let bytes = 0;
      for (const o of objects) bytes += await streamObject(o, targets.get(o.table)!);
      return bytes;
    });
    record('transform: stream CSV → star rows → Parquet', t);
    let decoded: Change[][] = [];
    [decoded, t] = await timed(() => objects.map(decodeAll));
    record('  part: CSV decode (CsvObjectDecoder)', t);
    let mapped: WarehouseRow[][] = [];
    [mapped, t] = await timed(() =>
      objects.map((o, i) => toWarehouseRows(o.table, o.schema.columns, decoded[i]).rows),
    );
    record('  part: star mapping (toWarehouseRows)', t);
    decoded = [];
    [, t] = await timed(async () => {
      for (const [i, o] of objects.entries()) await encodeRows(targets.get(o.table)!, mapped[i]);
    });
    record('  part: Parquet encoding', t);
    [, t] = await timed(async () => {
      for (const [i, o] of objects.entries()) await encodeRows(targets.get(o.table)!, mapped[i], true);
    });
    record('  before: Parquet encoding, library shredding', t);
    mapped = [];
    [, t] = await timed(() => {
      for (const o of objects) parse(o.csv, { relax_column_count: false });
    });
    record('  floor: csv-parse, no casting', t);
    [, t] = await timed(() => {
      for (const o of objects) parseCsvRecords(o.csv.toString('utf8'));
    });
    record('  floor: parseCsvRecords alone', t);
    [, t] = await timed(() => transformMixedObjects(ingestion));
    record('transform, fast mode: mixed objects → Parquet per layout', t);
    process.stderr.write(`round ${round}/${rounds}${round === 0 ? ' (warm-up)' : ''}\n`);
  }

  const loadEnd = os.loadavg()[0];
  const perChange = (ms: number) => (ms * 1000) / changes;
  const results = PHASES.map((phase) => {
    const ts = samples.get(phase)!;
    return {
      phase: phase.trim(),
      cpuUsPerChange: perChange(median(ts.map((x) => x.cpuMs))),
      wallUsPerChange: perChange(median(ts.map((x) => x.wallMs))),
      cpuUsRounds: ts.map((x) => Number(perChange(x.cpuMs).toFixed(2))),
    };
  });
  const lines = [
    `bench:transform — ${changes.toLocaleString('en')} changes (${TABLES.join(', ')}; --copies ${copies}), ${workload.records.length} Kinesis records (${(jsonBytes / 2 ** 20).toFixed(1)} MiB JSON), CSV ${(csvBytes / 2 ** 20).toFixed(1)} MiB, Parquet ${(parquetBytes / 2 ** 20).toFixed(1)} MiB`,
    `fast mode: the same changes as ${mixedCount} mixed objects of ~${MIXED_OBJECT_BYTES / 2 ** 20} MiB through the transform handler, S3 in memory`,
    `median of ${rounds} rounds after a warm-up; load average ${loadStart.toFixed(1)} → ${loadEnd.toFixed(1)} (${os.cpus().length} CPUs); Node ${process.versions.node}`,
    '',
    `${'phase'.padEnd(58)} ${'cpu µs/change'.padStart(14)} ${'wall µs/change'.padStart(15)}`,
    ...PHASES.map((phase, i) => {
      const r = results[i];
      return `${phase.padEnd(58)} ${r.cpuUsPerChange.toFixed(2).padStart(14)} ${r.wallUsPerChange.toFixed(2).padStart(15)}`;
    }),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  const out =
    args.json ??
    path.resolve(__dirname, 'results', `transform-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(
    out,
    `${JSON.stringify(
      {
        changes,
        copies,
        rounds,
        records: workload.records.length,
        jsonBytes,
        csvBytes,
        parquetBytes,
        loadStart,
        loadEnd,
        node: process.versions.node,
        results,
      },
      null,
      2,
    )}\n`,
  );
  process.stderr.write(`results: ${path.relative(process.cwd(), out)}\n`);
}

if (require.main === module)
  main().catch((e) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
