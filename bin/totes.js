#!/usr/bin/env node
// Runs the compiled CLI when `npm run build` has produced it, the TypeScript source through tsx otherwise.
// The AWS SDK warns on every start that its 2027 releases need Node 22; README "Limits" says so once.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const path = require('node:path');
const fs = require('node:fs');
const compiled = path.join(__dirname, '..', 'dist', 'cli', 'totes.js');
let cli;
if (fs.existsSync(compiled)) {
  cli = require(compiled);
} else {
  require('tsx/cjs');
  cli = require('../cli/totes.ts');
}
cli.main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`totes: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
