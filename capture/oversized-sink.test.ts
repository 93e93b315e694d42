import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import path from 'node:path';
import type { Column } from '../core/change-event';
import { createLogger } from '../core/logger';
import { s3ClientFor, startS3rver } from '../local/s3rver';
import { useLocalS3 } from '../test/support/local-s3';
import { ChangeBatcher } from './change-batcher';
import {
  KinesisSink,
  UnstoredPayloadError,
  type PutResult,
  type RecordSink,
  type SinkRecord,
} from './kinesis-sink';
import {
  NoOversizedBucketError,
  OversizedPayloadSink,
  PayloadStoreError,
  S3PayloadStore,
} from './oversized-sink';

// The claim-check sink against a real S3 peer (s3rver): payloads are stored before their pointer
// records are handed on, and a store that fails stops the put with the change named.

const BUCKET = 'ingestion';
const columns: Column[] = [
  { name: 'design_id', type: 'int4', key: true },
  { name: 'design_name', type: 'text', key: false },
];

const local = useLocalS3([BUCKET]);

/** Records what the stream was given, and whether each payload was in S3 at that moment. */
class RecordingSink implements RecordSink {
  readonly puts: { records: SinkRecord[]; stored: boolean[] }[] = [];
  constructor(private readonly keys: () => string[]) {}
  async put(records: readonly SinkRecord[]): Promise<PutResult> {
    const stored = await Promise.all(
      this.keys().map((Key) =>
        local.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key })).then(
          () => true,
          () => false,
        ),
      ),
    );
    this.puts.push({ records: [...records], stored });
    return { records: records.length, bytes: 0, calls: 1, retries: 0, sequenceNumbers: [] };
  }
}

function oversizedRecords(seq: number) {
  const batcher = new ChangeBatcher();
  batcher.add('public', 'design', columns, {
    op: 'update',
    lsn: '0/16B3748',
    seq,
    ts: '2025-02-28T09:15:02.123456Z',
    values: [String(seq), `${seq}`.repeat(1536 * 1024)],
  });
  batcher.add('public', 'design', columns, {
    op: 'insert',
    lsn: '0/16B3748',
    seq: seq + 1,
    ts: '2025-02-28T09:15:02.123456Z',
    values: ['99', 'small'],
  });
  return batcher.drain();
}

describe('OversizedPayloadSink', () => {
  it('stores every payload before the records go on, then hands them on without payloads', async () => {
    // Prepare
    const records = [...oversizedRecords(1), ...oversizedRecords(5)];
    const keys = records.flatMap((r) => (r.oversized ?? []).map((p) => p.key));
    const inner = new RecordingSink(() => keys);
    const lines: string[] = [];
    const logger = createLogger({ service: 'test', level: 'info', write: (line) => lines.push(line) });
    const sink = new OversizedPayloadSink({
      sink: inner,
      store: new S3PayloadStore(local.client, BUCKET),
      logger,
    });

    // Act
    await sink.put(records);

    // Assess
    expect(keys).toHaveLength(2);
    expect(inner.puts).toHaveLength(1);
    expect(inner.puts[0].stored).toEqual([true, true]);
    expect(inner.puts[0].records.map((r) => r.oversized)).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
    expect(inner.puts[0].records.map((r) => r.data)).toEqual(records.map((r) => r.data));
    const body = await local.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: keys[0] }));
    // Compared with Buffer.equals: jest's deep equality walks a MiB-long buffer byte by byte, slowly.
    expect(Buffer.from(await body.Body!.transformToByteArray()).equals(records[0].oversized![0].body)).toBe(
      true,
    );
    const logged = lines.map((l) => JSON.parse(l)).filter((l) => l.msg.startsWith('oversized change stored'));
    expect(logged.map((l) => [l.change, l.location]).sort()).toEqual([
      ['design (design_id=1) at epoch 0, lsn 0/16B3748, seq 1', `s3://${BUCKET}/${keys[0]}`],
      ['design (design_id=5) at epoch 0, lsn 0/16B3748, seq 5', `s3://${BUCKET}/${keys[1]}`],
    ]);
  });

  it('passes records without payloads straight through', async () => {
    const inner = new RecordingSink(() => []);
    const sink = new OversizedPayloadSink({ sink: inner, store: null });
    const records = [{ partitionKey: 'k', data: Buffer.from('{}') }];
    await sink.put(records);
    expect(inner.puts[0].records).toEqual(records);
  });

  it('stops the put, naming table, key and position, when no bucket is set', async () => {
    const inner = new RecordingSink(() => []);
    const sink = new OversizedPayloadSink({ sink: inner, store: null });
    const put = sink.put(oversizedRecords(11));
    await expect(put).rejects.toThrow(NoOversizedBucketError);
    await expect(put).rejects.toThrow(
      /design \(design_id=11\) at epoch 0, lsn 0\/16B3748, seq 11 .*TOTES_OVERSIZED_BUCKET/,
    );
    expect(inner.puts).toHaveLength(0);
  });

  it('stops the put, naming the change and the object, when S3 cannot be reached', async () => {
    // Prepare: a second s3rver, stopped, so its port refuses connections.
    const gone = await startS3rver({
      dataDir: fs.mkdtempSync(path.join(local.dataDir, 'gone-')),
      buckets: [BUCKET],
    });
    await gone.stop();
    const unreachable = s3ClientFor(gone.endpoint);
    const inner = new RecordingSink(() => []);
    const sink = new OversizedPayloadSink({ sink: inner, store: new S3PayloadStore(unreachable, BUCKET) });

    // Act
    const put = sink.put(oversizedRecords(21));

    // Assess: nothing reached the stream, so capture confirms nothing past the change.
    await expect(put).rejects.toThrow(PayloadStoreError);
    await expect(put).rejects.toThrow(
      /could not store the oversized change design \(design_id=21\) at epoch 0, lsn 0\/16B3748, seq 21 at s3:\/\/ingestion\/oversized\/design\/[0-9a-f]{64}\.json/,
    );
    expect(inner.puts).toHaveLength(0);
    unreachable.destroy();
  });
});

describe('KinesisSink', () => {
  it('refuses a record whose payload nobody stored, before sending anything', async () => {
    const send = jest.fn();
    const sink = new KinesisSink({ client: { send }, streamName: 's' });
    await expect(sink.put(oversizedRecords(31))).rejects.toThrow(UnstoredPayloadError);
    await expect(sink.put(oversizedRecords(31))).rejects.toThrow(/design \(design_id=31\)/);
    expect(send).not.toHaveBeenCalled();
  });
});
