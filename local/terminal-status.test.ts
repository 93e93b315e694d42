import { PassThrough } from 'node:stream';
import { createLogger } from '../core/logger';
import { TerminalStatus, type InPlaceWriter, type TerminalMode } from './terminal-status';

/** Records what log-update would draw: the lines kept, and the status line as it stands. */
function fakeWriter() {
  const kept: string[] = [];
  const state = { status: '', done: false };
  const writer = Object.assign((...text: string[]) => void (state.status = text.join(' ')), {
    clear: () => void (state.status = ''),
    persist: (...text: string[]) => void kept.push(...text),
    done: () => void (state.done = true),
  }) satisfies InPlaceWriter;
  return { writer, kept, state };
}

async function terminal(mode: TerminalMode) {
  const fake = fakeWriter();
  const stream = Object.assign(new PassThrough(), { isTTY: false }) as unknown as NodeJS.WriteStream;
  const view = await TerminalStatus.create({ stream, mode, writer: fake.writer, now: () => 0 });
  const logger = createLogger({ service: 'totes-up', level: 'debug', write: (l) => view.line(l) });
  return { view, logger, ...fake };
}

describe('TerminalStatus', () => {
  it('turns log lines into kept plain-words lines and a status line, never JSON', async () => {
    const t = await terminal('normal');
    t.view.start();
    t.logger.info('seeding the source with totesys', { scale: 1 });
    t.logger.info('seeding', { rowsDone: 10, rowsTotal: 40 });
    t.logger.debug('metrics', { emf: {} });
    t.logger.warn('capture exited; restarting', { code: 1, inMs: 1000 });
    t.view.line('TypeError: a child wrote something that is not JSON');
    t.view.print('totes is up.\n');
    expect(t.kept).toEqual([
      '… Seeding the source with totesys (scale 1)…',
      '! warning: capture exited; restarting (code 1, inMs 1000)',
      'TypeError: a child wrote something that is not JSON',
      'totes is up.',
    ]);
    expect(t.state.status).toBe('seeding 10 / 40 rows (25%) · 1 warning');
    t.view.stop();
    expect(t.state.done).toBe(true);
  });

  it('keeps only problems when quiet, and every line, pretty-printed, when verbose', async () => {
    const quiet = await terminal('quiet');
    quiet.logger.info('source ready');
    quiet.logger.error('capture failed', { err: new Error('slot is gone') });
    expect(quiet.kept).toEqual(['✗ error: capture failed — slot is gone']);
    expect(quiet.state.status).toBe('');

    const verbose = await terminal('verbose');
    verbose.logger.info('source ready');
    verbose.logger.warn('heartbeat failed');
    expect(verbose.kept).toHaveLength(3);
    expect(verbose.kept[0]).toMatch(/^\[[\d:.]+\] INFO: source ready$/);
    expect(verbose.kept[1]).toBe('✓ Source Postgres ready');
    expect(verbose.kept[2]).toMatch(/WARN: heartbeat failed$/);
    expect(verbose.kept.join('\n')).not.toContain('{"time"');
  });

  it('falls back to plain lines on a terminal without a size', async () => {
    const out = new PassThrough();
    const chunks: string[] = [];
    out.on('data', (c) => chunks.push(String(c)));
    const stream = Object.assign(out, { isTTY: true, rows: 0, columns: 0 }) as unknown as NodeJS.WriteStream;
    const view = await TerminalStatus.create({ stream, mode: 'normal' });
    view.line(JSON.stringify({ level: 'info', msg: 'source ready' }));
    view.stop();
    expect(chunks.join('')).toMatch(/Source Postgres ready\n$/);
  });
});
