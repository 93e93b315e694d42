import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

const CLI = path.resolve(__dirname, '..', 'bin', 'totes.js');
/** An embedded warehouse is not started here, but a loaded machine can take a while to open kinesalite's store. */
const START_TIMEOUT_MS = 120_000;
/** totes up drains capture and the stages on SIGTERM; past this it is killed. */
const STOP_TIMEOUT_MS = 60_000;

export interface TotesUpConfig {
  dataDir: string;
  sourceUrl: string;
  warehouseUrl: string;
  /** Every line totes up and capture write, appended here. */
  logFile: string;
  /** The sink throttle's control file (local/sink-throttle.ts). */
  sinkDelayFile: string;
}

function exitOf(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/**
 * `totes up` as a person runs it, in a process group of its own, so that killAll() is a power cut
 * of the whole local stack: totes up (kinesalite, s3rver, the delivery stream, transform, load) and
 * its capture child at once. The databases are the run's own (RestartablePostgres), given
 * by URL, so they outlive it.
 */
export class TotesUpProcess {
  private child: ChildProcess | null = null;
  private log: fs.WriteStream;
  starts = 0;

  constructor(private readonly config: TotesUpConfig) {
    this.log = fs.createWriteStream(config.logFile, { flags: 'a' });
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts it and resolves once it printed that it is up. */
  async start(): Promise<void> {
    const { config } = this;
    const child = spawn(
      process.execPath,
      [
        CLI,
        'up',
        '--data-dir',
        config.dataDir,
        '--source-url',
        config.sourceUrl,
        '--warehouse-url',
        config.warehouseUrl,
        '--log-format',
        'json',
      ],
      {
        env: { ...process.env, TOTES_FAULT_SINK_DELAY_FILE: config.sinkDelayFile },
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      },
    );
    this.child = child;
    this.starts++;
    const up = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`totes up did not start in ${START_TIMEOUT_MS / 1000} s`)),
        START_TIMEOUT_MS,
      );
      readline.createInterface({ input: child.stdout! }).on('line', (line) => {
        this.log.write(`${line}\n`);
        if (line.startsWith('totes is up.')) {
          clearTimeout(timer);
          resolve();
        }
      });
      readline.createInterface({ input: child.stderr! }).on('line', (line) => this.log.write(`${line}\n`));
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`totes up exited (${signal ?? code}) while starting; see ${config.logFile}`));
      });
    });
    await up;
  }

  /** The capture child's pid (totes up's supervisor runs `totes capture`), if one runs now. */
  capturePid(): number | undefined {
    const parent = this.child?.pid;
    if (!parent) return undefined;
    for (const entry of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
        // Fields after the command name, which is in parentheses and may hold spaces: state, ppid, …
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        if (ppid !== parent) continue;
        const argv = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
        if (argv.includes('capture')) return Number(entry);
      } catch {
        // The process ended while being looked at.
      }
    }
    return undefined;
  }

  /**
   * A power cut: SIGKILL to totes up's process group and to capture's (the supervisor gives capture
   * a group of its own, so that a terminal's Ctrl-C reaches totes up alone). Nothing drains.
   */
  async killAll(): Promise<void> {
    const child = this.child;
    if (!child?.pid) return;
    const capture = this.capturePid();
    this.child = null;
    for (const group of [child.pid, capture]) {
      if (group === undefined) continue;
      try {
        process.kill(-group, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    await exitOf(child);
  }

  /** SIGTERM, as Ctrl-C or a service manager stops it; SIGKILL to the group past the deadline. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child?.pid) return;
    this.child = null;
    const exited = exitOf(child);
    child.kill('SIGTERM');
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // Gone.
      }
    }, STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  close(): void {
    this.log.end();
  }
}
