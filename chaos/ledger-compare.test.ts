import { compareVersions, type RowVersion } from './ledger-compare';

const v = (key: string, hash: string, table = 'sales_order'): RowVersion => ({ table, key, hash });

describe('compareVersions', () => {
  it('finds nothing wrong when the warehouse holds each committed version once', () => {
    const committed = [v('1', 'a'), v('1', 'b'), v('2', 'a', 'payment')];
    const c = compareVersions(committed, [...committed].reverse(), [
      'sales_order',
      'payment',
      'purchase_order',
    ]);
    expect(c).toMatchObject({ lost: 0, duplicated: 0, unexpected: 0 });
    expect(c.tables.map((t) => [t.table, t.committed, t.loaded])).toEqual([
      ['sales_order', 2, 2],
      ['payment', 1, 1],
      ['purchase_order', 0, 0],
    ]);
  });

  it('counts a missing version as lost and an extra copy as duplicated', () => {
    const c = compareVersions([v('1', 'a'), v('1', 'b')], [v('1', 'a'), v('1', 'a')], ['sales_order']);
    expect(c).toMatchObject({ lost: 1, duplicated: 1, unexpected: 0 });
    expect(c.examples.lost).toEqual([v('1', 'b')]);
    expect(c.examples.duplicated).toEqual([v('1', 'a')]);
  });

  it('compares as multisets: a row set back to an earlier content must be there twice', () => {
    const committed = [v('1', 'a'), v('1', 'b'), v('1', 'a')];
    expect(compareVersions(committed, [v('1', 'a'), v('1', 'b')], []).lost).toBe(1);
    expect(compareVersions(committed, [v('1', 'a'), v('1', 'b'), v('1', 'a')], []).lost).toBe(0);
  });

  it('reports warehouse versions never committed, in tables it was not told about too', () => {
    const c = compareVersions(
      [v('1', 'a')],
      [v('1', 'a'), v('1', 'z'), v('9', 'q', 'payment')],
      ['sales_order'],
    );
    expect(c.unexpected).toBe(2);
    expect(c.tables.find((t) => t.table === 'payment')).toMatchObject({ loaded: 1, unexpected: 1 });
  });
});
