import { INGESTION_ERROR_PREFIX, INGESTION_PREFIX } from '../core/csv-codec';
import { DeliveryBuffers, ShardCheckpoints } from './delivery-stream-buffers';
import {
  checkPrefix,
  evaluatePrefix,
  formatUtc,
  MissingPartitionKeyError,
  UnsupportedPrefixExpressionError,
} from './delivery-stream-prefix';

const bytes = (n: number) => Buffer.alloc(n, 'x');

describe('DeliveryBuffers', () => {
  it('seals a partition before a record would push it past the size hint, and at the hint', () => {
    const checkpoints = new ShardCheckpoints();
    const buffers = new DeliveryBuffers({ sizeBytes: 100, intervalMs: 1_000 });
    const add = (prefix: string, n: number, seq: string) =>
      buffers.add(prefix, 'data', bytes(n), checkpoints.track('s0', seq), 0);

    expect(add('a/', 60, '1')).toEqual([]);
    expect(add('b/', 60, '2')).toEqual([]);
    const [full] = add('a/', 50, '3'); // 110 > 100: the old buffer goes alone
    expect(full).toMatchObject({
      prefix: 'a/',
      kind: 'data',
      first: { shardId: 's0', sequenceNumber: '1' },
    });
    expect(full.body).toHaveLength(60);
    const [exact] = add('b/', 40, '4'); // 100: at the hint
    expect(exact.body).toHaveLength(100);
    expect(exact.records.map((r) => r.sequenceNumber)).toEqual(['2', '4']);
    const [huge] = add('c/', 500, '5'); // one record above the hint: an object of its own
    expect(huge.body).toHaveLength(500);
    expect(buffers.stats(0)).toEqual({ records: 1, bytes: 50, oldestAgeMs: 0, partitions: 1 });
  });

  it('falls due when its first record has waited the interval hint', () => {
    const checkpoints = new ShardCheckpoints();
    const buffers = new DeliveryBuffers({ sizeBytes: 1_000, intervalMs: 100 });
    buffers.add('a/', 'data', bytes(1), checkpoints.track('s0', '1'), 1_000);
    buffers.add('a/', 'data', bytes(1), checkpoints.track('s0', '2'), 1_050);
    buffers.add('e/', 'error', bytes(1), checkpoints.track('s0', '3'), 1_060);
    expect(buffers.nextDueMs()).toBe(1_100);
    expect(buffers.due(1_099)).toEqual([]);
    const [a] = buffers.due(1_100);
    expect(a).toMatchObject({ prefix: 'a/', first: { sequenceNumber: '1' } });
    expect(a.records).toHaveLength(2);
    expect(buffers.stats(1_100)).toMatchObject({ records: 1, oldestAgeMs: 40 });
    expect(buffers.drain().map((b) => b.kind)).toEqual(['error']);
    expect(buffers.nextDueMs()).toBeUndefined();
    expect(buffers.stats(0)).toEqual({ records: 0, bytes: 0, oldestAgeMs: 0, partitions: 0 });
  });
});

describe('ShardCheckpoints', () => {
  it('advances a shard only past its leading run of durable records', () => {
    const checkpoints = new ShardCheckpoints(new Map([['s1', '7']]));
    const [a, b, c] = ['10', '11', '12'].map((seq) => checkpoints.track('s0', seq));
    const d = checkpoints.track('s1', '8');
    b.done = true;
    c.done = true;
    expect(checkpoints.advance()).toBe(false); // '10' still buffered holds s0 back
    expect(checkpoints.position('s0')).toBeUndefined();
    a.done = true;
    d.done = true;
    expect(checkpoints.advance()).toBe(true);
    expect(checkpoints.snapshot()).toEqual(
      new Map([
        ['s0', '12'],
        ['s1', '8'],
      ]),
    );
    expect(checkpoints.pending()).toBe(0);
    expect(checkpoints.advance()).toBe(false);
  });
});

describe('Firehose prefix expressions', () => {
  const t = Date.UTC(2025, 1, 28, 9, 5, 7);

  it('evaluates the ingestion and error prefixes as Firehose would', () => {
    expect(
      evaluatePrefix(INGESTION_PREFIX, {
        timestampMs: t,
        partitionKeys: { table: 'staff', schema: '0123456789abcdef' },
      }),
    ).toBe('totesys/staff/schema=0123456789abcdef/2025/02/28/09/');
    expect(
      evaluatePrefix(INGESTION_ERROR_PREFIX, { timestampMs: t, errorOutputType: 'processing-failed' }),
    ).toBe('errors/processing-failed/2025/02/28/09/');
  });

  it('formats the timestamp subset in UTC, with quoted literals', () => {
    expect(formatUtc("yyyy-MM-dd'T'HH:mm:ss", t)).toBe('2025-02-28T09:05:07');
    expect(evaluatePrefix('x/!{timestamp:yyyy}/!{timestamp:HH}/', { timestampMs: t })).toBe('x/2025/09/');
  });

  it('makes random strings and refuses what it cannot evaluate', () => {
    expect(evaluatePrefix('!{firehose:random-string}', { timestampMs: 0, random: () => 0 })).toBe(
      'aaaaaaaaaaa',
    );
    expect(evaluatePrefix('!{firehose:random-string}', { timestampMs: 0 })).toMatch(/^[a-z0-9]{11}$/);
    expect(() =>
      evaluatePrefix('!{partitionKeyFromLambda:table}', { timestampMs: 0, partitionKeys: {} }),
    ).toThrow(MissingPartitionKeyError);
    for (const bad of [
      '!{partitionKeyFromQuery:x}',
      '!{firehose:nope}',
      '!{timestamp:yyyy-QQ}',
      '!{firehose:error-output-type}',
    ])
      expect(() => checkPrefix(bad, [])).toThrow(UnsupportedPrefixExpressionError);
    expect(() => checkPrefix(INGESTION_PREFIX, ['table', 'schema'])).not.toThrow();
  });
});
