import { captureOutput, runTotes } from '../test/support/cli';
import { COMMANDS, topLevelHelp } from './totes';
import { renderHelp, runCommand, UsageError } from './command';

describe('totes CLI', () => {
  it('lists every command in the top-level help', () => {
    const help = topLevelHelp();
    for (const name of Object.keys(COMMANDS)) expect(help).toContain(`  ${name}`);
  });

  it('gives every command a --help that names each of its options', async () => {
    for (const [name, entry] of Object.entries(COMMANDS)) {
      const command = entry.load();
      expect(command.name).toBe(name);
      const { code, out: text } = await captureOutput(() => runCommand(command, ['--help']));
      expect(code).toBe(0);
      expect(text).toContain(`Usage: totes ${command.usage}`);
      for (const option of Object.keys(command.options)) {
        expect(text).toContain(`--${option}`);
        expect(command.optionHelp[option]).toBeTruthy();
      }
      expect(text).toContain('--help');
    }
  });

  it('exits 2 with the help for no command or an unknown one, 0 for --help', async () => {
    expect((await runTotes()).code).toBe(2);
    const help = await runTotes('--help');
    expect(help.code).toBe(0);
    expect(help.out).toContain('Usage: totes <command>');
    const unknown = await runTotes('frobnicate');
    expect(unknown.code).toBe(2);
    expect(unknown.err).toContain('unknown command "frobnicate"');
  });

  it('turns a bad flag into a usage error with the command help, exit 2', async () => {
    const run = await runTotes('doctor', '--no-such-flag');
    expect(run.code).toBe(2);
    expect(run.err).toMatch(/totes doctor: .*no-such-flag/);
    expect(run.err).toContain('Usage: totes doctor');
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
