import { Annotations, type App, Tags, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { configWarnings, type TotesConfig } from './config';
import { PipelineStack, type PipelineStackProps } from './stacks/pipeline-stack';
import { QuicksightStack, readQuicksightConfig } from './stacks/quicksight-stack';
import { StatefulStack } from './stacks/stateful-stack';

export const STACK_NAMES = { stateful: 'Totes-Stateful', pipeline: 'Totes-Pipeline' } as const;

export interface TotesStacks {
  stateful: StatefulStack;
  pipeline: PipelineStack;
  /** Only with `--context totes:quicksight=true` (docs/deploy.md). */
  quicksight?: QuicksightStack;
}

export interface BuildOptions {
  /** Handler modules by function (tests point missing ones elsewhere). */
  handlerEntries?: PipelineStackProps['handlerEntries'];
}

/**
 * The whole app: the stateful stack (stream, buckets, secrets, network, warehouse) and the pipeline
 * stack (compute, alarms) that depends on it, checked by cdk-nag's AWS Solutions rules during
 * synthesis. cdk-nag 3 is a CDK policy-validation plugin: an unacknowledged error fails `cdk synth`
 * (and `app.synth()` in the tests), and every finding lands in cdk.out/validation-report.json.
 * Acknowledgements sit beside the resources they concern (infra/acknowledge.ts), each with its reason.
 */
export function buildTotesApp(app: App, config: TotesConfig, options: BuildOptions = {}): TotesStacks {
  const env = config.env;
  const stateful = new StatefulStack(app, STACK_NAMES.stateful, {
    config,
    env,
    description: 'totes CDC pipeline: change stream, buckets, secrets, network, warehouse (all retained)',
  });
  const pipeline = new PipelineStack(app, STACK_NAMES.pipeline, {
    config,
    stateful,
    env,
    description: 'totes CDC pipeline: capture service, Firehose, transform and load functions, alarms',
    handlerEntries: options.handlerEntries,
  });
  pipeline.addStackDependency(stateful);
  const quicksightConfig = readQuicksightConfig((key) => app.node.tryGetContext(key));
  const quicksight = quicksightConfig
    ? new QuicksightStack(app, 'Totes-QuickSight', {
        config: quicksightConfig,
        stateful,
        warehousePort: config.warehouse.port,
        env,
        description: 'totes business dashboard in QuickSight, over the reporting views (optional)',
      })
    : undefined;

  for (const stack of [stateful, pipeline, ...(quicksight ? [quicksight] : [])]) {
    Tags.of(stack).add('project', 'totes');
    for (const warning of configWarnings(config)) Annotations.of(stack).addWarningV2('totes:config', warning);
  }
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
  return { stateful, pipeline, quicksight };
}
