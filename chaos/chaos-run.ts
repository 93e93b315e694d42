import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'pg';
import { installTotesys, runSimulation } from '../totesys';
import type { ChaosOptions, FaultKind } from './chaos-options';
import type { ChaosReport, FaultOutcome } from './chaos-report';
import { describeFault, planFaults, type PlannedFault } from './fault-plan';
import { compareVersions } from './ledger-compare';
import { FACT_SOURCES, installLedger, LedgerReader, readLoadedVersions } from './ledger';
import { RestartablePostgres } from './restartable-postgres';
import { TotesUpProcess } from './totes-up-process';

/**
 * `npm run chaos`: the local pipeline under faults, judged by a ledger of what was committed.
 *
 *   source Postgres ──(simulator + ledger trigger)──▶ totes up (capture child, stream, S3, stages)
 *        ▲ restart                                      ▲ SIGKILL capture / the whole group, throttle
 *   warehouse Postgres ◀────────────────────────────────┘
 *        ▲ restart
 *
 * The databases are the run's own (restartable-postgres.ts) and reach `totes up` by URL, so a fault
 * can stop them under it; the simulator keeps the business running across every fault.
 */

const CLI = path.resolve(__dirname, '..', 'bin', 'totes.js');
/** How often convergence is checked: often enough to time it, rare enough not to load the warehouse. */
const POLL_MS = 250;
/** How long `totes verify` may keep comparing at the end (everything has converged by then). */
const VERIFY_WAIT_SECONDS = 60;

export interface ChaosRunContext {
  options: ChaosOptions;
  /** A fresh directory for the clusters, the stack's data directory and the logs. */
  root: string;
  progress(message: string): void;
  /** Stops registered here run (in reverse) when the run ends or is interrupted. */
  stops: (() => Promise<void>)[];
}

/** Keeps the totesys business running through faults: a lost connection is retried until the source is back. */
class Business {
  private readonly abort = new AbortController();
  private running: Promise<void> | null = null;
  interruptions = 0;
  /** Why runs of the simulator ended early, counted by message. */
  readonly errors: Record<string, number> = {};

  constructor(
    private readonly sourceUrl: string,
    private readonly rate: number,
    private readonly seed: number,
  ) {}

  start(): void {
    this.running = this.loop();
  }

  private async loop(): Promise<void> {
    const { signal } = this.abort;
    for (let attempt = 0; !signal.aborted; attempt++) {
      let connected = false;
      try {
        const client = new Client({ connectionString: this.sourceUrl, connectionTimeoutMillis: 10_000 });
        // A source restart ends the session between two changes: the next query fails, handled here.
        client.on('error', () => undefined);
        await client.connect();
        connected = true;
        try {
          // A new planner seed per attempt: the state is read back from the database each time.
          await runSimulation(client, { rate: this.rate, seed: this.seed * 1000 + attempt, signal });
        } finally {
          await client.end().catch(() => undefined);
        }
      } catch (e) {
        if (signal.aborted) break;
        // Counted once per lost session, not per refused attempt to reconnect.
        if (connected) this.interruptions++;
        const message = (e instanceof Error ? e.message : String(e)).slice(0, 200);
        this.errors[message] = (this.errors[message] ?? 0) + 1;
        // Not a wait for a condition: a pause before trying a source that refused, so it does not spin.
        await sleep(200, undefined, { signal }).catch(() => undefined);
      }
    }
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
  }
}

async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const { rows } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (rows.length === 0) await admin.query(`CREATE DATABASE "${database}"`);
  } finally {
    await admin.end();
  }
}

/** Polls `check` until it returns a value, or returns null at the deadline; errors count as "not yet". */
async function pollUntil<T>(check: () => Promise<T | undefined>, deadlineMs: number): Promise<T | null> {
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch {
      // A database restarting: try again.
    }
    if (Date.now() > deadlineMs) return null;
    await sleep(POLL_MS);
  }
}

async function runVerify(args: string[]): Promise<ChaosReport['verify']> {
  const child = spawn(process.execPath, [CLI, 'verify', ...args, '--json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += String(d)));
  child.stderr.on('data', (d) => (err += String(d)));
  const exitCode = await new Promise<number>((resolve) => child.once('exit', (code) => resolve(code ?? 1)));
  try {
    const output = JSON.parse(out) as { matches?: boolean };
    return { exitCode, matches: output.matches ?? null, output };
  } catch {
    return { exitCode, matches: null, output: `${out}${err}` };
  }
}

export async function runChaos(ctx: ChaosRunContext): Promise<ChaosReport> {
  const { options, root, progress, stops } = ctx;
  const startedAt = new Date();
  const began = Date.now();
  const plan = planFaults(options);

  const source = new RestartablePostgres('source', path.join(root, 'source'));
  const warehouse = new RestartablePostgres('warehouse', path.join(root, 'warehouse'));
  await source.start();
  stops.push(() => source.stop());
  await warehouse.start();
  stops.push(() => warehouse.stop());
  await ensureDatabase(source.urlFor('postgres'), 'totesys');
  await ensureDatabase(warehouse.urlFor('postgres'), 'warehouse');
  const sourceUrl = source.urlFor('totesys');
  const warehouseUrl = warehouse.urlFor('warehouse');
  const seeder = new Client({ connectionString: sourceUrl });
  await seeder.connect();
  await installTotesys(seeder, { scale: options.scale, seed: options.seed }).finally(() => seeder.end());
  const { baseline } = await installLedger(sourceUrl);
  progress(`source seeded (scale ${options.scale}; ${baseline} fact rows in the ledger's baseline)`);

  const dataDir = path.join(root, 'totes');
  const sinkDelayFile = path.join(root, 'sink-delay-ms');
  const up = new TotesUpProcess({
    dataDir,
    sourceUrl,
    warehouseUrl,
    logFile: path.join(root, 'totes-up.log'),
    sinkDelayFile,
  });
  stops.push(async () => {
    await up.stop();
    up.close();
  });
  await up.start();
  progress('totes up is running');

  const ledger = new LedgerReader(sourceUrl);
  const convergeTimeoutMs = options.convergeTimeoutSeconds * 1000;
  /** Waits until the warehouse holds every fact version the ledger had up to `mark`. */
  const converge = async (mark: number): Promise<number | null> => {
    const from = Date.now();
    const committed = ledger.versions.filter((v) => v.seq <= mark);
    const ok = await pollUntil(async () => {
      const c = compareVersions(committed, await readLoadedVersions(warehouseUrl), []);
      return c.lost === 0 ? true : undefined;
    }, from + convergeTimeoutMs);
    return ok ? Date.now() - from : null;
  };
  /** Reads the ledger once the source answers again; its highest seq marks "committed so far". */
  const markNow = async (): Promise<number> => {
    const read = await pollUntil(async () => {
      await ledger.refresh();
      return true;
    }, Date.now() + convergeTimeoutMs);
    if (!read) throw new Error('the source did not answer again; cannot read the ledger');
    return ledger.highestSeq;
  };

  const initialLoadMs = await converge(await markNow());
  progress(`initial snapshot in the warehouse after ${initialLoadMs === null ? 'no' : initialLoadMs} ms`);
  const business = new Business(sourceUrl, options.rate, options.seed);
  business.start();
  stops.push(() => business.stop());

  const inject = async (fault: PlannedFault): Promise<void> => {
    switch (fault.kind) {
      case 'kill-capture': {
        const pid = await pollUntil(async () => up.capturePid(), Date.now() + convergeTimeoutMs);
        if (pid === null) throw new Error('no capture process to kill');
        process.kill(pid, 'SIGKILL');
        // Over once totes up's supervisor has started another one.
        await pollUntil(async () => {
          const now = up.capturePid();
          return now !== undefined && now !== pid ? true : undefined;
        }, Date.now() + convergeTimeoutMs);
        return;
      }
      case 'kill-stack':
        await up.killAll();
        await up.start();
        return;
      case 'restart-source':
      case 'restart-warehouse': {
        const db = fault.kind === 'restart-source' ? source : warehouse;
        await db.stop(fault.mode);
        // The outage itself: how long the database stays down is part of the fault.
        await sleep(fault.downMs);
        await db.start();
        return;
      }
      case 'throttle-sink':
        fs.writeFileSync(sinkDelayFile, String(fault.delayMs));
        await sleep(fault.forMs);
        fs.rmSync(sinkDelayFile, { force: true });
        return;
    }
    return fault satisfies never;
  };

  const outcomes: FaultOutcome[] = [];
  for (const [i, fault] of plan.entries()) {
    // The random moment: the business runs for a while before the fault lands.
    await sleep(fault.quietMs);
    const what = describeFault(fault);
    const at = Date.now();
    progress(`round ${i + 1}/${plan.length}: ${what}`);
    await inject(fault);
    const faultMs = Date.now() - at;
    const mark = await markNow();
    const convergeMs = await converge(mark);
    outcomes.push({
      round: i + 1,
      fault,
      what,
      atMs: at - began,
      faultMs,
      convergeMs,
      committedBefore: ledger.changes,
    });
    progress(
      `round ${i + 1}: over after ${faultMs} ms, ${convergeMs === null ? 'NOT converged' : `converged ${convergeMs} ms later`} ` +
        `(${ledger.changes} changes committed)`,
    );
  }

  await business.stop();
  const finalConvergeMs = await converge(await markNow());
  progress(`business stopped; the warehouse ${finalConvergeMs === null ? 'did NOT catch up' : 'caught up'}`);
  const versions = compareVersions(
    ledger.versions,
    await readLoadedVersions(warehouseUrl),
    FACT_SOURCES.map((f) => f.source),
  );
  const verify = await runVerify([
    '--source-url',
    sourceUrl,
    '--warehouse-url',
    warehouseUrl,
    '--data-dir',
    dataDir,
    '--wait',
    String(VERIFY_WAIT_SECONDS),
  ]);
  progress(`totes verify exited ${verify.exitCode}`);

  const faultsByKind: Partial<Record<FaultKind, number>> = {};
  for (const f of plan) faultsByKind[f.kind] = (faultsByKind[f.kind] ?? 0) + 1;
  const { out: _out, keepData: _keep, ...reported } = options;
  return {
    options: reported,
    startedAt: startedAt.toISOString(),
    durationMs: Date.now() - began,
    initialLoadMs,
    rounds: plan.length,
    faults: outcomes,
    faultsByKind,
    changesWritten: ledger.changes,
    simulatorInterruptions: business.interruptions,
    simulatorErrors: business.errors,
    stackStarts: up.starts,
    versions,
    lost: versions.lost,
    duplicated: versions.duplicated,
    verify,
    ok:
      versions.lost === 0 &&
      versions.duplicated === 0 &&
      versions.unexpected === 0 &&
      initialLoadMs !== null &&
      finalConvergeMs !== null &&
      outcomes.every((o) => o.convergeMs !== null) &&
      verify.exitCode === 0,
  };
}
