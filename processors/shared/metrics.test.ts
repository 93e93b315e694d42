import { formatEmf, InvalidMetricError, MetricSet, metricsFor, MetricsError } from './metrics';

const AT = new Date('2025-02-28T09:15:02.123Z');

describe('formatEmf', () => {
  it('writes the CloudWatch EMF envelope: namespace Totes, dimension Stage, one value per metric', () => {
    // Act
    const line = formatEmf({
      stage: 'transform',
      timestamp: AT,
      metrics: [
        { name: 'ObjectsWritten', unit: 'Count', value: 2 },
        { name: 'TransformDuration', unit: 'Milliseconds', value: 37 },
      ],
      properties: { requestId: 'abc', _aws: 'ignored', Stage: 'ignored' },
    });
    // Assess
    expect(line).not.toContain('\n');
    expect(JSON.parse(line)).toEqual({
      _aws: {
        Timestamp: AT.getTime(),
        CloudWatchMetrics: [
          {
            Namespace: 'Totes',
            Dimensions: [['Stage']],
            Metrics: [
              { Name: 'ObjectsWritten', Unit: 'Count' },
              { Name: 'TransformDuration', Unit: 'Milliseconds' },
            ],
          },
        ],
      },
      Stage: 'transform',
      requestId: 'abc',
      ObjectsWritten: 2,
      TransformDuration: 37,
    });
  });

  it('refuses more than 100 metrics in one document', () => {
    const metrics = Array.from({ length: 101 }, (_, i) => ({
      name: `M${i}`,
      unit: 'Count' as const,
      value: 1,
    }));
    expect(() => formatEmf({ stage: 's', timestamp: AT, metrics })).toThrow(InvalidMetricError);
  });
});

describe('MetricSet', () => {
  const collect = () => {
    const lines: string[] = [];
    const set = metricsFor({
      stage: 'load',
      write: (l) => lines.push(l),
      now: () => AT,
      namespace: 'Test',
    })();
    return { lines, set };
  };

  it('sums counters by name and flushes them as one line, then starts over', () => {
    const { lines, set } = collect();
    set.add('RowsWritten', 3).add('RowsWritten', 4).add('Lag', 1.5, 'Seconds').add('Zero', 0);
    expect(set.get('RowsWritten')).toBe(7);
    expect(set.get('Never')).toBe(0);
    set.flush({ requestId: 'r-1' });
    expect(lines).toHaveLength(1);
    expect(lines[0].endsWith('\n')).toBe(true);
    const doc = JSON.parse(lines[0]);
    expect(doc).toMatchObject({ Stage: 'load', requestId: 'r-1', RowsWritten: 7, Lag: 1.5, Zero: 0 });
    expect(doc._aws.CloudWatchMetrics[0].Namespace).toBe('Test');
    set.flush();
    expect(lines).toHaveLength(1);
  });

  it('splits more than 100 metrics over several documents', () => {
    const { lines, set } = collect();
    for (let i = 0; i < 150; i++) set.add(`M${i}`);
    set.flush();
    expect(lines.map((l) => JSON.parse(l)._aws.CloudWatchMetrics[0].Metrics.length)).toEqual([100, 50]);
  });

  it('refuses bad names, non-finite values and a unit change', () => {
    const { set } = collect();
    expect(() => set.add('has space')).toThrow(InvalidMetricError);
    expect(() => set.add('Stage')).toThrow(MetricsError);
    expect(() => set.add('X', Number.NaN)).toThrow('value is not a finite number');
    set.add('Y', 1, 'Count');
    expect(() => set.add('Y', 1, 'Bytes')).toThrow('unit Bytes differs from Count');
  });

  it('writes to stdout by default', () => {
    const spy = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      new MetricSet({ stage: 'transform' }).add('Ping').flush();
      expect(JSON.parse(String(spy.mock.calls[0][0]))).toMatchObject({ Stage: 'transform', Ping: 1 });
    } finally {
      spy.mockRestore();
    }
  });
});
