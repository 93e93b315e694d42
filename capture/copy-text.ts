/** COPY text format (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.2): one line into values. */

export class CopyFormatError extends Error {
  override readonly name = 'CopyFormatError';
}

/** `\b \f \n \r \t \v` of COPY's text format. */
const ESCAPED: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };

/**
 * One row of COPY's text format (one CopyData message): fields separated by tabs, `\N` for NULL,
 * backslash escapes for the rest (`\\`, `\t`, `\n`, …, octal `\ooo`, hex `\xhh`), ended by a
 * newline. https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.2
 */
export function parseCopyTextRow(line: Buffer, width: number): (string | null)[] {
  let text = line.toString('utf8');
  if (text.endsWith('\n')) text = text.slice(0, -1);
  const fields = text.split('\t');
  if (fields.length !== width)
    throw new CopyFormatError(`COPY row has ${fields.length} fields, expected ${width}`);
  const values: (string | null)[] = new Array(width);
  for (let i = 0; i < width; i += 1) {
    const field = fields[i];
    values[i] = field === '\\N' ? null : field.includes('\\') ? unescapeCopy(field) : field;
  }
  return values;
}

function unescapeCopy(field: string): string {
  // Escapes decode to bytes (octal and hex ones may be parts of one UTF-8 character).
  const bytes: number[] = [];
  let plain = '';
  const flush = () => {
    if (bytes.length) {
      plain += Buffer.from(bytes).toString('utf8');
      bytes.length = 0;
    }
  };
  for (let i = 0; i < field.length; i += 1) {
    const c = field[i];
    if (c !== '\\') {
      flush();
      plain += c;
      continue;
    }
    const next = field[i + 1];
    i += 1;
    if (next !== undefined && next in ESCAPED) {
      flush();
      plain += ESCAPED[next];
    } else if (next !== undefined && next >= '0' && next <= '7') {
      const digits = /^[0-7]{1,3}/.exec(field.slice(i, i + 3))![0];
      bytes.push(parseInt(digits, 8) & 0xff);
      i += digits.length - 1;
    } else if (next === 'x' && /^[0-9a-fA-F]/.test(field[i + 1] ?? '')) {
      const digits = /^[0-9a-fA-F]{1,2}/.exec(field.slice(i + 1, i + 3))![0];
      bytes.push(parseInt(digits, 16));
      i += digits.length;
    } else if (next !== undefined) {
      flush();
      plain += next; // any other escaped character stands for itself
    }
  }
  flush();
  return plain;
}
