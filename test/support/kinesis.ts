import {
  GetRecordsCommand,
  GetShardIteratorCommand,
  ListShardsCommand,
  type GetRecordsCommandOutput,
  type KinesisClient,
} from '@aws-sdk/client-kinesis';
import { decodeChangeBatch, type Change } from '../../core/change-event';
import { isGzip } from '../../core/record-compression';

/** One change as tests like to look at it: the row as an object keyed by column name. */
export interface FlatChange {
  table: string;
  op: Change['op'];
  epoch: number;
  /** `snapshot_end` markers: the table's snapshot row count. */
  rows?: number;
  lsn: string;
  seq: number;
  ts: string;
  row: Record<string, string | null>;
  unchanged: string[];
  columns: string[];
}

/** A raw Kinesis record as read back from a shard. */
export interface RawRecord {
  shardId: string;
  partitionKey: string;
  sequenceNumber: string;
  data: Buffer;
}

/**
 * Reads a Kinesis stream from the start of every shard, remembering where it got to, so a test can
 * poll it until what it expects has arrived.
 */
export class RawStreamReader {
  private iterators = new Map<string, string>();

  constructor(
    private readonly client: Pick<KinesisClient, 'send'>,
    private readonly streamName: string,
  ) {}

  /** Everything new on every shard since the last call. */
  async poll(): Promise<RawRecord[]> {
    const out: RawRecord[] = [];
    const shards = await this.client.send(new ListShardsCommand({ StreamName: this.streamName }));
    for (const shard of shards.Shards ?? []) {
      const shardId = shard.ShardId!;
      let iterator = this.iterators.get(shardId);
      if (!iterator) {
        const it = await this.client.send(
          new GetShardIteratorCommand({
            StreamName: this.streamName,
            ShardId: shardId,
            ShardIteratorType: 'TRIM_HORIZON',
          }),
        );
        iterator = it.ShardIterator!;
      }
      for (;;) {
        const page: GetRecordsCommandOutput = await this.client.send(
          new GetRecordsCommand({ ShardIterator: iterator, Limit: 10_000 }),
        );
        for (const r of page.Records ?? []) {
          out.push({
            shardId,
            partitionKey: r.PartitionKey!,
            sequenceNumber: r.SequenceNumber!,
            data: Buffer.from(r.Data!),
          });
        }
        if (!page.NextShardIterator) break; // the shard is closed and read to its end
        iterator = page.NextShardIterator;
        if (!page.Records?.length) break;
      }
      this.iterators.set(shardId, iterator);
    }
    return out;
  }
}

/** Every record currently in the stream, from all shards. */
export async function readAllRecords(
  client: Pick<KinesisClient, 'send'>,
  streamName: string,
): Promise<RawRecord[]> {
  return new RawStreamReader(client, streamName).poll();
}

/** Polls a stream of change batches and keeps every change, flattened. */
export class StreamCollector {
  private readonly reader: RawStreamReader;
  readonly changes: FlatChange[] = [];
  records = 0;
  /** Records that came gzip (core/record-compression.ts). */
  gzipRecords = 0;

  constructor(client: Pick<KinesisClient, 'send'>, streamName: string) {
    this.reader = new RawStreamReader(client, streamName);
  }

  /** Reads whatever is new; returns how many changes arrived. */
  async poll(): Promise<number> {
    const before = this.changes.length;
    for (const record of await this.reader.poll()) {
      this.records += 1;
      if (isGzip(record.data)) this.gzipRecords += 1;
      const batch = decodeChangeBatch(record.data);
      const names = batch.columns.map((c) => c.name);
      for (const change of batch.changes) {
        this.changes.push({
          table: batch.table,
          op: change.op,
          epoch: change.epoch ?? 0,
          rows: change.rows,
          lsn: change.lsn,
          seq: change.seq,
          ts: change.ts,
          row: Object.fromEntries(names.map((n, i) => [n, change.values[i] ?? null])),
          unchanged: (change.unchanged ?? []).map((i) => names[i]),
          columns: names,
        });
      }
    }
    return this.changes.length - before;
  }

  /** The table's row changes (snapshot end markers apart: see markersOf). */
  ofTable(table: string): FlatChange[] {
    return this.changes.filter((c) => c.table === table && c.op !== 'snapshot_end');
  }

  /** The table's snapshot end markers. */
  markersOf(table: string): FlatChange[] {
    return this.changes.filter((c) => c.table === table && c.op === 'snapshot_end');
  }
}

/**
 * Applies changes in position order to rebuild each table's current rows keyed by primary key,
 * the way a consumer would: the latest version of each key wins, deletes remove it.
 */
export function replayToState(
  changes: FlatChange[],
  keyColumn: string,
): Map<string, Record<string, string | null>> {
  const sorted = [...changes].sort((a, b) => {
    if (a.epoch !== b.epoch) return a.epoch - b.epoch;
    const x = BigInt(`0x${a.lsn.replace('/', '')}`);
    const y = BigInt(`0x${b.lsn.replace('/', '')}`);
    return x < y ? -1 : x > y ? 1 : a.seq - b.seq;
  });
  const state = new Map<string, Record<string, string | null>>();
  for (const c of sorted) {
    if (c.op === 'snapshot_end') continue; // a marker, not a row
    if (c.op === 'truncate') state.clear();
    else if (c.op === 'delete') state.delete(c.row[keyColumn]!);
    else {
      const previous = state.get(c.row[keyColumn]!);
      const row = { ...c.row };
      for (const col of c.unchanged) row[col] = previous?.[col] ?? null;
      state.set(c.row[keyColumn]!, row);
    }
  }
  return state;
}
