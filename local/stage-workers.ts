import type { Profiler } from 'node:inspector';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../core/logger';
import { restoreFields, type SerializedError, type StageWorkerData, type WorkerToHost } from './stage-worker';

/**
 * A Lambda stage of `totes up` on worker threads of its own, so that transform and load no longer
 * share the stack's event loop with kinesalite, s3rver and the local Firehose (bench/README.md,
 * `bench:pipeline`: one loop was the ceiling, and it starved the delivery stream's buffers).
 *
 * `handler` has the shape a trigger invokes (local/s3-trigger.ts, local/queue-event-source.ts):
 * the event goes to the least busy worker, which runs the stage's real handler
 * (local/stage-worker.ts); the handler's result comes back, or its error, rebuilt as an Error with
 * the same name, message and code. The trigger keeps every decision it made before — retries,
 * watermarks, dead letters, the queue — so at-least-once is unchanged. A worker that dies fails
 * its invocations (the trigger retries them) and is replaced.
 *
 * Stopping: `abandon()` (after the stack's grace period) fails what is still running with
 * StageInvocationAbandonedError, which the triggers do not count as handled: the transform
 * trigger's watermark stays before it, the load queue keeps the message.
 */
export interface StageWorkersOptions {
  /** Names the stage in logs and errors. */
  stage: string;
  /** Module exporting the factory (default local/stage-factories.ts) and the export's name. */
  module?: string;
  factory: string;
  /** Structured-clone data for the factory (endpoints, names: no clients). */
  options: unknown;
  /** Worker threads (default 1). */
  threads?: number;
  /** The stack's logger: every line of the workers arrives here, with `logFields` bound. */
  logger: Logger;
  logFields?: Record<string, unknown>;
  /** Old-generation heap limit per worker (MiB); default STAGE_WORKER_HEAP_MIB. */
  maxOldGenerationSizeMb?: number;
  /**
   * A worker that dies is replaced, unless this is given: then it is called instead, for a stage
   * that holds what a replacement could not take over (kinesalite: its port and its store's lock).
   */
  onDeath?: (error: StageWorkerError) => void;
}

/** Thrown (to the trigger) for an invocation still running when the stack stopped waiting. */
export class StageInvocationAbandonedError extends Error {
  override name = 'StageInvocationAbandonedError';
  readonly abandoned = true;
}

/** True for an invocation the stack gave up on while stopping: not done, and not a failure either. */
export function isAbandoned(e: unknown): boolean {
  return (e as { abandoned?: unknown } | null)?.abandoned === true;
}

export class StageWorkerError extends Error {
  override name = 'StageWorkerError';
}

interface Pending {
  resolve(value: unknown): void;
  reject(e: Error): void;
}

interface Slot {
  worker: Worker;
  threadId: number;
  pending: Map<number, Pending>;
  closing: boolean;
  exited: boolean;
  /** Waiting for the worker's CPU profile. */
  profiled?: (profile: Profiler.Profile | null) => void;
}

/** An Error from its serialized form, with the worker's stack and the original class name. */
function rebuildError(e: SerializedError): Error {
  const error = new Error(e.message, e.cause === undefined ? undefined : { cause: rebuildCause(e.cause) });
  error.name = e.name;
  if (e.stack) error.stack = e.stack;
  if (e.code !== undefined) (error as Error & { code?: unknown }).code = e.code;
  return error;
}

function rebuildCause(cause: unknown): unknown {
  return cause !== null && typeof cause === 'object' && 'message' in cause && 'name' in cause
    ? rebuildError(cause as SerializedError)
    : cause;
}

/**
 * Each worker's old-generation heap limit unless told otherwise. Node's default follows the
 * machine's memory (4 GiB here), and V8 grows a heap lazily towards it before collecting hard:
 * three stage workers holding a few objects each took the stack process to 1.4 GiB RSS in the
 * 1M-row cold start (bench/README.md, `bench:coldstart`). A stage needs far less: a 128 MiB object
 * streamed through transform or load in a 384 MB heap (`bench:streaming`), and local objects are at
 * most the delivery stream's 5 MiB buffer; 512 leaves room for a load applying several at once.
 * Measured in that cold start (load average 8–9): the stack's peak RSS 1,391 → 990 MiB (snapshot
 * read), 1,335 → 928 MiB (drain), the garbage collector 22% → 23% of its CPU.
 */
export const STAGE_WORKER_HEAP_MIB = 512;

/**
 * Each worker's young generation (MiB): 192 is two 64 MiB semi-spaces and a large-object space of
 * the same size (`--max-semi-space-size=64`); a worker's default is 48 (16 MiB semi-spaces).
 * Transform and load allocate a short-lived value per row: with small semi-spaces scavenges ran
 * often and promoted what a larger young generation lets die young. Measured with `npm run
 * bench:load`, back to back on the idle machine (NODE_OPTIONS=--max-semi-space-size=64 against
 * Node's default): the load process 17–45 → 12–29 µs per row, 19,910–31,924 → 25,079–42,828 rows/s.
 *
 * Local only: objects here are at most the delivery stream's 5 MiB buffer. The Lambdas keep Node's
 * default: on the 128 MiB objects AWS Firehose delivers, the larger young generation took transform
 * past the 512 MB target (`bench:streaming -- --heap-mib 384`, 2026-12-02: transform 424 → 518 MiB
 * peak RSS, load 351 → 504 MiB).
 */
export const STAGE_WORKER_YOUNG_MIB = 192;

const WORKER_ENTRY = path.join(__dirname, `stage-worker${path.extname(__filename)}`);

/**
 * Compiled (dist/), the entry is plain JavaScript. From the TypeScript source (`bin/totes.js`
 * without a build, the bench, jest), the worker loads tsx's require hook first: a worker thread
 * does not inherit the hooks the main thread registered.
 */
function spawn(data: StageWorkerData, maxOldGenerationSizeMb: number): Worker {
  const resourceLimits = { maxOldGenerationSizeMb, maxYoungGenerationSizeMb: STAGE_WORKER_YOUNG_MIB };
  const workerData = { totesStage: data };
  // This process' environment as it is now (a worker copies it at start; jest's differs from the OS's).
  const env = { ...process.env };
  if (!WORKER_ENTRY.endsWith('.ts')) return new Worker(WORKER_ENTRY, { workerData, resourceLimits, env });
  const code = `require(${JSON.stringify(require.resolve('tsx/cjs'))}); require(${JSON.stringify(WORKER_ENTRY)});`;
  return new Worker(code, { eval: true, workerData, resourceLimits, env });
}

export class StageWorkers {
  private readonly slots: Slot[] = [];
  private nextId = 0;
  private stopping = false;
  private readonly running = new Set<Promise<void>>();
  /** Workers that died and were replaced. */
  restarts = 0;

  private constructor(private readonly o: StageWorkersOptions & { data: StageWorkerData }) {}

  /** Starts the workers; resolves once each has built its stage (rejects if one could not). */
  static async start(options: StageWorkersOptions): Promise<StageWorkers> {
    const data: StageWorkerData = {
      stage: options.stage,
      module: options.module ?? path.join(__dirname, `stage-factories${path.extname(__filename)}`),
      factory: options.factory,
      options: options.options,
      logFields: options.logFields ?? { stage: options.stage },
    };
    const pool = new StageWorkers({ ...options, data });
    try {
      for (let i = 0; i < (options.threads ?? 1); i++) pool.slots.push(await pool.startSlot());
    } catch (e) {
      await pool.abandon();
      throw e;
    }
    return pool;
  }

  get stage(): string {
    return this.o.stage;
  }

  /** The workers' thread ids (for tests and the bench's per-thread CPU). */
  get threadIds(): number[] {
    return this.slots.map((s) => s.threadId);
  }

  /** Invocations running now, over all workers. */
  get inFlight(): number {
    return this.slots.reduce((n, s) => n + s.pending.size, 0);
  }

  /** The trigger's handler: runs the stage in the least busy worker. */
  readonly handler = (event: unknown): Promise<unknown> => {
    const slot = this.slots
      .filter((s) => !s.closing)
      .reduce<Slot | undefined>(
        (best, s) => (!best || s.pending.size < best.pending.size ? s : best),
        undefined,
      );
    if (this.stopping || !slot)
      return Promise.reject(new StageInvocationAbandonedError(`the ${this.o.stage} workers are stopping`));
    const id = this.nextId++;
    const invocation = new Promise((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      slot.worker.postMessage({ type: 'invoke', id, event });
    });
    const settled = invocation.then(
      () => undefined,
      () => undefined,
    );
    this.running.add(settled);
    void settled.then(() => this.running.delete(settled));
    return invocation;
  };

  private startSlot(): Promise<Slot> {
    const worker = spawn(this.o.data, this.o.maxOldGenerationSizeMb ?? STAGE_WORKER_HEAP_MIB);
    const slot: Slot = {
      worker,
      threadId: worker.threadId,
      pending: new Map(),
      closing: false,
      exited: false,
    };
    return new Promise<Slot>((resolve, reject) => {
      let started = false;
      worker.on('message', (m: WorkerToHost) => {
        switch (m.type) {
          case 'ready':
            started = true;
            resolve(slot);
            return;
          case 'start-failed':
            reject(rebuildError(m.error));
            return;
          case 'log':
            this.o.logger[m.level](m.msg, restoreFields(m.fields, rebuildError));
            return;
          case 'result': {
            const pending = slot.pending.get(m.id);
            slot.pending.delete(m.id);
            if (m.ok) pending?.resolve(m.value);
            else pending?.reject(rebuildError(m.error));
            return;
          }
          case 'closed':
            return;
          case 'profile':
            slot.profiled?.(m.profile);
            slot.profiled = undefined;
            return;
        }
      });
      // An uncaught exception in the worker (it then exits): its invocations fail, the trigger retries.
      worker.on('error', (e) => {
        if (!started) reject(e);
        else
          this.o.logger.error('a stage worker failed', {
            stage: this.o.stage,
            threadId: slot.threadId,
            err: e,
          });
      });
      worker.once('exit', (code) => {
        slot.exited = true;
        const error = slot.closing
          ? new StageInvocationAbandonedError(`the ${this.o.stage} worker was stopped while invoked`)
          : new StageWorkerError(`the ${this.o.stage} worker exited (code ${code}) while invoked`);
        for (const p of slot.pending.values()) p.reject(error);
        slot.pending.clear();
        slot.profiled?.(null);
        if (!started)
          reject(new StageWorkerError(`the ${this.o.stage} worker exited (code ${code}) while starting`));
        if (!started || slot.closing || this.stopping) return;
        if (this.o.onDeath) {
          // Not replaced: out of the pool, so no invocation is posted to it.
          this.slots.splice(this.slots.indexOf(slot), 1);
          this.o.onDeath(new StageWorkerError(`the ${this.o.stage} worker exited (code ${code})`));
        } else void this.replace(slot);
      });
    });
  }

  private async replace(dead: Slot): Promise<void> {
    this.restarts += 1;
    this.o.logger.warn('a stage worker exited; starting another', {
      stage: this.o.stage,
      threadId: dead.threadId,
    });
    try {
      const slot = await this.startSlot();
      const at = this.slots.indexOf(dead);
      if (at >= 0 && !this.stopping) this.slots[at] = slot;
      else void slot.worker.terminate();
    } catch (e) {
      this.o.logger.error('a stage worker could not be restarted', { stage: this.o.stage, err: e });
    }
  }

  /** Starts a V8 CPU profile in each worker (`npm run bench:pipeline`: time by stage, per thread). */
  startProfile(intervalUs: number): void {
    for (const slot of this.slots) slot.worker.postMessage({ type: 'profile-start', intervalUs });
  }

  /** Each worker's profile since startProfile (null for a worker that was replaced meanwhile). */
  stopProfile(): Promise<{ threadId: number; profile: Profiler.Profile | null }[]> {
    return Promise.all(
      this.slots.map(
        (slot) =>
          new Promise<{ threadId: number; profile: Profiler.Profile | null }>((resolve) => {
            slot.profiled = (profile) => resolve({ threadId: slot.threadId, profile });
            slot.worker.postMessage({ type: 'profile-stop' });
          }),
      ),
    );
  }

  /**
   * Lets running invocations finish, then closes each stage (its clients and connections) and ends
   * the workers. Call once the trigger has stopped invoking.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    while (this.running.size > 0) await Promise.all([...this.running]);
    await Promise.all(
      this.slots.map(async (slot) => {
        slot.closing = true;
        if (slot.exited) return; // abandoned (terminated) already
        const exited = new Promise((resolve) => slot.worker.once('exit', resolve));
        slot.worker.postMessage({ type: 'close' });
        // A stage whose close hangs (a connection that never ends) does not hold the stack.
        const timer = setTimeout(() => void slot.worker.terminate(), 10_000);
        await exited;
        clearTimeout(timer);
      }),
    );
  }

  /** Ends the workers now: whatever they were running fails with StageInvocationAbandonedError. */
  async abandon(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      this.slots.map(async (slot) => {
        slot.closing = true;
        await slot.worker.terminate();
      }),
    );
  }
}
