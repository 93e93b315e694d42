import type { Client } from 'pg';
import { HOSTILE_VALUES } from '../core/csv-codec.fixtures';
import { createTestDatabase } from '../test/support/pg';
import { rawTextClient } from './pg-text';
import { describeTables, parseCopyTextRow, readSnapshot, type SnapshotRows } from './snapshot';

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
