/**
 * The pipeline's health model: gathered facts in, one health report out. `totes status`, the
 * dashboard's pipeline panel and the health metrics all read this report, so they cannot disagree.
 * Pure: the gatherers (local/gather-health.ts) do the I/O and say what they could not see.
 *
 * Scope: with the warehouse alone (`--warehouse-url`) the model knows freshness and throughput per
 * table; with the source it adds the slot (lag, retained WAL); inside a `totes up` data directory
 * it adds the stream backlog, objects waiting per stage, quarantine and dead letters. What was not
 * gathered is `null` (unknown), never 0.
 */

/** What the gatherers found. Times are ISO strings; sizes bytes; ages derive from `observedAt`. */
export interface HealthFacts {
  /** When the facts were gathered (the warehouse's clock when it was reached, so ages are skew-free). */
  observedAt: string;
  warehouse: WarehouseFacts | Unreachable;
  /** Absent: not asked for (no source URL known). */
  source?: SourceFacts | Unreachable;
  /** Absent: not inside a `totes up` data directory. */
  local?: LocalFacts;
}

export interface Unreachable {
  reachable: false;
  error: string;
}

export interface WarehouseFacts {
  reachable: true;
  /** rpt_pipeline_tables: one per source table the load has seen. */
  tables: readonly {
    sourceTable: string;
    warehouseTable: string;
    newestCommitTs: string | null;
    lastLoadedAt: string;
  }[];
  /** rpt_pipeline_loads: loads of the last hour per warehouse table. */
  loads: readonly {
    warehouseTable: string;
    objectsLastMinute: number;
    rowsLastMinute: number;
    objectsLastHour: number;
    rowsLastHour: number;
    lastLoadedAt: string;
  }[];
  /**
   * rpt_pipeline_heartbeat: the newest heartbeat of each capture slot that reached the warehouse
   * (core/pipeline-heartbeat.ts). null: the warehouse predates heartbeats (migration 005).
   */
  heartbeats?: readonly HeartbeatFacts[] | null;
}

export interface HeartbeatFacts {
  slotName: string;
  /** The heartbeat's commit time on the source. */
  newestCommitTs: string | null;
  lastLoadedAt: string;
}

export interface SourceFacts {
  reachable: true;
  slotName: string;
  /** null: the slot does not exist. */
  slot: {
    active: boolean;
    /** pg_replication_slots.wal_status: reserved | extended | unreserved | lost. */
    walStatus: string | null;
    /** WAL written but not yet confirmed by capture. */
    lagBytes: number | null;
    /** WAL the slot keeps on the source's disk. */
    retainedWalBytes: number | null;
    /** pg_stat_replication.flush_lag of the slot's sender, when it reports one. */
    lagSeconds: number | null;
  } | null;
}

export interface LocalFacts {
  /** `totes up` is running on this data directory (runtime.json names a live process). */
  running: boolean;
  /** Why it is not running, in words. */
  notRunningReason?: string;
  /** capture-state.json: the initial snapshot finished (null: unknown). */
  snapshotCompleted: boolean | null;
  /** Records in the change stream that the delivery stream has not made durable in S3 yet. */
  stream: { backlogRecords: number; backlogCapped: boolean; oldestArrivalAt: string | null } | null;
  /** Objects created but not yet handled, per stage (null: could not look). */
  transform: StageQueueFacts | null;
  load: StageQueueFacts | null;
  /**
   * Work set aside instead of loaded (needs a person; nothing is lost), as `totes verify` counts it
   * (processors/load/outstanding-problems.ts): quarantined objects (transform, load), records the
   * delivery stream rejected, and events whose handler failed after every retry. null: not looked.
   */
  outstanding: { quarantined: number; rejected: number; deadLettered: number } | null;
  lastError: { at: string; stage: string; message: string } | null;
}

export interface StageQueueFacts {
  waiting: number;
  oldestWaitingAt: string | null;
}

export const HEALTH_SEVERITIES = ['warning', 'critical'] as const;
export type HealthSeverity = (typeof HEALTH_SEVERITIES)[number];

export interface HealthProblem {
  severity: HealthSeverity;
  /** Stable identifier: docs/runbook.md and scripts key on it. */
  code: string;
  /** One sentence for a person: what is wrong, with the figure. */
  message: string;
}

export const STAGE_NAMES = ['capture', 'stream', 'transform', 'load'] as const;
export type StageName = (typeof STAGE_NAMES)[number];

export interface StageHealth {
  stage: StageName;
  /** How far behind the stage is, in time (null: unknown). */
  lagSeconds: number | null;
  /** Capture only: WAL not yet confirmed. */
  lagBytes?: number | null;
  /** Work waiting: records (stream) or objects (transform, load); null: unknown. */
  backlog: number | null;
}

export interface TableFreshness {
  sourceTable: string;
  warehouseTable: string;
  newestCommitTs: string | null;
  lastLoadedAt: string;
  /** observedAt − newestCommitTs: how old the newest change loaded is. */
  ageSeconds: number | null;
}

/** The end-to-end freshness: how old the newest heartbeat that reached the warehouse is. */
export interface HeartbeatFreshness {
  slotName: string;
  newestCommitTs: string | null;
  /** observedAt − the heartbeat's commit time; null: none has reached the warehouse yet. */
  ageSeconds: number | null;
}

export interface HealthReport {
  observedAt: string;
  /** What the report could see: the warehouse only, plus the source, plus the local stack. */
  scope: { warehouse: boolean; source: boolean; local: boolean };
  healthy: boolean;
  /** healthy | degraded (warnings only) | unhealthy (a critical problem). */
  status: 'healthy' | 'degraded' | 'unhealthy';
  problems: HealthProblem[];
  freshness: TableFreshness[];
  /** null: not known (the warehouse unreachable, or it has no heartbeat table). */
  heartbeat: HeartbeatFreshness | null;
  stages: StageHealth[];
  throughput: { rowsPerSecond: number; rowsLastHour: number; objectsLastHour: number } | null;
  quarantined: number | null;
  failed: number | null;
  lastError: { at: string; stage: string; message: string } | null;
  snapshotCompleted: boolean | null;
}

/** When a figure becomes a problem. Defaults are for the local stack and a small RDS source. */
export interface HealthThresholds {
  /** Unconfirmed WAL: capture is behind. */
  captureLagWarningBytes: number;
  captureLagCriticalBytes: number;
  /** WAL pinned on the source's disk by the slot. */
  retainedWalWarningBytes: number;
  retainedWalCriticalBytes: number;
  /** Age of the oldest unhandled work in a stage (stream record, waiting object). */
  stageLagWarningSeconds: number;
  stageLagCriticalSeconds: number;
  /**
   * Warehouse freshness, judged only when nothing else can tell an idle source from a stalled
   * pipeline (warehouse-only scope): a warning, never critical.
   */
  freshnessWarningSeconds: number;
  /**
   * Age of the newest heartbeat loaded. Capture commits one every few seconds whatever the source
   * does, so an old one means a stage between the source and the warehouse stopped: critical.
   */
  heartbeatWarningSeconds: number;
  heartbeatCriticalSeconds: number;
}

export const DEFAULT_HEALTH_THRESHOLDS: HealthThresholds = {
  captureLagWarningBytes: 64 * 1024 * 1024,
  captureLagCriticalBytes: 1024 * 1024 * 1024,
  retainedWalWarningBytes: 1024 * 1024 * 1024,
  retainedWalCriticalBytes: 3 * 1024 * 1024 * 1024,
  stageLagWarningSeconds: 60,
  stageLagCriticalSeconds: 600,
  freshnessWarningSeconds: 3600,
  // Heartbeat every 5–10 s, the delivery stream's 60 s buffer (up to ~1.5× that in AWS), transform
  // and load in seconds: two minutes is already late; ten is the AWS alarm's default.
  heartbeatWarningSeconds: 120,
  heartbeatCriticalSeconds: 600,
};

const secondsBetween = (from: string | null | undefined, to: string): number | null =>
  from ? Math.max(0, (Date.parse(to) - Date.parse(from)) / 1000) : null;

function stageLagProblem(
  stage: StageName,
  lagSeconds: number | null,
  backlog: number | null,
  unit: string,
  t: HealthThresholds,
): HealthProblem | null {
  if (lagSeconds === null || lagSeconds < t.stageLagWarningSeconds) return null;
  const severity = lagSeconds >= t.stageLagCriticalSeconds ? 'critical' : 'warning';
  return {
    severity,
    code: `${stage}-behind`,
    message: `${stage}: ${backlog ?? 'some'} ${unit} waiting, the oldest for ${formatSeconds(lagSeconds)}`,
  };
}

/** The report for a set of facts. Deterministic: the same facts give the same report. */
export function assessHealth(
  facts: HealthFacts,
  thresholds: HealthThresholds = DEFAULT_HEALTH_THRESHOLDS,
): HealthReport {
  const t = thresholds;
  const at = facts.observedAt;
  const problems: HealthProblem[] = [];
  const add = (p: HealthProblem | null) => {
    if (p) problems.push(p);
  };

  // ---- warehouse: freshness and throughput
  let freshness: TableFreshness[] = [];
  let throughput: HealthReport['throughput'] = null;
  if (!facts.warehouse.reachable) {
    add({
      severity: 'critical',
      code: 'warehouse-unreachable',
      message: `warehouse: ${facts.warehouse.error}`,
    });
  } else {
    freshness = facts.warehouse.tables
      .map((r) => ({ ...r, ageSeconds: secondsBetween(r.newestCommitTs, at) }))
      .sort(
        (a, b) =>
          a.warehouseTable.localeCompare(b.warehouseTable) || a.sourceTable.localeCompare(b.sourceTable),
      );
    const loads = facts.warehouse.loads;
    throughput = {
      rowsPerSecond: loads.reduce((s, l) => s + l.rowsLastMinute, 0) / 60,
      rowsLastHour: loads.reduce((s, l) => s + l.rowsLastHour, 0),
      objectsLastHour: loads.reduce((s, l) => s + l.objectsLastHour, 0),
    };
    if (freshness.length === 0)
      add({
        severity: 'warning',
        code: 'warehouse-empty',
        message: 'warehouse: nothing has been loaded yet',
      });
  }

  // ---- heartbeat: freshness end to end
  const heartbeat = facts.warehouse.reachable
    ? heartbeatFreshness(
        facts.warehouse.heartbeats,
        facts.source?.reachable ? facts.source.slotName : undefined,
        at,
      )
    : null;
  add(heartbeatProblem(heartbeat, facts.warehouse.reachable ? facts.warehouse.heartbeats : undefined, t));

  // ---- source: the slot
  const stages: StageHealth[] = [];
  if (facts.source) {
    if (!facts.source.reachable) {
      add({ severity: 'critical', code: 'source-unreachable', message: `source: ${facts.source.error}` });
      stages.push({ stage: 'capture', lagSeconds: null, lagBytes: null, backlog: null });
    } else if (!facts.source.slot) {
      add({
        severity: 'critical',
        code: 'slot-missing',
        message: `source: replication slot ${facts.source.slotName} does not exist in this database (capture never started, or the slot was dropped)`,
      });
      stages.push({ stage: 'capture', lagSeconds: null, lagBytes: null, backlog: null });
    } else {
      const slot = facts.source.slot;
      stages.push({ stage: 'capture', lagSeconds: slot.lagSeconds, lagBytes: slot.lagBytes, backlog: null });
      if (slot.walStatus === 'lost')
        add({
          severity: 'critical',
          code: 'slot-lost',
          message: `source: slot ${facts.source.slotName} lost its WAL (wal_status lost): a resync is needed`,
        });
      else if (slot.walStatus === 'unreserved')
        add({
          severity: 'critical',
          code: 'slot-at-risk',
          message: `source: slot ${facts.source.slotName} is about to lose WAL (wal_status unreserved)`,
        });
      if (!slot.active)
        add({
          severity: facts.local?.running === false ? 'warning' : 'critical',
          code: 'capture-not-running',
          message: `source: nothing is reading slot ${facts.source.slotName} (capture is not running)`,
        });
      if (slot.lagBytes !== null && slot.lagBytes >= t.captureLagWarningBytes)
        add({
          severity: slot.lagBytes >= t.captureLagCriticalBytes ? 'critical' : 'warning',
          code: 'capture-behind',
          message: `capture: ${formatBytes(slot.lagBytes)} of WAL not yet confirmed`,
        });
      if (slot.retainedWalBytes !== null && slot.retainedWalBytes >= t.retainedWalWarningBytes)
        add({
          severity: slot.retainedWalBytes >= t.retainedWalCriticalBytes ? 'critical' : 'warning',
          code: 'wal-retained',
          message: `source: the slot keeps ${formatBytes(slot.retainedWalBytes)} of WAL on disk`,
        });
    }
  }

  // ---- local stack: backlog, waiting objects, quarantine, dead letters
  const local = facts.local;
  let quarantined: number | null = null;
  let failed: number | null = null;
  if (local) {
    if (!local.running)
      add({
        severity: 'critical',
        code: 'stack-not-running',
        message: `local stack: ${local.notRunningReason ?? 'totes up is not running'}`,
      });
    if (local.snapshotCompleted === false)
      add({
        severity: 'warning',
        code: 'snapshot-in-progress',
        message: 'capture: the initial snapshot has not finished',
      });
    const stream = local.stream;
    const streamLag = stream ? secondsBetween(stream.oldestArrivalAt, at) : null;
    stages.push({
      stage: 'stream',
      lagSeconds: streamLag ?? (stream ? 0 : null),
      backlog: stream?.backlogRecords ?? null,
    });
    add(stageLagProblem('stream', streamLag, stream?.backlogRecords ?? null, 'records', t));
    for (const stage of ['transform', 'load'] as const) {
      const q = local[stage];
      const lag = q ? secondsBetween(q.oldestWaitingAt, at) : null;
      stages.push({ stage, lagSeconds: lag ?? (q ? 0 : null), backlog: q?.waiting ?? null });
      add(stageLagProblem(stage, lag, q?.waiting ?? null, 'objects', t));
    }
    if (local.outstanding) {
      const o = local.outstanding;
      quarantined = o.quarantined + o.rejected;
      failed = o.deadLettered;
      if (quarantined > 0)
        add({
          severity: 'warning',
          code: 'quarantined',
          message:
            `quarantine: ${quarantined} item(s) set aside need attention (quarantined ${o.quarantined}, ` +
            `rejected by the delivery stream ${o.rejected})`,
        });
      if (failed > 0)
        add({
          severity: 'critical',
          code: 'failed-work',
          message: `${failed} event(s) failed after every retry: their data is not in the warehouse`,
        });
    }
  } else if (facts.warehouse.reachable && !facts.source && heartbeat?.ageSeconds == null) {
    // Warehouse only and no heartbeat: old data may be an idle source or a stalled pipeline; say
    // so, gently.
    const stale = freshness.filter((f) => f.ageSeconds !== null && f.ageSeconds >= t.freshnessWarningSeconds);
    if (stale.length > 0 && stale.length === freshness.length)
      add({
        severity: 'warning',
        code: 'warehouse-stale',
        message: `warehouse: no change newer than ${formatSeconds(Math.min(...stale.map((f) => f.ageSeconds!)))} in any table (an idle source, or a stalled pipeline: give the source or the data directory to tell)`,
      });
  }

  const critical = problems.some((p) => p.severity === 'critical');
  return {
    observedAt: at,
    scope: { warehouse: true, source: facts.source !== undefined, local: local !== undefined },
    healthy: !critical,
    status: critical ? 'unhealthy' : problems.length > 0 ? 'degraded' : 'healthy',
    problems: problems.sort((a, b) => (a.severity === b.severity ? 0 : a.severity === 'critical' ? -1 : 1)),
    freshness,
    heartbeat,
    stages,
    throughput,
    quarantined,
    failed,
    lastError: local?.lastError ?? null,
    snapshotCompleted: local?.snapshotCompleted ?? null,
  };
}

/**
 * The heartbeat that says how fresh the warehouse is: the source's slot's when the source is known,
 * else the newest of all slots (a warehouse fed by one capture has one).
 */
function heartbeatFreshness(
  heartbeats: readonly HeartbeatFacts[] | null | undefined,
  slotName: string | undefined,
  at: string,
): HeartbeatFreshness | null {
  if (!heartbeats) return null;
  const candidates = slotName !== undefined ? heartbeats.filter((h) => h.slotName === slotName) : heartbeats;
  const newest = [...candidates].sort(
    (a, b) => Date.parse(b.newestCommitTs ?? '') - Date.parse(a.newestCommitTs ?? ''),
  )[0];
  if (!newest) return { slotName: slotName ?? '', newestCommitTs: null, ageSeconds: null };
  return {
    slotName: newest.slotName,
    newestCommitTs: newest.newestCommitTs,
    ageSeconds: secondsBetween(newest.newestCommitTs, at),
  };
}

function heartbeatProblem(
  heartbeat: HeartbeatFreshness | null,
  heartbeats: readonly HeartbeatFacts[] | null | undefined,
  t: HealthThresholds,
): HealthProblem | null {
  if (!heartbeat) return null;
  if (heartbeat.ageSeconds === null) {
    // None at all: capture predates heartbeats or nothing went through yet; the stages tell which.
    if (!heartbeats || heartbeats.length === 0) return null;
    return {
      severity: 'warning',
      code: 'heartbeat-missing',
      message: `warehouse: no heartbeat of slot ${heartbeat.slotName} has arrived (only of ${heartbeats.map((h) => h.slotName).join(', ')})`,
    };
  }
  if (heartbeat.ageSeconds < t.heartbeatWarningSeconds) return null;
  return {
    severity: heartbeat.ageSeconds >= t.heartbeatCriticalSeconds ? 'critical' : 'warning',
    code: 'heartbeat-stale',
    message: `warehouse: the newest capture heartbeat loaded committed ${formatSeconds(heartbeat.ageSeconds)} ago: capture or a stage after it has stopped`,
  };
}

/** One figure of the report as a metric (name, value, unit), for CloudWatch EMF or any other sink. */
export interface HealthMetric {
  name: string;
  value: number;
  /** CloudWatch units (a rate is `None`: its name says per second). */
  unit: 'Count' | 'Seconds' | 'Bytes' | 'None';
  /** The warehouse table, for per-table figures. */
  table?: string;
}

/** The report's figures as metrics: what is unknown is left out rather than reported as 0. */
export function healthMetrics(report: HealthReport): HealthMetric[] {
  const out: HealthMetric[] = [{ name: 'Healthy', value: report.healthy ? 1 : 0, unit: 'None' }];
  for (const f of report.freshness)
    if (f.ageSeconds !== null)
      out.push({ name: 'WarehouseAge', value: f.ageSeconds, unit: 'Seconds', table: f.warehouseTable });
  if (report.heartbeat?.ageSeconds != null)
    out.push({ name: 'HeartbeatAge', value: report.heartbeat.ageSeconds, unit: 'Seconds' });
  for (const s of report.stages) {
    const name = s.stage[0].toUpperCase() + s.stage.slice(1);
    if (s.lagSeconds !== null) out.push({ name: `${name}LagSeconds`, value: s.lagSeconds, unit: 'Seconds' });
    if (s.lagBytes != null) out.push({ name: `${name}LagBytes`, value: s.lagBytes, unit: 'Bytes' });
    if (s.backlog !== null) out.push({ name: `${name}Backlog`, value: s.backlog, unit: 'Count' });
  }
  if (report.throughput)
    out.push({ name: 'RowsLoadedPerSecond', value: report.throughput.rowsPerSecond, unit: 'None' });
  if (report.quarantined !== null)
    out.push({ name: 'Quarantined', value: report.quarantined, unit: 'Count' });
  if (report.failed !== null) out.push({ name: 'Failed', value: report.failed, unit: 'Count' });
  return out;
}

export function formatSeconds(seconds: number): string {
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${Math.round(seconds / 86_400)} days`;
}

/** pg_size_pretty-style, as Postgres reports WAL sizes: 1024-based (`totes doctor` uses it too). */
export function formatBytes(bytes: number): string {
  const units = ['bytes', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} bytes` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** The report as terminal text: the verdict, the problems, then the figures. */
export function renderHealthReport(report: HealthReport): string {
  const lines: string[] = [];
  lines.push(
    `totes is ${report.status}${report.problems.length ? '' : ': no problems'} (observed ${report.observedAt})`,
  );
  for (const p of report.problems)
    lines.push(`  ${p.severity === 'critical' ? 'CRITICAL' : 'warning '} ${p.message}`);
  const seen = [report.scope.source ? 'source' : null, report.scope.local ? 'local stack' : null].filter(
    Boolean,
  );
  lines.push(`  (saw: warehouse${seen.length ? `, ${seen.join(', ')}` : ' only'})`);
  if (report.stages.length > 0) {
    lines.push('', 'stage       lag          backlog');
    for (const s of report.stages) {
      const lag =
        s.lagBytes != null
          ? `${formatBytes(s.lagBytes)}${s.lagSeconds !== null ? ` / ${formatSeconds(s.lagSeconds)}` : ''}`
          : s.lagSeconds !== null
            ? formatSeconds(s.lagSeconds)
            : 'unknown';
      const backlog =
        s.backlog === null ? '' : `${s.backlog} ${s.stage === 'stream' ? 'records' : 'objects'}`;
      lines.push(`${s.stage.padEnd(11)} ${lag.padEnd(12)} ${backlog}`);
    }
  }
  if (report.heartbeat)
    lines.push(
      '',
      `freshness   ${
        report.heartbeat.ageSeconds === null
          ? 'unknown: no capture heartbeat in the warehouse yet'
          : `${formatSeconds(report.heartbeat.ageSeconds)} (the newest capture heartbeat loaded, slot ${report.heartbeat.slotName})`
      }`,
    );
  if (report.freshness.length > 0) {
    lines.push('', 'warehouse table          newest change   age');
    for (const f of report.freshness)
      lines.push(
        `${f.warehouseTable.padEnd(24)} ${(f.newestCommitTs ?? '—').slice(0, 19).replace('T', ' ').padEnd(15)} ${
          f.ageSeconds === null ? '—' : formatSeconds(f.ageSeconds)
        }`,
      );
  }
  if (report.throughput)
    lines.push(
      '',
      `throughput  ${report.throughput.rowsPerSecond.toFixed(1)} rows/s (last minute), ${report.throughput.rowsLastHour} rows in ${report.throughput.objectsLastHour} objects in the last hour`,
    );
  if (report.quarantined !== null || report.failed !== null)
    lines.push(`quarantined ${report.quarantined ?? 'unknown'}   failed ${report.failed ?? 'unknown'}`);
  if (report.lastError)
    lines.push(`last error  ${report.lastError.at} ${report.lastError.stage}: ${report.lastError.message}`);
  return `${lines.join('\n')}\n`;
}
