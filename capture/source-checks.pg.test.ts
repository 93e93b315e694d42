import { startOwnCluster } from '../test/support/own-cluster';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, type ClientConfig } from 'pg';
import { TOTESYS_TABLES } from '../core/totesys-tables';
import { removeDataDir } from '../local/postgres-placement';
import { createTestDatabase, testClusterUrl, waitFor, withClient } from '../test/support/pg';
import {
  checkSource,
  FINDING,
  gatherSourceFacts,
  type Finding,
  type FindingId,
  type SourceWant,
} from './source-checks';

// Roles and slots are cluster-wide: names carry the worker's pid so parallel runs never collide.
const suffix = process.pid;
const SLOT = `doctor_checks_${suffix}`;
const READER = `doctor_reader_${suffix}`;
const READER_PASSWORD = `reader-${suffix}`;

let url: string;

function problems(findings: Finding[]): Array<[FindingId, string]> {
  return findings.filter((f) => f.severity !== 'info').map((f) => [f.id, f.severity]);
}

function find(findings: Finding[], id: FindingId): Finding {
  const found = findings.find((f) => f.id === id);
  if (!found) throw new Error(`no ${id} finding in ${JSON.stringify(findings, null, 2)}`);
  return found;
}

async function check(want: Partial<SourceWant>, asUrl = url): Promise<Finding[]> {
  return withClient(asUrl, (c) =>
    checkSource(c, { publication: 'doctor_pub', slot: SLOT, tables: TOTESYS_TABLES, ...want }),
  );
}

/** A walsender connection (`replication=database`), which @types/pg leaves out of ClientConfig. */
function replicationClient(dbUrl: string): Client {
  const config: ClientConfig & { replication: string } = { connectionString: dbUrl, replication: 'database' };
  return new Client(config);
}

/** A replication connection that streams from `slot`, holding it active until ended. */
async function holdSlot(dbUrl: string, slot: string, publication: string): Promise<Client> {
  const client = replicationClient(dbUrl);
  client.on('error', () => undefined); // ending it mid-stream is the point
  await client.connect();
  client
    .query(
      `START_REPLICATION SLOT ${slot} LOGICAL 0/0 (proto_version '1', publication_names '${publication}')`,
    )
    .catch(() => undefined);
  return client;
}

async function slotState(slot: string): Promise<{ active: boolean; active_pid: number | null } | undefined> {
  return withClient(
    url,
    async (c) =>
      (await c.query('SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1', [slot]))
        .rows[0],
  );
}

beforeAll(async () => {
  url = await createTestDatabase('source_checks');
  await withClient(url, async (c) => {
    for (const t of TOTESYS_TABLES) await c.query(`CREATE TABLE ${t} (id int PRIMARY KEY, note text)`);
    await c.query(`CREATE PUBLICATION doctor_pub FOR TABLE ${TOTESYS_TABLES.join(', ')}`);
    // The misconfigured peers: a table nothing can identify rows of, and a narrow publication.
    await c.query('CREATE TABLE no_key (note text)');
    await c.query(`CREATE PUBLICATION inserts_only FOR TABLE staff WITH (publish = 'insert')`);
    await c.query(`DROP ROLE IF EXISTS ${READER}`);
    await c.query(`CREATE ROLE ${READER} LOGIN PASSWORD '${READER_PASSWORD}'`);
    await c.query(`GRANT SELECT ON staff TO ${READER}`);
    // What would make the snapshot and the stream disagree, each on a table of its own.
    await c.query('CREATE TABLE rls_t (id int PRIMARY KEY)');
    await c.query('INSERT INTO rls_t SELECT generate_series(1, 3)');
    await c.query('ALTER TABLE rls_t ENABLE ROW LEVEL SECURITY');
    await c.query(`GRANT SELECT ON rls_t TO ${READER}`);
    await c.query('CREATE TABLE filtered_t (id int PRIMARY KEY, n int)');
    await c.query('CREATE TABLE narrow_t (id int PRIMARY KEY, a text, b text)');
    await c.query('CREATE PUBLICATION narrow_pub FOR TABLE filtered_t WHERE (n > 0), narrow_t (id, a)');
    await c.query(
      'CREATE TABLE generated_t (id int PRIMARY KEY, a int, doubled int GENERATED ALWAYS AS (a * 2) STORED)',
    );
    await c.query('CREATE PUBLICATION generated_pub FOR TABLE generated_t');
  });
});

function urlAs(role: string, password: string): string {
  const u = new URL(url);
  u.username = role;
  u.password = password;
  return u.toString();
}

afterAll(async () => {
  await withClient(url, async (c) => {
    await c.query(
      'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE $1 AND NOT active',
      [`%_${suffix}`],
    );
    await c.query(`DROP OWNED BY ${READER}`);
    await c.query(`DROP ROLE ${READER}`);
  });
});

describe('checkSource against real Postgres', () => {
  it('passes a well-configured source, and a fresh slot is one capture will create', async () => {
    const findings = await check({});
    expect(problems(findings)).toEqual([]);
    expect(find(findings, FINDING.serverVersion).problem).toMatch(/^PostgreSQL 17\./);
    expect(find(findings, FINDING.replicationPrivilege).problem).toMatch(/is a superuser/);
    expect(find(findings, FINDING.slot).problem).toMatch(new RegExp(`^Slot ${SLOT} does not exist yet`));
  });

  it('gathers facts in a handful of read-only queries', async () => {
    await withClient(url, async (c) => {
      const query = jest.spyOn(c, 'query');
      const facts = await gatherSourceFacts(c, { publication: 'doctor_pub', slot: SLOT, tables: ['staff'] });
      expect(query.mock.calls.length).toBeLessThanOrEqual(5);
      for (const [sql] of query.mock.calls) expect(String(sql).trimStart()).toMatch(/^SELECT/);
      expect(facts).toMatchObject({
        supported: true,
        settings: { walLevel: 'logical', maxSlotWalKeepSize: '4GB' },
        publication: {
          insert: true,
          update: true,
          delete: true,
          truncate: true,
          publishedTables: ['public.staff'],
        },
        slot: null,
      });
    });
  });

  it('tells a superuser that the publication is missing, as information: capture creates it', async () => {
    const findings = await check({ publication: 'not_there' });
    expect(problems(findings)).toEqual([]);
    expect(find(findings, FINDING.publicationMissing)).toMatchObject({ severity: 'info' });
  });

  it('finds missing tables, unidentifiable rows and a publication that is too narrow', async () => {
    const findings = await check({ publication: 'inserts_only', tables: ['staff', 'no_key', 'ghost'] });
    expect(problems(findings)).toEqual([
      [FINDING.tablesMissing, 'error'],
      [FINDING.replicaIdentity, 'error'],
      [FINDING.publicationTables, 'error'],
      [FINDING.publicationOperations, 'error'],
    ]);
    expect(find(findings, FINDING.tablesMissing).problem).toContain(': ghost.');
    expect(find(findings, FINDING.replicaIdentity).fix).toContain(
      'ALTER TABLE public.no_key REPLICA IDENTITY FULL;',
    );
    expect(find(findings, FINDING.publicationOperations).problem).toBe(
      'Publication inserts_only does not publish update, delete, truncate.',
    );

    // The fixes the findings print, applied, clear them.
    await withClient(url, async (c) => {
      await c.query(
        find(findings, FINDING.replicaIdentity).fix!.replace(/^.*-- or, with no unique key: /, ''),
      );
      await c.query(find(findings, FINDING.publicationTables).fix!);
      await c.query(find(findings, FINDING.publicationOperations).fix!);
    });
    const after = await check({ publication: 'inserts_only', tables: ['staff', 'no_key'] });
    expect(problems(after)).toEqual([]);
  });

  it('finds what a plain login role lacks: REPLICATION, SELECT, and the right to create the publication', async () => {
    const readerUrl = urlAs(READER, READER_PASSWORD);
    const tables = ['staff', 'sales_order'];
    const findings = await check({ publication: 'not_there', tables }, readerUrl);
    expect(problems(findings)).toEqual([
      [FINDING.replicationPrivilege, 'error'],
      [FINDING.tableSelect, 'error'],
      [FINDING.publicationMissing, 'error'],
    ]);
    expect(find(findings, FINDING.replicationPrivilege).fix).toMatch(
      new RegExp(`^ALTER ROLE ${READER} WITH REPLICATION;`),
    );
    expect(find(findings, FINDING.tableSelect).problem).toContain('cannot SELECT from sales_order,');

    // Applying the printed fixes (as a superuser) clears the role's errors.
    await withClient(url, async (c) => {
      await c.query(find(findings, FINDING.replicationPrivilege).fix!.split('\n')[0]);
      await c.query(find(findings, FINDING.tableSelect).fix!);
    });
    const after = await check({ tables }, readerUrl);
    expect(find(after, FINDING.replicationPrivilege)).toMatchObject({
      severity: 'info',
      problem: expect.stringMatching(/has REPLICATION/),
    });
    expect(after.some((f) => f.id === FINDING.tableSelect)).toBe(false);
  });

  it('finds row-level security that filters what the role reads, and the policy it prints clears it', async () => {
    const readerUrl = urlAs(READER, READER_PASSWORD);
    const count = async (asUrl: string) =>
      withClient(asUrl, async (c) => (await c.query('SELECT count(*)::int AS n FROM rls_t')).rows[0].n);
    // Enabled without a policy, row security shows a role it applies to no row at all.
    expect(await count(readerUrl)).toBe(0);
    const findings = await check({ publication: 'not_there', tables: ['rls_t'] }, readerUrl);
    const f = find(findings, FINDING.rowSecurity);
    expect(f).toMatchObject({
      severity: 'error',
      problem: expect.stringMatching(
        new RegExp(`^Row-level security filters what role ${READER} reads from rls_t:`),
      ),
    });
    // A superuser reads every row: nothing to report.
    const asSuperuser = await check({ publication: 'not_there', tables: ['rls_t'] });
    expect(asSuperuser.some((x) => x.id === FINDING.rowSecurity)).toBe(false);

    await withClient(url, (c) => c.query(f.fix!.slice(f.fix!.indexOf('CREATE POLICY'))));
    expect(await count(readerUrl)).toBe(3);
    const after = await check({ publication: 'not_there', tables: ['rls_t'] }, readerUrl);
    expect(after.some((x) => x.id === FINDING.rowSecurity)).toBe(false);

    // A restrictive policy narrows what the permissive one shows: filtered again.
    await withClient(url, (c) =>
      c.query('CREATE POLICY only_some ON rls_t AS RESTRICTIVE FOR SELECT USING (id < 3)'),
    );
    expect(await count(readerUrl)).toBe(2);
    const narrowed = await check({ publication: 'not_there', tables: ['rls_t'] }, readerUrl);
    expect(find(narrowed, FINDING.rowSecurity).severity).toBe('error');
  });

  it('finds a publication row filter and a column list, and the statements it prints clear them', async () => {
    const want = { publication: 'narrow_pub', tables: ['filtered_t', 'narrow_t'] };
    const findings = await check(want);
    expect(problems(findings)).toEqual([
      [FINDING.publicationRowFilter, 'error'],
      [FINDING.publicationColumnList, 'error'],
    ]);
    expect(find(findings, FINDING.publicationRowFilter).problem).toContain(
      'publishes only the rows of filtered_t WHERE (n > 0):',
    );
    expect(find(findings, FINDING.publicationColumnList).problem).toContain(
      'publishes only some columns of narrow_t (id, a):',
    );

    await withClient(url, async (c) => {
      await c.query(find(findings, FINDING.publicationRowFilter).fix!);
      await c.query(find(findings, FINDING.publicationColumnList).fix!);
    });
    expect(problems(await check(want))).toEqual([]);
  });

  it('finds a stored generated column the stream would not carry, and the statement it prints clears it', async () => {
    const want = { publication: 'generated_pub', tables: ['generated_t'] };
    const findings = await check(want);
    expect(problems(findings)).toEqual([[FINDING.generatedColumns, 'error']]);
    const f = find(findings, FINDING.generatedColumns);
    expect(f.problem).toContain(
      ': generated_t.doubled (stored). Logical replication publishes no generated column before PostgreSQL 18',
    );

    await withClient(url, (c) => c.query(f.fix!.split('\n')[0].replace(/^.*?: /, '')));
    expect(problems(await check(want))).toEqual([]);
  });

  it('reports a slot held by another reader with its pid, then the idle slot and the WAL it retains', async () => {
    const slot = `doctor_held_${suffix}`;
    await withClient(url, (c) =>
      c.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slot]),
    );
    const reader = await holdSlot(url, slot, 'doctor_pub');
    try {
      const held = await waitFor('the slot to become active', async () => {
        const s = await slotState(slot);
        return s?.active ? s : undefined;
      });
      const findings = await check({ slot });
      expect(problems(findings)).toEqual([[FINDING.slotActive, 'error']]);
      expect(find(findings, FINDING.slotActive).problem).toMatch(
        new RegExp(`^Slot ${slot} is in use by pid ${held.active_pid}.*; it retains \\d.* of WAL\\.$`),
      );
    } finally {
      await reader.end();
    }

    await waitFor('the slot to be released', async () =>
      (await slotState(slot))?.active ? undefined : true,
    );
    await withClient(url, (c) => c.query('INSERT INTO staff VALUES (1)'));
    const findings = await check({ slot });
    expect(problems(findings)).toEqual([]);
    expect(find(findings, FINDING.slot).problem).toMatch(
      new RegExp(
        `^Slot ${slot} exists \\(pgoutput, not in use\\), resumes from [0-9A-F]+/[0-9A-F]+; it retains .* of WAL$`,
      ),
    );
  });

  it('rejects a slot decoding with another plugin, a physical slot, and a slot of another database', async () => {
    const otherPlugin = `doctor_td_${suffix}`;
    const physical = `doctor_phys_${suffix}`;
    const elsewhere = `doctor_else_${suffix}`;
    const otherDb = await createTestDatabase('source_checks_other');
    await withClient(url, async (c) => {
      await c.query("SELECT pg_create_logical_replication_slot($1, 'test_decoding')", [otherPlugin]);
      await c.query('SELECT pg_create_physical_replication_slot($1, true)', [physical]);
    });
    await withClient(otherDb, (c) =>
      c.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [elsewhere]),
    );
    try {
      expect(find(await check({ slot: otherPlugin }), FINDING.slotPlugin)).toMatchObject({
        severity: 'error',
        problem: `Slot ${otherPlugin} decodes with test_decoding; capture needs pgoutput.`,
      });
      expect(find(await check({ slot: physical }), FINDING.slotDatabase).problem).toMatch(
        /is a physical slot/,
      );
      expect(find(await check({ slot: elsewhere }), FINDING.slotDatabase).problem).toMatch(
        /belongs to database t_source_checks_other_\d+, not t_source_checks_\d+/,
      );
    } finally {
      await withClient(testClusterUrl(), (c) =>
        c.query('SELECT pg_drop_replication_slot(s) FROM unnest($1::text[]) s', [
          [otherPlugin, physical, elsewhere],
        ]),
      );
    }
  });
});

const startCluster = startOwnCluster;

describe('checkSource against a misconfigured cluster', () => {
  let root: string;
  let dataDir: string;
  let cluster: Awaited<ReturnType<typeof startCluster>> | undefined;

  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-doctor-'));
    dataDir = path.join(root, 'pg');
  });

  afterAll(async () => {
    await cluster?.stop();
    removeDataDir(root);
  });

  it('finds an invalidated slot, no free slot and no free WAL sender', async () => {
    // One slot, one WAL sender and (almost) no WAL kept for slots: each limit is easy to hit for real.
    cluster = await startCluster(dataDir, {
      max_slot_wal_keep_size: '1MB',
      max_replication_slots: 1,
      max_wal_senders: 1,
    });
    const lost = 'doctor_lost';
    await withClient(cluster.url, async (c) => {
      await c.query('CREATE TABLE churn (n int)');
      await c.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [lost]);
      // Move WAL past the slot's restart_lsn by whole segments; a checkpoint then removes the WAL
      // the slot needs and invalidates it.
      await waitFor('the slot to be invalidated', async () => {
        await c.query('INSERT INTO churn SELECT generate_series(1, 1000)');
        await c.query('SELECT pg_switch_wal()');
        await c.query('CHECKPOINT');
        const { rows } = await c.query('SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1', [
          lost,
        ]);
        return rows[0].wal_status === 'lost' ? true : undefined;
      });
    });

    const sender = replicationClient(cluster.url);
    await sender.connect(); // an idle replication connection already occupies a WAL sender
    try {
      const want = { publication: 'none', tables: [] as string[] };
      const invalidated = await withClient(cluster.url, (c) => checkSource(c, { ...want, slot: lost }));
      expect(find(invalidated, FINDING.slotInvalidated)).toMatchObject({
        severity: 'error',
        problem: `Slot ${lost} was invalidated (wal_removed): the WAL it needed is gone, so changes were lost.`,
      });
      expect(find(invalidated, FINDING.walSenders)).toMatchObject({
        severity: 'error',
        problem: expect.stringMatching(/^All 1 WAL senders/),
      });

      const noRoom = await withClient(cluster.url, (c) => checkSource(c, { ...want, slot: 'doctor_new' }));
      expect(find(noRoom, FINDING.slotCapacity).problem).toMatch(
        /all 1 replication slots \(max_replication_slots\)/,
      );
    } finally {
      await sender.end();
    }

    // Logical slots keep a server with wal_level below logical from starting, so this one goes first.
    await withClient(cluster.url, (c) => c.query('SELECT pg_drop_replication_slot($1)', [lost]));
    await cluster.stop();
  });

  it('finds wal_level=replica and an unbounded max_slot_wal_keep_size', async () => {
    await cluster?.stop(); // already stopped unless the test before failed half-way
    cluster = await startCluster(dataDir, { wal_level: 'replica', max_slot_wal_keep_size: -1 });
    const findings = await withClient(cluster.url, (c) =>
      checkSource(c, { publication: 'none', slot: 'doctor_new', tables: [] }),
    );
    expect(find(findings, FINDING.walLevel)).toMatchObject({
      severity: 'error',
      problem: "wal_level is 'replica'; logical decoding needs 'logical'.",
    });
    expect(find(findings, FINDING.slotWalLimit).severity).toBe('warning');
  });
});
