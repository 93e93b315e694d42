import { createTestDatabase, withClient } from '../../test/support/pg';
import { runTotes } from '../../test/support/cli';

async function totes(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { code, out, err } = await runTotes(...argv);
  return { code, stdout: out, stderr: err };
}

const PASSWORD = () => new URL(process.env.TOTES_TEST_PG_URL!).password;

describe('totes seed', () => {
  const savedEnv = process.env.TOTES_SOURCE_URL;
  afterEach(() => {
    if (savedEnv === undefined) delete process.env.TOTES_SOURCE_URL;
    else process.env.TOTES_SOURCE_URL = savedEnv;
  });

  it('prints its options with --help', async () => {
    const { code, stdout } = await totes('seed', '--help');
    expect(code).toBe(0);
    expect(stdout).toContain('Usage: totes seed --source-url URL');
    for (const option of ['--source-url', '--scale', '--seed', '--reset']) expect(stdout).toContain(option);
  });

  it('says clearly that a source URL is needed', async () => {
    delete process.env.TOTES_SOURCE_URL;
    const { code, stderr } = await totes('seed');
    expect(code).toBe(2);
    expect(stderr).toContain('--source-url is required (or set TOTES_SOURCE_URL)');
  });

  it('rejects a scale or seed that is not a number, and stray arguments', async () => {
    expect((await totes('seed', '--source-url', 'postgres://x', '--scale', '0')).stderr).toContain(
      '--scale must be a number > 0, got "0"',
    );
    expect((await totes('seed', '--source-url', 'postgres://x', '--seed', '1.5')).code).toBe(2);
    expect((await totes('seed', '--source-url', 'postgres://x', 'extra')).stderr).toContain(
      'unexpected argument: extra',
    );
  });

  it('seeds the database named by TOTES_SOURCE_URL, refuses to do it twice, and starts over with --reset', async () => {
    const url = await createTestDatabase('cli_seed');
    process.env.TOTES_SOURCE_URL = url;

    const first = await totes('seed', '--scale', '0.02', '--seed', '5');
    expect(first.code).toBe(0);
    expect(first.stderr).toMatch(/totes seed: done in [\d.]+ s: address 30, currency 3, .*sales_order 260,/);
    expect(first.stderr).not.toContain(PASSWORD());
    expect(first.stderr).toContain(':***@');

    const again = await totes('seed', '--scale', '0.02');
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('the database already holds totesys data');
    expect(again.stderr).toContain('Run again with --reset');

    const reset = await totes('seed', '--source-url', url, '--scale', '0.01', '--reset');
    expect(reset.code).toBe(0);
    const orders = await withClient(
      url,
      async (c) => (await c.query('SELECT count(*)::int AS n FROM sales_order')).rows[0].n,
    );
    expect(orders).toBe(130);
  });

  it('reports a database it cannot reach without showing the password', async () => {
    const { code, stderr } = await totes(
      'seed',
      '--source-url',
      'postgres://totes:s3cret@127.0.0.1:1/nowhere',
    );
    expect(code).toBe(1);
    expect(stderr).toContain('failed on postgres://totes:***@127.0.0.1:1/nowhere');
    expect(stderr).not.toContain('s3cret');
  });
});
