import { spawnSync } from 'node:child_process';
import path from 'node:path';
import packageJson from '../package.json';

/**
 * Every bench (and chaos) script answers `--help` with its usage and refuses an option it does not
 * know, before it starts anything: a mistyped option must not run a 20-minute bench on defaults, and
 * `--help` must not start one at all. Each script runs as `npm run` runs it (its own command line).
 */
const ROOT = path.resolve(__dirname, '..');
const SCRIPTS = Object.entries(packageJson.scripts as Record<string, string>).filter(([name]) =>
  /^(bench|chaos)(:|$)/.test(name),
);

function run(command: string, arg: string) {
  const result = spawnSync('sh', ['-c', `exec ${command} ${arg}`], {
    cwd: ROOT,
    encoding: 'utf8',
    // A bound for a script that ignores --help and starts its run (1-3 s to compile and answer
    // here): far above that, far below any bench's run.
    timeout: 120_000,
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}

it('covers every bench script', () => {
  expect(SCRIPTS.map(([name]) => name)).toEqual(
    expect.arrayContaining(['bench', 'bench:load', 'bench:streaming', 'bench:snapshot', 'chaos']),
  );
});

describe.each(SCRIPTS)('npm run %s', (name, command) => {
  it('prints its usage for --help and starts nothing', () => {
    const result = run(command, '--help');
    expect({ status: result.status, signal: result.signal }).toEqual({ status: 0, signal: null });
    expect(result.stdout).toMatch(new RegExp(`^Usage: npm run ${name}\\b`));
    expect(result.stderr).toBe('');
  });

  it('refuses an option it does not know', () => {
    const result = run(command, '--no-such-option 1');
    expect({ status: result.status, signal: result.signal }).toEqual({ status: 2, signal: null });
    expect(result.stderr).toContain('no-such-option');
    expect(result.stdout).toBe('');
  });
});
