import { isGzip, inflateRecord } from '../core/record-compression';
import { CompressingSink } from './compressing-sink';
import type { PutResult, RecordSink, SinkRecord } from './kinesis-sink';

class RecordingSink implements RecordSink {
  readonly puts: SinkRecord[][] = [];
  async put(records: readonly SinkRecord[]): Promise<PutResult> {
    this.puts.push([...records]);
    const bytes = records.reduce((n, r) => n + r.data.byteLength, 0);
    return {
      records: records.length,
      bytes,
      calls: 1,
      retries: 0,
      sequenceNumbers: records.map((_, i) => String(i)),
    };
  }
}

describe('CompressingSink', () => {
  it('hands on every record, in order, with its partition key, its data gzip', async () => {
    const next = new RecordingSink();
    const records = ['a', 'b', 'c'].map((key, i) => ({
      partitionKey: key,
      data: Buffer.from(
        JSON.stringify({ table: key, rows: Array.from({ length: 200 }, (_, j) => `${i}-${j}`) }),
      ),
    }));
    const result = await new CompressingSink(next).put(records);
    expect(next.puts).toHaveLength(1);
    const sent = next.puts[0];
    expect(sent.map((r) => r.partitionKey)).toEqual(['a', 'b', 'c']);
    for (const [i, r] of sent.entries()) {
      expect(isGzip(r.data)).toBe(true);
      expect(Buffer.from(inflateRecord(r.data)).equals(records[i].data)).toBe(true);
    }
    // The next sink's result, which counts the bytes Kinesis is sent.
    expect(result.bytes).toBe(sent.reduce((n, r) => n + r.data.byteLength, 0));
    expect(result.bytes).toBeLessThan(records.reduce((n, r) => n + r.data.byteLength, 0));
  });
});
