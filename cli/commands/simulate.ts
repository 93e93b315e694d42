import { redactUrl } from '../../core/logger';
import { runSimulation, type SimulationProgress } from '../../totesys';
import { defineCommand, UsageError } from '../command';

const PROGRESS_INTERVAL_MS = 5_000;

export const command = defineCommand({
  name: 'simulate',
  summary:
    'Keep the business running: new orders with their transactions and payments, payments settling, ' +
    'occasional edits (some without moving last_updated, as real totesys does). Run `totes seed` first.',
  usage: 'simulate --source-url URL [--rate N] [--duration S] [--seed N]',
  options: {
    'source-url': { type: 'string' },
    rate: { type: 'string' },
    duration: { type: 'string' },
    seed: { type: 'string' },
  },
  optionHelp: {
    'source-url': 'postgres:// URL of the source database (default: $TOTES_SOURCE_URL).',
    rate: 'Target row changes per second (default 10); a new order counts 3 (order, transaction, payment).',
    duration: 'Seconds to run; 0 (the default) runs until Ctrl-C or SIGTERM.',
    seed: 'Random seed (an integer, default 1): the same seed on the same data makes the same changes.',
  },
  async run(values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`);
    const url = values['source-url'] || process.env.TOTES_SOURCE_URL;
    if (!url) throw new UsageError('--source-url is required (or set TOTES_SOURCE_URL)');
    const rate = numberOption(
      'rate',
      values.rate ?? '10',
      (n) => n > 0 && Number.isFinite(n),
      'a number > 0',
    );
    const duration = numberOption(
      'duration',
      values.duration ?? '0',
      (n) => n >= 0,
      'a number of seconds >= 0',
    );
    const seed = numberOption('seed', values.seed ?? '1', Number.isSafeInteger, 'an integer');
    const source = redactUrl(url);
    const say = (line: string) => process.stderr.write(`totes simulate: ${line}\n`);
    const describe = (p: SimulationProgress) =>
      `${p.rowChanges} row changes in ${p.events} events over ${(p.elapsedMs / 1000).toFixed(1)} s ` +
      `(${p.ratePerSecond.toFixed(1)}/s)`;

    // Ctrl-C and SIGTERM end the run after the change in flight, so no source transaction is cut short.
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    say(
      `${rate} row changes/s on ${source} ${duration > 0 ? `for ${duration} s` : 'until stopped'} (seed ${seed})`,
    );
    try {
      const result = await runSimulation(url, {
        rate,
        durationMs: duration * 1000,
        seed,
        signal: stop.signal,
        progressIntervalMs: PROGRESS_INTERVAL_MS,
        onProgress: (p) => say(describe(p)),
      });
      const kinds = Object.entries(result.byKind)
        .filter(([, n]) => n > 0)
        .map(([kind, n]) => `${kind} ${n}`);
      say(`stopped: ${describe(result)}; ${kinds.join(', ')}`);
      return 0;
    } catch (e) {
      say(`failed on ${source}: ${e instanceof Error ? e.message : String(e)}`);
      return 1;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  },
});

function numberOption(name: string, raw: string, valid: (n: number) => boolean, expected: string): number {
  const n = Number(raw);
  if (raw.trim() === '' || !valid(n)) throw new UsageError(`--${name} must be ${expected}, got "${raw}"`);
  return n;
}
