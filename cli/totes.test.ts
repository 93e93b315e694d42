import { COMMANDS, main, topLevelHelp } from './totes';
import { renderHelp, runCommand, UsageError } from './command';

function captureOutput(): { out: string[]; err: string[]; restore(): void } {
  const out: string[] = [];
  const err: string[] = [];
  const o = jest.spyOn(process.stdout, 'write').mockImplementation((s) => (out.push(String(s)), true));
  const e = jest.spyOn(process.stderr, 'write').mockImplementation((s) => (err.push(String(s)), true));
  return { out, err, restore: () => (o.mockRestore(), e.mockRestore()) };
}

describe('totes CLI', () => {
  it('lists every command in the top-level help', () => {
    const help = topLevelHelp();
    for (const name of Object.keys(COMMANDS)) expect(help).toContain(`  ${name}`);
  });

  it('gives every command a --help that names each of its options', async () => {
    for (const [name, entry] of Object.entries(COMMANDS)) {
      const command = entry.load();
      expect(command.name).toBe(name);
      const io = captureOutput();
      try {
        await expect(runCommand(command, ['--help'])).resolves.toBe(0);
      } finally {
        io.restore();
      }
      const text = io.out.join('');
      expect(text).toContain(`Usage: totes ${command.usage}`);
      for (const option of Object.keys(command.options)) {
        expect(text).toContain(`--${option}`);
        expect(command.optionHelp[option]).toBeTruthy();
      }
      expect(text).toContain('--help');
    }
  });

  it('exits 2 with the help for no command or an unknown one, 0 for --help', async () => {
    const io = captureOutput();
    try {
      expect(await main([])).toBe(2);
      expect(await main(['--help'])).toBe(0);
      expect(await main(['frobnicate'])).toBe(2);
    } finally {
      io.restore();
    }
    expect(io.err.join('')).toContain('unknown command "frobnicate"');
    expect(io.out.join('')).toContain('Usage: totes <command>');
  });

  it('turns a bad flag into a usage error with the command help, exit 2', async () => {
    const io = captureOutput();
    try {
      expect(await main(['doctor', '--no-such-flag'])).toBe(2);
    } finally {
      io.restore();
    }
    expect(io.err.join('')).toMatch(/totes doctor: .*no-such-flag/);
    expect(io.err.join('')).toContain('Usage: totes doctor');
  });

  it('renders short flags and value placeholders', () => {
    const help = renderHelp({
      name: 'x',
      summary: 's',
      usage: 'x',
      options: { verbose: { type: 'boolean', short: 'v' }, file: { type: 'string' } },
      optionHelp: { verbose: 'talk more', file: 'a file' },
      run: async () => 0,
    });
    expect(help).toContain('-v, --verbose');
    expect(help).toContain('--file VALUE');
    expect(new UsageError('m').name).toBe('UsageError');
  });
});
