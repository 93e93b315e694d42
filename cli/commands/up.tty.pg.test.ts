import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { removeDataDir } from '../../local/postgres-placement';
import { waitFor } from '../../test/support/pg';
import { runSimulation } from '../../totesys';

// `totes up` as a person starts it: in a real pseudo-terminal (util-linux `script` allocates one and
// relays it), given a size as a terminal window has. It must show plain-words progress and a status
// line, not JSON log lines, and stop cleanly on Ctrl-C typed into that terminal — pressed while the
// business is writing, so every stage has work in flight when the signal arrives.

const CLI = path.resolve(__dirname, '..', '..', 'bin', 'totes.js');
let root: string;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-tty-'));
});

afterAll(() => removeDataDir(root));

/** What the terminal shows, without the cursor movements: each redraw of the status line on its own line. */
const screenText = (raw: string) =>
  raw
    // eslint-disable-next-line no-control-regex -- ANSI control sequences are what is being removed
    .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')
    .split(/\r\n|\r|\n/)
    .filter((l) => l.trim());

it('shows progress, then one status line, and no JSON; Ctrl-C stops it', async () => {
  const command = [
    'stty rows 40 cols 250;',
    `exec ${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} up`,
    `--data-dir ${JSON.stringify(path.join(root, 'data'))}`,
    '--scale 0.05 --source-port 0 --warehouse-port 0',
  ].join(' ');
  const child = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let raw = '';
  child.stdout.on('data', (d) => (raw += String(d)));
  child.stderr.on('data', (d) => (raw += String(d)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const business = new AbortController();
  let simulation: Promise<unknown> | undefined;
  try {
    await waitFor(
      'the pipeline to catch up',
      () => (screenText(raw).some((l) => l.includes('Caught up')) ? true : undefined),
      120_000,
      200,
    );
    await waitFor(
      'a status line with the warehouse freshness',
      () => (screenText(raw).some((l) => /^streaming · .*warehouse freshness/.test(l)) ? true : undefined),
      30_000,
      200,
    );
    // The banner names the source (password redacted) and the file that holds its password.
    const banner = /source\s+(postgres:\/\/\S+)\s+\(password in (\S+)\)/.exec(screenText(raw).join('\n'));
    if (!banner) throw new Error(`no source URL in the banner:\n${screenText(raw).join('\n')}`);
    const source = new URL(banner[1]);
    source.password = fs.readFileSync(banner[2], 'utf8').trim();
    let written = 0;
    simulation = runSimulation(source.toString(), {
      rate: 300,
      signal: business.signal,
      progressIntervalMs: 100,
      onProgress: (p) => (written = p.rowChanges),
    }).catch(() => undefined); // Its connection ends when `totes up` stops the source, as it should.
    await waitFor('the business to be writing', () => (written >= 150 ? true : undefined), 60_000, 50);
  } finally {
    child.stdin.write('\x03');
  }
  const code = await exited;
  business.abort();
  await simulation;
  const lines = screenText(raw);
  // On failure the assertion shows what the person saw last, which says which stage did not stop.
  expect(code === 0 ? 'exit 0' : `exit ${code}; the screen ended:\n${lines.slice(-30).join('\n')}`).toBe(
    'exit 0',
  );
  expect(lines).toEqual(
    expect.arrayContaining([
      expect.stringMatching(/Source seeded: [\d,]+ rows$/),
      expect.stringMatching(/Snapshot: [\d,]+ rows in .* rows\/s\); catching up$/),
      expect.stringMatching(/^totes is up\.$/),
      expect.stringMatching(/Stopped\. `totes up` with the same --data-dir carries on from here\.$/),
    ]),
  );
  expect(lines.filter((l) => l.includes('{"time"'))).toEqual([]);
  // A first start on the embedded default and a Ctrl-C: nothing for a person to worry about. (A
  // capture that took the terminal's SIGINT itself once showed "capture exited; restarting" here.)
  expect(lines.filter((l) => /^[!✗] /.test(l) || /\d+ (warning|error)/.test(l))).toEqual([]);
}, 180_000);
