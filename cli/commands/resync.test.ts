import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FileStateStore } from '../../capture/state-store';
import { captureOutput } from '../../test/support/cli';
import { main } from '../totes';

describe('totes resync', () => {
  it('writes a request beside capture state, for the tables named (or all)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'resync-'));
    const run = await captureOutput(() =>
      main(['resync', '--data-dir', dir, '--table', 'staff', '--table', 'design']),
    );
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/resync of staff, design requested/);
    const store = new FileStateStore(path.join(dir, 'capture-state.json'));
    expect(await store.loadResyncRequest()).toMatchObject({ tables: ['staff', 'design'] });
    await captureOutput(() => main(['resync', '--state-file', path.join(dir, 'capture-state.json')]));
    expect(await store.loadResyncRequest()).toMatchObject({ tables: [] });
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('refuses two places at once and a malformed S3 URI', async () => {
    expect((await captureOutput(() => main(['resync', '--data-dir', 'a', '--state-file', 'b']))).code).toBe(
      2,
    );
    const bad = await captureOutput(() => main(['resync', '--state-s3-uri', 'bucket/key']));
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/s3:\/\/bucket\/key/);
  });
});
