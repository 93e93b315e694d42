import type { Logger } from '../core/logger';
import { gatherHealth } from '../local/gather-health';
import { startDashboard, type Dashboard } from './dashboard-server';

/** `totes up`'s dashboard port; taken, it falls back to any free port (the banner prints the URL). */
export const LOCAL_DASHBOARD_PORT = 54331;

/**
 * The dashboard `totes up` serves: on 127.0.0.1, with the whole health model (source slot, stream,
 * stages, quarantine) in its pipeline panel.
 */
export async function startLocalDashboard(stack: {
  dataDir: string;
  sourceUrl: string;
  warehouseUrl: string;
  logger: Logger;
}): Promise<Dashboard> {
  const options = {
    warehouseUrl: stack.warehouseUrl,
    logger: stack.logger,
    health: () =>
      gatherHealth({ dataDir: stack.dataDir, sourceUrl: stack.sourceUrl, warehouseUrl: stack.warehouseUrl }),
  };
  try {
    return await startDashboard({ ...options, port: LOCAL_DASHBOARD_PORT });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    return startDashboard({ ...options, port: 0 });
  }
}
