import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StackLogTail } from './cold-start-log';

it('counts warnings and errors by message, naming the table and SQLSTATE when the line does', () => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'totes-tail-')), 'stack.log');
  const line = (o: object) => `${JSON.stringify({ time: '2026-12-02T14:00:00.000Z', ...o })}\n`;
  const conflict = line({
    level: 'warn',
    msg: 'load transaction conflicted; retrying',
    table: 'dim_transaction',
    sqlState: '40P01',
  });
  const others =
    line({ level: 'error', msg: 'object quarantined' }) +
    line({ level: 'info', msg: 'loaded', table: 'fact_payment' });
  fs.writeFileSync(file, conflict + conflict + others);
  const tail = new StackLogTail(file);
  tail.read();
  expect(tail.problems).toEqual({
    'warn: load transaction conflicted; retrying (dim_transaction, 40P01)': 2,
    'error: object quarantined': 1,
  });
});
