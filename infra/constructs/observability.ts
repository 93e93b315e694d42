import { Aws, Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import type { TotesConfig } from '../config';
import {
  EMF_METRICS,
  LAMBDA_LOG,
  LOG_METRICS,
  METRIC_NAMESPACE,
  STAGE_DIMENSION,
  type Stage,
} from '../pipeline-metrics';
import type { CaptureService } from './capture-service';
import type { DeliveryStream } from './delivery-stream';
import type { PipelineFunction } from './pipeline-function';
import type { Warehouse } from './warehouse';

export interface ObservabilityProps {
  alarms: TotesConfig['alarms'];
  capture: CaptureService;
  stream: kinesis.IStream;
  deliveryStream: DeliveryStream;
  bufferIntervalSeconds: number;
  firehoseTransform: PipelineFunction;
  transform: PipelineFunction;
  load: PipelineFunction;
  loadQueue: sqs.IQueue;
  loadDeadLetterQueue: sqs.IQueue;
  reconcile: PipelineFunction;
  reconcileIntervalMinutes: number;
  migrate: PipelineFunction;
  warehouse: Warehouse;
  /** A t-class instance runs on CPU credits. */
  warehouseBurstable: boolean;
}

const { GREATER_THAN_THRESHOLD, GREATER_THAN_OR_EQUAL_TO_THRESHOLD, LESS_THAN_THRESHOLD } =
  cloudwatch.ComparisonOperator;

/** A metric a Lambda function emits as EMF (see pipeline-metrics.ts). */
export function emfMetric(
  stage: Stage,
  metricName: string,
  props: cloudwatch.MetricOptions = {},
): cloudwatch.Metric {
  return new cloudwatch.Metric({
    namespace: METRIC_NAMESPACE,
    metricName,
    dimensionsMap: { [STAGE_DIMENSION]: stage },
    period: Duration.minutes(1),
    ...props,
  });
}

/**
 * Alarms on every stage, each one sent (on alarm and on recovery) to one SNS topic with an email
 * subscription, and a dashboard that follows a change from the source to the warehouse.
 *
 * Missing data is "not breaching" except where silence itself is the failure (no capture task):
 * an idle source produces no objects and no loads, and that is not an incident.
 */
export class Observability extends Construct {
  readonly topic: sns.Topic;
  readonly alarms: cloudwatch.Alarm[] = [];
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const { alarms: limits, capture, deliveryStream } = props;

    this.topic = new sns.Topic(this, 'AlarmTopic', {
      displayName: 'totes pipeline alarms',
      enforceSSL: true,
    });
    // enforceSSL writes a topic policy, and a topic policy REPLACES the default one SNS gives a new
    // topic (which lets this account's services publish): with only the SSL Deny in it, CloudWatch
    // may not publish, and every alarm changes state without notifying anyone. So allow CloudWatch,
    // as the service principal, for this account's alarms only (the confused-deputy conditions).
    // https://docs.aws.amazon.com/sns/latest/dg/sns-access-policy-use-cases.html
    // https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/Notify_Users_Alarm_Changes.html
    this.topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsOfThisAccountPublish',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [this.topic.topicArn],
        conditions: {
          ArnLike: {
            'aws:SourceArn': `arn:${Aws.PARTITION}:cloudwatch:${Aws.REGION}:${Aws.ACCOUNT_ID}:alarm:*`,
          },
          StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
        },
      }),
    );
    if (limits.email) this.topic.addSubscription(new subscriptions.EmailSubscription(limits.email));

    // ---------------------------------------------------------------- capture
    const lagSeconds = capture.statsMetric('lagSeconds');
    const retainedWal = capture.statsMetric('retainedWalBytes');
    const running = capture.runningTaskCountMetric();
    this.alarm('CaptureLag', {
      metric: lagSeconds,
      threshold: limits.maxCaptureLagSeconds,
      comparisonOperator: GREATER_THAN_THRESHOLD,
      // Three minutes in a row: one slow flush is not an incident.
      evaluationPeriods: 3,
      alarmDescription: `Capture is more than ${limits.maxCaptureLagSeconds} s behind the source's commits.`,
    });
    this.alarm('RetainedWal', {
      metric: retainedWal,
      threshold: limits.maxRetainedWalBytes,
      comparisonOperator: GREATER_THAN_THRESHOLD,
      evaluationPeriods: 5,
      alarmDescription:
        'The replication slot holds more WAL on the source than allowed: capture is stuck or too slow, and the ' +
        "source's disk is filling. Check the capture logs; drop the slot only as a last resort (full resync).",
    });
    this.alarm('CaptureNotRunning', {
      metric: running,
      threshold: 1,
      comparisonOperator: LESS_THAN_THRESHOLD,
      // Long enough for ECS to replace a task that exited (pull, start, connect).
      evaluationPeriods: 3,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      alarmDescription:
        'No capture task is running: nobody reads the slot and WAL accumulates on the source.',
    });
    this.alarm('CaptureErrors', {
      metric: capture.errorsMetric,
      threshold: 1,
      comparisonOperator: GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      alarmDescription: 'Capture logged an error (it restarts from its last confirmed position).',
    });
    for (const [name, metric, description] of [
      [
        'SlotLost',
        capture.eventMetrics.slotLost,
        'The replication slot was invalidated (max_slot_wal_keep_size): changes since its position are gone. ' +
          'Capture resyncs by itself (a reconciling snapshot under a new epoch); raise max_slot_wal_keep_size ' +
          'or find why capture fell behind.',
      ],
      [
        'TablesNotCaptured',
        capture.eventMetrics.tablesNotCaptured,
        'A captured table was dropped, re-created or removed from the publication: its changes no longer ' +
          'arrive. Add it back to the publication, then totes resync --table T.',
      ],
      [
        'SourceChanged',
        capture.eventMetrics.sourceChanged,
        'The source is another cluster or timeline than before (failover or restore): capture resynced ' +
          'under a new epoch. Confirm the failover was intended.',
      ],
    ] as const)
      this.alarm(name, {
        metric,
        threshold: 1,
        comparisonOperator: GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        alarmDescription: description,
      });

    // ---------------------------------------------------------------- Kinesis and Firehose
    const iteratorAge = props.stream.metricGetRecordsIteratorAgeMilliseconds({
      statistic: cloudwatch.Stats.MAXIMUM,
      period: Duration.minutes(1),
    });
    this.alarm('IteratorAge', {
      metric: iteratorAge,
      threshold: limits.maxIteratorAgeMs,
      comparisonOperator: GREATER_THAN_THRESHOLD,
      evaluationPeriods: 3,
      alarmDescription: 'Firehose is falling behind the change stream (records wait in Kinesis).',
    });
    // Dynamic partitioning delivers within about 1.5x the interval, after up to a minute of processor
    // buffering; three intervals (at least five minutes) is late, not jitter.
    const maxFreshnessSeconds = Math.max(300, 3 * props.bufferIntervalSeconds);
    const freshness = deliveryStream.metric('DeliveryToS3.DataFreshness', {
      statistic: cloudwatch.Stats.MAXIMUM,
    });
    this.alarm('DeliveryFreshness', {
      metric: freshness,
      threshold: maxFreshnessSeconds,
      comparisonOperator: GREATER_THAN_THRESHOLD,
      evaluationPeriods: 3,
      alarmDescription: `Firehose holds records older than ${maxFreshnessSeconds} s (S3 delivery is failing or slow).`,
    });
    const processingSuccess = deliveryStream.metric('ExecuteProcessing.Success', {
      statistic: cloudwatch.Stats.AVERAGE,
      period: Duration.minutes(5),
    });
    this.alarm('TransformationInvocationsFailing', {
      metric: processingSuccess,
      threshold: 1,
      comparisonOperator: LESS_THAN_THRESHOLD,
      // Two of three: a throttled invocation that succeeds on retry does not page anyone.
      evaluationPeriods: 3,
      datapointsToAlarm: 2,
      alarmDescription:
        'Firehose invocations of the transformation function fail; after 3 retries their records go to the ' +
        'processing-failed error prefix.',
    });
    const recordsFailed = new logs.MetricFilter(this, 'RecordsFailedTransformationFilter', {
      logGroup: props.firehoseTransform.logGroup,
      // firehose-transform logs each record it answers ProcessingFailed with an `errorCode`.
      filterPattern: logs.FilterPattern.all(
        logs.FilterPattern.stringValue(LAMBDA_LOG.levelField, '=', LAMBDA_LOG.errorLevel),
        logs.FilterPattern.exists('$.errorCode'),
      ),
      metricNamespace: METRIC_NAMESPACE,
      metricName: LOG_METRICS.recordsFailedTransformation,
      metricValue: '1',
      unit: cloudwatch.Unit.COUNT,
    }).metric({ statistic: cloudwatch.Stats.SUM, period: Duration.minutes(5) });
    this.alarm('RecordsFailedTransformation', {
      metric: recordsFailed,
      threshold: 1,
      comparisonOperator: GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      alarmDescription: 'Records failed transformation and went to the processing-failed error prefix.',
    });

    // ---------------------------------------------------------------- functions
    const functions = [props.firehoseTransform, props.transform, props.load, props.reconcile];
    for (const fn of functions) this.functionAlarms(fn);
    this.alarm('MigrateErrors', {
      metric: props.migrate.function.metricErrors({
        statistic: cloudwatch.Stats.SUM,
        period: Duration.minutes(5),
      }),
      threshold: 1,
      comparisonOperator: GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      alarmDescription: 'The warehouse migration step failed (the deployment that ran it failed too).',
    });
    for (const fn of [props.transform, props.load])
      this.alarm(`${pascal(fn.stage)}ObjectsQuarantined`, {
        metric: emfMetric(fn.stage, EMF_METRICS.objectsQuarantined, {
          statistic: cloudwatch.Stats.SUM,
          period: Duration.minutes(5),
        }),
        threshold: 1,
        comparisonOperator: GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        alarmDescription: `${fn.stage} moved an object it could not process to the quarantine prefix.`,
      });
    this.alarm('TransformChangesRejected', {
      metric: emfMetric(props.transform.stage, EMF_METRICS.changesRejected, {
        statistic: cloudwatch.Stats.SUM,
        period: Duration.minutes(5),
      }),
      threshold: 1,
      comparisonOperator: GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      alarmDescription:
        'transform rejected changes the warehouse cannot hold exactly (quarantine/transform/…rejected.jsonl); ' +
        'the rest of their objects loaded.',
    });

    // ---------------------------------------------------------------- warehouse
    const warehouseFreshness = emfMetric(props.load.stage, EMF_METRICS.warehouseFreshness, {
      statistic: cloudwatch.Stats.MAXIMUM,
    });
    this.alarm('WarehouseFreshness', {
      metric: warehouseFreshness,
      threshold: limits.maxWarehouseFreshnessSeconds,
      comparisonOperator: GREATER_THAN_THRESHOLD,
      evaluationPeriods: 3,
      alarmDescription: `Changes reach the warehouse more than ${limits.maxWarehouseFreshnessSeconds} s after their commit.`,
    });

    // ---------------------------------------------------------------- load queue and reconciler
    const loadQueueAge = props.loadQueue.metricApproximateAgeOfOldestMessage({
      statistic: cloudwatch.Stats.MAXIMUM,
      period: Duration.minutes(5),
    });
    this.alarm('LoadQueueAge', {
      metric: loadQueueAge,
      threshold: limits.maxLoadQueueAgeSeconds,
      comparisonOperator: GREATER_THAN_THRESHOLD,
      evaluationPeriods: 2,
      alarmDescription:
        `An object has waited more than ${limits.maxLoadQueueAgeSeconds} s in the load queue: loads fail (is the ` +
        'warehouse up?) or are far behind. The objects wait in the queue and load by themselves once it is fixed.',
    });
    this.deadLetterAlarm(
      'LoadDeadLetters',
      props.loadDeadLetterQueue,
      'Load messages used up their receives and wait in the dead-letter queue: fix the cause, then redrive ' +
        '(docs/deploy.md); the reconciler also re-drives their objects once the load queue is empty.',
    );
    const interval = Duration.minutes(props.reconcileIntervalMinutes);
    const outstanding = emfMetric(props.reconcile.stage, EMF_METRICS.outstandingObjects, {
      statistic: cloudwatch.Stats.MAXIMUM,
      period: interval,
    });
    this.alarm('OutstandingObjects', {
      metric: outstanding,
      threshold: 1,
      comparisonOperator: GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      // Two runs in a row: the first run's re-drive had a chance to finish the work.
      evaluationPeriods: 2,
      // The reconciler publishes on every run, zeros included: no data means it is not running.
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      alarmDescription:
        'Objects a stage never finished (CSV not transformed, Parquet not loaded) outlived a re-drive, or the ' +
        'reconciler is not running. Its log lists them (`outstanding object`).',
    });

    // ---------------------------------------------------------------- the warehouse instance
    const instance = props.warehouse.instance;
    if (instance) {
      const fiveMinutes = { period: Duration.minutes(5) };
      if (props.warehouseBurstable)
        this.alarm('WarehouseCpuCredits', {
          metric: instance.metric('CPUCreditBalance', {
            ...fiveMinutes,
            statistic: cloudwatch.Stats.MINIMUM,
          }),
          threshold: limits.minWarehouseCpuCredits,
          comparisonOperator: LESS_THAN_THRESHOLD,
          evaluationPeriods: 3,
          alarmDescription:
            'The warehouse (a burstable instance) is running out of CPU credits: it will be throttled to its ' +
            'baseline and loads will slow down. Choose a bigger or non-burstable totes:warehouseInstanceType.',
        });
      this.alarm('WarehouseFreeStorage', {
        metric: instance.metricFreeStorageSpace({ ...fiveMinutes, statistic: cloudwatch.Stats.MINIMUM }),
        threshold: limits.minWarehouseFreeStorageBytes,
        comparisonOperator: LESS_THAN_THRESHOLD,
        evaluationPeriods: 2,
        alarmDescription:
          'The warehouse is running out of storage (storage autoscaling may be at its maximum): loads will fail.',
      });
      this.alarm('WarehouseConnections', {
        metric: instance.metricDatabaseConnections({ ...fiveMinutes, statistic: cloudwatch.Stats.MAXIMUM }),
        threshold: limits.maxWarehouseConnections,
        comparisonOperator: GREATER_THAN_THRESHOLD,
        evaluationPeriods: 2,
        alarmDescription:
          'More warehouse connections than expected: loads (totes:loadMaxConcurrency), analysts and dashboards ' +
          'together are nearing max_connections.',
      });
    }

    this.dashboard = this.buildDashboard(props, {
      lagSeconds,
      retainedWal,
      running,
      iteratorAge,
      freshness,
      processingSuccess,
      recordsFailed,
      warehouseFreshness,
    });
  }

  private alarm(id: string, props: cloudwatch.AlarmProps): cloudwatch.Alarm {
    const alarm = new cloudwatch.Alarm(this, id, {
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      ...props,
      alarmDescription: props.alarmDescription,
    });
    const action = new actions.SnsAction(this.topic);
    alarm.addAlarmAction(action);
    alarm.addOkAction(action);
    this.alarms.push(alarm);
    return alarm;
  }

  private functionAlarms(fn: PipelineFunction): void {
    const name = pascal(fn.stage);
    this.alarm(`${name}Errors`, {
      metric: fn.function.metricErrors({ statistic: cloudwatch.Stats.SUM, period: Duration.minutes(5) }),
      threshold: 1,
      comparisonOperator: GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      alarmDescription: `The ${fn.stage} function failed invocations (Lambda retries them).`,
    });
    // 80% of the timeout: close enough that the next bigger object will time out.
    const timeoutMs = fn.function.timeout!.toMilliseconds();
    this.alarm(`${name}DurationP99`, {
      metric: fn.function.metricDuration({ statistic: cloudwatch.Stats.p(99), period: Duration.minutes(5) }),
      threshold: Math.round(timeoutMs * 0.8),
      comparisonOperator: GREATER_THAN_THRESHOLD,
      evaluationPeriods: 3,
      alarmDescription: `The ${fn.stage} function's p99 duration is above 80% of its ${timeoutMs / 1000} s timeout.`,
    });
    if (fn.deadLetterQueue)
      this.deadLetterAlarm(
        `${name}DeadLetters`,
        fn.deadLetterQueue,
        `S3 events the ${fn.stage} function gave up on wait in its dead-letter queue: fix the cause, then ` +
          'redrive them (docs/deploy.md).',
      );
  }

  /** Anything in a dead-letter queue is work nobody will retry by itself. */
  private deadLetterAlarm(id: string, queue: sqs.IQueue, description: string): void {
    this.alarm(id, {
      metric: queue.metricApproximateNumberOfMessagesVisible({
        statistic: cloudwatch.Stats.MAXIMUM,
        period: Duration.minutes(5),
      }),
      threshold: 1,
      comparisonOperator: GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      alarmDescription: description,
    });
  }

  private buildDashboard(
    props: ObservabilityProps,
    m: Record<
      | 'lagSeconds'
      | 'retainedWal'
      | 'running'
      | 'iteratorAge'
      | 'freshness'
      | 'processingSuccess'
      | 'recordsFailed'
      | 'warehouseFreshness',
      cloudwatch.IMetric
    >,
  ): cloudwatch.Dashboard {
    const { capture, stream, deliveryStream, alarms: limitsLine } = props;
    const functions = [props.firehoseTransform, props.transform, props.load];
    const graph = (
      title: string,
      left: cloudwatch.IMetric[],
      extra: Partial<cloudwatch.GraphWidgetProps> = {},
    ) => new cloudwatch.GraphWidget({ title, left, width: 6, height: 6, ...extra });
    const perMinute = { statistic: cloudwatch.Stats.SUM, period: Duration.minutes(1) };

    const dashboard = new cloudwatch.Dashboard(this, 'Dashboard', { defaultInterval: Duration.hours(3) });
    dashboard.addWidgets(
      new cloudwatch.TextWidget({
        markdown:
          '# totes\nsource Postgres → **capture** (Fargate) → **Kinesis** → **Firehose** (CSV) → ingestion bucket → ' +
          '**transform** → processed bucket (Parquet) → **load** → warehouse',
        width: 12,
        height: 3,
      }),
      new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 12, height: 3 }),
    );
    dashboard.addWidgets(
      graph('Capture lag (s)', [m.lagSeconds], {
        leftAnnotations: [{ value: limitsLine.maxCaptureLagSeconds, label: 'alarm' }],
      }),
      graph('Slot WAL (bytes)', [m.retainedWal, capture.statsMetric('lagBytes')], {
        leftAnnotations: [{ value: limitsLine.maxRetainedWalBytes, label: 'alarm' }],
      }),
      graph('Changes captured / s', [capture.statsMetric('changesPerSecond')]),
      graph('Capture tasks running', [m.running], { right: [capture.errorsMetric] }),
    );
    dashboard.addWidgets(
      graph('Kinesis in', [stream.metricIncomingRecords(perMinute)], {
        right: [stream.metricIncomingBytes(perMinute)],
      }),
      graph('Kinesis iterator age (ms)', [m.iteratorAge], {
        leftAnnotations: [{ value: limitsLine.maxIteratorAgeMs, label: 'alarm' }],
      }),
      graph('Kinesis throttling', [
        stream.metricWriteProvisionedThroughputExceeded(perMinute),
        stream.metricReadProvisionedThroughputExceeded(perMinute),
      ]),
      graph('Firehose delivery freshness (s)', [m.freshness]),
    );
    dashboard.addWidgets(
      graph('Firehose records', [
        deliveryStream.metric('IncomingRecords', perMinute),
        deliveryStream.metric('DeliveryToS3.Records', perMinute),
      ]),
      graph('Firehose transformation', [m.processingSuccess], { right: [m.recordsFailed] }),
      graph('Firehose partitions', [
        deliveryStream.metric('PartitionCount', { statistic: cloudwatch.Stats.MAXIMUM }),
      ]),
      graph('Warehouse freshness (s)', [m.warehouseFreshness], {
        leftAnnotations: [{ value: limitsLine.maxWarehouseFreshnessSeconds, label: 'alarm' }],
      }),
    );
    dashboard.addWidgets(
      graph(
        'Function invocations',
        functions.map((f) => f.function.metricInvocations({ ...perMinute, label: f.stage })),
      ),
      graph(
        'Function errors and throttles',
        functions.map((f) => f.function.metricErrors({ ...perMinute, label: `${f.stage} errors` })),
        {
          right: functions.map((f) =>
            f.function.metricThrottles({ ...perMinute, label: `${f.stage} throttles` }),
          ),
        },
      ),
      graph(
        'Function duration p99 (ms)',
        functions.map((f) =>
          f.function.metricDuration({ statistic: cloudwatch.Stats.p(99), label: f.stage }),
        ),
      ),
      graph(
        'Dead letters and quarantine',
        [
          ...functions
            .filter((f) => f.deadLetterQueue)
            .map((f) =>
              f.deadLetterQueue!.metricApproximateNumberOfMessagesVisible({ label: `${f.stage} DLQ` }),
            ),
          props.loadDeadLetterQueue.metricApproximateNumberOfMessagesVisible({ label: 'load DLQ' }),
        ],
        {
          right: [props.transform, props.load].map((f) =>
            emfMetric(f.stage, EMF_METRICS.objectsQuarantined, {
              ...perMinute,
              label: `${f.stage} quarantined`,
            }),
          ),
        },
      ),
    );
    dashboard.addWidgets(
      graph('Load queue', [props.loadQueue.metricApproximateNumberOfMessagesVisible({ label: 'waiting' })], {
        right: [props.loadQueue.metricApproximateAgeOfOldestMessage({ label: 'oldest (s)' })],
      }),
      graph(
        'Outstanding objects (reconciler)',
        [
          emfMetric(props.reconcile.stage, EMF_METRICS.outstandingObjects, {
            statistic: cloudwatch.Stats.MAXIMUM,
          }),
        ],
        { leftAnnotations: [{ value: 1, label: 'alarm' }] },
      ),
    );
    return dashboard;
  }
}

function pascal(stage: string): string {
  return stage.replace(/(^|-)([a-z])/g, (_m, _dash, c: string) => c.toUpperCase());
}
