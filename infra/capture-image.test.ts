import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from './constructs/pipeline-function';

/**
 * capture/Dockerfile's build stage, without Docker: the build context is made as Docker makes it
 * (the root .dockerignore, an allowlist), the stage's COPY steps are followed, and its compile step
 * runs there. A source file the image needs but the context leaves out, a COPY of something
 * missing, or a type error fails here instead of in `cdk deploy`. `npm ci` is the one step not
 * repeated: node_modules is linked from this checkout (the same package-lock.json).
 */

interface BuildStage {
  copies: { from: string; to: string }[];
  runs: string[];
}

/** The `AS build` stage's COPY (from the context) and RUN instructions, in order. */
function buildStageOf(dockerfile: string): BuildStage {
  const lines = dockerfile.split('\n');
  const start = lines.findIndex((l) => /^FROM\s+\S+\s+AS\s+build\b/i.test(l));
  if (start < 0) throw new Error('capture/Dockerfile has no `FROM … AS build` stage');
  const stage: BuildStage = { copies: [], runs: [] };
  for (const line of lines.slice(start + 1)) {
    if (/^FROM\s/i.test(line)) break;
    const copy = /^COPY\s(?!\s*--from)(.+)$/i.exec(line);
    if (copy) {
      const parts = copy[1].trim().split(/\s+/);
      const to = parts.pop()!;
      for (const from of parts) stage.copies.push({ from, to });
    }
    const run = /^RUN\s(.+)$/i.exec(line);
    if (run) stage.runs.push(run[1].trim());
  }
  return stage;
}

/** .dockerignore as Docker reads it: later lines win; `!` re-includes. Enough for `*`, names and `**\/*.ext`. */
function dockerIgnored(ignoreFile: string): (relative: string) => boolean {
  const rules = ignoreFile
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = negate ? l.slice(1) : l;
      const regex = new RegExp(
        `^${pattern
          .replace(/[.+^${}()|[\]\\]/g, '\\$&')
          .replace(/\*\*\//g, '(?:.*/)?')
          .replace(/\*/g, '[^/]*')}(?:/.*)?$`,
      );
      return { negate, regex };
    });
  return (relative) => {
    let ignored = false;
    for (const rule of rules) if (rule.regex.test(relative)) ignored = !rule.negate;
    return ignored;
  };
}

function copyContext(from: string, to: string, ignored: (relative: string) => boolean, relative = ''): void {
  for (const entry of fs.readdirSync(path.join(from, relative), { withFileTypes: true })) {
    const rel = relative ? `${relative}/${entry.name}` : entry.name;
    if (entry.isDirectory()) {
      if (['node_modules', '.git'].includes(entry.name)) continue;
      copyContext(from, to, ignored, rel);
    } else if (!ignored(rel)) {
      fs.mkdirSync(path.dirname(path.join(to, rel)), { recursive: true });
      fs.copyFileSync(path.join(from, rel), path.join(to, rel));
    }
  }
}

describe('the capture image (capture/Dockerfile)', () => {
  const dockerfile = fs.readFileSync(path.join(REPO_ROOT, 'capture', 'Dockerfile'), 'utf8');
  const ignored = dockerIgnored(fs.readFileSync(path.join(REPO_ROOT, '.dockerignore'), 'utf8'));

  it('reads the build stage and the allowlist as Docker does', () => {
    const stage = buildStageOf(dockerfile);
    expect(stage.copies).toContainEqual({ from: 'capture', to: 'capture' });
    expect(stage.runs).toEqual(['npm ci --ignore-scripts --no-audit --no-fund', 'npm run build']);
    expect(ignored('node_modules/pg/index.js')).toBe(true);
    expect(ignored('capture/main.ts')).toBe(false);
    expect(ignored('capture/main.test.ts')).toBe(true);
    expect(ignored('.totes/runtime.json')).toBe(true);
  });

  it('compiles from its build context alone, and the result starts', () => {
    // Prepare: the context Docker would send, and the build stage's COPY steps inside it.
    const context = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-capture-context-'));
    const app = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-capture-app-'));
    try {
      copyContext(REPO_ROOT, context, ignored);
      const stage = buildStageOf(dockerfile);
      for (const { from, to } of stage.copies) {
        const source = path.join(context, from);
        expect({ copy: from, inContext: fs.existsSync(source) }).toEqual({ copy: from, inContext: true });
        const target = to === './' ? path.join(app, path.basename(from)) : path.join(app, to);
        fs.cpSync(source, target, { recursive: true });
      }
      fs.symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(app, 'node_modules'), 'dir');
      expect(stage.runs).toContain('npm run build');
      const build = JSON.parse(fs.readFileSync(path.join(app, 'package.json'), 'utf8')).scripts
        .build as string;
      expect(build).toBe('tsc -p tsconfig.build.json');

      // Act: the stage's compile step (what `npm run build` runs), then the image's CMD, unconfigured.
      try {
        execFileSync(
          process.execPath,
          [path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'],
          { cwd: app, stdio: 'pipe' },
        );
      } catch (e) {
        // tsc reports on stdout: name the files the image cannot compile.
        throw new Error(`the build stage's tsc failed:\n${String((e as { stdout?: Buffer }).stdout ?? e)}`, {
          cause: e,
        });
      }
      let startup = '';
      try {
        execFileSync(process.execPath, ['dist/capture/main.js'], {
          cwd: app,
          stdio: 'pipe',
          env: { PATH: process.env.PATH, NODE_ENV: 'production' },
          timeout: 30_000,
        });
      } catch (e) {
        startup = String((e as { stderr?: Buffer }).stderr ?? '');
      }

      // Assess: it built, and it stopped on its missing configuration, not on a missing module.
      expect(fs.existsSync(path.join(app, 'dist', 'capture', 'main.js'))).toBe(true);
      expect(startup).not.toMatch(/Cannot find module|MODULE_NOT_FOUND/);
      expect(startup).toMatch(/TOTES_|source|required/i);
    } finally {
      fs.rmSync(context, { recursive: true, force: true });
      fs.rmSync(app, { recursive: true, force: true });
    }
  }, 300_000);
});
