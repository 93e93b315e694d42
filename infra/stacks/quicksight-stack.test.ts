import { Template } from 'aws-cdk-lib/assertions';
import { synthTotes, type SynthesizedTotes, render } from '../test-support/synth';
import {
  QUICKSIGHT_VISUAL_TITLES,
  QuicksightConfigError,
  readQuicksightConfig,
  REPORTING_DATASETS,
} from './quicksight-stack';

const SECRET = 'arn:aws:secretsmanager:eu-west-2:123456789012:secret:totes-reporting-AbCdEf';
const PRINCIPAL = 'arn:aws:quicksight:eu-west-2:123456789012:group/default/totes-analysts';
const CONTEXT = {
  'totes:quicksight': 'true',
  'totes:quicksightReportingSecretArn': SECRET,
  'totes:quicksightPrincipalArn': PRINCIPAL,
};

let synth: SynthesizedTotes;
let template: Template;
beforeAll(() => {
  synth = synthTotes(CONTEXT);
  template = Template.fromStack(synth.stacks.quicksight!);
});
afterAll(() => synth?.cleanup());

const one = (type: string) => Object.values(template.findResources(type))[0].Properties;

describe('the QuickSight stack (optional, --context totes:quicksight=true)', () => {
  it('is absent by default, and refuses an incomplete configuration', () => {
    expect(readQuicksightConfig(() => undefined)).toBeNull();
    expect(() => readQuicksightConfig((k) => (k === 'totes:quicksight' ? 'true' : undefined))).toThrow(
      QuicksightConfigError,
    );
    expect(() =>
      readQuicksightConfig((k) => ({ ...CONTEXT, 'totes:quicksightPrincipalArn': 'analysts' })[k]),
    ).toThrow(/totes:quicksightPrincipalArn must be a QuickSight user or group ARN/);
    expect(readQuicksightConfig((k) => (CONTEXT as Record<string, string>)[k])).toEqual({
      reportingSecretArn: SECRET,
      principalArn: PRINCIPAL,
    });
  });

  it('passes cdk-nag with it', () => {
    const violations = synth.report.pluginReports
      .filter((p) => p.pluginName === 'AwsSolutions')
      .flatMap((p) => p.violations)
      .filter((v) => v.ruleName.startsWith('AwsSolutions-'))
      .filter((v) => v.violatingConstructs.some((c) => c.constructPath.startsWith('Totes-QuickSight')));
    expect(violations).toEqual([]);
  });

  it('connects through the VPC, as a warehouse client, with a role QuickSight assumes', () => {
    const connection = one('AWS::QuickSight::VPCConnection');
    expect(connection.SecurityGroupIds).toHaveLength(2);
    expect(connection.SubnetIds.length).toBeGreaterThan(0);
    const role = one('AWS::IAM::Role');
    expect(role.AssumeRolePolicyDocument.Statement[0].Principal).toEqual({
      Service: 'quicksight.amazonaws.com',
    });
    expect(role.Policies[0].PolicyDocument.Statement[0].Action).toEqual(
      expect.arrayContaining(['ec2:CreateNetworkInterface', 'ec2:DeleteNetworkInterface']),
    );
  });

  it("reads the warehouse with the reporting role's secret, over TLS", () => {
    const source = one('AWS::QuickSight::DataSource');
    expect(source).toMatchObject({
      Type: 'POSTGRESQL',
      Credentials: { SecretArn: SECRET },
      SslProperties: { DisableSsl: false },
      DataSourceParameters: { PostgreSqlParameters: { Database: 'warehouse', Port: 5432 } },
    });
    expect(render(source.DataSourceParameters.PostgreSqlParameters.Host)).toMatch(
      /Totes-Stateful:.*Endpoint|<.*>/,
    );
    expect(render(source.VpcConnectionProperties.VpcConnectionArn)).toMatch(/VpcConnection.*\.Arn>$/);
    expect(source.Permissions).toEqual([{ Principal: PRINCIPAL, Actions: expect.any(Array) }]);
  });

  it('has one live (DIRECT_QUERY) dataset per reporting view, with its columns', () => {
    const datasets = Object.values(template.findResources('AWS::QuickSight::DataSet')).map(
      (d) => d.Properties,
    );
    expect(datasets.map((d) => d.PhysicalTableMap.view.RelationalTable.Name).sort()).toEqual(
      Object.keys(REPORTING_DATASETS).sort(),
    );
    for (const d of datasets) {
      expect(d.ImportMode).toBe('DIRECT_QUERY');
      const table = d.PhysicalTableMap.view.RelationalTable;
      expect(table.InputColumns).toEqual(
        Object.entries(REPORTING_DATASETS[table.Name]).map(([Name, Type]) => ({ Name, Type })),
      );
    }
  });

  it("defines the dashboard with the web dashboard's panels, each on a declared dataset", () => {
    const dashboard = one('AWS::QuickSight::Dashboard');
    const definition = dashboard.Definition;
    const visuals = definition.Sheets[0].Visuals as Record<
      string,
      { Title: { FormatText: { PlainText: string } } }
    >[];
    expect(visuals.map((v) => Object.values(v)[0].Title.FormatText.PlainText)).toEqual([
      ...QUICKSIGHT_VISUAL_TITLES,
    ]);
    const declared = new Set(
      definition.DataSetIdentifierDeclarations.map((d: { Identifier: string }) => d.Identifier),
    );
    const used = JSON.stringify(visuals)
      .match(/"DataSetIdentifier":"([a-z_]+)"/g)!
      .map((m) => m.split('"')[3]);
    expect(used.every((u) => declared.has(u))).toBe(true);
    expect(
      definition.FilterGroups.map(
        (g: { Filters: { RelativeDatesFilter: { TimeGranularity: string } }[] }) =>
          g.Filters[0].RelativeDatesFilter.TimeGranularity,
      ),
    ).toEqual(['DAY', 'MONTH']);
  });
});
