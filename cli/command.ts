import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Thrown for bad command-line input: printed with the command's usage, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** One `totes` sub-command. `options` are node:util parseArgs options; each needs a help line. */
export interface Command<O extends Options = Options> {
  name: string;
  summary: string;
  usage: string;
  options: O;
  optionHelp: Record<keyof O & string, string>;
  /** Resolves with the process exit code. */
  run(values: ParsedValues<O>, positionals: string[]): Promise<number>;
}

export type ParsedValues<O extends Options> = {
  [K in keyof O]?: O[K] extends { type: 'boolean' } ? boolean : string;
};

/** Lets a command module declare its options once and keep the value types. */
export function defineCommand<O extends Options>(command: Command<O>): Command<O> {
  return command;
}

export function renderHelp(command: Command): string {
  const lines = [`Usage: totes ${command.usage}`, '', command.summary, '', 'Options:'];
  const entries = Object.entries(command.options).map(([name, spec]) => {
    const flag = `--${name}${spec.type === 'string' ? ' VALUE' : ''}`;
    return [spec.short ? `-${spec.short}, ${flag}` : `    ${flag}`, command.optionHelp[name] ?? ''] as const;
  });
  entries.push(['-h, --help', 'Show this help and exit.']);
  const width = Math.max(...entries.map(([f]) => f.length));
  for (const [flag, help] of entries) lines.push(`  ${flag.padEnd(width)}  ${help}`);
  return `${lines.join('\n')}\n`;
}

/** Parses argv for one command; `--help` prints usage and returns 0 without running. */
export async function runCommand(command: Command, argv: string[], out = process.stdout): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...command.options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (parsed.values.help) {
    out.write(renderHelp(command));
    return 0;
  }
  return command.run(parsed.values as ParsedValues<Options>, parsed.positionals);
}
