/**
 * The chaos run's verdict, pure: the versions the ledger says were committed against the versions
 * the warehouse's fact history holds. A version is a source row's key and the hash of the whole row
 * (`_row_hash`, core/star-mapping.ts `sourceRowHash`), counted as a multiset: a row set back to an
 * earlier content is two versions with the same hash, and the warehouse must hold it twice too.
 */
export interface RowVersion {
  /** Source table (sales_order, purchase_order, payment). */
  table: string;
  key: string;
  hash: string;
}

export interface TableComparison {
  table: string;
  /** Versions the ledger holds (committed; the seeded rows count once each). */
  committed: number;
  /** Versions the warehouse's fact history holds. */
  loaded: number;
  /** Committed versions missing from the warehouse. */
  lost: number;
  /** Copies of a committed version beyond the number of times it was committed. */
  duplicated: number;
  /** Warehouse versions whose content was never committed (wrong values). */
  unexpected: number;
}

export interface VersionComparison {
  tables: TableComparison[];
  lost: number;
  duplicated: number;
  unexpected: number;
  /** The first few of each, for the report. */
  examples: { lost: RowVersion[]; duplicated: RowVersion[]; unexpected: RowVersion[] };
}

const EXAMPLES = 5;

function identity(v: RowVersion): string {
  return `${v.table}\u0000${v.key}\u0000${v.hash}`;
}

function countBy(versions: readonly RowVersion[]): Map<string, { version: RowVersion; n: number }> {
  const counts = new Map<string, { version: RowVersion; n: number }>();
  for (const v of versions) {
    const id = identity(v);
    const c = counts.get(id);
    if (c) c.n++;
    else counts.set(id, { version: v, n: 1 });
  }
  return counts;
}

export function compareVersions(
  committed: readonly RowVersion[],
  loaded: readonly RowVersion[],
  tables: readonly string[],
): VersionComparison {
  const want = countBy(committed);
  const have = countBy(loaded);
  const per = new Map<string, TableComparison>(
    tables.map((t) => [t, { table: t, committed: 0, loaded: 0, lost: 0, duplicated: 0, unexpected: 0 }]),
  );
  const row = (table: string) => {
    let r = per.get(table);
    if (!r) per.set(table, (r = { table, committed: 0, loaded: 0, lost: 0, duplicated: 0, unexpected: 0 }));
    return r;
  };
  const examples: VersionComparison['examples'] = { lost: [], duplicated: [], unexpected: [] };
  const note = (list: RowVersion[], v: RowVersion) => list.length < EXAMPLES && list.push(v);
  for (const { version, n } of want.values()) {
    const r = row(version.table);
    r.committed += n;
    const got = have.get(identity(version))?.n ?? 0;
    if (got < n) {
      r.lost += n - got;
      note(examples.lost, version);
    } else if (got > n) {
      r.duplicated += got - n;
      note(examples.duplicated, version);
    }
  }
  for (const { version, n } of have.values()) {
    const r = row(version.table);
    r.loaded += n;
    if (!want.has(identity(version))) {
      r.unexpected += n;
      note(examples.unexpected, version);
    }
  }
  const list = [...per.values()];
  const sum = (k: 'lost' | 'duplicated' | 'unexpected') => list.reduce((a, r) => a + r[k], 0);
  return {
    tables: list,
    lost: sum('lost'),
    duplicated: sum('duplicated'),
    unexpected: sum('unexpected'),
    examples,
  };
}
