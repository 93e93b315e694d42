import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { silentLogger } from '../core/logger';
import { createHandler } from '../processors/firehose-transform/create-handler';
import type {
  FirehoseTransformationEvent,
  FirehoseTransformationResult,
} from '../processors/firehose-transform/firehose-types';
import type { StageFactory } from '../local/stage-factories';
import { StageWorkers } from '../local/stage-workers';
import { stagesOf } from './profile-stages';
import { buildWorkload } from './transform';

/**
 * `node --import tsx bench/firehose-worker.ts`: the record transformation as `totes up` runs it —
 * on a stage worker thread, invoked over postMessage with the events the local delivery stream
 * builds (1 MiB invocations of capture-shaped records) — measured two ways at once: the worker
 * thread's own CPU time (utime + stime of /proc/thread-self/stat, what the kernel charged the
 * thread) and the V8 CPU profile bench:pipeline takes of it (bench/profile-stages.ts). `--hogs N`
 * runs N busy loops meanwhile, as a loaded machine does to the stack.
 *
 * Options: --copies N (2), --changes-per-record N (100), --hogs N (0), --in-process (also time the
 * handler on the main thread).
 */

const TICKS_PER_SECOND = 100; // USER_HZ, 100 on Linux

/** CPU seconds the kernel charged the calling thread (Linux). */
export function threadCpuSeconds(): number {
  const stat = fs.readFileSync('/proc/thread-self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of proc(5), counted from 3 here (state) after the command's closing parenthesis.
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** bench:pipeline's default sampling interval. */
const PROFILE_INTERVAL_US = 2000;

const CPU_PROBE = { totesBenchThreadCpu: true };

/** The stage on the worker: the real handler with an S3 that has every schema object already. */
export const firehoseBenchStage: StageFactory<unknown> = () => {
  const handler = createHandler({
    s3: { send: async () => ({}) } as never,
    bucket: 'bench',
    logger: silentLogger,
  });
  return {
    handler: async (event: unknown) =>
      (event as typeof CPU_PROBE).totesBenchThreadCpu ? threadCpuSeconds() : handler(event),
    close: async () => undefined,
  };
};

/** As local/delivery-stream.ts builds them: Kinesis metadata on each record, ≤ 1 MiB of base64. */
function events(records: Buffer[]): FirehoseTransformationEvent[] {
  const out: FirehoseTransformationEvent[] = [];
  let current: FirehoseTransformationEvent | undefined;
  let bytes = 0;
  for (const [i, data] of records.entries()) {
    const size = Math.ceil(data.byteLength / 3) * 4;
    if (!current || (current.records.length > 0 && bytes + size > 1024 * 1024)) {
      current = {
        invocationId: `bench-${out.length}`,
        deliveryStreamArn: 'arn:aws:firehose:eu-west-2:000000000000:deliverystream/bench',
        sourceKinesisStreamArn: 'arn:aws:kinesis:eu-west-2:000000000000:stream/bench',
        region: 'eu-west-2',
        records: [],
      };
      out.push(current);
      bytes = 0;
    }
    const sequenceNumber = String(49_000_000_000_000_000_000n + BigInt(i));
    current.records.push({
      recordId: `${sequenceNumber}000000`,
      approximateArrivalTimestamp: 1_764_600_000_000,
      data: data.toString('base64'),
      kinesisRecordMetadata: {
        shardId: 'shardId-000000000000',
        partitionKey: 'public.sales_order',
        approximateArrivalTimestamp: 1_764_600_000_000,
        sequenceNumber,
        subsequenceNumber: 0,
      },
    });
    bytes += size;
  }
  return out;
}

/** What the delivery stream does with a result: each record's data back to bytes. */
function consume(result: FirehoseTransformationResult): number {
  let n = 0;
  for (const r of result.records) n += Buffer.from(r.data, 'base64').byteLength;
  return n;
}

async function main(): Promise<void> {
  const { values: args } = parseArgs({
    options: {
      copies: { type: 'string', default: '2' },
      'changes-per-record': { type: 'string', default: '100' },
      hogs: { type: 'string', default: '0' },
      'in-process': { type: 'boolean', default: false },
    },
  });
  const workload = buildWorkload(Number(args.copies), Number(args['changes-per-record']));
  const evs = events(workload.records);
  const perChange = (s: number) => ((s * 1e6) / workload.changes).toFixed(1);
  const out = (line: string) => process.stdout.write(`${line}\n`);
  out(
    `${workload.changes} changes, ${workload.records.length} records, ${evs.length} invocations; load average ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`,
  );

  const pool = await StageWorkers.start({
    stage: 'firehose-transform',
    module: __filename,
    factory: 'firehoseBenchStage',
    options: {},
    logger: silentLogger,
  });
  const hogs: ChildProcess[] = [];
  try {
    // Warm-up: one pass, so both sides run optimised code.
    for (const e of evs) consume((await pool.handler(e)) as FirehoseTransformationResult);
    for (let i = 0; i < Number(args.hogs); i++)
      hogs.push(spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }));
    const workerBefore = (await pool.handler(CPU_PROBE)) as number;
    const mainBefore = threadCpuSeconds();
    const wallBefore = process.hrtime.bigint();
    pool.startProfile(PROFILE_INTERVAL_US);
    for (const e of evs) consume((await pool.handler(e)) as FirehoseTransformationResult);
    const [{ profile }] = await pool.stopProfile();
    const wall = Number(process.hrtime.bigint() - wallBefore) / 1e9;
    const mainCpu = threadCpuSeconds() - mainBefore;
    const workerCpu = ((await pool.handler(CPU_PROBE)) as number) - workerBefore;
    for (const h of hogs.splice(0)) h.kill();
    const stages = stagesOf(profile!);
    const busy = stages.filter((s) => s.stage !== 'idle').reduce((sum, s) => sum + s.seconds, 0);
    const fh = stages.find((s) => s.stage === 'firehose record transformation')?.seconds ?? 0;
    out(`hogs ${args.hogs}; wall ${wall.toFixed(2)} s`);
    out(`worker thread CPU (kernel):            ${perChange(workerCpu)} µs/change`);
    out(`worker profile busy (whole deltas):    ${perChange(busy)} µs/change`);
    out(`worker profile "firehose record transformation": ${perChange(fh)} µs/change`);
    out(`main thread CPU (invoke, clone, base64 back): ${perChange(mainCpu)} µs/change`);
    const cpu = stagesOf(profile!, PROFILE_INTERVAL_US);
    const busyCpu = cpu.filter((s) => s.share > 0).reduce((sum, s) => sum + s.seconds, 0);
    const fhCpu = cpu.find((s) => s.stage === 'firehose record transformation')?.seconds ?? 0;
    out(`worker profile busy, waits left out:   ${perChange(busyCpu)} µs/change`);
    out(`  "firehose record transformation", waits left out: ${perChange(fhCpu)} µs/change`);
    for (const s of stages.slice(0, 6)) out(`  ${s.stage}: ${perChange(s.seconds)} µs/change`);
    if (args['in-process']) {
      const handler = createHandler({ s3: { send: async () => ({}) } as never, bucket: 'b' });
      for (const e of evs) consume(await handler(e));
      const before = threadCpuSeconds();
      for (const e of evs) consume(await handler(e));
      out(`in process (main thread CPU):          ${perChange(threadCpuSeconds() - before)} µs/change`);
    }
  } finally {
    for (const h of hogs) h.kill();
    await pool.stop();
  }
}

if (require.main === module)
  main().catch((e) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
