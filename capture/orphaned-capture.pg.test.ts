import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { ensureStream, kinesisClientFor, startKinesalite, type LocalKinesis } from '../local/kinesalite';
import { createTestDatabase, waitFor, withClient } from '../test/support/pg';

// `totes up` killed with SIGKILL leaves its capture child running (the Supervisor starts it in its
// own process group). That orphan has nothing left to deliver to, yet a drain waits on Kinesis, and
// its walsender then holds the source's fast shutdown on the next `totes up` (CI's pipeline e2e,
// session 4). The capture must notice its parent is gone, end its replication connection and exit.
// Kinesis here accepts and never answers once the parent is killed: a drain would wait 20 attempts
// of 30 s request timeouts (KINESIS_SINK_DEFAULTS, aws/request-handler.ts) before giving up.

const SLOT = 'orphan_slot';
let kinesis: LocalKinesis;
let gate: KinesisGate;
let dir: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-orphan-'));
  kinesis = await startKinesalite();
  const client = kinesisClientFor(kinesis.endpoint);
  await ensureStream(client, 'orphan', 1).finally(() => client.destroy());
  gate = await startKinesisGate(kinesis.endpoint);
});

afterAll(async () => {
  await gate.stop();
  await kinesis.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

interface KinesisGate {
  endpoint: string;
  /** From now on requests are taken and never answered. */
  hold(): void;
  /** Requests held so far. */
  readonly held: number;
  stop(): Promise<void>;
}

/** A proxy to kinesalite that can start holding every request: a Kinesis that no longer answers. */
async function startKinesisGate(target: string): Promise<KinesisGate> {
  const { hostname, port } = new URL(target);
  let holding = false;
  let held = 0;
  const server = http.createServer((req, res) => {
    if (holding) {
      held += 1;
      return;
    }
    const upstream = http.request(
      { host: hostname, port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.once('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hold: () => {
      holding = true;
    },
    get held() {
      return held;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Whether `pid` still runs. Its parent gone, nothing may reap it: a zombie counts as exited. */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`the parent exited with ${code}`)));
  });
}

it('ends its replication connection and exits when its parent is killed with SIGKILL', async () => {
  const url = await createTestDatabase('orphaned_capture');
  await withClient(url, async (c) => {
    await c.query('CREATE TABLE t (id int PRIMARY KEY)');
    // The walsender would otherwise end the orphan's connection itself after the default 60 s of
    // silence from a client that stopped reading; a source may set it longer, or off (0).
    await c.query(`ALTER DATABASE ${c.database} SET wal_sender_timeout = '1h'`);
  });
  const walsenders = () =>
    withClient(url, async (c) =>
      Number(
        (
          await c.query('SELECT count(*) AS n FROM pg_stat_replication WHERE application_name = $1', [
            `totes-capture:${SLOT}`,
          ])
        ).rows[0].n,
      ),
    );

  const parent = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(__dirname, 'orphaned-capture.fixtures.ts')],
    {
      env: {
        ...process.env,
        TOTES_SOURCE_URL: url,
        TOTES_STREAM_NAME: 'orphan',
        TOTES_KINESIS_ENDPOINT: gate.endpoint,
        TOTES_TABLES: 't',
        TOTES_SLOT: SLOT,
        TOTES_PUBLICATION: 'orphan_pub',
        TOTES_STATE_FILE: path.join(dir, 'state.json'),
        TOTES_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const parentExited = new Promise((resolve) => parent.once('exit', resolve));
  let pid = 0;
  try {
    pid = (JSON.parse(await firstLine(parent)) as { pid: number }).pid;
    await waitFor(
      'capture streaming',
      async () => {
        if (!running(pid)) throw new Error('capture exited');
        return (await walsenders()) === 1 ? true : undefined;
      },
      30_000,
    );
    // From now on Kinesis takes requests and never answers: a change is left undeliverable.
    gate.hold();
    await withClient(url, (c) => c.query('INSERT INTO t SELECT generate_series(1, 100)'));
    await waitFor('a put held by Kinesis', () => (gate.held > 0 ? true : undefined), 30_000);

    parent.kill('SIGKILL');
    await parentExited;
    // Deadlines well under what the orphan took before: it drained into a Kinesis that never
    // answers, 20 attempts of 30 s request timeouts, its walsender up all that time.
    await waitFor('the orphaned capture to exit', () => (running(pid) ? undefined : true), 60_000);
    await waitFor(
      'its walsender to end',
      async () => ((await walsenders()) === 0 ? true : undefined),
      30_000,
    );
  } finally {
    parent.kill('SIGKILL');
    if (pid && running(pid)) process.kill(pid, 'SIGKILL');
  }
}, 180_000);
