import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import readline from 'node:readline';
import { Worker } from 'node:worker_threads';
import { TOTESYS_TABLES } from '../core/totesys-tables';
import { silentLogger } from '../core/logger';
import { ChangeBatcher, type BatchRecord } from '../capture/change-batcher';
import { CompressingSink } from '../capture/compressing-sink';
import { KinesisSink } from '../capture/kinesis-sink';
import { quoteIdent, rawTextClient } from '../capture/pg-text';
import {
  copySnapshotTables,
  describeTables,
  readSnapshot,
  SNAPSHOT_CONNECTIONS,
  type TableLayout,
} from '../capture/snapshot';
import { startEmbeddedCluster } from '../local/embedded-postgres';
import { ensureStream, kinesisClientFor } from '../local/kinesalite';
import { ownCpuSeconds, processCpuSeconds } from './cpu';
import { DEFAULT_EXPORT_DIR } from './totesys-export';
import { benchArgsOrExit, positiveInt } from './options';
import { copyTablesOut, loadTotesys, recreateDatabase, totesysCsvFiles, withClient } from './workloads';
import { median } from './timing';

/**
 * `npm run bench:snapshot`: capture's initial snapshot (capture/snapshot.ts copySnapshotTables:
 * `COPY … TO STDOUT` text lines encoded straight into Kinesis records, tables on parallel
 * connections inside one exported snapshot) into a discarding sink, against the raw
 * `COPY (SELECT * FROM t) TO STDOUT` of the same tables in the same run, and against what capture
 * did before (readSnapshot's row arrays, with and without ChangeBatcher). Each side reports rows/s
 * and the CPU it took per row, in this process (the reader and encoder) and in the whole Postgres
 * cluster (the COPY backends): on a shared machine CPU per row moves much less than rows/s. With
 * `--kinesalite`, the last run also sends the snapshot into a kinesalite child process.
 * The data is the totesys export with its order tables `--copies` times over (ids shifted), in an
 * embedded Postgres 17 under the OS temp directory.
 *
 * Options: HELP below (`--help`).
 */

const HELP = `Usage: npm run bench:snapshot -- [options]

Capture's initial snapshot (COPY text encoded straight into stream records, tables on parallel
connections inside one exported snapshot) into a discarding sink, against the raw COPY of the same
tables and against row-object reading, in the same run; rows/s and CPU per row. The totesys export
with its order tables --copies times over, in an embedded Postgres 17. See bench/README.md.

Options:
  --copies N      order tables N times over (default 8: ~440,000 rows)
  --repeat N      runs per side; the report gives medians (default 3)
  --kinesalite    the last run also sends the snapshot into a kinesalite child process
  -h, --help      show this help
`;

/** Order tables and the id columns a copy shifts (ids pointing at another copied table too). */
const ORDER_TABLES: Record<string, readonly string[]> = {
  sales_order: ['sales_order_id'],
  purchase_order: ['purchase_order_id'],
  transaction: ['transaction_id', 'sales_order_id', 'purchase_order_id'],
  payment: ['payment_id', 'transaction_id'],
};
/** capture's default flush size (CAPTURE_DEFAULTS.flushBytes). */
const FLUSH_BYTES = 1024 * 1024;
const TS = '2025-02-28T09:15:02.123456Z';
const RAW = 'raw COPY … TO STDOUT';
interface Side {
  rates: number[];
  /** Each run's rate over raw COPY's in the same run. */
  ratios: number[];
  /** CPU of the kinesalite child, where there is one. */
  otherUs: number[];
  nodeUs: number[];
  pgUs: number[];
}

/**
 * CPU seconds of a Postgres cluster so far: the postmaster's children that are running, plus
 * those that ended (the kernel adds a reaped child's time to its parent's cutime and cstime).
 * https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html (USER_HZ = 100)
 */
function clusterCpu(postmaster: number): { seconds: number; children: number } {
  const fields = (pid: string) => {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
    } catch {
      return null; // ended meanwhile
    }
  };
  const own = fields(String(postmaster));
  if (!own) throw new Error(`Postgres (pid ${postmaster}) is gone`);
  let ticks = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14]);
  let children = 0;
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const f = fields(pid);
    if (f && Number(f[1]) === postmaster) {
      ticks += Number(f[11]) + Number(f[12]);
      children += 1;
    }
  }
  return { seconds: ticks / 100, children };
}

/**
 * The cluster's CPU once the backends a run opened have ended and been reaped (their time then
 * moves to the postmaster's cutime): polled until it runs no more children than at the start.
 */
async function clusterCpuAfter(postmaster: number, children: number): Promise<number> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const now = clusterCpu(postmaster);
    if (now.children <= children || Date.now() > deadline) return now.seconds;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Tables split into `n` shares of about equal size (largest first, each to the smallest share). */
function shares(layouts: readonly TableLayout[], sizes: Map<string, number>, n: number): TableLayout[][] {
  const out = Array.from({ length: n }, () => ({ bytes: 0, layouts: [] as TableLayout[] }));
  const bySize = [...layouts].sort((a, b) => (sizes.get(b.table) ?? 0) - (sizes.get(a.table) ?? 0));
  for (const layout of bySize) {
    const smallest = out.reduce((min, share) => (share.bytes < min.bytes ? share : min));
    smallest.layouts.push(layout);
    smallest.bytes += sizes.get(layout.table) ?? 0;
  }
  return out.map((share) => share.layouts);
}

/**
 * Worker threads (bench/snapshot-worker.ts), each with its share of the tables, started and
 * ready; `run` hands them the snapshot and resolves to the rows they copied. Workers load the
 * TypeScript through tsx's CommonJS hook: Node 20 does not pass `--import tsx` hooks on to them.
 */
async function startWorkers(url: string, tables: TableLayout[][]) {
  const workers = await Promise.all(
    tables.map(async (layouts) => {
      const worker = new Worker(
        `require('tsx/cjs'); require(${JSON.stringify(path.join(__dirname, 'snapshot-worker.ts'))});`,
        { eval: true, workerData: { url, layouts, flushBytes: FLUSH_BYTES } },
      );
      await new Promise((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
      return worker;
    }),
  );
  return {
    run: async (snapshot: string) => {
      const counts = await Promise.all(
        workers.map(
          (worker) =>
            new Promise<number>((resolve, reject) => {
              worker.on('message', (m: { rows?: number; records?: Uint8Array[] }) => {
                if (m.rows !== undefined) resolve(m.rows);
              });
              worker.once('error', reject);
              worker.postMessage({ snapshot });
            }),
        ),
      );
      await Promise.all(workers.map((w) => w.terminate()));
      return counts.reduce((a, b) => a + b, 0);
    },
  };
}

/** kinesalite in a process of its own (bench/kinesalite-process.ts), as `totes up` runs it. */
async function startKinesaliteChild(root: string) {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(__dirname, 'kinesalite-process.ts'), path.join(root, 'kinesis')],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const endpoint = await new Promise<string>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).once('line', (l) => resolve(JSON.parse(l).endpoint));
    child.once('exit', (code) => reject(new Error(`the kinesalite process exited early with code ${code}`)));
  });
  const client = kinesisClientFor(endpoint);
  return {
    client,
    pid: child.pid,
    stop: async () => {
      client.destroy();
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.stdin!.end();
      await exited;
    },
  };
}

async function main(): Promise<void> {
  const { copies, repeat, withKinesalite } = benchArgsOrExit(
    { copies: { type: 'string' }, repeat: { type: 'string' }, kinesalite: { type: 'boolean' } },
    HELP,
    (values) => ({
      copies: positiveInt('copies', values.copies, 8),
      repeat: positiveInt('repeat', values.repeat, 3),
      withKinesalite: values.kinesalite === true,
    }),
  );
  const files = totesysCsvFiles(DEFAULT_EXPORT_DIR);
  if (!files) throw new Error(`the totesys export is not in ${DEFAULT_EXPORT_DIR}`);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-bench-snapshot-'));
  fs.chmodSync(root, 0o755);
  const cluster = await startEmbeddedCluster({ dataDir: path.join(root, 'pg') });
  try {
    await recreateDatabase(cluster.url, 'bench_snapshot');
    const url = cluster.urlFor('bench_snapshot');
    process.stderr.write(`loading the export, order tables ×${copies}…\n`);
    await withClient(url, async (c) => {
      await loadTotesys(c, files);
      for (const [table, ids] of Object.entries(ORDER_TABLES)) {
        const shift = ids.map((id) => `${quoteIdent(id)} = ${quoteIdent(id)} + 1000000`).join(', ');
        await c.query(`CREATE TEMP TABLE base AS SELECT * FROM ${quoteIdent(table)}`);
        for (let copy = 1; copy < copies; copy += 1) {
          await c.query(`UPDATE base SET ${shift}`);
          await c.query(`INSERT INTO ${quoteIdent(table)} SELECT * FROM base`);
        }
        await c.query('DROP TABLE base');
      }
      await c.query('VACUUM ANALYZE');
    });
    const postmaster = Number(
      fs.readFileSync(path.join(root, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0],
    );
    const tables = [...TOTESYS_TABLES];
    const sides: Record<string, Side> = {};
    const side = (name: string) =>
      (sides[name] ??= { rates: [], ratios: [], otherUs: [], nodeUs: [], pgUs: [] });
    const loads: number[] = [];
    let rawThisRun = 0;
    let rows = 0;
    let bytes = 0;
    const exporter = rawTextClient(url);
    const reader = rawTextClient(url);
    await Promise.all([exporter.connect(), reader.connect()]);
    const layouts = await describeTables(reader, 'public', tables);
    const sizes = new Map<string, number>(
      (
        await reader.query(
          `SELECT relname, pg_relation_size(oid)::float8 AS size FROM pg_class WHERE relname = ANY ($1::text[])`,
          [tables],
        )
      ).rows.map((r) => [r.relname, Number(r.size)]),
    );
    const kinesis = withKinesalite ? await startKinesaliteChild(root) : null;
    try {
      for (let run = 0; run <= repeat; run += 1) {
        // Run 0 warms V8 and the buffer cache up: not reported.
        const measure = async (
          name: string,
          body: (snapshot: string) => Promise<number>,
          otherPid?: number,
        ) => {
          await exporter.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
          const snapshot = (await exporter.query('SELECT pg_export_snapshot() AS name')).rows[0].name;
          const cpu0 = ownCpuSeconds();
          const other0 = otherPid ? (processCpuSeconds(otherPid) ?? 0) : 0;
          const pg0 = clusterCpu(postmaster);
          const t0 = performance.now();
          const read = await body(snapshot);
          const seconds = (performance.now() - t0) / 1000;
          const nodeCpu = ownCpuSeconds() - cpu0;
          const otherCpu = otherPid ? (processCpuSeconds(otherPid) ?? 0) - other0 : 0;
          const pgCpu = (await clusterCpuAfter(postmaster, pg0.children)) - pg0.seconds;
          await exporter.query('COMMIT');
          if (read !== rows) throw new Error(`${name} read ${read} rows, COPY ${rows}`);
          if (!run) return;
          if (name === RAW) rawThisRun = read / seconds;
          side(name).rates.push(read / seconds);
          side(name).ratios.push(read / seconds / rawThisRun);
          if (otherPid) side(name).otherUs.push((otherCpu / read) * 1e6);
          side(name).nodeUs.push((nodeCpu / read) * 1e6);
          side(name).pgUs.push((pgCpu / read) * 1e6);
        };
        const connect = async () => {
          const client = rawTextClient(url);
          await client.connect();
          return client;
        };
        loads.push(os.loadavg()[0]);
        /** What capture does (capture/snapshot.ts), into `put`. */
        const copyInto = async (
          snapshot: string,
          connections: number,
          put: (r: BatchRecord[]) => Promise<void>,
        ) =>
          (
            await copySnapshotTables({
              connect,
              snapshotName: snapshot,
              layouts,
              lsn: '0/1',
              epoch: 1,
              connections,
              flushBytes: FLUSH_BYTES,
              put,
            })
          ).rows;
        await measure(RAW, async () => {
          ({ rows, bytes } = await copyTablesOut(reader, tables));
          return rows;
        });
        await measure('before: read (row arrays)', async (snapshot) => {
          let read = 0;
          for await (const page of readSnapshot(reader, snapshot, layouts)) read += page.rows.length;
          return read;
        });
        await measure('before: read + ChangeBatcher', async (snapshot) => {
          const batcher = new ChangeBatcher();
          let read = 0;
          let seq = 0;
          for await (const page of readSnapshot(reader, snapshot, layouts)) {
            read += page.rows.length;
            const { schema, table, columns } = page.layout;
            for (const values of page.rows)
              batcher.add(schema, table, columns, { op: 'snapshot', lsn: '0/1', seq: seq++, ts: TS, values });
            if (batcher.byteCount >= FLUSH_BYTES) batcher.drain();
          }
          batcher.drain();
          return read;
        });
        for (const connections of [1, 2, 3, 4]) {
          await measure(`read + encode, ${connections} conn.`, (snapshot) =>
            copyInto(snapshot, connections, async () => undefined),
          );
        }
        for (const threads of [2]) {
          const workers = await startWorkers(url, shares(layouts, sizes, threads));
          await measure(`workers ×${threads}, 1 conn. each`, (snapshot) => workers.run(snapshot));
        }
        if (kinesis && run === repeat) {
          // Once, into kinesalite: its PutRecords handling is the limit here, not the read.
          const streamName = 'bench-snapshot';
          await ensureStream(kinesis.client, streamName, 4);
          const sink = new CompressingSink(
            new KinesisSink({ client: kinesis.client, streamName, logger: silentLogger }),
          );
          await measure(
            `into kinesalite, ${SNAPSHOT_CONNECTIONS} conn.`,
            (snapshot) => copyInto(snapshot, SNAPSHOT_CONNECTIONS, async (r) => void (await sink.put(r))),
            kinesis.pid,
          );
        }
        process.stderr.write(`run ${run}/${repeat}\n`);
      }
    } finally {
      await Promise.all([exporter.end(), reader.end()]);
      await kinesis?.stop();
    }
    const n = (v: number) => Math.round(v).toLocaleString('en');
    const lines = [
      `bench:snapshot — ${n(rows)} rows in ${tables.length} tables (${(bytes / 2 ** 20).toFixed(1)} MiB of COPY text), median of ${repeat} runs, load average ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}`,
      `  ${'side'.padEnd(30)} ${'rows/s'.padStart(9)} ${'× raw'.padStart(6)} ${'best'.padStart(9)} ${'node µs'.padStart(8)} ${'pg µs'.padStart(6)}   (runs: rows/s × raw)`,
      ...Object.entries(sides).map(
        ([name, { rates, ratios, nodeUs, pgUs, otherUs }]) =>
          `  ${name.padEnd(30)} ${n(median(rates)).padStart(9)} ${median(ratios).toFixed(2).padStart(6)} ${n(Math.max(...rates)).padStart(9)} ${median(nodeUs).toFixed(2).padStart(8)} ${median(pgUs).toFixed(2).padStart(6)}   (${rates.map((r, i) => `${n(r)} ${ratios[i].toFixed(2)}`).join(', ')})${otherUs.length ? `  kinesalite process ${median(otherUs).toFixed(2)} µs/row` : ''}`,
      ),
      '  (node µs, pg µs: CPU per row in this process, worker threads included, and in the whole Postgres cluster)',
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await cluster.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
