import type { Client } from 'pg';
import { getSlot } from '../../capture/slot';
import type { Logger } from '../../core/logger';
import type { MetricSet } from '../shared/metrics';

/**
 * The replication slot, measured from outside capture: the reconciler reads `pg_replication_slots`
 * on the source on its schedule, so the figures keep coming when capture is dead or hung (capture's
 * own `capture.stats` stop with it). For a source that is not RDS (an RDS source has
 * `OldestReplicationSlotLag` and `TransactionLogsDiskUsage` from RDS itself).
 *
 * Publishes (EMF, Stage=reconcile) SourceRetainedWalBytes, SourceSlotLagBytes and SourceSlotActive
 * (1/0). A slot that does not exist, or a source that cannot be read, publishes nothing: the alarms
 * treat missing data as breaching.
 */
export const SOURCE_SLOT_METRICS = {
  retainedWalBytes: 'SourceRetainedWalBytes',
  lagBytes: 'SourceSlotLagBytes',
  active: 'SourceSlotActive',
} as const;

export async function publishSourceSlot(
  source: Pick<Client, 'query'>,
  slotName: string,
  metrics: MetricSet,
  logger: Logger,
): Promise<{ retainedWalBytes: number | null; lagBytes: number | null; active: boolean } | null> {
  const slot = await getSlot(source as Client, slotName);
  if (!slot || !slot.inThisDatabase) {
    logger.error('the replication slot does not exist in the source database', {
      event: 'reconcile.slot_missing',
      slot: slotName,
    });
    return null;
  }
  if (slot.retainedWalBytes !== null)
    metrics.add(SOURCE_SLOT_METRICS.retainedWalBytes, slot.retainedWalBytes, 'Bytes');
  if (slot.lagBytes !== null) metrics.add(SOURCE_SLOT_METRICS.lagBytes, slot.lagBytes, 'Bytes');
  metrics.add(SOURCE_SLOT_METRICS.active, slot.active ? 1 : 0).flush();
  return { retainedWalBytes: slot.retainedWalBytes, lagBytes: slot.lagBytes, active: slot.active };
}
