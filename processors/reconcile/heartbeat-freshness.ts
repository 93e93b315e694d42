import type { Client } from 'pg';
import type { Logger } from '../../core/logger';
import { heartbeatFreshnessSeconds } from '../../core/pipeline-heartbeat';
import type { MetricSet } from '../shared/metrics';

/** The metric the freshness alarm watches (EMF, Stage=reconcile): see infra/constructs/observability.ts. */
export const HEARTBEAT_FRESHNESS_METRIC = 'HeartbeatFreshness';

/**
 * Publishes warehouse freshness on the reconciler's schedule, not on loads: the age of the newest
 * capture heartbeat the warehouse holds (core/pipeline-heartbeat.ts), on the warehouse's clock.
 * When loads stop, it keeps being published and keeps growing; when no heartbeat was ever loaded
 * (or this function does not run), nothing is published, which the alarm treats as breaching.
 * Reads `rpt_pipeline_heartbeat`, which the read-only reporting role may read.
 */
export async function publishHeartbeatFreshness(
  warehouse: Pick<Client, 'query'>,
  metrics: MetricSet,
  logger: Logger,
): Promise<number | null> {
  const { rows } = await warehouse.query<{ newest: Date | null; now: Date }>(
    'SELECT max("newest_commit_ts") AS newest, now() AS now FROM "rpt_pipeline_heartbeat"',
  );
  const newest = rows[0]?.newest ?? null;
  const age = heartbeatFreshnessSeconds(newest ? newest.toISOString() : null, rows[0].now.getTime());
  if (age === null) {
    logger.warn(
      'no capture heartbeat in the warehouse: freshness unknown (the alarm treats it as breaching)',
      {
        event: 'reconcile.no_heartbeat',
      },
    );
    return null;
  }
  metrics.add(HEARTBEAT_FRESHNESS_METRIC, age, 'Seconds').flush();
  return age;
}
