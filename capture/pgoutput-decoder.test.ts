import type { Pgoutput } from 'pg-logical-replication';
import { columnsOf, DecodeError, PgoutputDecoder, snapshotLsn } from './pgoutput-decoder';

// Hand-built pgoutput messages in the shape pg-logical-replication parses them into: no database.

const relation: Pgoutput.MessageRelation = {
  tag: 'relation',
  relationOid: 16384,
  schema: 'public',
  name: 'payment',
  replicaIdentity: 'default',
  keyColumns: ['payment_id'],
  columns: [
    {
      name: 'payment_id',
      flags: 1,
      typeOid: 23,
      typeMod: -1,
      typeSchema: null,
      typeName: null,
      parser: (x: unknown) => x,
    },
    {
      name: 'payment_amount',
      flags: 0,
      typeOid: 1700,
      typeMod: 655366,
      typeSchema: null,
      typeName: null,
      parser: (x: unknown) => x,
    },
    {
      name: 'kind',
      flags: 0,
      typeOid: 99999,
      typeMod: -1,
      typeSchema: 'public',
      typeName: 'PaymentTypeName',
      parser: (x: unknown) => x,
    },
    {
      name: 'notes',
      flags: 0,
      typeOid: 25,
      typeMod: -1,
      typeSchema: null,
      typeName: null,
      parser: (x: unknown) => x,
    },
    {
      name: 'odd',
      flags: 0,
      typeOid: 424242,
      typeMod: -1,
      typeSchema: null,
      typeName: null,
      parser: (x: unknown) => x,
    },
  ],
};

const begin = (lsn = '0/16B3748'): Pgoutput.MessageBegin => ({
  tag: 'begin',
  commitLsn: lsn,
  commitTime: 1740734102123456n,
  xid: 770,
});
const commit = (lsn = '0/16B3748', end = '0/16B3780'): Pgoutput.MessageCommit => ({
  tag: 'commit',
  flags: 0,
  commitLsn: lsn,
  commitEndLsn: end,
  commitTime: 1740734102123456n,
});

describe('PgoutputDecoder', () => {
  it('gives every change of a transaction its commit LSN, ordinal and commit time', () => {
    const d = new PgoutputDecoder();
    expect(d.decode(begin())).toEqual({
      kind: 'begin',
      lsn: '00000000/016B3748',
      ts: '2025-02-28T09:15:02.123456Z',
    });
    expect(d.inTransaction).toBe(true);
    const insert = d.decode({
      tag: 'insert',
      relation,
      new: { payment_id: '1', payment_amount: '56925.44', kind: 'SALES_RECEIPT', notes: '', odd: null },
    });
    const update = d.decode({
      tag: 'update',
      relation,
      key: null,
      old: null,
      new: { payment_id: '1', payment_amount: '1.00', kind: 'SALES_RECEIPT', notes: null, odd: null },
    });
    expect(insert).toEqual({
      kind: 'change',
      schema: 'public',
      table: 'payment',
      columns: [
        { name: 'payment_id', type: 'int4', key: true },
        { name: 'payment_amount', type: 'numeric', key: false },
        { name: 'kind', type: 'PaymentTypeName', key: false },
        { name: 'notes', type: 'text', key: false },
        { name: 'odd', type: 'oid:424242', key: false },
      ],
      change: {
        op: 'insert',
        lsn: '00000000/016B3748',
        seq: 0,
        ts: '2025-02-28T09:15:02.123456Z',
        values: ['1', '56925.44', 'SALES_RECEIPT', '', null],
      },
    });
    expect(update).toMatchObject({
      change: { op: 'update', seq: 1, values: ['1', '1.00', 'SALES_RECEIPT', null, null] },
    });
    expect(d.decode(commit())).toEqual({
      kind: 'commit',
      lsn: '00000000/016B3748',
      endLsn: '00000000/016B3780',
      ts: '2025-02-28T09:15:02.123456Z',
      changes: 2,
    });
    expect(d.inTransaction).toBe(false);
  });

  it('marks unchanged TOAST values of an update, and treats missing columns of a key-only delete as null', () => {
    const d = new PgoutputDecoder();
    d.decode(begin());
    const update = d.decode({
      tag: 'update',
      relation,
      key: null,
      old: null,
      new: { payment_id: '1', payment_amount: '2.00', kind: 'SALES_RECEIPT', notes: undefined, odd: null },
    });
    expect(update).toMatchObject({
      change: { values: ['1', '2.00', 'SALES_RECEIPT', null, null], unchanged: [3] },
    });
    const del = d.decode({ tag: 'delete', relation, key: { payment_id: '1' }, old: null });
    expect(del).toMatchObject({ change: { op: 'delete', seq: 1, values: ['1', null, null, null, null] } });
    expect((del as { change: object }).change).not.toHaveProperty('unchanged');
    const fullDelete = d.decode({
      tag: 'delete',
      relation,
      key: null,
      old: { payment_id: '2', payment_amount: '3.00', kind: 'SALES_REFUND', notes: 'n', odd: null },
    });
    expect(fullDelete).toMatchObject({ change: { values: ['2', '3.00', 'SALES_REFUND', 'n', null] } });
  });

  it('turns an update that changed the key into a delete of the old key, then the new row', () => {
    const d = new PgoutputDecoder();
    d.decode(begin());
    const row = { payment_id: '9', payment_amount: '1.00', kind: 'SALES_RECEIPT', notes: null, odd: 'x' };
    d.decode({ tag: 'insert', relation, new: row });
    const items = d.decode({ tag: 'update', relation, key: { payment_id: '7' }, old: null, new: row });
    expect(
      Array.isArray(items) &&
        items.map((i) => i.kind === 'change' && [i.change.op, i.change.seq, i.change.values]),
    ).toEqual([
      ['delete', 1, ['7', null, null, null, null]],
      ['update', 2, ['9', '1.00', 'SALES_RECEIPT', null, 'x']],
    ]);
    // Under REPLICA IDENTITY FULL the old row always comes: an unchanged key is a plain update.
    const same = d.decode({ tag: 'update', relation, key: null, old: row, new: { ...row, notes: 'n' } });
    expect(Array.isArray(same)).toBe(false);
    expect(same).toMatchObject({ change: { op: 'update', seq: 3 } });
  });

  it('turns a truncate of several tables into one change per table', () => {
    const d = new PgoutputDecoder();
    d.decode(begin());
    const other = { ...relation, name: 'transaction' };
    const out = d.decode({
      tag: 'truncate',
      cascade: false,
      restartIdentity: false,
      relations: [relation, other],
    });
    expect(out).toEqual([
      expect.objectContaining({
        table: 'payment',
        change: expect.objectContaining({ op: 'truncate', seq: 0, values: [] }),
      }),
      expect.objectContaining({
        table: 'transaction',
        change: expect.objectContaining({ op: 'truncate', seq: 1, values: [] }),
      }),
    ]);
  });

  it('passes logical messages through and ignores relation, type and origin messages', () => {
    const d = new PgoutputDecoder();
    expect(
      d.decode({
        tag: 'message',
        flags: 1,
        transactional: true,
        messageLsn: '0/1',
        prefix: 'totes.heartbeat',
        content: Buffer.from('2025'),
      }),
    ).toEqual({ kind: 'message', prefix: 'totes.heartbeat', content: '2025', transactional: true });
    expect(d.decode(relation)).toBeNull();
    expect(d.decode({ tag: 'type', typeOid: 1, typeSchema: 'public', typeName: 'x' })).toBeNull();
    expect(d.decode({ tag: 'origin', originLsn: '0/1', originName: 'o' })).toBeNull();
  });

  it('refuses what breaks the protocol or the raw-text contract', () => {
    const d = new PgoutputDecoder();
    expect(() => d.decode({ tag: 'insert', relation, new: {} })).toThrow(DecodeError);
    expect(() => d.decode(commit())).toThrow(/outside a transaction/);
    expect(() => d.decode({ ...begin(), commitLsn: null })).toThrow(/final LSN/);
    d.decode(begin());
    expect(() => d.decode({ ...commit(), commitEndLsn: null })).toThrow(/end LSN/);
    expect(() =>
      d.decode({
        tag: 'insert',
        relation,
        new: { payment_id: new Date(), payment_amount: null, kind: null, notes: null, odd: null },
      }),
    ).toThrow(/arrived as object, expected text/);
    expect(() => d.decode({ tag: 'nope' } as unknown as Pgoutput.Message)).toThrow(
      /unknown pgoutput message/,
    );
  });
});

describe('columnsOf and snapshotLsn', () => {
  it('names built-in types by OID', () => {
    expect(columnsOf(relation).map((c) => c.type)).toEqual([
      'int4',
      'numeric',
      'PaymentTypeName',
      'text',
      'oid:424242',
    ]);
  });

  it('puts snapshot rows just before the consistent point', () => {
    expect(snapshotLsn('0/16B3748')).toBe('00000000/016B3747');
  });
});
