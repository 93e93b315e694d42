import { main } from '../../cli/totes';

export interface CliRun {
  code: number;
  out: string;
  err: string;
}

/** Captures what `fn` writes to stdout and stderr while it runs (tests of commands, in-process). */
export async function captureOutput(fn: () => Promise<number>): Promise<CliRun> {
  let out = '';
  let err = '';
  const stdout = jest.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    out += String(chunk);
    return true;
  });
  const stderr = jest.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
    err += String(chunk);
    return true;
  });
  try {
    const code = await fn();
    return { code, out, err };
  } finally {
    stdout.mockRestore();
    stderr.mockRestore();
  }
}

/** Runs `totes …` in-process, capturing what it writes. */
export function runTotes(...argv: string[]): Promise<CliRun> {
  return captureOutput(() => main(argv));
}
