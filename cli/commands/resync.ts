import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import path from 'node:path';
import { FileStateStore, S3StateStore, type StateStore } from '../../capture/state-store';
import { defineCommand, UsageError } from '../command';
import { awsClientConfig } from '../../aws/request-handler';

/**
 * `totes resync`: asks capture for a reconciling snapshot of some tables (or all). The request is
 * written beside capture's state (a file locally, an S3 object in AWS); the running capture takes it
 * within one stats interval — or the next capture to start does — snapshots the tables beside its
 * stream under its current epoch, and the load reconciles each table when its snapshot completes:
 * rows the source no longer has are marked deleted, rows that differ get one new version, equal
 * rows add nothing.
 */
export const command = defineCommand({
  name: 'resync',
  summary:
    'Ask capture for a reconciling snapshot of some tables (or all of them), beside its stream: the ' +
    'warehouse then equals the source again for those tables, and rows that had not changed keep their ' +
    'single version. Capture takes the request within seconds (or at its next start).',
  usage: 'resync [--table T ...] [--data-dir DIR | --state-file FILE | --state-s3-uri s3://bucket/key]',
  options: {
    table: { type: 'string', multiple: true },
    'data-dir': { type: 'string' },
    'state-file': { type: 'string' },
    'state-s3-uri': { type: 'string' },
    region: { type: 'string' },
  },
  optionHelp: {
    table: 'A table to snapshot again; repeat for several (default: every captured table).',
    'data-dir': 'Data directory of the local `totes up` (default $TOTES_DATA_DIR or ./.totes).',
    'state-file': "Capture's state file, when capture runs on its own (its --state-file).",
    'state-s3-uri': "Capture's state in S3 (AWS: the task's TOTES_STATE_S3_URI), s3://bucket/key.",
    region: 'AWS region for --state-s3-uri (default: the AWS SDK chain).',
  },
  async run(values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`);
    const given = ['data-dir', 'state-file', 'state-s3-uri'].filter((k) => values[k as keyof typeof values]);
    if (given.length > 1) throw new UsageError(`give one of --${given.join(', --')}`);
    const tables = (values.table ?? []) as string[];
    const store = storeFor(values);
    await store.saveResyncRequest({ requestedAt: new Date().toISOString(), tables });
    process.stdout.write(
      `resync of ${tables.length ? tables.join(', ') : 'every captured table'} requested at ${store.location}.resync.json;\n` +
        'capture takes it within one stats interval (its log says "resync requested", then "snapshot finished").\n',
    );
    return 0;
  },
});

function storeFor(values: Record<string, unknown>): StateStore {
  const uri = values['state-s3-uri'] as string | undefined;
  if (uri) {
    const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(uri);
    if (!m) throw new UsageError(`--state-s3-uri must look like s3://bucket/key, got ${JSON.stringify(uri)}`);
    return new S3StateStore(new S3Client(awsClientConfig(values.region as string | undefined)), m[1], m[2], {
      get: (i) => new GetObjectCommand(i),
      put: (i) => new PutObjectCommand(i),
      del: (i) => new DeleteObjectCommand(i),
    });
  }
  const file = values['state-file'] as string | undefined;
  if (file) return new FileStateStore(path.resolve(file));
  const dataDir = path.resolve(
    (values['data-dir'] as string | undefined) ?? process.env.TOTES_DATA_DIR ?? '.totes',
  );
  // Where `totes up` keeps capture's state (local/local-stack.ts).
  return new FileStateStore(path.join(dataDir, 'capture-state.json'));
}
