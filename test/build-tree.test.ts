import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * `npm run build`, then `totes` from the checkout: what a data engineer who builds does. Session 4
 * found it broken (the build had no migrations; the stack looked for dist/bin/totes.js), and nothing
 * ran the built tree. The build goes into a copy of the checkout's layout in a temporary directory,
 * never into this checkout's dist/: bin/totes.js prefers dist/ when it exists, and every other test
 * would then run a build instead of the sources. Type errors are `npx tsc --noEmit`'s and
 * infra/capture-image.test.ts's to find (that one compiles with type checks): `--noCheck` keeps
 * this one to seconds.
 */

const ROOT = path.resolve(__dirname, '..');
let checkout: string;

/** `node args…` in the temporary checkout: its stdout, or an error with its stderr. */
function node(...args: string[]): string {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.TOTES_MIGRATIONS_DIR;
  try {
    return execFileSync(process.execPath, args, {
      cwd: checkout,
      env,
      stdio: 'pipe',
      timeout: 60_000,
    }).toString();
  } catch (e) {
    throw new Error(`node ${args.join(' ')} failed:\n${String((e as { stderr?: Buffer }).stderr ?? e)}`, {
      cause: e,
    });
  }
}

beforeAll(() => {
  checkout = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-build-'));
  // What a built checkout holds beside dist/: the launcher, the package, its dependencies and the
  // SQL that tsc does not copy.
  fs.cpSync(path.join(ROOT, 'bin'), path.join(checkout, 'bin'), { recursive: true });
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(checkout, 'package.json'));
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(checkout, 'node_modules'), 'dir');
  fs.mkdirSync(path.join(checkout, 'processors', 'load'), { recursive: true });
  fs.symlinkSync(
    path.join(ROOT, 'processors', 'load', 'migrations'),
    path.join(checkout, 'processors', 'load', 'migrations'),
    'dir',
  );
  // `npm run build`, as package.json says it, into the copy's dist/.
  const build = (
    JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts.build as string
  ).split(' ');
  expect(build.slice(0, 1)).toEqual(['tsc']);
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  execFileSync(
    process.execPath,
    [tsc, ...build.slice(1), '--outDir', path.join(checkout, 'dist'), '--noCheck'],
    {
      cwd: ROOT,
      stdio: 'pipe',
    },
  );
}, 120_000);

afterAll(() => {
  if (checkout) fs.rmSync(checkout, { recursive: true, force: true });
});

it('runs the compiled CLI through bin/totes.js', () => {
  // There are no TypeScript sources in the copy: bin/totes.js can only have run dist/.
  expect(fs.existsSync(path.join(checkout, 'cli'))).toBe(false);
  const help = node('bin/totes.js', '--help');
  expect(help).toMatch(/Usage: totes/);
  expect(help).toMatch(/\bup\b/);
  expect(node('bin/totes.js', 'capture', '--help')).toMatch(/Usage: totes capture/);
});

it('finds the warehouse migrations and the CLI the stack starts capture with', () => {
  const found = JSON.parse(
    node(
      '-e',
      `const m = require('./dist/processors/load/migrate.js');
       const s = require('./dist/local/local-stack.js');
       process.stdout.write(JSON.stringify({ migrations: m.readMigrations().map((x) => x.name), cli: s.CLI }));`,
    ),
  ) as { migrations: string[]; cli: string };
  const sources = fs
    .readdirSync(path.join(ROOT, 'processors', 'load', 'migrations'))
    .filter((f) => f.endsWith('.sql'))
    .map((f) => f.slice(0, -4))
    .sort();
  expect(sources.length).toBeGreaterThan(0);
  expect(found.migrations).toEqual(sources);
  expect(found.cli).toBe(path.join(checkout, 'bin', 'totes.js'));
});
