import fs from 'node:fs';
import path from 'node:path';
import { Match, type Template } from 'aws-cdk-lib/assertions';
import { INGESTION_ERROR_PREFIX, INGESTION_PREFIX } from '../core/csv-codec';
import { HANDLER_ENTRIES } from './stacks/pipeline-stack';
import {
  logicalId,
  missingHandlers,
  render,
  roleGrants,
  synthTotes,
  type SynthesizedTotes,
} from './test-support/synth';

// One synthesis of the whole app (as `cdk synth` does it) for the file.
let synth: SynthesizedTotes;
let template: Template;
beforeAll(() => {
  synth = synthTotes({
    'totes:sourceCidr': '10.20.0.0/16',
    'totes:alarmEmail': 'data@example.com',
    'totes:maxCaptureLagSeconds': 90,
    'totes:sourceRdsInstanceId': 'totesys-db',
  });
  template = synth.pipeline;
});
afterAll(() => synth?.cleanup());

const INGESTION = 'arn:<AWS::Partition>:s3:::totes-ingestion-<AWS::AccountId>-<AWS::Region>';
const PROCESSED = 'arn:<AWS::Partition>:s3:::totes-processed-<AWS::AccountId>-<AWS::Region>';
const grant = (action: string, resource: string) => `${action} ${resource}`;
/** A grant on a resource the stateful stack outputs (its output name ends in a hash). */
const grantOnOutput = (action: string, output: RegExp) =>
  expect.stringMatching(new RegExp(`^${action} <Totes-Stateful:PublishOutput${output.source}`));

const fnLogicalId = (prefix: string) => logicalId(template, 'AWS::Lambda::Function', `${prefix}Function`);
const roleOf = (functionPrefix: string) =>
  template.findResources('AWS::Lambda::Function')[fnLogicalId(functionPrefix)].Properties.Role[
    'Fn::GetAtt'
  ][0];

describe('pipeline stack: capture service', () => {
  it('runs one task at most, never two at once; a failing one fails its deployment without an ECS rollback', () => {
    // No source secret named: the stack creates an empty one, so capture starts switched off.
    template.hasResourceProperties('AWS::ECS::Service', {
      DesiredCount: 0,
      LaunchType: 'FARGATE',
      DeploymentConfiguration: {
        MaximumPercent: 100,
        MinimumHealthyPercent: 0,
        DeploymentCircuitBreaker: { Enable: true, Rollback: false },
      },
      NetworkConfiguration: { AwsvpcConfiguration: Match.objectLike({ AssignPublicIp: 'DISABLED' }) },
    });
    template.hasResourceProperties('AWS::ECS::Cluster', {
      ClusterSettings: [{ Name: 'containerInsights', Value: 'enabled' }],
    });
  });

  it('is created once Firehose reads the stream, and deleted before it (Firehose starts at LATEST)', () => {
    const [service] = Object.values(template.findResources('AWS::ECS::Service'));
    const deliveryStream = logicalId(template, 'AWS::KinesisFirehose::DeliveryStream', 'DeliveryStream');

    expect(service.DependsOn).toContain(deliveryStream);
  });

  it('runs the image built from capture/Dockerfile with the settings capture/config.ts reads', () => {
    const task = Object.values(template.findResources('AWS::ECS::TaskDefinition'))[0];
    const container = task.Properties.ContainerDefinitions[0];
    const env = Object.fromEntries(
      container.Environment.map((e: { Name: string; Value: unknown }) => [e.Name, render(e.Value)]),
    );

    expect(task.Properties).toMatchObject({
      Cpu: '512',
      Memory: '1024',
      RequiresCompatibilities: ['FARGATE'],
    });
    expect(env).toEqual({
      TOTES_SOURCE_SECRET_ARN: expect.stringMatching(/^<Totes-Stateful:PublishOutputRefSourceSecret/),
      TOTES_STREAM_NAME: expect.stringMatching(/^<Totes-Stateful:PublishOutputRefChangeStream/),
      TOTES_STATE_S3_URI:
        's3://totes-ingestion-<AWS::AccountId>-<AWS::Region>/_capture-state/totes_slot.json',
      TOTES_OVERSIZED_BUCKET: 'totes-ingestion-<AWS::AccountId>-<AWS::Region>',
      TOTES_HEARTBEAT_INTERVAL_MS: '10000',
      TOTES_TABLES:
        'address,currency,department,design,payment_type,counterparty,staff,sales_order,purchase_order,transaction,payment',
      TOTES_SLOT: 'totes_slot',
      TOTES_PUBLICATION: 'totes_pub',
      AWS_REGION: '<AWS::Region>',
      PGSSLMODE: 'verify-full',
    });
    expect(container).toMatchObject({ ReadonlyRootFilesystem: true, StopTimeout: 60 });
    expect(container.Secrets).toBeUndefined();
    expect(container.LogConfiguration.LogDriver).toBe('awslogs');

    // Staged for `cdk deploy` to build: synthesis itself never runs Docker.
    const assets = JSON.parse(fs.readFileSync(path.join(synth.outdir, 'Totes-Pipeline.assets.json'), 'utf8'));
    const [imageAsset] = Object.values(assets.dockerImages);
    expect(imageAsset).toMatchObject({
      source: { dockerFile: 'capture/Dockerfile', platform: 'linux/amd64' },
    });
  });

  it('reaches only the source database port and HTTPS', () => {
    const groups = template.findResources('AWS::EC2::SecurityGroup');
    const capture = Object.values(groups).find((g) => /totes capture/.test(g.Properties.GroupDescription))!;

    expect(capture.Properties.SecurityGroupEgress).toEqual([
      expect.objectContaining({ CidrIp: '10.20.0.0/16', FromPort: 5432, ToPort: 5432, IpProtocol: 'tcp' }),
      expect.objectContaining({ CidrIp: '0.0.0.0/0', FromPort: 443, ToPort: 443, IpProtocol: 'tcp' }),
    ]);
    expect(capture.Properties.SecurityGroupIngress).toBeUndefined();
  });

  it('task role: put records on the stream, its own state object, oversized changes, the source secret; nothing else', () => {
    const role = logicalId(template, 'AWS::IAM::Role', 'CaptureTaskTaskRole');

    expect(roleGrants(template, role)).toEqual([
      grantOnOutput('kinesis:DescribeStreamSummary', /FnGetAttChangeStream.*Arn/),
      grantOnOutput('kinesis:PutRecords', /FnGetAttChangeStream.*Arn/),
      grant('s3:DeleteObject', `${INGESTION}/_capture-state/totes_slot.json`),
      grant('s3:GetObject', `${INGESTION}/_capture-state/totes_slot.json`),
      grant('s3:ListBucket', INGESTION),
      grant('s3:PutObject', `${INGESTION}/_capture-state/totes_slot.json`),
      // Write only, and only under oversized/ (capture/oversized-sink.ts).
      grant('s3:PutObject', `${INGESTION}/oversized/*`),
      grantOnOutput('secretsmanager:DescribeSecret', /RefSourceSecret/),
      grantOnOutput('secretsmanager:GetSecretValue', /RefSourceSecret/),
    ]);
  });
});

describe('pipeline stack: Firehose delivery stream', () => {
  it('reads the change stream and writes partitioned CSV with the shared prefixes', () => {
    template.hasResourceProperties('AWS::KinesisFirehose::DeliveryStream', {
      DeliveryStreamType: 'KinesisStreamAsSource',
      ExtendedS3DestinationConfiguration: Match.objectLike({
        Prefix: INGESTION_PREFIX,
        ErrorOutputPrefix: INGESTION_ERROR_PREFIX,
        FileExtension: '.csv',
        CompressionFormat: 'UNCOMPRESSED',
        BufferingHints: { IntervalInSeconds: 60, SizeInMBs: 64 },
        DynamicPartitioningConfiguration: { Enabled: true, RetryOptions: { DurationInSeconds: 300 } },
        CloudWatchLoggingOptions: Match.objectLike({ Enabled: true }),
        ProcessingConfiguration: {
          Enabled: true,
          Processors: [
            {
              Type: 'Lambda',
              Parameters: Match.arrayWith([
                {
                  ParameterName: 'LambdaArn',
                  ParameterValue: { 'Fn::GetAtt': [fnLogicalId('FirehoseTransform'), 'Arn'] },
                },
                { ParameterName: 'BufferSizeInMBs', ParameterValue: '0.25' },
              ]),
            },
          ],
        },
      }),
    });
  });

  it('role: read the stream, invoke the transformation, write the data and error prefixes only', () => {
    const role = logicalId(template, 'AWS::IAM::Role', 'DeliveryStreamRole');

    const logs = Object.keys(template.findResources('AWS::Logs::LogGroup')).find((id) =>
      id.startsWith('DeliveryStreamLogs'),
    );

    expect(roleGrants(template, role)).toEqual([
      grantOnOutput('kinesis:DescribeStream', /FnGetAttChangeStream.*Arn/),
      grantOnOutput('kinesis:GetRecords', /FnGetAttChangeStream.*Arn/),
      grantOnOutput('kinesis:GetShardIterator', /FnGetAttChangeStream.*Arn/),
      grantOnOutput('kinesis:ListShards', /FnGetAttChangeStream.*Arn/),
      grant('lambda:GetFunctionConfiguration', `<${fnLogicalId('FirehoseTransform')}.Arn>`),
      grant('lambda:InvokeFunction', `<${fnLogicalId('FirehoseTransform')}.Arn>`),
      grant('logs:PutLogEvents', `<${logs}.Arn>`),
      grant('s3:AbortMultipartUpload', `${INGESTION}/errors/*`),
      grant('s3:AbortMultipartUpload', `${INGESTION}/totesys/*`),
      grant('s3:GetBucketLocation', INGESTION),
      grant('s3:GetObject', `${INGESTION}/errors/*`),
      grant('s3:GetObject', `${INGESTION}/totesys/*`),
      grant('s3:ListBucket', INGESTION),
      grant('s3:ListBucketMultipartUploads', INGESTION),
      grant('s3:PutObject', `${INGESTION}/errors/*`),
      grant('s3:PutObject', `${INGESTION}/totesys/*`),
    ]);
    template.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: {
        Statement: [
          Match.objectLike({
            Principal: { Service: 'firehose.amazonaws.com' },
            Condition: { StringEquals: { 'sts:ExternalId': { Ref: 'AWS::AccountId' } } },
          }),
        ],
      },
    });
  });
});

describe('pipeline stack: functions', () => {
  it.each([
    ['FirehoseTransform', 512, 60],
    ['Transform', 3008, 900],
    ['Load', 1024, 300],
  ])('%s: newest Node runtime, arm64, %i MB, %i s, its own log group', (name, memory, timeout) => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs24.x',
      Architectures: ['arm64'],
      MemorySize: memory,
      Timeout: timeout,
      Handler: 'index.handler',
      LoggingConfig: { LogGroup: { Ref: Match.stringLikeRegexp(`^${name}Logs`) } },
      Role: { 'Fn::GetAtt': [Match.stringLikeRegexp(`^${name}Role`), 'Arn'] },
    });
  });

  it('gives only the load larger V8 semi-spaces (its 10,000-row parts outlive the default); source maps everywhere', () => {
    const nodeOptions = (prefix: string) =>
      template.findResources('AWS::Lambda::Function')[fnLogicalId(prefix)].Properties.Environment.Variables
        .NODE_OPTIONS;
    expect(nodeOptions('Load')).toBe('--enable-source-maps --max-semi-space-size=32');
    for (const prefix of ['FirehoseTransform', 'Transform', 'Reconcile', 'Migrate'])
      expect(nodeOptions(prefix)).toBe('--enable-source-maps');
  });

  it('tells each function exactly the resources it may use', () => {
    const env = (prefix: string) =>
      template.findResources('AWS::Lambda::Function')[fnLogicalId(prefix)].Properties.Environment.Variables;

    expect(render(env('FirehoseTransform').INGESTION_BUCKET)).toBe(
      'totes-ingestion-<AWS::AccountId>-<AWS::Region>',
    );
    expect(render(env('Transform').PROCESSED_BUCKET)).toBe('totes-processed-<AWS::AccountId>-<AWS::Region>');
    expect(render(env('Load').WAREHOUSE_SECRET_ARN)).toMatch(/WarehouseLoadSecretAttachment/);
    // For ChangeMessageVisibility after a busy warehouse (the event source's grant allows it).
    expect(env('Load').LOAD_MAX_RECEIVE_COUNT).toBe('100');
    expect(env('Load').LOAD_QUEUE_URL).toEqual({ Ref: logicalId(template, 'AWS::SQS::Queue', 'LoadQueue') });
    expect(render(env('Reconcile').WAREHOUSE_SECRET_ARN)).toMatch(/WarehouseReportingSecretAttachment/);
    expect(
      Object.keys(env('Migrate'))
        .filter((k) => /SECRET/.test(k))
        .sort(),
    ).toEqual([
      'WAREHOUSE_ADMIN_SECRET_ARN',
      'WAREHOUSE_LOAD_SECRET_ARN',
      'WAREHOUSE_OWNER_SECRET_ARN',
      'WAREHOUSE_REPORTING_SECRET_ARN',
    ]);
    expect(render(env('Migrate').WAREHOUSE_ADMIN_SECRET_ARN)).toMatch(/WarehouseInstanceSecret/);
    expect(env('Load').NODE_EXTRA_CA_CERTS).toBe('/var/runtime/ca-cert.pem');
    for (const prefix of ['FirehoseTransform', 'Transform', 'Load'])
      expect(Object.keys(env(prefix)).filter((k) => /BUCKET|SECRET/.test(k))).toHaveLength(1);
  });

  it('feeds load from the load queue: batches of 10, partial batch responses, at most 5 at once, in the VPC', () => {
    const load = template.findResources('AWS::Lambda::Function')[fnLogicalId('Load')].Properties;
    const groups = load.VpcConfig.SecurityGroupIds.map(render);

    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: fnLogicalId('Load') },
      EventSourceArn: { 'Fn::GetAtt': [logicalId(template, 'AWS::SQS::Queue', 'LoadQueue'), 'Arn'] },
      BatchSize: 10,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      ScalingConfig: { MaximumConcurrency: 5 },
    });
    // No function reserves concurrency: new accounts have none to spare (a limit of 10).
    template.allResourcesProperties('AWS::Lambda::Function', {
      ReservedConcurrentExecutions: Match.absent(),
    });
    expect(groups).toEqual([
      expect.stringMatching(/^<Totes-Stateful:PublishOutputFnGetAttWarehouseClientSecurityGroup/),
      expect.stringMatching(/^<LoadHttpsEgress.*\.GroupId>$/),
    ]);
    expect(load.VpcConfig.SubnetIds.map(render)).toEqual([
      expect.stringMatching(/Vpcprivate/),
      expect.stringMatching(/Vpcprivate/),
    ]);
  });

  it('keeps load messages 14 days, hidden 6x the load timeout, and dead-letters them after 100 receives', () => {
    const loadQueue = logicalId(template, 'AWS::SQS::Queue', 'LoadQueue');
    const loadDlq = logicalId(template, 'AWS::SQS::Queue', 'LoadDeadLetterQueue');

    template.hasResourceProperties('AWS::SQS::Queue', {
      VisibilityTimeout: 6 * 300,
      MessageRetentionPeriod: 1209600,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [loadDlq, 'Arn'] }, maxReceiveCount: 100 },
    });
    expect(Object.keys(template.findResources('AWS::SQS::Queue')).sort()).toEqual(
      [loadDlq, loadQueue, logicalId(template, 'AWS::SQS::Queue', 'TransformDeadLetterQueue')].sort(),
    );
    template.allResourcesProperties('AWS::SQS::Queue', {
      SqsManagedSseEnabled: true,
      MessageRetentionPeriod: 1209600,
    });
  });

  it('sends transform S3 events that failed every retry to its dead-letter queue', () => {
    template.resourceCountIs('AWS::Lambda::EventInvokeConfig', 1);
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: fnLogicalId('Transform') },
      MaximumRetryAttempts: 2,
      MaximumEventAgeInSeconds: 21600,
      DestinationConfig: {
        OnFailure: {
          Destination: { 'Fn::GetAtt': [Match.stringLikeRegexp('^TransformDeadLetterQueue'), 'Arn'] },
        },
      },
    });
  });

  const logsOf = (name: string) =>
    `<${Object.keys(template.findResources('AWS::Logs::LogGroup')).find((id) => id.startsWith(`${name}Logs`))}.Arn>`;
  /** What Lambda needs to join the VPC (no resource-level permissions exist for these). */
  const joinVpc = [
    'ec2:AssignPrivateIpAddresses',
    'ec2:CreateNetworkInterface',
    'ec2:DeleteNetworkInterface',
    'ec2:DescribeNetworkInterfaces',
    'ec2:DescribeSubnets',
    'ec2:UnassignPrivateIpAddresses',
  ].map((action) => grant(action, '*'));
  const queueOf = (prefix: string) => `<${logicalId(template, 'AWS::SQS::Queue', prefix)}.Arn>`;
  const dlqOf = (name: string) =>
    `<${Object.keys(template.findResources('AWS::SQS::Queue')).find((id) => id.startsWith(`${name}DeadLetterQueue`))}.Arn>`;

  it('firehose-transform role: HEAD/PUT schema objects and list the bucket; nothing else', () => {
    expect(roleGrants(template, roleOf('FirehoseTransform'))).toEqual([
      grant('logs:CreateLogStream', logsOf('FirehoseTransform')),
      grant('logs:PutLogEvents', logsOf('FirehoseTransform')),
      grant('s3:GetObject', `${INGESTION}/_schemas/*`),
      grant('s3:ListBucket', INGESTION),
      grant('s3:PutObject', `${INGESTION}/_schemas/*`),
    ]);
  });

  it('transform role: read ingested CSV, schemas and oversized changes, HEAD/PUT the processed bucket, its DLQ', () => {
    expect(roleGrants(template, roleOf('Transform'))).toEqual([
      grant('logs:CreateLogStream', logsOf('Transform')),
      grant('logs:PutLogEvents', logsOf('Transform')),
      grant('s3:GetObject', `${INGESTION}/_schemas/*`),
      grant('s3:GetObject', `${INGESTION}/oversized/*`),
      grant('s3:GetObject', `${INGESTION}/totesys/*`),
      grant('s3:GetObject', `${PROCESSED}/*`),
      // A missing schema object or oversized event answers 404 (quarantined), not 403 (retried).
      grant('s3:ListBucket', INGESTION),
      grant('s3:ListBucket', PROCESSED),
      grant('s3:PutObject', `${PROCESSED}/*`),
      grant('sqs:GetQueueAttributes', dlqOf('Transform')),
      grant('sqs:GetQueueUrl', dlqOf('Transform')),
      grant('sqs:SendMessage', dlqOf('Transform')),
    ]);
  });

  it('load role: read processed objects, write its quarantine, read the warehouse secret, join the VPC', () => {
    expect(roleGrants(template, roleOf('Load'))).toEqual([
      ...joinVpc,
      grant('logs:CreateLogStream', logsOf('Load')),
      grant('logs:PutLogEvents', logsOf('Load')),
      grant('s3:GetObject', `${PROCESSED}/*`),
      grant('s3:ListBucket', PROCESSED),
      grant('s3:PutObject', `${PROCESSED}/quarantine/load/*`),
      // totes_load's secret: not the master user's.
      grantOnOutput('secretsmanager:DescribeSecret', /RefWarehouseLoadSecretAttachment/),
      grantOnOutput('secretsmanager:GetSecretValue', /RefWarehouseLoadSecretAttachment/),
      grant('sqs:ChangeMessageVisibility', queueOf('LoadQueue')),
      grant('sqs:DeleteMessage', queueOf('LoadQueue')),
      grant('sqs:GetQueueAttributes', queueOf('LoadQueue')),
      grant('sqs:GetQueueUrl', queueOf('LoadQueue')),
      grant('sqs:ReceiveMessage', queueOf('LoadQueue')),
    ]);
  });

  it('reconcile role: list and HEAD both buckets, send to the load queue, take dead letters, invoke transform', () => {
    expect(roleGrants(template, roleOf('Reconcile'))).toEqual([
      ...joinVpc,
      grant('lambda:InvokeFunction', `<${fnLogicalId('Transform')}.Arn>`),
      grant('logs:CreateLogStream', logsOf('Reconcile')),
      grant('logs:PutLogEvents', logsOf('Reconcile')),
      grant('s3:GetObject', `${INGESTION}/totesys/*`),
      grant('s3:GetObject', `${PROCESSED}/*`),
      grant('s3:ListBucket', INGESTION),
      grant('s3:ListBucket', PROCESSED),
      grantOnOutput('secretsmanager:DescribeSecret', /RefWarehouseReportingSecretAttachment/),
      grantOnOutput('secretsmanager:GetSecretValue', /RefWarehouseReportingSecretAttachment/),
      grant('sqs:DeleteMessage', queueOf('LoadDeadLetterQueue')),
      grant('sqs:DeleteMessage', queueOf('TransformDeadLetterQueue')),
      grant('sqs:GetQueueAttributes', queueOf('LoadQueue')),
      grant('sqs:ReceiveMessage', queueOf('LoadDeadLetterQueue')),
      grant('sqs:ReceiveMessage', queueOf('TransformDeadLetterQueue')),
      grant('sqs:SendMessage', queueOf('LoadQueue')),
    ]);
  });

  it('runs the reconciler every 15 minutes, in the VPC, told where everything is', () => {
    const reconcile = template.findResources('AWS::Lambda::Function')[fnLogicalId('Reconcile')].Properties;
    const env = Object.fromEntries(
      Object.entries(reconcile.Environment.Variables as Record<string, unknown>).map(([k, v]) => [
        k,
        render(v),
      ]),
    );

    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(15 minutes)',
      State: 'ENABLED',
      Targets: [
        Match.objectLike({
          Arn: { 'Fn::GetAtt': [fnLogicalId('Reconcile'), 'Arn'] },
          Input: '{}',
          RetryPolicy: { MaximumRetryAttempts: 0 },
        }),
      ],
    });
    expect(env).toMatchObject({
      INGESTION_BUCKET: 'totes-ingestion-<AWS::AccountId>-<AWS::Region>',
      PROCESSED_BUCKET: 'totes-processed-<AWS::AccountId>-<AWS::Region>',
      LOAD_QUEUE_URL: `<${logicalId(template, 'AWS::SQS::Queue', 'LoadQueue')}>`,
      LOAD_DEAD_LETTER_QUEUE_URL: `<${logicalId(template, 'AWS::SQS::Queue', 'LoadDeadLetterQueue')}>`,
      TRANSFORM_DEAD_LETTER_QUEUE_URL: `<${logicalId(template, 'AWS::SQS::Queue', 'TransformDeadLetterQueue')}>`,
      TRANSFORM_FUNCTION_NAME: `<${fnLogicalId('Transform')}>`,
      RECONCILE_GRACE_SECONDS: '900',
      RECONCILE_LOOKBACK_DAYS: '3',
    });
    expect(reconcile.VpcConfig.SecurityGroupIds).toHaveLength(2);
  });

  it('migrates in a deploy step of its own, before load is updated, whenever a migration changes', () => {
    const trigger = Object.entries(template.findResources('Custom::Trigger'));
    expect(trigger).toHaveLength(1);
    const [id, resource] = trigger[0];
    const migrate = template.findResources('AWS::Lambda::Function')[fnLogicalId('Migrate')].Properties;

    // The function's current version: a changed function is a new version, which runs the trigger again.
    expect(render(resource.Properties.HandlerArn)).toMatch(/^<MigrateFunctionCurrentVersion/);
    // Load (its function and event source) waits for the trigger.
    expect(template.findResources('AWS::Lambda::Function')[fnLogicalId('Load')].DependsOn).toContain(id);
    expect(migrate.Environment.Variables.TOTES_MIGRATIONS).toMatch(/^[0-9a-f]{64}$/);
    expect(migrate.Timeout).toBe(14 * 60);
    expect(migrate.VpcConfig.SecurityGroupIds).toHaveLength(2);
  });

  it('migrate role: the four warehouse secrets (master included) and nothing in the buckets', () => {
    const grants = roleGrants(template, roleOf('Migrate'));

    expect(grants.filter((g) => g.startsWith('secretsmanager:GetSecretValue'))).toEqual([
      expect.stringMatching(/WarehouseInstanceSecret/),
      expect.stringMatching(/WarehouseLoadSecretAttachment/),
      expect.stringMatching(/WarehouseOwnerSecretAttachment/),
      expect.stringMatching(/WarehouseReportingSecretAttachment/),
    ]);
    expect(grants.filter((g) => /^(s3|sqs|lambda):/.test(g))).toEqual([]);
    // No function but migrate may read the master user's secret.
    for (const name of ['FirehoseTransform', 'Transform', 'Load', 'Reconcile'])
      expect(roleGrants(template, roleOf(name)).join('\n')).not.toMatch(/WarehouseInstanceSecret/);
  });

  it(`points every function at a handler module that exists (${Object.values(HANDLER_ENTRIES).join(', ')})`, () => {
    expect(missingHandlers()).toEqual([]);
  });
});

describe('pipeline stack: IAM as a whole', () => {
  const policies = () => Object.values(template.findResources('AWS::IAM::Policy'));
  const statements = () =>
    policies().flatMap((p) => [p.Properties.PolicyDocument.Statement].flat()) as {
      Action: string | string[];
      Resource: unknown;
    }[];

  it('has no wildcard action anywhere', () => {
    const actions = statements().flatMap((s) => [s.Action].flat());

    expect(actions.length).toBeGreaterThan(20);
    expect(actions.filter((a) => a.includes('*'))).toEqual([]);
  });

  it('uses Resource "*" only for actions that have no resource-level permissions', () => {
    const onStar = statements()
      .filter((s) => [s.Resource].flat().includes('*'))
      .flatMap((s) => [s.Action].flat());

    expect([...new Set(onStar)].sort()).toEqual([
      'ec2:AssignPrivateIpAddresses',
      'ec2:CreateNetworkInterface',
      'ec2:DeleteNetworkInterface',
      'ec2:DescribeNetworkInterfaces',
      'ec2:DescribeSubnets',
      'ec2:UnassignPrivateIpAddresses',
      'ecr:GetAuthorizationToken',
    ]);
  });

  it('grants nothing on the data buckets beyond single object actions, ListBucket and notifications', () => {
    const onBuckets = statements()
      .filter((s) => [s.Resource].flat().some((r) => /totes-(ingestion|processed)-/.test(render(r))))
      .flatMap((s) => [s.Action].flat());

    expect([...new Set(onBuckets)].sort()).toEqual([
      's3:AbortMultipartUpload',
      's3:DeleteObject',
      's3:GetBucketLocation',
      's3:GetBucketNotification',
      's3:GetObject',
      's3:ListBucket',
      's3:ListBucketMultipartUploads',
      's3:PutBucketNotification',
      's3:PutObject',
    ]);
  });
});

describe('pipeline stack: S3 triggers', () => {
  const notifications = () =>
    Object.values(template.findResources('Custom::S3BucketNotifications')).map((r) => ({
      bucket: render(r.Properties.BucketName),
      configs: r.Properties.NotificationConfiguration.LambdaFunctionConfigurations,
      managed: r.Properties.Managed,
    }));

  it('starts transform for objects created under totesys/ in the ingestion bucket', () => {
    expect(notifications()).toContainEqual({
      bucket: 'totes-ingestion-<AWS::AccountId>-<AWS::Region>',
      configs: [
        {
          Events: ['s3:ObjectCreated:*'],
          Filter: { Key: { FilterRules: [{ Name: 'prefix', Value: 'totesys/' }] } },
          LambdaFunctionArn: { 'Fn::GetAtt': [fnLogicalId('Transform'), 'Arn'] },
        },
      ],
      managed: false,
    });
  });

  it('queues Parquet objects created in the processed bucket for load; only S3 may send there', () => {
    const loadQueue = logicalId(template, 'AWS::SQS::Queue', 'LoadQueue');
    const processed = Object.values(template.findResources('Custom::S3BucketNotifications')).find((r) =>
      render(r.Properties.BucketName).startsWith('totes-processed-'),
    )!;

    expect(processed.Properties.NotificationConfiguration).toEqual({
      QueueConfigurations: [
        {
          Events: ['s3:ObjectCreated:*'],
          Filter: { Key: { FilterRules: [{ Name: 'suffix', Value: '.parquet' }] } },
          QueueArn: { 'Fn::GetAtt': [loadQueue, 'Arn'] },
        },
      ],
    });
    template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      Queues: [{ Ref: loadQueue }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Allow',
            Principal: { Service: 's3.amazonaws.com' },
            Action: Match.arrayWith(['sqs:SendMessage']),
            Condition: { ArnLike: { 'aws:SourceArn': Match.anyValue() } },
          }),
        ]),
      },
    });
  });

  it('lets only S3 in this account invoke transform', () => {
    template.hasResourceProperties('AWS::Lambda::Permission', {
      FunctionName: { 'Fn::GetAtt': [fnLogicalId('Transform'), 'Arn'] },
      Principal: 's3.amazonaws.com',
      SourceAccount: { Ref: 'AWS::AccountId' },
    });
  });
});

describe('pipeline stack: alarms and dashboard', () => {
  const topic = () => logicalId(template, 'AWS::SNS::Topic', 'ObservabilityAlarmTopic');
  const alarms = () => template.findResources('AWS::CloudWatch::Alarm');

  it('sends every alarm, and its recovery, to the topic', () => {
    const all = Object.values(alarms());

    expect(all.length).toBeGreaterThanOrEqual(19);
    for (const alarm of all) {
      expect(alarm.Properties.AlarmActions).toEqual([{ Ref: topic() }]);
      expect(alarm.Properties.OKActions).toEqual([{ Ref: topic() }]);
      expect(alarm.Properties.AlarmDescription).toEqual(expect.any(String));
    }
  });

  it('emails the topic to the configured address, over TLS only', () => {
    template.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'data@example.com',
      TopicArn: { Ref: topic() },
    });
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
  });

  it('lets CloudWatch publish to the topic, for this account’s alarms only (the policy replaces SNS’s default)', () => {
    const policies = Object.values(template.findResources('AWS::SNS::TopicPolicy'));
    expect(policies).toHaveLength(1);
    const [policy] = policies;
    const statements = policy.Properties.PolicyDocument.Statement as {
      Effect: string;
      Condition: Record<string, Record<string, unknown>>;
    }[];

    expect(policy.Properties.Topics).toEqual([{ Ref: topic() }]);
    const allows = statements.filter((s) => s.Effect === 'Allow');
    expect(allows).toHaveLength(1);
    expect(allows[0]).toMatchObject({
      Principal: { Service: 'cloudwatch.amazonaws.com' },
      Action: 'sns:Publish',
      Resource: { Ref: topic() },
    });
    expect(render(allows[0].Condition.ArnLike['aws:SourceArn'])).toBe(
      'arn:<AWS::Partition>:cloudwatch:<AWS::Region>:<AWS::AccountId>:alarm:*',
    );
    expect(allows[0].Condition.StringEquals).toEqual({ 'aws:SourceAccount': { Ref: 'AWS::AccountId' } });
    // SSL is still enforced, for every principal and action, CloudWatch included.
    expect(statements).toContainEqual(
      expect.objectContaining({
        Effect: 'Deny',
        Principal: '*',
        Action: 'sns:Publish',
        Condition: { Bool: { 'aws:SecureTransport': 'false' } },
      }),
    );
  });

  const alarmOn = (metricName: string, extra: Record<string, unknown> = {}) =>
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: metricName, ...extra });

  it('watches capture: lag (threshold from context), retained WAL, running task, errors', () => {
    alarmOn('CaptureLagSeconds', { Namespace: 'Totes', Threshold: 90, Statistic: 'Maximum' });
    alarmOn('RetainedWalBytes', { Namespace: 'Totes', Threshold: 2147483648 });
    alarmOn('RunningTaskCount', {
      Namespace: 'ECS/ContainerInsights',
      ComparisonOperator: 'LessThanThreshold',
      Threshold: 1,
      TreatMissingData: 'breaching',
    });
    alarmOn('CaptureErrors', { Namespace: 'Totes' });
  });

  it("alarms on capture's recovery events, counted from the events it logs", () => {
    const filters = Object.values(template.findResources('AWS::Logs::MetricFilter')).map((f) => ({
      pattern: f.Properties.FilterPattern,
      ...f.Properties.MetricTransformations[0],
    }));
    for (const [event, metric] of [
      ['capture.slot_lost', 'SlotLost'],
      ['capture.table_not_captured', 'TablesNotCaptured'],
      ['capture.source_changed', 'SourceChanged'],
    ]) {
      expect(filters).toContainEqual(
        expect.objectContaining({
          pattern: `{ $.event = "${event}" }`,
          MetricName: metric,
          MetricValue: '1',
        }),
      );
      alarmOn(metric, {
        Namespace: 'Totes',
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      });
    }
  });

  it('makes the capture metrics from the capture.stats log lines', () => {
    const filters = Object.values(template.findResources('AWS::Logs::MetricFilter')).map((f) => ({
      pattern: f.Properties.FilterPattern,
      ...f.Properties.MetricTransformations[0],
    }));

    expect(filters).toContainEqual(
      expect.objectContaining({
        pattern: '{ ($.msg = "capture.stats") && ($.lagSeconds >= 0) }',
        MetricName: 'CaptureLagSeconds',
        MetricNamespace: 'Totes',
        MetricValue: '$.lagSeconds',
      }),
    );
    for (const field of ['retainedWalBytes', 'lagBytes', 'changesPerSecond'])
      expect(filters).toContainEqual(expect.objectContaining({ MetricValue: `$.${field}` }));
  });

  it('watches Kinesis, Firehose and every function', () => {
    alarmOn('GetRecords.IteratorAgeMilliseconds', { Namespace: 'AWS/Kinesis', Threshold: 300000 });
    alarmOn('DeliveryToS3.DataFreshness', { Namespace: 'AWS/Firehose', Threshold: 300 });
    alarmOn('ExecuteProcessing.Success', {
      Namespace: 'AWS/Firehose',
      ComparisonOperator: 'LessThanThreshold',
    });
    alarmOn('RecordsFailedTransformation', { Namespace: 'Totes' });
    for (const name of ['FirehoseTransform', 'Transform', 'Load']) {
      const fn = { Name: 'FunctionName', Value: { Ref: fnLogicalId(name) } };
      alarmOn('Errors', { Namespace: 'AWS/Lambda', Dimensions: [fn] });
      alarmOn('Duration', { Namespace: 'AWS/Lambda', Dimensions: [fn], ExtendedStatistic: 'p99' });
    }
    for (const name of ['Transform', 'Load'])
      alarmOn('ApproximateNumberOfMessagesVisible', {
        Namespace: 'AWS/SQS',
        Dimensions: [
          {
            Name: 'QueueName',
            Value: { 'Fn::GetAtt': [Match.stringLikeRegexp(`^${name}DeadLetterQueue`), 'QueueName'] },
          },
        ],
      });
  });

  it('watches quarantine and commit-to-warehouse freshness from the functions’ EMF metrics', () => {
    for (const stage of ['transform', 'load'])
      alarmOn('ObjectsQuarantined', { Namespace: 'Totes', Dimensions: [{ Name: 'Stage', Value: stage }] });
    alarmOn('ChangesRejected', { Namespace: 'Totes', Dimensions: [{ Name: 'Stage', Value: 'transform' }] });
  });

  it('alarms on freshness measured on the capture heartbeat, on the reconciler schedule, missing data breaching', () => {
    alarmOn('HeartbeatFreshness', {
      Namespace: 'Totes',
      Dimensions: [{ Name: 'Stage', Value: 'reconcile' }],
      Statistic: 'Maximum',
      Period: 900,
      Threshold: 600,
      ComparisonOperator: 'GreaterThanThreshold',
      TreatMissingData: 'breaching',
    });
    // The per-load figure stops with the loads: it is drawn, never alarmed.
    expect(
      template.findResources('AWS::CloudWatch::Alarm', { Properties: { MetricName: 'WarehouseFreshness' } }),
    ).toEqual({});
    // The reconciler that publishes it runs on a schedule.
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(15 minutes)',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [fnLogicalId('Reconcile'), 'Arn'] } })],
    });
  });

  it("watches the source's slot from RDS' metrics too (they keep coming when capture is dead), missing data breaching", () => {
    for (const metric of ['OldestReplicationSlotLag', 'TransactionLogsDiskUsage'])
      alarmOn(metric, {
        Namespace: 'AWS/RDS',
        Dimensions: [{ Name: 'DBInstanceIdentifier', Value: 'totesys-db' }],
        Threshold: 2147483648,
        TreatMissingData: 'breaching',
      });
  });

  it('watches the load queue, its dead letters, and the reconciler (a missing run breaches)', () => {
    alarmOn('ApproximateAgeOfOldestMessage', {
      Namespace: 'AWS/SQS',
      Threshold: 3600,
      Dimensions: [
        { Name: 'QueueName', Value: { 'Fn::GetAtt': [Match.stringLikeRegexp('^LoadQueue'), 'QueueName'] } },
      ],
    });
    alarmOn('ApproximateNumberOfMessagesVisible', {
      Dimensions: [
        {
          Name: 'QueueName',
          Value: { 'Fn::GetAtt': [Match.stringLikeRegexp('^LoadDeadLetterQueue'), 'QueueName'] },
        },
      ],
    });
    alarmOn('OutstandingObjects', {
      Namespace: 'Totes',
      Dimensions: [{ Name: 'Stage', Value: 'reconcile' }],
      Period: 900,
      EvaluationPeriods: 2,
      Threshold: 1,
      TreatMissingData: 'breaching',
    });
    const fn = { Name: 'FunctionName', Value: { Ref: fnLogicalId('Reconcile') } };
    alarmOn('Errors', { Namespace: 'AWS/Lambda', Dimensions: [fn] });
  });

  it('watches the warehouse: CPU credits (burstable), free storage, connections, failed migrations', () => {
    alarmOn('CPUCreditBalance', {
      Namespace: 'AWS/RDS',
      ComparisonOperator: 'LessThanThreshold',
      Threshold: 20,
    });
    alarmOn('FreeStorageSpace', {
      Namespace: 'AWS/RDS',
      ComparisonOperator: 'LessThanThreshold',
      Threshold: 2147483648,
    });
    alarmOn('DatabaseConnections', { Namespace: 'AWS/RDS', Threshold: 100 });
    alarmOn('Errors', {
      Namespace: 'AWS/Lambda',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: fnLogicalId('Migrate') } }],
    });
  });

  it('draws a dashboard of the pipeline', () => {
    const dashboard = Object.values(template.findResources('AWS::CloudWatch::Dashboard'))[0];
    const body = JSON.stringify(dashboard.Properties.DashboardBody);

    for (const metric of [
      'CaptureLagSeconds',
      'IteratorAgeMilliseconds',
      'DataFreshness',
      'WarehouseFreshness',
      'HeartbeatFreshness',
    ])
      expect(body).toContain(metric);
  });
});

describe('pipeline stack: freshness modes', () => {
  it('fast: no dynamic partitioning, zero buffering, mixed-table objects, the processor called at once', () => {
    const fast = synthTotes({ 'totes:freshness': 'fast', 'totes:firehoseBufferSizeMiB': 8 });
    try {
      const [stream] = Object.values(fast.pipeline.findResources('AWS::KinesisFirehose::DeliveryStream'));
      const destination = stream.Properties.ExtendedS3DestinationConfiguration;

      expect(destination.DynamicPartitioningConfiguration).toBeUndefined();
      expect(destination.BufferingHints).toEqual({ IntervalInSeconds: 0, SizeInMBs: 8 });
      expect(destination.Prefix).toBe('totesys/_mixed/!{timestamp:yyyy/MM/dd/HH}/');
      expect(destination.ProcessingConfiguration.Processors[0].Parameters).toContainEqual({
        ParameterName: 'BufferIntervalInSeconds',
        ParameterValue: '0',
      });
      // The processor starts each record with its layout; transform splits objects by it in memory,
      // straight into Parquet: it writes nothing to the ingestion bucket, in either mode.
      const fn = (prefix: string) =>
        fast.pipeline.findResources('AWS::Lambda::Function')[
          logicalId(fast.pipeline, 'AWS::Lambda::Function', `${prefix}Function`)
        ];
      expect(fn('FirehoseTransform').Properties.Environment.Variables.FRESHNESS_MODE).toBe('fast');
      const transformRole = fn('Transform').Properties.Role['Fn::GetAtt'][0] as string;
      const putsIntoIngestion = (grants: string[]) =>
        grants.filter((g) => g.startsWith(`s3:PutObject ${INGESTION}`));
      expect(putsIntoIngestion(roleGrants(fast.pipeline, transformRole))).toEqual([]);
      expect(putsIntoIngestion(roleGrants(template, roleOf('Transform')))).toEqual([]);
      const defaultFirehoseTransform =
        template.findResources('AWS::Lambda::Function')[fnLogicalId('FirehoseTransform')];
      expect(defaultFirehoseTransform.Properties.Environment.Variables.FRESHNESS_MODE).toBeUndefined();
    } finally {
      fast.cleanup();
    }
  });

  it('default: partitioned by table and layout, buffered for the interval, the processor within a minute', () => {
    const [stream] = Object.values(template.findResources('AWS::KinesisFirehose::DeliveryStream'));
    const destination = stream.Properties.ExtendedS3DestinationConfiguration;

    expect(destination.DynamicPartitioningConfiguration).toEqual({
      Enabled: true,
      RetryOptions: { DurationInSeconds: 300 },
    });
    expect(destination.BufferingHints).toEqual({ IntervalInSeconds: 60, SizeInMBs: 64 });
    expect(destination.ProcessingConfiguration.Processors[0].Parameters).toContainEqual({
      ParameterName: 'BufferIntervalInSeconds',
      ParameterValue: '60',
    });
  });
});

describe('pipeline stack: the slot measured from outside capture, for a source that is not RDS', () => {
  it('the reconciler reads the source secret, reaches the source port only, and its figures alarm with missing data breaching', () => {
    const plain = synthTotes({ 'totes:sourceCidr': '10.30.0.0/16', 'totes:sourcePort': 6432 });
    try {
      const t = plain.pipeline;
      const reconcileId = logicalId(t, 'AWS::Lambda::Function', 'ReconcileFunction');
      const reconcile = t.findResources('AWS::Lambda::Function')[reconcileId].Properties;
      expect(reconcile.Environment.Variables).toMatchObject({
        SOURCE_SLOT: 'totes_slot',
        PGSSLMODE: 'verify-full',
      });
      expect(reconcile.Environment.Variables.SOURCE_SECRET_ARN).toBeDefined();
      expect(roleGrants(t, reconcile.Role['Fn::GetAtt'][0])).toContainEqual(
        grantOnOutput('secretsmanager:GetSecretValue', /RefSourceSecret/),
      );
      t.hasResourceProperties('AWS::EC2::SecurityGroup', {
        GroupDescription: 'totes reconcile: the source database (its replication slot)',
        SecurityGroupEgress: [{ CidrIp: '10.30.0.0/16', FromPort: 6432, ToPort: 6432, IpProtocol: 'tcp' }],
      });
      for (const [metric, comparison] of [
        ['SourceRetainedWalBytes', 'GreaterThanThreshold'],
        ['SourceSlotActive', 'LessThanThreshold'],
      ])
        t.hasResourceProperties('AWS::CloudWatch::Alarm', {
          MetricName: metric,
          Namespace: 'Totes',
          Dimensions: [{ Name: 'Stage', Value: 'reconcile' }],
          ComparisonOperator: comparison,
          TreatMissingData: 'breaching',
        });
      expect(
        t.findResources('AWS::CloudWatch::Alarm', {
          Properties: { Namespace: 'AWS/RDS', MetricName: 'OldestReplicationSlotLag' },
        }),
      ).toEqual({});
    } finally {
      plain.cleanup();
    }
  });

  it('with RDS, RDS measures it and the reconciler never reaches the source', () => {
    const reconcile = template.findResources('AWS::Lambda::Function')[fnLogicalId('Reconcile')].Properties;
    expect(reconcile.Environment.Variables.SOURCE_SECRET_ARN).toBeUndefined();
    expect(
      template.findResources('AWS::CloudWatch::Alarm', { Properties: { MetricName: 'SourceSlotActive' } }),
    ).toEqual({});
  });
});
