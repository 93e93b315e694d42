import { judgeStep, kneeOf, percentile, summariseLatencies, type StepResult } from './pipeline-report';
import { postgresRoleOf } from './process-sampler';

describe('latency summary', () => {
  it('takes nearest-rank percentiles', () => {
    const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(hundred, 0, 0.5)).toBe(50);
    expect(percentile(hundred, 0, 0.99)).toBe(99);
    expect(percentile([], 0, 0.5)).toBeNull();
  });

  it('counts a lost probe as never arriving: it pushes the high percentiles to unknown', () => {
    const s = summariseLatencies([100, 200, null]);
    expect(s).toEqual({ count: 3, lost: 1, p50Ms: 200, p99Ms: null, maxMs: null });
  });
});

describe('judging steps and the knee', () => {
  const step = (offered: number, achieved: number, p99Ms: number | null, drain: number | null = 1) => ({
    offeredPerSecond: offered,
    achievedPerSecond: achieved,
    probe: { count: 10, lost: p99Ms === null ? 1 : 0, p50Ms: 1, p99Ms, maxMs: p99Ms },
    drainSeconds: drain,
  });

  it('holds a step only with p99 in target, nothing lost, the rate reached and the backlog drained', () => {
    expect(judgeStep(step(1000, 990, 2500), 3000)).toEqual({ held: true, verdict: '' });
    expect(judgeStep(step(1000, 990, 3500), 3000).verdict).toBe('p99 3.50 s > 3.00 s');
    expect(judgeStep(step(1000, 990, null), 3000).verdict).toBe('1 probe(s) never arrived');
    expect(judgeStep(step(1000, 500, 100), 3000).verdict).toBe('the source took only 500/s of 1,000/s');
    expect(judgeStep(step(1000, 990, 100, null), 3000).verdict).toBe('the backlog did not drain');
  });

  it('is the highest offered rate held, the idle step aside', () => {
    const steps = [
      { ...step(0, 0, 500), held: true },
      { ...step(1000, 1000, 900), held: true },
      { ...step(5000, 4900, 2900), held: true },
      { ...step(10_000, 9000, 9000), held: false },
    ] as StepResult[];
    expect(kneeOf(steps)).toEqual({ offeredPerSecond: 5000, achievedPerSecond: 4900, p99Ms: 2900 });
    expect(kneeOf(steps.slice(3))).toBeNull();
  });
});

describe('process roles and CPU by stage', () => {
  it('tells a walsender, a client backend and an auxiliary process by their titles', () => {
    expect(postgresRoleOf('postgres: walsender postgres 127.0.0.1(40112) START_REPLICATION')).toBe(
      'walsender',
    );
    expect(postgresRoleOf('postgres: postgres totesys 127.0.0.1(40110) idle')).toBe('backends');
    expect(postgresRoleOf('postgres: checkpointer ')).toBe('background');
    expect(postgresRoleOf('postgres: autovacuum worker totesys')).toBe('background');
  });
});
