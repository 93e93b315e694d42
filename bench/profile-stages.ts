import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { indexProfile, type CpuProfile } from './cpu-profile';
import type { ProfileSummary, ThreadProfile } from './stack-protocol';

/**
 * Which pipeline stage a CPU profile of the stack process spent its time in. kinesalite, s3rver,
 * the local Firehose, transform and load all share that process (as `totes up` runs them), so its
 * CPU seconds alone say nothing about which stage limits the pipeline.
 *
 * A sample is charged to the nearest frame on its stack that belongs to a stage (RULES): code of
 * this repository first (processors/load/… is load, whatever package it called: parquetjs decoding
 * under the load handler is load's), else code several stages call or a package only one stage
 * uses (pg is the load's warehouse client, kinesalite is Kinesis). Work started from a socket or a
 * timer has no stage frame on its stack (the AWS SDK parsing a response, say): it is charged to the
 * package at the top of the stack.
 */

export interface StageShare {
  stage: string;
  seconds: number;
  /** Share of the profile's busy (non-idle) time. */
  share: number;
}

export interface TopFrame {
  /** `function (file:line)`; file relative to the repository (no line: see frameOf) or from node_modules/. */
  frame: string;
  /** Self time. */
  seconds: number;
  share: number;
}

const REPO_ROOT = path.resolve(__dirname, '..');

/**
 * Where a frame's code belongs. `strong` frames decide a sample; `weak` ones only when no strong
 * frame is on the stack (code several stages call, and packages one stage uses). `path` is
 * relative to the repository, or starts at the package name for node_modules; `fn` narrows a rule
 * to some functions of the file.
 */
interface Rule {
  path: string;
  fn?: RegExp;
  stage: string;
  strong: boolean;
}

const TRANSFORM_PARQUET = 'transform: Parquet encoding';
const LOAD_PARQUET = 'load: Parquet decoding';
const KINESALITE = 'kinesalite (Kinesis)';
const S3RVER = 's3rver (S3)';

const RULES: readonly Rule[] = [
  // The Parquet codec is shared code; which side of it runs says which stage pays.
  {
    path: 'processors/shared/parquet-codec',
    fn: /^(encodeParquet|toPhysical)$/,
    stage: TRANSFORM_PARQUET,
    strong: true,
  },
  {
    path: 'processors/shared/parquet-codec',
    fn: /^(decodeParquet|fromPhysical)$/,
    stage: LOAD_PARQUET,
    strong: true,
  },
  // The columnar writer and its Thrift writer only ever encode.
  { path: 'processors/shared/parquet-codec-writer', stage: TRANSFORM_PARQUET, strong: true },
  { path: 'processors/shared/parquet-codec-thrift', stage: TRANSFORM_PARQUET, strong: true },
  { path: 'processors/load/', stage: 'load', strong: true },
  { path: 'processors/transform/', stage: 'transform', strong: true },
  { path: 'processors/firehose-transform/', stage: 'firehose record transformation', strong: true },
  { path: 'local/delivery-stream', stage: 'delivery stream (local Firehose)', strong: true },
  { path: 'local/s3-trigger', stage: 'S3 → Lambda triggers', strong: true },
  { path: 'local/s3rver', stage: S3RVER, strong: true },
  { path: 'local/kinesalite', stage: KINESALITE, strong: true },
  { path: 'processors/shared/', stage: 'shared by transform and load (S3 objects, Parquet)', strong: false },
  { path: 'core/', stage: 'core (CSV codec, star mapping, SQL), caller unknown', strong: false },
  // @dsnp/parquetjs (parquetjs-lite before it): shredding and writing is encoding, reading is decoding.
  ...['@dsnp/parquetjs/dist/lib/', 'parquetjs-lite/lib/'].flatMap((lib) => [
    { path: `${lib}shred`, stage: TRANSFORM_PARQUET, strong: false },
    { path: `${lib}writer`, stage: TRANSFORM_PARQUET, strong: false },
    { path: `${lib}reader`, stage: LOAD_PARQUET, strong: false },
  ]),
  ...['kinesalite', 'leveldown', 'levelup', 'abstract-leveldown'].map((p) => ({
    path: `${p}/`,
    stage: KINESALITE,
    strong: false,
  })),
  ...['s3rver', 'koa', 'koa-router', 'graceful-fs', 'fs-extra'].map((p) => ({
    path: `${p}/`,
    stage: S3RVER,
    strong: false,
  })),
  ...['pg', 'pg-protocol', 'pg-pool'].map((p) => ({ path: `${p}/`, stage: 'load', strong: false })),
];

const PSEUDO_FRAMES: ReadonlyMap<string, string> = new Map([
  ['(garbage collector)', 'V8 garbage collector'],
  ['(idle)', 'idle'],
  ['(program)', 'V8 and native code'],
  ['(root)', 'V8 and native code'],
]);

function fileOf(url: string): string | null {
  if (!url.startsWith('file:') && !url.startsWith('/')) return null;
  return url.startsWith('file:') ? fileURLToPath(url) : url;
}

/** The path rules match: from the package name for node_modules, else relative to the repository. */
function rulePath(file: string): string {
  const at = file.lastIndexOf('node_modules/');
  return at >= 0 ? file.slice(at + 'node_modules/'.length) : path.relative(REPO_ROOT, file);
}

function packageOf(file: string): string | null {
  const all = [...file.matchAll(/node_modules\/((?:@[^/]+\/)?[^/]+)/g)];
  return all.length > 0 ? all[all.length - 1]![1]! : null;
}

function ruleFor(file: string, functionName: string): Rule | null {
  const where = rulePath(file);
  return RULES.find((r) => where.startsWith(r.path) && (!r.fn || r.fn.test(functionName))) ?? null;
}

interface Walker {
  stageOf(id: number): string;
  frameOf(id: number): string;
}

function walker(profile: CpuProfile): Walker {
  const { byId, parentOf } = indexProfile(profile);
  const cache = new Map<number, string>();
  const stageOf = (leaf: number): string => {
    const cached = cache.get(leaf);
    if (cached) return cached;
    const pseudo = PSEUDO_FRAMES.get(byId.get(leaf)!.callFrame.functionName);
    let strong: string | null = pseudo ?? null;
    let weak: string | null = null;
    let topPackage: string | null = null;
    for (let id: number | undefined = leaf; !strong && id !== undefined; id = parentOf.get(id)) {
      const { url, functionName } = byId.get(id)!.callFrame;
      const file = fileOf(url);
      if (!file) continue;
      const rule = ruleFor(file, functionName);
      if (rule?.strong) strong = rule.stage;
      else if (rule) weak ??= rule.stage;
      topPackage ??= packageOf(file);
    }
    const stage = strong ?? weak ?? (topPackage ? `other: ${topPackage}` : 'Node.js internals');
    cache.set(leaf, stage);
    return stage;
  };
  const frameOf = (id: number): string => {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    const file = fileOf(url);
    const where = file
      ? file.includes('node_modules')
        ? file.slice(file.lastIndexOf('node_modules/') + 'node_modules/'.length)
        : path.relative(REPO_ROOT, file)
      : url || 'native';
    // tsx runs TypeScript compiled in memory: line numbers of .ts files are the compiled code's.
    const line = where.endsWith('.ts') ? '' : `:${lineNumber + 1}`;
    return `${functionName || '(anonymous)'} (${where}${line})`;
  };
  return { stageOf, frameOf };
}

/**
 * What the samples' time deltas beyond one sampling interval add up to on busy samples: time the
 * thread had work but no core. V8 samples a thread by signalling it; a thread the kernel has not
 * scheduled takes the signal only when it runs again, and that sample's delta spans the whole wait.
 * On the shared 2-core machine at 10k changes/s that wait was most of a busy thread's samples: the
 * record transformation's 4.2 s was ~0.8 s of CPU (bench/firehose-worker.ts measures both).
 */
export const WAITING_FOR_A_CORE = 'waiting for a core (runnable, not running)';

/** Stages that are not CPU: their share is 0 and they are not busy time. */
const NOT_CPU: ReadonlySet<string> = new Set(['idle', WAITING_FOR_A_CORE]);

/**
 * Micros by key. With `intervalUs` (the profile's sampling interval), a busy sample is charged at
 * most one interval and the rest of its delta goes to WAITING_FOR_A_CORE: CPU, not wall time while
 * busy. Idle samples keep their whole delta. Without it, every sample is charged its whole delta.
 */
function tally(profile: CpuProfile, key: (id: number) => string, intervalUs?: number): Map<string, number> {
  const micros = new Map<string, number>();
  const add = (k: string, us: number) => micros.set(k, (micros.get(k) ?? 0) + us);
  const deltas = profile.timeDeltas ?? [];
  (profile.samples ?? []).forEach((id, i) => {
    const k = key(id);
    const delta = deltas[i] ?? 0;
    if (intervalUs === undefined || k === 'idle' || delta <= intervalUs) return add(k, delta);
    add(k, intervalUs);
    add(WAITING_FOR_A_CORE, delta - intervalUs);
  });
  return micros;
}

function shares<T>(
  micros: Map<string, number>,
  make: (key: string, seconds: number, share: number) => T,
): T[] {
  const busy = [...micros].filter(([k]) => !NOT_CPU.has(k)).reduce((sum, [, us]) => sum + us, 0);
  return [...micros]
    .sort((a, b) => b[1] - a[1])
    .map(([k, us]) => make(k, us / 1e6, NOT_CPU.has(k) || busy === 0 ? 0 : us / busy));
}

/**
 * CPU time by stage, the largest first ('idle' and, given `intervalUs`, WAITING_FOR_A_CORE included,
 * with share 0). Pass the sampling interval: without it a loaded machine's waits count as CPU.
 */
export function stagesOf(profile: CpuProfile, intervalUs?: number): StageShare[] {
  const w = walker(profile);
  return shares(tally(profile, w.stageOf, intervalUs), (stage, seconds, share) => ({
    stage,
    seconds,
    share,
  }));
}

/** The `n` functions with the most self time (idle and waits left out). */
export function topFrames(profile: CpuProfile, n = 15, intervalUs?: number): TopFrame[] {
  const w = walker(profile);
  const idle = new Set(profile.nodes.filter((x) => x.callFrame.functionName === '(idle)').map((x) => x.id));
  const micros = tally(profile, (id) => (idle.has(id) ? 'idle' : w.frameOf(id)), intervalUs);
  return shares(micros, (frame, seconds, share) => ({ frame, seconds, share }))
    .filter((f) => !NOT_CPU.has(f.frame))
    .slice(0, n);
}

/**
 * The stack process' profiles, one per thread (the main event loop and each stage worker: V8
 * profiles one isolate at a time), per thread and together. With the sampling interval, a thread's
 * busy seconds estimate its CPU (samples × interval: 10–25% under the kernel's count in
 * bench/firehose-worker.ts, as the sampler thread waits for a core too); without it they are wall
 * time while busy, several times the CPU on a loaded machine.
 */
export function summarizeThreads(
  threads: { thread: string; profile: CpuProfile }[],
  seconds: number,
  file: string | null,
  intervalUs?: number,
): ProfileSummary {
  const perThread: ThreadProfile[] = threads.map(({ thread, profile }) => {
    const stages = stagesOf(profile, intervalUs);
    const busySeconds = stages.filter((s) => !NOT_CPU.has(s.stage)).reduce((sum, s) => sum + s.seconds, 0);
    return { thread, busySeconds, stages, top: topFrames(profile, 15, intervalUs) };
  });
  const total = new Map<string, number>();
  for (const t of perThread)
    for (const s of t.stages) total.set(s.stage, (total.get(s.stage) ?? 0) + s.seconds * 1e6);
  const busy = perThread.reduce((sum, t) => sum + t.busySeconds, 0);
  const top = perThread
    .flatMap((t) => t.top)
    .sort((a, b) => b.seconds - a.seconds)
    .slice(0, 15)
    .map((f) => ({ ...f, share: busy > 0 ? f.seconds / busy : 0 }));
  return {
    seconds,
    stages: shares(total, (stage, secs, share) => ({ stage, seconds: secs, share })),
    top,
    threads: perThread,
    file,
  };
}
