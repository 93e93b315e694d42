import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type {
  ProfileSummary,
  StackConfig,
  StackMessage,
  StackReady,
  StackRequest,
  StackStats,
} from './stack-protocol';

type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;
type Request = WithoutId<StackRequest>;

/** Generous: the stack seeds nothing itself, but an embedded warehouse's initdb can be slow on a busy machine. */
const START_TIMEOUT_MS = 180_000;
/** A stop waits for the stages to finish what is in flight and for the warehouse to shut down. */
const STOP_TIMEOUT_MS = 60_000;

/** The bench's handle on its stack process (pipeline-stack.ts). */
export class StackProcess {
  private nextId = 0;
  private readonly waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();

  private constructor(
    private readonly child: ChildProcess,
    readonly ready: StackReady,
  ) {
    child.on('message', (m: StackMessage) => {
      if (m.type !== 'reply') return;
      const w = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      if (m.ok) w?.resolve(m.value);
      else w?.reject(new Error(`stack process: ${m.error}`));
    });
    child.once('exit', (code, signal) => {
      for (const w of this.waiting.values())
        w.reject(new Error(`the stack process exited (${signal ?? code}) with a request outstanding`));
      this.waiting.clear();
    });
  }

  static start(config: StackConfig): Promise<StackProcess> {
    const child = fork(path.join(__dirname, 'pipeline-stack.ts'), [JSON.stringify(config)], {
      execArgv: ['--import', 'tsx'],
      // As bin/totes.js does: the SDK's notice that its 2027 releases need Node 22 is in README "Limits".
      env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGTERM');
        reject(new Error(`the stack did not start in ${START_TIMEOUT_MS / 1000} s`));
      }, START_TIMEOUT_MS);
      const onExit = (code: number | null) => {
        clearTimeout(timer);
        reject(new Error(`the stack process exited with ${code} while starting`));
      };
      child.once('exit', onExit);
      child.on('message', function first(m: StackMessage) {
        if (m.type === 'reply') return;
        clearTimeout(timer);
        child.off('message', first);
        child.off('exit', onExit);
        if (m.type === 'ready') resolve(new StackProcess(child, m.ready));
        else reject(new Error(`the stack did not start: ${m.error}`));
      });
    });
  }

  get pid(): number {
    return this.ready.pid;
  }

  private request<T>(request: Request): Promise<T> {
    if (this.child.exitCode !== null || this.child.signalCode !== null)
      return Promise.reject(new Error('the stack process is not running'));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ ...request, id } as StackRequest);
    });
  }

  stats(): Promise<StackStats> {
    return this.request({ cmd: 'stats' });
  }

  startProfile(intervalUs: number): Promise<void> {
    return this.request({ cmd: 'profile-start', intervalUs });
  }

  stopProfile(file: string | null): Promise<ProfileSummary> {
    return this.request({ cmd: 'profile-stop', file });
  }

  /** Stops the stack (capture drains, the warehouse shuts down) and waits for the process to exit. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await this.request({ cmd: 'stop' }).catch(() => this.child.kill('SIGTERM'));
    await exited;
    clearTimeout(timer);
  }

  /** Last resort on the way out (the bench exits now): no waiting. */
  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
  }
}
