import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { TOTESYS_TABLES } from '../core/totesys-tables';
import { ChangeBatcher } from '../capture/change-batcher';
import type { Client } from 'pg';
import { quoteIdent, quoteLiteral, rawTextClient } from '../capture/pg-text';
import { describeTables, readSnapshot, type TableLayout } from '../capture/snapshot';
import { startEmbeddedCluster } from '../local/embedded-postgres';
import { DEFAULT_EXPORT_DIR } from './totesys-export';
import { copyTablesOut, loadTotesys, recreateDatabase, totesysCsvFiles, withClient } from './workloads';

/**
 * `npm run bench:snapshot`: capture's initial-snapshot read (capture/snapshot.ts readSnapshot:
 * `COPY … TO STDOUT` in text format inside an exported snapshot) into a discarding sink, against
 * the raw `COPY (SELECT * FROM t) TO STDOUT` of the same tables in the same run. Two figures for
 * capture: `read` (pages of parsed rows, discarded) and `read + encode` (every row added to the
 * ChangeBatcher as capture does and the records drained at capture's flush size, then discarded:
 * everything the snapshot costs but Kinesis). The data is the totesys export with its order tables
 * `--copies` times over (ids shifted), in an embedded Postgres 17 under the OS temp directory.
 *
 * Options: --copies N (8: ~440,000 rows), --repeat N (3; medians).
 */

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  const value = at >= 0 ? Number(process.argv[at + 1]) : fallback;
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} takes a positive integer`);
  return value;
}

/** Order tables and the id columns a copy shifts (ids pointing at another copied table too). */
const ORDER_TABLES: Record<string, readonly string[]> = {
  sales_order: ['sales_order_id'],
  purchase_order: ['purchase_order_id'],
  transaction: ['transaction_id', 'sales_order_id', 'purchase_order_id'],
  payment: ['payment_id', 'transaction_id'],
};
const FLUSH_BYTES = 1024 * 1024;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

async function readWithCursor(client: Client, snapshot: string, layouts: readonly TableLayout[]) {
  let rows = 0;
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  await client.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(snapshot)}`);
  for (const layout of layouts) {
    const cols = layout.columns.map((c) => quoteIdent(c.name)).join(', ');
    await client.query(`DECLARE c NO SCROLL CURSOR FOR SELECT ${cols} FROM ${quoteIdent(layout.table)}`);
    for (;;) {
      const page = await client.query({ text: 'FETCH 5000 FROM c', rowMode: 'array' });
      rows += page.rows.length;
      if (page.rows.length < 5000) break;
    }
    await client.query('CLOSE c');
  }
  await client.query('COMMIT');
  return rows;
}

async function main(): Promise<void> {
  const copies = option('copies', 8);
  const repeat = option('repeat', 3);
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
    const tables = [...TOTESYS_TABLES];
    const sides: Record<string, number[]> = {
      'raw COPY … TO STDOUT': [],
      'before: cursor FETCH': [],
      read: [],
      'read + encode': [],
    };
    let rows = 0;
    let bytes = 0;
    const exporter = rawTextClient(url);
    const reader = rawTextClient(url);
    await Promise.all([exporter.connect(), reader.connect()]);
    const layouts = await describeTables(reader, 'public', tables);
    for (let run = 0; run <= repeat; run += 1) {
      // Run 0 warms V8 and the buffer cache up: not reported.
      await withClient(url, async (c) => {
        const t0 = performance.now();
        ({ rows, bytes } = await copyTablesOut(c, tables));
        if (run) sides['raw COPY … TO STDOUT'].push(rows / ((performance.now() - t0) / 1000));
      });
      {
        // What readSnapshot did before COPY: a cursor per table, FETCH 5000 rows at a time as arrays.
        await exporter.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
        const name = (await exporter.query('SELECT pg_export_snapshot() AS name')).rows[0].name;
        const t0 = performance.now();
        const read = await readWithCursor(reader, name, layouts);
        const seconds = (performance.now() - t0) / 1000;
        await exporter.query('COMMIT');
        if (read !== rows) throw new Error(`the cursor read ${read} rows, COPY ${rows}`);
        if (run) sides['before: cursor FETCH'].push(read / seconds);
      }
      for (const encode of [false, true]) {
        await exporter.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
        const name = (await exporter.query('SELECT pg_export_snapshot() AS name')).rows[0].name;
        const batcher = new ChangeBatcher();
        let read = 0;
        let seq = 0;
        const t0 = performance.now();
        for await (const page of readSnapshot(reader, name, layouts)) {
          read += page.rows.length;
          if (!encode) continue;
          const { schema, table, columns } = page.layout;
          for (const values of page.rows)
            batcher.add(schema, table, columns, {
              op: 'snapshot',
              lsn: '0/1',
              seq: seq++,
              ts: '2025-02-28T09:15:02.123456Z',
              values,
            });
          if (batcher.byteCount >= FLUSH_BYTES) batcher.drain();
        }
        batcher.drain();
        const seconds = (performance.now() - t0) / 1000;
        await exporter.query('COMMIT');
        if (read !== rows) throw new Error(`readSnapshot read ${read} rows, COPY ${rows}`);
        if (run) sides[encode ? 'read + encode' : 'read'].push(read / seconds);
      }
      process.stderr.write(`run ${run}/${repeat}\n`);
    }
    await Promise.all([exporter.end(), reader.end()]);
    const raw = median(sides['raw COPY … TO STDOUT']);
    const lines = [
      `bench:snapshot — ${rows.toLocaleString('en')} rows in ${tables.length} tables (${(bytes / 2 ** 20).toFixed(1)} MiB of COPY text), median of ${repeat} runs, load average ${os.loadavg()[0].toFixed(1)}`,
      ...Object.entries(sides).map(
        ([name, rates]) =>
          `  ${name.padEnd(24)} ${Math.round(median(rates)).toLocaleString('en').padStart(10)} rows/s   ${(median(rates) / raw).toFixed(2)} × raw   (runs: ${rates.map((r) => Math.round(r).toLocaleString('en')).join(', ')})`,
      ),
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
