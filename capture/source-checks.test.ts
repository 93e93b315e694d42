import { formatBytes } from '../core/pipeline-health';
import {
  DEFAULT_SOURCE_WANT,
  evaluateSource,
  FINDING,
  ident,
  splitTableName,
  type Finding,
  type FindingId,
  type SlotFacts,
  type SourceWant,
  type SupportedSourceFacts,
  type TableFacts,
} from './source-checks';

const want: SourceWant = { publication: 'totes_pub', slot: 'totes_slot', tables: ['staff', 'sales.order'] };

function table(t: string, overrides: Partial<TableFacts> = {}): TableFacts {
  return {
    table: t,
    ...splitTableName(t),
    exists: true,
    hasPrimaryKey: true,
    replicaIdentity: 'd',
    canSelect: true,
    owned: false,
    rowSecurity: false,
    forceRowSecurity: false,
    policiesShowEveryRow: false,
    generatedColumns: [],
    ...overrides,
  };
}

function slot(overrides: Partial<SlotFacts> = {}): SlotFacts {
  return {
    slotType: 'logical',
    plugin: 'pgoutput',
    database: 'totesys',
    active: false,
    activePid: null,
    readerApplication: null,
    restartLsn: '0/1000000',
    confirmedFlushLsn: '0/1000060',
    walStatus: 'reserved',
    invalidationReason: null,
    conflicting: false,
    retainedWalBytes: 3 * 1024 * 1024,
    ...overrides,
  };
}

/** A source with nothing wrong: PostgreSQL 17, a replication role, the publication in place. */
function goodFacts(overrides: Partial<SupportedSourceFacts> = {}): SupportedSourceFacts {
  return {
    supported: true,
    serverVersionNum: 170004,
    serverVersion: '17.4',
    database: 'totesys',
    isRds: false,
    role: {
      name: 'totes',
      superuser: false,
      replication: true,
      bypassRls: false,
      rdsReplication: false,
      canCreateInDatabase: false,
    },
    settings: { walLevel: 'logical', maxSlotWalKeepSize: '4GB', maxReplicationSlots: 10, maxWalSenders: 10 },
    replicationSlotsInUse: 2,
    walSendersInUse: 1,
    tables: [table('staff'), table('sales.order')],
    publication: {
      allTables: false,
      insert: true,
      update: true,
      delete: true,
      truncate: true,
      publishedTables: ['public.staff', 'sales.order'],
      publishGeneratedColumns: null,
      restrictedTables: [],
    },
    slot: null,
    ...overrides,
  };
}

function problems(findings: Finding[]): Finding[] {
  return findings.filter((f) => f.severity !== 'info');
}

function only(findings: Finding[], id: FindingId): Finding {
  const found = findings.filter((f) => f.id === id);
  expect(found).toHaveLength(1);
  return found[0];
}

describe('evaluateSource', () => {
  it('reports every check as passed (info) for a healthy source', () => {
    const findings = evaluateSource(goodFacts(), want);
    expect(problems(findings)).toEqual([]);
    expect(findings.map((f) => f.id)).toEqual([
      FINDING.serverVersion,
      FINDING.walLevel,
      FINDING.replicationPrivilege,
      FINDING.tables,
      FINDING.publication,
      FINDING.slotWalLimit,
      FINDING.slot,
      FINDING.walSenders,
    ]);
    expect(only(findings, FINDING.serverVersion).problem).toBe('PostgreSQL 17.4');
    expect(only(findings, FINDING.slot).problem).toBe(
      'Slot totes_slot does not exist yet; capture creates it (2 of 10 slots in use)',
    );
  });

  describe('server version', () => {
    it('refuses a server older than 10 and inspects nothing else', () => {
      const findings = evaluateSource(
        { supported: false, serverVersionNum: 90624, serverVersion: '9.6.24' },
        want,
      );
      expect(findings).toEqual([
        expect.objectContaining({
          id: FINDING.serverVersion,
          severity: 'error',
          fix: 'Upgrade the source to PostgreSQL 14 or later (15 or later recommended).',
        }),
      ]);
      expect(findings[0].problem).toMatch(/PostgreSQL 9\.6\.24 has no pgoutput/);
    });

    it.each([
      [100023, '10.23'],
      [120017, '12.17'],
    ])('refuses %s, naming the heartbeat messages (14) and the slot health columns (13)', (num, version) => {
      const f = only(
        evaluateSource(goodFacts({ serverVersionNum: num, serverVersion: version }), want),
        FINDING.serverVersion,
      );
      expect(f.severity).toBe('error');
      expect(f.problem).toBe(
        `PostgreSQL ${version} cannot run capture: its heartbeats are logical decoding messages, which pgoutput ` +
          "streams only from PostgreSQL 14 on (the 'messages' option of START_REPLICATION), and it reads a slot's " +
          'health from pg_replication_slots.wal_status, which arrived in 13. The initial snapshot would run, then ' +
          'every start of the stream would fail while the slot pins WAL.',
      );
      expect(f.fix).toBe('Upgrade the source to PostgreSQL 14 or later (15 or later recommended).');
    });

    it('refuses 13 for the heartbeat messages alone (it has the slot health columns)', () => {
      const f = only(
        evaluateSource(goodFacts({ serverVersionNum: 130023, serverVersion: '13.23' }), want),
        FINDING.serverVersion,
      );
      expect(f.severity).toBe('error');
      expect(f.problem).toMatch(
        /^PostgreSQL 13\.23 cannot run capture: its heartbeats are logical decoding messages/,
      );
      expect(f.problem).not.toContain('wal_status');
    });

    it('accepts 14, the oldest tested major, with a warning to plan the upgrade', () => {
      const f = only(
        evaluateSource(goodFacts({ serverVersionNum: 140023, serverVersion: '14.23' }), want),
        FINDING.serverVersion,
      );
      expect(f.severity).toBe('warning');
      expect(f.problem).toBe(
        'PostgreSQL 14.23 works (the oldest major totes is tested with), but 15 or later is recommended: ' +
          '14 streams every unrelated transaction as an empty BEGIN/COMMIT pair, and its community support ' +
          'ends in November 2026.',
      );
    });

    it.each([
      [150017, '15.17'],
      [170004, '17.4'],
    ])('passes %s', (num, version) => {
      const f = only(
        evaluateSource(goodFacts({ serverVersionNum: num, serverVersion: version }), want),
        FINDING.serverVersion,
      );
      expect(f).toEqual({ id: FINDING.serverVersion, severity: 'info', problem: `PostgreSQL ${version}` });
    });

    it('warns that a major newer than 17 is untested', () => {
      const f = only(
        evaluateSource(goodFacts({ serverVersionNum: 180004, serverVersion: '18.4' }), want),
        FINDING.serverVersion,
      );
      expect(f.severity).toBe('warning');
      expect(f.problem).toBe(
        'PostgreSQL 18.4 is newer than the newest major totes is tested with (17): it is expected to work, but untested.',
      );
    });
  });

  describe('wal_level', () => {
    it('is an error unless logical, with the ALTER SYSTEM fix and the RDS parameter', () => {
      const f = only(
        evaluateSource(goodFacts({ settings: { ...goodFacts().settings, walLevel: 'replica' } }), want),
        FINDING.walLevel,
      );
      expect(f).toMatchObject({
        severity: 'error',
        problem: "wal_level is 'replica'; logical decoding needs 'logical'.",
      });
      expect(f.fix).toContain('ALTER SYSTEM SET wal_level = logical;');
      expect(f.fix).toContain('On Amazon RDS or Aurora: set rds.logical_replication = 1');
    });

    it('on RDS gives only the parameter-group fix', () => {
      const f = only(
        evaluateSource(
          goodFacts({ isRds: true, settings: { ...goodFacts().settings, walLevel: 'replica' } }),
          want,
        ),
        FINDING.walLevel,
      );
      expect(f.fix).toMatch(/^set rds\.logical_replication = 1 in the DB parameter group/);
      expect(f.fix).not.toContain('ALTER SYSTEM');
    });
  });

  describe('replication privilege', () => {
    const role = goodFacts().role;

    it.each([
      ['superuser', { superuser: true, replication: false }, 'is a superuser'],
      ['REPLICATION', { replication: true }, 'has REPLICATION'],
      ['rds_replication', { replication: false, rdsReplication: true }, 'has rds_replication'],
    ])('passes with %s', (_what, r, text) => {
      const f = only(
        evaluateSource(goodFacts({ role: { ...role, ...r } }), want),
        FINDING.replicationPrivilege,
      );
      expect(f.severity).toBe('info');
      expect(f.problem).toContain(text);
    });

    it('is an error without any of them, fixed by ALTER ROLE (GRANT rds_replication on RDS)', () => {
      const facts = goodFacts({ role: { ...role, name: 'Reader', replication: false } });
      const f = only(evaluateSource(facts, want), FINDING.replicationPrivilege);
      expect(f.severity).toBe('error');
      expect(f.fix).toBe(
        'ALTER ROLE "Reader" WITH REPLICATION;\nOn Amazon RDS or Aurora: GRANT rds_replication TO "Reader";',
      );

      const rds = only(evaluateSource({ ...facts, isRds: true }, want), FINDING.replicationPrivilege);
      expect(rds.problem).toContain('no rds_replication role');
      expect(rds.fix).toBe('GRANT rds_replication TO "Reader";');
    });
  });

  describe('tables', () => {
    it('reports missing tables and leaves them out of the other table checks', () => {
      const findings = evaluateSource(
        goodFacts({
          tables: [
            table('staff'),
            table('sales.order', {
              exists: false,
              canSelect: false,
              hasPrimaryKey: false,
              replicaIdentity: null,
            }),
          ],
        }),
        want,
      );
      expect(problems(findings).map((f) => f.id)).toEqual([FINDING.tablesMissing]);
      expect(only(findings, FINDING.tablesMissing).problem).toBe(
        '1 captured table missing from database totesys: sales.order.',
      );
    });

    it('reports tables the role cannot SELECT, with the GRANT', () => {
      const findings = evaluateSource(
        goodFacts({
          tables: [table('staff', { canSelect: false }), table('sales.order', { canSelect: false })],
        }),
        want,
      );
      const f = only(findings, FINDING.tableSelect);
      expect(f.severity).toBe('error');
      expect(f.problem).toBe(
        'Role totes cannot SELECT from staff, sales.order, which the initial snapshot reads.',
      );
      // "order" is a reserved word, so the fix quotes it.
      expect(f.fix).toBe('GRANT SELECT ON public.staff, sales."order" TO totes;');
    });

    it('reports tables whose updates and deletes cannot be identified', () => {
      const findings = evaluateSource(
        goodFacts({
          tables: [
            table('staff', { hasPrimaryKey: false, replicaIdentity: 'd' }),
            table('sales.order', { hasPrimaryKey: true, replicaIdentity: 'n' }),
          ],
        }),
        want,
      );
      const f = only(findings, FINDING.replicaIdentity);
      expect(f.severity).toBe('error');
      expect(f.problem).toBe(
        'Updates and deletes cannot be identified on staff (no primary key), sales.order (replica identity NOTHING).',
      );
      expect(f.fix?.split('\n')).toEqual([
        'ALTER TABLE public.staff ADD PRIMARY KEY (…);  -- or, with no unique key: ALTER TABLE public.staff REPLICA IDENTITY FULL;',
        'ALTER TABLE sales."order" REPLICA IDENTITY DEFAULT;',
      ]);
    });

    it('fixes REPLICA IDENTITY NOTHING without a primary key with FULL (a new key would not change it)', () => {
      const facts = goodFacts({ tables: [table('staff', { hasPrimaryKey: false, replicaIdentity: 'n' })] });
      expect(only(evaluateSource(facts, want), FINDING.replicaIdentity).fix).toBe(
        'ALTER TABLE public.staff REPLICA IDENTITY FULL;',
      );
    });

    it('accepts tables without a primary key that use REPLICA IDENTITY FULL or USING INDEX', () => {
      const findings = evaluateSource(
        goodFacts({
          tables: [
            table('staff', { hasPrimaryKey: false, replicaIdentity: 'f' }),
            table('sales.order', { hasPrimaryKey: false, replicaIdentity: 'i' }),
          ],
        }),
        want,
      );
      expect(only(findings, FINDING.tables).severity).toBe('info');
    });
  });

  describe('publication', () => {
    it('when missing, is only information if the role can create it (CREATE on the database, owns the tables)', () => {
      const facts = goodFacts({
        publication: null,
        role: { ...goodFacts().role, canCreateInDatabase: true },
        tables: [table('staff', { owned: true }), table('sales.order', { owned: true })],
      });
      const f = only(evaluateSource(facts, want), FINDING.publicationMissing);
      expect(f.severity).toBe('info');
      expect(f.problem).toMatch(/capture creates it at start-up/);
      expect(f.fix).toBe(
        'To create it ahead of time: CREATE PUBLICATION totes_pub FOR TABLE public.staff, sales."order";',
      );
    });

    it('when missing, is only information for a superuser (capture creates it)', () => {
      const facts = goodFacts({ publication: null, role: { ...goodFacts().role, superuser: true } });
      expect(only(evaluateSource(facts, want), FINDING.publicationMissing).severity).toBe('info');
    });

    it.each([
      ['no CREATE on the database', { canCreateInDatabase: false }, true],
      ['a table owned by someone else', { canCreateInDatabase: true }, false],
    ])('when missing, is an error with %s', (_what, role, ownsTables) => {
      const facts = goodFacts({
        publication: null,
        role: { ...goodFacts().role, ...role },
        tables: [table('staff', { owned: true }), table('sales.order', { owned: ownsTables })],
      });
      const f = only(evaluateSource(facts, want), FINDING.publicationMissing);
      expect(f.severity).toBe('error');
      expect(f.problem).toMatch(/needs CREATE on database totesys and ownership of every captured table/);
      expect(f.fix).toBe(
        'As the tables\' owner or a superuser: CREATE PUBLICATION totes_pub FOR TABLE public.staff, sales."order";',
      );
    });

    it('reports captured tables the publication leaves out', () => {
      const facts = goodFacts({
        publication: { ...goodFacts().publication!, publishedTables: ['public.staff'] },
      });
      const f = only(evaluateSource(facts, want), FINDING.publicationTables);
      expect(f.severity).toBe('error');
      expect(f.problem).toBe(
        'Publication totes_pub does not include sales.order: their changes would never arrive.',
      );
      expect(f.fix).toBe('ALTER PUBLICATION totes_pub ADD TABLE sales."order";');
    });

    it('is an error when it does not publish insert, update or delete', () => {
      const facts = goodFacts({ publication: { ...goodFacts().publication!, update: false, delete: false } });
      const f = only(evaluateSource(facts, want), FINDING.publicationOperations);
      expect(f).toMatchObject({
        severity: 'error',
        problem: 'Publication totes_pub does not publish update, delete.',
        fix: "ALTER PUBLICATION totes_pub SET (publish = 'insert, update, delete, truncate');",
      });
    });

    it('is a warning when only truncate is missing, and not asked for before PostgreSQL 11', () => {
      const noTruncate = goodFacts({ publication: { ...goodFacts().publication!, truncate: false } });
      expect(only(evaluateSource(noTruncate, want), FINDING.publicationOperations)).toMatchObject({
        severity: 'warning',
        problem: 'Publication totes_pub does not publish truncate.',
      });

      const pg10 = goodFacts({
        serverVersionNum: 100023,
        serverVersion: '10.23',
        publication: { ...goodFacts().publication!, truncate: null, insert: false },
      });
      expect(only(evaluateSource(pg10, want), FINDING.publicationOperations).fix).toBe(
        "ALTER PUBLICATION totes_pub SET (publish = 'insert, update, delete');",
      );
    });

    it('passes for FOR ALL TABLES', () => {
      const facts = goodFacts({ publication: { ...goodFacts().publication!, allTables: true } });
      expect(only(evaluateSource(facts, want), FINDING.publication).problem).toBe(
        'Publication totes_pub covers every captured table (FOR ALL TABLES)',
      );
    });
  });

  describe('row-level security', () => {
    const rls = { rowSecurity: true };

    it('is an error when its policies filter what the role reads, with both fixes', () => {
      const facts = goodFacts({ tables: [table('staff', rls), table('sales.order')] });
      const f = only(evaluateSource(facts, want), FINDING.rowSecurity);
      expect(f.severity).toBe('error');
      expect(f.problem).toBe(
        'Row-level security filters what role totes reads from staff: the initial snapshot would copy only the ' +
          'rows its policies show, while the stream carries every change (logical decoding ignores row security).',
      );
      expect(f.fix?.split('\n')).toEqual([
        'As a superuser: ALTER ROLE totes BYPASSRLS;',
        'Or, as the table owner, a policy that shows the role every row: CREATE POLICY totes_capture_reads_all ON public.staff FOR SELECT TO totes USING (true);',
      ]);
    });

    it.each([
      ['a superuser', { role: { ...goodFacts().role, superuser: true } }, {}],
      ['a role with BYPASSRLS', { role: { ...goodFacts().role, bypassRls: true } }, {}],
      ["the table's owner", {}, { owned: true }],
      ['a role a policy shows every row', {}, { policiesShowEveryRow: true }],
    ])('passes for %s', (_who, factOverrides, tableOverrides) => {
      const facts = goodFacts({ ...factOverrides, tables: [table('staff', { ...rls, ...tableOverrides })] });
      expect(problems(evaluateSource(facts, want))).toEqual([]);
    });

    it('is an error for the owner when FORCE ROW LEVEL SECURITY binds it too', () => {
      const facts = goodFacts({
        tables: [table('staff', { ...rls, owned: true, forceRowSecurity: true }), table('sales.order', rls)],
      });
      const f = only(evaluateSource(facts, want), FINDING.rowSecurity);
      expect(f.problem).toMatch(
        /^Row-level security filters what role totes reads from staff, sales\.order:/,
      );
      expect(f.fix).toContain('ON public.staff FOR SELECT TO totes USING (true);');
      expect(f.fix).toContain('ON sales."order" FOR SELECT TO totes USING (true);');
    });
  });

  describe('generated columns', () => {
    const stored = { name: 'total', kind: 'stored' as const };
    const virtual = { name: 'label', kind: 'virtual' as const };

    it('is an error before PostgreSQL 18: the snapshot reads them, the stream never carries them', () => {
      const facts = goodFacts({
        serverVersionNum: 170004,
        tables: [table('staff', { generatedColumns: [stored] }), table('sales.order')],
      });
      const f = only(evaluateSource(facts, want), FINDING.generatedColumns);
      expect(f.severity).toBe('error');
      expect(f.problem).toBe(
        'The initial snapshot reads generated columns that the stream does not carry: staff.total (stored). ' +
          'Logical replication publishes no generated column before PostgreSQL 18, so every later change ' +
          'would arrive without them.',
      );
      expect(f.fix?.split('\n')).toEqual([
        'Make each a plain column the application writes: ALTER TABLE public.staff ALTER COLUMN total DROP EXPRESSION;',
        'Or stop capturing the table and compute the value in the warehouse; on PostgreSQL 18 a publication can publish stored generated columns.',
      ]);
    });

    it('on PostgreSQL 18 asks the publication to publish stored ones, and refuses virtual ones', () => {
      const pg18 = {
        serverVersionNum: 180004,
        serverVersion: '18.4',
        tables: [table('staff', { generatedColumns: [stored, virtual] })],
      };
      const f = only(evaluateSource(goodFacts(pg18), want), FINDING.generatedColumns);
      expect(f.problem).toBe(
        'The initial snapshot reads generated columns that the stream does not carry: staff.total (stored), ' +
          'staff.label (virtual). PostgreSQL 18 publishes stored generated columns only when the publication ' +
          'sets publish_generated_columns = stored, and virtual ones never.',
      );
      expect(f.fix?.split('\n')).toEqual([
        'ALTER PUBLICATION totes_pub SET (publish_generated_columns = stored);',
        'Virtual columns are never published: make each STORED (drop and add it again with GENERATED ALWAYS AS (…) STORED), or compute it in the warehouse.',
      ]);

      const publishing = goodFacts({
        ...pg18,
        publication: { ...goodFacts().publication!, publishGeneratedColumns: 'stored' },
      });
      const virtualOnly = only(evaluateSource(publishing, want), FINDING.generatedColumns);
      expect(virtualOnly.problem).toMatch(/: staff\.label \(virtual\)\. /);
      expect(virtualOnly.fix).not.toContain('ALTER PUBLICATION');

      const storedOnly = goodFacts({
        ...pg18,
        tables: [table('staff', { generatedColumns: [stored] })],
        publication: { ...goodFacts().publication!, publishGeneratedColumns: 'stored' },
      });
      expect(evaluateSource(storedOnly, want).some((f) => f.id === FINDING.generatedColumns)).toBe(false);
    });

    it('on PostgreSQL 18 without a publication yet, says to create it publishing them', () => {
      const facts = goodFacts({
        serverVersionNum: 180004,
        serverVersion: '18.4',
        publication: null,
        role: { ...goodFacts().role, superuser: true },
        tables: [table('staff', { generatedColumns: [stored] }), table('sales.order')],
      });
      expect(only(evaluateSource(facts, want), FINDING.generatedColumns).fix).toBe(
        'CREATE PUBLICATION totes_pub FOR TABLE public.staff, sales."order" WITH (publish_generated_columns = stored);',
      );
    });
  });

  describe('row filters and column lists', () => {
    function restricted(rowFilter: string | null, columns: string[] | null) {
      return goodFacts({
        serverVersionNum: 150017,
        serverVersion: '15.17',
        publication: {
          ...goodFacts().publication!,
          restrictedTables: [{ table: 'sales.order', rowFilter, columns }],
        },
      });
    }
    const fix =
      'BEGIN; ALTER PUBLICATION totes_pub DROP TABLE sales."order"; ALTER PUBLICATION totes_pub ADD TABLE sales."order"; COMMIT;' +
      '  -- one transaction, so no change falls between';

    it('is an error when the publication filters rows', () => {
      const findings = evaluateSource(restricted('(amount > 0)', null), want);
      expect(problems(findings).map((f) => f.id)).toEqual([FINDING.publicationRowFilter]);
      expect(only(findings, FINDING.publicationRowFilter)).toEqual({
        id: FINDING.publicationRowFilter,
        severity: 'error',
        problem:
          'Publication totes_pub publishes only the rows of sales.order WHERE (amount > 0): the initial snapshot ' +
          'copies every row, but the stream carries changes only for rows that match, so the others would stay ' +
          'in the warehouse, never updated or deleted.',
        fix,
      });
    });

    it('is an error when the publication publishes some columns only', () => {
      const findings = evaluateSource(restricted(null, ['id', 'amount']), want);
      expect(problems(findings).map((f) => f.id)).toEqual([FINDING.publicationColumnList]);
      expect(only(findings, FINDING.publicationColumnList)).toEqual({
        id: FINDING.publicationColumnList,
        severity: 'error',
        problem:
          'Publication totes_pub publishes only some columns of sales.order (id, amount): the initial snapshot ' +
          'reads every column, the stream only those, and a column added later would never arrive.',
        fix,
      });
    });

    it('reports both on a table that has both', () => {
      const findings = evaluateSource(restricted('(amount > 0)', ['id', 'amount']), want);
      expect(problems(findings).map((f) => f.id)).toEqual([
        FINDING.publicationRowFilter,
        FINDING.publicationColumnList,
      ]);
    });
  });

  describe('max_slot_wal_keep_size', () => {
    it('warns when unset (-1), with the ALTER SYSTEM and parameter-group fixes', () => {
      const facts = goodFacts({ settings: { ...goodFacts().settings, maxSlotWalKeepSize: '-1' } });
      const f = only(evaluateSource(facts, want), FINDING.slotWalLimit);
      expect(f.severity).toBe('warning');
      expect(f.fix).toContain("ALTER SYSTEM SET max_slot_wal_keep_size = '50GB'; SELECT pg_reload_conf();");
      expect(f.fix).toContain('On Amazon RDS or Aurora: set max_slot_wal_keep_size (in MB');
    });

    it('warns when the server predates it (PostgreSQL 12)', () => {
      const facts = goodFacts({
        serverVersionNum: 120017,
        serverVersion: '12.17',
        settings: { ...goodFacts().settings, maxSlotWalKeepSize: null },
      });
      const f = only(evaluateSource(facts, want), FINDING.slotWalLimit);
      expect(f.severity).toBe('warning');
      expect(f.problem).toMatch(/max_slot_wal_keep_size arrived in 13/);
    });
  });

  describe('slot', () => {
    it('passes for an idle pgoutput slot, reporting where it resumes and the WAL it retains', () => {
      const f = only(evaluateSource(goodFacts({ slot: slot() }), want), FINDING.slot);
      expect(f).toEqual({
        id: FINDING.slot,
        severity: 'info',
        problem:
          'Slot totes_slot exists (pgoutput, not in use), resumes from 0/1000060; it retains 3.0 MB of WAL',
      });
    });

    it('is an error while another process streams from it, naming the pid', () => {
      const facts = goodFacts({
        slot: slot({ active: true, activePid: 4242, readerApplication: 'other-cdc' }),
      });
      const f = only(evaluateSource(facts, want), FINDING.slotActive);
      expect(f.severity).toBe('error');
      expect(f.problem).toBe(
        'Slot totes_slot is in use by pid 4242 (application_name other-cdc); it retains 3.0 MB of WAL.',
      );
      expect(f.fix).toContain('SELECT pg_terminate_backend(4242);');
    });

    it('is an error when it decodes with another plugin', () => {
      const f = only(
        evaluateSource(goodFacts({ slot: slot({ plugin: 'wal2json' }) }), want),
        FINDING.slotPlugin,
      );
      expect(f.severity).toBe('error');
      expect(f.problem).toBe('Slot totes_slot decodes with wal2json; capture needs pgoutput.');
      expect(f.fix).toContain("SELECT pg_drop_replication_slot('totes_slot');");
    });

    it('is an error when it is physical or belongs to another database', () => {
      const physical = goodFacts({ slot: slot({ slotType: 'physical', plugin: null, database: null }) });
      expect(only(evaluateSource(physical, want), FINDING.slotDatabase).problem).toBe(
        'Slot totes_slot is a physical slot, not a logical one.',
      );
      const elsewhere = goodFacts({ slot: slot({ database: 'other' }) });
      expect(only(evaluateSource(elsewhere, want), FINDING.slotDatabase).problem).toMatch(
        /belongs to database other, not totesys/,
      );
    });

    it.each([
      ['wal_status lost (PostgreSQL 13+)', { walStatus: 'lost', invalidationReason: null }, 'wal_removed'],
      [
        'invalidation_reason (PostgreSQL 17+)',
        { walStatus: 'lost', invalidationReason: 'rows_removed' },
        'rows_removed',
      ],
      ['conflicting (PostgreSQL 16)', { walStatus: 'reserved', conflicting: true }, 'conflict with recovery'],
    ])('is an error when invalidated: %s', (_what, overrides, reason) => {
      const f = only(evaluateSource(goodFacts({ slot: slot(overrides) }), want), FINDING.slotInvalidated);
      expect(f.severity).toBe('error');
      expect(f.problem).toContain(`was invalidated (${reason})`);
      expect(f.fix).toMatch(/^SELECT pg_drop_replication_slot\('totes_slot'\);.*full snapshot/);
    });

    it('warns when its WAL is unreserved (the next checkpoint may invalidate it)', () => {
      const f = only(
        evaluateSource(
          goodFacts({ slot: slot({ walStatus: 'unreserved', retainedWalBytes: 5 * 1024 ** 3 }) }),
          want,
        ),
        FINDING.slotWalAtRisk,
      );
      expect(f.severity).toBe('warning');
      expect(f.problem).toContain('it retains 5.0 GB of WAL');
    });

    it('is an error when it does not exist and every replication slot is taken', () => {
      const facts = goodFacts({ replicationSlotsInUse: 10 });
      const f = only(evaluateSource(facts, want), FINDING.slotCapacity);
      expect(f.severity).toBe('error');
      expect(f.problem).toMatch(/all 10 replication slots \(max_replication_slots\) are taken/);
      expect(f.fix).toContain('ALTER SYSTEM SET max_replication_slots = 11;');
      // An existing slot needs no free one.
      expect(problems(evaluateSource({ ...facts, slot: slot() }, want))).toEqual([]);
    });
  });

  describe('WAL senders', () => {
    it('is an error when every WAL sender is busy', () => {
      const f = only(
        evaluateSource(goodFacts({ walSendersInUse: 10, isRds: true }), want),
        FINDING.walSenders,
      );
      expect(f).toMatchObject({
        severity: 'error',
        fix: 'raise max_wal_senders in the DB parameter group, then reboot.',
      });
    });
  });
});

describe('helpers', () => {
  it('splitTableName defaults the schema to public', () => {
    expect(splitTableName('staff')).toEqual({ schema: 'public', name: 'staff' });
    expect(splitTableName('sales.staff')).toEqual({ schema: 'sales', name: 'staff' });
  });

  it('ident quotes only what Postgres would not read back unchanged', () => {
    expect(ident('sales_order')).toBe('sales_order');
    expect(ident('transaction')).toBe('transaction'); // a keyword, but not a reserved one
    expect(ident('user')).toBe('"user"');
    expect(ident('Staff')).toBe('"Staff"');
    expect(ident('a"b')).toBe('"a""b"');
  });

  it('formatBytes reads like pg_size_pretty', () => {
    expect(formatBytes(0)).toBe('0 bytes');
    expect(formatBytes(1536)).toBe('1.5 kB');
    expect(formatBytes(64 * 1024 * 1024)).toBe('64 MB');
  });

  it('defaults to the 11 totesys tables', () => {
    expect(DEFAULT_SOURCE_WANT.tables).toHaveLength(11);
  });
});
