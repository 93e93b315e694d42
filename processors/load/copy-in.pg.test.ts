import { Client } from 'pg';
import { createTestDatabase } from '../../test/support/pg';
import { copyChunks, copyIn } from './copy-in';

let client: Client;

beforeAll(async () => {
  client = new Client({ connectionString: await createTestDatabase('copy_in') });
  await client.connect();
  await client.query('CREATE TABLE t (a integer, b text)');
});

afterAll(() => client.end());

beforeEach(() => client.query('TRUNCATE t'));

const rowsOfT = async () => (await client.query('SELECT a, b FROM t ORDER BY a')).rows;

describe('copyIn', () => {
  it('copies every chunk and resolves to the rows copied', async () => {
    const lines = Array.from({ length: 3000 }, (_, i) => `${i}\tvalue ${i} é\n`);
    const chunks = [...copyChunks(lines, 1000)];
    expect(chunks.length).toBeGreaterThan(10);
    expect(Buffer.concat(chunks).toString('utf8')).toBe(lines.join(''));
    expect(await copyIn(client, 'COPY t (a, b) FROM STDIN', () => chunks)).toBe(3000);
    const rows = await rowsOfT();
    expect([rows.length, rows[2999]]).toEqual([3000, { a: 2999, b: 'value 2999 é' }]);
  });

  it.each([
    ['extra data after last expected column', '1\tx\ty\n', '22P04'],
    ['literal carriage return found in data', '1\tx\n2\ty\rz\n', '22P04'],
    ['invalid input syntax for type integer', 'one\tx\n', '22P02'],
  ])('rejects with the server error (%s); the connection stays usable', async (_what, text, code) => {
    await expect(copyIn(client, 'COPY t (a, b) FROM STDIN', () => [Buffer.from(text)])).rejects.toMatchObject(
      {
        code,
      },
    );
    expect(await copyIn(client, 'COPY t (a, b) FROM STDIN', () => [Buffer.from('7\tfine\n')])).toBe(1);
    expect(await rowsOfT()).toEqual([{ a: 7, b: 'fine' }]);
  });

  it('fails the COPY with its own error when building the input throws, inside a transaction too', async () => {
    await client.query('BEGIN');
    function* failing() {
      yield Buffer.from('1\tfirst\n');
      throw new Error('cannot build');
    }
    await expect(copyIn(client, 'COPY t (a, b) FROM STDIN', failing)).rejects.toThrow('cannot build');
    await client.query('ROLLBACK');
    expect(await rowsOfT()).toEqual([]);
    expect(await copyIn(client, 'COPY t (a, b) FROM STDIN', () => [])).toBe(0);
  });
});
