import { LOAD_MIN_PART_ROWS, LOAD_PART_ROWS, partRowsFor } from './create-handler';

describe('partRowsFor', () => {
  it('cuts an object of fewer than four full parts into quarters, never below the floor', () => {
    expect(LOAD_MIN_PART_ROWS).toBeLessThan(LOAD_PART_ROWS);
    expect(partRowsFor(0)).toBe(LOAD_MIN_PART_ROWS);
    expect(partRowsFor(1_000)).toBe(LOAD_MIN_PART_ROWS);
    expect(partRowsFor(10_000)).toBe(2_500);
    expect(partRowsFor(10_001)).toBe(2_501);
    expect(partRowsFor(20_000)).toBe(5_000);
    expect(partRowsFor(4 * LOAD_PART_ROWS)).toBe(LOAD_PART_ROWS);
    expect(partRowsFor(727_821)).toBe(LOAD_PART_ROWS);
  });
});
