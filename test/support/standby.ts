import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { Client } from 'pg';
import { findFreePort } from '../../local/embedded-postgres';
import { waitFor, withClient } from './pg';

/**
 * A streaming standby of a running cluster, built the way an operator without pg_basebackup builds
 * one (embedded-postgres ships only initdb, pg_ctl and postgres): a low-level base backup —
 * pg_backup_start, a copy of the data directory, pg_backup_stop and its backup_label — then
 * standby.signal and primary_conninfo, so it streams the WAL from the backup's start on.
 * https://www.postgresql.org/docs/current/continuous-archiving.html#BACKUP-LOWLEVEL-BASE-BACKUP
 * https://www.postgresql.org/docs/current/warm-standby.html#STANDBY-SERVER-SETUP
 */
export interface Standby {
  /** URL of `database` on the standby. */
  url: string;
  /** Waits until the standby has replayed everything the primary had written when called. */
  caughtUp(): Promise<void>;
  /** pg_promote(): the standby ends recovery and becomes a primary on a new timeline. */
  promote(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Left out of the copy, as the documentation says: the server's pid and options files, the
 * replication slots (a standby does not inherit the primary's slots; on PostgreSQL 17 only failover
 * slots are synchronised, and only when asked), and the WAL, which the standby streams instead.
 */
const OMIT_CONTENTS = new Set([
  'pg_replslot',
  'pg_wal',
  'pg_stat_tmp',
  'pg_dynshmem',
  'pg_notify',
  'pg_snapshots',
]);
const OMIT_FILES = new Set(['postmaster.pid', 'postmaster.opts']);

/** Copies a live data directory; files that vanish mid-copy (temporary files) are skipped. */
function copyLive(from: string, to: string, owner: { uid: number; gid: number }, depth = 0): void {
  fs.mkdirSync(to, { mode: 0o700 });
  fs.chownSync(to, owner.uid, owner.gid);
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    if (depth === 0 && OMIT_FILES.has(entry.name)) continue;
    const source = path.join(from, entry.name);
    const target = path.join(to, entry.name);
    try {
      if (entry.isDirectory()) {
        if (depth === 0 && OMIT_CONTENTS.has(entry.name)) {
          fs.mkdirSync(target, { mode: 0o700 });
          fs.chownSync(target, owner.uid, owner.gid);
          if (entry.name === 'pg_wal') {
            fs.mkdirSync(path.join(target, 'archive_status'), { mode: 0o700 });
            fs.chownSync(path.join(target, 'archive_status'), owner.uid, owner.gid);
          }
          continue;
        }
        copyLive(source, target, owner, depth + 1);
      } else if (entry.isFile()) {
        fs.copyFileSync(source, target);
        fs.chownSync(target, owner.uid, owner.gid);
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
}

interface StandbyServer {
  child: ChildProcess;
  exited: Promise<void>;
}

/** Starts the standby's postmaster; rejects with its log when it exits before it is ready. */
async function startServer(
  program: string,
  standbyDir: string,
  port: number,
  settings: string[],
  owner: { uid: number; gid: number },
): Promise<StandbyServer> {
  const child: ChildProcess = spawn(program, ['-D', standbyDir, '-p', String(port), ...settings], {
    uid: owner.uid,
    gid: owner.gid,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const log: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the standby did not start:\n${log.join('\n')}`)),
      60_000,
    );
    for (const stream of [child.stdout!, child.stderr!])
      readline.createInterface({ input: stream }).on('line', (line) => {
        log.push(line);
        if (line.includes('database system is ready to accept read-only connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the standby exited (${code}) while starting:\n${log.join('\n')}`));
    });
  });
  return { child, exited };
}

/** The primary's server program and `-c` settings, from the postmaster.opts it wrote at start. */
function serverCommand(dataDir: string): { program: string; settings: string[] } {
  const opts = fs.readFileSync(path.join(dataDir, 'postmaster.opts'), 'utf8').trim();
  const program = opts.split(' ')[0]!;
  const quoted = [...opts.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!);
  const settings: string[] = [];
  quoted.forEach((arg, i) => {
    if (arg === '-c' && quoted[i + 1]) settings.push('-c', quoted[i + 1]!);
  });
  return { program, settings };
}

export async function startStandby(primaryUrl: string): Promise<Standby> {
  const primary = new URL(primaryUrl);
  const database = decodeURIComponent(primary.pathname.slice(1));
  const primaryDir = await withClient(
    primaryUrl,
    async (c) => (await c.query<{ data_directory: string }>('SHOW data_directory')).rows[0]!.data_directory,
  );
  const owner = fs.statSync(primaryDir);
  const standbyDir = `${primaryDir}-standby`;
  fs.rmSync(standbyDir, { recursive: true, force: true });

  // pg_backup_start and pg_backup_stop must run in the same session (a non-exclusive backup).
  const backup = new Client({ connectionString: primaryUrl });
  await backup.connect();
  try {
    await backup.query("SELECT pg_backup_start('totes standby', true)");
    copyLive(primaryDir, standbyDir, owner);
    const { rows } = await backup.query<{ labelfile: string; spcmapfile: string }>(
      'SELECT labelfile, spcmapfile FROM pg_backup_stop(false)',
    );
    const write = (name: string, text: string) => {
      fs.writeFileSync(path.join(standbyDir, name), text, { mode: 0o600 });
      fs.chownSync(path.join(standbyDir, name), owner.uid, owner.gid);
    };
    write('backup_label', rows[0]!.labelfile);
    if (rows[0]!.spcmapfile) write('tablespace_map', rows[0]!.spcmapfile);
    write('standby.signal', '');
    const conninfo = `host=${primary.hostname} port=${primary.port} user=${decodeURIComponent(primary.username)} password=${decodeURIComponent(primary.password)} application_name=totes_standby`;
    fs.appendFileSync(path.join(standbyDir, 'postgresql.auto.conf'), `primary_conninfo = '${conninfo}'\n`);
  } finally {
    await backup.end();
  }

  const { program, settings } = serverCommand(primaryDir);
  // The port was free a moment ago, but another test's server can take it before the standby binds
  // it (the same race local/embedded-postgres.ts retries): then try another.
  let server: StandbyServer;
  let port: number;
  for (let attempt = 1; ; attempt++) {
    port = await findFreePort();
    try {
      server = await startServer(program, standbyDir, port, settings, owner);
      break;
    } catch (e) {
      if (attempt >= 5 || !/Address already in use/.test(String(e))) throw e;
    }
  }
  const { child, exited } = server;

  const url = new URL(primaryUrl);
  url.port = String(port);
  url.pathname = `/${encodeURIComponent(database)}`;
  const standbyUrl = url.toString();
  return {
    url: standbyUrl,
    async caughtUp() {
      const target = await withClient(
        primaryUrl,
        async (c) =>
          (await c.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn,
      );
      await waitFor(
        `the standby to replay up to ${target}`,
        () =>
          withClient(standbyUrl, async (c) => {
            const { rows } = await c.query('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done', [target]);
            return rows[0].done === true ? true : undefined;
          }),
        60_000,
      );
    },
    async promote() {
      await withClient(standbyUrl, async (c) => {
        const { rows } = await c.query('SELECT pg_promote(true, 60) AS promoted');
        if (rows[0].promoted !== true) throw new Error('pg_promote() did not promote the standby in 60 s');
      });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      await exited;
      fs.rmSync(standbyDir, { recursive: true, force: true });
    },
  };
}
