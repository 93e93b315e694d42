/**
 * The metrics the alarms and the dashboard read, and who produces them:
 *
 * - Capture's `capture.stats` log line (every TOTES_STATS_INTERVAL_MS, once streaming): metric
 *   filters on its log group turn the fields into metrics. Nothing in capture knows about CloudWatch.
 * - The Lambda functions' CloudWatch embedded metric format (EMF) lines (processors/shared/metrics.ts,
 *   built by Powertools Metrics): namespace `Totes`, one dimension `Stage` naming the function.
 *   https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
 * - Log lines other metric filters count (LOG_METRICS).
 *
 * Missing data is "not breaching" for all of these: an idle pipeline publishes nothing, and that is
 * not an incident.
 */
export const METRIC_NAMESPACE = 'Totes';
export const STAGE_DIMENSION = 'Stage';

export const STAGES = {
  capture: 'capture',
  firehoseTransform: 'firehose-transform',
  transform: 'transform',
  load: 'load',
  reconcile: 'reconcile',
  migrate: 'migrate',
} as const;
export type Stage = (typeof STAGES)[keyof typeof STAGES];

/** Metrics made from capture's `capture.stats` JSON log lines (field → metric name, unit). */
export const CAPTURE_STATS_METRICS = {
  lagSeconds: { metricName: 'CaptureLagSeconds', unit: 'Seconds' },
  lagBytes: { metricName: 'CaptureLagBytes', unit: 'Bytes' },
  retainedWalBytes: { metricName: 'RetainedWalBytes', unit: 'Bytes' },
  changesPerSecond: { metricName: 'ChangesPerSecond', unit: 'Count/Second' },
} as const;
/** The `msg` of capture's statistics line (capture/capture-service.ts). */
export const CAPTURE_STATS_MESSAGE = 'capture.stats';

/**
 * Metrics the Lambda functions emit as EMF (processors/shared/metrics.ts), the ones alarms read.
 * processors/transform/README.md and processors/load/create-handler.ts list them all.
 */
export const EMF_METRICS = {
  /** transform, load: objects moved to `quarantine/` instead of being processed (published as 0 too). */
  objectsQuarantined: 'ObjectsQuarantined',
  /** transform: single changes the warehouse cannot hold, quarantined while the rest of the object loads. */
  changesRejected: 'ChangesRejected',
  /**
   * load, seconds, one value per object: from the newest source commit in the object to its
   * warehouse transaction's commit (the alarm reads the maximum).
   */
  warehouseFreshness: 'WarehouseFreshness',
  /**
   * reconcile, one value per run (zeros included): objects a stage never finished, past the grace
   * period (processors/reconcile/reconcile.ts).
   */
  outstandingObjects: 'OutstandingObjects',
} as const;

/**
 * The Lambda functions' log lines are Powertools Logger's JSON (processors/shared/lambda-logger.ts):
 * the level in capitals under `level`, the text under `message`. Capture's (the core logger) keep
 * `level: "error"` and `msg`. infra/bundles.pg.test.ts matches the filters against lines the
 * bundled functions really wrote.
 */
export const LAMBDA_LOG = {
  levelField: '$.level',
  errorLevel: 'ERROR',
  messageField: '$.message',
} as const;

/** Metrics made from log lines by metric filters other than capture.stats. */
export const LOG_METRICS = {
  /** capture logged at level error (each is a crash or a failed flush that restarts it). */
  captureErrors: 'CaptureErrors',
  /** capture found its slot invalidated (`event: capture.slot_lost`) and resynced (or refused). */
  slotLost: 'SlotLost',
  /** a captured table fell out of the publication (`event: capture.table_not_captured`). */
  tablesNotCaptured: 'TablesNotCaptured',
  /** the source is another cluster or timeline (`event: capture.source_changed`): resynced. */
  sourceChanged: 'SourceChanged',
  /** firehose-transform returned ProcessingFailed for a record (it logs an `errorCode`). */
  recordsFailedTransformation: 'RecordsFailedTransformation',
} as const;
