import { describe, expect, it } from 'vitest';
import { coalesced } from '../../src/coalesce.js';

describe('coalesced', () => {
  it('runs once more after a burst, never two at once, and reports errors without stopping', async () => {
    let running = 0;
    let most = 0;
    let runs = 0;
    const errors: unknown[] = [];
    const r = coalesced(
      async () => {
        running++;
        most = Math.max(most, running);
        runs++;
        await new Promise((res) => setTimeout(res, 10));
        running--;
        if (runs === 1) throw new Error('first run fails');
      },
      (err) => errors.push(err),
    );
    for (let i = 0; i < 50; i++) r.trigger();
    await new Promise((res) => setTimeout(res, 5));
    await r.settled();
    await new Promise((res) => setTimeout(res, 30));
    await r.settled();
    expect(most).toBe(1);
    expect(runs).toBe(2); // the first, then one for the 49 triggers that came during it
    expect(errors).toHaveLength(1);
    r.trigger();
    await new Promise((res) => setTimeout(res, 30));
    expect(runs).toBe(3);
  });
});
