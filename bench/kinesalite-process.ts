import { startKinesalite } from '../local/kinesalite';

/**
 * kinesalite on disk in a process of its own, as `totes up` runs it beside a capture child process:
 * prints `{"endpoint":…,"pid":…}` as one line on stdout, and stops when its stdin closes (the bench
 * ended, however it ended) or on SIGTERM.
 */
async function main(): Promise<void> {
  const [dataDir] = process.argv.slice(2);
  if (!dataDir) throw new Error('usage: kinesalite-process.ts DATA_DIR');
  const kinesis = await startKinesalite({ dataDir });
  const stop = () => {
    kinesis.stop().finally(() => process.exit(0));
  };
  process.stdin.on('end', stop).resume();
  // The bench is gone if its end of the pipe is: nobody to serve.
  process.stdout.on('error', stop);
  process.on('SIGTERM', stop);
  process.stdout.write(`${JSON.stringify({ endpoint: kinesis.endpoint, pid: process.pid })}\n`);
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
