import type { Client } from 'pg';
import { HOSTILE_VALUES } from '../core/csv-codec.fixtures';
import { createTestDatabase, waitFor } from '../test/support/pg';
import { rawTextClient } from './pg-text';
import { ChangeBatchSchema, type Change } from '../core/change-event';
import type { BatchRecord } from './change-batcher';
import {
  copySnapshotTables,
  describeTables,
  parseCopyTextRow,
  readSnapshot,
  type CopySnapshotOptions,
  type SnapshotRows,
} from './snapshot';

/**
 * readSnapshot reads tables with COPY … TO STDOUT in text format inside an exported snapshot: the
 * values must be exactly what a SELECT gives as text (NULL apart from ''), whatever they hold, and
 * pages must stay within their row and byte bounds.
 */
let url: string;
let client: Client;
let exporter: Client;

beforeAll(async () => {
  url = await createTestDatabase('snapshot_copy');
  client = rawTextClient(url);
  exporter = rawTextClient(url);
  await Promise.all([client.connect(), exporter.connect()]);
  await exporter.query(
    `CREATE TABLE hostile (id int PRIMARY KEY, v text, n numeric(10,2), at timestamp(3), b bytea)`,
  );
  await exporter.query(`CREATE TABLE "empty ""one""" (id int PRIMARY KEY)`);
  await exporter.query(`CREATE TABLE wide (id int PRIMARY KEY, filler text)`);
  await exporter.query(
    `INSERT INTO hostile SELECT i, v, (i * 1.5)::numeric(10,2), '2025-02-28 09:15:02.123'::timestamp + i * interval '1 day', convert_to(coalesce(v, ''), 'UTF8')
       FROM unnest($1::text[]) WITH ORDINALITY AS t(v, i)`,
    [[...HOSTILE_VALUES, 'tab\there', 'back\\slash', '\\N', 'cr\rlf\n', 'ünïcödé 🎉']],
  );
  await exporter.query(`INSERT INTO wide SELECT i, repeat('x', 1000) FROM generate_series(1, 50) AS i`);
});

afterAll(async () => {
  await Promise.all([client.end(), exporter.end()]);
});

/** A snapshot exported by a transaction that stays open (what the slot's export does). */
async function exportedSnapshot(): Promise<string> {
  await exporter.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  return (await exporter.query('SELECT pg_export_snapshot() AS name')).rows[0].name;
}

async function readAll(pageRows: number, pageBytes?: number): Promise<SnapshotRows[]> {
  const name = await exportedSnapshot();
  try {
    const layouts = await describeTables(client, 'public', ['hostile', 'empty "one"', 'wide']);
    const pages: SnapshotRows[] = [];
    for await (const page of readSnapshot(client, name, layouts, pageRows, pageBytes)) pages.push(page);
    return pages;
  } finally {
    await exporter.query('COMMIT');
  }
}

describe('readSnapshot (COPY text format)', () => {
  it('reads exactly the text a SELECT gives, NULL apart from the empty string, every escape decoded', async () => {
    const pages = await readAll(1000);
    const selected = await client.query({ text: 'SELECT id, v, n, at, b FROM hostile', rowMode: 'array' });
    const hostile = pages.filter((p) => p.layout.table === 'hostile');
    expect(hostile.map((p) => p.tableDone)).toEqual([true]);
    expect(hostile[0].rows).toEqual(selected.rows);
    expect(hostile[0].rows.some((r) => r[1] === null)).toBe(true);
    expect(hostile[0].rows.some((r) => r[1] === '')).toBe(true);
    expect(pages.filter((p) => p.layout.table === 'empty "one"')).toMatchObject([
      { rows: [], tableDone: true },
    ]);
  });

  it('bounds pages by rows and by bytes, the last page of a table marked done', async () => {
    const byRows = (await readAll(20)).filter((p) => p.layout.table === 'wide');
    expect(byRows.map((p) => [p.rows.length, p.tableDone])).toEqual([
      [20, false],
      [20, false],
      [10, true],
    ]);
    // 1,005-byte rows, 8 KiB pages: 9 rows (the row that crosses the bound ends the page).
    const byBytes = (await readAll(1000, 8 * 1024)).filter((p) => p.layout.table === 'wide');
    expect(Math.max(...byBytes.map((p) => p.rows.length))).toBe(9);
    expect(byBytes.reduce((n, p) => n + p.rows.length, 0)).toBe(50);
    expect(byBytes.map((p) => p.rows.map((r) => Number(r[0]))).flat()).toEqual(
      Array.from({ length: 50 }, (_, i) => i + 1),
    );
  });

  it('sees the snapshot, not rows committed after it', async () => {
    const name = await exportedSnapshot();
    const other = rawTextClient(url);
    await other.connect();
    try {
      await other.query(`INSERT INTO wide VALUES (1000, 'later')`);
      const layouts = await describeTables(client, 'public', ['wide']);
      let rows = 0;
      for await (const page of readSnapshot(client, name, layouts)) rows += page.rows.length;
      expect(rows).toBe(50);
    } finally {
      await exporter.query('COMMIT');
      await other.query('DELETE FROM wide WHERE id = 1000');
      await other.end();
    }
  });
});

describe('parseCopyTextRow', () => {
  it('decodes octal and hex escapes as UTF-8 bytes and refuses a row of the wrong width', () => {
    expect(parseCopyTextRow(Buffer.from('\\303\\274\\x41\\q\t\\N\n'), 2)).toEqual(['üAq', null]);
    expect(() => parseCopyTextRow(Buffer.from('a\tb\n'), 3)).toThrow(/2 fields, expected 3/);
  });
});

describe('copySnapshotTables (tables on parallel connections in one snapshot)', () => {
  const TABLES = ['hostile', 'empty "one"', 'wide'];
  beforeAll(async () => {
    await exporter.query(
      `CREATE TABLE big AS SELECT i AS id, repeat('y', 1000) AS filler FROM generate_series(1, 2000) AS i`,
    );
  });
  const connect = async () => {
    const c = rawTextClient(url);
    await c.connect();
    return c;
  };

  async function copyAll(
    connections: number,
    extra: Partial<CopySnapshotOptions> = {},
    between?: () => Promise<void>,
    tables = TABLES,
  ): Promise<{ records: BatchRecord[]; changes: (Change & { table: string })[]; rows: number }> {
    const name = await exportedSnapshot();
    try {
      await between?.();
      const layouts = await describeTables(client, 'public', tables);
      const records: BatchRecord[] = [];
      const { rows } = await copySnapshotTables({
        connect,
        snapshotName: name,
        layouts,
        lsn: '0/16B3747',
        epoch: 7,
        connections,
        flushBytes: 2 ** 30,
        put: async (batch) => void records.push(...batch),
        ...extra,
      });
      const changes = records.flatMap((r) => {
        const batch = ChangeBatchSchema.parse(JSON.parse(r.data.toString('utf8')));
        return batch.changes.map((c) => ({ ...c, table: batch.table }));
      });
      return { records, changes, rows };
    } finally {
      await exporter.query('COMMIT');
    }
  }

  /** What a SELECT gives for every table, as text, by table. */
  async function selectAll(): Promise<Record<string, (string | null)[][]>> {
    const layouts = await describeTables(client, 'public', TABLES);
    const out: Record<string, (string | null)[][]> = {};
    for (const { table, columns } of layouts) {
      const cols = columns.map((c) => `"${c.name}"`).join(', ');
      const { rows } = await client.query({
        text: `SELECT ${cols} FROM "${table.replace(/"/g, '""')}" ORDER BY 1`,
        rowMode: 'array',
      });
      out[table] = rows;
    }
    return out;
  }

  it('copies exactly the rows of each table, with its snapshot_end count and ordinals in table order', async () => {
    const expected = await selectAll();
    const sequential = await copyAll(1);
    const parallel = await copyAll(3);
    for (const { changes, rows } of [sequential, parallel]) {
      expect(rows).toBe(expected.hostile.length + expected.wide.length);
      for (const table of TABLES) {
        const own = changes.filter((c) => c.table === table);
        const values = own.filter((c) => c.op === 'snapshot').map((c) => c.values);
        values.sort((a, b) => Number(a[0]) - Number(b[0]));
        expect(values).toEqual(expected[table]);
        const ends = own.filter((c) => c.op === 'snapshot_end');
        expect(ends).toEqual([expect.objectContaining({ rows: expected[table].length })]);
        // The table's end is its last ordinal.
        expect(ends[0].seq).toBe(Math.max(...own.map((c) => c.seq)));
      }
      // Ordinals 0… across the whole snapshot, tables one after another, as a sequential read gives.
      const seqs = changes.map((c) => c.seq).sort((a, b) => a - b);
      expect(seqs).toEqual(seqs.map((_, i) => i));
      for (let t = 1; t < TABLES.length; t += 1) {
        const before = changes.filter((c) => c.table === TABLES[t - 1]).map((c) => c.seq);
        const after = changes.filter((c) => c.table === TABLES[t]).map((c) => c.seq);
        expect(Math.min(...after)).toBe(Math.max(...before) + 1);
      }
    }
    // The same records, byte for byte, whichever connection read a table.
    const byTable = (records: BatchRecord[]) =>
      TABLES.map((t) =>
        records
          .filter((r) => r.table === t)
          // The same but for the time each copy read (`ts`).
          .map((r) => [r.partitionKey, r.data.toString('utf8').replace(/"ts":"[^"]+"/g, '"ts":"…"')]),
      );
    expect(byTable(parallel.records)).toEqual(byTable(sequential.records));
  });

  it('sees the exported snapshot on every connection, not rows committed after it', async () => {
    const other = rawTextClient(url);
    await other.connect();
    try {
      const { changes } = await copyAll(3, {}, async () => {
        await other.query(`INSERT INTO wide VALUES (1000, 'later')`);
        await other.query(`INSERT INTO hostile (id, v) VALUES (1000, 'later')`);
        await other.query(`INSERT INTO "empty ""one""" VALUES (1000)`);
      });
      expect(changes.filter((c) => c.values.includes('later') || c.values[0] === '1000')).toEqual([]);
      const ends = Object.fromEntries(
        changes.filter((c) => c.op === 'snapshot_end').map((c) => [c.table, c.rows]),
      );
      expect(ends).toEqual({ hostile: expect.any(Number), 'empty "one"': 0, wide: 50 });
    } finally {
      await other.query('DELETE FROM wide WHERE id = 1000');
      await other.query('DELETE FROM hostile WHERE id = 1000');
      await other.query(`DELETE FROM "empty ""one""" WHERE id = 1000`);
      await other.end();
    }
  });

  it('hands records over in batches bounded by bytes, and stops, connections closed, when told to', async () => {
    const puts: number[] = [];
    const { records } = await copyAll(
      2,
      {
        flushBytes: 64 * 1024,
        put: async (batch) => void puts.push(batch.reduce((sum, r) => sum + r.data.length, 0)),
      },
      undefined,
      ['big', 'wide'],
    );
    expect(records).toEqual([]);
    // 2 MB in `big`: batches of 64 KiB, plus the records of what the socket read that crossed it
    // held. A read is up to 64 KiB of COPY text, i.e. up to 67 of big's ~1,006-byte rows (65 whole,
    // one split at each end), and each becomes a record of up to ~1,100 bytes: the records, not the
    // read, are what count (the bound once took the read's 64 KiB, and CI exceeded it by 1,169 bytes).
    const rowsPerRead = Math.ceil((64 * 1024) / 1006) + 1;
    expect(puts.length).toBeGreaterThan(10);
    expect(Math.max(...puts)).toBeLessThanOrEqual(64 * 1024 + rowsPerRead * 1100);

    const before = await backends();
    let batches = 0;
    await expect(
      copyAll(
        2,
        {
          flushBytes: 64 * 1024,
          onBatch: () => {
            batches += 1;
            if (batches === 2) throw new Error('stopping');
          },
        },
        undefined,
        ['big', 'wide'],
      ),
    ).rejects.toThrow('stopping');
    // Every connection the copy opened is closed when it rejects. A backend leaves pg_stat_activity
    // only once the server has processed the client's Terminate: poll until it has (CI saw 3 for 2).
    await waitFor('the copy connections gone from pg_stat_activity', async () =>
      (await backends()) === before ? true : undefined,
    );
  });

  async function backends(): Promise<number> {
    const { rows } = await client.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database()`,
    );
    return rows[0].n;
  }
});
