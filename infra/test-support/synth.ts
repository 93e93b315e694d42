import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { buildTotesApp, type TotesStacks } from '../app';
import { readTotesConfig, type TotesConfig } from '../config';
import { REPO_ROOT } from '../constructs/pipeline-function';
import { HANDLER_ENTRIES, type HandlerName } from '../stacks/pipeline-stack';

/** The stub module tests use in place of a handler that does not exist yet. */
export const STUB_HANDLER = 'infra/test-support/stub-handler.ts';

/** The context `cdk synth` uses: cdk.json's. */
export function cdkJsonContext(): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'cdk.json'), 'utf8')).context;
}

/** Handlers named by HANDLER_ENTRIES that are not in this checkout yet. */
export function missingHandlers(): HandlerName[] {
  return (Object.keys(HANDLER_ENTRIES) as HandlerName[]).filter(
    (name) => !fs.existsSync(path.join(REPO_ROOT, HANDLER_ENTRIES[name])),
  );
}

export interface SynthesizedTotes {
  app: App;
  config: TotesConfig;
  stacks: TotesStacks;
  stateful: Template;
  pipeline: Template;
  outdir: string;
  /** The validation report (cdk-nag's and the construct annotations' findings). */
  report: ValidationReport;
  cleanup(): void;
}

export interface ValidationReport {
  pluginReports: {
    pluginName: string;
    conclusion: string;
    violations: { ruleName: string; severity: string; violatingConstructs: { constructPath: string }[] }[];
  }[];
}

/**
 * Builds and synthesizes the whole app as `cdk synth` would (cdk.json's context, cdk-nag included),
 * with asset bundling skipped: esbuild and Docker never run, assets are only staged. Synthesis
 * throws when cdk-nag reports an unacknowledged error.
 */
export function synthTotes(
  context: Record<string, unknown> = {},
  options: { beforeSynth?: (stacks: TotesStacks) => void } = {},
): SynthesizedTotes {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-cdk-'));
  const app = new App({
    outdir,
    context: { ...cdkJsonContext(), 'aws:cdk:bundling-stacks': [], ...context },
  });
  const config = readTotesConfig((key) => app.node.tryGetContext(key), {});
  const handlerEntries = Object.fromEntries(missingHandlers().map((name) => [name, STUB_HANDLER]));
  const stacks = buildTotesApp(app, config, { handlerEntries });
  const cleanup = () => fs.rmSync(outdir, { recursive: true, force: true });
  options.beforeSynth?.(stacks);
  try {
    app.synth();
  } catch (e) {
    cleanup();
    throw e;
  }
  const report = JSON.parse(fs.readFileSync(path.join(outdir, 'validation-report.json'), 'utf8'));
  return {
    app,
    config,
    stacks,
    stateful: Template.fromStack(stacks.stateful),
    pipeline: Template.fromStack(stacks.pipeline),
    outdir,
    report,
    cleanup,
  };
}

/**
 * A CloudFormation value as text: `Ref` → `<Name>`, `Fn::GetAtt` → `<Resource.Attribute>`,
 * `Fn::GetStackOutput` → `<Stack:Output>`, `Fn::Join` joined. Makes IAM statements readable in asserts.
 */
export function render(value: unknown): string {
  if (typeof value === 'string') return value;
  const v = value as Record<string, unknown>;
  if (typeof v?.Ref === 'string') return `<${v.Ref}>`;
  if (Array.isArray(v?.['Fn::GetAtt'])) return `<${(v['Fn::GetAtt'] as string[]).join('.')}>`;
  const output = v?.['Fn::GetStackOutput'] as { StackName: string; OutputName: string } | undefined;
  if (output) return `<${output.StackName}:${output.OutputName}>`;
  const join = v?.['Fn::Join'] as [string, unknown[]] | undefined;
  if (join) return join[1].map(render).join(join[0]);
  return JSON.stringify(value);
}

export interface RenderedStatement {
  actions: string[];
  resources: string[];
  effect: string;
}

const asArray = <T>(x: T | T[] | undefined): T[] => (x === undefined ? [] : Array.isArray(x) ? x : [x]);

/** Every statement of every policy attached to the role with this logical id, rendered. */
export function roleStatements(template: Template, roleLogicalId: string): RenderedStatement[] {
  const policies = template.findResources('AWS::IAM::Policy');
  return Object.values(policies)
    .filter((p) => asArray(p.Properties.Roles).some((r) => render(r) === `<${roleLogicalId}>`))
    .flatMap((p) => asArray(p.Properties.PolicyDocument.Statement))
    .map((s: { Action: string | string[]; Resource: unknown; Effect: string }) => ({
      actions: asArray(s.Action).sort(),
      resources: asArray(s.Resource).map(render).sort(),
      effect: s.Effect,
    }));
}

/**
 * A role's permissions as sorted `action resource` lines: independent of how the CDK merges
 * statements, and exact, so an extra action or a wider resource fails the assertion.
 */
export function roleGrants(template: Template, roleLogicalId: string): string[] {
  return roleStatements(template, roleLogicalId)
    .flatMap((s) =>
      s.actions.flatMap((a) => s.resources.map((r) => `${s.effect === 'Allow' ? '' : 'DENY '}${a} ${r}`)),
    )
    .sort();
}

/** Logical id of the only resource of `type` whose logical id starts with `prefix`. */
export function logicalId(template: Template, type: string, prefix: string): string {
  const ids = Object.keys(template.findResources(type)).filter((id) => id.startsWith(prefix));
  if (ids.length !== 1)
    throw new Error(`expected one ${type} starting ${prefix}, found ${ids.join(', ') || 'none'}`);
  return ids[0];
}
