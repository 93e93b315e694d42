import { lambdaLogger } from './lambda-logger';

/** Everything written to stdout and stderr while `act` runs, as parsed JSON lines. */
function captured(act: () => void): { stream: 'stdout' | 'stderr'; line: Record<string, unknown> }[] {
  const out: { stream: 'stdout' | 'stderr'; line: Record<string, unknown> }[] = [];
  const spies = (['stdout', 'stderr'] as const).map((stream) =>
    jest.spyOn(process[stream], 'write').mockImplementation((chunk: string | Uint8Array) => {
      for (const text of String(chunk).split('\n').filter(Boolean))
        out.push({ stream, line: JSON.parse(text) });
      return true;
    }),
  );
  try {
    act();
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
  return out;
}

describe('lambdaLogger (Powertools Logger behind the core Logger interface)', () => {
  it("writes Powertools' JSON shape: level in capitals, message, service, fields at the top", () => {
    const lines = captured(() => {
      const logger = lambdaLogger('load', { LOG_LEVEL: 'info' });
      logger.info('object loaded', { key: 'k', rows: 3 });
      logger.child({ requestId: 'req-1' }).error('object quarantined', { key: 'k', err: new Error('boom') });
    });

    expect(lines).toEqual([
      {
        stream: 'stdout',
        line: expect.objectContaining({
          level: 'INFO',
          message: 'object loaded',
          service: 'load',
          key: 'k',
          rows: 3,
        }),
      },
      {
        stream: 'stderr',
        line: expect.objectContaining({
          level: 'ERROR',
          message: 'object quarantined',
          requestId: 'req-1',
          key: 'k',
          err: expect.objectContaining({ name: 'Error', message: 'boom' }),
        }),
      },
    ]);
    expect(typeof lines[0].line.timestamp).toBe('string');
  });

  it('takes its level from LOG_LEVEL in either case, and ignores a level it does not know', () => {
    const levels = (env: NodeJS.ProcessEnv) =>
      captured(() => {
        const logger = lambdaLogger('transform', env);
        logger.debug('d');
        logger.info('i');
        logger.warn('w');
      }).map((l) => l.line.level);

    expect(levels({ LOG_LEVEL: 'warn' })).toEqual(['WARN']);
    expect(levels({ POWERTOOLS_LOG_LEVEL: 'DEBUG', LOG_LEVEL: 'warn' })).toEqual(['DEBUG', 'INFO', 'WARN']);
    expect(levels({ LOG_LEVEL: 'chatty' })).toEqual(['INFO', 'WARN']);
  });
});
