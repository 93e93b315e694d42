/**
 * Rows in the text format of `COPY … FROM STDIN`: one line per row, fields separated by a tab,
 * NULL as `\N`, and a backslash, newline, carriage return or tab inside a value written as the
 * escapes `\\`, `\n`, `\r`, `\t`. Everything else (quotes, unicode) is taken literally, so no value
 * can end a field or a row early. https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.2
 */

const SPECIAL = /[\\\n\r\t]/;
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** One field: `\N` for null/undefined, `t`/`f` for booleans, numbers as written, text escaped. */
export function copyTextField(value: unknown): string {
  if (value === null || value === undefined) return '\\N';
  if (typeof value === 'boolean') return value ? 't' : 'f';
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  const text = String(value);
  return SPECIAL.test(text) ? text.replace(/[\\\n\r\t]/g, (c) => ESCAPES[c]) : text;
}

/** One row (its fields in column order), newline included. */
export function copyTextLine(fields: readonly unknown[]): string {
  let line = '';
  for (let i = 0; i < fields.length; i += 1) line += (i ? '\t' : '') + copyTextField(fields[i]);
  return `${line}\n`;
}
