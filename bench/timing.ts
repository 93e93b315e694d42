import { performance } from 'node:perf_hooks';

/** Wall and CPU time of one piece of work, as every bench reports it. */
export interface Timing {
  wallMs: number;
  /** This process' user + system CPU time (worker threads included). */
  cpuMs: number;
}

export async function timed<T>(work: () => Promise<T> | T): Promise<[T, Timing]> {
  const cpu = process.cpuUsage();
  const start = performance.now();
  const result = await work();
  const wallMs = performance.now() - start;
  const used = process.cpuUsage(cpu);
  return [result, { wallMs, cpuMs: (used.user + used.system) / 1000 }];
}

/** The upper median: a value that was measured, never an average of two. */
export const median = (values: number[]): number =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
