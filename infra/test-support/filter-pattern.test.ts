import { FilterPattern } from 'aws-cdk-lib/aws-logs';
import { matchesJsonFilter } from './filter-pattern';

describe('matchesJsonFilter (the subset of CloudWatch JSON filter patterns the stacks render)', () => {
  const errorWithCode = FilterPattern.all(
    FilterPattern.stringValue('$.level', '=', 'ERROR'),
    FilterPattern.exists('$.errorCode'),
  ).logPatternString;

  it('matches strings exactly or with * wildcards, and numbers by comparison', () => {
    expect(matchesJsonFilter(errorWithCode, '{"level":"ERROR","errorCode":"InvalidRecord"}')).toBe(true);
    expect(matchesJsonFilter(errorWithCode, '{"level":"error","errorCode":"InvalidRecord"}')).toBe(false);
    expect(matchesJsonFilter(errorWithCode, '{"level":"ERROR"}')).toBe(false);
    expect(matchesJsonFilter(errorWithCode, 'not json')).toBe(false);
    const stats = FilterPattern.all(
      FilterPattern.stringValue('$.msg', '=', 'capture.stats'),
      FilterPattern.numberValue('$.lagSeconds', '>=', 0),
    ).logPatternString;
    expect(matchesJsonFilter(stats, '{"msg":"capture.stats","lagSeconds":0}')).toBe(true);
    expect(matchesJsonFilter(stats, '{"msg":"capture.stats","lagSeconds":"0"}')).toBe(false);
    expect(matchesJsonFilter('{ ($.a.b != "x") || ($.n < 2) }', '{"a":{"b":"x"},"n":1}')).toBe(true);
  });

  it('refuses what it does not understand instead of guessing', () => {
    expect(() => matchesJsonFilter('[ip, user]', '{}')).toThrow(/not a JSON filter pattern/);
    expect(() => matchesJsonFilter('{ $.a IS NULL }', '{}')).toThrow(/term not supported/);
    expect(() => matchesJsonFilter('{ ($.a = 1) && ($.b = 2) || ($.c = 3) }', '{}')).toThrow(/mixed/);
  });
});
