import { KinesisClient } from '@aws-sdk/client-kinesis';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { Client } from 'pg';
import { awsRequestHandler } from '../aws/request-handler';
import { createLogger, redactUrl, type Logger } from '../core/logger';
import { CaptureService } from './capture-service';
import { captureSettingsFromEnv, sourceUrlFromSecret, type CaptureSettings } from './config';
import { CompressingSink } from './compressing-sink';
import { KinesisSink } from './kinesis-sink';
import { OversizedPayloadSink, S3PayloadStore } from './oversized-sink';
import { checkSource, FINDING } from './source-checks';
import { FileStateStore, S3StateStore, type StateStore } from './state-store';

/**
 * The capture process: environment → settings → service, with SIGTERM/SIGINT draining it (stop
 * reading, flush, confirm, exit 0). ECS sends SIGTERM and waits stopTimeout before SIGKILL.
 */

async function resolveSourceUrl(settings: CaptureSettings): Promise<string> {
  if (settings.sourceUrl) return settings.sourceUrl;
  const secrets = new SecretsManagerClient({ region: settings.region, requestHandler: awsRequestHandler() });
  try {
    const out = await secrets.send(new GetSecretValueCommand({ SecretId: settings.sourceSecretArn! }));
    return sourceUrlFromSecret(out.SecretString ?? '');
  } finally {
    secrets.destroy();
  }
}

/** An S3 client for the settings: AWS, or s3rver when TOTES_S3_ENDPOINT is set (`totes up`). */
function s3ClientFor(settings: CaptureSettings): S3Client {
  return new S3Client({
    region: settings.region,
    requestHandler: awsRequestHandler(),
    ...(settings.s3Endpoint
      ? {
          endpoint: settings.s3Endpoint,
          forcePathStyle: true,
          credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
          // s3rver predates the SDK's default CRC32 checksums.
          requestChecksumCalculation: 'WHEN_REQUIRED' as const,
          responseChecksumValidation: 'WHEN_REQUIRED' as const,
        }
      : {}),
  });
}

function stateStoreFor(settings: CaptureSettings): StateStore {
  if (settings.state.kind === 'file') return new FileStateStore(settings.state.path);
  const s3 = s3ClientFor(settings);
  return new S3StateStore(s3, settings.state.bucket, settings.state.key, {
    get: (i) => new GetObjectCommand(i),
    put: (i) => new PutObjectCommand(i),
    del: (i) => new DeleteObjectCommand(i),
  });
}

export interface BuiltCapture {
  service: CaptureService;
  /** Releases the SDK clients (their keep-alive sockets would hold the process open). */
  close(): void;
}

export async function buildCaptureService(settings: CaptureSettings, logger: Logger): Promise<BuiltCapture> {
  const sourceUrl = await resolveSourceUrl(settings);
  const kinesis = new KinesisClient({
    region: settings.region,
    // Every AWS call has a deadline: a PutRecords that never answers would otherwise leave capture
    // alive, paused and confirming nothing (the liveness watchdog is the net under this).
    // HTTP/1.1 also suits kinesalite, which has no HTTP/2.
    requestHandler: awsRequestHandler(),
    ...(settings.kinesisEndpoint
      ? {
          endpoint: settings.kinesisEndpoint,
          credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
        }
      : {}),
    // The sink retries with backoff itself; SDK retries underneath would multiply the attempts.
    maxAttempts: 1,
  });
  // Oversized changes are stored in S3 before their pointers go on the stream (capture/oversized-sink.ts).
  const s3 = settings.oversizedBucket ? s3ClientFor(settings) : null;
  logger.info('capture configured', {
    source: redactUrl(sourceUrl),
    stream: settings.streamName,
    recordCompression: settings.recordCompression,
    oversizedBucket: settings.oversizedBucket,
    slot: settings.slot,
    publication: settings.publication,
    tables: settings.tables.length,
  });
  const kinesisSink = new KinesisSink({ client: kinesis, streamName: settings.streamName, logger });
  const service = new CaptureService(
    {
      sourceUrl,
      schema: settings.schema,
      tables: settings.tables,
      publication: settings.publication,
      slot: settings.slot,
      heartbeatIntervalMs: settings.heartbeatIntervalMs,
      statsIntervalMs: settings.statsIntervalMs,
      lingerMs: settings.lingerMs,
      busyLingerMs: settings.busyLingerMs,
      flushBytes: settings.flushBytes,
      onSlotLost: settings.onSlotLost,
    },
    {
      sink: new OversizedPayloadSink({
        sink: settings.recordCompression === 'gzip' ? new CompressingSink(kinesisSink) : kinesisSink,
        store: s3 && settings.oversizedBucket ? new S3PayloadStore(s3, settings.oversizedBucket) : null,
        logger,
      }),
      state: stateStoreFor(settings),
      logger,
      preflight: async () => {
        const client = new Client({ connectionString: sourceUrl });
        await client.connect();
        const findings = await checkSource(client, {
          publication: settings.publication,
          slot: settings.slot,
          tables: settings.tables.map((t) => (settings.schema === 'public' ? t : `${settings.schema}.${t}`)),
        }).finally(() => client.end());
        // Capture handles these itself: a lost slot when it may resync (it logs and counts it), and
        // tables missing from its publication (it adds them and snapshots them alone).
        const handled = (f: { id: string }) =>
          (settings.onSlotLost === 'resync' && f.id === FINDING.slotInvalidated) ||
          f.id === FINDING.publicationTables;
        for (const f of findings.filter((x) => x.severity === 'warning'))
          logger.warn(f.problem, { fix: f.fix, check: f.id });
        return findings.filter((f) => f.severity === 'error' && !handled(f));
      },
    },
  );
  return {
    service,
    close: () => {
      kinesis.destroy();
      s3?.destroy();
    },
  };
}

/** Runs capture until a signal; resolves with the exit code. */
export async function runCapture(env: Record<string, string | undefined>): Promise<number> {
  const settings = captureSettingsFromEnv(env);
  const logger = createLogger({ service: 'capture', level: settings.logLevel });
  const { service, close } = await buildCaptureService(settings, logger);
  const onSignal = (signal: string) => {
    logger.info('signal received, draining', { signal });
    void service.stop();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  // Started by `totes up` with an IPC channel: if that parent dies (even by SIGKILL) the channel
  // closes. Its Kinesis died with it, so a drain would only wait on puts that cannot succeed, the
  // walsender meanwhile holding the source's shutdown (capture/orphaned-capture.pg.test.ts): end the
  // replication connection and exit at once. Open sockets and retry timers would keep the process
  // alive after run() ended, hence process.exit.
  const onParentGone = () => {
    logger.warn(
      'the process that started capture is gone; ending the replication connection without draining',
    );
    void service.abandon().finally(() => {
      close();
      process.exit(1);
    });
  };
  if (process.send) {
    process.once('disconnect', onParentGone);
    // Gone already, while capture was being set up: the event came and went.
    if (!process.connected) onParentGone();
  }
  try {
    await service.run();
    return 0;
  } catch (e) {
    logger.error(e instanceof Error ? e.message : String(e), { err: e });
    return 1;
  } finally {
    close();
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    // Letting go of the channel below emits 'disconnect' here too: that is not the parent leaving.
    process.off('disconnect', onParentGone);
    // An open IPC channel keeps the process alive; let go of it so capture exits once drained.
    if (process.connected) process.disconnect();
  }
}

if (require.main === module) {
  runCapture(process.env).then((code) => process.exit(code));
}
