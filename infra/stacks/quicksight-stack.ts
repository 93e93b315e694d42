import { Stack, type StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as quicksight from 'aws-cdk-lib/aws-quicksight';
import type { Construct } from 'constructs';
import { acknowledge } from '../acknowledge';
import type { StatefulStack } from './stateful-stack';

/**
 * QuickSight as code (issue 11), optional: `--context totes:quicksight=true`. The same panels as
 * `totes dashboard`, over the same reporting views (migration 003, docs/warehouse-reporting.md),
 * read through the read-only reporting role:
 *
 * - a VPC connection: QuickSight's network interfaces in the warehouse's VPC, in the warehouse
 *   client security group (which the database admits) and a group of their own that admits the
 *   answers (QuickSight's interfaces do not track connections, so return traffic needs a rule:
 *   https://docs.aws.amazon.com/quicksight/latest/user/vpc-security-groups.html);
 * - a PostgreSQL data source whose credentials are the reporting role's secret (a login role that is
 *   a member of `totes_reporting`), never the warehouse's admin secret;
 * - one dataset per reporting view, DIRECT_QUERY: every visual queries the warehouse, so it is as
 *   current as the warehouse (no SPICE refresh schedule to keep);
 * - one dashboard: headline sales today and this month, the top 10 designs by units sold, sales
 *   over time, sales by country and city, payments outstanding, purchase orders, and freshness.
 *
 * Prerequisites (QuickSight Enterprise edition, a user or group to share with, the reporting
 * secret) are in docs/deploy.md.
 */
export const QUICKSIGHT_CONTEXT = {
  /** `true` adds the stack. */
  enabled: 'totes:quicksight',
  /** Secrets Manager secret with `username` and `password` of a member of `totes_reporting`. */
  reportingSecretArn: 'totes:quicksightReportingSecretArn',
  /** QuickSight user or group ARN the data source, datasets and dashboard are shared with. */
  principalArn: 'totes:quicksightPrincipalArn',
  /** The warehouse's host name; default: the RDS instance the stateful stack creates. */
  warehouseHost: 'totes:quicksightWarehouseHost',
} as const;

export interface QuicksightConfig {
  reportingSecretArn: string;
  principalArn: string;
  warehouseHost?: string;
}

export class QuicksightConfigError extends Error {
  override name = 'QuicksightConfigError';
}

/** null when the flag is off; throws with every problem when it is on but incomplete. */
export function readQuicksightConfig(get: (key: string) => unknown): QuicksightConfig | null {
  const str = (key: string) => String(get(key) ?? '').trim();
  if (str(QUICKSIGHT_CONTEXT.enabled) !== 'true') return null;
  const problems: string[] = [];
  const reportingSecretArn = str(QUICKSIGHT_CONTEXT.reportingSecretArn);
  const principalArn = str(QUICKSIGHT_CONTEXT.principalArn);
  if (!/^arn:aws[a-z-]*:secretsmanager:/.test(reportingSecretArn))
    problems.push(`${QUICKSIGHT_CONTEXT.reportingSecretArn} must be a Secrets Manager secret ARN`);
  if (!/^arn:aws[a-z-]*:quicksight:[a-z0-9-]+:\d{12}:(user|group)\//.test(principalArn))
    problems.push(`${QUICKSIGHT_CONTEXT.principalArn} must be a QuickSight user or group ARN`);
  if (problems.length) throw new QuicksightConfigError(`QuickSight stack: ${problems.join('; ')}`);
  const warehouseHost = str(QUICKSIGHT_CONTEXT.warehouseHost);
  return { reportingSecretArn, principalArn, ...(warehouseHost ? { warehouseHost } : {}) };
}

type ColumnType = 'STRING' | 'INTEGER' | 'DECIMAL' | 'DATETIME' | 'BOOLEAN';

/**
 * The reporting views a dataset reads, with their columns as QuickSight types. A real-Postgres
 * test (quicksight-stack.pg.test.ts) checks this against the views migration 003 creates.
 */
export const REPORTING_DATASETS: Readonly<Record<string, Readonly<Record<string, ColumnType>>>> = {
  rpt_sales_by_day: {
    order_date: 'DATETIME',
    currency_id: 'INTEGER',
    currency_code: 'STRING',
    orders: 'INTEGER',
    units_sold: 'INTEGER',
    revenue: 'DECIMAL',
  },
  rpt_sales_by_month: {
    month: 'DATETIME',
    year: 'INTEGER',
    month_number: 'INTEGER',
    month_name: 'STRING',
    currency_id: 'INTEGER',
    currency_code: 'STRING',
    orders: 'INTEGER',
    units_sold: 'INTEGER',
    revenue: 'DECIMAL',
  },
  rpt_top_designs: {
    design_name: 'STRING',
    designs: 'INTEGER',
    orders: 'INTEGER',
    units_sold: 'INTEGER',
    units_rank: 'INTEGER',
  },
  rpt_sales_by_location: {
    delivery_country: 'STRING',
    delivery_city: 'STRING',
    currency_id: 'INTEGER',
    currency_code: 'STRING',
    orders: 'INTEGER',
    units_sold: 'INTEGER',
    revenue: 'DECIMAL',
  },
  rpt_payments_by_status: {
    status: 'STRING',
    direction: 'STRING',
    currency_id: 'INTEGER',
    currency_code: 'STRING',
    payments: 'INTEGER',
    amount: 'DECIMAL',
    earliest_payment_date: 'DATETIME',
    latest_payment_date: 'DATETIME',
  },
  rpt_purchases_by_supplier: {
    counterparty_id: 'INTEGER',
    counterparty_legal_name: 'STRING',
    counterparty_legal_country: 'STRING',
    currency_id: 'INTEGER',
    currency_code: 'STRING',
    orders: 'INTEGER',
    item_quantity: 'INTEGER',
    spend: 'DECIMAL',
  },
  rpt_purchases_by_item: {
    item_code: 'STRING',
    currency_id: 'INTEGER',
    currency_code: 'STRING',
    orders: 'INTEGER',
    item_quantity: 'INTEGER',
    spend: 'DECIMAL',
    average_unit_price: 'DECIMAL',
  },
  rpt_pipeline_tables: {
    source_table: 'STRING',
    warehouse_table: 'STRING',
    newest_commit_ts: 'DATETIME',
    last_loaded_at: 'DATETIME',
    observed_at: 'DATETIME',
  },
};

export interface QuicksightStackProps extends StackProps {
  stateful: StatefulStack;
  config: QuicksightConfig;
  warehousePort: number;
}

// Actions that let principals read and use a data source, dataset and dashboard.
// https://docs.aws.amazon.com/quicksight/latest/developerguide/controlling-access.html
const DATA_SOURCE_ACTIONS = [
  'quicksight:DescribeDataSource',
  'quicksight:DescribeDataSourcePermissions',
  'quicksight:PassDataSource',
];
const DATASET_ACTIONS = [
  'quicksight:DescribeDataSet',
  'quicksight:DescribeDataSetPermissions',
  'quicksight:PassDataSet',
  'quicksight:DescribeIngestion',
  'quicksight:ListIngestions',
];
const DASHBOARD_ACTIONS = [
  'quicksight:DescribeDashboard',
  'quicksight:ListDashboardVersions',
  'quicksight:QueryDashboard',
];

const datasetId = (view: string) => `totes-${view.replace(/_/g, '-')}`;

export class QuicksightStack extends Stack {
  readonly dashboard: quicksight.CfnDashboard;

  constructor(scope: Construct, id: string, props: QuicksightStackProps) {
    super(scope, id, props);
    const { stateful, config } = props;
    const vpc = stateful.vpc;

    // ---- network: QuickSight's interfaces beside the warehouse
    const answers = new ec2.SecurityGroup(this, 'ReturnTrafficSecurityGroup', {
      vpc,
      description:
        'totes QuickSight interfaces: admit answers from the warehouse (interfaces track no connections)',
      allowAllOutbound: false,
    });
    answers.addIngressRule(ec2.Peer.ipv4(vpc.vpcCidrBlock), ec2.Port.allTcp(), 'answers from inside the VPC');
    acknowledge(
      answers,
      'AwsSolutions-EC23',
      'The rule admits the VPC only (return traffic to QuickSight interfaces, which track no connections).',
    );
    const role = new iam.Role(this, 'VpcConnectionRole', {
      assumedBy: new iam.ServicePrincipal('quicksight.amazonaws.com'),
      description: 'QuickSight creates and removes its network interfaces in the warehouse VPC',
      inlinePolicies: {
        interfaces: new iam.PolicyDocument({
          statements: [
            new iam.PolicyStatement({
              // The minimum QuickSight documents for a VPC connection; EC2 offers no resource-level
              // scoping for Describe*, and interfaces do not exist before QuickSight creates them.
              // https://docs.aws.amazon.com/quicksight/latest/user/vpc-creating-a-connection-in-quicksight-console.html
              actions: [
                'ec2:CreateNetworkInterface',
                'ec2:ModifyNetworkInterfaceAttribute',
                'ec2:DeleteNetworkInterface',
                'ec2:DescribeSubnets',
                'ec2:DescribeSecurityGroups',
              ],
              resources: ['*'],
            }),
          ],
        }),
      },
    });
    acknowledge(
      role,
      'AwsSolutions-IAM5',
      'QuickSight needs these EC2 actions on interfaces it has not created yet; Describe* has no resource scoping.',
      ['Resource::*'],
    );
    const subnets = vpc.selectSubnets({
      subnetType:
        vpc.isolatedSubnets.length > 0 ? ec2.SubnetType.PRIVATE_ISOLATED : ec2.SubnetType.PRIVATE_WITH_EGRESS,
    });
    const connection = new quicksight.CfnVPCConnection(this, 'VpcConnection', {
      awsAccountId: this.account,
      vpcConnectionId: 'totes-warehouse',
      name: 'totes warehouse',
      roleArn: role.roleArn,
      subnetIds: subnets.subnetIds,
      securityGroupIds: [stateful.warehouse.clientSecurityGroup.securityGroupId, answers.securityGroupId],
    });

    // ---- data source: the reporting role, over the VPC connection, with TLS
    const host = config.warehouseHost ?? stateful.warehouse.instance?.dbInstanceEndpointAddress;
    if (!host)
      throw new QuicksightConfigError(
        `QuickSight stack: an existing warehouse needs ${QUICKSIGHT_CONTEXT.warehouseHost} (its host name)`,
      );
    const principal = config.principalArn;
    const dataSource = new quicksight.CfnDataSource(this, 'Warehouse', {
      awsAccountId: this.account,
      dataSourceId: 'totes-warehouse',
      name: 'totes warehouse (reporting views)',
      type: 'POSTGRESQL',
      dataSourceParameters: {
        postgreSqlParameters: { host, port: props.warehousePort, database: 'warehouse' },
      },
      credentials: { secretArn: config.reportingSecretArn },
      vpcConnectionProperties: { vpcConnectionArn: connection.attrArn },
      sslProperties: { disableSsl: false },
      permissions: [{ principal, actions: DATA_SOURCE_ACTIONS }],
    });

    // ---- datasets: one per reporting view, queried live
    const datasets = Object.entries(REPORTING_DATASETS).map(
      ([view, columns]) =>
        new quicksight.CfnDataSet(this, `DataSet-${view}`, {
          awsAccountId: this.account,
          dataSetId: datasetId(view),
          name: `totes ${view}`,
          importMode: 'DIRECT_QUERY',
          physicalTableMap: {
            view: {
              relationalTable: {
                dataSourceArn: dataSource.attrArn,
                schema: 'public',
                name: view,
                inputColumns: Object.entries(columns).map(([name, type]) => ({ name, type })),
              },
            },
          },
          permissions: [{ principal, actions: DATASET_ACTIONS }],
        }),
    );
    const arnOf = Object.fromEntries(
      Object.keys(REPORTING_DATASETS).map((view, i) => [view, datasets[i].attrArn]),
    );

    this.dashboard = new quicksight.CfnDashboard(this, 'Dashboard', {
      awsAccountId: this.account,
      dashboardId: 'totes-business',
      name: 'Totes Bags — business dashboard',
      definition: dashboardDefinition(arnOf),
      permissions: [{ principal, actions: DASHBOARD_ACTIONS }],
      dashboardPublishOptions: { adHocFilteringOption: { availabilityStatus: 'ENABLED' } },
    });
  }
}

// ------------------------------------------------------------------------------ the dashboard

type Field = quicksight.CfnDashboard.DimensionFieldProperty;
type Measure = quicksight.CfnDashboard.MeasureFieldProperty;
type Visual = quicksight.CfnDashboard.VisualProperty;

const column = (view: string, columnName: string) => ({ dataSetIdentifier: view, columnName });
const dim = (view: string, name: string): Field => ({
  categoricalDimensionField: { fieldId: `${view}.${name}`, column: column(view, name) },
});
const month = (view: string, name: string): Field => ({
  dateDimensionField: { fieldId: `${view}.${name}`, column: column(view, name), dateGranularity: 'MONTH' },
});
const sumId = (view: string, name: string) => `${view}.${name}.sum`;
const sum = (view: string, name: string): Measure => ({
  numericalMeasureField: {
    fieldId: sumId(view, name),
    column: column(view, name),
    aggregationFunction: { simpleNumericalAggregation: 'SUM' },
  },
});
const title = (text: string) => ({ visibility: 'VISIBLE', formatText: { plainText: text } });

function table(visualId: string, text: string, groupBy: Field[], values: Measure[]): Visual {
  return {
    tableVisual: {
      visualId,
      title: title(text),
      chartConfiguration: { fieldWells: { tableAggregatedFieldWells: { groupBy, values } } },
    },
  };
}

/** A horizontal bar chart of the top `top` categories by SUM(view.measure). */
function bar(
  visualId: string,
  text: string,
  view: string,
  category: string,
  measure: string,
  top: number,
): Visual {
  const value = sum(view, measure);
  return {
    barChartVisual: {
      visualId,
      title: title(text),
      chartConfiguration: {
        orientation: 'HORIZONTAL',
        fieldWells: { barChartAggregatedFieldWells: { category: [dim(view, category)], values: [value] } },
        sortConfiguration: {
          categorySort: [{ fieldSort: { fieldId: sumId(view, measure), direction: 'DESC' } }],
          categoryItemsLimit: { itemsLimit: top, otherCategories: 'EXCLUDE' },
        },
      },
    },
  };
}

/** Today and this month, relative to when the dashboard is viewed (like the page's tiles). */
function relativeDateFilter(id: string, granularity: 'DAY' | 'MONTH', visualIds: string[]) {
  return {
    filterGroupId: `filter-${id}`,
    crossDataset: 'SINGLE_DATASET',
    status: 'ENABLED',
    filters: [
      {
        relativeDatesFilter: {
          filterId: id,
          column: column('rpt_sales_by_day', 'order_date'),
          anchorDateConfiguration: { anchorOption: 'NOW' },
          timeGranularity: granularity,
          relativeDateType: 'THIS',
          nullOption: 'NON_NULLS_ONLY',
        },
      },
    ],
    scopeConfiguration: {
      selectedSheets: {
        sheetVisualScopingConfigurations: [{ sheetId: 'sales', scope: 'SELECTED_VISUALS', visualIds }],
      },
    },
  };
}

/** The dashboard's panel titles, the same as the web dashboard's (the template test compares them). */
export const QUICKSIGHT_VISUAL_TITLES = [
  'Sales today',
  'Sales this month',
  'Top 10 designs by units sold',
  'Sales over time',
  'Sales by country',
  'Sales by city',
  'Payments outstanding',
  'Purchase orders by supplier',
  'Purchase orders by item',
  'Pipeline freshness',
] as const;

export function dashboardDefinition(
  arnOf: Record<string, string>,
): quicksight.CfnDashboard.DashboardVersionDefinitionProperty {
  const headline = (v: 'rpt_sales_by_day') => [sum(v, 'orders'), sum(v, 'units_sold'), sum(v, 'revenue')];
  const [today, thisMonth, designs, overTime, countries, cities, payments, suppliers, items, freshness] =
    QUICKSIGHT_VISUAL_TITLES;
  const visuals: Visual[] = [
    table('today', today, [dim('rpt_sales_by_day', 'currency_code')], headline('rpt_sales_by_day')),
    table('month', thisMonth, [dim('rpt_sales_by_day', 'currency_code')], headline('rpt_sales_by_day')),
    bar('designs', designs, 'rpt_top_designs', 'design_name', 'units_sold', 10),
    {
      lineChartVisual: {
        visualId: 'over-time',
        title: title(overTime),
        chartConfiguration: {
          fieldWells: {
            lineChartAggregatedFieldWells: {
              category: [month('rpt_sales_by_month', 'month')],
              values: [sum('rpt_sales_by_month', 'revenue')],
              colors: [dim('rpt_sales_by_month', 'currency_code')],
            },
          },
        },
      },
    },
    bar('countries', countries, 'rpt_sales_by_location', 'delivery_country', 'units_sold', 10),
    table(
      'cities',
      cities,
      [dim('rpt_sales_by_location', 'delivery_city'), dim('rpt_sales_by_location', 'currency_code')],
      [sum('rpt_sales_by_location', 'units_sold'), sum('rpt_sales_by_location', 'revenue')],
    ),
    table(
      'payments',
      payments,
      [
        dim('rpt_payments_by_status', 'status'),
        dim('rpt_payments_by_status', 'direction'),
        dim('rpt_payments_by_status', 'currency_code'),
      ],
      [sum('rpt_payments_by_status', 'payments'), sum('rpt_payments_by_status', 'amount')],
    ),
    table(
      'suppliers',
      suppliers,
      [
        dim('rpt_purchases_by_supplier', 'counterparty_legal_name'),
        dim('rpt_purchases_by_supplier', 'currency_code'),
      ],
      [
        sum('rpt_purchases_by_supplier', 'orders'),
        sum('rpt_purchases_by_supplier', 'item_quantity'),
        sum('rpt_purchases_by_supplier', 'spend'),
      ],
    ),
    table(
      'items',
      items,
      [dim('rpt_purchases_by_item', 'item_code'), dim('rpt_purchases_by_item', 'currency_code')],
      [sum('rpt_purchases_by_item', 'item_quantity'), sum('rpt_purchases_by_item', 'spend')],
    ),
    {
      tableVisual: {
        visualId: 'freshness',
        title: title(freshness),
        chartConfiguration: {
          fieldWells: {
            tableUnaggregatedFieldWells: {
              values: ['warehouse_table', 'newest_commit_ts', 'last_loaded_at'].map((name) => ({
                fieldId: `rpt_pipeline_tables.${name}`,
                column: column('rpt_pipeline_tables', name),
              })),
            },
          },
        },
      },
    },
  ];
  return {
    dataSetIdentifierDeclarations: Object.entries(arnOf).map(([identifier, dataSetArn]) => ({
      identifier,
      dataSetArn,
    })),
    sheets: [{ sheetId: 'sales', name: 'Totes Bags', visuals }],
    filterGroups: [
      relativeDateFilter('today', 'DAY', ['today']),
      relativeDateFilter('month', 'MONTH', ['month']),
    ],
  };
}
