import { isLsn, normaliseLsn } from '../../core/lsn';
import { WAREHOUSE_TABLES, type WarehouseRow } from '../../core/warehouse-model';
import { factVersionCopyFields, factVersionsInOrder } from '../../core/warehouse-sql';
import { copyTextLine } from './copy-text';
import { at, deleteOf, rowOf, tableEventOf, warehouseRow } from '../../test/support/warehouse-rows';
import {
  batchKeyClaims,
  BatchBuilder,
  ClaimsBuilder,
  factCopyChunks,
  MalformedObjectError,
  prepareBatch,
} from './load-batch';

function issuesOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof MalformedObjectError) return e.issues;
    throw e;
  }
  throw new Error('expected MalformedObjectError');
}

describe('prepareBatch', () => {
  it('folds a dimension object to one upsert and one delete per key, with its extent', () => {
    const batch = prepareBatch({
      table: 'dim_design',
      rows: [
        rowOf('dim_design', 2, { design_name: 'B1' }, at(1)),
        rowOf('dim_design', 1, { design_name: 'A2' }, at(3)),
        rowOf('dim_design', 1, { design_name: 'A1' }, at(2)),
        deleteOf('dim_design', 2, at(4)),
        deleteOf('dim_design', 2, at(2, 7)),
      ],
    });
    expect(batch).toMatchObject({
      kind: 'dimension',
      sourceTable: 'design',
      rowCount: 5,
      keys: [1, 2],
      deletes: [{ key: 2, epoch: 0, lsn: '00000000/00000400', seq: 0 }],
      maxPosition: { epoch: 0, lsn: '00000000/00000400', seq: 0 },
      minPosition: { epoch: 0, lsn: '00000000/00000100', seq: 0 },
      newestCommitTs: '2025-02-28T09:00:04.000123Z',
    });
    expect(batch.upserts.map((u) => [u.values.design_id, u.values.design_name])).toEqual([
      [2, 'B1'],
      [1, 'A2'],
    ]);
  });

  it('fills unchanged columns of the latest upsert from earlier upserts of the same object only', () => {
    const batch = prepareBatch({
      table: 'stg_department',
      rows: [
        rowOf('stg_department', 1, { manager: 'M1', location: 'L1' }, at(1)),
        rowOf('stg_department', 1, { location: 'L2' }, at(2), { unchanged: ['manager'] }),
        rowOf('stg_department', 1, { department_name: 'D3' }, at(3), { unchanged: ['manager', 'location'] }),
        rowOf('stg_department', 2, {}, at(3), { unchanged: ['manager'] }),
      ],
    });
    expect(batch.upserts.map((u) => [u.values.manager, u.values.location, u.unchanged])).toEqual([
      ['M1', 'L2', []],
      [null, 'Manchester', ['manager']],
    ]);
  });

  it('keeps every distinct fact version and delete, and lists what the facts refer to', () => {
    const v1 = rowOf('fact_payment', 1, {}, at(1));
    const batch = prepareBatch({
      table: 'fact_payment',
      rows: [
        v1,
        { ...v1 },
        rowOf('fact_payment', 1, { paid: true, payment_type_id: 3, payment_date: '2022-12-01' }, at(2)),
        deleteOf('fact_payment', 1, at(3)),
      ],
    });
    expect(batch.upserts).toHaveLength(2);
    expect(batch.deletes).toEqual([
      { key: 1, epoch: 0, lsn: '00000000/00000300', seq: 0, commitTs: expect.any(String) },
    ]);
    expect(batch.dates).toEqual(['2022-11-03', '2022-11-07', '2022-12-01']);
    expect(batch.references).toEqual({
      dim_transaction: [1],
      dim_counterparty: [1],
      dim_currency: [1],
      dim_payment_type: [1, 3],
    });
    expect(batch.maxPosition).toEqual({ epoch: 0, lsn: '00000000/00000300', seq: 0 });
  });

  it('refers only to what the versions kept refer to when a repeat of a version replaces it', () => {
    // The same change (key, lsn, seq) twice, the repeat's values differing: the repeat is kept.
    const v1 = rowOf('fact_payment', 1, { payment_type_id: 5, payment_date: '2022-12-09' }, at(1));
    const repeat = { ...v1, payment_type_id: 6, payment_date: '2022-12-10' };
    const rows = [v1, rowOf('fact_payment', 2, { transaction_id: 8 }, at(2)), repeat];
    const batch = prepareBatch({ table: 'fact_payment', rows });
    expect(batch.upserts.map((u) => [u.values.payment_id, u.values.payment_type_id])).toEqual([
      [1, 6],
      [2, 1],
    ]);
    expect(batch.references).toEqual({
      dim_transaction: [1, 8],
      dim_counterparty: [1],
      dim_currency: [1],
      dim_payment_type: [1, 6],
    });
    expect(batch.dates).toEqual(['2022-11-03', '2022-11-07', '2022-12-10']);
    expect(batch.keys).toEqual([1, 2]);
  });

  it('lists keys and references each once, ascending, however they arrive', () => {
    const ids = [
      [5, 9],
      [7, 9],
      [8, 11],
      [2, 12],
      [8, 11],
      [30, 2],
      [31, 2],
    ];
    const rows = ids.map(([id, transaction], i) =>
      rowOf('fact_payment', id, { transaction_id: transaction }, at(i + 1)),
    );
    const rising = prepareBatch({ table: 'fact_payment', rows: rows.slice(0, 3) });
    expect(rising.keys).toEqual([5, 7, 8]);
    expect(rising.references.dim_transaction).toEqual([9, 11]);
    const batch = prepareBatch({ table: 'fact_payment', rows });
    expect(batch.keys).toEqual([2, 5, 7, 8, 30, 31]);
    expect(batch.references.dim_transaction).toEqual([2, 9, 11, 12]);
    const claims = new ClaimsBuilder('fact_payment', 10);
    claims.add(rows);
    expect(claims.finish().references.dim_transaction).toEqual([2, 9, 11, 12]);
  });

  it('takes only the dates of a dim_date object', () => {
    expect(
      prepareBatch({ table: 'dim_date', rows: [{ date_id: '2024-02-29' }, { date_id: '2022-11-03' }] }),
    ).toMatchObject({
      kind: 'date',
      dates: ['2022-11-03', '2024-02-29'],
      sourceTable: null,
      maxPosition: null,
      minPosition: null,
    });
    expect(issuesOf(() => prepareBatch({ table: 'dim_date', rows: [{ date_id: '2023-02-29' }] }))).toEqual([
      'row 0: date_id is not a YYYY-MM-DD calendar date',
    ]);
  });

  it('refuses objects of derived dimensions', () => {
    expect(issuesOf(() => prepareBatch({ table: 'dim_staff', rows: [] }))).toEqual([
      'dim_staff is computed in the warehouse, never loaded from objects',
    ]);
  });

  it('refuses rows that break the contract, naming row and column but never the value', () => {
    const good = rowOf('fact_sales_order', 1, {}, at(1));
    const bad: WarehouseRow[] = [
      { ...good, _op: 'merge' },
      { ...good, _lsn: 'nope' },
      { ...good, _seq: -1 },
      { ...good, _commit_ts: 'yesterday' },
      { ...good, sales_order_id: null },
      { ...good, units_sold: null },
      { ...good, units_sold: 2 ** 31 },
      { ...good, unit_price: '1.005' },
      { ...good, unit_price: 'SECRET-VALUE' },
      { ...good, created_time: '24:00:00.000' },
      { ...good, _unchanged: 'unit_price' },
      { ...good, _unchanged: 'sales_order_id' },
      { ...good, _unchanged: 'no_such_column' },
      { ...good, _unchanged: 7 as unknown as string },
    ];
    const issues = issuesOf(() => prepareBatch({ table: 'fact_sales_order', rows: bad }));
    expect(issues).toEqual([
      'row 0: _op is not one of upsert, snapshot, delete, truncate, snapshot_end',
      'row 1: _lsn is not an LSN',
      'row 2: _seq is not a non-negative integer',
      'row 3: _commit_ts is not an ISO 8601 timestamp',
      'row 4: key sales_order_id is NULL',
      'row 5: units_sold is NULL but NOT NULL in the warehouse',
      'row 6: units_sold is not a 32-bit integer',
      'row 7: unit_price is not a numeric(10,2) (at most 8 integer digits and 2 decimals)',
      'row 8: unit_price is not a numeric(10,2) (at most 8 integer digits and 2 decimals)',
      'row 9: created_time is not an HH:MM:SS.mmm time',
      'row 10: _unchanged names unit_price, a numeric(10,2) column (never TOASTed)',
      'row 11: _unchanged names the key sales_order_id',
      'row 12: _unchanged names "no_such_column", not a column of fact_sales_order',
      'row 13: _unchanged is not text',
    ]);
    expect(issues.join('\n')).not.toContain('SECRET-VALUE');
    // Added in slices (a row group at a time, as the load does), the same issues, rows numbered
    // from the part's first row.
    const sliced =
      (rows: WarehouseRow[], firstRow = 0) =>
      () => {
        const builder = new BatchBuilder('fact_sales_order', firstRow);
        for (let i = 0; i < rows.length; i += 3) builder.add(rows.slice(i, i + 3));
        return builder.finish();
      };
    expect(issuesOf(sliced([good, good, good, ...bad]))).toEqual(
      issues.map((i) => i.replace(/^row (\d+)/, (_, n) => `row ${Number(n) + 3}`)),
    );
    expect(issuesOf(sliced(bad, 100))[0]).toBe(issues[0].replace('row 0', 'row 100'));
    expect(issuesOf(() => new BatchBuilder('dim_staff').finish())).toEqual([
      'dim_staff is computed in the warehouse, never loaded from objects',
    ]);
  });

  it('checks times, amounts and LSNs as the regular expressions its checks replaced did', () => {
    // The regular expressions load-batch.ts used before (bench/README.md, session 12).
    const TIME_3 = /^([01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}$/;
    const NUMERIC_10_2 = /^-?\d{1,8}(\.\d{1,2})?$/;
    const CANONICAL_LSN = /^[0-9A-F]{8}\/[0-9A-F]{8}$/;
    /** Each candidate, and each with one character replaced, dropped or doubled. */
    const variants = (texts: string[], alphabet: string): string[] => {
      const out = new Set(texts);
      for (const text of texts)
        for (let i = 0; i <= text.length; i += 1) {
          out.add(text.slice(0, i) + text.slice(i + 1));
          out.add(text.slice(0, i) + text.slice(i, i + 1) + text.slice(i));
          for (const c of alphabet) out.add(text.slice(0, i) + c + text.slice(i + 1));
        }
      return [...out];
    };
    const good = rowOf('fact_sales_order', 1, {}, at(1));
    const refused = (row: WarehouseRow) => {
      try {
        prepareBatch({ table: 'fact_sales_order', rows: [row] });
        return false;
      } catch (e) {
        if (e instanceof MalformedObjectError) return true;
        throw e;
      }
    };
    const times = variants(['00:00:00.000', '23:59:59.999', '19:05:31.042', '24:00:00.000'], '0123569:.a -٣');
    for (const time of times)
      expect([time, refused({ ...good, created_time: time })]).toEqual([time, !TIME_3.test(time)]);
    const amounts = variants(
      ['0', '-1', '12345678', '-12345678.99', '1.5', '00000001.00', '123456789', '1.555', '.5'],
      '019.- e+٣',
    );
    for (const amount of amounts)
      expect([amount, refused({ ...good, unit_price: amount })]).toEqual([
        amount,
        !NUMERIC_10_2.test(amount),
      ]);
    // An LSN that is not canonical is still taken when valid, normalised; a canonical one as it is.
    const lsns = variants(['00000000/00000000', '0000000A/FFFFFFFF', '16/B374D848', '0/0'], '09AFafG/ ');
    for (const lsn of lsns) {
      const row = { ...good, _lsn: lsn };
      if (isLsn(lsn))
        expect(prepareBatch({ table: 'fact_sales_order', rows: [row] }).upserts[0].lsn).toBe(
          normaliseLsn(lsn),
        );
      else expect([lsn, refused(row)]).toEqual([lsn, true]);
      if (CANONICAL_LSN.test(lsn)) expect(normaliseLsn(lsn)).toBe(lsn);
    }
    expect(times.length + amounts.length + lsns.length).toBeGreaterThan(1_000);
  });

  it('prepares the same batch from rows added in slices as from the rows whole', () => {
    for (const table of ['fact_payment', 'dim_design', 'dim_date'] as const) {
      const rows =
        table === 'dim_date'
          ? [{ date_id: '2024-02-01' }, { date_id: '2024-01-31' }, { date_id: '2024-02-01' }]
          : [1, 2, 1, 3, 2].map((id, i) => rowOf(table, id, {}, at(i + 1)));
      const builder = new BatchBuilder(table, 7);
      builder.add(rows.slice(0, 2));
      builder.add([]);
      builder.add(rows.slice(2));
      expect(builder.finish()).toEqual(prepareBatch({ table, rows }, { firstRow: 7 }));
    }
  });

  it('checks every type, and stops collecting after twenty issues', () => {
    const good = rowOf('fact_payment', 1, {}, at(1));
    expect(
      issuesOf(() =>
        prepareBatch({
          table: 'fact_payment',
          rows: [
            { ...good, paid: 'yes' },
            { ...good, payment_date: '2022-02-30' },
            { ...good, transaction_id: 1.5 },
          ],
        }),
      ),
    ).toEqual([
      'row 0: paid is not a boolean',
      'row 1: payment_date is not a YYYY-MM-DD calendar date',
      'row 2: transaction_id is not a 32-bit integer',
    ]);
    const text = rowOf('dim_design', 1, {}, at(1));
    expect(
      issuesOf(() =>
        prepareBatch({
          table: 'dim_design',
          rows: [
            { ...text, design_name: 5 },
            { ...text, file_name: 'a\u0000b' },
          ],
        }),
      ),
    ).toEqual(['row 0: design_name is not text', 'row 1: file_name is text with a NUL byte']);
    const many = Array.from({ length: 50 }, () => ({ ...good, _op: 'merge' }));
    const error = (() => {
      try {
        prepareBatch({ table: 'fact_payment', rows: many });
      } catch (e) {
        return e as MalformedObjectError;
      }
    })()!;
    expect(error.issues).toHaveLength(20);
    expect(error.message).toMatch(/^fact_payment object is malformed: row 0: .*\(\+17 more\)$/);
  });

  it('ignores whatever else a delete carries beyond its key', () => {
    const full = warehouseRow('dim_location', { location_id: 4, city: 12 as unknown as string }, at(1));
    const batch = prepareBatch({ table: 'dim_location', rows: [{ ...full, _op: 'delete' }] });
    expect(batch.deletes).toEqual([{ key: 4, epoch: 0, lsn: '00000000/00000100', seq: 0 }]);
  });
});

describe('factCopyChunks', () => {
  it("writes each fact version as copyTextLine(factVersionCopyFields(…)) would, in the facts' order", () => {
    const odd = { item_code: 'a\tb\\N\nc\rd "e", {f}' };
    for (const [table, overrides, unchanged] of [
      ['fact_payment', { paid: true }, []],
      ['fact_sales_order', {}, []],
      ['fact_purchase_order', odd, []],
      ['fact_purchase_order', odd, ['item_code']],
    ] as const) {
      const rows = [3, 1, 2].map((id, i) => ({
        ...rowOf(table, id, overrides, at(i + 1), {
          op: i === 1 ? 'snapshot' : 'upsert',
          unchanged: id === 2 ? unchanged : [],
        }),
        _row_hash: i === 0 ? 'h\t1' : i === 1 ? null : 'h2',
      }));
      const batch = prepareBatch({ table, rows });
      const lines = factVersionsInOrder(table, batch.upserts).map((v) =>
        copyTextLine(factVersionCopyFields(WAREHOUSE_TABLES[table], v)),
      );
      expect(lines).toHaveLength(3);
      expect(Buffer.concat([...factCopyChunks(batch)]).toString()).toBe(lines.join(''));
    }
  });
});

describe('ClaimsBuilder', () => {
  const claimsOf = (
    table: Parameters<typeof prepareBatch>[0]['table'],
    partRows: number,
    rows: WarehouseRow[],
  ) => {
    const builder = new ClaimsBuilder(table, partRows);
    // In slices that do not follow the parts, as the load reads row groups.
    builder.add(rows.slice(0, 1));
    builder.add(rows.slice(1));
    return builder.finish();
  };

  it('claims every date and dimension key a fact object refers to, from the versions only', () => {
    const claims = claimsOf('fact_payment', 1, [
      rowOf('fact_payment', 1, { transaction_id: 20, payment_date: '2022-12-20' }, at(1)),
      rowOf('fact_payment', 2, { transaction_id: 10, currency_id: 3 }, at(2), { op: 'snapshot' }),
      // A delete's values (REPLICA IDENTITY FULL) are no reference; a bad value is the parts' to refuse.
      { ...rowOf('fact_payment', 3, { transaction_id: 5 }, at(3)), _op: 'delete' },
      rowOf('fact_payment', 4, { transaction_id: 2 ** 40, payment_date: '2022-02-30' }, at(4)),
    ]);
    expect(claims).toEqual({
      dates: ['2022-11-03', '2022-11-07', '2022-12-20'],
      references: {
        dim_transaction: [10, 20],
        dim_counterparty: [1],
        dim_currency: [1, 3],
        dim_payment_type: [1],
      },
      keys: [],
      factExclusive: true,
      dimensionExclusive: false,
    });
  });

  it('says when some part of a fact object takes the fact lock exclusively', () => {
    const upserts = [1, 2].map((id) => rowOf('fact_payment', id, {}, at(id)));
    expect(claimsOf('fact_payment', 1, upserts).factExclusive).toBe(false);
    for (const last of [
      rowOf('fact_payment', 3, {}, at(3), { unchanged: ['payment_amount'] }),
      deleteOf('fact_payment', 3, at(3)),
      tableEventOf('fact_payment', 'truncate', at(3)),
    ])
      expect(claimsOf('fact_payment', 1, [...upserts, last]).factExclusive).toBe(true);
  });

  it('says when a dimension object may work over the whole table (snapshot rows, end marker, TRUNCATE)', () => {
    const upserts = [1, 2].map((id) => rowOf('stg_staff', id, {}, at(id)));
    expect(claimsOf('stg_staff', 1, [...upserts, deleteOf('stg_staff', 3, at(3))]).dimensionExclusive).toBe(
      false,
    );
    for (const last of [
      rowOf('stg_staff', 3, {}, at(3), { op: 'snapshot' }),
      tableEventOf('stg_staff', 'snapshot_end', at(3), 3),
      tableEventOf('stg_staff', 'truncate', at(3)),
    ])
      expect(claimsOf('stg_staff', 1, [...upserts, last]).dimensionExclusive).toBe(true);
  });

  it('claims no key of a dimension object whose parts lock keys in rising order', () => {
    const rows = [1, 2, 3, 2, 4, 5].map((id, i) => rowOf('dim_transaction', id, {}, at(1, i)));
    expect(claimsOf('dim_transaction', 2, rows).keys).toEqual([]);
  });

  it('claims every key up to the highest one a part would lock below a key locked before it', () => {
    // Parts [30, 10], [20, 5] (20 and 5 below 30), [40, 1] (1 below 40): all keys up to 20.
    const rows = [30, 10, 20, 5, 40, 1].map((id, i) => rowOf('dim_transaction', id, {}, at(1, i)));
    expect(claimsOf('dim_transaction', 2, rows).keys).toEqual([1, 5, 10, 20]);
    // One part: one sorted upsert, in order.
    expect(claimsOf('dim_transaction', 10, rows).keys).toEqual([]);
  });

  it("claims a part's deleted keys below its upserted ones (the delete runs after the upsert)", () => {
    const rows = [
      rowOf('stg_staff', 1, {}, at(1)),
      rowOf('stg_staff', 3, {}, at(1, 1)),
      deleteOf('stg_staff', 2, at(1, 2)),
      tableEventOf('stg_staff', 'truncate', at(1, 3)),
      rowOf('stg_staff', 4, {}, at(2)),
    ];
    expect(claimsOf('stg_staff', 4, rows).keys).toEqual([1, 2]);
  });
});

describe('batchKeyClaims', () => {
  it("claims a one-part batch's keys up to its highest deleted key below an upserted one", () => {
    const rows = [
      rowOf('dim_transaction', 2, {}, at(1)),
      rowOf('dim_transaction', 30, {}, at(1, 1)),
      deleteOf('dim_transaction', 10, at(1, 2)),
      deleteOf('dim_transaction', 40, at(1, 3)),
    ];
    expect(batchKeyClaims(prepareBatch({ table: 'dim_transaction', rows }))).toEqual([2, 10]);
    // Deletes above every upserted key, or only upserts: in order already.
    expect(batchKeyClaims(prepareBatch({ table: 'dim_transaction', rows: [rows[0], rows[3]] }))).toEqual([]);
    expect(batchKeyClaims(prepareBatch({ table: 'dim_transaction', rows: rows.slice(0, 2) }))).toEqual([]);
  });
});
