/**
 * Evaluates Firehose S3 prefix expressions (`!{namespace:value}`), so the local delivery stream
 * names objects from the very prefix strings the CDK stack gives Firehose.
 * https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html
 *
 * Supported: `timestamp` (a subset of Java DateTimeFormatter: yyyy MM dd HH mm ss and 'quoted'
 * literals; always UTC), `partitionKeyFromLambda`, `firehose:error-output-type` and
 * `firehose:random-string`. `partitionKeyFromQuery` (jq over JSON records) is not: our records are
 * CSV by the time they are partitioned, and the transformation function names the partitions.
 */

/** Base class of every error this module throws. */
export class FirehosePrefixError extends Error {
  override name = 'FirehosePrefixError';
}

export class UnsupportedPrefixExpressionError extends FirehosePrefixError {
  override name = 'UnsupportedPrefixExpressionError';
  constructor(
    readonly template: string,
    readonly expression: string,
  ) {
    super(`prefix ${JSON.stringify(template)}: unsupported expression ${expression}`);
  }
}

/** A record's partition keys lack one the prefix names (Firehose routes such records to errors). */
export class MissingPartitionKeyError extends FirehosePrefixError {
  override name = 'MissingPartitionKeyError';
  constructor(readonly key: string) {
    super(`partition key ${JSON.stringify(key)} is missing`);
  }
}

export interface PrefixContext {
  /** Firehose uses the arrival time of the oldest record in the object. */
  timestampMs: number;
  partitionKeys?: Readonly<Record<string, string>>;
  errorOutputType?: string;
  random?: () => number;
}

const EXPRESSION = /!\{([A-Za-z]+):([^}]*)\}/g;
const DATE_TOKEN = /yyyy|MM|dd|HH|mm|ss|'[^']*'|[A-Za-z]|[^A-Za-z']+/g;
const RANDOM_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

function two(n: number): string {
  return String(n).padStart(2, '0');
}

export function formatUtc(pattern: string, timestampMs: number, template = pattern): string {
  const d = new Date(timestampMs);
  return (pattern.match(DATE_TOKEN) ?? [])
    .map((token) => {
      switch (token) {
        case 'yyyy':
          return String(d.getUTCFullYear());
        case 'MM':
          return two(d.getUTCMonth() + 1);
        case 'dd':
          return two(d.getUTCDate());
        case 'HH':
          return two(d.getUTCHours());
        case 'mm':
          return two(d.getUTCMinutes());
        case 'ss':
          return two(d.getUTCSeconds());
        default:
          if (token.startsWith("'")) return token.slice(1, -1);
          if (/^[A-Za-z]$/.test(token))
            throw new UnsupportedPrefixExpressionError(template, `!{timestamp:${pattern}}`);
          return token;
      }
    })
    .join('');
}

export function evaluatePrefix(template: string, context: PrefixContext): string {
  return template.replace(EXPRESSION, (expression, namespace: string, value: string) => {
    switch (namespace) {
      case 'timestamp':
        return formatUtc(value, context.timestampMs, template);
      case 'partitionKeyFromLambda': {
        const key = context.partitionKeys?.[value];
        if (key === undefined || key === '') throw new MissingPartitionKeyError(value);
        return key;
      }
      case 'firehose':
        if (value === 'error-output-type' && context.errorOutputType) return context.errorOutputType;
        if (value === 'random-string') {
          const random = context.random ?? Math.random;
          return Array.from({ length: 11 }, () => RANDOM_ALPHABET[Math.floor(random() * 36)]).join('');
        }
        throw new UnsupportedPrefixExpressionError(template, expression);
      default:
        throw new UnsupportedPrefixExpressionError(template, expression);
    }
  });
}

/** Evaluates a template once with sample values, so a bad one fails at construction, not mid-stream. */
export function checkPrefix(
  template: string,
  partitionKeyNames: readonly string[],
  errorOutputType?: string,
): void {
  evaluatePrefix(template, {
    timestampMs: 0,
    partitionKeys: Object.fromEntries(partitionKeyNames.map((k) => [k, 'x'])),
    errorOutputType,
  });
}
