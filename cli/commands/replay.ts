import { KinesisClient } from '@aws-sdk/client-kinesis';
import { S3Client } from '@aws-sdk/client-s3';
import path from 'node:path';
import { createLogger } from '../../core/logger';
import { kinesisClientFor } from '../../local/kinesalite';
import {
  parseReplayPoint,
  replay,
  ReplayError,
  type ReplayOptions,
  type ReplayProgress,
} from '../../local/replay';
import { readRuntimeInfo, RuntimeInfoError } from '../../local/runtime-info';
import { s3ClientFor } from '../../local/s3rver';
import { defineCommand, UsageError } from '../command';
import { awsClientConfig } from '../../aws/request-handler';

export const command = defineCommand({
  name: 'replay',
  summary:
    'Read a window of the Kinesis change stream again and deliver it through the same transformation ' +
    'into new CSV objects in the ingestion bucket. Changes keep their identities, so loading them ' +
    'again changes nothing that is already loaded. Locally it uses the `totes up` running on ' +
    '--data-dir; with --stream it reads the AWS stream and writes straight to --bucket ' +
    '(docs/ingestion-layout.md says why not through Firehose).',
  usage: 'replay --from TIME|SEQ [--to TIME|SEQ] [--data-dir DIR | --stream NAME --bucket NAME [--region R]]',
  options: {
    from: { type: 'string' },
    to: { type: 'string' },
    'data-dir': { type: 'string' },
    stream: { type: 'string' },
    bucket: { type: 'string' },
    region: { type: 'string' },
  },
  optionHelp: {
    from: 'Start: an ISO 8601 time (2025-02-28T09:00:00Z) or a Kinesis sequence number (required).',
    to: 'End (inclusive), same forms (default: the stream as it is when the replay starts).',
    'data-dir': 'Data directory of the running `totes up` (default $TOTES_DATA_DIR or ./.totes).',
    stream: 'AWS mode: the Kinesis stream to read, instead of the local one.',
    bucket: 'AWS mode: the ingestion bucket to write to (default $TOTES_INGESTION_BUCKET).',
    region: 'AWS mode: the region (default: the AWS SDK chain, e.g. $AWS_REGION).',
  },
  async run(values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`);
    if (!values.from) throw new UsageError('--from is required');
    const parse = (text: string) => {
      try {
        return parseReplayPoint(text);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
    };
    const from = parse(values.from);
    const to = values.to === undefined ? undefined : parse(values.to);
    if (values.stream !== undefined && values['data-dir'] !== undefined)
      throw new UsageError('give either --data-dir (local) or --stream (AWS), not both');
    const say = (line: string) => process.stderr.write(`totes replay: ${line}\n`);

    let target: Pick<ReplayOptions, 'streamName' | 'bucket' | 'atTimestamp'> & {
      kinesis: KinesisClient;
      s3: S3Client;
    };
    let where: string;
    if (values.stream !== undefined) {
      const bucket = values.bucket ?? process.env.TOTES_INGESTION_BUCKET;
      if (!bucket) throw new UsageError('--bucket is required with --stream (or set TOTES_INGESTION_BUCKET)');
      target = {
        kinesis: new KinesisClient(awsClientConfig(values.region)),
        streamName: values.stream,
        s3: new S3Client(awsClientConfig(values.region)),
        bucket,
        atTimestamp: 'native',
      };
      where = `stream ${values.stream} → s3://${bucket}`;
    } else {
      if (values.bucket !== undefined || values.region !== undefined)
        throw new UsageError('--bucket and --region go with --stream (AWS mode)');
      const dataDir = path.resolve(values['data-dir'] ?? process.env.TOTES_DATA_DIR ?? '.totes');
      let info;
      try {
        info = await readRuntimeInfo(dataDir);
      } catch (e) {
        if (!(e instanceof RuntimeInfoError)) throw e;
        say(e.message);
        return 1;
      }
      target = {
        kinesis: kinesisClientFor(info.kinesisEndpoint),
        streamName: info.streamName,
        s3: s3ClientFor(info.s3Endpoint),
        bucket: info.ingestionBucket,
        // kinesalite cannot answer AT_TIMESTAMP when nothing is that recent (see delivery-stream.ts).
        atTimestamp: 'scan',
      };
      where = `local stream ${info.streamName} → s3://${info.ingestionBucket} (totes up on ${dataDir})`;
    }

    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const describe = (p: ReplayProgress) =>
      `${Math.round(p.fraction * 100)}% of ${p.window.from.toISOString()} → ${p.window.to.toISOString()}: ` +
      `${p.records} records, ${p.objects} objects${p.errorObjects ? `, ${p.errorObjects} error objects` : ''}`;
    say(`replaying ${where}`);
    try {
      const result = await replay({
        ...target,
        from,
        to,
        signal: stop.signal,
        onProgress: (p) => say(describe(p)),
        logger: createLogger({ service: 'totes-replay', level: 'warn' }),
      });
      process.stdout.write(
        `${stop.signal.aborted ? 'stopped early' : 'replayed'}: ${result.records} records into ` +
          `${result.objects} objects (${result.bytes} bytes)` +
          `${result.errorObjects ? ` and ${result.errorObjects} error objects` : ''} in s3://${target.bucket} ` +
          `in ${(result.durationMs / 1000).toFixed(1)} s\n`,
      );
      return stop.signal.aborted ? 130 : 0;
    } catch (e) {
      if (!(e instanceof Error)) throw e;
      say(`failed: ${e.message}${e instanceof ReplayError ? '' : ` (${e.name})`}`);
      return 1;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      target.kinesis.destroy();
      target.s3.destroy();
    }
  },
});
