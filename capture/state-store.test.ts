import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FileStateStore, MemoryStateStore, S3StateStore, type CaptureState } from './state-store';

const state: CaptureState = {
  slot: 'totes_slot',
  consistentPoint: '0/1AF06A0',
  snapshotCompletedAt: '2026-11-25T17:50:55.891Z',
  snapshotRows: 5629,
  epoch: 1_764_600_000_000,
  tables: ['staff'],
};

describe('FileStateStore', () => {
  it('saves atomically, loads, and clears', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'state-'));
    const store = new FileStateStore(path.join(dir, 'nested', 'state.json'));
    expect(await store.load()).toBeNull();
    await store.save(state);
    expect(await store.load()).toEqual(state);
    expect(fs.readdirSync(path.join(dir, 'nested'))).toEqual(['state.json']); // no temp file left
    await store.clear();
    expect(await store.load()).toBeNull();
    await store.clear(); // clearing twice is fine
    fs.rmSync(dir, { recursive: true });
  });

  it('refuses a corrupt file instead of guessing', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'state-'));
    const file = path.join(dir, 'state.json');
    fs.writeFileSync(file, JSON.stringify({ slot: 1 }));
    await expect(new FileStateStore(file).load()).rejects.toThrow();
    fs.writeFileSync(file, '');
    await expect(new FileStateStore(file).load()).rejects.toThrow();
    fs.rmSync(dir, { recursive: true });
  });

  it('surfaces errors other than a missing file', async () => {
    await expect(new FileStateStore(os.tmpdir()).load()).rejects.toThrow(/EISDIR/);
  });
});

describe('MemoryStateStore', () => {
  it('holds one state', async () => {
    const store = new MemoryStateStore();
    await store.save(state);
    expect(await store.load()).toEqual(state);
    await store.clear();
    expect(await store.load()).toBeNull();
  });
});

describe('S3StateStore', () => {
  // A fake S3 holding objects in a map: the store's own logic (keys, JSON, NoSuchKey) is what is
  // tested here; the real S3 protocol is exercised against s3rver by the local pipeline tests.
  function fakeS3() {
    const objects = new Map<string, string>();
    type Cmd = { op: 'get' | 'put' | 'del'; input: { Bucket: string; Key: string; Body?: string } };
    const s3 = {
      send: async (command: unknown) => {
        const { op, input } = command as Cmd;
        const key = `${input.Bucket}/${input.Key}`;
        if (op === 'put') objects.set(key, input.Body!);
        if (op === 'del') objects.delete(key);
        if (op === 'get') {
          if (!objects.has(key)) throw Object.assign(new Error('missing'), { name: 'NoSuchKey' });
          return { Body: { transformToString: async () => objects.get(key)! } };
        }
        return {};
      },
    };
    const store = new S3StateStore(s3, 'bucket', 'capture/state.json', {
      get: (input) => ({ op: 'get', input }),
      put: (input) => ({ op: 'put', input }),
      del: (input) => ({ op: 'del', input }),
    });
    return { objects, store, s3 };
  }

  it('saves, loads and clears one object', async () => {
    const { objects, store } = fakeS3();
    expect(store.location).toBe('s3://bucket/capture/state.json');
    expect(await store.load()).toBeNull();
    await store.save(state);
    expect(JSON.parse(objects.get('bucket/capture/state.json')!)).toEqual(state);
    expect(await store.load()).toEqual(state);
    await store.clear();
    expect(await store.load()).toBeNull();
  });

  it('passes on errors other than a missing object', async () => {
    const { store, s3 } = fakeS3();
    s3.send = async () => {
      throw Object.assign(new Error('denied'), { name: 'AccessDenied' });
    };
    await expect(store.load()).rejects.toThrow('denied');
  });
});
