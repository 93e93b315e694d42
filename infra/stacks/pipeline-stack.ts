import { CfnOutput, Duration, Stack, type StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as lambdaEvents from 'aws-cdk-lib/aws-lambda-event-sources';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3n from 'aws-cdk-lib/aws-s3-notifications';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as triggers from 'aws-cdk-lib/triggers';
import { createHash } from 'node:crypto';
import { LOAD_V8_FLAGS } from '../../processors/load/create-handler';
import { readMigrations } from '../../processors/load/migrate';
import type { Construct } from 'constructs';
import { INGESTION_ROOT, SCHEMA_OBJECT_ROOT } from '../../core/csv-codec';
import { OVERSIZED_ROOT } from '../../core/oversized-change';
import { acknowledge } from '../acknowledge';
import type { TotesConfig } from '../config';
import { CaptureService } from '../constructs/capture-service';
import { DeliveryStream } from '../constructs/delivery-stream';
import { Observability } from '../constructs/observability';
import { PipelineFunction } from '../constructs/pipeline-function';
import { STAGES } from '../pipeline-metrics';
import { dataBucketName, type StatefulStack } from './stateful-stack';

/** The Lambda handlers, relative to the repository root. */
export const HANDLER_ENTRIES = {
  firehoseTransform: 'processors/firehose-transform/handler.ts',
  transform: 'processors/transform/handler.ts',
  load: 'processors/load/handler.ts',
  reconcile: 'processors/reconcile/handler.ts',
  migrate: 'processors/migrate/handler.ts',
} as const;
export type HandlerName = keyof typeof HANDLER_ENTRIES;

/** Where transform quarantines what it cannot read, and load what it cannot apply (processed bucket). */
export const QUARANTINE_PREFIX = 'quarantine/';
export const LOAD_QUARANTINE_PREFIX = `${QUARANTINE_PREFIX}load/`;

/**
 * Which processed-bucket objects start a load: Parquet. Transform's quarantine writes `.jsonl`, so it
 * never starts one; load's own quarantine copies keep their `.parquet` name and do start one, which
 * load ignores (it skips `quarantine/` keys): one no-op invocation per quarantined object, the price
 * of S3 filters having no "exclude prefix".
 */
export const LOAD_TRIGGER_SUFFIX = '.parquet';

export interface PipelineStackProps extends StackProps {
  config: TotesConfig;
  stateful: StatefulStack;
  /** Handler modules by function (defaults to HANDLER_ENTRIES). */
  handlerEntries?: Partial<Record<HandlerName, string>>;
}

/**
 * The compute: capture on Fargate, the Firehose delivery stream with its transformation function,
 * the transform and load functions with their S3 triggers, and the alarms and dashboard. Stateless:
 * it can be destroyed and deployed again without losing anything (capture resumes from the slot).
 */
export class PipelineStack extends Stack {
  readonly capture: CaptureService;
  readonly deliveryStream: DeliveryStream;
  readonly firehoseTransform: PipelineFunction;
  readonly transform: PipelineFunction;
  readonly load: PipelineFunction;
  /** S3 → this queue → load: a warehouse outage leaves the objects waiting here. */
  readonly loadQueue: sqs.Queue;
  readonly loadDeadLetterQueue: sqs.Queue;
  readonly reconcile: PipelineFunction;
  /** The deployment's migration step: roles, then migrations as the owner. */
  readonly migrate: PipelineFunction;
  readonly observability: Observability;

  constructor(scope: Construct, id: string, props: PipelineStackProps) {
    super(scope, id, props);
    const { config, stateful } = props;
    const entries = { ...HANDLER_ENTRIES, ...props.handlerEntries };
    const logRetentionDays = config.logRetentionDays as logs.RetentionDays;
    const common = { logRetentionDays, tracing: config.tracing };
    // The data buckets by their fixed names (see dataBucketName): grants, triggers and environment
    // variables name them without a cross-stack reference, so this stack's templates and the
    // stateful stack never depend on each other's outputs for them.
    const ingestion = s3.Bucket.fromBucketName(this, 'IngestionBucket', dataBucketName('ingestion'));
    const processed = s3.Bucket.fromBucketName(this, 'ProcessedBucket', dataBucketName('processed'));

    this.capture = new CaptureService(this, 'Capture', {
      vpc: stateful.vpc,
      stream: stateful.stream,
      stateBucket: ingestion,
      stateKey: stateful.captureStateKey,
      oversizedBucket: ingestion,
      sourceSecret: stateful.sourceSecret,
      source: config.source,
      capture: config.capture,
      logRetentionDays,
    });

    this.firehoseTransform = new PipelineFunction(this, 'FirehoseTransform', {
      ...common,
      entry: entries.firehoseTransform,
      stage: STAGES.firehoseTransform,
      description: 'totes: Firehose record transformation (change batch JSON → CSV lines + partition keys)',
      // Each invocation gets at most 1 MiB of records (the processor's buffer size).
      memorySizeMiB: 512,
      // Records plus a HEAD (and at most a PUT) per new column layout: seconds at worst.
      timeout: Duration.minutes(1),
    }).bindBucket('INGESTION_BUCKET', ingestion, {
      // HEAD (needs GetObject) then PUT of `_schemas/<table>/<fingerprint>.json`.
      get: [`${SCHEMA_OBJECT_ROOT}/*`],
      put: [`${SCHEMA_OBJECT_ROOT}/*`],
      // So a schema object that does not exist yet answers 404, not 403.
      list: true,
    });
    // Fast mode: each record's lines start with their layout record (core/mixed-csv.ts).
    if (config.firehose.freshness === 'fast')
      this.firehoseTransform.function.addEnvironment('FRESHNESS_MODE', 'fast');

    this.deliveryStream = new DeliveryStream(this, 'DeliveryStream', {
      source: stateful.stream,
      bucket: ingestion,
      processor: this.firehoseTransform.function,
      freshness: config.firehose.freshness,
      bufferIntervalSeconds: config.firehose.bufferIntervalSeconds,
      bufferSizeMiB: config.firehose.bufferSizeMiB,
      logRetentionDays,
    });

    // Firehose reads a Kinesis source from LATEST as of its creation
    // (https://docs.aws.amazon.com/firehose/latest/dev/writing-with-kinesis-streams.html): what capture
    // writes before that — the initial snapshot, or a backlog it has already confirmed to the slot —
    // would never be delivered. So CloudFormation creates the capture service only once the delivery
    // stream is ACTIVE, and on deletion stops capture before it deletes the delivery stream.
    // docs/deploy.md says what to replay after anything that recreates the delivery stream.
    this.capture.service.node.addDependency(this.deliveryStream.deliveryStream);

    this.transform = new PipelineFunction(this, 'Transform', {
      ...common,
      entry: entries.transform,
      stage: STAGES.transform,
      description: 'totes: ingestion CSV → star-schema Parquet in the processed bucket',
      // An object (up to the 64+ MiB Firehose buffer during a snapshot) is decoded, mapped and
      // encoded in memory, several copies of it at once; memory also buys CPU (a full vCPU at 1,769 MB).
      memorySizeMiB: 3008,
      // A 2 MB object took about 9 s on a loaded 2-core machine (processors/transform/README.md): a
      // snapshot-sized object needs minutes, so the Lambda maximum rather than a timeout and a retry.
      timeout: Duration.minutes(15),
      asyncInvocation: true,
    })
      // Data objects, the schema objects that describe their columns and the oversized changes their
      // pointer lines name; ListBucket so a missing one answers 404 (quarantined) rather than 403.
      .grantObjects(ingestion, {
        get: [`${INGESTION_ROOT}/*`, `${SCHEMA_OBJECT_ROOT}/*`, `${OVERSIZED_ROOT}/*`],
        list: true,
      })
      // Parquet per warehouse table, quarantine/transform/ and (fast mode) the mixed objects'
      // manifest/transform/; it HEADs an output before writing it
      // (GetObject, and ListBucket so a missing one answers 404), then puts with If-None-Match.
      .bindBucket('PROCESSED_BUCKET', processed, { get: ['*'], put: ['*'], list: true });

    const loadTimeout = Duration.minutes(5);
    this.loadDeadLetterQueue = new sqs.Queue(this, 'LoadDeadLetterQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      // The longest SQS keeps a message: time to notice the alarm, fix, and redrive.
      retentionPeriod: Duration.days(14),
    });
    acknowledge(
      this.loadDeadLetterQueue,
      'AwsSolutions-SQS3',
      "This queue is the load queue's dead-letter queue.",
    );
    this.loadQueue = new sqs.Queue(this, 'LoadQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      // The longest SQS keeps a message: an outage of up to two weeks waits here.
      retentionPeriod: Duration.days(14),
      // At least 6x the function timeout, as AWS asks for an SQS event source, so a message is not
      // handed out again while a slow (throttled, retried) batch still holds it.
      // https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html
      visibilityTimeout: Duration.seconds(6 * loadTimeout.toSeconds()),
      // Many receives before giving up: each failed load comes back after the visibility timeout, so
      // maxReceiveCount x 30 minutes of warehouse outage drain by themselves (docs/deploy.md).
      deadLetterQueue: { queue: this.loadDeadLetterQueue, maxReceiveCount: config.load.maxReceiveCount },
    });

    const loadEgress = new ec2.SecurityGroup(this, 'LoadHttpsEgress', {
      vpc: stateful.vpc,
      description: 'totes load and reconcile: HTTPS to AWS APIs only',
      allowAllOutbound: false,
    });
    loadEgress.addEgressRule(
      ec2.Peer.anyIpv4(),
      ec2.Port.tcp(443),
      'AWS APIs: S3, SQS, Secrets Manager, Lambda',
    );
    const inVpc = {
      vpc: stateful.vpc,
      subnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      securityGroups: [stateful.warehouse.clientSecurityGroup, loadEgress],
    };
    // Amazon's CA bundle (RDS included), which Node 20+ Lambda runtimes no longer load by default:
    // the warehouse connection verifies the server certificate (WAREHOUSE_SSL=verify).
    const trustRds = { NODE_EXTRA_CA_CERTS: '/var/runtime/ca-cert.pem' };
    this.load = new PipelineFunction(this, 'Load', {
      ...common,
      entry: entries.load,
      stage: STAGES.load,
      description: 'totes: processed Parquet → warehouse Postgres, one transaction per object',
      memorySizeMiB: 1024,
      timeout: loadTimeout,
      environment: trustRds,
      // Larger semi-spaces for the load only (processors/load/create-handler.ts says why and what
      // they cost); the transform's RSS grew more with them.
      v8Flags: [...LOAD_V8_FLAGS],
      network: inVpc,
    })
      // Reads the Parquet objects; copies what it cannot apply to quarantine/load/ after a HEAD of
      // its reason object (ListBucket so a missing one answers 404, not 403).
      .grantObjects(processed, { get: ['*'], put: [`${LOAD_QUARANTINE_PREFIX}*`], list: true })
      // totes_load: rows in and out, no DDL (migrations/004_roles.sql).
      .bindSecret('WAREHOUSE_SECRET_ARN', stateful.warehouse.roleSecrets.load);
    // A load that met a busy warehouse (a lock wait past the statement timeout, a deadlock) comes
    // back in seconds rather than after the queue's 30 minutes (processors/load/retry-delay.ts):
    // ChangeMessageVisibility, which the SQS event source's grant already includes.
    this.load.function.addEnvironment('LOAD_QUEUE_URL', this.loadQueue.queueUrl);
    this.load.function.addEnvironment('LOAD_MAX_RECEIVE_COUNT', String(config.load.maxReceiveCount));

    this.migrate = new PipelineFunction(this, 'Migrate', {
      ...common,
      entry: entries.migrate,
      stage: STAGES.migrate,
      description: 'totes: warehouse roles and migrations, run by each deployment before load is updated',
      memorySizeMiB: 512,
      // An index on a big fact table may take minutes; Lambda allows 15.
      timeout: Duration.minutes(14),
      environment: {
        ...trustRds,
        // A new or changed migration file changes the function, so the trigger runs it again.
        TOTES_MIGRATIONS: createHash('sha256')
          .update(
            readMigrations()
              .map((m) => `${m.name}:${m.checksum}`)
              .join('\n'),
          )
          .digest('hex'),
      },
      // migrate.ts reads the warehouse DDL from migrations/ beside the bundled handler.
      bundleFiles: [{ from: 'processors/load/migrations', to: 'migrations' }],
      network: inVpc,
    }).bindSecret('WAREHOUSE_ADMIN_SECRET_ARN', stateful.warehouse.secret);
    if (stateful.warehouse.hasRoles) {
      const roles = stateful.warehouse.roleSecrets;
      this.migrate
        .bindSecret('WAREHOUSE_OWNER_SECRET_ARN', roles.owner)
        .bindSecret('WAREHOUSE_LOAD_SECRET_ARN', roles.load)
        .bindSecret('WAREHOUSE_REPORTING_SECRET_ARN', roles.reporting);
    }
    // Runs during the deployment, synchronously, whenever the function changed (a new migration);
    // a failure fails the deployment. Load is updated only after it: new code never meets an old schema.
    // https://docs.aws.amazon.com/cdk/api/v2/docs/aws-cdk-lib.triggers-readme.html
    new triggers.Trigger(this, 'MigrateOnDeploy', {
      handler: this.migrate.function,
      executeOnHandlerChange: true,
      executeBefore: [this.load],
      timeout: Duration.minutes(14),
    });
    this.load.function.addEventSource(
      new lambdaEvents.SqsEventSource(this.loadQueue, {
        // Objects load one after another in an invocation; ten amortise the cold start and the
        // connection, and stay far inside the timeout (a 10,000-row object loads in about 1.5 s).
        batchSize: 10,
        // Only the messages whose object failed return to the queue.
        reportBatchItemFailures: true,
        // Invocations at once = warehouse connections. The mapping stops polling at this limit, so
        // nothing is throttled and no receive is wasted; no reserved concurrency is needed.
        maxConcurrency: config.load.maxConcurrency,
      }),
    );

    // Configured from here, on the imported buckets, so that the stateful stack never depends on the
    // functions (a notification there would point at this stack's functions: a dependency cycle).
    ingestion.addEventNotification(
      s3.EventType.OBJECT_CREATED,
      new s3n.LambdaDestination(this.transform.function),
      {
        prefix: `${INGESTION_ROOT}/`,
      },
    );
    processed.addEventNotification(s3.EventType.OBJECT_CREATED, new s3n.SqsDestination(this.loadQueue), {
      suffix: LOAD_TRIGGER_SUFFIX,
    });

    // Without RDS' own slot metrics, the reconciler measures the slot on the source itself
    // (processors/reconcile/source-slot.ts): it needs the source secret and a way to the source.
    const slotFromReconciler = config.alarms.sourceRdsInstanceId === null;
    const reconcileSecurityGroups = [...inVpc.securityGroups];
    if (slotFromReconciler) {
      const sourceEgress = new ec2.SecurityGroup(this, 'ReconcileSourceEgress', {
        vpc: stateful.vpc,
        description: 'totes reconcile: the source database (its replication slot)',
        allowAllOutbound: false,
      });
      sourceEgress.addEgressRule(
        ec2.Peer.ipv4(config.source.cidr),
        ec2.Port.tcp(config.source.port),
        'the source database',
      );
      reconcileSecurityGroups.push(sourceEgress);
    }
    this.reconcile = new PipelineFunction(this, 'Reconcile', {
      ...common,
      entry: entries.reconcile,
      stage: STAGES.reconcile,
      description: 'totes: find objects a stage never finished and send them through it again',
      memorySizeMiB: 512,
      // Listings of a few days and a few thousand keys: seconds; a dead-letter redrive, minutes.
      timeout: Duration.minutes(10),
      environment: {
        ...trustRds,
        RECONCILE_GRACE_SECONDS: '900',
        RECONCILE_LOOKBACK_DAYS: '3',
      },
      network: { ...inVpc, securityGroups: reconcileSecurityGroups },
    })
      // Lists both buckets; HEADs (GetObject) objects and reads transform's quarantine pointers.
      .bindBucket('INGESTION_BUCKET', ingestion, { get: [`${INGESTION_ROOT}/*`], list: true })
      .bindBucket('PROCESSED_BUCKET', processed, { get: ['*'], list: true })
      .bindQueue('LOAD_QUEUE_URL', this.loadQueue, ['sqs:SendMessage', 'sqs:GetQueueAttributes'])
      .bindQueue('LOAD_DEAD_LETTER_QUEUE_URL', this.loadDeadLetterQueue, [
        'sqs:ReceiveMessage',
        'sqs:DeleteMessage',
      ])
      .bindQueue('TRANSFORM_DEAD_LETTER_QUEUE_URL', this.transform.deadLetterQueue!, [
        'sqs:ReceiveMessage',
        'sqs:DeleteMessage',
      ])
      .bindFunction('TRANSFORM_FUNCTION_NAME', this.transform.function)
      // totes_reporting: it only reads load_log.
      .bindSecret('WAREHOUSE_SECRET_ARN', stateful.warehouse.roleSecrets.reporting);
    if (slotFromReconciler) {
      this.reconcile.bindSecret('SOURCE_SECRET_ARN', stateful.sourceSecret);
      this.reconcile.function.addEnvironment('SOURCE_SLOT', config.capture.slot);
      // TLS to the source as capture's (a sslmode in a URL secret overrides it).
      this.reconcile.function.addEnvironment('PGSSLMODE', config.source.sslMode);
    }
    new events.Rule(this, 'ReconcileSchedule', {
      description: 'totes: run the reconciler',
      schedule: events.Schedule.rate(Duration.minutes(config.reconcile.intervalMinutes)),
      targets: [
        new targets.LambdaFunction(this.reconcile.function, {
          event: events.RuleTargetInput.fromObject({}),
          // The next run comes soon enough; a failed run shows in the alarms.
          retryAttempts: 0,
        }),
      ],
    });

    this.observability = new Observability(this, 'Observability', {
      alarms: config.alarms,
      capture: this.capture,
      stream: stateful.stream,
      deliveryStream: this.deliveryStream,
      bufferIntervalSeconds: config.firehose.bufferIntervalSeconds,
      firehoseTransform: this.firehoseTransform,
      transform: this.transform,
      load: this.load,
      loadQueue: this.loadQueue,
      loadDeadLetterQueue: this.loadDeadLetterQueue,
      reconcile: this.reconcile,
      reconcileIntervalMinutes: config.reconcile.intervalMinutes,
      slotFromReconciler,
      migrate: this.migrate,
      warehouse: stateful.warehouse,
      warehouseBurstable: config.warehouse.mode === 'create' && config.warehouse.instanceType.startsWith('t'),
    });

    // What an operator needs to find (docs/deploy.md uses them).
    const outputs: Record<string, string> = {
      CaptureClusterName: this.capture.cluster.clusterName,
      CaptureServiceName: this.capture.service.serviceName,
      CaptureLogGroupName: this.capture.logGroup.logGroupName,
      DeliveryStreamName: this.deliveryStream.deliveryStreamName,
      TransformFunctionName: this.transform.function.functionName,
      LoadFunctionName: this.load.function.functionName,
      TransformDeadLetterQueueUrl: this.transform.deadLetterQueue!.queueUrl,
      LoadQueueUrl: this.loadQueue.queueUrl,
      LoadDeadLetterQueueUrl: this.loadDeadLetterQueue.queueUrl,
      ReconcileFunctionName: this.reconcile.function.functionName,
      MigrateFunctionName: this.migrate.function.functionName,
      AlarmTopicArn: this.observability.topic.topicArn,
      DashboardName: this.observability.dashboard.dashboardName,
    };
    for (const [id, value] of Object.entries(outputs)) new CfnOutput(this, id, { value });

    this.suppressCdkInternals();
  }

  /** Findings on resources the CDK itself adds, each with the reason it is acceptable. */
  private suppressCdkInternals(): void {
    const handler = this.node.children.find((c) => c.node.id.startsWith('BucketNotificationsHandler'));
    if (!handler) return;
    acknowledge(
      handler,
      'AwsSolutions-IAM4',
      "The CDK's bucket-notification handler logs with AWSLambdaBasicExecutionRole; it runs only during deployment.",
      ['Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole'],
    );
  }
}
