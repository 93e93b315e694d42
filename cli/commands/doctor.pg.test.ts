import { spawnSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { TOTESYS_TABLES } from '../../core/totesys-tables';
import { createTestDatabase, withClient, withDatabase } from '../../test/support/pg';
import { runTotes } from '../../test/support/cli';

// Roles and slots are cluster-wide: names carry the worker's pid so parallel runs never collide.
const suffix = process.pid;
const SLOT = `doctor_cli_${suffix}`;
const ROLE = `doctor_cli_reader_${suffix}`;
const SECRET = `s3cret-${suffix}`;

let goodUrl: string;
let badUrl: string;

const doctor = (...args: string[]) => runTotes('doctor', ...args);

async function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer().on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

beforeAll(async () => {
  goodUrl = await createTestDatabase('doctor_cli');
  await withClient(goodUrl, async (c) => {
    for (const t of TOTESYS_TABLES) await c.query(`CREATE TABLE ${t} (id int PRIMARY KEY)`);
    await c.query(`CREATE PUBLICATION totes_pub FOR TABLE ${TOTESYS_TABLES.join(', ')}`);
    await c.query(`DROP ROLE IF EXISTS ${ROLE}`);
    await c.query(`CREATE ROLE ${ROLE} LOGIN PASSWORD '${SECRET}'`);
    await c.query(`DROP ROLE IF EXISTS ${ROLE}_nologin`);
    await c.query(`CREATE ROLE ${ROLE}_nologin NOLOGIN PASSWORD '${SECRET}'`);
  });
  const u = new URL(goodUrl);
  u.username = ROLE;
  u.password = SECRET;
  badUrl = u.toString();
});

afterAll(async () => {
  await withClient(goodUrl, (c) => c.query(`DROP ROLE ${ROLE}, ${ROLE}_nologin`));
});

describe('totes doctor (real Postgres)', () => {
  it('exits 0 for a source ready for capture, listing each passed check', async () => {
    const { code, out, err } = await doctor('--source-url', goodUrl, '--slot', SLOT);
    expect(err).toBe('');
    expect(code).toBe(0);
    const lines = out.split('\n');
    expect(lines[0]).toMatch(
      /^totes doctor: postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/t_doctor_cli_\d+$/,
    );
    expect(lines[1]).toBe(`  publication totes_pub, slot ${SLOT}, 11 tables`);
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^✓ PostgreSQL 17\./),
        '✓ wal_level is logical',
        '✓ All captured tables (11) exist, are readable and identify their rows',
        '✓ Publication totes_pub covers every captured table',
        'Ready for capture: all 8 checks passed.',
      ]),
    );
    expect(out).not.toMatch(/[✗!] /);
  });

  it('exits 1 for a role that cannot replicate or read, saying what to run, never the password', async () => {
    const { code, out } = await doctor('--source-url', badUrl, '--slot', SLOT, '--tables', 'staff, payment');
    expect(code).toBe(1);
    expect(out).not.toContain(SECRET);
    expect(out).toContain(`totes doctor: postgres://${ROLE}:***@`);
    const lines = out.split('\n');
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(new RegExp(`^✗ Role ${ROLE} can neither create a replication slot`)),
        `    fix: ALTER ROLE ${ROLE} WITH REPLICATION;`,
        `         On Amazon RDS or Aurora: GRANT rds_replication TO ${ROLE};`,
        `✗ Role ${ROLE} cannot SELECT from staff, payment, which the initial snapshot reads.`,
        `    fix: GRANT SELECT ON public.staff, public.payment TO ${ROLE};`,
        '2 errors, 0 warnings: capture cannot start until the errors are fixed.',
      ]),
    );
  });

  it('exits 1 when the snapshot and the stream would disagree, printing each fix', async () => {
    await withClient(goodUrl, async (c) => {
      await c.query(
        'CREATE TABLE priced (id int PRIMARY KEY, net int, gross int GENERATED ALWAYS AS (net * 2) STORED)',
      );
      await c.query('CREATE PUBLICATION priced_pub FOR TABLE priced WHERE (net > 0)');
    });
    const { code, out } = await doctor(
      '--source-url',
      goodUrl,
      '--slot',
      SLOT,
      '--publication',
      'priced_pub',
      '--tables',
      'priced',
    );
    expect(code).toBe(1);
    const lines = out.split('\n');
    expect(lines).toEqual(
      expect.arrayContaining([
        '✗ The initial snapshot reads generated columns that the stream does not carry: priced.gross (stored). ' +
          'Logical replication publishes no generated column before PostgreSQL 18, so every later change would arrive without them.',
        '    fix: Make each a plain column the application writes: ALTER TABLE public.priced ALTER COLUMN gross DROP EXPRESSION;',
        '         Or stop capturing the table and compute the value in the warehouse; on PostgreSQL 18 a publication can publish stored generated columns.',
        expect.stringMatching(
          /^✗ Publication priced_pub publishes only the rows of priced WHERE \(net > 0\): /,
        ),
        '    fix: BEGIN; ALTER PUBLICATION priced_pub DROP TABLE public.priced; ALTER PUBLICATION priced_pub ADD TABLE public.priced; COMMIT;  -- one transaction, so no change falls between',
        '2 errors, 0 warnings: capture cannot start until the errors are fixed.',
      ]),
    );
  });

  it('prints machine-readable findings and facts with --json', async () => {
    const { code, out } = await doctor(
      '--source-url',
      badUrl,
      '--slot',
      SLOT,
      '--publication',
      'other',
      '--json',
    );
    expect(code).toBe(1);
    expect(out).not.toContain(SECRET);
    const report = JSON.parse(out);
    expect(report).toMatchObject({ ok: false, publication: 'other', slot: SLOT, errors: 3, warnings: 0 });
    const errors = report.findings.filter((f: { severity: string }) => f.severity === 'error');
    expect(errors.map((f: { id: string }) => f.id)).toEqual([
      'replication-privilege',
      'table-select',
      'publication-missing',
    ]);
    expect(errors[2].fix).toMatch(
      /^As the tables' owner or a superuser: CREATE PUBLICATION other FOR TABLE public\.address, /,
    );
    expect(report.facts).toMatchObject({ supported: true, role: { name: ROLE, replication: false } });
  });

  it('reads the URL from TOTES_SOURCE_URL when --source-url is absent', async () => {
    process.env.TOTES_SOURCE_URL = goodUrl;
    try {
      const { code, out } = await doctor('--slot', SLOT, '--json');
      expect(code).toBe(0);
      expect(JSON.parse(out)).toMatchObject({ ok: true, errors: 0, tables: [...TOTESYS_TABLES] });
    } finally {
      delete process.env.TOTES_SOURCE_URL;
    }
  });

  describe('connection failures: one clear sentence, exit 1', () => {
    it('wrong password', async () => {
      const u = new URL(badUrl);
      u.password = 'wrong-password';
      const { code, out, err } = await doctor('--source-url', u.toString());
      expect(code).toBe(1);
      expect(out).toBe('');
      expect(err).toBe(
        `totes doctor: cannot connect to ${u.toString().replace('wrong-password', '***')}: ` +
          `authentication failed for user "${ROLE}": check the user name and password.\n`,
      );
    });

    it('a role that may not log in', async () => {
      const u = new URL(badUrl);
      u.username = `${ROLE}_nologin`;
      const { code, err } = await doctor('--source-url', u.toString());
      expect(code).toBe(1);
      expect(err).toMatch(
        new RegExp(
          `: the server refused the connection \\(role "${ROLE}_nologin" is not permitted to log in\\): check`,
        ),
      );
    });

    it('database missing', async () => {
      const { code, err } = await doctor('--source-url', withDatabase(goodUrl, 'no_such_db'));
      expect(code).toBe(1);
      expect(err).toMatch(/: database "no_such_db" does not exist on 127\.0\.0\.1:\d+\.\n$/);
    });

    it('host unreachable', async () => {
      const port = await closedPort();
      const { code, out, err } = await doctor(
        '--source-url',
        `postgres://u:pw@127.0.0.1:${port}/db`,
        '--json',
      );
      expect(code).toBe(1);
      expect(err).toBe('');
      expect(JSON.parse(out)).toEqual({
        source: `postgres://u:***@127.0.0.1:${port}/db`,
        publication: 'totes_pub',
        slot: 'totes_slot',
        tables: [...TOTESYS_TABLES],
        ok: false,
        connectionError: expect.stringMatching(
          new RegExp(`^host 127\\.0\\.0\\.1:${port} is unreachable \\(ECONNREFUSED\\)`),
        ),
      });
    });

    it('a peer that is not Postgres', async () => {
      const server = net.createServer((socket) => socket.destroy());
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as net.AddressInfo;
      try {
        const { code, err } = await doctor('--source-url', `postgres://u:pw@127.0.0.1:${port}/db`);
        expect(code).toBe(1);
        expect(err).toBe(
          `totes doctor: cannot connect to postgres://u:***@127.0.0.1:${port}/db: 127.0.0.1:${port} closed the ` +
            'connection before Postgres start-up finished: check that a Postgres server listens on that host and port.\n',
        );
      } finally {
        server.close();
      }
    });
  });

  it('rejects bad usage with exit code 2', async () => {
    expect((await doctor()).code).toBe(2);
    expect((await doctor()).err).toMatch(/--source-url is required \(or set TOTES_SOURCE_URL\)/);
    expect((await doctor('--source-url', 'mysql://x@y/z')).err).toMatch(/must be a postgres:\/\/ URL/);
    expect((await doctor('--source-url', 'not a url')).err).toMatch(/must be a postgres:\/\/ URL/);
    expect((await doctor('--source-url', goodUrl, '--tables', ' , ')).err).toMatch(
      /--tables needs at least one/,
    );
    expect((await doctor('--source-url', goodUrl, 'extra')).err).toMatch(/unexpected argument: extra/);
  });

  it('sets the process exit code through bin/totes.js', () => {
    const run = (url: string) =>
      spawnSync(
        process.execPath,
        [path.join(__dirname, '../../bin/totes.js'), 'doctor', '--source-url', url, '--slot', SLOT],
        {
          encoding: 'utf8',
          env: { ...process.env, TOTES_SOURCE_URL: '' },
        },
      );
    expect(run(goodUrl).status).toBe(0);
    const bad = run(badUrl);
    expect(bad.status).toBe(1);
    expect(bad.stdout).toContain('✗ ');
  });
});
