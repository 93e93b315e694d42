import { Client } from 'pg';
import { createTestDatabase } from '../test/support/pg';
import { copyFrom, copyToRows } from './pg-copy';

let client: Client;

beforeAll(async () => {
  client = new Client({ connectionString: await createTestDatabase('bench_pg_copy') });
  await client.connect();
  await client.query('CREATE TABLE t (id int PRIMARY KEY, v text)');
});

afterAll(async () => {
  await client.end();
});

it('copies rows in and out', async () => {
  await expect(copyFrom(client, 'COPY t FROM STDIN', Buffer.from('1\ta\n2\t\\N\n'))).resolves.toBe(2);
  const rows: string[] = [];
  await copyToRows(client, 'COPY t TO STDOUT', (row) => rows.push(row.toString()));
  expect(rows).toEqual(['1\ta\n', '2\t\\N\n']);
});

it('rejects a COPY the server refuses, and the connection stays usable', async () => {
  await expect(copyFrom(client, 'COPY t FROM STDIN', Buffer.from('not a number\tx\n'))).rejects.toThrow(
    /invalid input syntax for type integer/,
  );
  await expect(client.query('SELECT count(*)::int AS n FROM t')).resolves.toMatchObject({ rows: [{ n: 2 }] });
});
