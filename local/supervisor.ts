import { spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import type { Logger } from '../core/logger';

/**
 * Keeps one child process running the way ECS keeps a service's task running: restart after an
 * unexpected exit, with exponential backoff so a crash loop does not spin. stop() sends SIGTERM
 * (the child drains) and escalates to SIGKILL after `stopTimeoutMs`, as ECS does.
 */
export interface SupervisorOptions {
  name: string;
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  logger: Logger;
  /** Each line the child writes to stdout/stderr. */
  onOutput?: (line: string) => void;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  stopTimeoutMs?: number;
}

export class Supervisor {
  private child: ChildProcess | null = null;
  private stopping = false;
  private restarts = 0;
  private backoffTimer: NodeJS.Timeout | null = null;
  private exitWaiters: (() => void)[] = [];

  constructor(private readonly options: SupervisorOptions) {}

  get restartCount(): number {
    return this.restarts;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): void {
    const { options } = this;
    const child = spawn(options.command, options.args, {
      env: options.env,
      // The IPC channel lets the child notice when this process dies, even by SIGKILL.
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      // Its own process group: a Ctrl-C in the terminal (SIGINT to the foreground group) reaches this
      // process only, which stops the child in order — as ECS, not the terminal, stops a task. A
      // child that took the terminal's SIGINT itself exited before stop() said so, and was seen as a
      // crash to restart.
      detached: true,
    });
    this.child = child;
    for (const stream of [child.stdout!, child.stderr!]) {
      readline.createInterface({ input: stream }).on('line', (line) => options.onOutput?.(line));
    }
    const startedAt = Date.now();
    child.once('exit', (code, signal) => {
      this.child = null;
      for (const w of this.exitWaiters.splice(0)) w();
      if (this.stopping) return;
      const min = options.minBackoffMs ?? 1000;
      // A child that ran for a while gets restarted quickly again; a crash loop backs off.
      if (Date.now() - startedAt > 60_000) this.restarts = 0;
      const delay = Math.min(options.maxBackoffMs ?? 30_000, min * 2 ** this.restarts);
      this.restarts += 1;
      options.logger.warn(`${options.name} exited; restarting`, {
        code,
        signal,
        inMs: delay,
        restarts: this.restarts,
      });
      this.backoffTimer = setTimeout(() => {
        this.backoffTimer = null;
        if (!this.stopping) this.start();
      }, delay);
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.backoffTimer) clearTimeout(this.backoffTimer);
    const child = this.child;
    if (!child) return;
    const exited = new Promise<void>((resolve) => this.exitWaiters.push(resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), this.options.stopTimeoutMs ?? 30_000);
    await exited;
    clearTimeout(timer);
  }
}
