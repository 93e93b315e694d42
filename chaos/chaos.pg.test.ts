import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChaosReport } from './chaos-report';

// `npm run chaos`, short: three faults (a power cut of the whole stack, capture killed, the source
// restarted) while the business writes, then the ledger against the warehouse's history and
// `totes verify`. It runs as `npm run chaos` does, in processes of its own (its Postgres clusters,
// totes up, capture), so this file only reads the JSON report. Every wait inside is a poll with a
// deadline (chaos-run.ts); the fault timing comes from the seed.

jest.setTimeout(240_000);

it('loses nothing and duplicates nothing under faults, and totes verify passes', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-chaos-test-'));
  const out = path.join(dir, 'report.json');
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      path.join(__dirname, 'run-chaos.ts'),
      '--rounds=3',
      '--seed=3',
      '--rate=10',
      '--scale=0.02',
      '--faults=kill-stack,kill-capture,restart-source',
      '--max-quiet-seconds=1',
      '--converge-timeout=90',
      `--out=${out}`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (d) => (output += String(d)));
  child.stderr.on('data', (d) => (output += String(d)));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  try {
    expect({ code, output }).toEqual({ code: 0, output: expect.stringContaining('PASS') });
    const report = JSON.parse(fs.readFileSync(out, 'utf8')) as ChaosReport;
    expect(report.faultsByKind).toEqual({ 'kill-stack': 1, 'kill-capture': 1, 'restart-source': 1 });
    expect(report.stackStarts).toBe(2);
    expect(report.changesWritten).toBeGreaterThan(0);
    expect(report.lost).toBe(0);
    expect(report.duplicated).toBe(0);
    expect(report.versions.unexpected).toBe(0);
    expect(report.faults.every((f) => f.convergeMs !== null)).toBe(true);
    expect(report.verify).toMatchObject({ exitCode: 0, matches: true });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
