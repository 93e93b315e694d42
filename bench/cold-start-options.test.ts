import path from 'node:path';
import { parseColdStartOptions } from './cold-start-options';
import { BenchUsageError } from './options';

// The number parsing and the report's default path are bench/options.ts's, shared with the others.

const NOW = new Date('2026-12-02T03:04:05.678Z');

it('takes defaults, and the report goes to bench/results/coldstart-<UTC time>.json', () => {
  const options = parseColdStartOptions([], NOW)!;
  expect(options).toMatchObject({
    rows: 1_000_000,
    targetSeconds: 60,
    timeoutSeconds: 1800,
    profileIntervalUs: 2000,
  });
  expect(options.out).toBe(path.resolve(__dirname, 'results', 'coldstart-2026-12-02T03-04-05.json'));
});

it('reads numbers and --out, and profile-us 0 turns profiling off', () => {
  const options = parseColdStartOptions(['--rows', '5000', '--profile-us', '0', '--out', 'r.json'], NOW)!;
  expect(options).toMatchObject({ rows: 5000, profileIntervalUs: 0, out: path.resolve('r.json') });
});

it.each([[['--rows', '0']], [['--rows', '1.5']], [['--timeout', 'soon']], [['--nope']]])(
  'refuses %j',
  (argv) => {
    expect(() => parseColdStartOptions(argv, NOW)).toThrow(BenchUsageError);
  },
);
