import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { LogicalReplicationService } from 'pg-logical-replication';
import type { StreamMessage } from '../capture/pgoutput-rows';
import { RawTextPgoutputPlugin } from '../capture/replication-stream';
import { normaliseLsn, type Lsn } from '../core/lsn';
import { ownCpuSeconds, type RunCpu } from './cpu';

/**
 * The ceiling capture is measured against: readers that take the same pgoutput stream (protocol 1,
 * same publication, logical messages on, as capture asks for it) and throw every message away.
 */

interface RawReading {
  seconds: number;
  changes: number;
  transactions: number;
  cpu: RunCpu;
}

interface SlotToRead {
  url: string;
  slot: string;
  publication: string;
}

/**
 * Reads through pg-logical-replication, with the plugin capture uses (values kept as the text
 * Postgres sent), so the ratio to capture isolates capture's own work: change events, batching,
 * JSON, Kinesis and acknowledgement. Timed from START_REPLICATION (the library's `start` event)
 * until the commit that follows the `expectedChanges`-th change arrives; that commit's end LSN is the
 * workload's end, which the other readers are timed to.
 */
export function readWithLibrary(
  slot: SlotToRead,
  expectedChanges: number,
  timeoutMs: number,
  walsenderCpu: () => Promise<number | null>,
): Promise<RawReading & { endLsn: Lsn }> {
  const service = new LogicalReplicationService(
    { connectionString: slot.url, application_name: 'totes-bench-raw' },
    { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
  );
  const plugin = new RawTextPgoutputPlugin({
    protoVersion: 1,
    publicationNames: [slot.publication],
    messages: true,
  });
  return new Promise((resolve, reject) => {
    let startedAt = 0;
    let cpuAtStart = 0;
    let changes = 0;
    let transactions = 0;
    let settled = false;
    const timer = setTimeout(
      () => finish(new Error(`raw reader saw ${changes} of ${expectedChanges} changes in ${timeoutMs} ms`)),
      timeoutMs,
    );
    const finish = (error: Error | null, endLsn?: Lsn) => {
      if (settled) return;
      settled = true;
      const seconds = (performance.now() - startedAt) / 1000;
      const bench = ownCpuSeconds() - cpuAtStart;
      clearTimeout(timer);
      // The walsender's CPU is read while it still runs, i.e. before disconnecting.
      const walsender = error ? Promise.resolve(null) : walsenderCpu().catch(() => null);
      void walsender
        .then(() => service.stop())
        // The reading is complete whether or not the connection closes cleanly.
        .catch(() => undefined)
        .then(async () => {
          if (error) return reject(error);
          const cpu = { walsender: await walsender, bench, kinesalite: null };
          resolve({ seconds, changes, transactions, cpu, endLsn: endLsn! });
        });
    };
    service.on('start', () => {
      startedAt = performance.now();
      cpuAtStart = ownCpuSeconds();
    });
    service.on('data', (_lsn: string, message: StreamMessage) => {
      switch (message.tag) {
        case 'insert':
        case 'update':
        case 'delete':
          changes += 1;
          return;
        case 'commit':
          transactions += 1;
          if (changes >= expectedChanges) finish(null, normaliseLsn(message.commitEndLsn!));
          return;
        default:
          return;
      }
    });
    // Keeps the connection alive (wal_sender_timeout) without confirming anything: the slot is
    // dropped afterwards.
    service.on('heartbeat', (_walEnd: string, _ts: number, shouldRespond: boolean) => {
      if (shouldRespond) void service.acknowledge('0/0');
    });
    service.on('error', (e: Error) => finish(e));
    service.subscribe(plugin, slot.slot).catch((e: Error) => finish(e));
  });
}

/** pg_recvlogical from PATH, else the newest one under /usr/lib/postgresql/<version>/bin. */
export function findPgRecvlogical(): { binary: string; version: string } | null {
  const onPath = (process.env.PATH ?? '')
    .split(path.delimiter)
    .map((dir) => path.join(dir, 'pg_recvlogical'));
  const debian = '/usr/lib/postgresql';
  const versioned = fs.existsSync(debian)
    ? fs
        .readdirSync(debian)
        .sort((a, b) => Number(b) - Number(a))
        .map((v) => path.join(debian, v, 'bin', 'pg_recvlogical'))
    : [];
  for (const binary of [...onPath, ...versioned]) {
    if (!fs.existsSync(binary)) continue;
    const out = spawnSync(binary, ['--version'], { encoding: 'utf8' });
    if (out.status === 0) return { binary, version: out.stdout.trim() };
  }
  return null;
}

/**
 * pg_recvlogical writing to /dev/null, stopping at `endLsn`: it exits as soon as it receives the
 * message whose position is exactly that LSN, which for pgoutput is the last commit (a COMMIT
 * message is sent at its commit record's end). Timed from its verbose "starting log streaming" line,
 * printed just before it sends START_REPLICATION, to its exit. fsync is off: /dev/null cannot be
 * synced and the point is the decoding rate.
 * https://www.postgresql.org/docs/current/app-pgrecvlogical.html
 */
export function readWithPgRecvlogical(
  binary: string,
  slot: SlotToRead,
  endLsn: Lsn,
  timeoutMs: number,
): Promise<{ seconds: number }> {
  const child = spawn(
    binary,
    [
      `--dbname=${slot.url}`,
      `--slot=${slot.slot}`,
      '--start',
      `--endpos=${endLsn}`,
      '--no-loop',
      '--file=/dev/null',
      '--fsync-interval=0',
      '--option=proto_version=1',
      `--option=publication_names=${slot.publication}`,
      '--option=messages=true',
      '--verbose',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return new Promise((resolve, reject) => {
    let startedAt: number | null = null;
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => {
      if (startedAt === null && text.includes('starting log streaming')) startedAt = performance.now();
      stderr += text;
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('exit', (code, signal) => {
      const endedAt = performance.now();
      clearTimeout(timer);
      if (code === 0 && startedAt !== null) resolve({ seconds: (endedAt - startedAt) / 1000 });
      else {
        // Its messages never contain the password: libpq does not echo the connection string.
        const last = stderr.trim().split('\n').slice(-3).join(' | ');
        reject(new Error(`pg_recvlogical exited with ${signal ?? code}: ${last}`));
      }
    });
  });
}
