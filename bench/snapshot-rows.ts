import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import {
  snapshotPartInsert,
  snapshotProgress,
  snapshotTableUpsert,
  type SnapshotId,
} from '../core/warehouse-sql';
import { startEmbeddedCluster } from '../local/embedded-postgres';
import { migrateWarehouse } from '../processors/load/migrate';
import { processCpuSeconds } from './cpu';
import { benchArgsOrExit, positiveInt } from './options';
import { median } from './timing';

const HELP = `Usage: npm run bench:snapshot-rows -- [options]

What the warehouse spends recording snapshot rows (each row's ordinal and key, which
reconciliation needs), per row, in the same run, alternating: snapshot_row as migration 008 left it
(one row per snapshot row, the key index only; recreated here, as 009 drops it), and snapshot_part
as migration 009 makes it (one row per part holding arrays of ordinals and keys), with its arrays
compressed (storage EXTENDED, Postgres' default) and as 009 stores them (EXTERNAL: uncompressed).
Then the progress count once a snapshot's marker is in, for 008's table and for 009's. Backend CPU
from /proc/<pid>/stat; an embedded Postgres 17 in a temporary directory. See bench/README.md.

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
  /** The progress count once the marker is in (parameters: source table, epoch, lsn). */
  progress?: string;
}

/** snapshot_row as migrations 002 and 008 left it (009 drops it). */
const SNAPSHOT_ROW_008 = `CREATE TABLE IF NOT EXISTS "snapshot_row" ("source_table" text NOT NULL,
  "snapshot_epoch" bigint NOT NULL, "snapshot_lsn" pg_lsn NOT NULL, "seq" bigint NOT NULL, "key" integer NOT NULL);
CREATE INDEX IF NOT EXISTS "snapshot_row_key_idx" ON "snapshot_row" ("source_table", "snapshot_epoch", "snapshot_lsn", "key")`;

/** The load's statements up to 008 (core/warehouse-sql.ts before 009). */
const ROW_INSERT_008 = `INSERT INTO "snapshot_row" ("source_table", "snapshot_epoch", "snapshot_lsn", "seq", "key")
SELECT $1, $2::bigint, $3::pg_lsn, x."seq", x."key" FROM unnest($4::bigint[], $5::integer[]) AS x("seq", "key")`;
const PROGRESS_008 = `SELECT count(DISTINCT r."seq") AS "loaded_rows" FROM "snapshot_row" AS r
WHERE r."source_table" = $1 AND r."snapshot_epoch" = $2::bigint AND r."snapshot_lsn" = $3::pg_lsn`;

const storage = (mode: 'EXTENDED' | 'EXTERNAL') =>
  `ALTER TABLE "snapshot_part" ALTER COLUMN "ordinals" SET STORAGE ${mode}, ALTER COLUMN "keys" SET STORAGE ${mode}`;

async function partInsert(c: Client, id: SnapshotId, rows: { seq: number; key: number }[]): Promise<void> {
  const s = snapshotPartInsert(id, rows);
  await c.query(s.text, s.values);
}

const SIDES: Side[] = [
  {
    name: 'snapshot_row, key index (008)',
    table: 'snapshot_row',
    prepare: async (c) => {
      await c.query(SNAPSHOT_ROW_008);
      await c.query('TRUNCATE "snapshot_row"');
    },
    insert: async (c, id, rows) => {
      const sorted = [...rows].sort((a, b) => a.seq - b.seq);
      await c.query(ROW_INSERT_008, [
        id.sourceTable,
        id.epoch,
        id.lsn,
        sorted.map((r) => r.seq),
        sorted.map((r) => r.key),
      ]);
    },
    progress: PROGRESS_008,
  },
  {
    name: 'snapshot_part, arrays compressed',
    table: 'snapshot_part',
    prepare: async (c) => {
      await c.query('TRUNCATE "snapshot_part"');
      await c.query(storage('EXTENDED'));
    },
    insert: partInsert,
  },
  {
    name: 'snapshot_part, EXTERNAL (009, the load)',
    table: 'snapshot_part',
    prepare: async (c) => {
      await c.query('TRUNCATE "snapshot_part"');
      await c.query(storage('EXTERNAL'));
    },
    insert: partInsert,
    progress: snapshotProgress({ sourceTable: '', epoch: 0, lsn: '0/0' }).text,
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
    const counted = new Map<string, { ms: number; cpu: number; rows: number }>();
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
        if (side.progress) {
          // The one count a snapshot needs, once its marker is in.
          const marker = snapshotTableUpsert(id, { seq: rows, rows, commitTs: new Date().toISOString() });
          await c.query(marker.text, marker.values);
          const [t0, cpu0] = [performance.now(), backendCpu(pid)];
          const { rows: state } = await c.query(side.progress, [id.sourceTable, id.epoch, id.lsn]);
          counted.set(side.name, {
            ms: performance.now() - t0,
            cpu: backendCpu(pid) - cpu0,
            rows: Number(state[0].loaded_rows),
          });
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
      ...[...counted].map(
        ([name, n]) =>
          `progress once the marker is in, ${name}: ${n.rows.toLocaleString('en')} distinct ordinals counted in ${n.ms.toFixed(0)} ms (backend ${(n.cpu * 1000).toFixed(0)} ms CPU; last round)`,
      ),
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
