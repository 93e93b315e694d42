import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as rds from 'aws-cdk-lib/aws-rds';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { acknowledge } from '../acknowledge';
import type { TotesConfig } from '../config';
import { WAREHOUSE_ROLES, type WarehouseRole } from '../../processors/migrate/roles';
import { importSecret } from './import-secret';

export interface WarehouseProps {
  vpc: ec2.IVpc;
  config: TotesConfig['warehouse'];
}

/** The login roles of a created warehouse (processors/migrate/roles.ts creates them at deploy). */
export type WarehouseRoleName = WarehouseRole;

/**
 * The warehouse Postgres the load function writes to: one this construct creates (RDS in the VPC's
 * isolated subnets), or an existing one named by its connection secret. Either way it offers a
 * secret per use, and a security group whose members may connect.
 *
 * A created warehouse has a secret per role, each with its own generated password and the
 * instance's host attached: the owner (migrations), load (DML only), reporting (read only). The RDS
 * master user's secret is used by the migration step alone, never at run time. An existing
 * warehouse has the one secret it was given, for everything.
 */
export class Warehouse extends Construct {
  /** The master (admin) connection: the migration step's, to create the roles. */
  readonly secret: secretsmanager.ISecret;
  /** Per role; for an existing warehouse, all the given secret. */
  readonly roleSecrets: Record<WarehouseRoleName, secretsmanager.ISecret>;
  /** False for an existing warehouse: nothing creates the roles there. */
  readonly hasRoles: boolean;
  /** Give this group to whatever connects to the warehouse (the load function). */
  readonly clientSecurityGroup: ec2.SecurityGroup;
  /** The created instance; undefined for an existing warehouse. */
  readonly instance?: rds.DatabaseInstance;

  constructor(scope: Construct, id: string, props: WarehouseProps) {
    super(scope, id);
    const { vpc, config } = props;
    this.clientSecurityGroup = new ec2.SecurityGroup(this, 'ClientSecurityGroup', {
      vpc,
      description: 'totes warehouse clients: may connect to the warehouse Postgres port only',
      allowAllOutbound: false,
    });

    if (config.mode === 'existing') {
      this.secret = importSecret(this, 'Secret', config.secretArn);
      this.roleSecrets = { owner: this.secret, load: this.secret, reporting: this.secret };
      this.hasRoles = false;
      this.clientSecurityGroup.addEgressRule(
        ec2.Peer.ipv4(config.cidr),
        ec2.Port.tcp(config.port),
        'the existing warehouse',
      );
      return;
    }

    const dbSecurityGroup = new ec2.SecurityGroup(this, 'DatabaseSecurityGroup', {
      vpc,
      description: 'totes warehouse Postgres: reachable from warehouse clients only',
      // A database answers connections; it opens none.
      allowAllOutbound: false,
    });
    dbSecurityGroup.addIngressRule(this.clientSecurityGroup, ec2.Port.tcp(config.port), 'warehouse clients');
    this.clientSecurityGroup.addEgressRule(dbSecurityGroup, ec2.Port.tcp(config.port), 'the warehouse');

    const isolated = vpc.isolatedSubnets.length > 0;
    this.instance = new rds.DatabaseInstance(this, 'Instance', {
      engine: rds.DatabaseInstanceEngine.postgres({ version: rds.PostgresEngineVersion.VER_17 }),
      instanceType: new ec2.InstanceType(config.instanceType),
      vpc,
      // No route to the internet at all where the VPC has isolated subnets.
      vpcSubnets: {
        subnetType: isolated ? ec2.SubnetType.PRIVATE_ISOLATED : ec2.SubnetType.PRIVATE_WITH_EGRESS,
      },
      securityGroups: [dbSecurityGroup],
      port: config.port,
      databaseName: 'warehouse',
      credentials: rds.Credentials.fromGeneratedSecret('totes_admin'),
      storageType: rds.StorageType.GP3,
      // 20 GiB is the gp3 minimum; autoscaling storage grows it instead of an outage when it fills.
      allocatedStorage: 20,
      maxAllocatedStorage: 200,
      storageEncrypted: true,
      multiAz: config.multiAz,
      publiclyAccessible: false,
      deletionProtection: true,
      // A week of point-in-time recovery; the pipeline can also rebuild from the processed bucket.
      backupRetention: Duration.days(7),
      copyTagsToSnapshot: true,
      autoMinorVersionUpgrade: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.secret = this.instance.secret!;
    const instance = this.instance;
    const roleSecret = (role: WarehouseRoleName): secretsmanager.ISecret => {
      const secret = new rds.DatabaseSecret(this, `${role[0].toUpperCase()}${role.slice(1)}Secret`, {
        username: WAREHOUSE_ROLES[role],
      });
      secret.applyRemovalPolicy(RemovalPolicy.RETAIN);
      acknowledge(
        secret,
        'AwsSolutions-SMG4',
        'Rotated by changing the secret and deploying again: the migration step sets every role password from ' +
          'its secret on each run (processors/migrate).',
      );
      // host, port, dbname and engine added beside username and password: the shape load-config reads.
      return secret.attach(instance);
    };
    this.roleSecrets = {
      owner: roleSecret('owner'),
      load: roleSecret('load'),
      reporting: roleSecret('reporting'),
    };
    this.hasRoles = true;

    acknowledge(
      this.instance,
      'AwsSolutions-RDS11',
      'A non-default port hides nothing from a scanner; the security group admits warehouse clients only.',
    );
    if (!config.multiAz)
      acknowledge(
        this.instance,
        'AwsSolutions-RDS3',
        'Single-AZ by default (totes:warehouseMultiAz) for cost: during an outage loads fail, retry and land in ' +
          'the dead-letter queue, and the objects stay in S3 to replay.',
      );
    acknowledge(
      this.instance,
      'AwsSolutions-SMG4',
      'The master user is used only by the migration step at deploy; rotate it by hand (docs/deploy.md).',
    );
  }
}
