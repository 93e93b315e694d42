import { renderHelp, runCommand, UsageError, type Command } from './command';

/**
 * The `totes` command line. Each command lives in cli/commands/<name>.ts and is loaded only when
 * used, so `totes --help` starts fast and a command's dependencies load only for that command.
 */
export const COMMANDS: Record<string, { summary: string; load: () => Command }> = {
  up: {
    summary: 'Run the whole pipeline locally (embedded Postgres, Kinesis, S3) until Ctrl-C',
    load: () => load('up'),
  },
  capture: {
    summary: 'Run the capture service: Postgres logical replication → Kinesis',
    load: () => load('capture'),
  },
  seed: {
    summary: 'Create the totesys schema in a Postgres database and load a realistic data set',
    load: () => load('seed'),
  },
  simulate: {
    summary: 'Keep the business running: a steady stream of realistic changes',
    load: () => load('simulate'),
  },
  doctor: {
    summary: 'Check a source database for everything capture needs, and say how to fix what is missing',
    load: () => load('doctor'),
  },
  replay: { summary: 'Re-deliver a window of the change stream as CSV', load: () => load('replay') },
  reconcile: {
    summary: 'Find objects a stage never finished and send them again',
    load: () => load('reconcile'),
  },
  quarantine: {
    summary:
      'List what the pipeline set aside (objects, rejected rows), show one, and re-drive them after a fix',
    load: () => load('quarantine'),
  },
  verify: {
    summary: 'Compare the warehouse with the source and print the differences',
    load: () => load('verify'),
  },
  status: {
    summary: 'Is the pipeline healthy, and how far behind is it? (exit code 1 when unhealthy)',
    load: () => load('status'),
  },
  dashboard: {
    summary: 'Serve the business dashboard for a warehouse, live, on 127.0.0.1',
    load: () => load('dashboard'),
  },
  resync: {
    summary: 'Ask capture for a reconciling snapshot of some tables (or all), beside its stream',
    load: () => load('resync'),
  },
};

function load(name: string): Command {
  // eslint-disable-next-line @typescript-eslint/no-require-imports, security/detect-non-literal-require -- lazy load; name is one of the literals in COMMANDS
  return require(`./commands/${name}`).command as Command;
}

export function topLevelHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  const lines = [
    'Usage: totes <command> [options]',
    '',
    'Change data capture from the totesys Postgres database into a star-schema warehouse.',
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    "Run `totes <command> --help` for a command's options.",
  ];
  return `${lines.join('\n')}\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(topLevelHelp());
    return name ? 0 : 2;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    process.stderr.write(`totes: unknown command "${name}"\n\n${topLevelHelp()}`);
    return 2;
  }
  const command = entry.load();
  try {
    return await runCommand(command, rest);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`totes ${name}: ${e.message}\n\n${renderHelp(command)}`);
      return 2;
    }
    throw e;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`totes: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
