import { createTestDatabase, waitFor, withClient } from '../test/support/pg';
import { installTotesys } from './seed';
import { runSimulation } from './simulate';

// Found by `npm run chaos` (restart-source): a source restart ends the simulator's session while it
// waits between two changes. The connection's 'error' event had no listener, so the process died
// with an unhandled-event dump; now the run fails with the error instead (the caller decides).
// pg_terminate_backend ends the session as a restart does (57P01, administrator command).
it('fails with an error, not an unhandled event, when the source ends its session', async () => {
  const url = await createTestDatabase('simulate_restart');
  await withClient(url, (c) => installTotesys(c, { scale: 0.02, seed: 1 }));
  const database = new URL(url).pathname.slice(1);
  let changes = 0;
  const running = runSimulation(url, {
    rate: 5,
    durationMs: 120_000,
    progressIntervalMs: 50,
    onProgress: (p) => (changes = p.rowChanges),
  });
  running.catch(() => undefined);
  await waitFor('the simulator to write', () => (changes > 0 ? true : undefined), 30_000);
  await withClient(url, (c) =>
    c.query(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
      [database],
    ),
  );
  await expect(running).rejects.toThrow(/terminat/i);
});
