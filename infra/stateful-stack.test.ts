import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { readTotesConfig } from './config';
import { StatefulStack } from './stacks/stateful-stack';
import { cdkJsonContext, render, synthTotes, type SynthesizedTotes } from './test-support/synth';

// One synthesis of the whole app (as `cdk synth` does it) for the file.
let synth: SynthesizedTotes;
let template: Template;
beforeAll(() => {
  synth = synthTotes({ 'totes:sourceCidr': '10.20.0.0/16', 'totes:alarmEmail': 'data@example.com' });
  template = synth.stateful;
});
afterAll(() => synth?.cleanup());

const bucketNamed = (kind: string) =>
  Object.entries(template.findResources('AWS::S3::Bucket')).find(
    ([, r]) => r.Properties.BucketName && render(r.Properties.BucketName).startsWith(`totes-${kind}-`),
  )!;

describe('stateful stack: change stream', () => {
  it('is on demand, encrypted with the AWS-managed key, keeps the replay window and is retained', () => {
    template.hasResource('AWS::Kinesis::Stream', {
      Properties: {
        StreamModeDetails: { StreamMode: 'ON_DEMAND' },
        RetentionPeriodHours: 168,
        StreamEncryption: { EncryptionType: 'KMS', KeyId: 'alias/aws/kinesis' },
      },
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
  });
});

describe('stateful stack: buckets', () => {
  it.each(['ingestion', 'processed'])('%s: private, encrypted, versioned, logged, retained', (kind) => {
    const [, bucket] = bucketNamed(kind);

    expect(render(bucket.Properties.BucketName)).toBe(`totes-${kind}-<AWS::AccountId>-<AWS::Region>`);
    expect(bucket.Properties).toMatchObject({
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
      },
      VersioningConfiguration: { Status: 'Enabled' },
      OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
      LoggingConfiguration: { LogFilePrefix: `${kind}/` },
    });
    expect(bucket.DeletionPolicy).toBe('Retain');
    const rules = bucket.Properties.LifecycleConfiguration.Rules;
    expect(rules).toContainEqual(
      expect.objectContaining({ NoncurrentVersionExpiration: { NoncurrentDays: 30 }, Status: 'Enabled' }),
    );
    expect(rules).toContainEqual(
      expect.objectContaining({ AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 } }),
    );
  });

  it('moves ingested CSV and oversized changes (and only those prefixes) to Infrequent Access after 30 days, never expiring them', () => {
    const [, bucket] = bucketNamed('ingestion');
    const rules = bucket.Properties.LifecycleConfiguration.Rules;

    for (const prefix of ['totesys/', 'oversized/'])
      expect(rules).toContainEqual(
        expect.objectContaining({
          Prefix: prefix,
          Transitions: [{ StorageClass: 'STANDARD_IA', TransitionInDays: 30 }],
        }),
      );
    // A CSV line points to an oversized event as long as the line exists: neither may expire.
    expect(rules.filter((r: { ExpirationInDays?: number }) => r.ExpirationInDays)).toEqual([]);
  });

  it('refuses plain HTTP and old TLS on both data buckets', () => {
    for (const kind of ['ingestion', 'processed']) {
      const [id] = bucketNamed(kind);
      template.hasResourceProperties('AWS::S3::BucketPolicy', {
        Bucket: { Ref: id },
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Deny',
              Action: 's3:*',
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            }),
            Match.objectLike({
              Effect: 'Deny',
              Action: 's3:*',
              Condition: { NumericLessThan: { 's3:TlsVersion': 1.2 } },
            }),
          ]),
        },
      });
    }
  });

  it('retains every bucket, the access-log bucket included', () => {
    const buckets = Object.values(template.findResources('AWS::S3::Bucket'));

    expect(buckets).toHaveLength(3);
    for (const b of buckets) expect(b.DeletionPolicy).toBe('Retain');
  });
});

describe('stateful stack: secrets and warehouse', () => {
  it('creates the source secret with a generated password and a template to complete, retained', () => {
    template.hasResource('AWS::SecretsManager::Secret', {
      Properties: {
        GenerateSecretString: Match.objectLike({
          GenerateStringKey: 'password',
          SecretStringTemplate: Match.serializedJson(
            Match.objectLike({ host: 'SET-ME', username: 'totes_capture', dbname: 'totesys' }),
          ),
        }),
      },
      DeletionPolicy: 'Retain',
    });
  });

  it('creates an encrypted, private, backed-up, deletion-protected Postgres 17 warehouse', () => {
    template.hasResource('AWS::RDS::DBInstance', {
      Properties: Match.objectLike({
        Engine: 'postgres',
        EngineVersion: '17',
        DBName: 'warehouse',
        StorageEncrypted: true,
        PubliclyAccessible: false,
        DeletionProtection: true,
        MultiAZ: false,
        BackupRetentionPeriod: 7,
        DBInstanceClass: 'db.t4g.small',
      }),
      DeletionPolicy: 'Retain',
    });
  });

  it('gives each warehouse role its own retained secret, attached to the instance', () => {
    for (const username of ['totes_owner', 'totes_load', 'totes_reporting'])
      template.hasResource('AWS::SecretsManager::Secret', {
        Properties: {
          GenerateSecretString: Match.objectLike({
            GenerateStringKey: 'password',
            SecretStringTemplate: JSON.stringify({ username }),
          }),
        },
        DeletionPolicy: 'Retain',
      });
    // host, port and dbname written into each (and the master's): four attachments.
    template.resourceCountIs('AWS::SecretsManager::SecretTargetAttachment', 4);
    const outputs = template.findOutputs('*');
    expect(Object.keys(outputs)).toEqual(
      expect.arrayContaining(['WarehouseReportingSecretArn', 'WarehouseLoadSecretArn', 'WarehouseSecretArn']),
    );
  });

  it('lets only warehouse clients reach the warehouse port, and the database open nothing', () => {
    const groups = template.findResources('AWS::EC2::SecurityGroup');
    const dbGroup = Object.keys(groups).find((id) => id.includes('DatabaseSecurityGroup'))!;
    const clientGroup = Object.keys(groups).find((id) => id.includes('ClientSecurityGroup'))!;

    template.resourceCountIs('AWS::EC2::SecurityGroupIngress', 1);
    template.hasResourceProperties('AWS::EC2::SecurityGroupIngress', {
      GroupId: { 'Fn::GetAtt': [dbGroup, 'GroupId'] },
      SourceSecurityGroupId: { 'Fn::GetAtt': [clientGroup, 'GroupId'] },
      FromPort: 5432,
      ToPort: 5432,
    });
    template.hasResourceProperties('AWS::EC2::SecurityGroupEgress', {
      GroupId: { 'Fn::GetAtt': [clientGroup, 'GroupId'] },
      DestinationSecurityGroupId: { 'Fn::GetAtt': [dbGroup, 'GroupId'] },
      FromPort: 5432,
    });
    // allowAllOutbound: false renders a placeholder rule that matches no traffic.
    expect(groups[dbGroup].Properties.SecurityGroupEgress).toEqual([
      expect.objectContaining({ CidrIp: '255.255.255.255/32' }),
    ]);
  });
});

describe('stateful stack: network', () => {
  it('has one NAT gateway, an S3 gateway endpoint and a flow log of rejected traffic', () => {
    template.resourceCountIs('AWS::EC2::NatGateway', 1);
    template.hasResourceProperties('AWS::EC2::VPCEndpoint', {
      VpcEndpointType: 'Gateway',
      ServiceName: Match.objectLike({
        'Fn::Join': ['', Match.arrayWith([Match.stringLikeRegexp('\\.s3$')])],
      }),
    });
    template.hasResourceProperties('AWS::EC2::FlowLog', { TrafficType: 'REJECT' });
  });

  it("outputs the NAT gateway's public address, for the source's allow-list", () => {
    const [eip] = Object.keys(template.findResources('AWS::EC2::EIP'));
    // One gateway: the join of one address is the address itself.
    expect(template.findOutputs('NatPublicIps').NatPublicIps.Value).toEqual({
      'Fn::GetAtt': [eip, 'PublicIp'],
    });
  });

  it('depends on nothing in the pipeline stack', () => {
    expect(JSON.stringify(template.toJSON())).not.toContain('Totes-Pipeline');
  });
});

describe('stateful stack: existing warehouse, own source secret, provisioned stream', () => {
  const arn = (name: string) => `arn:aws:secretsmanager:eu-west-2:123456789012:secret:${name}-AbCdEf`;
  let variant: Template;
  beforeAll(() => {
    const context: Record<string, unknown> = {
      'totes:warehouse': 'existing',
      'totes:warehouseSecretArn': arn('totes/warehouse'),
      'totes:warehouseCidr': '10.9.0.0/16',
      'totes:sourceSecretArn': arn('totes/source'),
      'totes:streamMode': 'PROVISIONED',
      'totes:shardCount': 2,
    };
    const app = new App({ context: { ...cdkJsonContext(), ...context } });
    const config = readTotesConfig((k) => app.node.tryGetContext(k), {});
    variant = Template.fromStack(new StatefulStack(app, 'Variant', { config }));
  });

  it('creates no database and no secret, and lets clients reach the warehouse address range only', () => {
    variant.resourceCountIs('AWS::RDS::DBInstance', 0);
    variant.resourceCountIs('AWS::SecretsManager::Secret', 0);
    variant.hasResourceProperties('AWS::EC2::SecurityGroup', {
      GroupDescription: Match.stringLikeRegexp('warehouse clients'),
      SecurityGroupEgress: [
        {
          CidrIp: '10.9.0.0/16',
          FromPort: 5432,
          ToPort: 5432,
          IpProtocol: 'tcp',
          Description: Match.anyValue(),
        },
      ],
    });
  });

  it('provisions the shards it was given', () => {
    variant.hasResourceProperties('AWS::Kinesis::Stream', {
      StreamModeDetails: { StreamMode: 'PROVISIONED' },
      ShardCount: 2,
    });
  });
});
