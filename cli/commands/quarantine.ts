import { LambdaClient } from '@aws-sdk/client-lambda';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import path from 'node:path';
import { Client } from 'pg';
import { createLogger, redactUrl } from '../../core/logger';
import { embeddedUrl } from '../../local/gather-health';
import { localRedrivers } from '../../local/local-reconcile';
import { readRuntimeInfo, RuntimeInfoError } from '../../local/runtime-info';
import { s3ClientFor } from '../../local/s3rver';
import { awsRedrivers } from '../../processors/reconcile/handler';
import {
  listQuarantine,
  NoSuchQuarantineEntryError,
  retryQuarantine,
  showQuarantine,
  type QuarantineDeps,
  type QuarantineEntry,
  type RetryResult,
} from '../../processors/reconcile/quarantine';
import { loadedVersionsIn, type Redrivers } from '../../processors/reconcile/reconcile';
import { defineCommand, UsageError } from '../command';

/** Exit codes: 0 done (or nothing quarantined), 1 something is quarantined (list) or a retry failed, 3 could not look. */
export const QUARANTINE_EXIT = { ok: 0, quarantined: 1, usage: 2, unreachable: 3 } as const;

const ACTIONS = ['list', 'show', 'retry'] as const;

function describe(entry: QuarantineEntry): string {
  const what =
    entry.kind === 'transform-rows'
      ? `${entry.rows} change(s) rejected by transform from ${entry.key}`
      : `${entry.kind === 'load-object' ? 'load' : 'transform'} could not take ${entry.key}`;
  return [
    `${entry.status.padEnd(12)} ${entry.id}`,
    `    ${what}`,
    `    reason: ${entry.reason}${entry.reasons && Object.keys(entry.reasons).length > 1 ? ` (+${Object.keys(entry.reasons).length - 1} other reason(s))` : ''}`,
    `    quarantined ${entry.quarantinedAt.toISOString()}`,
  ].join('\n');
}

/** What each status means for the operator, printed under the list. */
const STATUS_HELP: Record<QuarantineEntry['status'], string> = {
  quarantined: 'waits for a fix (code or the object), then `totes quarantine retry ID`',
  'rows waiting':
    'edit the values in the file if the data is wrong, or deploy the fix; then `retry ID` replays them',
  corrected: 'a corrected object replaced it: `retry ID` (or the reconciler) sends it again',
  done: 'finished since; `retry ID` just clears the mark',
  gone: 'the object no longer exists; nothing to send again',
};

function describeRetry(r: RetryResult): string {
  if (r.kind === 'transform-rows')
    return r.outcome === 'replayed'
      ? `replayed     ${r.id}: ${r.replayed} change(s) into ${r.replayKey} (sent to load), ${r.stillRejected} still rejected`
      : `not replayed ${r.id}: all ${r.stillRejected} change(s) still rejected (see \`totes quarantine show\`)`;
  return `${r.outcome.padEnd(12)} ${r.id}`;
}

export const command = defineCommand({
  name: 'quarantine',
  summary:
    'What the pipeline set aside, and re-driving it after a fix. `list`: every quarantined object and every ' +
    'file of rows the transform rejected, with its reason and where it stands (quarantined, corrected by a new ' +
    'version, done since, gone). `show ID`: one entry with its whole reason document (rejected rows with their ' +
    'values). `retry ID… | --all`: releases the mark and sends the object through its stage again (a failure ' +
    'quarantines it again: nothing loops); rejected rows are mapped again with the current code (edit the file ' +
    'first to correct values) and those that map are loaded. Against a `totes up` data directory, or the AWS ' +
    'buckets (--processed-bucket, --ingestion-bucket; retry also --load-queue-url and --transform-function).',
  usage:
    'quarantine list|show ID|retry (ID…|--all) [--data-dir DIR | --ingestion-bucket B --processed-bucket B] [--warehouse-url URL] [--json]',
  options: {
    'data-dir': { type: 'string' },
    'ingestion-bucket': { type: 'string' },
    'processed-bucket': { type: 'string' },
    'warehouse-url': { type: 'string' },
    'load-queue-url': { type: 'string' },
    'transform-function': { type: 'string' },
    all: { type: 'boolean' },
    json: { type: 'boolean' },
  },
  optionHelp: {
    'data-dir':
      'A `totes up` data directory (default $TOTES_DATA_DIR or ./.totes, unless buckets are given): its S3 and warehouse are found from it.',
    'ingestion-bucket':
      'AWS: the ingestion bucket (CSV from Firehose). Credentials and region from the environment.',
    'processed-bucket': 'AWS: the processed bucket (Parquet, and quarantine/).',
    'warehouse-url':
      "The warehouse, to tell objects loaded since (load_log; the reporting role is enough). Default: $TOTES_WAREHOUSE_URL, or the data directory's.",
    'load-queue-url': 'AWS, retry: the load queue (SQS) loads are sent to.',
    'transform-function': 'AWS, retry: the transform function, invoked asynchronously as S3 would.',
    all: 'retry: every entry that waits (quarantined, corrected, rows waiting) and clear marks of done ones.',
    json: 'Print JSON (list: an array of entries; show: the entry and its document; retry: the results).',
  },
  async run(values, positionals) {
    const [action, ...ids] = positionals;
    if (!ACTIONS.includes(action as (typeof ACTIONS)[number]))
      throw new UsageError(`expected one of ${ACTIONS.join(', ')}${action ? `, got "${action}"` : ''}`);
    if (action === 'list' && ids.length) throw new UsageError(`unexpected argument: ${ids[0]}`);
    if (action === 'show' && ids.length !== 1)
      throw new UsageError('show takes one ID (from `totes quarantine list`)');
    if (action === 'retry' && !values.all === (ids.length === 0))
      throw new UsageError('retry takes IDs, or --all');
    const aws = values['processed-bucket'] !== undefined || values['ingestion-bucket'] !== undefined;
    if (aws && !(values['processed-bucket'] && values['ingestion-bucket']))
      throw new UsageError('--ingestion-bucket and --processed-bucket go together');
    if (aws && values['data-dir'])
      throw new UsageError('--data-dir and the bucket options exclude each other');
    if (aws && action === 'retry' && !(values['load-queue-url'] && values['transform-function']))
      throw new UsageError('retry against AWS needs --load-queue-url and --transform-function');
    const say = (line: string) => process.stderr.write(`totes quarantine: ${line}\n`);
    const logger = createLogger({ service: 'quarantine', level: 'warn' });

    let s3: S3Client;
    let buckets: { ingestionBucket: string; processedBucket: string };
    let redrivers: () => Redrivers;
    let warehouseUrl = values['warehouse-url'] ?? process.env.TOTES_WAREHOUSE_URL;
    if (aws) {
      s3 = new S3Client({});
      buckets = {
        ingestionBucket: values['ingestion-bucket']!,
        processedBucket: values['processed-bucket']!,
      };
      redrivers = () =>
        awsRedrivers(
          { sqs: new SQSClient({}), lambda: new LambdaClient({}) },
          { loadQueueUrl: values['load-queue-url']!, transformFunctionName: values['transform-function']! },
        );
    } else {
      const dataDir = path.resolve(values['data-dir'] ?? process.env.TOTES_DATA_DIR ?? '.totes');
      let runtime;
      try {
        runtime = await readRuntimeInfo(dataDir);
      } catch (e) {
        if (!(e instanceof RuntimeInfoError)) throw e;
        say(e.message);
        return QUARANTINE_EXIT.unreachable;
      }
      s3 = s3ClientFor(runtime.s3Endpoint);
      buckets = { ingestionBucket: runtime.ingestionBucket, processedBucket: runtime.processedBucket };
      warehouseUrl ??= embeddedUrl(dataDir, 'warehouse') ?? undefined;
      redrivers = () => localRedrivers({ dataDir, s3, processedBucket: buckets.processedBucket, logger });
    }
    const warehouse = warehouseUrl
      ? new Client({ connectionString: warehouseUrl, connectionTimeoutMillis: 10_000 })
      : undefined;
    try {
      await warehouse?.connect().catch((e: Error) => {
        throw new Error(`cannot connect to the warehouse ${redactUrl(warehouseUrl!)}: ${e.message}`);
      });
      const deps: QuarantineDeps = {
        s3,
        ...buckets,
        loadedVersions: warehouse ? (keys) => loadedVersionsIn(warehouse, keys) : undefined,
        logger,
      };
      const out = (text: string) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
      if (action === 'list') {
        const entries = await listQuarantine(deps);
        if (values.json) out(JSON.stringify(entries, null, 2));
        else if (entries.length === 0) out('nothing quarantined');
        else {
          out(entries.map(describe).join('\n'));
          const statuses = [...new Set(entries.map((e) => e.status))];
          out(['', ...statuses.map((s) => `${s}: ${STATUS_HELP[s]}`)].join('\n'));
          if (!warehouse) out('(no warehouse given: objects loaded since are not recognised)');
        }
        return entries.some((e) => e.status !== 'done' && e.status !== 'gone')
          ? QUARANTINE_EXIT.quarantined
          : QUARANTINE_EXIT.ok;
      }
      if (action === 'show') {
        const { entry, document } = await showQuarantine(deps, ids[0]);
        if (values.json) out(JSON.stringify({ entry, document }, null, 2));
        else out(`${describe(entry)}\n\n${document}`);
        return QUARANTINE_EXIT.ok;
      }
      const targets = values.all
        ? (await listQuarantine(deps)).filter((e) => e.status !== 'gone').map((e) => e.id)
        : ids;
      const redrive = redrivers();
      const results: RetryResult[] = [];
      for (const id of targets) results.push(await retryQuarantine(deps, id, redrive));
      if (values.json) out(JSON.stringify(results, null, 2));
      else out(results.length ? results.map(describeRetry).join('\n') : 'nothing to retry');
      return QUARANTINE_EXIT.ok;
    } catch (e) {
      if (e instanceof NoSuchQuarantineEntryError) {
        say(e.message);
        return QUARANTINE_EXIT.usage;
      }
      say(e instanceof Error ? e.message : String(e));
      return QUARANTINE_EXIT.unreachable;
    } finally {
      s3.destroy();
      await warehouse?.end().catch(() => undefined);
    }
  },
});
