import type { S3Client } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { s3ClientFor, startS3rver, type LocalS3 } from '../../local/s3rver';

/**
 * A real s3rver with `buckets` in a temporary directory for the tests of one file: started before
 * them, stopped and removed after. Read `s3`, `client` and `dataDir` inside tests (set in beforeAll).
 */
export function useLocalS3(buckets: string[]): { s3: LocalS3; client: S3Client; dataDir: string } {
  const state = {} as { s3: LocalS3; client: S3Client; dataDir: string };
  beforeAll(async () => {
    state.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-s3-'));
    state.s3 = await startS3rver({ dataDir: state.dataDir, buckets });
    state.client = s3ClientFor(state.s3.endpoint);
  });
  afterAll(async () => {
    state.client?.destroy();
    await state.s3?.stop();
    if (state.dataDir) fs.rmSync(state.dataDir, { recursive: true, force: true });
  });
  return state;
}
