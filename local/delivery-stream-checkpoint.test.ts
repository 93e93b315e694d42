import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CHECKPOINT_FILE,
  CheckpointMismatchError,
  CheckpointStore,
  InvalidCheckpointError,
} from './delivery-stream-checkpoint';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-checkpoint-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('CheckpointStore', () => {
  it('starts empty, then round-trips positions atomically', async () => {
    const store = new CheckpointStore(path.join(dir, 'ds'), 'changes', 'totes-ingestion', () => 0);
    expect(await store.load()).toEqual(new Map());
    const positions = new Map([
      ['shardId-000000000001', '49'],
      ['shardId-000000000000', '50'],
    ]);
    await store.save(positions);
    expect(await store.load()).toEqual(positions);
    expect(fs.readdirSync(path.join(dir, 'ds'))).toEqual([CHECKPOINT_FILE]);
    expect(JSON.parse(fs.readFileSync(store.file, 'utf8'))).toEqual({
      version: 1,
      streamName: 'changes',
      deliveryStreamName: 'totes-ingestion',
      shards: { 'shardId-000000000000': '50', 'shardId-000000000001': '49' },
      updatedAt: '1970-01-01T00:00:00.000Z',
    });
  });

  it("refuses a corrupt file and another stream's checkpoint", async () => {
    const store = new CheckpointStore(dir, 'changes', 'totes-ingestion');
    fs.writeFileSync(store.file, '{"version":1');
    await expect(store.load()).rejects.toBeInstanceOf(InvalidCheckpointError);
    await new CheckpointStore(dir, 'changes', 'totes-replay').save(new Map());
    await expect(store.load()).rejects.toMatchObject({
      name: CheckpointMismatchError.name,
      found: { streamName: 'changes', deliveryStreamName: 'totes-replay' },
    });
  });

  it('passes on read errors other than a missing file', async () => {
    fs.mkdirSync(path.join(dir, CHECKPOINT_FILE));
    await expect(new CheckpointStore(dir, 'changes', 'x').load()).rejects.toMatchObject({ code: 'EISDIR' });
  });
});
