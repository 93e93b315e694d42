import { copyTextField, copyTextLine } from './copy-text';

describe('COPY text format', () => {
  it('writes NULL as \\N, booleans as t/f, numbers as they are', () => {
    expect([null, undefined, true, false, 12, -3, 10n].map(copyTextField)).toEqual([
      '\\N',
      '\\N',
      't',
      'f',
      '12',
      '-3',
      '10',
    ]);
  });

  it('escapes the characters that end a field or a row, and the escape itself', () => {
    expect(copyTextField('a\tb\nc\rd\\e')).toBe('a\\tb\\nc\\rd\\\\e');
    // A value that looks like NULL is text once its backslash is escaped.
    expect(copyTextField('\\N')).toBe('\\\\N');
  });

  it('keeps quotes, commas and unicode as they are', () => {
    expect(copyTextField(`it's "x", {y}`)).toBe(`it's "x", {y}`);
    expect(copyTextField('Zoë – 東京 🚚')).toBe('Zoë – 東京 🚚');
  });

  it('joins a row with tabs and ends it with a newline', () => {
    expect(copyTextLine([1, 'a\tb', null, false])).toBe('1\ta\\tb\t\\N\tf\n');
  });
});
