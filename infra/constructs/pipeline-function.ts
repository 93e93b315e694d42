import path from 'node:path';
import { Duration } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { acknowledge, iamResourceFinding } from '../acknowledge';
import type { Stage } from '../pipeline-metrics';

/** The repository root: handler entries and the lock file are found from here. */
export const REPO_ROOT = path.resolve(__dirname, '..', '..');

/**
 * The newest Node.js runtime this aws-cdk-lib offers (NODEJS_LATEST would move under us with every
 * CDK upgrade; a named one changes only when we change it). The AWS SDK for JavaScript v3 drops
 * Node 20 in 2027.
 */
export const LAMBDA_RUNTIME = lambda.Runtime.NODEJS_24_X;

export interface PipelineFunctionProps {
  /** The handler module, relative to the repository root (it exports `handler`). */
  entry: string;
  stage: Stage;
  description: string;
  memorySizeMiB: number;
  timeout: Duration;
  logRetentionDays: logs.RetentionDays;
  tracing: boolean;
  /**
   * Invoked asynchronously (S3 notifications): after Lambda's own retries an event goes to a
   * dead-letter queue with the error, instead of disappearing.
   */
  asyncInvocation?: boolean;
  network?: { vpc: ec2.IVpc; subnets: ec2.SubnetSelection; securityGroups: ec2.ISecurityGroup[] };
  /** Extra environment variables (settings, not resources: those come from `bind…()`). */
  environment?: Record<string, string>;
  /** V8 flags for the function's Node.js process, after `--enable-source-maps` in NODE_OPTIONS. */
  v8Flags?: string[];
  /**
   * Files the handler reads at run time, copied into the bundle (paths relative to the repository
   * root and to the bundle), e.g. SQL migrations that esbuild cannot inline.
   */
  bundleFiles?: { from: string; to: string }[];
}

/** Which keys of a bucket a function may read, write or list. */
export interface ObjectAccess {
  /** Key patterns (e.g. `totesys/*`) the function may GetObject. */
  get?: string[];
  /** Key patterns the function may PutObject. */
  put?: string[];
  /**
   * ListBucket on the bucket: without it S3 answers 403 instead of 404 for a missing key, so a
   * function that checks for an object's existence needs it. It reveals key names, never data.
   */
  list?: boolean;
}

/**
 * One pipeline stage's Lambda function with the project's defaults baked in: bundled by esbuild from
 * the TypeScript entry, arm64, the newest Node runtime, its own role (no managed policies) and log
 * group with retention, and for asynchronously invoked stages a dead-letter queue. `bind…()` grants
 * access and sets the environment variable that names the resource in one call, so a function can
 * never be told about a resource it may not use, nor granted one it is not told about.
 */
export class PipelineFunction extends Construct {
  readonly function: nodejs.NodejsFunction;
  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;
  readonly deadLetterQueue?: sqs.Queue;
  readonly stage: Stage;

  constructor(scope: Construct, id: string, props: PipelineFunctionProps) {
    super(scope, id);
    this.stage = props.stage;
    this.logGroup = new logs.LogGroup(this, 'Logs', { retention: props.logRetentionDays });
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `totes ${props.stage} function`,
    });
    // What AWSLambdaBasicExecutionRole grants, narrowed to this function's own log group.
    this.role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [this.logGroup.logGroupArn],
      }),
    );

    if (props.asyncInvocation) {
      this.deadLetterQueue = new sqs.Queue(this, 'DeadLetterQueue', {
        encryption: sqs.QueueEncryption.SQS_MANAGED,
        enforceSSL: true,
        // The longest SQS keeps a message: time to notice the alarm, fix, and redrive.
        retentionPeriod: Duration.days(14),
      });
      acknowledge(
        this.deadLetterQueue,
        'AwsSolutions-SQS3',
        `This queue is the ${props.stage} function's on-failure destination: it is the dead-letter queue.`,
      );
    }

    if (props.network) {
      // Lambda creates the function's network interfaces with its role; these EC2 actions support
      // no resource-level permissions (what AWSLambdaVPCAccessExecutionRole grants, minus logs).
      this.role.addToPolicy(
        new iam.PolicyStatement({
          actions: [
            'ec2:CreateNetworkInterface',
            'ec2:DescribeNetworkInterfaces',
            'ec2:DescribeSubnets',
            'ec2:DeleteNetworkInterface',
            'ec2:AssignPrivateIpAddresses',
            'ec2:UnassignPrivateIpAddresses',
          ],
          resources: ['*'],
        }),
      );
    }

    this.function = new nodejs.NodejsFunction(this, 'Function', {
      entry: path.join(REPO_ROOT, props.entry),
      projectRoot: REPO_ROOT,
      depsLockFilePath: path.join(REPO_ROOT, 'package-lock.json'),
      handler: 'handler',
      description: props.description,
      runtime: LAMBDA_RUNTIME,
      // Graviton: about 20% cheaper per GB-second; the bundle is plain JavaScript.
      architecture: lambda.Architecture.ARM_64,
      memorySize: props.memorySizeMiB,
      timeout: props.timeout,
      role: this.role,
      logGroup: this.logGroup,
      tracing: props.tracing ? lambda.Tracing.ACTIVE : lambda.Tracing.DISABLED,
      environment: {
        NODE_OPTIONS: ['--enable-source-maps', ...(props.v8Flags ?? [])].join(' '),
        LOG_LEVEL: 'info',
        TOTES_STAGE: props.stage,
        ...props.environment,
      },
      bundling: {
        // The project's tsconfig without `alwaysStrict`: with it (implied by `strict`) esbuild puts
        // "use strict" at the top of the bundle, which makes every bundled library strict, and
        // parquetjs-lite's generated Thrift code assigns undeclared names (`Statistics = …`): the
        // transform and load bundles threw a ReferenceError at cold start (infra/bundles.pg.test.ts).
        tsconfig: path.join(REPO_ROOT, 'infra', 'tsconfig.bundle.json'),
        target: 'node24',
        format: nodejs.OutputFormat.CJS,
        minify: true,
        sourceMap: true,
        // The SDK version the tests ran against, not whichever one the runtime ships this month.
        bundleAwsSDK: true,
        // pg loads pg-native only when asked to; it is not installed.
        externalModules: ['pg-native'],
        ...(props.bundleFiles?.length
          ? {
              commandHooks: {
                beforeBundling: () => [],
                beforeInstall: () => [],
                afterBundling: (inputDir: string, outputDir: string) =>
                  props.bundleFiles!.map(
                    (f) =>
                      `cp -R "${path.posix.join(inputDir, f.from)}" "${path.posix.join(outputDir, f.to)}"`,
                  ),
              },
            }
          : {}),
      },
      ...(this.deadLetterQueue
        ? {
            onFailure: new destinations.SqsDestination(this.deadLetterQueue),
            // Lambda's default: two retries a minute or two apart ride out a transient failure.
            retryAttempts: 2,
            // The longest Lambda keeps retrying a throttled event.
            maxEventAge: Duration.hours(6),
          }
        : {}),
      ...(props.network
        ? {
            vpc: props.network.vpc,
            vpcSubnets: props.network.subnets,
            securityGroups: props.network.securityGroups,
          }
        : {}),
    });

    const starReasons = [
      ...(props.network ? ['the EC2 network-interface actions Lambda needs to join the VPC'] : []),
      ...(props.tracing ? ['X-Ray PutTraceSegments/PutTelemetryRecords'] : []),
    ];
    if (starReasons.length > 0)
      acknowledge(
        this.role,
        'AwsSolutions-IAM5',
        `No resource-level permissions exist for ${starReasons.join(' or ')}.`,
        ['Resource::*'],
      );
  }

  /** Sets `envName` to the bucket's name and grants exactly `access` on it. */
  bindBucket(envName: string, bucket: s3.IBucket, access: ObjectAccess): this {
    this.function.addEnvironment(envName, bucket.bucketName);
    return this.grantObjects(bucket, access);
  }

  /** Grants exactly `access` on a bucket the function learns about from its events. */
  grantObjects(bucket: s3.IBucket, access: ObjectAccess): this {
    if (access.get?.length)
      this.role.addToPolicy(
        new iam.PolicyStatement({
          actions: ['s3:GetObject'],
          resources: access.get.map((p) => bucket.arnForObjects(p)),
        }),
      );
    if (access.put?.length)
      this.role.addToPolicy(
        new iam.PolicyStatement({
          actions: ['s3:PutObject'],
          resources: access.put.map((p) => bucket.arnForObjects(p)),
        }),
      );
    if (access.list)
      this.role.addToPolicy(
        new iam.PolicyStatement({ actions: ['s3:ListBucket'], resources: [bucket.bucketArn] }),
      );
    const wildcards = [...(access.get ?? []), ...(access.put ?? [])].filter((p) => p.includes('*'));
    acknowledge(
      this.role,
      'AwsSolutions-IAM5',
      'Object keys are made at run time (table, layout, time window): access is granted on the key prefixes ' +
        'this stage reads or writes, with single named S3 actions.',
      [...new Set(wildcards)].map((p) => iamResourceFinding(this, bucket.arnForObjects(p))),
    );
    return this;
  }

  /** Sets `envName` to the queue's URL and grants exactly `actions` on it. */
  bindQueue(envName: string, queue: sqs.IQueue, actions: string[]): this {
    this.function.addEnvironment(envName, queue.queueUrl);
    this.role.addToPolicy(new iam.PolicyStatement({ actions, resources: [queue.queueArn] }));
    return this;
  }

  /** Sets `envName` to the function's name and grants invoking it. */
  bindFunction(envName: string, fn: lambda.IFunction): this {
    this.function.addEnvironment(envName, fn.functionName);
    this.role.addToPolicy(
      new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [fn.functionArn] }),
    );
    return this;
  }

  /** Sets `envName` to the secret's ARN and grants reading it. */
  bindSecret(envName: string, secret: secretsmanager.ISecret): this {
    this.function.addEnvironment(envName, secret.secretArn);
    secret.grantRead(this.role);
    return this;
  }
}
