import path from 'node:path';
import type { CpuProfile } from './cpu-profile';
import { stagesOf, summarizeThreads, topFrames, WAITING_FOR_A_CORE } from './profile-stages';

const root = path.resolve(__dirname, '..');
const frame = (id: number, functionName: string, url: string, children: number[] = []) => ({
  id,
  callFrame: { functionName, url, scriptId: '0', lineNumber: 0, columnNumber: 0 },
  children,
});

/**
 * A thread sampled every 500 µs that was descheduled twice while busy: V8 takes the next sample
 * only when the thread runs again, and its time delta spans the whole wait (30 ms, 20 ms).
 */
const profile: CpuProfile = {
  nodes: [
    frame(1, '(root)', '', [2, 4]),
    frame(2, 'handler', `file://${root}/processors/firehose-transform/create-handler.ts`, [3]),
    frame(3, 'decodeRecordData', `file://${root}/processors/firehose-transform/decode-record.ts`),
    frame(4, '(idle)', ''),
  ],
  startTime: 0,
  endTime: 92_000,
  samples: [3, 3, 3, 3, 4, 4],
  timeDeltas: [500, 30_000, 500, 20_000, 500, 40_500],
};

describe('time by stage', () => {
  it('charges a sample to the nearest stage frame, else to a package one stage owns', () => {
    const profile: CpuProfile = {
      nodes: [
        frame(1, '(root)', '', [2, 4, 6, 7, 8, 10]),
        frame(2, 'handler', `file://${root}/processors/load/create-handler.ts`, [3]),
        frame(3, 'decode', `file://${root}/node_modules/parquetjs-lite/lib/reader.js`),
        frame(4, 'onData', `file://${root}/node_modules/kinesalite/actions/putRecords.js`, [5]),
        frame(5, 'put', `file://${root}/node_modules/leveldown/leveldown.js`),
        frame(6, 'parse', `file://${root}/node_modules/@smithy/core/dist/index.js`),
        frame(7, '(idle)', ''),
        frame(8, 'encodeParquet', `file://${root}/processors/shared/parquet-codec.ts`, [9]),
        frame(9, 'shredRecord', `file://${root}/node_modules/parquetjs-lite/lib/shred.js`),
        frame(10, 'handler', `file://${root}/processors/transform/create-handler.ts`, [11]),
        frame(11, 'add', `file://${root}/processors/shared/parquet-codec-writer.ts`, [12]),
        frame(12, 'writeFieldBegin', `file://${root}/processors/shared/parquet-codec-thrift.ts`),
      ],
      startTime: 0,
      endTime: 10,
      samples: [3, 3, 5, 6, 7, 9, 9, 9, 9, 11, 12],
      timeDeltas: [1e6, 1e6, 1e6, 1e6, 1e6, 1e6, 1e6, 1e6, 1e6, 1e6, 1e6],
    };
    const stages = Object.fromEntries(stagesOf(profile).map((s) => [s.stage, s.share]));
    // The shared Parquet codec is charged by the side of it that runs: encoding is transform's.
    // So is the columnar writer's (and its Thrift writer's), though transform's handler called it.
    expect(stages).toEqual({
      'transform: Parquet encoding': 0.6,
      load: 0.2,
      'kinesalite (Kinesis)': 0.1,
      'other: @smithy/core': 0.1,
      idle: 0,
    });
    expect(topFrames(profile)[0]).toEqual({
      frame: 'shredRecord (parquetjs-lite/lib/shred.js:1)',
      seconds: 4,
      share: 0.4,
    });
  });
});

describe('time by stage on a loaded machine', () => {
  it('charges a busy sample at most one sampling interval; the rest of its delta was a wait for a core', () => {
    const stages = Object.fromEntries(stagesOf(profile, 500).map((s) => [s.stage, s.seconds * 1e6]));
    expect(stages).toEqual({
      'firehose record transformation': 2_000,
      [WAITING_FOR_A_CORE]: 49_000,
      idle: 41_000, // idle samples are not capped: waiting in the event loop is idle however long
    });
    expect(stagesOf(profile, 500).find((s) => s.stage === WAITING_FOR_A_CORE)?.share).toBe(0);
    expect(topFrames(profile, 15, 500)).toEqual([
      {
        frame: 'decodeRecordData (processors/firehose-transform/decode-record.ts)',
        seconds: 0.002,
        share: 1,
      },
    ]);
  });

  it('counts a thread busy only for the capped time', () => {
    const summary = summarizeThreads([{ thread: 'firehose-transform worker 1', profile }], 0.092, null, 500);
    expect(summary.threads![0].busySeconds).toBeCloseTo(0.002, 9);
  });

  it('without an interval, charges each sample its whole delta (wall time while busy)', () => {
    const stages = Object.fromEntries(stagesOf(profile).map((s) => [s.stage, s.seconds * 1e6]));
    expect(stages).toEqual({ 'firehose record transformation': 51_000, idle: 41_000 });
  });
});
