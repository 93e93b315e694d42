#!/usr/bin/env node
// Runs the compiled CLI when `npm run build` has produced it, the TypeScript source through tsx otherwise.
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
