import { styleText } from 'node:util';
import { prettyFactory } from 'pino-pretty';
import { PipelineStatus, type LogRecord, type StatusEvent } from '../core/pipeline-status';

/**
 * `totes up` on a terminal: the pipeline's JSON log lines become a few plain-words lines in the
 * scrollback and one status line redrawn in place (log-update does the cursor work). `quiet` keeps
 * only warnings, errors and what the caller prints; `verbose` also shows every log line, made
 * readable by pino-pretty. The words and numbers come from core/pipeline-status.ts.
 */
export type TerminalMode = 'normal' | 'quiet' | 'verbose';

/** The part of log-update's API used here (an instance made with createLogUpdate). */
export interface InPlaceWriter {
  (...text: string[]): void;
  clear(): void;
  persist(...text: string[]): void;
  done(): void;
}

export interface TerminalStatusOptions {
  stream: NodeJS.WriteStream;
  mode: TerminalMode;
  /** Defaults to log-update on `stream`. */
  writer?: InPlaceWriter;
  now?: () => number;
  /** How often the status line is redrawn between log lines (ages and ETAs move on). */
  refreshMs?: number;
}

const MARK: Record<StatusEvent['kind'], [string, Parameters<typeof styleText>[0]]> = {
  progress: ['…', 'cyan'],
  done: ['✓', 'green'],
  note: ['i', 'blue'],
  warning: ['!', 'yellow'],
  error: ['✗', 'red'],
};

/** Appends the lines to keep; has no status line to redraw. */
export function scrollingWriter(stream: NodeJS.WritableStream): InPlaceWriter {
  return Object.assign(() => undefined, {
    clear: () => undefined,
    persist: (...text: string[]) => void stream.write(`${text.join('\n')}\n`),
    done: () => undefined,
  });
}

export class TerminalStatus {
  private readonly status = new PipelineStatus();
  private readonly pretty: (line: string) => string;
  private timer: NodeJS.Timeout | null = null;
  private readonly now: () => number;
  private readonly color: boolean;

  private constructor(
    private readonly options: TerminalStatusOptions,
    private readonly writer: InPlaceWriter,
  ) {
    this.now = options.now ?? Date.now;
    this.color = options.stream.isTTY === true && !process.env.NO_COLOR;
    this.pretty = prettyFactory({
      colorize: this.color,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'service',
      singleLine: true,
    });
  }

  static async create(options: TerminalStatusOptions): Promise<TerminalStatus> {
    let writer = options.writer;
    // A pseudo-terminal nobody gave a size (rows = columns = 0) has no room for a line redrawn in
    // place (log-update then draws nothing): keep the plain-words lines, drop the status line.
    if (!writer && !(options.stream.rows > 0 && options.stream.columns > 0))
      writer = scrollingWriter(options.stream);
    if (!writer) {
      // ES module only; loaded when a terminal is actually drawn on.
      const { createLogUpdate } = await import('log-update');
      writer = createLogUpdate(options.stream, { showCursor: false });
    }
    return new TerminalStatus(options, writer);
  }

  private paint(kind: StatusEvent['kind'], text: string): string {
    const [mark, color] = MARK[kind];
    return this.color ? `${styleText(color, mark)} ${text}` : `${mark} ${text}`;
  }

  private redraw(): void {
    if (this.options.mode === 'quiet') return;
    const line = this.status.statusLine(this.now());
    this.writer(this.color ? styleText('dim', line) : line);
  }

  /** Keeps `text` in the scrollback, above the status line. */
  print(text: string): void {
    this.writer.persist(text.replace(/\n$/, ''));
    this.redraw();
  }

  /** One line the pipeline logged: JSON from core/logger.ts, or anything else a child printed. */
  line(raw: string): void {
    let record: LogRecord | undefined;
    try {
      const parsed = JSON.parse(raw) as unknown;
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) record = parsed as LogRecord;
    } catch {
      // not a log line: shown as it is below
    }
    if (!record) {
      if (raw.trim()) this.print(raw);
      return;
    }
    if (this.options.mode === 'verbose') this.writer.persist(this.pretty(raw).replace(/\n$/, ''));
    for (const event of this.status.observe(record)) {
      const problem = event.kind === 'warning' || event.kind === 'error';
      if (this.options.mode === 'quiet' && !problem) continue;
      // In verbose mode the full line is already there; the plain-words line would repeat it.
      if (this.options.mode === 'verbose' && problem) continue;
      this.writer.persist(this.paint(event.kind, event.text));
    }
    this.redraw();
  }

  start(): void {
    this.redraw();
    this.timer = setInterval(() => this.redraw(), this.options.refreshMs ?? 1000);
    this.timer.unref();
  }

  /** Leaves the last status line on screen and gives the cursor back. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.redraw();
    this.writer.done();
  }
}
