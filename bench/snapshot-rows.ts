import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import {
  snapshotProgress,
  snapshotRowInsert,
  snapshotTableUpsert,
  type SnapshotId,
} from '../core/warehouse-sql';
import { startEmbeddedCluster } from '../local/embedded-postgres';
import { migrateWarehouse } from '../processors/load/migrate';
import { processCpuSeconds } from './cpu';
import { benchArgsOrExit, positiveInt } from './options';
import { median } from './timing';

const HELP = `Usage: npm run bench:snapshot-rows -- [options]

What the warehouse spends recording snapshot rows (snapshot_row: each row's ordinal and key, which
reconciliation needs), per row, in the same run, alternating: the table as migrations 001-007 left
it (a primary key over the ordinal, INSERT ... ON CONFLICT DO NOTHING), as migration 008 leaves it
(the key index only), and one row per part holding arrays of ordinals and keys (not built: the next
step's size). Then the progress count once a snapshot's marker is in. Backend CPU from
/proc/<pid>/stat; an embedded Postgres 17 in a temporary directory. See bench/README.md.

Options:
  --rows N        snapshot rows per side and round (default 333000: the 1M cold start's largest table)
  --part-rows N   rows per statement, as the load's parts (default 10000)
  --rounds N      rounds, alternating the sides (default 2)
  -h, --help      show this help
`;

/** The backend's CPU seconds so far (bench/cpu.ts; the bench runs where /proc is). */
function backendCpu(pid: number): number {
  const seconds = processCpuSeconds(pid);
  if (seconds === null) throw new Error(`no CPU time for the backend (pid ${pid}): this bench needs /proc`);
  return seconds;
}

interface Side {
  name: string;
  prepare(c: Client): Promise<void>;
  insert(c: Client, id: SnapshotId, rows: { seq: number; key: number }[]): Promise<void>;
  table: string;
}

const BEFORE_008 =
  'ALTER TABLE "snapshot_row" ADD CONSTRAINT "snapshot_row_pkey" PRIMARY KEY ("source_table", "snapshot_epoch", "snapshot_lsn", "seq")';

const SIDES: Side[] = [
  {
    name: 'primary key + key index (001-007)',
    table: 'snapshot_row',
    prepare: async (c) => {
      await c.query('TRUNCATE "snapshot_row"');
      await c.query(BEFORE_008);
    },
    insert: async (c, id, rows) => {
      const s = snapshotRowInsert(id, rows);
      await c.query(`${s.text}\nON CONFLICT DO NOTHING`, s.values);
    },
  },
  {
    name: 'key index only (008, the load now)',
    table: 'snapshot_row',
    prepare: async (c) => {
      await c.query('TRUNCATE "snapshot_row"');
      await c.query('ALTER TABLE "snapshot_row" DROP CONSTRAINT IF EXISTS "snapshot_row_pkey"');
    },
    insert: async (c, id, rows) => {
      const s = snapshotRowInsert(id, rows);
      await c.query(s.text, s.values);
    },
  },
  {
    name: 'arrays per part (not built)',
    table: 'bench_snapshot_part',
    prepare: async (c) => {
      await c.query(`CREATE TABLE IF NOT EXISTS "bench_snapshot_part" ("source_table" text, "snapshot_epoch" bigint,
        "snapshot_lsn" pg_lsn, "first_seq" bigint, "seqs" bigint[], "keys" integer[])`);
      await c.query('TRUNCATE "bench_snapshot_part"');
    },
    insert: async (c, id, rows) => {
      await c.query(
        'INSERT INTO "bench_snapshot_part" VALUES ($1, $2, $3, $4, $5::bigint[], $6::integer[])',
        [id.sourceTable, id.epoch, id.lsn, rows[0].seq, rows.map((r) => r.seq), rows.map((r) => r.key)],
      );
    },
  },
];

async function main(): Promise<void> {
  const { rows, partRows, rounds } = benchArgsOrExit(
    { rows: { type: 'string' }, 'part-rows': { type: 'string' }, rounds: { type: 'string' } },
    HELP,
    (values) => ({
      rows: positiveInt('rows', values.rows, 333_000),
      partRows: positiveInt('part-rows', values['part-rows'], 10_000),
      rounds: positiveInt('rounds', values.rounds, 2),
    }),
  );
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-bench-snapshot-rows-'));
  fs.chmodSync(root, 0o755);
  const cluster = await startEmbeddedCluster({ dataDir: path.join(root, 'pg') });
  const c = new Client({ connectionString: cluster.url });
  try {
    await c.connect();
    await migrateWarehouse(c);
    const pid = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    const results = new Map<string, { backendUs: number[]; nodeUs: number[]; mib: number[] }>();
    let counted: { ms: number; cpu: number; rows: number } | null = null;
    for (let round = 1; round <= rounds; round += 1)
      for (const side of SIDES) {
        await side.prepare(c);
        await c.query('CHECKPOINT');
        const id: SnapshotId = { sourceTable: 'transaction', epoch: round, lsn: '0/16B3748' };
        const [node0, pg0] = [process.cpuUsage(), backendCpu(pid)];
        await c.query('BEGIN');
        const upsert = snapshotTableUpsert(id, null);
        await c.query(upsert.text, upsert.values);
        for (let seq = 0; seq < rows; seq += partRows) {
          const part = Array.from({ length: Math.min(partRows, rows - seq) }, (_, i) => ({
            seq: seq + i,
            key: (seq + i) * 3 + 1,
          }));
          await side.insert(c, id, part);
        }
        await c.query('COMMIT');
        const node = process.cpuUsage(node0);
        const backend = backendCpu(pid) - pg0;
        const { rows: size } = await c.query<{ bytes: string }>(
          `SELECT pg_total_relation_size('"${side.table}"') AS bytes`,
        );
        const r = results.get(side.name) ?? { backendUs: [], nodeUs: [], mib: [] };
        r.backendUs.push((backend * 1e6) / rows);
        r.nodeUs.push((node.user + node.system) / rows);
        r.mib.push(Number(size[0].bytes) / 2 ** 20);
        results.set(side.name, r);
        if (side.table === 'snapshot_row' && side.name.startsWith('key index')) {
          // The one count a snapshot needs, once its marker is in.
          const marker = snapshotTableUpsert(id, { seq: rows, rows, commitTs: new Date().toISOString() });
          await c.query(marker.text, marker.values);
          const progress = snapshotProgress(id);
          const [t0, cpu0] = [performance.now(), backendCpu(pid)];
          const { rows: state } = await c.query(progress.text, progress.values);
          counted = {
            ms: performance.now() - t0,
            cpu: backendCpu(pid) - cpu0,
            rows: Number(state[0].loaded_rows),
          };
        }
        process.stderr.write(`round ${round}: ${side.name} done\n`);
      }
    const lines = [
      `bench:snapshot-rows — ${rows.toLocaleString('en')} snapshot rows in statements of ${partRows.toLocaleString('en')}, ${rounds} round(s), medians; load average ${os.loadavg()[0].toFixed(1)}`,
      `${'side'.padEnd(38)} ${'backend µs/row'.padStart(15)} ${'client µs/row'.padStart(14)} ${'MiB'.padStart(7)}`,
      ...[...results].map(
        ([name, r]) =>
          `${name.padEnd(38)} ${median(r.backendUs).toFixed(2).padStart(15)} ${median(r.nodeUs).toFixed(2).padStart(14)} ${median(r.mib).toFixed(1).padStart(7)}`,
      ),
      counted
        ? `progress once the marker is in: ${counted.rows.toLocaleString('en')} distinct ordinals counted in ${counted.ms.toFixed(0)} ms (backend ${(counted.cpu * 1000).toFixed(0)} ms CPU)`
        : '',
      '',
    ];
    process.stdout.write(lines.join('\n'));
  } finally {
    await c.end().catch(() => undefined);
    await cluster.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
