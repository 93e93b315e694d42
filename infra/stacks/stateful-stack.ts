import { Aws, CfnOutput, Duration, Fn, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import { INGESTION_ROOT } from '../../core/csv-codec';
import { OVERSIZED_ROOT } from '../../core/oversized-change';
import { acknowledge } from '../acknowledge';
import type { TotesConfig } from '../config';
import { importSecret } from '../constructs/import-secret';
import { Warehouse } from '../constructs/warehouse';

/** Where capture keeps its state object in the ingestion bucket (apart from data and schemas). */
export const CAPTURE_STATE_PREFIX = '_capture-state/';

export const DATA_BUCKETS = ['ingestion', 'processed'] as const;
export type DataBucket = (typeof DATA_BUCKETS)[number];

/**
 * The data buckets' names: `totes-<kind>-<account>-<region>`, unique per account and region. Fixed
 * names let the pipeline stack (and operators) address the buckets without a cross-stack reference,
 * so its IAM statements name plain ARNs that a reviewer, and cdk-nag, can read.
 */
export function dataBucketName(kind: DataBucket): string {
  return `totes-${kind}-${Aws.ACCOUNT_ID}-${Aws.REGION}`;
}

export interface StatefulStackProps extends StackProps {
  config: TotesConfig;
}

/**
 * Everything that holds data and must outlive any deployment of the compute: the network, the
 * change stream, the buckets, the connection secrets and (optionally) the warehouse. All of it is
 * RETAINed: deleting the stack leaves the data where it is (docs/deploy.md, "Tear down").
 */
export class StatefulStack extends Stack {
  readonly vpc: ec2.IVpc;
  readonly stream: kinesis.Stream;
  readonly ingestionBucket: s3.Bucket;
  readonly processedBucket: s3.Bucket;
  readonly accessLogsBucket: s3.Bucket;
  readonly sourceSecret: secretsmanager.ISecret;
  readonly warehouse: Warehouse;
  /** Key of capture's state object in the ingestion bucket (one per slot). */
  readonly captureStateKey: string;

  constructor(scope: Construct, id: string, props: StatefulStackProps) {
    super(scope, id, props);
    const { config } = props;

    this.vpc = config.vpcId
      ? ec2.Vpc.fromLookup(this, 'Vpc', { vpcId: config.vpcId })
      : this.createVpc(config);

    this.stream = new kinesis.Stream(this, 'ChangeStream', {
      streamMode:
        config.stream.mode === 'ON_DEMAND' ? kinesis.StreamMode.ON_DEMAND : kinesis.StreamMode.PROVISIONED,
      ...(config.stream.mode === 'PROVISIONED' ? { shardCount: config.stream.shardCount } : {}),
      retentionPeriod: Duration.hours(config.stream.retentionHours),
      // The AWS-managed key: encryption at rest with no key policy to keep in step with every
      // producer and consumer, and no per-call KMS charges (cdk-nag KDS3 prefers it too).
      encryption: kinesis.StreamEncryption.MANAGED,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.accessLogsBucket = new s3.Bucket(this, 'AccessLogsBucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      // Access logs answer "who read or changed this object"; a year covers an audit cycle.
      lifecycleRules: [{ id: 'expire-access-logs', expiration: Duration.days(365) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    acknowledge(
      this.accessLogsBucket,
      'AwsSolutions-S1',
      'This is the access-log bucket; logging it into itself would loop.',
    );

    const noncurrent = Duration.days(config.storage.noncurrentVersionExpirationDays);
    const toInfrequentAccess = (id: string, prefix: string): s3.LifecycleRule => ({
      id,
      prefix,
      transitions: [
        {
          storageClass: s3.StorageClass.INFREQUENT_ACCESS,
          transitionAfter: Duration.days(config.storage.ingestionInfrequentAccessAfterDays),
        },
      ],
    });
    this.ingestionBucket = this.dataBucket('IngestionBucket', 'ingestion', [
      toInfrequentAccess('data-to-infrequent-access', `${INGESTION_ROOT}/`),
      // Events of changes too big for one stream record (core/oversized-change.ts): kept as long as
      // the CSV lines that point to them, which never expire, so they age the same way.
      toInfrequentAccess('oversized-to-infrequent-access', `${OVERSIZED_ROOT}/`),
      { id: 'expire-noncurrent', noncurrentVersionExpiration: noncurrent },
      // Firehose writes with multipart uploads; a failed one leaves parts that cost storage forever.
      { id: 'abort-incomplete-uploads', abortIncompleteMultipartUploadAfter: Duration.days(7) },
    ]);
    this.processedBucket = this.dataBucket('ProcessedBucket', 'processed', [
      { id: 'expire-noncurrent', noncurrentVersionExpiration: noncurrent },
      { id: 'abort-incomplete-uploads', abortIncompleteMultipartUploadAfter: Duration.days(7) },
    ]);
    this.captureStateKey = `${CAPTURE_STATE_PREFIX}${config.capture.slot}.json`;

    this.sourceSecret = config.source.secretArn
      ? importSecret(this, 'SourceSecret', config.source.secretArn)
      : this.createSourceSecret();

    this.warehouse = new Warehouse(this, 'Warehouse', { vpc: this.vpc, config: config.warehouse });

    // What an operator needs to find (docs/deploy.md uses them).
    const outputs: Record<string, string> = {
      IngestionBucketName: this.ingestionBucket.bucketName,
      ProcessedBucketName: this.processedBucket.bucketName,
      ChangeStreamName: this.stream.streamName,
      SourceSecretArn: this.sourceSecret.secretArn,
      WarehouseSecretArn: this.warehouse.secret.secretArn,
      ...(this.warehouse.hasRoles
        ? {
            // Analysts, the dashboard and QuickSight connect as totes_reporting (read only).
            WarehouseReportingSecretArn: this.warehouse.roleSecrets.reporting.secretArn,
            WarehouseLoadSecretArn: this.warehouse.roleSecrets.load.secretArn,
          }
        : {}),
      ...(this.warehouse.instance
        ? { WarehouseEndpoint: this.warehouse.instance.dbInstanceEndpointAddress }
        : {}),
    };
    // The addresses capture (and load) leave the VPC from: what the source's firewall or security
    // group must allow (docs/deploy.md, 1.4). Only known for a VPC this stack creates.
    const natIps = this.vpc.publicSubnets.flatMap((subnet) => {
      const eip = subnet.node.tryFindChild('EIP');
      return eip instanceof ec2.CfnEIP ? [eip.attrPublicIp] : [];
    });
    if (natIps.length) outputs.NatPublicIps = Fn.join(',', natIps);
    for (const [id, value] of Object.entries(outputs)) new CfnOutput(this, id, { value });
  }

  private createVpc(config: TotesConfig): ec2.Vpc {
    const flowLogGroup = new logs.LogGroup(this, 'VpcFlowLogs', {
      retention: config.logRetentionDays as logs.RetentionDays,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    return new ec2.Vpc(this, 'Vpc', {
      // An RDS subnet group needs subnets in two Availability Zones.
      maxAzs: 2,
      // Capture and load reach the source and AWS APIs through it. One gateway: an AZ outage pauses
      // capture, which resumes from its slot, at half the cost of a gateway per AZ.
      natGateways: 1,
      subnetConfiguration: [
        { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
        { name: 'private', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 22 },
        { name: 'isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 24 },
      ],
      // S3 traffic (capture state, transform and load objects) skips the NAT gateway, which charges by the GB.
      gatewayEndpoints: { S3: { service: ec2.GatewayVpcEndpointAwsService.S3 } },
      // Rejected flows only: they are what answers "why can't capture reach the source?".
      flowLogs: {
        rejected: {
          destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogGroup),
          trafficType: ec2.FlowLogTrafficType.REJECT,
        },
      },
    });
  }

  private dataBucket(id: string, kind: DataBucket, lifecycleRules: s3.LifecycleRule[]): s3.Bucket {
    return new s3.Bucket(this, id, {
      bucketName: dataBucketName(kind),
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      // Objects are written once and never replaced; versioning keeps a mistaken overwrite or
      // delete recoverable for the noncurrent-version window.
      versioned: true,
      serverAccessLogsBucket: this.accessLogsBucket,
      serverAccessLogsPrefix: `${kind}/`,
      lifecycleRules,
      removalPolicy: RemovalPolicy.RETAIN,
    });
  }

  private createSourceSecret(): secretsmanager.Secret {
    // The password is generated here and never appears in a template; the operator sets `host` (and
    // `dbname`) and gives the source role that password (docs/deploy.md).
    const secret = new secretsmanager.Secret(this, 'SourceSecret', {
      description: 'totes capture: connection to the totesys source database (set host and dbname)',
      generateSecretString: {
        secretStringTemplate: JSON.stringify({
          host: 'SET-ME',
          port: 5432,
          username: 'totes_capture',
          dbname: 'totesys',
        }),
        generateStringKey: 'password',
        // Characters that need escaping in a URL or a shell stay out of it.
        excludePunctuation: true,
        passwordLength: 32,
      },
      removalPolicy: RemovalPolicy.RETAIN,
    });
    acknowledge(
      secret,
      'AwsSolutions-SMG4',
      'Rotating it needs a function with a network path and ALTER ROLE rights on the source database, ' +
        'which totes does not own; rotate by hand (docs/deploy.md) and restart the capture service.',
    );
    return secret;
  }
}
