import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { awsClientConfig, awsRequestHandler } from './request-handler';

/** The text between the parenthesis opened just before `start` and the one that closes it. */
function argumentsAt(text: string, start: number): string {
  let depth = 1;
  for (let i = start; i < text.length; i++) {
    if (text[i] === '(') depth++;
    else if (text[i] === ')' && --depth === 0) return text.slice(start, i);
  }
  return text.slice(start);
}

describe('AWS calls have deadlines', () => {
  it('ends a call that never gets an answer', async () => {
    const server = net.createServer(() => undefined); // accepts, never answers
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as net.AddressInfo;
    const s3 = new S3Client({
      region: 'us-east-1',
      endpoint: `http://127.0.0.1:${port}`,
      forcePathStyle: true,
      credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
      requestHandler: awsRequestHandler({ requestMs: 300 }),
      maxAttempts: 1,
    });
    try {
      await expect(s3.send(new GetObjectCommand({ Bucket: 'b', Key: 'k' }))).rejects.toThrow(/timeout/i);
    } finally {
      s3.destroy();
      server.close();
    }
  });

  it('gives a region only when one is named', () => {
    expect(awsClientConfig('eu-west-2')).toMatchObject({ region: 'eu-west-2' });
    expect(awsClientConfig()).not.toHaveProperty('region');
  });

  // A guard in the spirit of a lint rule: a client built anywhere else without the handler would
  // bring back calls that can hang. The local runtime (kinesalite, s3rver) and the bench build theirs
  // for local peers and are left out.
  it('is what every AWS SDK client outside the local runtime and the bench is built with', () => {
    const root = path.resolve(__dirname, '..');
    const sources: string[] = [];
    const walk = (dir: string) => {
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(full);
        else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) sources.push(full);
      }
    };
    for (const dir of ['capture', 'processors', 'cli', 'core', 'dashboard', 'totesys'])
      walk(path.join(root, dir));
    const unguarded: string[] = [];
    for (const file of sources) {
      const text = fs.readFileSync(file, 'utf8');
      for (const m of text.matchAll(/new (\w+Client)\(/g)) {
        const isSdk = new RegExp(`import \\{[^}]*\\b${m[1]}\\b[^}]*\\} from '@aws-sdk/`).test(text);
        if (isSdk && !/awsClientConfig|requestHandler/.test(argumentsAt(text, m.index + m[0].length)))
          unguarded.push(`${path.relative(root, file)}: new ${m[1]}(…)`);
      }
    }
    expect(sources.length).toBeGreaterThan(50);
    expect(unguarded).toEqual([]);
  });
});
