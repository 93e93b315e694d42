import { Writable } from 'node:stream';
import type { Change } from '../core/change-event';
import type { TotesysTable } from '../core/totesys-tables';
import type { WarehouseRow, WarehouseTableName } from '../core/warehouse-model';
import {
  decodeParquet,
  encodeParquet,
  parquetColumns,
  physicalRow,
  warehouseRowOf,
  type Physical,
} from '../processors/shared/parquet-codec';
import { DEFAULT_EXPORT_DIR, readExportTable, starRowsOf } from './totesys-export';
import { benchArgsOrExit, positiveInt } from './options';
import { median, timed, type Timing } from './timing';

/**
 * `npm run bench:parquet`: the transform's Parquet encoding (and the load's decoding) with the
 * codec's writer, @dsnp/parquetjs, against parquetjs-lite — the package it replaced — on the same
 * star rows in the same run. The rows are the totesys export's order tables (sales orders,
 * purchase orders, payments) mapped by the transform's own star mapping as WAL updates, so every
 * bookkeeping column is filled as in production. Rounds alternate the two writers; the report gives
 * medians of wall time and of this process' CPU time per row, and the file sizes.
 *
 * The parquetjs-lite side writes what the codec wrote before the switch: the same schema with
 * money as UTF8 text (it has no DECIMAL), the same values otherwise.
 *
 * Options: HELP below (`--help`).
 */

// parquetjs-lite ships no types; the few calls used here are typed locally.
interface LiteModule {
  ParquetSchema: new (fields: Record<string, { type: string; optional?: boolean }>) => unknown;
  ParquetWriter: {
    openStream(
      schema: unknown,
      stream: Writable,
    ): Promise<{ appendRow(row: object): Promise<void>; close(): Promise<void> }>;
  };
  ParquetReader: {
    openBuffer(buffer: Buffer): Promise<{
      getCursor(): { next(): Promise<unknown> };
      close(): Promise<void>;
    }>;
  };
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const lite = require('parquetjs-lite') as LiteModule;

const TABLES: readonly TotesysTable[] = ['sales_order', 'purchase_order', 'payment'];

const HELP = `Usage: npm run bench:parquet -- [options]

The transform's Parquet encoding (and the load's decoding) with the codec's writer against
parquetjs-lite, the package it replaced, on the same star rows in the same run; medians of wall
and CPU time per row, and file sizes. See bench/README.md.

Options:
  --rounds N      rounds, alternating the two writers (default 5)
  --copies N      the export's order tables N times over (default 2: ~73,000 rows)
  -h, --help      show this help
`;

/** The export's rows of `table`, `copies` times over, as star rows of WAL updates. */
export function starRows(
  table: TotesysTable,
  copies: number,
): { table: WarehouseTableName; rows: WarehouseRow[] } {
  const { columns, rows } = readExportTable(DEFAULT_EXPORT_DIR, table);
  const changes: Change[] = [];
  for (let copy = 0; copy < copies; copy += 1)
    for (const values of rows)
      changes.push({
        op: 'update',
        epoch: 1_764_600_000_000,
        lsn: `0/${(0x1000000 + changes.length * 0x100).toString(16).toUpperCase()}`,
        seq: changes.length,
        ts: '2025-02-28T09:15:02.123456Z',
        values,
      });
  return starRowsOf(table, columns, changes);
}

function collector(): { sink: Writable; bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      chunks.push(Buffer.from(chunk));
      done();
    },
  });
  return { sink, bytes: () => Buffer.concat(chunks) };
}

const LITE_TYPE: Record<string, string> = { DECIMAL: 'UTF8' };

/** What parquet-codec.ts did with parquetjs-lite: the same columns, money as text. */
async function encodeLite(table: WarehouseTableName, rows: readonly WarehouseRow[]): Promise<Buffer> {
  const types = parquetColumns(table);
  const fields: Record<string, { type: string; optional: boolean }> = {};
  for (const [name, type] of types) fields[name] = { type: LITE_TYPE[type] ?? type, optional: true };
  const money = types.filter(([, type]) => type === 'DECIMAL').map(([name]) => name);
  const { sink, bytes } = collector();
  const writer = await lite.ParquetWriter.openStream(new lite.ParquetSchema(fields), sink);
  for (const row of rows) {
    const physical = physicalRow(types, row);
    for (const name of money) if (row[name] !== null) physical[name] = row[name];
    await writer.appendRow(physical);
  }
  await writer.close();
  return bytes();
}

/** What the codec's decoding did with parquetjs-lite: every row back in canonical form. */
async function decodeLite(table: WarehouseTableName, buffer: Buffer): Promise<number> {
  const types = parquetColumns(table).map(([name, type]): [string, Physical] => [
    name,
    type === 'DECIMAL' ? 'UTF8' : type,
  ]);
  const reader = await lite.ParquetReader.openBuffer(buffer);
  const cursor = reader.getCursor();
  const rows: WarehouseRow[] = [];
  for (let raw = await cursor.next(); raw; raw = await cursor.next())
    rows.push(warehouseRowOf(types, raw as Record<string, unknown>));
  await reader.close();
  return rows.length;
}

async function main(): Promise<void> {
  const { rounds, copies } = benchArgsOrExit(
    { rounds: { type: 'string' }, copies: { type: 'string' } },
    HELP,
    (values) => ({
      rounds: positiveInt('rounds', values.rounds, 5),
      copies: positiveInt('copies', values.copies, 2),
    }),
  );
  const inputs = TABLES.map((t) => starRows(t, copies));
  const totalRows = inputs.reduce((n, i) => n + i.rows.length, 0);
  const sides = {
    'parquetjs-lite 0.8.7 (before)': { encode: encodeLite, decode: decodeLite },
    '@dsnp/parquetjs (codec)': {
      encode: encodeParquet,
      decode: async (_table: WarehouseTableName, b: Buffer) => (await decodeParquet(b)).rows.length,
    },
  };
  const results = new Map<string, { encode: Timing[]; decode: Timing[]; bytes: number }>();
  // Round 0 is a warm-up (V8 compiles both libraries): not reported.
  for (let round = 0; round <= rounds; round += 1) {
    for (const [name, side] of Object.entries(sides)) {
      let bytes = 0;
      const [files, encode] = await timed(() =>
        Promise.all(inputs.map(({ table, rows }) => side.encode(table, rows))),
      );
      const [counts, decode] = await timed(async () => {
        const out: number[] = [];
        for (const [i, file] of files.entries()) out.push(await side.decode(inputs[i].table, file));
        return out;
      });
      if (counts.reduce((a, b) => a + b, 0) !== totalRows) throw new Error(`${name} lost rows`);
      for (const f of files) bytes += f.length;
      if (round === 0) continue;
      const r = results.get(name) ?? { encode: [], decode: [], bytes };
      r.encode.push(encode);
      r.decode.push(decode);
      results.set(name, r);
    }
    process.stderr.write(`round ${round}/${rounds}\n`);
  }
  const lines = [
    `bench:parquet — ${totalRows.toLocaleString('en')} star rows (${inputs.map((i) => `${i.table} ${i.rows.length.toLocaleString('en')}`).join(', ')}), median of ${rounds} rounds, load ${process.platform === 'linux' ? (await import('node:os')).loadavg()[0].toFixed(1) : '?'}`,
    `${'writer'.padEnd(32)} ${'encode µs/row wall'.padStart(19)} ${'cpu'.padStart(6)} ${'decode µs/row wall'.padStart(19)} ${'cpu'.padStart(6)} ${'MiB'.padStart(7)}`,
  ];
  const perRow = (ms: number) => ((ms * 1000) / totalRows).toFixed(2);
  for (const [name, r] of results)
    lines.push(
      `${name.padEnd(32)} ${perRow(median(r.encode.map((t) => t.wallMs))).padStart(19)} ${perRow(median(r.encode.map((t) => t.cpuMs))).padStart(6)} ${perRow(median(r.decode.map((t) => t.wallMs))).padStart(19)} ${perRow(median(r.decode.map((t) => t.cpuMs))).padStart(6)} ${(r.bytes / 2 ** 20).toFixed(1).padStart(7)}`,
    );
  process.stdout.write(`${lines.join('\n')}\n`);
}

if (require.main === module)
  main().catch((e) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
