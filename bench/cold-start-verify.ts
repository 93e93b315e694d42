import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Client } from 'pg';
import { startEmbeddedCluster, type EmbeddedCluster } from '../local/embedded-postgres';
import { SNAPSHOT_SETTINGS, verifyWarehouse } from '../processors/load/verify';

/**
 * `totes verify`'s comparison alone, on what `npm run bench:coldstart -- --keep` left: starts the
 * kept source and warehouse clusters, runs verifyWarehouse `--runs` times (as `totes verify` does:
 * two connections per side; `--one-connection`: one), and prints per run the wall time, this
 * process' CPU and each cluster's backends' CPU (what their postmaster reaped: a backend's CPU is
 * counted when it exits, so each run's connections are ended before it is read).
 *
 * `--explain`: instead, one run on one connection per side, every statement verify sends timed
 * (milliseconds, side, the statement's first words), then each statement again under
 * `EXPLAIN (ANALYZE, BUFFERS)` in a REPEATABLE READ transaction with verify's settings, its plan
 * printed.
 *
 *   node --import tsx bench/cold-start-verify.ts /tmp/totes-bench-coldstart-XXXX [--runs 3] [--one-connection] [--explain]
 */

/** CPU seconds of the processes a postmaster has reaped (its backends): /proc/PID/stat cutime + cstime. */
function reapedCpuSeconds(cluster: EmbeddedCluster): number {
  const pid = fs.readFileSync(path.join(cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0];
  // Fields after the command (which may hold spaces): state is the 3rd, cutime the 16th, cstime the 17th.
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[13]) + Number(fields[14])) / 100; // USER_HZ is 100 on Linux
}

type Side = 'source' | 'warehouse';

interface Sent {
  side: Side;
  text: string;
  values?: unknown[];
  ms: number;
}

/** Records every statement `client` is sent (text and parameters only) with its time. */
function recorded(client: Client, side: Side, sent: Sent[]): Client {
  const query = client.query.bind(client) as (text: string, values?: unknown[]) => Promise<unknown>;
  const timed = async (text: string, values?: unknown[]) => {
    const started = performance.now();
    try {
      return await query(text, values);
    } finally {
      sent.push({ side, text, values, ms: performance.now() - started });
    }
  };
  Object.assign(client, { query: timed });
  return client;
}

const isStatement = (text: string) => /^\s*(SELECT|WITH)\b/i.test(text);

async function explain(open: (side: Side) => Promise<Client>): Promise<void> {
  const sent: Sent[] = [];
  const [s, w] = [
    recorded(await open('source'), 'source', sent),
    recorded(await open('warehouse'), 'warehouse', sent),
  ];
  try {
    const started = performance.now();
    const report = await verifyWarehouse(s, w);
    process.stdout.write(
      `one connection per side: ${report.ok ? 'equal' : 'DIFFERENT'}, wall ${((performance.now() - started) / 1000).toFixed(2)} s\n`,
    );
  } finally {
    await Promise.all([s.end(), w.end()]);
  }
  const statements = sent.filter((q) => isStatement(q.text));
  for (const q of statements)
    process.stdout.write(
      `${q.ms.toFixed(0).padStart(6)} ms  ${q.side.padEnd(9)}  ${q.text.replace(/\s+/g, ' ').slice(0, 110)}\n`,
    );
  for (const side of ['source', 'warehouse'] as const) {
    const client = await open(side);
    try {
      await client.query(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; ${SNAPSHOT_SETTINGS}`);
      for (const q of statements.filter(
        (x) => x.side === side && !/to_regclass|pg_export_snapshot/.test(x.text),
      )) {
        const { rows } = await client.query<{ 'QUERY PLAN': string }>(
          `EXPLAIN (ANALYZE, BUFFERS) ${q.text}`,
          q.values,
        );
        process.stdout.write(`\n── ${side}: ${q.text.replace(/\s+/g, ' ').slice(0, 200)}\n`);
        process.stdout.write(`${rows.map((r) => r['QUERY PLAN']).join('\n')}\n`);
      }
      await client.query('COMMIT');
    } finally {
      await client.end();
    }
  }
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      runs: { type: 'string', default: '3' },
      'one-connection': { type: 'boolean' },
      explain: { type: 'boolean' },
    },
  });
  const root = positionals[0];
  if (!root) throw new Error('usage: cold-start-verify.ts DIR [--runs N] [--one-connection] [--explain]');
  const source = await startEmbeddedCluster({ dataDir: path.join(root, 'source') });
  const warehouse = await startEmbeddedCluster({
    dataDir: path.join(root, 'stack', 'warehouse'),
    password: fs.readFileSync(path.join(root, 'stack', 'warehouse-password'), 'utf8').trim(),
  });
  const urls = { source: source.urlFor('totesys'), warehouse: warehouse.urlFor('warehouse') };
  const open = async (side: Side) => {
    const client = new Client({ connectionString: urls[side] });
    await client.connect();
    return client;
  };
  try {
    if (values.explain) return await explain(open);
    for (let run = 1; run <= Number(values.runs); run++) {
      const before = { s: reapedCpuSeconds(source), w: reapedCpuSeconds(warehouse), load: os.loadavg()[0] };
      const started = Date.now();
      const cpu = process.cpuUsage();
      const [s, w] = [await open('source'), await open('warehouse')];
      const report = await verifyWarehouse(s, w, values['one-connection'] ? {} : { connect: open }).finally(
        () => Promise.all([s.end(), w.end()]),
      );
      const wall = (Date.now() - started) / 1000;
      const used = process.cpuUsage(cpu);
      // The backends' CPU is counted once the postmaster has reaped them.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const rows = report.tables.reduce((n, t) => n + t.sourceRows, 0);
      process.stdout.write(
        `run ${run}: ${report.ok ? 'equal' : 'DIFFERENT'}, ${rows.toLocaleString('en-GB')} source rows, ` +
          `wall ${wall.toFixed(2)} s; CPU s: this process ${((used.user + used.system) / 1e6).toFixed(1)}, ` +
          `source backends ${(reapedCpuSeconds(source) - before.s).toFixed(2)}, ` +
          `warehouse backends ${(reapedCpuSeconds(warehouse) - before.w).toFixed(2)}; ` +
          `load average ${before.load.toFixed(1)} → ${os.loadavg()[0].toFixed(1)}; ` +
          `compared by ${report.tables.map((t) => t.comparedBy).join(' ')}\n`,
      );
    }
  } finally {
    await Promise.all([source.stop(), warehouse.stop()]);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
