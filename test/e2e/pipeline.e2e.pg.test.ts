import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { Client } from 'pg';
import { renderVerifyReport, verifyWarehouse, type VerifyReport } from '../../processors/load/verify';
import { removeDataDir } from '../../local/postgres-placement';
import { runSimulation } from '../../totesys';
import { waitFor } from '../support/pg';

// End to end through `totes up` as a user runs it: embedded source (seeded), capture, kinesalite,
// the local Firehose, s3rver, transform, load and the embedded warehouse, all real. The business
// keeps running, the whole stack is killed with SIGKILL, changes keep arriving while it is down,
// and after a restart on the same data directory the warehouse equals the source again.

const CLI = path.resolve(__dirname, '..', '..', 'bin', 'totes.js');
let dataDir: string;
let up: ChildProcess | null = null;
const problems: string[] = [];

beforeAll(() => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-e2e-'));
});

afterAll(async () => {
  if (up && up.exitCode === null) {
    up.kill('SIGTERM');
    await new Promise((r) => up!.once('exit', r));
  }
  removeDataDir(dataDir);
});

interface Urls {
  source: string;
  warehouse: string;
}

/** Starts `totes up` and resolves with the source and warehouse URLs it prints once ready. */
async function startUp(): Promise<{ child: ChildProcess; urls: Urls }> {
  const child = spawn(
    process.execPath,
    [
      CLI,
      'up',
      '--data-dir',
      dataDir,
      '--scale',
      '0.05',
      '--source-port',
      '0',
      '--warehouse-port',
      '0',
      '--log-level',
      'warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stderr!.on('data', (d) => {
    if (process.env.TOTES_E2E_VERBOSE) process.stderr.write(d);
  });
  // Warnings and errors (the run logs at warn level), kept to check what a stop logs.
  readline.createInterface({ input: child.stderr! }).on('line', (line) => problems.push(line));
  const urls: Partial<Urls> = {};
  const password = (name: string) => fs.readFileSync(path.join(dataDir, `${name}-password`), 'utf8').trim();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('totes up did not come up in 120 s')), 120_000);
    // Name the cause: what it logged at warn and error ('close': after its output has been read).
    child.once('close', (code) =>
      reject(new Error(`totes up exited with ${code}; it logged:\n${problems.slice(-30).join('\n')}`)),
    );
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = /^\s+(source|warehouse)\s+(postgres:\/\/\S+)/.exec(line);
      if (m) urls[m[1] as keyof Urls] = m[2].replace('***', encodeURIComponent(password(m[1])));
      if (line.startsWith('  Ctrl-C')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return { child, urls: urls as Urls };
}

async function verify(urls: Urls): Promise<VerifyReport> {
  const source = new Client({ connectionString: urls.source });
  const warehouse = new Client({ connectionString: urls.warehouse });
  await source.connect();
  await warehouse.connect();
  try {
    return await verifyWarehouse(source, warehouse);
  } finally {
    await source.end();
    await warehouse.end();
  }
}

async function converged(urls: Urls, timeoutMs: number): Promise<number> {
  const started = Date.now();
  let last: VerifyReport | undefined;
  try {
    await waitFor(
      'the warehouse to equal the source',
      async () => {
        last = await verify(urls);
        return last.ok ? true : undefined;
      },
      timeoutMs,
      500,
    );
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${last ? renderVerifyReport(last) : ''}`, { cause: e });
  }
  return Date.now() - started;
}

it('keeps the warehouse equal to the source through a running business and a kill -9 of the whole stack', async () => {
  let started = await startUp();
  up = started.child;
  const urls = started.urls;
  const initialMs = await converged(urls, 120_000);

  const firstRun = await runSimulation(urls.source, { rate: 40, durationMs: 4000, seed: 7 });
  expect(firstRun.rowChanges).toBeGreaterThan(50);
  const latencyMs = await converged(urls, 60_000);
  // Reported, not asserted: speed lives in the benchmark.
  process.stdout.write(
    `e2e: snapshot to warehouse ${initialMs} ms; after ${firstRun.rowChanges} simulated changes the warehouse matched ${latencyMs} ms after the last commit\n`,
  );

  up.kill('SIGKILL');
  await new Promise((r) => up!.once('exit', r));
  // The embedded source outlives a SIGKILLed `totes up`: the business goes on while the pipeline is down.
  const duringDowntime = await runSimulation(urls.source, { rate: 40, durationMs: 2000, seed: 8 });
  expect(duringDowntime.rowChanges).toBeGreaterThan(20);

  started = await startUp();
  up = started.child;
  await converged(started.urls, 120_000);
  const report = await verify(started.urls);
  const facts = report.tables.filter((t) => t.table.startsWith('fact_'));
  expect(facts.every((t) => (t.versions ?? 0) >= t.sourceRows)).toBe(true);

  // SIGTERM (what ECS or systemd sends) drains every stage and stops the databases last: exit 0, and
  // nothing warned or failed on the way down.
  const beforeStop = problems.length;
  up.kill('SIGTERM');
  const code = await new Promise<number | null>((r) => up!.once('exit', r));
  expect({ code, loggedWhileStopping: problems.slice(beforeStop) }).toEqual({
    code: 0,
    loggedWhileStopping: [],
  });
}, 420_000);
