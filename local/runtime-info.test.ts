import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  InvalidRuntimeInfoError,
  readRuntimeInfo,
  removeRuntimeInfo,
  runtimeInfoPath,
  RuntimeInfoNotFoundError,
  StaleRuntimeInfoError,
  writeRuntimeInfo,
  type RuntimeInfo,
} from './runtime-info';

const info: RuntimeInfo = {
  kinesisEndpoint: 'http://127.0.0.1:4567',
  streamName: 'totes-changes',
  s3Endpoint: 'http://127.0.0.1:4568',
  ingestionBucket: 'totes-ingestion',
  processedBucket: 'totes-processed',
  pid: process.pid,
  startedAt: '2025-02-28T09:15:02.123Z',
};

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-runtime-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The pid of a process that has exited. */
function deadPid(): number {
  return spawnSync(process.execPath, ['-e', '0']).pid!;
}

describe('runtime info', () => {
  it('round-trips through DIR/runtime.json, leaving no temp file behind', async () => {
    const nested = path.join(dir, 'data');
    expect(await writeRuntimeInfo(nested, info)).toBe(path.join(nested, 'runtime.json'));
    expect(await readRuntimeInfo(nested)).toEqual(info);
    expect(fs.readdirSync(nested)).toEqual(['runtime.json']);
  });

  it('says `totes up` is not running when the file is missing', async () => {
    await expect(readRuntimeInfo(dir)).rejects.toBeInstanceOf(RuntimeInfoNotFoundError);
  });

  it('rejects files that are not JSON or miss fields', async () => {
    fs.writeFileSync(runtimeInfoPath(dir), '{');
    await expect(readRuntimeInfo(dir)).rejects.toBeInstanceOf(InvalidRuntimeInfoError);
    fs.writeFileSync(
      runtimeInfoPath(dir),
      JSON.stringify({ ...info, s3Endpoint: 'not a url', streamName: undefined }),
    );
    const error = (await readRuntimeInfo(dir).catch((e: unknown) => e)) as InvalidRuntimeInfoError;
    expect(error.issues.join('\n')).toMatch(/s3Endpoint/);
    expect(error.issues.join('\n')).toMatch(/streamName/);
    await expect(writeRuntimeInfo(dir, { ...info, ingestionBucket: '' })).rejects.toThrow();
  });

  it('refuses a file left behind by a process that is gone', async () => {
    const pid = deadPid();
    await writeRuntimeInfo(dir, { ...info, pid });
    await expect(readRuntimeInfo(dir)).rejects.toEqual(new StaleRuntimeInfoError(runtimeInfoPath(dir), pid));
    const { pid: _pid, ...withoutPid } = info;
    await writeRuntimeInfo(dir, withoutPid);
    expect(await readRuntimeInfo(dir)).toEqual(withoutPid);
  });

  it('removes only its own file', async () => {
    await writeRuntimeInfo(dir, { ...info, pid: 1 });
    await removeRuntimeInfo(dir);
    expect(fs.existsSync(runtimeInfoPath(dir))).toBe(true);
    await removeRuntimeInfo(dir, 1);
    expect(fs.existsSync(runtimeInfoPath(dir))).toBe(false);
    await removeRuntimeInfo(dir);
    fs.writeFileSync(runtimeInfoPath(dir), 'garbage');
    await removeRuntimeInfo(dir);
    expect(fs.existsSync(runtimeInfoPath(dir))).toBe(false);
  });
});
