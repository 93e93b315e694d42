import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';
import type { Logger } from '../core/logger';
import { redactUrl } from '../core/logger';
import { inspectTotesys, installTotesys } from '../totesys';
import { startEmbeddedCluster, type EmbeddedCluster } from './embedded-postgres';
import { ensureStream, kinesisClientFor, startKinesalite, type LocalKinesis } from './kinesalite';
import { Supervisor } from './supervisor';

/**
 * `totes up`: the whole pipeline on this machine, every box a real process or protocol peer.
 * State that must survive a restart lives under `dataDir`:
 *
 *   source/             embedded Postgres holding totesys (unless --source-url)
 *   source-password     its superuser password, generated once (mode 0600)
 *   kinesis/            kinesalite's LevelDB: the stream survives restarts and kill -9
 *   capture-state.json  whether capture's initial snapshot completed
 *
 * Capture runs as a child process (as it runs as its own task in AWS), restarted if it dies.
 */
export interface LocalStackOptions {
  dataDir: string;
  /** Capture from this Postgres instead of the embedded one (it needs wal_level=logical). */
  sourceUrl?: string;
  /** Port of the embedded source; 0 picks a free one. */
  sourcePort?: number;
  /** Seed scale for a fresh embedded source. */
  scale?: number;
  streamName?: string;
  shards?: number;
  heartbeatIntervalMs?: number;
  logger: Logger;
  /** Each log line of the capture process (JSON). */
  onCaptureOutput?: (line: string) => void;
}

export interface LocalStack {
  sourceUrl: string;
  kinesisEndpoint: string;
  streamName: string;
  dataDir: string;
  capture: Supervisor;
  stop(): Promise<void>;
}

export const DEFAULT_STREAM_NAME = 'totes-changes';
const CLI = path.resolve(__dirname, '..', 'bin', 'totes.js');

function readOrCreateSecret(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    const secret = crypto.randomBytes(18).toString('base64url');
    fs.writeFileSync(file, `${secret}\n`, { mode: 0o600 });
    return secret;
  }
}

async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const { rows } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (rows.length === 0) await admin.query(`CREATE DATABASE "${database.replace(/"/g, '""')}"`);
  } finally {
    await admin.end();
  }
}

/** Seeds the source when it has no totesys tables yet; an existing database is left as it is. */
async function seedIfEmpty(url: string, scale: number, logger: Logger): Promise<void> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    const found = await inspectTotesys(client);
    if (found.tables.length > 0) return;
    logger.info('seeding the source with totesys', { scale });
    let last = 0;
    const counts = await installTotesys(client, {
      scale,
      onProgress: ({ rowsDone, rowsTotal }) => {
        if (Date.now() - last > 2000) {
          last = Date.now();
          logger.info('seeding', { rowsDone, rowsTotal });
        }
      },
    });
    logger.info('source seeded', { rows: Object.values(counts).reduce((a, b) => a + b, 0) });
  } finally {
    await client.end();
  }
}

export async function startLocalStack(options: LocalStackOptions): Promise<LocalStack> {
  const { logger } = options;
  const dataDir = path.resolve(options.dataDir);
  fs.mkdirSync(dataDir, { recursive: true });
  const streamName = options.streamName ?? DEFAULT_STREAM_NAME;
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.splice(0).reverse())
      await stop().catch((e) => logger.warn('stop failed', { err: e }));
  };
  try {
    let sourceUrl = options.sourceUrl;
    if (!sourceUrl) {
      const cluster: EmbeddedCluster = await startEmbeddedCluster({
        dataDir: path.join(dataDir, 'source'),
        port: options.sourcePort ?? 0,
        password: readOrCreateSecret(path.join(dataDir, 'source-password')),
      });
      stops.push(() => cluster.stop());
      await ensureDatabase(cluster.url, 'totesys');
      sourceUrl = cluster.urlFor('totesys');
      await seedIfEmpty(sourceUrl, options.scale ?? 1, logger);
    }
    logger.info('source ready', { source: redactUrl(sourceUrl) });

    const kinesis: LocalKinesis = await startKinesalite({ dataDir: path.join(dataDir, 'kinesis') });
    stops.push(() => kinesis.stop());
    const client = kinesisClientFor(kinesis.endpoint);
    await ensureStream(client, streamName, options.shards ?? 2).finally(() => client.destroy());
    logger.info('kinesis ready', { endpoint: kinesis.endpoint, stream: streamName });

    const capture = new Supervisor({
      name: 'capture',
      command: process.execPath,
      args: [CLI, 'capture'],
      env: {
        ...process.env,
        TOTES_SOURCE_URL: sourceUrl,
        TOTES_STREAM_NAME: streamName,
        TOTES_KINESIS_ENDPOINT: kinesis.endpoint,
        TOTES_STATE_FILE: path.join(dataDir, 'capture-state.json'),
        TOTES_HEARTBEAT_INTERVAL_MS: String(options.heartbeatIntervalMs ?? 5000),
      },
      logger,
      onOutput: options.onCaptureOutput,
    });
    capture.start();
    stops.push(() => capture.stop());

    return { sourceUrl, kinesisEndpoint: kinesis.endpoint, streamName, dataDir, capture, stop: stopAll };
  } catch (e) {
    await stopAll();
    throw e;
  }
}
