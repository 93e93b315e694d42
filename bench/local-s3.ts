import { GetObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { mapOverlapped } from '../core/map-overlapped';
import { s3ClientFor } from '../local/s3rver';
import { benchArgsOrExit, BenchUsageError, positiveInt } from './options';
import { median } from './timing';

/**
 * `npm run bench:local-s3`: the CPU the local stack's main thread spends per S3 request (s3rver, as
 * local/s3rver.ts serves it) and per load-queue message (local/durable-queue.ts), for this checkout
 * and, in the same run, another one (`--baseline DIR`, e.g. a worktree of main): rounds alternate
 * the two. Each side runs in a child process of its own, serving from a fresh data directory on the
 * file system `--dir` is on (ext4 and tmpfs differ several-fold in the cost of creating a file).
 *
 * Per operation, two figures of the serving process: its CPU time (all its threads: libuv's pool
 * does the asynchronous fs calls) and the time its main thread was busy (event-loop utilisation),
 * which is what every other request on the stack's main thread waits behind. The S3 requests come
 * from this process (an SDK client, 4 at a time, with the pipeline's kind of metadata); the queue
 * runs inside the child, as it does on the stack.
 */

const HELP = `Usage: npm run bench:local-s3 -- [options]

CPU per S3 request of the local s3rver and per message of the local durable queue, for this
checkout and (--baseline) another in the same run, rounds alternating. See bench/README.md.

Options:
  --baseline DIR  another checkout (with node_modules) to measure alongside this one
  --rounds N      rounds; each measures every checkout once (default 3)
  --objects N     objects PUT, then GET, then HEAD, per size (default 300)
  --sizes LIST    object sizes in KiB, comma-separated (default 1,10,100,1000)
  --messages N    queue messages sent, received and deleted (default 2000)
  --dir DIR       where the data directories go (default the OS temp dir)
  --cpu-profile DIR  write a V8 CPU profile of each serving child to DIR (profiling slows it)
  -h, --help      show this help
`;

interface Options {
  baseline: string | null;
  rounds: number;
  objects: number;
  sizesKiB: number[];
  messages: number;
  dir: string;
  cpuProfileDir: string | null;
}

/** What the child reports: its CPU so far and its main thread's event-loop utilisation. */
interface Usage {
  cpuUs: number;
  elu: { idle: number; active: number; utilization: number };
}

type Request = { kind: 'usage' } | { kind: 'queue'; messages: number } | { kind: 'stop' };

const CHILD_ROOT = process.env.TOTES_BENCH_LOCAL_S3_ROOT;

type Sample = Record<string, { cpuUs: number; mainUs: number }>;

function usage(): Usage {
  const { user, system } = process.cpuUsage();
  return { cpuUs: user + system, elu: performance.eventLoopUtilization() };
}

/** Per operation between two usages: CPU µs and main-thread busy µs. */
function perOp(before: Usage, after: Usage, ops: number): { cpuUs: number; mainUs: number } {
  const busy = performance.eventLoopUtilization(after.elu, before.elu).active * 1000;
  return { cpuUs: (after.cpuUs - before.cpuUs) / ops, mainUs: busy / ops };
}

// A notification body of the size the load queue carries (the trigger sends one record per message).
function messageBody(i: number): string {
  const bucket = 'totes-processed';
  const object = {
    key: `fact_sales_order/2026/12/03/09/${i.toString(16).padStart(32, '0')}.parquet`,
    size: 36438,
    eTag: '"0123456789abcdef0123456789abcdef"',
    sequencer: '0',
  };
  const s3 = {
    s3SchemaVersion: '1.0',
    configurationId: 'local',
    bucket: { name: bucket, arn: `arn:aws:s3:::${bucket}` },
    object,
  };
  const at = { eventTime: new Date().toISOString(), awsRegion: 'us-east-1' };
  return JSON.stringify({
    Records: [{ eventVersion: '2.1', eventSource: 'aws:s3', ...at, eventName: 'ObjectCreated:Put', s3 }],
  });
}

/** The child: serves S3 from `root`'s local/s3rver.ts and runs `root`'s durable queue on request. */
async function serve(root: string): Promise<void> {
  const dataDir = fs.mkdtempSync(path.join(process.env.TOTES_BENCH_LOCAL_S3_DIR ?? os.tmpdir(), 'local-s3-'));
  const { startS3rver } = (await import(
    path.join(root, 'local/s3rver.ts')
  )) as typeof import('../local/s3rver');
  const { DurableQueue } = (await import(
    path.join(root, 'local/durable-queue.ts')
  )) as typeof import('../local/durable-queue');
  const s3 = await startS3rver({ dataDir: path.join(dataDir, 's3'), buckets: ['bench'] });
  const queue = new DurableQueue({
    dir: path.join(dataDir, 'queue'),
    deadLetterFile: path.join(dataDir, 'queue.dead-letter.jsonl'),
    visibilityTimeoutMs: 30_000,
    maxReceiveCount: 100,
  });
  process.on('message', (request: Request) => {
    void (async () => {
      if (request.kind === 'usage') process.send!(usage());
      else if (request.kind === 'queue') process.send!(await queueRun(queue, request.messages));
      else {
        await s3.stop();
        fs.rmSync(dataDir, { recursive: true, force: true });
        process.send!('stopped', () => process.exit(0));
      }
    })();
  });
  process.send!({ endpoint: s3.endpoint });
}

/**
 * The load queue's traffic in a steady flow: ten messages sent one by one (as S3 notifications
 * arrive), received ten at a time while the previous batch is held (its invocation running), and
 * that batch deleted; then the depth the stack's status asks for, with ~100 messages waiting.
 */
async function queueRun(
  queue: InstanceType<typeof import('../local/durable-queue').DurableQueue>,
  messages: number,
): Promise<Sample> {
  const spent = {
    send: { cpuUs: 0, mainUs: 0 },
    receive: { cpuUs: 0, mainUs: 0 },
    delete: { cpuUs: 0, mainUs: 0 },
  };
  const timed = async (name: keyof typeof spent, fn: () => Promise<unknown>) => {
    const before = usage();
    await fn();
    const d = perOp(before, usage(), 1);
    spent[name].cpuUs += d.cpuUs;
    spent[name].mainUs += d.mainUs;
  };
  const held = new Set<string>();
  let previous: Awaited<ReturnType<typeof queue.receive>> = [];
  for (let sent = 0; sent < messages;) {
    await timed('send', async () => {
      for (let i = 0; i < 10; i++) await queue.send(messageBody(sent++));
    });
    let batch: typeof previous = [];
    await timed('receive', async () => (batch = await queue.receive(10, held)));
    for (const m of batch) held.add(m.messageId);
    await timed('delete', async () => {
      for (const m of previous) {
        held.delete(m.messageId);
        await queue.delete(m.receiptHandle);
      }
    });
    previous = batch;
  }
  for (const m of previous) await queue.delete(m.receiptHandle);
  const out: Sample = {};
  for (const [name, total] of Object.entries(spent))
    out[name] = { cpuUs: total.cpuUs / messages, mainUs: total.mainUs / messages };
  for (let i = 0; i < 100; i++) await queue.send(messageBody(i));
  const depths = 200;
  const before = usage();
  for (let i = 0; i < depths; i++) await queue.depth();
  out['depth (100 waiting)'] = perOp(before, usage(), depths);
  return out;
}

class Child {
  private readonly replies: ((value: unknown) => void)[] = [];
  private constructor(private readonly process: ChildProcess) {
    process.on('message', (m) => this.replies.shift()?.(m));
  }

  static async start(root: string, o: Options): Promise<{ child: Child; endpoint: string }> {
    const profile = o.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${o.cpuProfileDir}`] : [];
    const proc = fork(__filename, [], {
      cwd: root,
      execArgv: ['--import', 'tsx', ...profile],
      env: { ...process.env, TOTES_BENCH_LOCAL_S3_ROOT: root, TOTES_BENCH_LOCAL_S3_DIR: o.dir },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const child = new Child(proc);
    const exited = new Promise<never>((_, reject) =>
      proc.once('exit', (code) => reject(new Error(`the ${root} child exited (${code})`))),
    );
    const ready = (await Promise.race([child.next(), exited])) as { endpoint: string };
    return { child, endpoint: ready.endpoint };
  }

  private next(): Promise<unknown> {
    return new Promise((resolve) => this.replies.push(resolve));
  }

  ask<T>(request: Request): Promise<T> {
    const reply = this.next();
    this.process.send(request);
    return reply as Promise<T>;
  }
}

/** One checkout's run: PUT, GET, HEAD per size, then the queue. */
async function measure(root: string, o: Options): Promise<Sample> {
  const { child, endpoint } = await Child.start(root, o);
  const client = s3ClientFor(endpoint);
  const sample: Sample = {};
  const phase = async (name: string, ops: number, fn: (i: number) => Promise<unknown>) => {
    const before = await child.ask<Usage>({ kind: 'usage' });
    // Four requests at once, as the stages' clients keep several in flight.
    await mapOverlapped(
      Array.from({ length: ops }, (_, i) => i),
      4,
      fn,
    );
    sample[name] = perOp(before, await child.ask<Usage>({ kind: 'usage' }), ops);
  };
  try {
    for (const kib of o.sizesKiB) {
      const body = Buffer.alloc(kib * 1024, 'a,b,c\n');
      const objects = Math.max(10, Math.round(o.objects / Math.max(1, kib / 100)));
      const key = (i: number) => `star/2026/12/03/09/${kib}k-${i}.parquet`;
      await phase(`PUT ${kib} KiB`, objects, (i) =>
        client.send(
          new PutObjectCommand({
            Bucket: 'bench',
            Key: key(i),
            Body: body,
            ContentType: 'application/vnd.apache.parquet',
            Metadata: { 'source-bucket': 'totes-ingestion', 'rejected-changes': '0' },
          }),
        ),
      );
      await phase(`GET ${kib} KiB`, objects, async (i) => {
        const res = await client.send(new GetObjectCommand({ Bucket: 'bench', Key: key(i) }));
        const got = await res.Body!.transformToByteArray();
        if (got.length !== body.length) throw new Error(`GET ${key(i)}: ${got.length} bytes`);
      });
      await phase(`HEAD ${kib} KiB`, objects, (i) =>
        client.send(new HeadObjectCommand({ Bucket: 'bench', Key: key(i) })),
      );
    }
    Object.assign(sample, await child.ask<Sample>({ kind: 'queue', messages: o.messages }));
  } finally {
    client.destroy();
    await child.ask({ kind: 'stop' });
  }
  return sample;
}

function readOptions(): Options {
  return benchArgsOrExit(
    {
      baseline: { type: 'string' },
      rounds: { type: 'string' },
      objects: { type: 'string' },
      sizes: { type: 'string' },
      messages: { type: 'string' },
      dir: { type: 'string' },
      'cpu-profile': { type: 'string' },
    },
    HELP,
    (values) => {
      const baseline = values.baseline ? path.resolve(values.baseline) : null;
      if (baseline && !fs.existsSync(path.join(baseline, 'local/s3rver.ts')))
        throw new BenchUsageError(`--baseline ${values.baseline} is not a checkout of this repository`);
      const sizesKiB = (values.sizes ?? '1,10,100,1000').split(',').map((s) => positiveInt('sizes', s, 1));
      return {
        baseline,
        rounds: positiveInt('rounds', values.rounds, 3),
        objects: positiveInt('objects', values.objects, 300),
        sizesKiB,
        messages: positiveInt('messages', values.messages, 2000),
        dir: path.resolve(values.dir ?? os.tmpdir()),
        cpuProfileDir: values['cpu-profile'] ? path.resolve(values['cpu-profile']) : null,
      };
    },
  );
}

async function main(): Promise<void> {
  const o = readOptions();
  const here = path.resolve(__dirname, '..');
  const sides = o.baseline ? { baseline: o.baseline, 'this checkout': here } : { 'this checkout': here };
  const samples = new Map<string, Sample[]>(Object.keys(sides).map((name) => [name, []]));
  for (let round = 0; round < o.rounds; round++) {
    // Alternate which side goes first, so drift within a round favours neither.
    const order = Object.entries(sides);
    if (round % 2 === 1) order.reverse();
    for (const [name, root] of order) {
      process.stderr.write(`round ${round + 1}/${o.rounds}: ${name} (${root})\n`);
      samples.get(name)!.push(await measure(root, o));
    }
  }
  const names = [...samples.keys()];
  const operations = Object.keys(samples.get(names[0])![0]);
  const fmt = (n: number) => n.toFixed(0).padStart(7);
  process.stdout.write(
    `local S3 and queue, µs per operation (median of ${o.rounds} rounds; data dirs under ${o.dir}; ` +
      `${new Date().toISOString()})\n` +
      `${'operation'.padEnd(22)}${names.map((n) => `${n} cpu / main`.padStart(30)).join('')}\n`,
  );
  for (const op of operations) {
    const cells = names.map((n) => {
      const s = samples.get(n)!.map((x) => x[op]);
      const all = s.map((x) => `${x.cpuUs.toFixed(0)}/${x.mainUs.toFixed(0)}`).join(' ');
      return `${fmt(median(s.map((x) => x.cpuUs)))} /${fmt(median(s.map((x) => x.mainUs)))} [${all}]`.padStart(
        30,
      );
    });
    process.stdout.write(`${op.padEnd(22)}${cells.join('  ')}\n`);
  }
}

if (CHILD_ROOT) void serve(CHILD_ROOT);
else
  main().catch((e: unknown) => {
    process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  });
