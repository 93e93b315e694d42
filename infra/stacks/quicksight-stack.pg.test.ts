import { Client } from 'pg';
import { migrateWarehouse } from '../../processors/load/migrate';
import { createTestDatabase } from '../../test/support/pg';
import { REPORTING_DATASETS } from './quicksight-stack';

/** QuickSight's type for each Postgres type the reporting views use. */
const QUICKSIGHT_TYPE: Record<string, string> = {
  integer: 'INTEGER',
  bigint: 'INTEGER',
  numeric: 'DECIMAL',
  date: 'DATETIME',
  'timestamp with time zone': 'DATETIME',
  text: 'STRING',
  'character varying': 'STRING',
  boolean: 'BOOLEAN',
};

describe('the QuickSight datasets (real Postgres)', () => {
  it('name columns the reporting views have, with matching types', async () => {
    const client = new Client({ connectionString: await createTestDatabase('quicksight_columns') });
    await client.connect();
    try {
      await migrateWarehouse(client);
      for (const [view, columns] of Object.entries(REPORTING_DATASETS)) {
        const { rows } = await client.query(
          `SELECT column_name, data_type FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`,
          [view],
        );
        const actual = Object.fromEntries(
          rows.map((r) => [r.column_name, QUICKSIGHT_TYPE[r.data_type] ?? r.data_type]),
        );
        expect({ view, columns: actual }).toEqual({ view, columns });
      }
    } finally {
      await client.end();
    }
  });
});
