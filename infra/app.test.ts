import { Token } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { STACK_NAMES } from './app';
import { synthTotes, type SynthesizedTotes } from './test-support/synth';

// One synthesis of the whole app with cdk.json's defaults untouched, as `npx cdk synth` runs it.
let synth: SynthesizedTotes;
beforeAll(() => {
  synth = synthTotes();
});
afterAll(() => synth?.cleanup());
afterEach(() => jest.restoreAllMocks());

const nagViolations = (report: SynthesizedTotes['report']) =>
  report.pluginReports
    .filter((p) => p.pluginName === 'AwsSolutions')
    .flatMap((p) => p.violations)
    .filter((v) => v.ruleName.startsWith('AwsSolutions-'));

describe('the app', () => {
  it('passes cdk-nag (AwsSolutions): synthesis succeeds and reports no finding', () => {
    // Synthesis throws on an unacknowledged error; warnings would still be listed in the report.
    expect(nagViolations(synth.report)).toEqual([]);
  });

  it('runs cdk-nag for real: a bucket without TLS enforcement or access logs fails synthesis', () => {
    // The CDK prints the failed validation report; it is expected here.
    jest.spyOn(console, 'error').mockImplementation(() => undefined);
    const spoiled = () =>
      synthTotes(
        { 'totes:alarmEmail': 'data@example.com' },
        { beforeSynth: ({ pipeline }) => void new s3.Bucket(pipeline, 'Careless') },
      );

    expect(spoiled).toThrow(/AwsSolutions-S1[\s\S]*Careless|Careless[\s\S]*AwsSolutions-S1/);
  });

  it('passes cdk-nag with the other branches of the configuration too', () => {
    const other = synthTotes({
      'totes:warehouse': 'existing',
      'totes:warehouseSecretArn':
        'arn:aws:secretsmanager:eu-west-2:123456789012:secret:totes/warehouse-AbCdEf',
      'totes:warehouseCidr': '10.9.0.0/16',
      'totes:sourceSecretArn': 'arn:aws:secretsmanager:eu-west-2:123456789012:secret:totes/source-AbCdEf',
      'totes:sourceCidr': '10.20.0.0/16',
      'totes:streamMode': 'PROVISIONED',
      'totes:captureCpuArchitecture': 'ARM64',
      'totes:tracing': true,
      'totes:alarmEmail': 'data@example.com',
    });
    try {
      expect(nagViolations(other.report)).toEqual([]);
      other.pipeline.hasResourceProperties('AWS::Lambda::Function', { TracingConfig: { Mode: 'Active' } });
      // A source secret of one's own: capture runs from the first deployment.
      other.pipeline.hasResourceProperties('AWS::ECS::Service', { DesiredCount: 1 });
      other.pipeline.hasResourceProperties('AWS::ECS::TaskDefinition', {
        RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
      });
    } finally {
      other.cleanup();
    }
  });

  it('is two env-agnostic stacks, the pipeline deployed after the stateful one', () => {
    const { stateful, pipeline } = synth.stacks;

    expect([stateful.stackName, pipeline.stackName]).toEqual([STACK_NAMES.stateful, STACK_NAMES.pipeline]);
    expect(Token.isUnresolved(stateful.account)).toBe(true);
    expect(Token.isUnresolved(pipeline.region)).toBe(true);
    expect(pipeline.dependencies).toEqual([stateful]);
  });

  it('warns, in the validation report, about the settings a real deployment must change', () => {
    const annotations = synth.report.pluginReports.find((p) => p.pluginName === 'Construct Annotations');
    const messages = JSON.stringify(annotations?.violations ?? []);

    expect(messages).toContain('totes:sourceCidr is 0.0.0.0/0');
    expect(messages).toContain('totes:alarmEmail is empty');
  });
});
