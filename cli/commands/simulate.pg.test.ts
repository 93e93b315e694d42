import { spawn } from 'node:child_process';
import path from 'node:path';
import { createTestDatabase, waitFor, withClient } from '../../test/support/pg';
import { installTotesys } from '../../totesys';
import { runTotes } from '../../test/support/cli';

async function totes(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { code, out, err } = await runTotes(...argv);
  return { code, stdout: out, stderr: err };
}

const transactions = (url: string) =>
  withClient(
    url,
    async (c) => (await c.query('SELECT count(*)::int AS n FROM transaction')).rows[0].n as number,
  );

describe('totes simulate', () => {
  let url: string;
  beforeAll(async () => {
    url = await createTestDatabase('cli_simulate');
    await withClient(url, (c) => installTotesys(c, { scale: 0.01 }));
  });

  it('prints its options with --help', async () => {
    const { code, stdout } = await totes('simulate', '--help');
    expect(code).toBe(0);
    for (const option of ['--source-url', '--rate', '--duration', '--seed']) expect(stdout).toContain(option);
  });

  it('says clearly what is wrong with its arguments', async () => {
    const saved = process.env.TOTES_SOURCE_URL;
    delete process.env.TOTES_SOURCE_URL;
    try {
      const missing = await totes('simulate');
      expect(missing.code).toBe(2);
      expect(missing.stderr).toContain('--source-url is required (or set TOTES_SOURCE_URL)');
    } finally {
      if (saved !== undefined) process.env.TOTES_SOURCE_URL = saved;
    }
    const rate = await totes('simulate', '--source-url', url, '--rate', 'fast');
    expect(rate.code).toBe(2);
    expect(rate.stderr).toContain('--rate must be a number > 0, got "fast"');
    expect((await totes('simulate', '--source-url', url, '--duration', '-1')).code).toBe(2);
    expect((await totes('simulate', '--source-url', url, 'now')).code).toBe(2);
  });

  it('runs for --duration seconds at about --rate, then reports what it did', async () => {
    const before = await transactions(url);
    const { code, stderr } = await totes(
      'simulate',
      '--source-url',
      url,
      '--rate',
      '60',
      '--duration',
      '1',
      '--seed',
      '2',
    );
    expect(code).toBe(0);
    expect(stderr).toContain('totes simulate: 60 row changes/s on postgres://postgres:***@');
    const done = /stopped: (\d+) row changes in (\d+) events over ([\d.]+) s \(([\d.]+)\/s\); (.*)/.exec(
      stderr,
    );
    expect(done).not.toBeNull();
    const [, changes, , seconds] = done!;
    // Only the ceiling: how many a busy shared cluster allowed is not this test's to say
    // (totesys/simulate.test.ts checks the pacing exactly, on a virtual clock).
    expect(Number(changes)).toBeGreaterThan(0);
    expect(Number(changes)).toBeLessThanOrEqual(65);
    expect(Number(seconds)).toBeGreaterThanOrEqual(1);
    expect(done![5]).toMatch(/new_sales_order \d+/);
    expect(await transactions(url)).toBeGreaterThan(before);
    expect(stderr).not.toContain(new URL(url).password);
  });

  it('fails with the fix when the database was never seeded', async () => {
    const bare = await createTestDatabase('cli_simulate_bare');
    const { code, stderr } = await totes('simulate', '--source-url', bare, '--duration', '1');
    expect(code).toBe(1);
    expect(stderr).toContain('run `totes seed` first');
  });

  it('runs until SIGTERM when no duration is given, then exits 0', async () => {
    const before = await transactions(url);
    const bin = path.join(__dirname, '..', '..', 'bin', 'totes.js');
    const child = spawn(process.execPath, [bin, 'simulate', '--rate', '100'], {
      env: { ...process.env, TOTES_SOURCE_URL: url },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += String(d)));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await waitFor('the simulator to add orders', async () =>
      (await transactions(url)) > before + 2 ? true : undefined,
    );
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/stopped: \d+ row changes/);
  });
});
