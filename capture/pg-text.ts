import { Client, type ClientConfig } from 'pg';

/**
 * node-postgres parses values through process-global type parsers (timestamps become local-time
 * Dates, int8 stays text, …). Capture needs every value exactly as Postgres rendered it, so its
 * clients get their own type table that returns the text untouched, leaving the globals alone.
 */
const RAW_TEXT_TYPES = { getTypeParser: () => (value: string) => value };

export function rawTextClient(config: string | ClientConfig): Client {
  const base = typeof config === 'string' ? { connectionString: config } : config;
  return new Client({ ...base, types: RAW_TEXT_TYPES } as ClientConfig);
}

/** Double-quotes an SQL identifier (https://www.postgresql.org/docs/current/sql-syntax-lexical.html). */
export function quoteIdent(name: string): string {
  if (name.includes('\u0000')) throw new Error('identifier contains a NUL byte');
  return `"${name.replace(/"/g, '""')}"`;
}

/** Quotes an SQL string literal, for the replication protocol commands that take no parameters. */
export function quoteLiteral(value: string): string {
  if (value.includes('\u0000')) throw new Error('literal contains a NUL byte');
  return `'${value.replace(/'/g, "''")}'`;
}
