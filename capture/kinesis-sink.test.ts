import {
  AccessDeniedException,
  InvalidArgumentException,
  LimitExceededException,
  ProvisionedThroughputExceededException,
  ResourceNotFoundException,
  ValidationException,
  type KinesisClient,
  type PutRecordsCommand,
  type PutRecordsCommandInput,
  type PutRecordsResultEntry,
} from '@aws-sdk/client-kinesis';
import { createLogger } from '../core/logger';
import {
  InvalidPartitionKeyError,
  isRetryablePutError,
  KINESIS_PUT_RECORDS_LIMITS,
  KinesisSink,
  KinesisSinkError,
  planPutRecordsCalls,
  PutRecordsRejectedError,
  RecordTooLargeError,
  SinkRetriesExhaustedError,
  type KinesisSinkOptions,
  type SinkRecord,
} from './kinesis-sink';

const MiB = 1024 * 1024;
const STREAM = 'totes-changes';
const PTEE = 'ProvisionedThroughputExceededException';

const record = (text: string, partitionKey = 'staff'): SinkRecord => ({
  partitionKey,
  data: Buffer.from(text),
});
const records = (n: number, prefix = 'r'): SinkRecord[] =>
  Array.from({ length: n }, (_, i) => record(`${prefix}${i}`));
const sized = (bytes: number, partitionKey = 'k'): SinkRecord => ({
  partitionKey,
  data: new Uint8Array(bytes),
});
const text = (data: Uint8Array | undefined) => Buffer.from(data as Uint8Array).toString();

const metadata = { $metadata: {} };
const serviceError = (name: string) => {
  switch (name) {
    case PTEE:
      return new ProvisionedThroughputExceededException({ message: 'Rate exceeded', ...metadata });
    case 'LimitExceededException':
      return new LimitExceededException({ message: 'limit', ...metadata });
    case 'ResourceNotFoundException':
      return new ResourceNotFoundException({ message: 'Stream not found', ...metadata });
    case 'AccessDeniedException':
      return new AccessDeniedException({ message: 'denied', ...metadata });
    case 'ValidationException':
      return new ValidationException({ message: 'invalid', ...metadata });
    case 'InvalidArgumentException':
      return new InvalidArgumentException({ message: 'invalid', ...metadata });
    default:
      throw new Error(`no factory for ${name}`);
  }
};

type Reply = PutRecordsResultEntry[] | Error;
/** Decides the fate of one call: entries (in request order) or a whole-call error. Default: accept all. */
type Script = (input: PutRecordsCommandInput, callIndex: number) => Reply | undefined;

/**
 * A fake Kinesis that records every PutRecords input and answers from a script. Accepted entries get
 * the sequence number `seq:<data>` so tests can map results back to the records they came from.
 */
class FakeKinesis {
  readonly inputs: PutRecordsCommandInput[] = [];
  inFlight = 0;
  maxInFlight = 0;
  constructor(
    private readonly script: Script = () => undefined,
    private readonly gate: () => Promise<void> = () => Promise.resolve(),
  ) {}

  readonly send = async (command: PutRecordsCommand) => {
    const input = command.input;
    const callIndex = this.inputs.push(input) - 1;
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await this.gate();
      const reply = this.script(input, callIndex) ?? acceptAll(input);
      if (reply instanceof Error) throw reply;
      return { Records: reply, FailedRecordCount: reply.filter((e) => e.ErrorCode).length, ...metadata };
    } finally {
      this.inFlight -= 1;
    }
  };

  get client(): Pick<KinesisClient, 'send'> {
    return this as unknown as Pick<KinesisClient, 'send'>;
  }

  sentTexts(callIndex: number): string[] {
    return (this.inputs[callIndex].Records ?? []).map((r) => text(r.Data));
  }
}

const accepted = (data: Uint8Array | undefined): PutRecordsResultEntry => ({
  SequenceNumber: `seq:${text(data)}`,
  ShardId: 'shardId-000000000000',
});
const throttled: PutRecordsResultEntry = { ErrorCode: PTEE, ErrorMessage: 'Rate exceeded for shard' };
const acceptAll = (input: PutRecordsCommandInput) => (input.Records ?? []).map((r) => accepted(r.Data));

function sinkFor(fake: FakeKinesis, options: Partial<KinesisSinkOptions> = {}) {
  const sleeps: number[] = [];
  const sink = new KinesisSink({
    client: fake.client,
    streamName: STREAM,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.5,
    ...options,
  });
  return { sink, sleeps };
}

describe('planPutRecordsCalls', () => {
  it('returns no calls for no records', () => {
    expect(planPutRecordsCalls([])).toEqual([]);
  });

  it('splits at 500 records per call, keeping input order', () => {
    const plan = planPutRecordsCalls(records(1_201));
    expect(plan.map((c) => [c.start, c.count])).toEqual([
      [0, 500],
      [500, 500],
      [1000, 201],
    ]);
  });

  it('splits before a call would pass 5 MiB, counting partition-key bytes', () => {
    // 512 KiB of data plus a 2-byte key: ten of them are 20 bytes over 5 MiB, so nine per call.
    const plan = planPutRecordsCalls(Array.from({ length: 20 }, () => sized(512 * 1024, 'k1')));
    expect(plan.map((c) => c.count)).toEqual([9, 9, 2]);
    expect(plan[0].bytes).toBe(9 * (512 * 1024 + 2));
    for (const call of plan) expect(call.bytes).toBeLessThanOrEqual(5 * MiB);
  });

  it('fills a call to exactly 5 MiB', () => {
    const exact = Array.from({ length: 5 }, () => sized(MiB - 1, 'k'));
    expect(planPutRecordsCalls([...exact, sized(0, 'k')]).map((c) => [c.count, c.bytes])).toEqual([
      [5, 5 * MiB],
      [1, 1],
    ]);
  });

  it('counts multi-byte partition keys in UTF-8 bytes', () => {
    expect(planPutRecordsCalls([sized(10, 'é')])[0].bytes).toBe(12);
  });

  it('rejects a record over 1 MiB (data + key) with its index', () => {
    expect(() => planPutRecordsCalls([sized(MiB - 1), sized(MiB - 1)])).not.toThrow();
    const error = (() => {
      try {
        planPutRecordsCalls([sized(10), sized(MiB, 'design:7')]);
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(RecordTooLargeError);
    expect(error).toBeInstanceOf(KinesisSinkError);
    expect(error).toMatchObject({ recordIndex: 1, recordBytes: MiB + 8, limitBytes: MiB });
    // Capture sends a change too big for a record by claim check, with only its key columns: a
    // record still too big has key values over the limit. Say which row, and what to do.
    expect((error as Error).message).toBe(
      'record 1 (partition key "design:7") is 1048584 bytes (data + partition key); Kinesis accepts at most 1048576. ' +
        'Changes too big for a record travel by claim check with only their key columns, so these key values alone are too big: ' +
        'shorten them in the source, or leave the table out of capture (TOTES_TABLES)',
    );
  });

  it('rejects partition keys outside 1–256 characters', () => {
    expect(() => planPutRecordsCalls([sized(1, 'x'.repeat(256))])).not.toThrow();
    expect(() => planPutRecordsCalls([sized(1, '')])).toThrow(InvalidPartitionKeyError);
    expect(() => planPutRecordsCalls([sized(1, 'ok'), sized(1, 'x'.repeat(257))])).toThrow(
      expect.objectContaining({ recordIndex: 1, partitionKeyLength: 257, maxLength: 256 }),
    );
  });

  it('honours other limits when given', () => {
    const limits = { ...KINESIS_PUT_RECORDS_LIMITS, maxRecordsPerCall: 2 };
    expect(planPutRecordsCalls(records(5), limits).map((c) => c.count)).toEqual([2, 2, 1]);
  });
});

describe('KinesisSink.put', () => {
  it('resolves at once for no records, without calling Kinesis', async () => {
    const fake = new FakeKinesis();
    const { sink } = sinkFor(fake);
    expect(await sink.put([])).toEqual({ records: 0, bytes: 0, calls: 0, retries: 0, sequenceNumbers: [] });
    expect(fake.inputs).toHaveLength(0);
  });

  it('sends one call and returns sequence numbers in input order', async () => {
    const fake = new FakeKinesis();
    const { sink, sleeps } = sinkFor(fake);
    const input = [record('a', 'staff'), record('bb', 'sales_order')];
    const result = await sink.put(input);
    expect(result).toEqual({
      records: 2,
      bytes: 1 + 5 + 2 + 11,
      calls: 1,
      retries: 0,
      sequenceNumbers: ['seq:a', 'seq:bb'],
    });
    expect(fake.inputs[0]).toEqual({
      StreamName: STREAM,
      Records: [
        { PartitionKey: 'staff', Data: input[0].data },
        { PartitionKey: 'sales_order', Data: input[1].data },
      ],
    });
    expect(sleeps).toEqual([]);
  });

  it('resends only the entries that failed (2 and 5 of 6) and maps results back to input order', async () => {
    // Prepare: the first call throttles entries 2 and 5; the retry accepts them.
    const fake = new FakeKinesis((input, call) =>
      call === 0
        ? (input.Records ?? []).map((r, i) => (i === 1 || i === 4 ? throttled : accepted(r.Data)))
        : undefined,
    );
    const { sink, sleeps } = sinkFor(fake);

    // Act
    const result = await sink.put(records(6));

    // Assess
    expect(fake.inputs).toHaveLength(2);
    expect(fake.sentTexts(0)).toEqual(['r0', 'r1', 'r2', 'r3', 'r4', 'r5']);
    expect(fake.sentTexts(1)).toEqual(['r1', 'r4']);
    expect(result.sequenceNumbers).toEqual(['seq:r0', 'seq:r1', 'seq:r2', 'seq:r3', 'seq:r4', 'seq:r5']);
    expect(result).toMatchObject({ records: 6, calls: 2, retries: 1 });
    expect(sleeps).toHaveLength(1);
  });

  it('resends an entry the response left out', async () => {
    const fake = new FakeKinesis((input, call) => (call === 0 ? acceptAll(input).slice(0, 2) : undefined));
    const { sink } = sinkFor(fake);
    const result = await sink.put(records(3));
    expect(fake.sentTexts(1)).toEqual(['r2']);
    expect(result.sequenceNumbers).toEqual(['seq:r0', 'seq:r1', 'seq:r2']);
  });

  it('retries InternalFailure entries as well as throttled ones', async () => {
    const fake = new FakeKinesis((_input, call) =>
      call === 0 ? [{ ErrorCode: 'InternalFailure', ErrorMessage: 'Internal Service Failure' }] : undefined,
    );
    const { sink } = sinkFor(fake);
    expect((await sink.put(records(1))).calls).toBe(2);
  });

  const retryable: [string, () => Error][] = [
    [PTEE, () => serviceError(PTEE)],
    ['LimitExceededException', () => serviceError('LimitExceededException')],
    ['ThrottlingException', () => Object.assign(new Error('slow down'), { name: 'ThrottlingException' })],
    ['KMSThrottlingException', () => Object.assign(new Error('kms'), { name: 'KMSThrottlingException' })],
    ['ECONNRESET', () => Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })],
    [
      'HTTP 503',
      () =>
        Object.assign(new Error('Service Unavailable'), {
          name: 'Unknown',
          $metadata: { httpStatusCode: 503 },
        }),
    ],
    ['server fault', () => Object.assign(new Error('boom'), { name: 'Weird', $fault: 'server' })],
    [
      'SDK-marked retryable',
      () => Object.assign(new Error('x'), { name: 'Y', $retryable: { throttling: true } }),
    ],
    [
      'SDK-rewrapped ECONNREFUSED',
      () => new Error('AWS SDK error wrapper for Error: connect ECONNREFUSED 127.0.0.1:1'),
    ],
    [
      'wrapped network error',
      () => new Error('request failed', { cause: Object.assign(new Error('reset'), { code: 'EPIPE' }) }),
    ],
  ];

  it.each(retryable)('retries the whole call after %s, then succeeds', async (_label, makeError) => {
    const fake = new FakeKinesis((_input, call) => (call < 2 ? makeError() : undefined));
    const { sink, sleeps } = sinkFor(fake);
    const result = await sink.put(records(3));
    expect(fake.inputs).toHaveLength(3);
    expect(fake.sentTexts(2)).toEqual(['r0', 'r1', 'r2']);
    expect(result).toMatchObject({ calls: 3, retries: 2, sequenceNumbers: ['seq:r0', 'seq:r1', 'seq:r2'] });
    expect(sleeps).toHaveLength(2);
  });

  it.each([
    'ResourceNotFoundException',
    'AccessDeniedException',
    'ValidationException',
    'InvalidArgumentException',
  ])('throws PutRecordsRejectedError at once on %s', async (name) => {
    const cause = serviceError(name);
    const fake = new FakeKinesis(() => cause);
    const { sink, sleeps } = sinkFor(fake);
    const error = await sink.put(records(3)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PutRecordsRejectedError);
    expect(error).toBeInstanceOf(KinesisSinkError);
    expect(error).toMatchObject({ streamName: STREAM, errorName: name, cause });
    expect((error as Error).message).toContain(`stream ${STREAM}`);
    expect(fake.inputs).toHaveLength(1);
    expect(sleeps).toEqual([]);
  });

  it('treats a non-Error rejection as not retryable', async () => {
    const client = {
      send: async () => {
        throw 'weird';
      },
    } as unknown as Pick<KinesisClient, 'send'>;
    const sink = new KinesisSink({ client, streamName: STREAM });
    await expect(sink.put(records(1))).rejects.toMatchObject({ errorName: 'weird', cause: 'weird' });
  });

  it('gives up with SinkRetriesExhaustedError after maxAttempts, with counts', async () => {
    // Record 0 is accepted; record 1 is throttled on every call.
    const fake = new FakeKinesis((input) =>
      (input.Records ?? []).map((r) => (text(r.Data) === 'r1' ? throttled : accepted(r.Data))),
    );
    const { sink, sleeps } = sinkFor(fake, { maxAttempts: 4 });
    const error = await sink.put(records(2)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SinkRetriesExhaustedError);
    expect(error).toMatchObject({
      streamName: STREAM,
      attempts: 4,
      failedRecords: 1,
      acceptedRecords: 1,
      lastErrorCode: PTEE,
    });
    expect(fake.inputs).toHaveLength(4);
    expect(fake.inputs.slice(1).map((i) => i.Records?.length)).toEqual([1, 1, 1]);
    expect(sleeps).toHaveLength(3);
  });

  it('carries the last whole-call error as the cause when retries run out', async () => {
    const last = Object.assign(new Error('reset'), { code: 'ECONNRESET' });
    const fake = new FakeKinesis(() => last);
    const { sink } = sinkFor(fake, { maxAttempts: 2 });
    await expect(sink.put(records(1))).rejects.toMatchObject({
      name: 'SinkRetriesExhaustedError',
      lastErrorCode: 'ECONNRESET',
      failedRecords: 1,
      acceptedRecords: 0,
      cause: last,
    });
  });

  it('defaults to a generous retry budget', async () => {
    const fake = new FakeKinesis(() => serviceError(PTEE));
    const { sink } = sinkFor(fake);
    await expect(sink.put(records(1))).rejects.toMatchObject({ attempts: 20 });
  });

  it('backs off exponentially with full jitter, capped at maxBackoffMs', async () => {
    const fake = new FakeKinesis((_input, call) => (call < 8 ? serviceError(PTEE) : undefined));
    const draws = [1, 0, 0.5, 1, 1, 1, 1, 0.25];
    const { sink, sleeps } = sinkFor(fake, {
      baseBackoffMs: 100,
      maxBackoffMs: 1_000,
      random: () => draws.shift() as number,
    });
    await sink.put(records(1));
    // Ceilings 100, 200, 400, 800, 1000, 1000, 1000, 1000 times each draw.
    expect(sleeps).toEqual([100, 0, 200, 800, 1000, 1000, 1000, 250]);
  });

  it('really waits between attempts by default', async () => {
    const fake = new FakeKinesis((_input, call) => (call === 0 ? serviceError(PTEE) : undefined));
    const sink = new KinesisSink({
      client: fake.client,
      streamName: STREAM,
      baseBackoffMs: 1,
      random: () => 1,
    });
    expect((await sink.put(records(1))).retries).toBe(1);
  });

  it('splits a put into calls of at most 500 records', async () => {
    const fake = new FakeKinesis();
    const { sink } = sinkFor(fake);
    const result = await sink.put(records(1_001));
    expect(fake.inputs.map((i) => i.Records?.length)).toEqual([500, 500, 1]);
    expect(result.sequenceNumbers).toHaveLength(1_001);
    expect(result.sequenceNumbers[1_000]).toBe('seq:r1000');
  });

  it('splits a put into calls of at most 5 MiB', async () => {
    const fake = new FakeKinesis((input) =>
      (input.Records ?? []).map((_r, i) => ({ SequenceNumber: `${i}` })),
    );
    const { sink } = sinkFor(fake);
    const result = await sink.put(Array.from({ length: 11 }, () => sized(MiB - 1)));
    expect(fake.inputs.map((i) => i.Records?.length)).toEqual([5, 5, 1]);
    expect(result.bytes).toBe(11 * MiB);
  });

  it('rejects a put holding a record over 1 MiB before sending anything', async () => {
    const fake = new FakeKinesis();
    const { sink } = sinkFor(fake);
    await expect(sink.put([...records(600), sized(MiB)])).rejects.toBeInstanceOf(RecordTooLargeError);
    expect(fake.inputs).toHaveLength(0);
  });

  it('keeps at most maxConcurrentCalls calls in flight and covers every record', async () => {
    const fake = new FakeKinesis(undefined, () => new Promise((resolve) => setImmediate(resolve)));
    const { sink } = sinkFor(fake, { maxConcurrentCalls: 3 });
    const result = await sink.put(records(10 * 500));
    expect(fake.inputs).toHaveLength(10);
    expect(fake.maxInFlight).toBe(3);
    expect(result.sequenceNumbers.every((s, i) => s === `seq:r${i}`)).toBe(true);
  });

  it('stops every batch after a fatal error and settles only when none is in flight', async () => {
    // Batch 1 (records 500..999) hits a missing stream; batch 0 is being throttled meanwhile.
    const fake = new FakeKinesis(
      (input) => {
        if (text(input.Records?.[0].Data) === 'r500') return serviceError('ResourceNotFoundException');
        return serviceError(PTEE);
      },
      () => new Promise((resolve) => setImmediate(resolve)),
    );
    const { sink } = sinkFor(fake, { maxConcurrentCalls: 2 });
    const error = await sink.put(records(2_000)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PutRecordsRejectedError);
    expect(fake.inFlight).toBe(0);
    // Batches 2 and 3 never started; batch 0 stopped after its in-flight call.
    const firstRecords = fake.inputs.map((i) => text(i.Records?.[0].Data));
    expect(firstRecords).not.toContain('r1000');
    expect(firstRecords).not.toContain('r1500');
    expect(firstRecords.filter((r) => r === 'r0').length).toBeLessThanOrEqual(2);
  });
});

describe('KinesisSink logging', () => {
  function capture() {
    const lines: Record<string, unknown>[] = [];
    let clock = 0;
    const logger = createLogger({ service: 'test', level: 'debug', write: (l) => lines.push(JSON.parse(l)) });
    return {
      lines,
      logger,
      now: () => clock,
      advance: (ms: number) => (clock += ms),
      at: (level: string) => lines.filter((l) => l.level === level),
    };
  }

  it('does not warn about a single throttle that the next call clears', async () => {
    const log = capture();
    const fake = new FakeKinesis((_input, call) => (call === 0 ? serviceError(PTEE) : undefined));
    const { sink } = sinkFor(fake, { logger: log.logger, now: log.now });
    await sink.put(records(3));
    expect(log.at('warn')).toEqual([]);
    expect(log.at('info')).toEqual([]);
    expect(log.at('debug')).toHaveLength(1);
  });

  it('warns once per repeated-throttle episode, with counts and no record contents', async () => {
    // Prepare: two batches, each throttled for three calls before succeeding.
    const log = capture();
    const throttledCalls = new Map<string, number>();
    const fake = new FakeKinesis((input) => {
      const first = text(input.Records?.[0].Data);
      const n = (throttledCalls.get(first) ?? 0) + 1;
      throttledCalls.set(first, n);
      log.advance(100);
      return n <= 3 ? (input.Records ?? []).map(() => throttled) : undefined;
    });
    const { sink } = sinkFor(fake, { logger: log.logger, now: log.now, maxConcurrentCalls: 2 });

    // Act
    const result = await sink.put(records(1_000, 'secret-'));

    // Assess
    expect(result.retries).toBe(6);
    const warnings = log.at('warn');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({
      stream: STREAM,
      lastErrorCode: PTEE,
      attempt: 2,
      failedCalls: expect.any(Number),
      failedRecords: expect.any(Number),
    });
    const recovered = log.at('info');
    expect(recovered).toHaveLength(1);
    expect(recovered[0]).toMatchObject({
      msg: 'Kinesis retries recovered',
      failedCalls: 6,
      failedRecords: 3_000,
    });
    expect(JSON.stringify(log.lines)).not.toContain('secret-');
  });

  it('warns at most once per warnIntervalMs across episodes', async () => {
    const log = capture();
    const fake = new FakeKinesis((_input, call) => (call % 3 < 2 ? serviceError(PTEE) : undefined));
    const { sink } = sinkFor(fake, { logger: log.logger, now: log.now, warnIntervalMs: 60_000 });
    await sink.put(records(1)); // episode 1: warns
    log.advance(30_000);
    await sink.put(records(1)); // episode 2: too soon
    log.advance(30_000);
    await sink.put(records(1)); // episode 3: a minute later, warns again
    expect(log.at('warn')).toHaveLength(2);
    expect(log.at('info')).toHaveLength(2);
  });
});

describe('isRetryablePutError', () => {
  it('says no to non-objects and plain client errors', () => {
    expect(isRetryablePutError(undefined)).toBe(false);
    expect(isRetryablePutError(new Error('nope'))).toBe(false);
    expect(isRetryablePutError(serviceError('AccessDeniedException'))).toBe(false);
    expect(
      isRetryablePutError(Object.assign(new Error('x'), { name: 'X', $metadata: { httpStatusCode: 400 } })),
    ).toBe(false);
  });
});
