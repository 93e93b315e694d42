import {
  assessHealth,
  DEFAULT_HEALTH_THRESHOLDS,
  formatBytes,
  formatSeconds,
  healthMetrics,
  renderHealthReport,
  type HealthFacts,
  type LocalFacts,
  type SourceFacts,
  type WarehouseFacts,
} from './pipeline-health';

const AT = '2025-02-28T12:00:00.000Z';
const ago = (seconds: number) => new Date(Date.parse(AT) - seconds * 1000).toISOString();

const warehouse = (overrides: Partial<WarehouseFacts> = {}): WarehouseFacts => ({
  reachable: true,
  tables: [
    {
      sourceTable: 'sales_order',
      warehouseTable: 'fact_sales_order',
      newestCommitTs: ago(2),
      lastLoadedAt: ago(1),
    },
    {
      sourceTable: 'address',
      warehouseTable: 'dim_location',
      newestCommitTs: ago(30),
      lastLoadedAt: ago(29),
    },
  ],
  loads: [
    {
      warehouseTable: 'fact_sales_order',
      objectsLastMinute: 3,
      rowsLastMinute: 600,
      objectsLastHour: 10,
      rowsLastHour: 2000,
      lastLoadedAt: ago(1),
    },
    {
      warehouseTable: 'dim_location',
      objectsLastMinute: 0,
      rowsLastMinute: 0,
      objectsLastHour: 1,
      rowsLastHour: 30,
      lastLoadedAt: ago(29),
    },
  ],
  ...overrides,
});

const source = (slot: Partial<NonNullable<SourceFacts['slot']>> = {}): SourceFacts => ({
  reachable: true,
  slotName: 'totes_slot',
  slot: {
    active: true,
    walStatus: 'reserved',
    lagBytes: 1024,
    retainedWalBytes: 4096,
    lagSeconds: 0.5,
    ...slot,
  },
});

const local = (overrides: Partial<LocalFacts> = {}): LocalFacts => ({
  running: true,
  snapshotCompleted: true,
  stream: { backlogRecords: 2, backlogCapped: false, oldestArrivalAt: ago(1) },
  transform: { waiting: 1, oldestWaitingAt: ago(2) },
  load: { waiting: 0, oldestWaitingAt: null },
  outstanding: { quarantined: 0, rejected: 0, deadLettered: 0 },
  lastError: null,
  ...overrides,
});

const facts = (f: Partial<HealthFacts> = {}): HealthFacts => ({
  observedAt: AT,
  warehouse: warehouse(),
  ...f,
});

describe('assessHealth', () => {
  it('warehouse only: freshness per table and throughput, healthy, nothing else claimed', () => {
    const report = assessHealth(facts());
    expect(report).toMatchObject({
      healthy: true,
      status: 'healthy',
      problems: [],
      scope: { warehouse: true, source: false, local: false },
      stages: [],
      quarantined: null,
      failed: null,
      throughput: { rowsPerSecond: 10, rowsLastHour: 2030, objectsLastHour: 11 },
    });
    expect(report.freshness.map((f) => [f.warehouseTable, f.ageSeconds])).toEqual([
      ['dim_location', 30],
      ['fact_sales_order', 2],
    ]);
  });

  it('warehouse only: old data is a warning (idle or stalled cannot be told apart), not unhealthy', () => {
    const old = warehouse({
      tables: warehouse().tables.map((t) => ({ ...t, newestCommitTs: ago(7200) })),
    });
    const report = assessHealth(facts({ warehouse: old }));
    expect(report.status).toBe('degraded');
    expect(report.healthy).toBe(true);
    expect(report.problems.map((p) => p.code)).toEqual(['warehouse-stale']);
    expect(report.problems[0].message).toMatch(/2\.0 h/);
  });

  describe('the capture heartbeat (freshness end to end)', () => {
    const beat = (slotName: string, seconds: number) => ({
      slotName,
      newestCommitTs: ago(seconds),
      lastLoadedAt: ago(seconds - 1),
    });

    it('is the freshness: a recent heartbeat is healthy, and reported as a metric and a line', () => {
      const report = assessHealth(facts({ warehouse: warehouse({ heartbeats: [beat('totes_slot', 20)] }) }));
      expect(report.status).toBe('healthy');
      expect(report.heartbeat).toEqual({ slotName: 'totes_slot', newestCommitTs: ago(20), ageSeconds: 20 });
      expect(healthMetrics(report)).toContainEqual({ name: 'HeartbeatAge', value: 20, unit: 'Seconds' });
      expect(renderHealthReport(report)).toMatch(
        /freshness {3}20 s \(the newest capture heartbeat loaded, slot totes_slot\)/,
      );
    });

    it('goes stale: a warning, then critical (unhealthy) even with the warehouse alone, whatever the tables say', () => {
      const { heartbeatWarningSeconds: warn, heartbeatCriticalSeconds: crit } = DEFAULT_HEALTH_THRESHOLDS;
      const late = assessHealth(facts({ warehouse: warehouse({ heartbeats: [beat('totes_slot', warn)] }) }));
      expect(late.problems.map((p) => [p.code, p.severity])).toEqual([['heartbeat-stale', 'warning']]);
      const stopped = assessHealth(
        facts({ warehouse: warehouse({ heartbeats: [beat('totes_slot', crit)] }) }),
      );
      expect(stopped.status).toBe('unhealthy');
      expect(stopped.problems[0].message).toMatch(/capture heartbeat loaded committed 10 min ago/);
    });

    it("with the source, judges that slot's heartbeat, not another capture's", () => {
      const heartbeats = [beat('other_slot', 1), beat('totes_slot', 900)];
      const report = assessHealth(facts({ warehouse: warehouse({ heartbeats }), source: source() }));
      expect(report.heartbeat?.slotName).toBe('totes_slot');
      expect(report.healthy).toBe(false);
      const none = assessHealth(
        facts({ warehouse: warehouse({ heartbeats: [beat('other_slot', 1)] }), source: source() }),
      );
      expect(none.heartbeat?.ageSeconds).toBeNull();
      expect(none.problems.map((p) => p.code)).toEqual(['heartbeat-missing']);
      expect(none.problems[0].message).toMatch(/only of other_slot/);
    });

    it('none yet (or no heartbeat table) leaves freshness unknown and the old judgement in place', () => {
      const none = assessHealth(facts({ warehouse: warehouse({ heartbeats: [] }) }));
      expect(none.status).toBe('healthy');
      expect(none.heartbeat).toEqual({ slotName: '', newestCommitTs: null, ageSeconds: null });
      expect(renderHealthReport(none)).toMatch(/freshness {3}unknown/);
      const old = warehouse({
        heartbeats: [],
        tables: warehouse().tables.map((t) => ({ ...t, newestCommitTs: ago(7200) })),
      });
      expect(assessHealth(facts({ warehouse: old })).problems.map((p) => p.code)).toEqual([
        'warehouse-stale',
      ]);
      const before = assessHealth(facts({ warehouse: warehouse({ heartbeats: null }) }));
      expect(before.heartbeat).toBeNull();
      expect(before.status).toBe('healthy');
    });
  });

  it('an unreachable warehouse is critical', () => {
    const report = assessHealth(facts({ warehouse: { reachable: false, error: 'connect ECONNREFUSED' } }));
    expect(report).toMatchObject({ healthy: false, status: 'unhealthy', freshness: [], throughput: null });
    expect(report.problems[0]).toEqual({
      severity: 'critical',
      code: 'warehouse-unreachable',
      message: 'warehouse: connect ECONNREFUSED',
    });
  });

  it('with the source: capture lag in bytes and seconds; slot problems by wal_status and activity', () => {
    expect(assessHealth(facts({ source: source() })).stages).toEqual([
      { stage: 'capture', lagSeconds: 0.5, lagBytes: 1024, backlog: null },
    ]);
    const codes = (s: SourceFacts | { reachable: false; error: string }) =>
      assessHealth(facts({ source: s })).problems.map((p) => `${p.severity}:${p.code}`);
    expect(codes(source({ walStatus: 'lost' }))).toEqual(['critical:slot-lost']);
    expect(codes(source({ walStatus: 'unreserved' }))).toEqual(['critical:slot-at-risk']);
    expect(codes(source({ active: false }))).toEqual(['critical:capture-not-running']);
    expect(codes(source({ lagBytes: DEFAULT_HEALTH_THRESHOLDS.captureLagWarningBytes }))).toEqual([
      'warning:capture-behind',
    ]);
    expect(codes(source({ lagBytes: DEFAULT_HEALTH_THRESHOLDS.captureLagCriticalBytes }))).toEqual([
      'critical:capture-behind',
    ]);
    expect(codes(source({ retainedWalBytes: 2 * 1024 ** 3 }))).toEqual(['warning:wal-retained']);
    expect(codes({ reachable: true, slotName: 'totes_slot', slot: null })).toEqual(['critical:slot-missing']);
    expect(codes({ reachable: false, error: 'password authentication failed' })).toEqual([
      'critical:source-unreachable',
    ]);
  });

  it('with the local stack: lag and backlog per stage, healthy while work flows', () => {
    const report = assessHealth(facts({ source: source(), local: local() }));
    expect(report.healthy).toBe(true);
    expect(report.stages).toEqual([
      { stage: 'capture', lagSeconds: 0.5, lagBytes: 1024, backlog: null },
      { stage: 'stream', lagSeconds: 1, backlog: 2 },
      { stage: 'transform', lagSeconds: 2, backlog: 1 },
      { stage: 'load', lagSeconds: 0, backlog: 0 },
    ]);
    expect(report).toMatchObject({ quarantined: 0, failed: 0, snapshotCompleted: true });
  });

  it('stuck work: a stage whose oldest work waits too long is a warning, then critical', () => {
    const stuck = (seconds: number) =>
      assessHealth(facts({ local: local({ load: { waiting: 7, oldestWaitingAt: ago(seconds) } }) })).problems;
    expect(stuck(59)).toEqual([]);
    expect(stuck(60)).toEqual([
      { severity: 'warning', code: 'load-behind', message: 'load: 7 objects waiting, the oldest for 60 s' },
    ]);
    expect(stuck(600)[0]).toMatchObject({ severity: 'critical', code: 'load-behind' });
  });

  it('quarantine is a warning, dead letters are critical, a stopped stack is critical', () => {
    const report = assessHealth(
      facts({
        local: local({
          outstanding: { quarantined: 3, rejected: 1, deadLettered: 2 },
          lastError: { at: ago(5), stage: 'load', message: 'connection refused' },
        }),
      }),
    );
    expect(report.problems.map((p) => `${p.severity}:${p.code}`)).toEqual([
      'critical:failed-work',
      'warning:quarantined',
    ]);
    expect(report).toMatchObject({ quarantined: 4, failed: 2, healthy: false });
    const stopped = assessHealth(
      facts({
        source: source({ active: false }),
        local: local({ running: false, notRunningReason: 'runtime.json does not exist' }),
      }),
    );
    expect(stopped.problems.map((p) => `${p.severity}:${p.code}`)).toEqual([
      'critical:stack-not-running',
      'warning:capture-not-running',
    ]);
  });
});

describe('healthMetrics and rendering', () => {
  it('turns the report into metrics, leaving out what is unknown', () => {
    const report = assessHealth(facts({ source: source(), local: local({ stream: null }) }));
    const metrics = healthMetrics(report);
    expect(metrics).toContainEqual({ name: 'Healthy', value: 1, unit: 'None' });
    expect(metrics).toContainEqual({
      name: 'WarehouseAge',
      value: 2,
      unit: 'Seconds',
      table: 'fact_sales_order',
    });
    expect(metrics).toContainEqual({ name: 'CaptureLagBytes', value: 1024, unit: 'Bytes' });
    expect(metrics).toContainEqual({ name: 'LoadBacklog', value: 0, unit: 'Count' });
    expect(metrics.find((m) => m.name === 'StreamBacklog')).toBeUndefined();
  });

  it('renders the verdict first, then the problems and the figures', () => {
    const text = renderHealthReport(
      assessHealth(
        facts({
          source: source(),
          local: local({ outstanding: { quarantined: 0, rejected: 0, deadLettered: 1 } }),
        }),
      ),
    );
    expect(text.split('\n')[0]).toBe(`totes is unhealthy (observed ${AT})`);
    expect(text).toMatch(/CRITICAL 1 event\(s\) failed after every retry/);
    expect(text).toMatch(/capture\s+1\.0 kB \/ 500 ms/);
    expect(text).toMatch(/fact_sales_order\s+2025-02-28 11:59:58 2\.0 s/);
    expect(text).toMatch(/throughput {2}10\.0 rows\/s/);
  });

  it('formats durations and sizes for people', () => {
    expect([0.25, 5, 90, 600, 7200, 200_000].map(formatSeconds)).toEqual([
      '250 ms',
      '5.0 s',
      '90 s',
      '10 min',
      '2.0 h',
      '2 days',
    ]);
    expect([512, 2048, 5 * 1024 ** 3].map(formatBytes)).toEqual(['512 bytes', '2.0 kB', '5.0 GB']);
  });
});
