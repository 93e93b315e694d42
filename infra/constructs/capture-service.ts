import { Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { OVERSIZED_ROOT } from '../../core/oversized-change';
import { acknowledge, iamResourceFinding } from '../acknowledge';
import type { TotesConfig } from '../config';
import {
  CAPTURE_STATS_MESSAGE,
  CAPTURE_STATS_METRICS,
  LOG_METRICS,
  METRIC_NAMESPACE,
} from '../pipeline-metrics';
import { REPO_ROOT } from './pipeline-function';

export interface CaptureServiceProps {
  vpc: ec2.IVpc;
  stream: kinesis.IStream;
  stateBucket: s3.IBucket;
  stateKey: string;
  /** Where changes too big for one stream record are stored (the ingestion bucket, `oversized/`). */
  oversizedBucket: s3.IBucket;
  sourceSecret: secretsmanager.ISecret;
  source: TotesConfig['source'];
  capture: TotesConfig['capture'];
  logRetentionDays: logs.RetentionDays;
}

type CaptureStatsField = keyof typeof CAPTURE_STATS_METRICS;

/**
 * The capture process (capture/main.ts) as one Fargate task: reads the source's logical replication
 * slot and puts change batches on the Kinesis stream. One slot has exactly one reader, so the
 * service runs one task and never two at once; ECS restarts it when it exits.
 */
export class CaptureService extends Construct {
  readonly cluster: ecs.Cluster;
  readonly service: ecs.FargateService;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly logGroup: logs.LogGroup;
  readonly securityGroup: ec2.SecurityGroup;
  private readonly statsMetrics = new Map<CaptureStatsField, cloudwatch.Metric>();
  readonly errorsMetric: cloudwatch.Metric;
  /** Counts of capture's recovery events (`event` field of its log lines), per 5 minutes. */
  readonly eventMetrics: Record<'slotLost' | 'tablesNotCaptured' | 'sourceChanged', cloudwatch.Metric>;

  constructor(scope: Construct, id: string, props: CaptureServiceProps) {
    super(scope, id);
    const { capture } = props;
    const arm = capture.cpuArchitecture === 'ARM64';

    this.cluster = new ecs.Cluster(this, 'Cluster', {
      vpc: props.vpc,
      // Container Insights publishes RunningTaskCount, which the "capture not running" alarm reads.
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });
    this.logGroup = new logs.LogGroup(this, 'Logs', { retention: props.logRetentionDays });

    this.taskDefinition = new ecs.FargateTaskDefinition(this, 'Task', {
      cpu: capture.cpu,
      memoryLimitMiB: capture.memoryMiB,
      runtimePlatform: {
        cpuArchitecture: arm ? ecs.CpuArchitecture.ARM64 : ecs.CpuArchitecture.X86_64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
    });
    this.taskDefinition.addContainer('capture', {
      image: ecs.ContainerImage.fromAsset(REPO_ROOT, {
        file: 'capture/Dockerfile',
        platform: arm ? Platform.LINUX_ARM64 : Platform.LINUX_AMD64,
      }),
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: 'capture' }),
      // capture/config.ts reads these once at start. The source credentials are not among them: capture
      // reads the secret named by TOTES_SOURCE_SECRET_ARN itself, so the password never sits in the
      // task's environment and both secret shapes (URL or RDS JSON) work.
      environment: {
        TOTES_SOURCE_SECRET_ARN: props.sourceSecret.secretArn,
        TOTES_STREAM_NAME: props.stream.streamName,
        TOTES_STATE_S3_URI: `s3://${props.stateBucket.bucketName}/${props.stateKey}`,
        TOTES_OVERSIZED_BUCKET: props.oversizedBucket.bucketName,
        TOTES_HEARTBEAT_INTERVAL_MS: String(capture.heartbeatIntervalMs),
        TOTES_TABLES: capture.tables.join(','),
        TOTES_SLOT: capture.slot,
        TOTES_PUBLICATION: capture.publication,
        AWS_REGION: Stack.of(this).region,
        // node-postgres reads it when the connection URL names no sslmode (capture/Dockerfile
        // trusts the RDS certificate authorities for verify-full).
        PGSSLMODE: props.source.sslMode,
      },
      // Capture writes nothing locally: its state lives in S3, its logs go to stdout/stderr.
      readonlyRootFilesystem: true,
      // Time between SIGTERM and SIGKILL to flush the batches in flight and confirm their LSN
      // (Fargate allows at most 120 s).
      stopTimeout: Duration.seconds(60),
    });

    const taskRole = this.taskDefinition.taskRole;
    taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['kinesis:PutRecords', 'kinesis:DescribeStreamSummary'],
        resources: [props.stream.streamArn],
      }),
    );
    taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
        resources: [props.stateBucket.arnForObjects(props.stateKey)],
      }),
    );
    // A change too big for one record: its event is written under oversized/ before its pointer goes
    // on the stream (capture/oversized-sink.ts). Write only: capture never reads them back.
    const oversizedObjects = props.oversizedBucket.arnForObjects(`${OVERSIZED_ROOT}/*`);
    taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['s3:PutObject'], resources: [oversizedObjects] }),
    );
    acknowledge(
      taskRole,
      'AwsSolutions-IAM5',
      'Oversized change events are named by their content hash at run time: PutObject only, under oversized/ only.',
      [iamResourceFinding(this, oversizedObjects)],
    );
    // Without ListBucket, reading a state object that does not exist yet (the first start) answers
    // 403 instead of NoSuchKey, and capture cannot tell "no state" from "no access".
    taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['s3:ListBucket'], resources: [props.stateBucket.bucketArn] }),
    );
    props.sourceSecret.grantRead(taskRole);

    this.securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.vpc,
      description: 'totes capture: egress to the source database and to AWS APIs over HTTPS only',
      allowAllOutbound: false,
    });
    this.securityGroup.addEgressRule(
      ec2.Peer.ipv4(props.source.cidr),
      ec2.Port.tcp(props.source.port),
      'the source Postgres',
    );
    this.securityGroup.addEgressRule(
      ec2.Peer.anyIpv4(),
      ec2.Port.tcp(443),
      'AWS APIs: Kinesis, S3, Secrets Manager, ECR, CloudWatch Logs',
    );

    this.service = new ecs.FargateService(this, 'Service', {
      cluster: this.cluster,
      taskDefinition: this.taskDefinition,
      // 0 deploys everything else first (totes:captureDesiredCount).
      desiredCount: capture.desiredCount,
      // One slot, one reader: Postgres refuses a second connection to an active slot. At most 100%
      // and at least 0% makes a deployment stop the old task (SIGTERM: drain, confirm, let go of the
      // slot) before it starts the new one; otherwise the new task would fail against the slot the
      // old one still holds.
      minHealthyPercent: 0,
      maxHealthyPercent: 100,
      // A task that cannot reach the source fails the deployment after a few tries instead of
      // CloudFormation waiting hours for a steady state; without rollback ECS does not also switch the
      // service back mid-flight. The stack update that carried it is rolled back by CloudFormation,
      // which deletes nothing (the stateful stack, Firehose and the functions stay); the CaptureNotRunning
      // and CaptureErrors alarms say so. https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-circuit-breaker.html
      circuitBreaker: { enable: true, rollback: false },
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      securityGroups: [this.securityGroup],
      assignPublicIp: false,
      propagateTags: ecs.PropagatedTagSource.SERVICE,
    });

    acknowledge(
      this.taskDefinition,
      'AwsSolutions-ECS2',
      'The environment holds names only (stream, bucket key, slot, secret ARN); the credentials are read from ' +
        'Secrets Manager by capture at start.',
    );
    acknowledge(
      this.taskDefinition,
      'AwsSolutions-IAM5',
      'ecr:GetAuthorizationToken has no resource-level permissions (image pulls are scoped to the repository).',
      ['Resource::*'],
    );

    for (const field of Object.keys(CAPTURE_STATS_METRICS) as CaptureStatsField[])
      this.statsMetrics.set(field, this.statsMetricFilter(field));
    this.errorsMetric = new logs.MetricFilter(this, 'ErrorsFilter', {
      logGroup: this.logGroup,
      filterPattern: logs.FilterPattern.stringValue('$.level', '=', 'error'),
      metricNamespace: METRIC_NAMESPACE,
      metricName: LOG_METRICS.captureErrors,
      metricValue: '1',
      unit: cloudwatch.Unit.COUNT,
    }).metric({ statistic: cloudwatch.Stats.SUM, period: Duration.minutes(5) });
    const eventMetric = (id: string, event: string, metricName: string) =>
      new logs.MetricFilter(this, id, {
        logGroup: this.logGroup,
        filterPattern: logs.FilterPattern.stringValue('$.event', '=', event),
        metricNamespace: METRIC_NAMESPACE,
        metricName,
        metricValue: '1',
        unit: cloudwatch.Unit.COUNT,
      }).metric({ statistic: cloudwatch.Stats.SUM, period: Duration.minutes(5) });
    this.eventMetrics = {
      slotLost: eventMetric('SlotLostFilter', 'capture.slot_lost', LOG_METRICS.slotLost),
      tablesNotCaptured: eventMetric(
        'TablesNotCapturedFilter',
        'capture.table_not_captured',
        LOG_METRICS.tablesNotCaptured,
      ),
      sourceChanged: eventMetric('SourceChangedFilter', 'capture.source_changed', LOG_METRICS.sourceChanged),
    };
  }

  private statsMetricFilter(field: CaptureStatsField): cloudwatch.Metric {
    const { metricName, unit } = CAPTURE_STATS_METRICS[field];
    return new logs.MetricFilter(this, `${metricName}Filter`, {
      logGroup: this.logGroup,
      // Only lines that carry a number: the field is null until capture has measured it.
      filterPattern: logs.FilterPattern.all(
        logs.FilterPattern.stringValue('$.msg', '=', CAPTURE_STATS_MESSAGE),
        logs.FilterPattern.numberValue(`$.${field}`, '>=', 0),
      ),
      metricNamespace: METRIC_NAMESPACE,
      metricName,
      metricValue: `$.${field}`,
      unit: unit as cloudwatch.Unit,
    }).metric({ statistic: cloudwatch.Stats.MAXIMUM, period: Duration.minutes(1) });
  }

  /** A metric made from the `capture.stats` log lines. */
  statsMetric(field: CaptureStatsField): cloudwatch.Metric {
    return this.statsMetrics.get(field)!;
  }

  /** Tasks running (Container Insights); below 1 nobody reads the slot and WAL piles up. */
  runningTaskCountMetric(): cloudwatch.Metric {
    return new cloudwatch.Metric({
      namespace: 'ECS/ContainerInsights',
      metricName: 'RunningTaskCount',
      dimensionsMap: { ClusterName: this.cluster.clusterName, ServiceName: this.service.serviceName },
      statistic: cloudwatch.Stats.MINIMUM,
      period: Duration.minutes(1),
    });
  }
}
