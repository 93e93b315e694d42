import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as logs from 'aws-cdk-lib/aws-logs';
import { PipelineFunction } from './constructs/pipeline-function';
import { HANDLER_ENTRIES } from './stacks/pipeline-stack';
import { cdkJsonContext } from './test-support/synth';

// Real bundling, as `cdk synth` and `cdk deploy` do it: esbuild from node_modules, no Docker. The
// other infra tests skip it; this one proves the handlers bundle and the load bundle carries its SQL.

describe('PipelineFunction bundling (esbuild, offline)', () => {
  let outdir: string;
  let template: Template;
  beforeAll(() => {
    outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-bundle-'));
    const app = new App({ outdir, context: cdkJsonContext() });
    const stack = new Stack(app, 'Bundles');
    const common = {
      logRetentionDays: logs.RetentionDays.ONE_WEEK,
      tracing: false,
      memorySizeMiB: 512,
      timeout: Duration.minutes(1),
    };
    new PipelineFunction(stack, 'FirehoseTransform', {
      ...common,
      entry: HANDLER_ENTRIES.firehoseTransform,
      stage: 'firehose-transform',
      description: 'bundle test',
    });
    new PipelineFunction(stack, 'Transform', {
      ...common,
      entry: HANDLER_ENTRIES.transform,
      stage: 'transform',
      description: 'bundle test',
    });
    new PipelineFunction(stack, 'Load', {
      ...common,
      entry: HANDLER_ENTRIES.load,
      stage: 'load',
      description: 'bundle test',
      bundleFiles: [{ from: 'processors/load/migrations', to: 'migrations' }],
    });
    app.synth();
    template = Template.fromStack(stack);
  }, 180_000);
  afterAll(() => fs.rmSync(outdir, { recursive: true, force: true }));

  const assetDirOf = (prefix: string) => {
    const [fn] = Object.entries(template.findResources('AWS::Lambda::Function')).filter(([id]) =>
      id.startsWith(`${prefix}Function`),
    );
    // The code's S3 key is `<asset hash>.zip`; the staged bundle is `asset.<asset hash>/`.
    const key: string = fn[1].Properties.Code.S3Key['Fn::Sub'] ?? fn[1].Properties.Code.S3Key;
    return path.join(outdir, `asset.${path.basename(key, '.zip')}`);
  };

  it.each(['FirehoseTransform', 'Transform', 'Load'])(
    '%s bundles into one index.js with its source map',
    (name) => {
      const files = fs.readdirSync(assetDirOf(name)).sort();

      expect(files).toEqual(expect.arrayContaining(['index.js', 'index.js.map']));
      expect(files.filter((f) => f.endsWith('.js'))).toEqual(['index.js']);
    },
  );

  it('load carries the warehouse migrations beside the handler', () => {
    const migrations = path.join(assetDirOf('Load'), 'migrations');

    expect(fs.readdirSync(migrations)).toEqual(
      fs.readdirSync(path.join(__dirname, '..', 'processors', 'load', 'migrations')),
    );
  });

  it('bundles the AWS SDK instead of relying on the runtime copy', () => {
    const bundle = fs.readFileSync(path.join(assetDirOf('Transform'), 'index.js'), 'utf8');

    expect(bundle).not.toMatch(/require\(["']@aws-sdk\/client-s3["']\)/);
  });
});
