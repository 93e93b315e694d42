import { FAULT_KINDS, parseChaosOptions } from './chaos-options';

describe('parseChaosOptions', () => {
  it('has defaults for everything', () => {
    expect(parseChaosOptions([])).toMatchObject({
      rounds: 10,
      seed: 1,
      rate: 20,
      scale: 0.05,
      faults: [...FAULT_KINDS],
      keepData: false,
    });
  });

  it('reads every option', () => {
    const o = parseChaosOptions([
      '--rounds=3',
      '--seed=9',
      '--rate=5',
      '--scale=0.1',
      '--faults=kill-capture, throttle-sink',
      '--max-quiet-seconds=2',
      '--converge-timeout=30',
      '--out=x.json',
      '--keep-data',
    ]);
    expect(o).toMatchObject({
      rounds: 3,
      seed: 9,
      rate: 5,
      scale: 0.1,
      faults: ['kill-capture', 'throttle-sink'],
      maxQuietSeconds: 2,
      convergeTimeoutSeconds: 30,
      keepData: true,
    });
    expect(o?.out).toMatch(/x\.json$/);
  });

  it('returns null for --help', () => {
    expect(parseChaosOptions(['--help'])).toBeNull();
  });

  it.each([
    [['--rounds=1.5'], /--rounds must be a whole number/],
    [['--rate=0'], /--rate must be above 0/],
    [['--scale=-1'], /--scale must be a number/],
    [['--faults=kill-everything'], /unknown kind "kill-everything"/],
    [['--faults=,'], /names no kind/],
    [['--bogus'], /Unknown option/],
  ])('refuses %j', (argv, message) => {
    expect(() => parseChaosOptions(argv)).toThrow(message);
  });
});
