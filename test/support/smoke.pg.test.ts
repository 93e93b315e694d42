import { createTestDatabase, withClient } from './pg';

describe('embedded test cluster (real Postgres)', () => {
  it('runs with wal_level=logical', async () => {
    const url = await createTestDatabase('smoke');
    const level = await withClient(url, async (c) => (await c.query('SHOW wal_level')).rows[0].wal_level);
    expect(level).toBe('logical');
  });
});
