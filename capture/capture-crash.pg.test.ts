import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { ensureStream, kinesisClientFor, startKinesalite, type LocalKinesis } from '../local/kinesalite';
import { StreamCollector } from '../test/support/kinesis';
import { createTestDatabase, waitFor, withClient } from '../test/support/pg';

// The capture process for real (`totes capture`), killed with SIGKILL in the middle of a large
// transaction: after a restart every committed change is in the stream, and a change seen twice
// carries the same identity both times.

const ROWS = 100_000;
let kinesis: LocalKinesis;
let client: KinesisClient;
let dir: string;

beforeAll(async () => {
  kinesis = await startKinesalite();
  client = kinesisClientFor(kinesis.endpoint);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-crash-'));
});

afterAll(async () => {
  client.destroy();
  await kinesis.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function startCaptureProcess(url: string): ChildProcess {
  const child = spawn(process.execPath, [path.join(__dirname, '..', 'bin', 'totes.js'), 'capture'], {
    env: {
      ...process.env,
      TOTES_SOURCE_URL: url,
      TOTES_STREAM_NAME: 'crash',
      TOTES_KINESIS_ENDPOINT: kinesis.endpoint,
      TOTES_TABLES: 'big',
      TOTES_SLOT: 'crash_slot',
      TOTES_PUBLICATION: 'crash_pub',
      TOTES_STATE_FILE: path.join(dir, 'state.json'),
      // Small flushes make the 100k-row transaction take many puts, so the kill lands mid-way.
      TOTES_FLUSH_BYTES: String(64 * 1024),
      TOTES_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr!.on('data', (d) => process.stderr.write(`[capture] ${d}`));
  return child;
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
}

it('loses nothing when capture is killed with SIGKILL inside a 100,000-row transaction', async () => {
  const url = await createTestDatabase('capture_crash');
  await withClient(url, (c) => c.query('CREATE TABLE big (id int PRIMARY KEY, pad text)'));
  await ensureStream(client, 'crash', 2);
  const collector = new StreamCollector(client, 'crash');

  let child = startCaptureProcess(url);
  await waitFor(
    'the snapshot to complete',
    () => {
      if (child.exitCode !== null) throw new Error(`capture exited with ${child.exitCode}`);
      const file = path.join(dir, 'state.json');
      return fs.existsSync(file) && JSON.parse(fs.readFileSync(file, 'utf8')).snapshotCompletedAt
        ? true
        : undefined;
    },
    30_000,
  );
  await withClient(url, (c) =>
    c.query(`INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, ${ROWS}) g`),
  );
  await waitFor(
    'part of the transaction in Kinesis',
    async () => {
      await collector.poll();
      return collector.ofTable('big').length > 0 ? true : undefined;
    },
    30_000,
    5,
  );
  child.kill('SIGKILL');
  await exited(child);
  await collector.poll();
  const beforeRestart = new Set(collector.ofTable('big').map((c) => c.row.id)).size;
  expect(beforeRestart).toBeLessThan(ROWS); // the kill really landed mid-transaction

  child = startCaptureProcess(url);
  await withClient(url, (c) => c.query("INSERT INTO big VALUES (0, 'after restart')"));
  await waitFor(
    'every row after the restart',
    async () => {
      await collector.poll();
      return new Set(collector.ofTable('big').map((c) => c.row.id)).size === ROWS + 1 ? true : undefined;
    },
    // A deadline, not a tolerance: the whole file took 19 s in a CI run, but 100,000 rows
    // through 64 KiB puts took 52 s of a 60 s budget at load average 20 and once ran out.
    150_000,
  );
  child.kill('SIGTERM');
  expect(await exited(child)).toBe(0);

  const byId = new Map<string, Set<string>>();
  for (const c of collector.ofTable('big')) {
    const ids = byId.get(c.row.id!) ?? new Set<string>();
    ids.add(`${c.lsn}/${c.seq}/${c.op}/${c.row.pad}`);
    byId.set(c.row.id!, ids);
  }
  expect(byId.size).toBe(ROWS + 1);
  // Duplicates (the part re-sent after the crash) carry exactly the same identity and values.
  expect([...byId.values()].filter((versions) => versions.size > 1)).toEqual([]);
  expect(collector.ofTable('big').length).toBeGreaterThan(ROWS); // some were delivered twice
}, 240_000);
