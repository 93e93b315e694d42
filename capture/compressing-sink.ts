import { compressRecord } from '../core/record-compression';
import type { PutResult, RecordSink, SinkRecord } from './kinesis-sink';

/**
 * Compresses each record's data (core/record-compression.ts says when and why) before handing the
 * records to the next sink (the Kinesis sink), which then counts and limits the compressed bytes,
 * as Kinesis does. Records keep their order and partition keys; `put` resolves when the next sink's
 * does, so the delivery contract (capture/kinesis-sink.ts) is unchanged. A record that would not
 * shrink, or would shrink suspiciously far, is sent as it was built.
 */
export class CompressingSink implements RecordSink {
  constructor(private readonly next: RecordSink) {}

  async put(records: readonly SinkRecord[]): Promise<PutResult> {
    const compressed = await Promise.all(
      records.map(async (r) => ({ ...r, data: await compressRecord(r.data) })),
    );
    return this.next.put(compressed);
  }
}
