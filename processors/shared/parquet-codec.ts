import { Writable } from 'node:stream';
// parquetjs-lite ships no types; the few calls used here are typed locally.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const parquet = require('parquetjs-lite') as ParquetModule;
import {
  SOURCE_POSITION_COLUMNS,
  WAREHOUSE_TABLES,
  type WarehouseColumn,
  type WarehouseRow,
  type WarehouseTableName,
  type WarehouseValue,
} from '../../core/warehouse-model';

// The row types moved to core/warehouse-model.ts (the pure mapping needs them); re-exported here so
// existing imports keep working.
export type { WarehouseRow, WarehouseValue } from '../../core/warehouse-model';

/**
 * Parquet files of the processed bucket: one warehouse table per object, the table's columns (see
 * core/warehouse-model.ts) followed by the bookkeeping columns (SOURCE_POSITION_COLUMNS there). Every column is OPTIONAL (delete rows carry only the key; unchanged TOAST values
 * are null plus a mark in `_unchanged`).
 *
 * In memory a row holds canonical values: int → number, boolean → boolean, and text for the rest —
 * date `YYYY-MM-DD`, time `HH:MM:SS.mmm`, numeric(10,2) exactly as Postgres wrote it. Physical
 * types: INT32, BOOLEAN, DATE (days since epoch), TIME_MILLIS, UTF8. Money stays UTF8 text:
 * parquetjs-lite has no DECIMAL type (architecture.md, measured), and text keeps it exact; the load
 * casts it to numeric(10,2).
 */

export interface ParquetTable {
  table: WarehouseTableName;
  rows: WarehouseRow[];
}

interface ParquetModule {
  ParquetSchema: new (fields: Record<string, { type: string; optional?: boolean }>) => unknown;
  ParquetWriter: {
    openStream(
      schema: unknown,
      stream: Writable,
      opts?: object,
    ): Promise<{
      appendRow(row: object): Promise<void>;
      setMetadata(key: string, value: string): void;
      close(): Promise<void>;
    }>;
  };
  ParquetReader: {
    openBuffer(buffer: Buffer): Promise<{
      getCursor(): { next(): Promise<Record<string, unknown> | null> };
      getMetadata(): Record<string, string>;
      close(): Promise<void>;
    }>;
  };
}

export class ParquetCodecError extends Error {
  override readonly name = 'ParquetCodecError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

const PHYSICAL: Record<WarehouseColumn['type'], string> = {
  int: 'INT32',
  text: 'UTF8',
  varchar: 'UTF8',
  'numeric(10,2)': 'UTF8',
  date: 'DATE',
  time: 'TIME_MILLIS',
  boolean: 'BOOLEAN',
};

const BOOKKEEPING_TYPES: Record<(typeof SOURCE_POSITION_COLUMNS)[number], string> = {
  _op: 'UTF8',
  _epoch: 'INT64',
  _lsn: 'UTF8',
  _seq: 'INT64',
  _commit_ts: 'UTF8',
  _unchanged: 'UTF8',
  _row_hash: 'UTF8',
  _rows: 'INT64',
};

/** Metadata key naming the warehouse table inside the file. */
const TABLE_METADATA_KEY = 'totes.table';

function schemaFor(table: WarehouseTableName): unknown {
  const fields: Record<string, { type: string; optional: boolean }> = {};
  for (const c of WAREHOUSE_TABLES[table].columns)
    fields[c.name] = { type: PHYSICAL[c.type], optional: true };
  for (const [name, type] of Object.entries(BOOKKEEPING_TYPES)) fields[name] = { type, optional: true };
  return new parquet.ParquetSchema(fields);
}

const DATE_TEXT = /^(\d{4})-(\d{2})-(\d{2})$/;
const TIME_TEXT = /^(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?$/;

function toPhysical(type: string, value: WarehouseValue, column: string): unknown {
  if (value === null || value === undefined) return undefined;
  switch (type) {
    case 'DATE': {
      const m = DATE_TEXT.exec(String(value));
      if (!m)
        throw new ParquetCodecError(`column ${column}: ${JSON.stringify(value)} is not a YYYY-MM-DD date`);
      // Not Date.UTC: it maps years 0–99 to 1900–1999, which would move `0099-01-01` by 1900 years.
      const date = new Date(0);
      date.setUTCFullYear(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
      return date;
    }
    case 'TIME_MILLIS': {
      const m = TIME_TEXT.exec(String(value));
      if (!m)
        throw new ParquetCodecError(`column ${column}: ${JSON.stringify(value)} is not an HH:MM:SS.mmm time`);
      return (
        ((Number(m[1]) * 60 + Number(m[2])) * 60 + Number(m[3])) * 1000 + Number((m[4] ?? '0').padEnd(3, '0'))
      );
    }
    case 'INT64':
      return BigInt(value as number);
    default:
      return value;
  }
}

function fromPhysical(type: string, value: unknown): WarehouseValue {
  if (value === null || value === undefined) return null;
  switch (type) {
    case 'DATE':
      return (value as Date).toISOString().slice(0, 10);
    case 'TIME_MILLIS': {
      const ms = Number(value);
      const pad = (n: number, w = 2) => String(n).padStart(w, '0');
      return `${pad(Math.floor(ms / 3_600_000))}:${pad(Math.floor(ms / 60_000) % 60)}:${pad(Math.floor(ms / 1000) % 60)}.${pad(ms % 1000, 3)}`;
    }
    case 'INT64':
    case 'INT32':
      return Number(value);
    default:
      return value as WarehouseValue;
  }
}

function columnTypes(table: WarehouseTableName): [string, string][] {
  return [
    ...WAREHOUSE_TABLES[table].columns.map((c) => [c.name, PHYSICAL[c.type]] as [string, string]),
    ...Object.entries(BOOKKEEPING_TYPES),
  ];
}

/** Encodes rows of one warehouse table as a Parquet file (in memory). */
export async function encodeParquet(
  table: WarehouseTableName,
  rows: readonly WarehouseRow[],
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      chunks.push(Buffer.from(chunk));
      done();
    },
  });
  const types = columnTypes(table);
  const writer = await parquet.ParquetWriter.openStream(schemaFor(table), sink);
  writer.setMetadata(TABLE_METADATA_KEY, table);
  for (const row of rows) {
    const physical: Record<string, unknown> = {};
    for (const [name, type] of types) {
      const value = toPhysical(type, row[name] ?? null, name);
      if (value !== undefined) physical[name] = value;
    }
    await writer.appendRow(physical);
  }
  await writer.close();
  return Buffer.concat(chunks);
}

/** Decodes a file written by encodeParquet; the table comes from the file's own metadata. */
export async function decodeParquet(buffer: Buffer): Promise<ParquetTable> {
  let reader;
  try {
    reader = await parquet.ParquetReader.openBuffer(buffer);
  } catch (e) {
    throw new ParquetCodecError('not a readable Parquet file', { cause: e });
  }
  try {
    const table = reader.getMetadata()[TABLE_METADATA_KEY] as WarehouseTableName | undefined;
    if (!table || !(table in WAREHOUSE_TABLES)) {
      throw new ParquetCodecError(
        `Parquet file names no known warehouse table (${TABLE_METADATA_KEY}=${table})`,
      );
    }
    const types = columnTypes(table);
    const cursor = reader.getCursor();
    const rows: WarehouseRow[] = [];
    for (let raw = await cursor.next(); raw; raw = await cursor.next()) {
      const row: WarehouseRow = {};
      for (const [name, type] of types) row[name] = fromPhysical(type, raw[name]);
      rows.push(row);
    }
    return { table, rows };
  } finally {
    await reader.close();
  }
}
