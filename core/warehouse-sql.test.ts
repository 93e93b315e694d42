import { WAREHOUSE_TABLES, WAREHOUSE_TABLE_NAMES, type WarehouseTableName } from './warehouse-model';
import {
  comparePosition,
  DERIVED_DIMENSIONS,
  derivedDimensionsFedBy,
  derivedLock,
  derivedRecompute,
  dimDateInsert,
  dimensionDelete,
  dimensionUpsert,
  factCopy,
  factInheritance,
  factInsert,
  factInsertFromStage,
  factLock,
  dimensionLoadLock,
  snapshotLock,
  factRefreshDeleted,
  factStageCopy,
  factStageCreate,
  factVersionCopyFields,
  factVersionFields,
  isTextType,
  loadLogInsert,
  loadLogLookup,
  pgType,
  PLACEHOLDER_LSN,
  PLACEHOLDER_TEXT,
  keyClaim,
  placeholderCopy,
  placeholderInsert,
  keyRangeEmpty,
  progressUpsert,
  quoteIdent,
  textArrayLiteral,
  UnsupportedTableError,
  WAREHOUSE_LOCK_NAMESPACE,
  WarehouseSqlError,
  type SqlStatement,
  type VersionedRow,
} from './warehouse-sql';

const HOSTILE = `x'); DROP TABLE "dim_date"; -- $1 \\ "`;

const design = (id: number, lsn: string, overrides: Partial<VersionedRow> = {}): VersionedRow => ({
  values: { design_id: id, design_name: HOSTILE, file_location: '/usr/local/src', file_name: `${id}.json` },
  epoch: 0,
  lsn,
  seq: 0,
  commitTs: '2025-02-28T09:15:02.123456Z',
  unchanged: [],
  rowHash: null,
  snapshot: false,
  ...overrides,
});

/** Every model column name, so a test can check none appears in SQL text unquoted. */
const ALL_COLUMNS = [
  ...new Set(WAREHOUSE_TABLE_NAMES.flatMap((t) => WAREHOUSE_TABLES[t].columns.map((c) => c.name))),
];

function expectQuotedIdentifiersOnly(statement: SqlStatement): void {
  const outsideQuotes = statement.text.replace(/"(?:[^"]|"")*"/g, '""');
  for (const name of [...ALL_COLUMNS, ...WAREHOUSE_TABLE_NAMES])
    expect(outsideQuotes).not.toMatch(new RegExp(`\\b${name}\\b`));
}

function expectNoValuesInText(statement: SqlStatement): void {
  expect(statement.text).not.toContain('DROP');
  expect(statement.text).not.toContain('.json');
  expect(statement.text).not.toContain(PLACEHOLDER_TEXT);
}

describe('warehouse SQL builders', () => {
  it('quotes identifiers, doubling quotes, and refuses NUL', () => {
    expect(quoteIdent('dim_date')).toBe('"dim_date"');
    expect(quoteIdent('we"ird')).toBe('"we""ird"');
    expect(() => quoteIdent('a\u0000b')).toThrow(WarehouseSqlError);
  });

  it('maps model types to Postgres types, times with milliseconds', () => {
    expect(pgType('time')).toBe('time(3)');
    expect(pgType('numeric(10,2)')).toBe('numeric(10,2)');
    expect(pgType('int')).toBe('integer');
    expect(isTextType('varchar')).toBe(true);
    expect(isTextType('date')).toBe(false);
  });

  it('compares positions by LSN as numbers, then by ordinal', () => {
    expect(comparePosition({ lsn: '0/FF', seq: 9 }, { lsn: '0/100', seq: 0 })).toBeLessThan(0);
    expect(comparePosition({ lsn: '1/0', seq: 0 }, { lsn: '0/FFFFFFFF', seq: 5 })).toBeGreaterThan(0);
    expect(comparePosition({ lsn: '00000000/00000100', seq: 2 }, { lsn: '0/100', seq: 1 })).toBeGreaterThan(
      0,
    );
    expect(comparePosition({ lsn: '0/100', seq: 1 }, { lsn: '0/100', seq: 1 })).toBe(0);
  });

  it('upserts a dimension column-wise: values only as array parameters, in key order', () => {
    const statement = dimensionUpsert('dim_design', [
      design(2, '0/200'),
      design(1, '0/300', { unchanged: ['file_name'] }),
    ]);
    expectQuotedIdentifiersOnly(statement);
    expectNoValuesInText(statement);
    expect(statement.text).toMatch(/^INSERT INTO "dim_design" AS t /);
    expect(statement.text).toContain(
      'unnest($1::integer[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::pg_lsn[]',
    );
    expect(statement.text).toContain('ON CONFLICT ("design_id") DO UPDATE SET');
    expect(statement.values.slice(0, 10)).toEqual([
      [1, 2],
      [HOSTILE, HOSTILE],
      ['/usr/local/src', '/usr/local/src'],
      // The unchanged column goes in as the placeholder and is listed as pending.
      [PLACEHOLDER_TEXT, '2.json'],
      [0, 0],
      ['0/300', '0/200'],
      [0, 0],
      ['2025-02-28T09:15:02.123456Z', '2025-02-28T09:15:02.123456Z'],
      ['file_name', ''],
      ['design_name', 'file_location', 'file_name'],
    ]);
  });

  it('records deletes with placeholder values for a row that does not exist yet', () => {
    const statement = dimensionDelete('stg_staff', [
      { key: 3, epoch: 0, lsn: '0/10', seq: 1 },
      { key: 1, epoch: 0, lsn: '0/20', seq: 0 },
    ]);
    expectQuotedIdentifiersOnly(statement);
    expect(statement.values[0]).toEqual([1, 3]);
    expect(statement.values).toContain(PLACEHOLDER_TEXT);
    // The integer reference has no placeholder: NULL, allowed while the row is _inferred.
    expect(statement.text).toContain('NULL::integer');
    expect(statement.text).toContain('WHERE t."_deleted_lsn" IS NULL');
  });

  it('inserts placeholders for distinct keys, ascending, never overwriting', () => {
    const statement = placeholderInsert('dim_location', [9, 3, 9]);
    expectQuotedIdentifiersOnly(statement);
    expect(statement.values[0]).toEqual([3, 9]);
    expect(statement.text).toContain('ON CONFLICT ("location_id") DO NOTHING');
    expect(statement.text).toContain('NULL::text'); // address_line_2 and district are nullable
  });

  it('sorts placeholder keys on their own, the placeholder values added after the sort', () => {
    const statement = placeholderInsert('dim_transaction', [9, 3, 9]);
    expect(statement.text).toContain(
      'FROM (SELECT u."transaction_id" FROM unnest($1::integer[]) AS "u"("transaction_id") ORDER BY u."transaction_id") AS "x"',
    );
    expect(statement.text).toContain('ORDER BY x."transaction_id"');
    expect(statement.text).not.toContain('NOT EXISTS');
  });

  it('drops the keys it sees rows of first when they are many over a narrow range, by that range', () => {
    const keys = Array.from({ length: 2_000 }, (_, i) => 5_000 + 2 * i).reverse();
    const statement = placeholderInsert('dim_transaction', keys);
    expectQuotedIdentifiersOnly(statement);
    expect(statement.values[0]).toEqual([...keys].reverse());
    const [low, high] = [statement.values.indexOf(5_000), statement.values.indexOf(5_000 + 2 * 1_999)];
    expect(low).toBeGreaterThan(0);
    expect(statement.text).toContain(
      `WHERE NOT EXISTS (SELECT FROM "dim_transaction" AS "d" WHERE d."transaction_id" = x."transaction_id" AND d."transaction_id" BETWEEN $${low + 1} AND $${high + 1})`,
    );
    expect(statement.text).toContain('ON CONFLICT ("transaction_id") DO NOTHING');
  });

  it('leaves few or sparse placeholder keys to ON CONFLICT alone', () => {
    const few = Array.from({ length: 999 }, (_, i) => i);
    const sparse = Array.from({ length: 2_000 }, (_, i) => 5 * i);
    const edge = Array.from({ length: 2_000 }, (_, i) => (i === 1_999 ? 7_999 : i));
    for (const keys of [few, sparse])
      expect(placeholderInsert('dim_transaction', keys).text).not.toContain('NOT EXISTS');
    // A quarter of the range is still close enough.
    expect(placeholderInsert('dim_transaction', edge).text).toContain('NOT EXISTS');
    expect(placeholderInsert('dim_transaction', [...edge.slice(0, -1), 8_000]).text).not.toContain(
      'NOT EXISTS',
    );
  });

  it("COPYs placeholders with placeholderInsert's columns and values, no ON CONFLICT", () => {
    for (const name of ['dim_location', 'dim_transaction', 'dim_staff'] as const) {
      const copy = placeholderCopy(name);
      const insert = placeholderInsert(name, [7]);
      const columns = /^INSERT INTO "\w+" AS t \(([^)]*)\)/.exec(insert.text)![1];
      expect(copy.text).toBe(`COPY "${name}" (${columns}) FROM STDIN`);
      // The insert's SELECT: the key, then each value column's $n::type or NULL::type, then 0/0, 0, true.
      const select = /\nSELECT x\.\S+, (.*)\nFROM/.exec(insert.text)![1].split(', ');
      expect(copy.tail).toHaveLength(select.length);
      select.forEach((expression, i) => {
        const param = /^\$(\d+)::/.exec(expression);
        if (param) expect(copy.tail[i]).toBe(insert.values[Number(param[1]) - 1]);
        else if (expression.startsWith('NULL::')) expect(copy.tail[i]).toBeNull();
        else expect(String(copy.tail[i])).toBe(expression);
      });
      expect(copy.text).not.toContain('ON CONFLICT');
    }
    expect(placeholderCopy('dim_transaction').tail).toEqual([
      PLACEHOLDER_TEXT,
      null,
      null,
      PLACEHOLDER_LSN,
      0,
      true,
    ]);
    expect(() => placeholderCopy('stg_staff' as 'dim_staff')).toThrow(UnsupportedTableError);
  });

  it("asks whether a dimension has a row in its keys' range: lowest to highest, in any order", () => {
    const statement = keyRangeEmpty('dim_transaction', [9, 3, 12, 5]);
    expectQuotedIdentifiersOnly(statement);
    expect(statement).toEqual({
      text: 'SELECT NOT EXISTS (SELECT FROM "dim_transaction" WHERE "transaction_id" BETWEEN $1 AND $2) AS "empty"',
      values: [3, 12],
    });
    expect(() => keyRangeEmpty('dim_transaction', [])).toThrow('no keys');
  });

  it('claims keys of a dimension or staging table in key order: a placeholder where no row is, else a lock', () => {
    const statement = keyClaim('stg_staff', [9, 3, 9]);
    expectQuotedIdentifiersOnly(statement);
    expect(statement.values[0]).toEqual([3, 9]);
    expect(statement.text).toContain('ORDER BY x."staff_id"');
    // Updates nothing, locks the row it conflicts with.
    expect(statement.text).toContain(
      'ON CONFLICT ("staff_id") DO UPDATE SET "_inferred" = t."_inferred" WHERE false',
    );
    expect(() => keyClaim('fact_payment', [1])).toThrow(UnsupportedTableError);
  });

  it('inserts dim_date rows computed from distinct dates, formats as parameters', () => {
    const statement = dimDateInsert(['2024-02-29', '2022-11-03', '2024-02-29']);
    expect(statement.values).toEqual([['2022-11-03', '2024-02-29'], 'FMDay', 'FMMonth']);
    expect(statement.text).toContain('extract(isodow FROM x."d")');
    expect(statement.text).toContain('ON CONFLICT ("date_id") DO NOTHING');
  });

  it('inserts fact versions at most once, keyed by (natural key, _lsn, _seq)', () => {
    const row = (lsn: string, unchanged: string[] = []): VersionedRow => ({
      values: Object.fromEntries(WAREHOUSE_TABLES.fact_purchase_order.columns.map((c) => [c.name, HOSTILE])),
      epoch: 0,
      lsn,
      seq: 0,
      commitTs: '2025-02-28T09:15:02Z',
      unchanged,
      rowHash: null,
      snapshot: false,
    });
    const statement = factInsert('fact_purchase_order', [row('0/2', ['item_code']), row('0/1')]);
    expectQuotedIdentifiersOnly(statement);
    expect(statement.text).toContain('ON CONFLICT ("purchase_order_id", "_lsn", "_seq") DO NOTHING');
    expect(statement.text).not.toContain('purchase_record_id');
    const itemCodes =
      statement.values[WAREHOUSE_TABLES.fact_purchase_order.columns.findIndex((c) => c.name === 'item_code')];
    expect(itemCodes).toEqual([HOSTILE, PLACEHOLDER_TEXT]);
    expect(statement.values.at(-3)).toEqual(['', 'item_code']);
  });

  it('writes text[] literals, quoting every element that is not a plain word', () => {
    expect(textArrayLiteral([])).toBe('{}');
    expect(textArrayLiteral(['item_code', 'design_name'])).toBe('{item_code,design_name}');
    // Quoted when not a plain word: NULL (a null element unquoted), separators, quotes, backslashes.
    expect(textArrayLiteral(['NULL', 'a,b', 'say "hi"', 'back\\slash', ''])).toBe(
      '{"NULL","a,b","say \\"hi\\"","back\\\\slash",""}',
    );
  });

  it('COPYs fact versions into the fact or its staging table with the same columns and fields', () => {
    const table = WAREHOUSE_TABLES.fact_purchase_order;
    const row: VersionedRow = {
      values: Object.fromEntries(table.columns.map((c) => [c.name, HOSTILE])),
      epoch: 3,
      lsn: '0/2',
      seq: 1,
      commitTs: '2025-02-28T09:15:02Z',
      unchanged: ['item_code'],
      rowHash: null,
      snapshot: true,
    };
    const direct = factCopy('fact_purchase_order');
    const staged = factStageCopy('fact_purchase_order');
    expect(direct).toMatch(
      /^COPY "fact_purchase_order" \("purchase_order_id", .*"_unchanged", "_row_hash", "_snapshot"\) FROM STDIN$/,
    );
    expect(direct).not.toContain('purchase_record_id');
    expect(direct.slice(direct.indexOf('('))).toBe(staged.slice(staged.indexOf('(')));
    // The staging table holds `_unchanged` as the fact does, and the insert from it takes it as it is.
    expect(factStageCreate('fact_purchase_order').text).toContain('"_unchanged" text[]');
    expect(factInsertFromStage('fact_purchase_order').text).not.toContain('string_to_array');
    const fields = factVersionCopyFields(table, row);
    const parameters = factVersionFields(table, row);
    const unchangedAt = table.columns.length + 4;
    expect(parameters[unchangedAt]).toBe('item_code');
    expect(fields[unchangedAt]).toBe('{item_code}');
    expect([...fields.slice(0, unchangedAt), ...fields.slice(unchangedAt + 1)]).toEqual([
      ...parameters.slice(0, unchangedAt),
      ...parameters.slice(unchangedAt + 1),
    ]);
    expect(() => factCopy('dim_design')).toThrow(UnsupportedTableError);
  });

  it('resolves inherited columns only where a fact has text columns', () => {
    expect(factInheritance('fact_payment', [1])).toBeNull();
    expect(factInheritance('fact_sales_order', [1])).toBeNull();
    const statement = factInheritance('fact_purchase_order', [5, 2, 5])!;
    expectQuotedIdentifiersOnly(statement);
    expect(statement.values).toEqual([[2, 5], 'item_code']);
    expect(statement.text).toContain('ORDER BY p."_epoch" DESC, p."_lsn" DESC, p."_seq" DESC LIMIT 1');
  });

  it('refuses statements that do not apply to a table', () => {
    expect(() => dimensionUpsert('fact_payment', [])).toThrow(UnsupportedTableError);
    expect(() => dimensionDelete('dim_date', [])).toThrow(UnsupportedTableError);
    expect(() => placeholderInsert('stg_staff', [1])).toThrow(UnsupportedTableError);
    expect(() => factInsert('dim_design', [])).toThrow(UnsupportedTableError);
    expect(() => factInheritance('dim_design', [])).toThrow(UnsupportedTableError);
    expect(() => factLock('dim_design', true)).toThrow(
      /factLock does not apply to warehouse table dim_design/,
    );
  });

  it('knows which loads recompute which derived dimension', () => {
    const fed = (t: WarehouseTableName) =>
      derivedDimensionsFedBy(t).map((d) => `${d.derived.table}:${d.side}`);
    expect(fed('stg_staff')).toEqual(['dim_staff:base']);
    expect(fed('stg_department')).toEqual(['dim_staff:part']);
    expect(fed('stg_counterparty')).toEqual(['dim_counterparty:base']);
    expect(fed('dim_location')).toEqual(['dim_counterparty:part']);
    expect(fed('dim_design')).toEqual([]);
    // Every column of each derived dimension has a source.
    for (const derived of Object.values(DERIVED_DIMENSIONS))
      expect(Object.keys(derived.columns)).toEqual(
        WAREHOUSE_TABLES[derived.table].columns.map((c) => c.name),
      );
  });

  it('recomputes derived rows by base keys or by referenced part keys', () => {
    const byBase = derivedRecompute(DERIVED_DIMENSIONS.dim_staff, 'base', [2, 1]);
    const byPart = derivedRecompute(DERIVED_DIMENSIONS.dim_counterparty, 'part', [7]);
    for (const s of [byBase, byPart]) expectQuotedIdentifiersOnly(s);
    expect(byBase.values[0]).toEqual([1, 2]);
    expect(byBase.text).toContain('WHERE b."staff_id" = ANY($1::integer[])');
    expect(byBase.text).toContain('LEFT JOIN "stg_department" AS p ON p."department_id" = b."department_id"');
    expect(byPart.text).toContain('WHERE b."legal_address_id" = ANY($1::integer[])');
    expect(byPart.text).toContain('IS DISTINCT FROM');
  });

  it('names its advisory locks inside the project namespace, one per derived dimension or fact table', () => {
    const locks = [
      derivedLock('dim_staff'),
      derivedLock('dim_counterparty'),
      factLock('fact_payment', false),
    ];
    expect(new Set(locks.map((l) => l.values[1])).size).toBe(3);
    for (const l of locks) expect(l.values[0]).toBe(WAREHOUSE_LOCK_NAMESPACE);
    expect(locks[2].text).toContain('pg_advisory_xact_lock_shared');
    expect(factLock('fact_payment', true).text).toContain('pg_advisory_xact_lock(');
  });

  it('gives every table a load can write a lock of its own: each dimension and staging table fed by a source', () => {
    const fed = WAREHOUSE_TABLE_NAMES.filter(
      (t) =>
        ['dimension', 'staging'].includes(WAREHOUSE_TABLES[t].kind) && WAREHOUSE_TABLES[t].source !== null,
    );
    expect(fed).toContain('pipeline_heartbeat');
    const ids = fed.map((t) => dimensionLoadLock(t, false).values[1]);
    const others = [derivedLock('dim_staff'), derivedLock('dim_counterparty'), snapshotLock()].map(
      (l) => l.values[1],
    );
    expect(new Set([...ids, ...others]).size).toBe(ids.length + others.length);
    expect(dimensionLoadLock('dim_design', true).text).toContain('pg_advisory_xact_lock(');
    expect(dimensionLoadLock('dim_design', false).text).toContain('pg_advisory_xact_lock_shared(');
    expect(() => dimensionLoadLock('fact_payment', true)).toThrow(/dimensionLoadLock does not apply/);
  });

  it('moves progress forward only, and logs objects once', () => {
    const progress = progressUpsert(
      'staff',
      'stg_staff',
      { epoch: 7, lsn: '0/10', seq: 2 },
      '2025-02-28T09:15:02Z',
    );
    expect(progress.values).toEqual(['staff', 'stg_staff', '0/10', 2, '2025-02-28T09:15:02Z', 7]);
    expect(progress.text).toContain('greatest(p."newest_commit_ts", EXCLUDED."newest_commit_ts")');
    expect(loadLogInsert('k', 'e1', 'dim_design', 3)).toEqual({
      text: expect.stringContaining('ON CONFLICT ("object_key", "etag") DO NOTHING'),
      values: ['k', 'e1', 'dim_design', 3],
    });
    expect(loadLogLookup('k', 'e1').values).toEqual(['k', 'e1']);
  });
  it('filters by the given keys each once, ascending, whether or not they came so', () => {
    const keysOf = (keys: number[]) => factRefreshDeleted('fact_payment', keys).values.at(-1);
    expect(keysOf([1, 2, 5, 9])).toEqual([1, 2, 5, 9]);
    expect(keysOf([9, 2, 5, 2, 1])).toEqual([1, 2, 5, 9]);
    expect(keysOf([1, 2, 2, 3])).toEqual([1, 2, 3]);
    expect(keysOf([7])).toEqual([7]);
    expect(keysOf([])).toEqual([]);
    const sorted = [3, 4, 10];
    expect(keysOf(sorted)).not.toBe(sorted);
    expect(factRefreshDeleted('fact_payment', null).values).toEqual(['fact_payment']);
  });
});
