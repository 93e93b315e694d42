import { Logger as PowertoolsLogger } from '@aws-lambda-powertools/logger';
import type { LogFields, Logger } from '../../core/logger';

/**
 * The Lambda functions' logger: Powertools for AWS Lambda (TypeScript) Logger
 * (https://docs.powertools.aws.dev/lambda/typescript/latest/features/logger/) behind the core's
 * small `Logger` interface, so the domain code (create-handler.ts, written against that interface
 * and run by `totes up` with the core logger) does not know which one it has.
 *
 * What Powertools brings: one JSON object per line in its documented shape — `level` in capitals
 * (`ERROR`), `message`, `service`, `timestamp`, the X-Ray trace id, and the fields given — the log
 * level from `POWERTOOLS_LOG_LEVEL` / `LOG_LEVEL` (either case; Lambda's advanced logging control,
 * `AWS_LAMBDA_LOG_LEVEL`, still wins when configured), and errors with name, message, cause and location.
 * Log-based metric filters match this shape (infra/pipeline-metrics.ts `LAMBDA_LOG`; asserted
 * against a real emitted line in infra/pipeline-metrics.test.ts).
 */
export function lambdaLogger(service: string, env: NodeJS.ProcessEnv = process.env): Logger {
  // Powertools takes only upper-case level names from the environment; the stack sets `info`.
  const level = (env.POWERTOOLS_LOG_LEVEL || env.LOG_LEVEL || '').toUpperCase();
  return adapt(
    new PowertoolsLogger({
      serviceName: service,
      ...(LEVELS.includes(level) ? { logLevel: level as 'DEBUG' | 'INFO' | 'WARN' | 'ERROR' } : {}),
    }),
  );
}

const LEVELS: readonly string[] = ['DEBUG', 'INFO', 'WARN', 'ERROR'];

function adapt(logger: PowertoolsLogger): Logger {
  // Powertools reads an Error given as a field (`{ err }`) through its JSON replacer.
  const extra = (fields?: LogFields) => (fields ? [fields] : []);
  return {
    debug: (msg, fields) => logger.debug(msg, ...extra(fields)),
    info: (msg, fields) => logger.info(msg, ...extra(fields)),
    warn: (msg, fields) => logger.warn(msg, ...extra(fields)),
    error: (msg, fields) => logger.error(msg, ...extra(fields)),
    child(fields) {
      const child = logger.createChild();
      child.appendPersistentKeys(fields);
      return adapt(child);
    },
  };
}
