import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Pool } from 'pg';
import { createLoadHandler } from '../processors/load/create-handler';
import { createTransformHandler } from '../processors/transform/create-handler';
import { s3ClientFor } from '../local/s3rver';
import { metricsFor } from '../processors/shared/metrics';
import { s3EventFactory } from '../test/support/s3-events';

/**
 * One stage of `npm run bench:streaming` in a process of its own, so its peak RSS is its own:
 * `transform <s3 endpoint> <ingestion bucket> <key> <processed bucket>` or
 * `load <s3 endpoint> <processed bucket> <key> <warehouse url>`. Prints one JSON line: the
 * process' RSS with everything imported and nothing read (`baselineRssMiB`), its peak RSS over
 * the run (`peakRssMiB`, VmHWM), wall and CPU seconds, and the handler's report.
 */

function statusMiB(field: 'VmRSS' | 'VmHWM'): number {
  const line = fs
    .readFileSync('/proc/self/status', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${field}:`));
  return Number(line?.split(/\s+/)[1] ?? NaN) / 1024;
}

async function main(): Promise<void> {
  const [stage, endpoint, bucket, key, target] = process.argv.slice(2);
  const s3 = s3ClientFor(endpoint);
  const event = s3EventFactory({ bucket, key });
  const pool = stage === 'load' ? new Pool({ connectionString: target, max: 1 }) : null;
  const handler =
    stage === 'transform'
      ? createTransformHandler({
          s3,
          processedBucket: target,
          metrics: metricsFor({ stage, write: () => undefined }),
        })
      : createLoadHandler({ s3, warehouse: pool!, metrics: metricsFor({ stage, write: () => undefined }) });
  const baselineRssMiB = statusMiB('VmRSS');
  const cpu = process.cpuUsage();
  const started = performance.now();
  const report = await handler(event);
  const wallSeconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  const peakRssMiB = statusMiB('VmHWM');
  await pool?.end();
  s3.destroy();
  process.stdout.write(
    `${JSON.stringify({ stage, baselineRssMiB, peakRssMiB, wallSeconds, cpuSeconds: (used.user + used.system) / 1e6, report })}\n`,
  );
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
