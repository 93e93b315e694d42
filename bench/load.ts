import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Pool } from 'pg';
import type { Change } from '../core/change-event';
import type { TotesysTable } from '../core/totesys-tables';
import { WAREHOUSE_TABLES, type WarehouseRow, type WarehouseTableName } from '../core/warehouse-model';
import { startEmbeddedCluster } from '../local/embedded-postgres';
import { s3ClientFor, startS3rver } from '../local/s3rver';
import { copyTextLine } from '../processors/load/copy-text';
import { createLoadHandler, LOAD_PART_ROWS, LOAD_V8_FLAGS } from '../processors/load/create-handler';
import { prepareBatch } from '../processors/load/load-batch';
import { migrateWarehouse } from '../processors/load/migrate';
import { metricsFor } from '../processors/shared/metrics';
import { encodeParquet, openParquetReader } from '../processors/shared/parquet-codec';
import { s3EventFactory } from '../test/support/s3-events';
import { startCpuProfile, type CpuProfile } from './cpu-profile';
import { timed, type Timing } from './timing';
import { benchArgsOrExit } from './options';
import { copyFrom } from './pg-copy';
import { postgresGroups, UsageWindow } from './process-sampler';
import { DEFAULT_EXPORT_DIR, readExportTable, starRowsOf } from './totesys-export';

/**
 * `npm run bench:load`: the load stage on its own, one Parquet object at a time, against a fresh
 * embedded Postgres 17 warehouse (migrated as `totes up` does, with pg_stat_statements) and s3rver,
 * both started here under the OS temp directory and removed at the end.
 *
 * Objects: the totesys export's sales orders, purchase orders and payments, repeated with their ids
 * shifted (a million per copy, or `--id-stride`) until an object holds `--sizes` rows, mapped to star
 * rows by the transform's own mapping as WAL inserts, and encoded by the transform's own Parquet
 * writer. By default no dimension row is loaded, so every transaction a payment refers to gets a
 * placeholder; `--transactions-first` loads them first (a payments object loading after its transactions).
 * Each object is loaded through the real load handler (an S3 notification for it, the object read
 * from s3rver, a pg Pool of one connection), then loaded again (a no-op: load_log). Per object:
 *
 * - **phases**, measured in separate passes over the same object, this process' CPU per row: the
 *   S3 GET, Parquet decoding (the reader's batches), row checks (prepareBatch); what is left of the
 *   handler's time is SQL (building statements, the pg client, and waiting for the warehouse);
 * - **load**: wall rows/s, this process' CPU µs/row, the warehouse backends' CPU µs/row (/proc,
 *   bench/process-sampler.ts), how many cores the two kept busy together (their CPU over the wall
 *   time), and the warehouse statements that took the most time;
 * - **again**: the second load of the same object, which must write nothing;
 * - **baselines**, same run, same rows: `COPY … FROM STDIN` (text) into a plain table with the fact's
 *   columns and no index (Postgres' own ingest rate), and into the fact table itself (its indexes;
 *   rolled back). The facts have no foreign keys since migration 007.
 *
 * Options: HELP below (`--help`).
 */

const BUCKET = 'processed';
const ID_SHIFT = 1_000_000;

/** Fact tables and the id columns a copy shifts (the fact's key, and ids unique per order). */
const FACTS: Partial<Record<TotesysTable, readonly string[]>> = {
  sales_order: ['sales_order_id'],
  purchase_order: ['purchase_order_id'],
  payment: ['payment_id', 'transaction_id'],
};

const HELP = `Usage: npm run bench:load -- [options]

The load stage on its own, one Parquet object at a time (the totesys export's facts, repeated to
each size), through the real load handler against a fresh embedded Postgres 17 warehouse and
s3rver; per object: rows/s, CPU per row in the load process and the warehouse, phases, and the COPY
baselines of the same rows. See bench/README.md.

Options:
  --sizes LIST        rows per object (default 10000,50000,200000)
  --tables LIST       facts' source tables (default sales_order,purchase_order,payment)
  --cpu-profile DIR   a V8 profile of each load, summarized
  --part-rows N       every object in parts of N rows (default: the handler's LOAD_PART_ROWS)
  --id-stride N       ids of each copy of the export N above the copy before (default 1000000;
                      the export's own count, 18239 for payments, makes them dense as a source's)
  --transactions-first
                      load the dim_transaction rows a payments object refers to before it (not
                      timed), so its placeholders find them; by default none exists
  --keep              keep the temp directory
  -h, --help          show this help
`;

/** The command line, checked before anything starts. */
const ARGS: Record<string, string | boolean | undefined> = benchArgsOrExit(
  {
    sizes: { type: 'string' },
    tables: { type: 'string' },
    'cpu-profile': { type: 'string' },
    'part-rows': { type: 'string' },
    'id-stride': { type: 'string' },
    'transactions-first': { type: 'boolean' },
    keep: { type: 'boolean' },
  },
  HELP,
  (values) => values,
);

function listOption(name: string, fallback: string): string[] {
  return (typeof ARGS[name] === 'string' ? ARGS[name] : fallback).split(',').filter(Boolean);
}

function stringOption(name: string): string | null {
  return typeof ARGS[name] === 'string' ? ARGS[name] : null;
}

/** `size` star rows of `table`'s fact: the export's rows, ids shifted past `base` by `stride` per copy. */
function factRows(
  table: TotesysTable,
  size: number,
  base: number,
  stride: number,
): { table: WarehouseTableName; rows: WarehouseRow[] } {
  const { columns, rows } = readExportTable(DEFAULT_EXPORT_DIR, table);
  const shifted = (FACTS[table] ?? []).map((c) => columns.indexOf(c));
  // A loop, not Math.max(...): a spread of rows × columns arguments overflows the stack on a larger export.
  let highest = -Infinity;
  for (const values of rows) for (const i of shifted) highest = Math.max(highest, Number(values[i] ?? 0));
  if (stride < highest)
    throw new Error(
      `--id-stride: ${stride} is below ${table}'s highest id ${highest}: copies would share ids`,
    );
  const changes: Change[] = [];
  for (let copy = 0; changes.length < size; copy += 1)
    for (const values of rows) {
      if (changes.length >= size) break;
      changes.push({
        op: 'insert',
        epoch: 1_764_600_000_000,
        lsn: `1/${(0x1000000 + changes.length * 0x80).toString(16).toUpperCase()}`,
        seq: changes.length,
        ts: '2025-02-28T09:15:02.123456Z',
        values: values.map((v, i) =>
          shifted.includes(i) && v !== null ? String(Number(v) + base + copy * stride) : v,
        ),
      });
    }
  return starRowsOf(table, columns, changes);
}

type Cost = Timing;

/**
 * `--transactions-first`: a real dim_transaction row (as a transactions object loads it) for each
 * transaction the payments refer to, committed, not analysed (autovacuum may not have come by).
 */
async function loadTransactions(warehouse: Client, rows: readonly WarehouseRow[]): Promise<number> {
  const ids = [...new Set(rows.map((r) => r.transaction_id as number))].sort((a, b) => a - b);
  const { rowCount } = await warehouse.query(
    `INSERT INTO "dim_transaction" ("transaction_id", "transaction_type", "_lsn", "_seq", "_commit_ts")
     SELECT id, 'SALE', '0/1', 0, now() FROM unnest($1::integer[]) AS id ORDER BY id`,
    [ids],
  );
  return rowCount ?? 0;
}

/** Runs `work` and measures the warehouse cluster's processes over it, by role. */
async function withWarehouseCpu<T>(
  dataDir: string,
  work: () => Promise<T>,
): Promise<[T, Cost, { backends: number; background: number }]> {
  const window = new UsageWindow(postgresGroups('warehouse', dataDir));
  const [result, cost] = await timed(work);
  const usage = window.close();
  const cpu = (role: string) => (usage.groups[`warehouse postgres: ${role}`]?.cpuSeconds ?? 0) * 1000;
  return [result, cost, { backends: cpu('backends'), background: cpu('background') }];
}

async function readObject(s3: S3Client, key: string): Promise<Buffer> {
  const response = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return Buffer.from(await response.Body!.transformToByteArray());
}

/** The columns a fact row is stored with, and one row's fields for COPY in that order. */
function copyColumns(table: WarehouseTableName): {
  columns: string[];
  fields: (row: WarehouseRow, seqShift: number) => unknown[];
} {
  const names = WAREHOUSE_TABLES[table].columns.map((c) => c.name);
  return {
    columns: [...names, '_epoch', '_lsn', '_seq', '_commit_ts', '_unchanged', '_row_hash', '_snapshot'],
    fields: (row, seqShift) => [
      ...names.map((n) => row[n]),
      row._epoch ?? 0,
      row._lsn,
      Number(row._seq) + seqShift,
      row._commit_ts,
      '{}',
      row._row_hash ?? null,
      row._op === 'snapshot',
    ],
  };
}

const quote = (name: string) => `"${name}"`;

/**
 * The V8 flags this process runs with: `npm run bench:load` passes the load function's own
 * (LOAD_V8_FLAGS, as infra sets them), so the figures are the Lambda's; say when they differ.
 */
function v8Flags(): string {
  const flags = process.execArgv.filter((a) => a.startsWith('--max-'));
  const asLambda = LOAD_V8_FLAGS.every((f) => flags.includes(f));
  return `${flags.join(' ') || 'default'}${asLambda ? ' (as the load function)' : ` (the load function has ${LOAD_V8_FLAGS.join(' ')})`}`;
}

async function topStatements(
  warehouse: Client,
  limit = 6,
): Promise<{ ms: number; calls: number; rows: number; query: string }[]> {
  const { rows } = await warehouse.query<{ query: string; calls: string; total: number; rows: string }>(
    `SELECT query, calls, total_exec_time AS total, rows FROM pg_stat_statements
      WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY total_exec_time DESC LIMIT $1`,
    [limit],
  );
  return rows.map((r) => ({
    ms: Math.round(r.total),
    calls: Number(r.calls),
    rows: Number(r.rows),
    query: r.query.replace(/\s+/g, ' ').slice(0, 90),
  }));
}

/** Self time per function (name, file) of a profile, the largest first. */
function topFunctions(profile: CpuProfile, limit = 14): { name: string; ms: number; share: number }[] {
  const self = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (deltas[i] ?? 0)));
  const byName = new Map<string, number>();
  let total = 0;
  for (const node of profile.nodes) {
    const us = self.get(node.id) ?? 0;
    const f = node.callFrame;
    // The profiler's own start (inspector `dispatch`, no script) is not the load's.
    if (
      f.functionName === '(idle)' ||
      f.functionName === '(program)' ||
      (f.functionName === 'dispatch' && !f.url)
    )
      continue;
    total += us;
    const where = f.url ? path.basename(f.url.replace(/^file:\/\//, '')) : '';
    const name = `${f.functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
    byName.set(name, (byName.get(name) ?? 0) + us);
  }
  return [...byName.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([name, us]) => ({ name, ms: Math.round(us / 1000), share: us / total }));
}

interface ObjectResult {
  table: WarehouseTableName;
  rows: number;
  parquetMiB: number;
  phases: { get: Cost; decode: Cost; check: Cost };
  load: {
    cost: Cost;
    warehouse: { backends: number; background: number };
    statements: Awaited<ReturnType<typeof topStatements>>;
    placeholders: number;
    /** `--transactions-first`: dim_transaction rows loaded before the object. */
    transactionsFirst: number;
    profile?: ReturnType<typeof topFunctions>;
  };
  again: { cost: Cost; warehouse: { backends: number; background: number }; status: string };
  copyPlain: { cost: Cost; warehouse: { backends: number; background: number } };
  copyFact: { cost: Cost; warehouse: { backends: number; background: number } };
}

async function main(): Promise<void> {
  const sizes = listOption('sizes', '10000,50000,200000').map(Number);
  const tables = listOption('tables', 'sales_order,purchase_order,payment') as TotesysTable[];
  for (const t of tables) if (!FACTS[t]) throw new Error(`--tables: ${t} is not a fact's source table`);
  const profileDir = stringOption('cpu-profile');
  const partRows = stringOption('part-rows');
  if (partRows !== null && !(Number(partRows) > 0)) throw new Error('--part-rows: a positive number of rows');
  const idStride = Number(stringOption('id-stride') ?? ID_SHIFT);
  // Objects are 50 million ids apart: a stride up to a million keeps them apart at any size here.
  if (!Number.isInteger(idStride) || idStride <= 0 || idStride > ID_SHIFT)
    throw new Error(`--id-stride: a positive integer up to ${ID_SHIFT}`);
  const transactionsFirst = ARGS['transactions-first'] === true;
  if (profileDir) fs.mkdirSync(profileDir, { recursive: true });
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-bench-load-'));
  fs.chmodSync(root, 0o755);
  const s3Server = await startS3rver({ dataDir: path.join(root, 's3'), buckets: [BUCKET] });
  const s3 = s3ClientFor(s3Server.endpoint);
  const cluster = await startEmbeddedCluster({
    dataDir: path.join(root, 'pg'),
    settings: { shared_preload_libraries: 'pg_stat_statements' },
  });
  // Interrupted (Ctrl-C, `timeout`): the warehouse and s3rver are stopped, not left running.
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`${signal}: stopping the warehouse and s3rver…\n`);
    void cluster
      .stop()
      .finally(() => s3Server.stop())
      .finally(() => {
        if (!ARGS.keep) fs.rmSync(root, { recursive: true, force: true });
        process.exit(130);
      });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const loadAverages = [os.loadavg()[0]];
  const results: ObjectResult[] = [];
  let pool: Pool | null = null;
  let warehouse: Client | null = null;
  try {
    const admin = new Client({ connectionString: cluster.url });
    await admin.connect();
    await admin.query('CREATE DATABASE bench_load');
    await admin.end();
    const url = cluster.urlFor('bench_load');
    warehouse = new Client({ connectionString: url });
    await warehouse.connect();
    await migrateWarehouse(warehouse);
    await warehouse.query('CREATE EXTENSION pg_stat_statements');
    pool = new Pool({ connectionString: url, max: 1 });
    // An idle connection's error (the cluster stopping) is reported by the next query, not thrown here.
    pool.on('error', (e) => process.stderr.write(`warehouse pool: ${e.message}\n`));
    const handler = createLoadHandler({
      s3,
      warehouse: pool,
      metrics: metricsFor({ stage: 'load', write: () => undefined }),
      ...(partRows !== null ? { partRows: Number(partRows) } : {}),
    });
    // One connection, held open: its backend is the one measured, not a fresh one per object.
    await (await pool.connect()).release();

    for (const [sizeIndex, size] of sizes.entries())
      for (const [tableIndex, source] of tables.entries()) {
        const base = (sizeIndex * tables.length + tableIndex + 1) * 50 * ID_SHIFT;
        const { table, rows } = factRows(source, size, base, idStride);
        const key = `bench/${table}/${size}.parquet`;
        const body = await encodeParquet(table, rows);
        await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
        process.stderr.write(
          `${table} ${size.toLocaleString('en')} rows (${(body.length / 2 ** 20).toFixed(1)} MiB)…\n`,
        );

        // Phases, each over the whole object, as the handler runs them (parts of LOAD_PART_ROWS).
        const [bytes, get] = await timed(() => readObject(s3, key));
        const [parts, decode] = await timed(async () => {
          const reader = await openParquetReader(bytes);
          const out: WarehouseRow[][] = [];
          for await (const part of reader.batches(LOAD_PART_ROWS)) out.push(part);
          await reader.close();
          return out;
        });
        const [, check] = await timed(async () => {
          let first = 0;
          for (const part of parts) {
            prepareBatch({ table, rows: part }, { firstRow: first });
            first += part.length;
          }
        });
        parts.length = 0;

        const transactions =
          transactionsFirst && table === 'fact_payment' ? await loadTransactions(warehouse, rows) : 0;

        // The load through the handler.
        await warehouse.query('SELECT pg_stat_statements_reset()');
        const event = s3EventFactory({ bucket: BUCKET, key, size: body.length });
        const stopProfile = profileDir ? await startCpuProfile() : null;
        const [report, loadCost, loadWarehouse] = await withWarehouseCpu(cluster.dataDir, () =>
          handler(event),
        );
        const profile = stopProfile ? await stopProfile() : null;
        if (profile)
          fs.writeFileSync(
            path.join(profileDir!, `load-${table}-${size}.cpuprofile`),
            JSON.stringify(profile),
          );
        const statements = await topStatements(warehouse);
        const outcome = report.objects[0];
        if (outcome.status !== 'loaded' || outcome.rows !== size)
          throw new Error(`${key}: ${outcome.status} ${outcome.rows} (${outcome.reason ?? ''})`);
        const count = async () =>
          Number((await warehouse!.query(`SELECT count(*) AS n FROM ${quote(table)}`)).rows[0].n);
        const loaded = await count();

        // The same object again: load_log makes it a no-op.
        const [again, againCost, againWarehouse] = await withWarehouseCpu(cluster.dataDir, () =>
          handler(event),
        );
        if (again.objects[0].status !== 'duplicate')
          throw new Error(`${key} again: ${again.objects[0].status}`);
        if ((await count()) !== loaded) throw new Error(`${key} again: rows changed`);

        // Baselines: COPY of the same rows, text built beforehand (not timed).
        const { columns, fields } = copyColumns(table);
        const text = (shift: number) => Buffer.from(rows.map((r) => copyTextLine(fields(r, shift))).join(''));
        const plain = `bench_copy_${table}`;
        await warehouse.query(
          `CREATE TABLE ${quote(plain)} AS SELECT ${columns.map(quote).join(', ')} FROM ${quote(table)} WITH NO DATA`,
        );
        const plainText = text(0);
        const [, copyPlain, copyPlainWarehouse] = await withWarehouseCpu(cluster.dataDir, () =>
          copyFrom(
            warehouse!,
            `COPY ${quote(plain)} (${columns.map(quote).join(', ')}) FROM STDIN`,
            plainText,
          ),
        );
        await warehouse.query(`DROP TABLE ${quote(plain)}`);
        // Into the fact itself, as other versions of the same keys (a shifted _seq), rolled back.
        const factText = text(1_000_000_000);
        await warehouse.query('BEGIN');
        const [, copyFact, copyFactWarehouse] = await withWarehouseCpu(cluster.dataDir, () =>
          copyFrom(
            warehouse!,
            `COPY ${quote(table)} (${columns.map(quote).join(', ')}) FROM STDIN`,
            factText,
          ),
        );
        await warehouse.query('ROLLBACK');

        loadAverages.push(os.loadavg()[0]);
        results.push({
          table,
          rows: size,
          parquetMiB: body.length / 2 ** 20,
          phases: { get, decode, check },
          load: {
            cost: loadCost,
            warehouse: loadWarehouse,
            statements,
            placeholders: outcome.load?.placeholdersInserted ?? 0,
            transactionsFirst: transactions,
            profile: profile ? topFunctions(profile) : undefined,
          },
          again: { cost: againCost, warehouse: againWarehouse, status: again.objects[0].status },
          copyPlain: { cost: copyPlain, warehouse: copyPlainWarehouse },
          copyFact: { cost: copyFact, warehouse: copyFactWarehouse },
        });
        process.stdout.write(`${describe(results.at(-1)!)}\n`);
      }
  } finally {
    await warehouse?.end();
    await pool?.end();
    s3.destroy();
    await cluster.stop();
    await s3Server.stop();
    if (!ARGS.keep) fs.rmSync(root, { recursive: true, force: true });
  }
  const file = path.join(os.tmpdir(), `bench-load-${Date.now()}.json`);
  fs.writeFileSync(file, JSON.stringify({ loadAverages, results }, null, 2));
  process.stdout.write(
    `${summary(results)}\nload average ${loadAverages.map((l) => l.toFixed(1)).join(' → ')} (2 cores); V8 flags ${v8Flags()}; JSON: ${file}\n`,
  );
}

const perRow = (ms: number, rows: number) => (rows ? (ms * 1000) / rows : 0);
/**
 * The load process' and the warehouse backends' CPU over the load's wall time: above 1, the two
 * worked at the same time (the next part prepared while the warehouse applies the current one);
 * below 1 on a busy machine, they also waited for a core.
 */
const busy = (r: ObjectResult) =>
  ((r.load.cost.cpuMs + r.load.warehouse.backends) / r.load.cost.wallMs).toFixed(2);
const rate = (ms: number, rows: number) => Math.round(rows / (ms / 1000));
const n = (v: number) => Math.round(v).toLocaleString('en');

/**
 * The load's CPU not in the phases. The phases are separate passes over the object, so on the first
 * object (V8 still compiling the decoder and the checks) they can cost more than the load itself.
 */
function restOfLoad(r: ObjectResult, us: (ms: number) => string): string {
  const rest = r.load.cost.cpuMs - r.phases.get.cpuMs - r.phases.decode.cpuMs - r.phases.check.cpuMs;
  return rest >= 0 ? us(rest) : 'n/a (the separate phase passes cost more: warm-up on the first object)';
}

function describe(r: ObjectResult): string {
  const us = (ms: number) => perRow(ms, r.rows).toFixed(1);
  const lines = [
    `${r.table} ${n(r.rows)} rows, ${r.parquetMiB.toFixed(1)} MiB, ${n(r.load.placeholders)} placeholders${r.load.transactionsFirst ? ` (${n(r.load.transactionsFirst)} transactions loaded first)` : ''}`,
    `  load      ${n(rate(r.load.cost.wallMs, r.rows)).padStart(8)} rows/s   load process ${us(r.load.cost.cpuMs)} µs/row   warehouse backends ${us(r.load.warehouse.backends)} µs/row (+ background ${us(r.load.warehouse.background)})   cores busy ${busy(r)}`,
    `  phases    get ${us(r.phases.get.cpuMs)} · decode ${us(r.phases.decode.cpuMs)} · check ${us(r.phases.check.cpuMs)} µs/row CPU; the rest of the load process: ${restOfLoad(r, us)}`,
    `  again     ${r.again.cost.wallMs.toFixed(0).padStart(8)} ms (${r.again.status})   load process ${us(r.again.cost.cpuMs)} µs/row   warehouse ${us(r.again.warehouse.backends)} µs/row`,
    `  COPY plain ${n(rate(r.copyPlain.cost.wallMs, r.rows)).padStart(7)} rows/s   warehouse ${us(r.copyPlain.warehouse.backends)} µs/row`,
    `  COPY fact  ${n(rate(r.copyFact.cost.wallMs, r.rows)).padStart(7)} rows/s   warehouse ${us(r.copyFact.warehouse.backends)} µs/row (indexes)`,
    '  top statements (ms, calls, rows):',
    ...r.load.statements.map(
      (s) =>
        `    ${String(s.ms).padStart(6)} ${String(s.calls).padStart(4)} ${String(s.rows).padStart(7)}  ${s.query}`,
    ),
  ];
  if (r.load.profile)
    lines.push(
      '  load process profile (self time):',
      ...r.load.profile.map((f) => `    ${(f.share * 100).toFixed(1).padStart(5)}%  ${f.name}`),
    );
  return lines.join('\n');
}

function summary(results: readonly ObjectResult[]): string {
  const header = `${'object'.padEnd(28)} ${'load rows/s'.padStart(11)} ${'proc µs/row'.padStart(11)} ${'wh µs/row'.padStart(9)} ${'decode'.padStart(6)} ${'check'.padStart(6)} ${'again ms'.padStart(8)} ${'COPY plain/s'.padStart(12)} ${'COPY fact/s'.padStart(11)} ${'× plain'.padStart(7)} ${'busy'.padStart(5)}`;
  return [
    '',
    'bench:load — per object (CPU µs per row; wall rows/s)',
    header,
    ...results.map((r) => {
      const us = (ms: number) => perRow(ms, r.rows).toFixed(1);
      return `${`${r.table} ${n(r.rows)}`.padEnd(28)} ${n(rate(r.load.cost.wallMs, r.rows)).padStart(11)} ${us(r.load.cost.cpuMs).padStart(11)} ${us(r.load.warehouse.backends).padStart(9)} ${us(r.phases.decode.cpuMs).padStart(6)} ${us(r.phases.check.cpuMs).padStart(6)} ${r.again.cost.wallMs.toFixed(0).padStart(8)} ${n(rate(r.copyPlain.cost.wallMs, r.rows)).padStart(12)} ${n(rate(r.copyFact.cost.wallMs, r.rows)).padStart(11)} ${(r.copyPlain.cost.wallMs / r.load.cost.wallMs).toFixed(2).padStart(7)} ${busy(r).padStart(5)}`;
    }),
  ].join('\n');
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
