import { describe, expect, it } from 'vitest';
import { isoClock } from '../../src/events.js';

describe('isoClock', () => {
  it('formats as Date.prototype.toISOString, across minutes, years, fractions and both eras', () => {
    const iso = isoClock();
    const times = [
      0, 1, 999, 1000, 59_999, 60_000, 1_765_000_000_000, 1_765_000_059_999.9, 1_765_000_060_000, -1, -0.5, -60_001,
      -62_198_755_200_001, 253_402_300_799_999, 253_402_300_800_000, 8.64e15, -8.64e15,
    ];
    // and a walk that keeps coming back to cached minutes
    for (let t = 1_700_000_000_000; t < 1_700_000_000_000 + 3 * 86_400_000; t += 7_777_777) times.push(t, t + 3.6e6);
    for (const t of times) expect(iso(t), String(t)).toBe(new Date(t).toISOString());
  });

  it('throws for an invalid time, as toISOString', () => {
    const iso = isoClock();
    expect(() => iso(Number.NaN)).toThrow(RangeError);
    expect(() => iso(8.64e15 + 1)).toThrow(RangeError);
  });
});
