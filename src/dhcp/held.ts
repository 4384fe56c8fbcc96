/**
 * How many addresses of a pool are held (bound, or declined and quarantined), for the offer cap (offers.ts) that
 * every unknown client's DISCOVER asks during a flood. Counting is a pass over the whole lease table; the offer
 * gate forgets its count at every ACK, so without this a flood paid that pass on every DISCOVER: O(leases) per
 * packet, tens of µs at 10,000 leases, which grew through a run until the event loop fell behind.
 *
 * A count is made by one pass and then kept up to date by the lease table's changes (`moved`), and made again
 * once either clock has moved a second: a lease whose time runs out counts as held until then (at most a second,
 * the staleness the gate's own cache already allowed).
 */
import type { SubnetInfo } from '../inventory/cache.js';
import type { LeaseRec } from './leases.js';

type Count = { start: number; end: number; n: number; at: number; clock: number };

/** Counted as held: bound or declined, and not yet past its time. */
export const isHeld = (r: LeaseRec | undefined, t: number): boolean =>
  r !== undefined && (r.state === 'bound' || r.state === 'declined') && r.exp > t;

export class HeldCounts {
  // By pool range: a pool's range is what is counted, whatever its subnet's name.
  private readonly counts = new Map<string, Count>();

  constructor(
    private readonly scan: (s: SubnetInfo, t: number) => number,
    private readonly now: () => number,
  ) {}

  held(s: SubnetInfo): number {
    const key = `${s.start}-${s.end}`;
    const at = Date.now();
    const clock = this.now();
    const c = this.counts.get(key);
    if (c && at - c.at < 1000 && Math.abs(clock - c.clock) < 1000) return c.n;
    // A handful of pools: counts of pools no longer asked about go with the rest.
    if (this.counts.size > 256) this.counts.clear();
    const n = this.scan(s, clock);
    this.counts.set(key, { start: s.start, end: s.end, n, at, clock });
    return n;
  }

  /** The lease at `ip` went from `before` to `after` (undefined: none); t: the table's clock then. */
  moved(ip: number, before: boolean, after: boolean): void {
    if (before === after) return;
    for (const c of this.counts.values()) if (ip >= c.start && ip <= c.end) c.n += after ? 1 : -1;
  }

  /** Leases changed in a way `moved` does not follow (loaded, expired by the reclaim pass): count again. */
  forget(): void {
    this.counts.clear();
  }
}
