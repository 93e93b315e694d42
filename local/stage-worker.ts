import type { Profiler } from 'node:inspector';
import { Session } from 'node:inspector/promises';
import { parentPort, threadId, workerData, type MessagePort } from 'node:worker_threads';
import type { LogFields, Logger, LogLevel } from '../core/logger';
import { metricsFor } from '../processors/shared/metrics';
import type { BuiltStage, StageFactory } from './stage-factories';

/**
 * The inside of a stage worker (a worker thread of `totes up`, local/stage-workers.ts): it builds
 * one Lambda stage with the stage's own factory and runs the invocations the host sends it, each
 * with the event shape AWS sends, answering with the handler's result or its error. Logs and EMF
 * metric lines go back to the host as messages, into the stack's own logger. Nothing here decides
 * what is done: the host's trigger (watermarks, retries, dead letters, queue) does, as before.
 */

/** What the host gives a worker (structured-clone data only: no clients, no functions). */
export interface StageWorkerData {
  /** Names the stage in the worker's log lines and errors (`transform`, `load`). */
  stage: string;
  /** Absolute path of the module that exports the factory (local/stage-factories.ts, or a test's). */
  module: string;
  /** The factory's export name. */
  factory: string;
  options: unknown;
  /** Fields on every log line of the worker (the stage's child logger fields). */
  logFields: LogFields;
}

export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  code?: unknown;
  cause?: SerializedError | unknown;
}

export type HostToWorker =
  | { type: 'invoke'; id: number; event: unknown }
  | { type: 'close' }
  | { type: 'profile-start'; intervalUs: number }
  | { type: 'profile-stop' };

export type WorkerToHost =
  | { type: 'ready'; threadId: number }
  | { type: 'start-failed'; error: SerializedError }
  | { type: 'log'; level: LogLevel; msg: string; fields: LogFields }
  | { type: 'result'; id: number; ok: true; value: unknown }
  | { type: 'result'; id: number; ok: false; error: SerializedError }
  | { type: 'closed' }
  | { type: 'profile'; profile: Profiler.Profile | null; error?: string };

/** An Error as plain data, keeping what core/logger.ts logs of it (name, message, code, cause). */
export function serializeError(e: unknown): SerializedError {
  if (!(e instanceof Error)) return { name: 'Error', message: String(e) };
  const out: SerializedError = { name: e.name, message: e.message, stack: e.stack };
  const code = (e as { code?: unknown }).code;
  if (code !== undefined) out.code = code;
  if (e.cause !== undefined) out.cause = e.cause instanceof Error ? serializeError(e.cause) : e.cause;
  return out;
}

const ERROR_TAG = '__totesError';

/** Log fields for postMessage: Errors tagged as data (their class does not survive a clone). */
function portableFields(fields: LogFields): LogFields {
  const out: LogFields = {};
  for (const [k, v] of Object.entries(fields))
    out[k] = v instanceof Error ? { [ERROR_TAG]: serializeError(v) } : v;
  return out;
}

/** Back from portableFields, on the host: Errors again, so the stack's logger logs them as before. */
export function restoreFields(fields: LogFields, rebuild: (e: SerializedError) => Error): LogFields {
  const out: LogFields = {};
  for (const [k, v] of Object.entries(fields)) {
    const tagged =
      v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[ERROR_TAG] : undefined;
    out[k] = tagged ? rebuild(tagged as SerializedError) : v;
  }
  return out;
}

/** Posts, falling back to a JSON copy when a value cannot be cloned (a function in a log field). */
function post(port: MessagePort, message: WorkerToHost): void {
  try {
    port.postMessage(message);
  } catch {
    port.postMessage(
      JSON.parse(JSON.stringify(message, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))),
    );
  }
}

function portLogger(port: MessagePort, bound: LogFields): Logger {
  const emit =
    (level: LogLevel) =>
    (msg: string, fields: LogFields = {}) =>
      post(port, { type: 'log', level, msg, fields: portableFields({ ...bound, ...fields }) });
  return {
    debug: emit('debug'),
    info: emit('info'),
    warn: emit('warn'),
    error: emit('error'),
    child: (fields) => portLogger(port, { ...bound, ...fields }),
  };
}

/**
 * Serves one stage on `port` until the host says close (then releases the stage and says closed).
 * Runs in the worker thread; tests run it on a MessageChannel too.
 */
export async function serveStage(port: MessagePort, data: StageWorkerData): Promise<void> {
  const logger = portLogger(port, data.logFields);
  // Lambda writes EMF lines to stdout for CloudWatch; locally they go into the stack's log stream.
  const metrics = metricsFor({
    stage: data.stage,
    write: (line) => logger.debug('metrics', { emf: JSON.parse(line) }),
  });
  let stage: BuiltStage;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports, security/detect-non-literal-require -- the factory's module is data: the host names it
    const factories = require(data.module) as Record<string, StageFactory<unknown>>;
    const factory = factories[data.factory];
    if (typeof factory !== 'function') throw new Error(`${data.module} exports no ${data.factory}`);
    stage = factory(data.options, { logger, metrics });
  } catch (e) {
    post(port, { type: 'start-failed', error: serializeError(e) });
    port.close();
    return;
  }
  // A V8 CPU profile of this thread, for `npm run bench:pipeline`'s time by stage.
  let profiler: Session | null = null;
  const profile = async (message: HostToWorker & { type: `profile-${string}` }) => {
    if (message.type === 'profile-start') {
      profiler = new Session();
      profiler.connect();
      await profiler.post('Profiler.enable');
      await profiler.post('Profiler.setSamplingInterval', { interval: message.intervalUs });
      await profiler.post('Profiler.start');
      return;
    }
    const session = profiler;
    profiler = null;
    if (!session) return post(port, { type: 'profile', profile: null, error: 'no profile running' });
    const { profile: taken } = await session.post('Profiler.stop');
    session.disconnect();
    post(port, { type: 'profile', profile: taken });
  };
  await new Promise<void>((resolve) => {
    port.on('message', (message: HostToWorker) => {
      if (message.type === 'profile-start' || message.type === 'profile-stop') {
        profile(message).catch((e: unknown) =>
          post(port, { type: 'profile', profile: null, error: String(e) }),
        );
        return;
      }
      if (message.type === 'close') {
        void stage
          .close()
          .catch((e: unknown) => logger.warn('the stage did not close cleanly', { err: e }))
          .finally(() => {
            post(port, { type: 'closed' });
            port.close();
            resolve();
          });
        return;
      }
      stage.handler(message.event).then(
        (value) => post(port, { type: 'result', id: message.id, ok: true, value }),
        (e: unknown) => post(port, { type: 'result', id: message.id, ok: false, error: serializeError(e) }),
      );
    });
    post(port, { type: 'ready', threadId });
  });
}

/** As a worker thread's entry point (the host passes `workerData.totesStage`). */
const data = (workerData as { totesStage?: StageWorkerData } | null)?.totesStage;
if (parentPort && data) void serveStage(parentPort, data);
