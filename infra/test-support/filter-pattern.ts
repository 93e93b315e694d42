/**
 * Does a CloudWatch Logs JSON filter pattern match a log line? Enough of the syntax for the
 * patterns this app's metric filters use (what aws-cdk-lib's FilterPattern renders): `{ term }`,
 * terms joined by `&&` or `||` (not mixed), each `$.a.b = "text*"`, `!=`, or a number comparison
 * (`=`, `!=`, `<`, `<=`, `>`, `>=`). In a string value `*` is a wildcard, so `"*"` is any string.
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/FilterAndPatternSyntax.html#matching-terms-json-log-events
 * A pattern outside this subset throws, so a test never passes by not understanding it.
 */
export function matchesJsonFilter(pattern: string, line: string): boolean {
  const trimmed = pattern.trim();
  if (!trimmed.startsWith('{') || !trimmed.endsWith('}'))
    throw new Error(`not a JSON filter pattern: ${pattern}`);
  const body = trimmed.slice(1, -1).trim();
  let event: unknown;
  try {
    event = JSON.parse(line);
  } catch {
    return false;
  }
  const and = body.includes('&&');
  if (and && body.includes('||')) throw new Error(`mixed && and || are not supported: ${pattern}`);
  const terms = body.split(and ? '&&' : '||').map((t) =>
    t
      .trim()
      .replace(/^\((.*)\)$/s, '$1')
      .trim(),
  );
  const results = terms.map((t) => matchesTerm(t, event, pattern));
  return and ? results.every(Boolean) : results.some(Boolean);
}

function matchesTerm(term: string, event: unknown, pattern: string): boolean {
  const m = /^\$((?:\.[A-Za-z0-9_-]+)+) ?(=|!=|<=|>=|<|>) ?(\S.*)$/.exec(term);
  if (!m) throw new Error(`term not supported: ${term} (in ${pattern})`);
  const [, path, op, raw] = m;
  let value: unknown = event;
  for (const part of path.slice(1).split('.'))
    value =
      value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[part] : undefined;
  if (raw.startsWith('"')) {
    const expected = JSON.parse(raw) as string;
    if (op !== '=' && op !== '!=') throw new Error(`${op} on a string: ${term}`);
    const escaped = expected.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
    const equal = typeof value === 'string' && new RegExp(`^${escaped}$`, 's').test(value);
    return op === '=' ? equal : !equal;
  }
  const n = Number(raw);
  if (!Number.isFinite(n)) throw new Error(`value not supported: ${raw} (in ${pattern})`);
  if (typeof value !== 'number') return false;
  switch (op) {
    case '=':
      return value === n;
    case '!=':
      return value !== n;
    case '<':
      return value < n;
    case '<=':
      return value <= n;
    case '>':
      return value > n;
    default:
      return value >= n;
  }
}
