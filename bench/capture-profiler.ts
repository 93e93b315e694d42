import fs from 'node:fs';
import { Session } from 'node:inspector';
import path from 'node:path';

/**
 * Preloaded into the capture process by `npm run bench:pipeline -- --cpu-profile DIR` (through
 * NODE_OPTIONS=--require: `node --cpu-prof` is not allowed there): SIGUSR2 starts a V8 CPU profile,
 * the next SIGUSR2 stops it and writes `DIR/capture-<pid>-<n>.cpuprofile`, so the bench profiles
 * capture over exactly the load phase of each step, as it profiles the stack process.
 * (SIGUSR1 is taken: it opens Node's inspector.)
 */

const dir = process.env.TOTES_BENCH_CAPTURE_PROFILE_DIR;
const intervalUs = Number(process.env.TOTES_BENCH_CAPTURE_PROFILE_US) || 1000;
let session: Session | null = null;
let written = 0;

if (dir) {
  process.on('SIGUSR2', () => {
    if (!session) {
      const s = new Session();
      session = s;
      s.connect();
      s.post('Profiler.enable', () =>
        s.post('Profiler.setSamplingInterval', { interval: intervalUs }, () => s.post('Profiler.start')),
      );
      return;
    }
    const s = session;
    session = null;
    s.post('Profiler.stop', (error, result) => {
      s.disconnect();
      if (error) return;
      written += 1;
      const file = path.join(dir, `capture-${process.pid}-${written}.cpuprofile`);
      // Written whole, then renamed: the bench picks it up as soon as the name appears.
      fs.writeFileSync(`${file}.tmp`, JSON.stringify(result.profile));
      fs.renameSync(`${file}.tmp`, file);
    });
  });
}
