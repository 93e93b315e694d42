import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { withClient } from '../test/support/pg';
import { bundledInstallDir, findFreePort, startEmbeddedCluster } from './embedded-postgres';
import { firstClosedDirectory, removeDataDir } from './postgres-placement';

// Cloned into a private directory as root (/root is mode 700): Postgres refuses to run as root, so
// initdb and the server run as the `postgres` account, which cannot enter that directory. The
// cluster must start anyway, and no directory the user owns may have its permissions changed.
// Only root has this problem (anyone else runs Postgres as themselves), so only root runs these.
const asRoot = process.getuid?.() === 0 ? describe : describe.skip;

const mode = (p: string) => fs.statSync(p).mode & 0o777;
const postgresUid = () => Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }));

asRoot('an embedded cluster started by root from a mode-700 directory', () => {
  let privateDir: string;
  const tmpMode = mode(os.tmpdir());

  beforeEach(() => {
    privateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-private-'));
    fs.chmodSync(privateDir, 0o700);
  });

  afterEach(() => removeDataDir(privateDir));

  it('keeps its data outside, linked from the data directory, and loosens nothing', async () => {
    const dataDir = path.join(privateDir, '.totes', 'source');
    const notices: string[] = [];
    let cluster = await startEmbeddedCluster({ dataDir, onNotice: (m) => notices.push(m) });
    try {
      await withClient(cluster.url, (c) => c.query('CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)'));
    } finally {
      await cluster.stop();
    }
    expect(mode(privateDir)).toBe(0o700);
    expect(mode(os.tmpdir())).toBe(tmpMode);
    // The data lives where the postgres account can reach it; the data directory links to it.
    expect(fs.lstatSync(dataDir).isSymbolicLink()).toBe(true);
    const real = fs.realpathSync(dataDir);
    expect(real.startsWith(privateDir)).toBe(false);
    expect(fs.statSync(real).uid).toBe(postgresUid());
    expect(firstClosedDirectory(path.dirname(real), { uid: postgresUid(), gid: 0 })).toBeNull();
    expect(notices.join('\n')).toContain(real);

    // A restart finds the same cluster through the link.
    cluster = await startEmbeddedCluster({ dataDir });
    try {
      const rows = await withClient(cluster.url, async (c) => (await c.query('SELECT n FROM kept')).rows);
      expect(rows).toEqual([{ n: 7 }]);
    } finally {
      await cluster.stop();
    }
    expect(mode(privateDir)).toBe(0o700);

    removeDataDir(privateDir);
    expect(fs.existsSync(real)).toBe(false);
  });

  it('runs binaries installed in a private directory from a copy the postgres account can reach', async () => {
    // What `npm ci` in /root/project leaves: the Postgres binaries under a directory closed to others.
    const installDir = path.join(privateDir, 'node_modules', 'native');
    fs.cpSync(bundledInstallDir(), installDir, { recursive: true, verbatimSymlinks: true });
    const notices: string[] = [];
    const cluster = await startEmbeddedCluster({
      dataDir: path.join(privateDir, 'pg'),
      installDir,
      onNotice: (m) => notices.push(m),
    });
    try {
      const version = await withClient(cluster.url, async (c) => (await c.query('SHOW server_version')).rows);
      expect(version).toHaveLength(1);
    } finally {
      await cluster.stop();
      // A copy of this test's own (its files' mtimes are new), not one a later start could reuse.
      if (cluster.installDir !== installDir) fs.rmSync(cluster.installDir, { recursive: true });
    }
    expect(mode(privateDir)).toBe(0o700);
    expect(cluster.installDir.startsWith(privateDir)).toBe(false);
    expect(notices.join('\n')).toContain(`copied the Postgres binaries to ${cluster.installDir}`);
  });

  it('stops with a message saying what to do when an existing cluster is out of its reach', async () => {
    // A cluster created where the postgres account could reach it, then moved into the private directory.
    const open = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-open-'));
    fs.chmodSync(open, 0o755);
    try {
      const cluster = await startEmbeddedCluster({ dataDir: path.join(open, 'pg') });
      await cluster.stop();
      fs.renameSync(path.join(open, 'pg'), path.join(privateDir, 'pg'));
    } finally {
      fs.rmSync(open, { recursive: true, force: true });
    }
    await expect(startEmbeddedCluster({ dataDir: path.join(privateDir, 'pg') })).rejects.toThrow(
      new RegExp(`cannot enter ${privateDir} \\(mode 0700[^]*--data-dir`),
    );
    expect(mode(privateDir)).toBe(0o700);
  });
});

describe('a cluster on a port of its own choosing', () => {
  it('picks another port when the one it found is taken before Postgres binds it', async () => {
    // Another process (a test, kinesalite, s3rver: all bind port 0) takes the port between the
    // moment it was found free and the moment Postgres binds it.
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    const taken = (squatter.address() as net.AddressInfo).port;
    const offered = [taken];
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-port-'));
    const logs: string[] = [];
    let cluster: Awaited<ReturnType<typeof startEmbeddedCluster>> | undefined;
    try {
      cluster = await startEmbeddedCluster({
        dataDir: path.join(dir, 'pg'),
        freePort: async () => offered.shift() ?? findFreePort(),
        onLog: (l) => logs.push(l),
      });
      expect(cluster.port).not.toBe(taken);
      const one = await withClient(cluster.url, async (c) => (await c.query('SELECT 1 AS one')).rows[0].one);
      expect(one).toBe(1);
      expect(logs.join('\n')).toContain(`port ${taken} was taken before Postgres could bind it`);
    } finally {
      await cluster?.stop();
      squatter.close();
      removeDataDir(dir);
    }
  });
});

describe('firstClosedDirectory', () => {
  const account = { uid: 101, gid: 104 };
  const tree: Record<string, { uid: number; gid: number; mode: number }> = {
    '/': { uid: 0, gid: 0, mode: 0o755 },
    '/root': { uid: 0, gid: 0, mode: 0o700 },
    '/root/p': { uid: 0, gid: 0, mode: 0o755 },
    '/srv': { uid: 0, gid: 104, mode: 0o750 },
    '/srv/own': { uid: 101, gid: 0, mode: 0o705 },
    '/srv/own/x': { uid: 101, gid: 0, mode: 0o070 },
  };
  const stat = (p: string) => {
    const st = tree[p];
    if (!st) throw Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
    return st;
  };

  it('names the first directory on the way that the account may not enter', () => {
    expect(firstClosedDirectory('/root/p', account, stat)).toBe('/root');
    expect(firstClosedDirectory('/', account, stat)).toBeNull();
  });

  it('reads the owner bits for the owner and the group bits for the primary group, as the kernel does', () => {
    expect(firstClosedDirectory('/srv/own', account, stat)).toBeNull();
    // The owner class applies to the owner even where the group or other bits would allow it.
    expect(firstClosedDirectory('/srv/own/x', account, stat)).toBe('/srv/own/x');
    expect(firstClosedDirectory('/srv', { uid: 102, gid: 1 }, stat)).toBe('/srv');
  });

  it('stops at the first directory that does not exist yet', () => {
    expect(firstClosedDirectory('/srv/own/missing/deeper', account, stat)).toBeNull();
  });
});
