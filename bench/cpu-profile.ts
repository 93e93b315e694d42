import type { Profiler } from 'node:inspector';
import { Session } from 'node:inspector/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A V8 CPU profile of this process over one capture run (`--cpu-profile DIR`), and a summary that
 * says which code the time went to. Profiling only the run, not the whole bench, keeps the setup,
 * the raw readers and the clean-up out of the picture.
 */

export type CpuProfile = Profiler.Profile;

/**
 * Starts profiling; the returned function stops and hands back the profile. Samples every 0.5 ms
 * by default instead of V8's 1 ms: runs last seconds, and finer samples cost little.
 */
export async function startCpuProfile(intervalUs = 500): Promise<() => Promise<CpuProfile>> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: intervalUs });
  await session.post('Profiler.start');
  return async () => {
    const { profile } = await session.post('Profiler.stop');
    session.disconnect();
    return profile;
  };
}

export interface ProfileShare {
  /** An npm package, a file of this repository, or one of V8's pseudo-frames (GC, idle, …). */
  owner: string;
  seconds: number;
  /** Share of the profile's busy (non-idle) time. */
  share: number;
}

const REPO_ROOT = path.resolve(__dirname, '..');

/**
 * Who a frame's code belongs to; null for Node's own modules and native functions, which work on
 * behalf of their caller.
 */
function ownerOf(url: string): string | null {
  if (!url.startsWith('file:') && !url.startsWith('/')) return null;
  const file = url.startsWith('file:') ? fileURLToPath(url) : url;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file);
  return pkg ? pkg[1] : path.relative(REPO_ROOT, file);
}

/** Stopping the profiler is sampled too; it is not part of the run. */
const PROFILER_OWNER = path.relative(REPO_ROOT, __filename);

const PSEUDO_FRAMES: ReadonlyMap<string, string> = new Map([
  ['(garbage collector)', 'V8 garbage collector'],
  ['(idle)', 'idle'],
  ['(program)', 'V8 and native code'],
]);

/** A profile's nodes by id, and each node's parent (the caller). */
export function indexProfile(profile: CpuProfile): {
  byId: Map<number, Profiler.ProfileNode>;
  parentOf: Map<number, number>;
} {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parentOf = new Map<number, number>();
  for (const n of profile.nodes) for (const child of n.children ?? []) parentOf.set(child, n.id);
  return { byId, parentOf };
}

/**
 * Self time of every sample charged to the nearest frame that belongs to a package or a repository
 * file, so time inside Node's own modules (Buffer.concat, JSON, streams) lands on the code that
 * asked for it. Sorted by time, the largest first. Owners in `exclude` (a profiler's own code) are
 * left out.
 */
export function summarizeProfile(profile: CpuProfile, exclude: readonly string[] = []): ProfileShare[] {
  const { byId, parentOf } = indexProfile(profile);
  const ownerCache = new Map<number, string>();
  const owner = (id: number): string => {
    const cached = ownerCache.get(id);
    if (cached) return cached;
    const frame = byId.get(id)!.callFrame;
    const parent = parentOf.get(id);
    const found =
      PSEUDO_FRAMES.get(frame.functionName) ??
      ownerOf(frame.url) ??
      (parent === undefined ? 'Node.js internals' : owner(parent));
    ownerCache.set(id, found);
    return found;
  };
  const micros = new Map<string, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  samples.forEach((id, i) => {
    const who = owner(id);
    micros.set(who, (micros.get(who) ?? 0) + (deltas[i] ?? 0));
  });
  for (const who of [PROFILER_OWNER, ...exclude]) micros.delete(who);
  const busy = [...micros].filter(([who]) => who !== 'idle').reduce((sum, [, us]) => sum + us, 0);
  return [...micros]
    .map(([who, us]) => ({ owner: who, seconds: us / 1e6, share: who === 'idle' ? 0 : us / busy }))
    .sort((a, b) => b.seconds - a.seconds);
}
