/**
 * Runs one Lambda bundle the way the Lambda runtime does, in this (child) process: the environment
 * is the function's, the module is loaded once, `handler` is called with the event read from stdin
 * and a context. Prints, after the metric lines the function writes to stdout (EMF), a last line
 * `@@reply@@{"ok":true,"result":…}` or `@@reply@@{"ok":false,"error":…}`.
 *
 *   node --import tsx infra/test-support/invoke-bundle.ts <bundle>/index.js < event.json
 */
const [bundle] = process.argv.slice(2);
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk: string) => (input += chunk));
process.stdin.on('end', async () => {
  let reply: { ok: boolean; result?: unknown; error?: string };
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports, security/detect-non-literal-require -- the bundle under test
    const { handler } = require(bundle) as {
      handler: (event: unknown, context: unknown) => Promise<unknown>;
    };
    reply = { ok: true, result: await handler(JSON.parse(input), { awsRequestId: 'bundle-test' }) };
  } catch (e) {
    reply = { ok: false, error: String((e as Error)?.stack ?? e) };
  }
  // A warm pool (load) would keep the process alive, as a frozen Lambda container's does.
  process.stdout.write(`\n@@reply@@${JSON.stringify(reply)}\n`, () => process.exit(0));
});
