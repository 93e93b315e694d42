import { FAULT_KINDS } from './chaos-options';
import { describeFault, planFaults } from './fault-plan';

describe('planFaults', () => {
  const options = { rounds: 12, seed: 7, faults: FAULT_KINDS, maxQuietSeconds: 4 };

  it('is the same for the same seed and differs for another', () => {
    expect(planFaults(options)).toEqual(planFaults(options));
    expect(planFaults({ ...options, seed: 8 })).not.toEqual(planFaults(options));
  });

  it('deals every kind once before any kind comes again', () => {
    const kinds = planFaults(options).map((f) => f.kind);
    expect(new Set(kinds.slice(0, 5)).size).toBe(5);
    expect(new Set(kinds.slice(5, 10)).size).toBe(5);
  });

  it('keeps every parameter in its range', () => {
    for (const f of planFaults({ ...options, rounds: 50 })) {
      expect(f.quietMs).toBeGreaterThanOrEqual(0);
      expect(f.quietMs).toBeLessThanOrEqual(4000);
      if (f.kind === 'restart-source' || f.kind === 'restart-warehouse') {
        expect(['fast', 'immediate']).toContain(f.mode);
        expect(f.downMs).toBeGreaterThanOrEqual(500);
        expect(f.downMs).toBeLessThanOrEqual(3000);
      }
      if (f.kind === 'throttle-sink') {
        expect(f.delayMs).toBeGreaterThanOrEqual(2000);
        expect(f.forMs).toBeLessThanOrEqual(15000);
      }
      expect(describeFault(f)).toEqual(expect.any(String));
    }
  });

  it('draws only the kinds asked for', () => {
    const kinds = new Set(planFaults({ ...options, faults: ['kill-capture'] }).map((f) => f.kind));
    expect([...kinds]).toEqual(['kill-capture']);
  });
});
