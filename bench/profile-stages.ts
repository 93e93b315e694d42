import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { indexProfile, type CpuProfile } from './cpu-profile';

/**
 * Which pipeline stage a CPU profile of the stack process spent its time in. kinesalite, s3rver,
 * the local Firehose, transform and load all share that process (as `totes up` runs them), so its
 * CPU seconds alone say nothing about which stage limits the pipeline.
 *
 * A sample is charged to the nearest frame on its stack that belongs to a stage: code of this
 * repository first (processors/load/… is load, whatever package it called: parquetjs decoding
 * under the load handler is load's), else a package only one stage uses (pg is the load's warehouse
 * client, kinesalite is Kinesis). Work started from a socket or a timer has no stage frame on its
 * stack (the AWS SDK parsing a response, say): it is charged to the package at the top of the stack.
 */

export interface StageShare {
  stage: string;
  seconds: number;
  /** Share of the profile's busy (non-idle) time. */
  share: number;
}

export interface TopFrame {
  /** `function (file:line)`; file relative to the repository or from node_modules/. */
  frame: string;
  /** Self time. */
  seconds: number;
  share: number;
}

const REPO_ROOT = path.resolve(__dirname, '..');

/** Repository files by path prefix → stage. */
const FILE_STAGES: readonly (readonly [string, string])[] = [
  ['processors/load/', 'load'],
  ['processors/transform/', 'transform'],
  ['processors/firehose-transform/', 'firehose record transformation'],
  ['local/delivery-stream', 'delivery stream (local Firehose)'],
  ['local/s3-trigger', 'S3 → Lambda triggers'],
  ['local/s3rver', 's3rver (S3)'],
  ['local/kinesalite', 'kinesalite (Kinesis)'],
];

/** Repository files several stages call: charged to the caller when one is on the stack. */
const SHARED_FILES: readonly (readonly [string, string])[] = [
  ['processors/shared/', 'shared by transform and load (Parquet codec, S3 objects)'],
  ['core/', 'core (CSV codec, star mapping, SQL), caller unknown'],
];

/** Packages only one stage uses. */
const PACKAGE_STAGES: ReadonlyMap<string, string> = new Map([
  ['kinesalite', 'kinesalite (Kinesis)'],
  ['leveldown', 'kinesalite (Kinesis)'],
  ['levelup', 'kinesalite (Kinesis)'],
  ['s3rver', 's3rver (S3)'],
  ['koa', 's3rver (S3)'],
  ['pg', 'load'],
  ['pg-protocol', 'load'],
  ['pg-pool', 'load'],
]);

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

function packageOf(file: string): string | null {
  const all = [...file.matchAll(/node_modules\/((?:@[^/]+\/)?[^/]+)/g)];
  return all.length > 0 ? all[all.length - 1]![1]! : null;
}

function stageOfFile(file: string, table: readonly (readonly [string, string])[]): string | null {
  if (file.includes('node_modules')) return null;
  const relative = path.relative(REPO_ROOT, file);
  return table.find(([prefix]) => relative.startsWith(prefix))?.[1] ?? null;
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
    let found: string | null = pseudo ?? null;
    let sharedStage: string | null = null;
    let packageStage: string | null = null;
    let topPackage: string | null = null;
    for (let id: number | undefined = leaf; !found && id !== undefined; id = parentOf.get(id)) {
      const file = fileOf(byId.get(id)!.callFrame.url);
      if (!file) continue;
      found = stageOfFile(file, FILE_STAGES);
      sharedStage ??= stageOfFile(file, SHARED_FILES);
      const pkg = packageOf(file);
      if (pkg) {
        packageStage ??= PACKAGE_STAGES.get(pkg) ?? null;
        topPackage ??= pkg;
      }
    }
    const stage =
      found ?? sharedStage ?? packageStage ?? (topPackage ? `other: ${topPackage}` : 'Node.js internals');
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
    return `${functionName || '(anonymous)'} (${where}:${lineNumber + 1})`;
  };
  return { stageOf, frameOf };
}

function tally(profile: CpuProfile, key: (id: number) => string): Map<string, number> {
  const micros = new Map<string, number>();
  const deltas = profile.timeDeltas ?? [];
  (profile.samples ?? []).forEach((id, i) => {
    const k = key(id);
    micros.set(k, (micros.get(k) ?? 0) + (deltas[i] ?? 0));
  });
  return micros;
}

function shares<T>(
  micros: Map<string, number>,
  make: (key: string, seconds: number, share: number) => T,
): T[] {
  const busy = [...micros].filter(([k]) => k !== 'idle').reduce((sum, [, us]) => sum + us, 0);
  return [...micros]
    .sort((a, b) => b[1] - a[1])
    .map(([k, us]) => make(k, us / 1e6, k === 'idle' || busy === 0 ? 0 : us / busy));
}

/** CPU time by stage, the largest first ('idle' included, with share 0). */
export function stagesOf(profile: CpuProfile): StageShare[] {
  const w = walker(profile);
  return shares(tally(profile, w.stageOf), (stage, seconds, share) => ({ stage, seconds, share }));
}

/** The `n` functions with the most self time (idle left out). */
export function topFrames(profile: CpuProfile, n = 15): TopFrame[] {
  const w = walker(profile);
  const idle = new Set(profile.nodes.filter((x) => x.callFrame.functionName === '(idle)').map((x) => x.id));
  const micros = tally(profile, (id) => (idle.has(id) ? 'idle' : w.frameOf(id)));
  return shares(micros, (frame, seconds, share) => ({ frame, seconds, share }))
    .filter((f) => f.frame !== 'idle')
    .slice(0, n);
}
