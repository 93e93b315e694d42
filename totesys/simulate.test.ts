import type { ClientBase } from 'pg';
import { runSimulation, type SimulationClock } from './simulate';

/**
 * A stand-in for Postgres that answers every statement instantly, so these tests measure the
 * simulator's own pacing and statements, not the speed of a shared database.
 */
function instantClient(unpaid: number[] = [1, 2, 3]) {
  const statements: { text: string; values: unknown[] }[] = [];
  let nextId = 1_000;
  const client = {
    async query(text: string, values: unknown[] = []) {
      statements.push({ text, values });
      if (text.startsWith('SELECT max(')) return { rows: [{ max: 10 }], rowCount: 1 };
      if (text.includes('WHERE NOT "paid" ORDER BY'))
        return { rows: unpaid.map((payment_id) => ({ payment_id })), rowCount: unpaid.length };
      if (text.startsWith('INSERT')) {
        const id = ++nextId;
        const row = {
          id,
          agreed_payment_date: '2025-03-01',
          transaction_id: id,
          payment_id: id,
          design_id: id,
        };
        return { rows: [row], rowCount: 1 };
      }
      return { rows: [], rowCount: text.startsWith('UPDATE') ? 1 : null };
    },
  };
  return { client: client as unknown as ClientBase, statements };
}

/**
 * Virtual time: it moves only when the simulator sleeps, and statements take none of it — so the
 * pacing is checked exactly, whatever else the machine is doing.
 */
function virtualClock() {
  let now = 0;
  const sleeps: number[] = [];
  const clock: SimulationClock = {
    now: () => now,
    sleep: async (ms) => {
      sleeps.push(ms);
      now += ms;
    },
  };
  return { clock, sleeps };
}

describe('runSimulation pacing and statements (no database)', () => {
  it('keeps to the rate: rate × duration row changes, never more, with progress along the way', async () => {
    const { client } = instantClient();
    const { clock } = virtualClock();
    const progress: number[] = [];
    const result = await runSimulation(client, {
      rate: 200,
      durationMs: 1_000,
      progressIntervalMs: 250,
      onProgress: (p) => progress.push(p.rowChanges),
      clock,
    });
    // 200/s for 1 s: a change starts while fewer than 200 are done; a new order (3 rows) may end 2 over.
    expect(result.rowChanges).toBeGreaterThanOrEqual(200);
    expect(result.rowChanges).toBeLessThanOrEqual(202);
    expect(result.elapsedMs).toBe(1_000);
    // At 250, 500 and 750 ms: 50, 100 and 150 changes due, reported before the next change.
    expect(progress).toHaveLength(3);
    progress.forEach((done, i) => {
      expect(done).toBeGreaterThanOrEqual(50 * (i + 1));
      expect(done).toBeLessThanOrEqual(50 * (i + 1) + 2);
    });
  });

  it('with an unbounded rate, runs flat out until maxChanges, never waiting', async () => {
    const { client } = instantClient();
    const { clock, sleeps } = virtualClock();
    const result = await runSimulation(client, { rate: Infinity, maxChanges: 2_000, clock });
    expect(result.rowChanges).toBeGreaterThanOrEqual(2_000);
    expect(result.rowChanges).toBeLessThanOrEqual(2_002);
    expect(sleeps).toEqual([]);
  });

  it('writes each new order with its transaction and payment in one transaction, all parameterised', async () => {
    const { client, statements } = instantClient();
    await runSimulation(client, { rate: Infinity, maxChanges: 500, seed: 9 });
    const texts = statements.map((s) => s.text.replace(/\s+/g, ' '));
    const begins = texts.flatMap((t, i) => (t === 'BEGIN' ? [i] : []));
    expect(begins.length).toBeGreaterThan(20);
    for (const i of begins) {
      expect(texts[i + 1]).toMatch(/^INSERT INTO "(sales|purchase)_order"/);
      expect(texts[i + 2]).toMatch(/^INSERT INTO "transaction"/);
      expect(texts[i + 3]).toMatch(/^INSERT INTO "payment"/);
      expect(texts[i + 4]).toBe('COMMIT');
    }
    // Values travel as parameters: an UPDATE's SET list holds only placeholders and the date shift.
    const updates = texts.filter((t) => t.startsWith('UPDATE'));
    expect(updates.length).toBeGreaterThan(100);
    const assignment =
      /"\w+" = (\$\d+|to_char\("\w+"::date \+ \$\d+::int, 'YYYY-MM-DD'\)|CURRENT_TIMESTAMP|true)/.source;
    for (const t of updates)
      expect(t).toMatch(
        new RegExp(
          `^UPDATE "\\w+" SET ${assignment}(, ${assignment})* WHERE "\\w+" = \\$\\d+( AND NOT "paid")?$`,
        ),
      );
    // Silent edits leave last_updated alone; every other UPDATE sets it.
    expect(updates.some((t) => !t.includes('"last_updated"'))).toBe(true);
  });

  it('settles the unpaid payments it found oldest first, then the ones it created', async () => {
    const { client, statements } = instantClient([7, 8]);
    await runSimulation(client, { rate: Infinity, maxChanges: 300, seed: 2 });
    const settled = statements.filter((s) => s.text.startsWith('UPDATE "payment"')).map((s) => s.values[0]);
    expect(settled.slice(0, 2)).toEqual([7, 8]);
    expect(settled.slice(2).every((id) => (id as number) > 1_000)).toBe(true);
    expect(new Set(settled).size).toBe(settled.length);
  });
});
