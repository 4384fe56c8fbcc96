/**
 * How many addresses unknown clients may hold with offers they have not REQUESTed (issue 11: 400 DISCOVERs from
 * random MACs emptied a /24 for the 60 s of their offers, and machines of the inventory got no offer either).
 *
 * Policy only (the server asks, the lease table keeps the leases):
 * - An unknown client (no machine with its MAC, no reservation) needing a new address is offered one only while
 *   the addresses held by unknown clients' outstanding offers stay under `share` of the pool's free addresses
 *   (free: neither bound nor declined; rounded up, so a one-address pool still serves one). Machines of the
 *   inventory are not counted and not capped: they get an offer while any address is free.
 * - Under pressure (outstanding unknown offers at half the cap or more) unknown clients' offers are held for
 *   `pressureSeconds` instead of the full offer time, so a flood's addresses come back quickly; a real client
 *   REQUESTs within a few seconds of the OFFER, and RFC 2131 3.1 step 2 lets a server not reserve it at all.
 * - Under pressure, unknown clients' new offers are also limited per ingress (the relay's giaddr, or the
 *   receiving interface for direct clients) to `ingressRate` a second. Per-MAC limits would not help (a flood
 *   uses a new MAC each time); per ingress bounds the OFFERs a flood makes this server broadcast or send to one
 *   relay, and keeps one flooded segment from using all the unknown share's churn of a shared-relay subnet.
 */

import type { Logger } from '../log.js';
import { tokenBuckets } from '../token-bucket.js';

export type OfferPolicyOptions = {
  /**
   * Fraction of a pool's free addresses that unknown clients' outstanding offers may hold (0-1). Default 0.5;
   * 1: no share kept for machines of the inventory; 0: no offers to unknown clients at all.
   */
  share?: number;
  /** Full offer hold, seconds. */
  offerSeconds: number;
  /** Offer hold for unknown clients under pressure, seconds. Default 10. */
  pressureSeconds?: number;
  /** New offers to unknown clients per ingress per second under pressure (also the burst). Default 50; 0 = no limit. */
  ingressRate?: number;
  now: () => number;
};

/** A subnet's pool; `unknownOfferShare` overrides the policy's share for it (0-1). */
export type PoolView = { name: string; start: number; end: number; unknownOfferShare?: unknown };

export type Admission = { ok: true; seconds: number; pressure: boolean } | { ok: false; why: string };

export type OfferPolicy = {
  /**
   * Whether an unknown client may be offered an address in this pool now, and for how long. `renewal`: the
   * client already holds the address it will be offered (no new address taken): never refused.
   */
  admit(pool: PoolView, held: () => number, ingress: string, renewal?: boolean): Admission;
  /** An unknown client was offered `ip` (tracked until it expires, is bound, released or re-offered). */
  track(pool: string, ip: number, seconds: number): void;
  /** The address left the unknown share (bound, released, offered to a known client, turned down). */
  settle(ip: number): void;
  /** Outstanding unknown offers in a pool. */
  outstanding(pool: string): number;
};

const MAX_INGRESS = 1024;

export function offerPolicy(o: OfferPolicyOptions): OfferPolicy {
  const share = Math.min(1, Math.max(0, o.share ?? 0.5));
  const pressureSeconds = Math.min(o.offerSeconds, o.pressureSeconds ?? 10);
  const rate = o.ingressRate ?? 50;
  // Per pool, one FIFO per hold time: entries of one hold time expire in insertion order, so expired ones are
  // always at the front (pruning is O(1) amortised, never a scan of the pool).
  const pools = new Map<string, Map<number, Map<number, number>>>();
  const where = new Map<number, { pool: string; seconds: number }>();

  const prune = (pool: string, t: number) => {
    const tiers = pools.get(pool);
    if (!tiers) return 0;
    let n = 0;
    for (const fifo of tiers.values()) {
      for (const [ip, exp] of fifo) {
        if (exp > t) break;
        fifo.delete(ip);
        where.delete(ip);
      }
      n += fifo.size;
    }
    return n;
  };
  const buckets = tokenBuckets({ burst: rate, refillMs: 1000 / rate, maxKeys: MAX_INGRESS });
  const take = (ingress: string, t: number): boolean => rate <= 0 || buckets.take(ingress, t);

  const policy: OfferPolicy = {
    admit(pool, held, ingress, renewal = false) {
      const t = o.now();
      const n = prune(pool.name, t);
      const size = pool.end - pool.start + 1;
      const own = pool.unknownOfferShare;
      const poolShare = typeof own === 'number' && own >= 0 && own <= 1 ? own : share;
      if (size <= 0) return { ok: true, seconds: o.offerSeconds, pressure: false };
      if (poolShare === 0 && !renewal)
        return { ok: false, why: 'this pool makes no offers to unknown clients (share 0)' };
      // Nothing outstanding: one offer cannot exceed the share (rounded up); the allocator finds whether any
      // address is free. Saves the pass over the lease table outside floods.
      if (n === 0) return { ok: true, seconds: o.offerSeconds, pressure: false };
      const free = Math.max(0, size - held());
      const cap = Math.ceil(poolShare * free);
      if (renewal) return { ok: true, seconds: n * 2 >= cap ? pressureSeconds : o.offerSeconds, pressure: false };
      if (n >= cap)
        return {
          ok: false,
          why: `unknown clients hold offers for ${n} of ${free} free addresses (cap ${Math.round(poolShare * 100)}%); addresses left for machines of the inventory`,
        };
      const pressure = n * 2 >= cap;
      if (pressure && !take(ingress, t))
        return {
          ok: false,
          why: `more than ${rate} offers a second to unknown clients from ${ingress} under pressure`,
        };
      return { ok: true, seconds: pressure ? pressureSeconds : o.offerSeconds, pressure };
    },
    track(pool, ip, seconds) {
      policy.settle(ip);
      let tiers = pools.get(pool);
      if (!tiers) {
        tiers = new Map();
        pools.set(pool, tiers);
      }
      let fifo = tiers.get(seconds);
      if (!fifo) {
        fifo = new Map();
        tiers.set(seconds, fifo);
      }
      fifo.set(ip, o.now() + seconds * 1000);
      where.set(ip, { pool, seconds });
    },
    settle(ip) {
      const w = where.get(ip);
      if (!w) return;
      where.delete(ip);
      pools.get(w.pool)?.get(w.seconds)?.delete(ip);
    },
    outstanding: (pool) => prune(pool, o.now()),
  };
  return policy;
}

export type OfferGate = {
  /** An unknown client's DISCOVER in `pool`: admitted (and for how long), or refused (counted, logged). */
  admit(pool: PoolView, ingress: string, renewal: boolean): Admission;
  track(pool: string, ip: number, seconds: number): void;
  /**
   * `ip` left the unknown share (bound, released, declined, offered to a known client, turned down); with
   * `pool`, that pool's bound/declined count changed and is counted again at the next admission.
   */
  settle(ip: number, pool?: string): void;
  /** Leases changed behind the server's back (deleted through the API): count every pool again. */
  recount(): void;
  refusals(): number;
};

/**
 * The policy with what the server needs around it: the pool's bound and declined addresses (one pass over the
 * lease table, so kept for up to a second of both clocks, since the injected one jumps in tests, and dropped
 * when this server binds, releases or declines), and refusals counted and logged once an interval per pool.
 */
export function offerGate(
  o: OfferPolicyOptions & { held: (pool: PoolView) => number; log: Logger; logIntervalMs?: number },
): OfferGate {
  const policy = offerPolicy(o);
  const heldCache = new Map<string, { n: number; at: number; clock: number }>();
  const heldIn = (pool: PoolView) => {
    const t = Date.now();
    const c = o.now();
    const h = heldCache.get(pool.name);
    if (h && t - h.at < 1000 && Math.abs(c - h.clock) < 1000) return h.n;
    const n = o.held(pool);
    heldCache.set(pool.name, { n, at: t, clock: c });
    return n;
  };
  const refusedLog = new Map<string, { at: number; quiet: number }>();
  let refusals = 0;
  return {
    admit(pool, ingress, renewal) {
      const a = policy.admit(pool, () => heldIn(pool), ingress, renewal);
      if (a.ok) return a;
      refusals++;
      const t = Date.now();
      const r = refusedLog.get(pool.name);
      if (r && t - r.at < (o.logIntervalMs ?? 60_000)) {
        r.quiet++;
        return a;
      }
      if (refusedLog.size > 1000) refusedLog.clear();
      refusedLog.set(pool.name, { at: t, quiet: 0 });
      o.log.warn(
        { subnet: pool.name, refusedSinceLastLine: r?.quiet ?? 0 },
        `dhcp: no offer to an unknown client: ${a.why}`,
      );
      return a;
    },
    track: policy.track,
    settle(ip, pool) {
      policy.settle(ip);
      if (pool !== undefined) heldCache.delete(pool);
    },
    recount: () => heldCache.clear(),
    refusals: () => refusals,
  };
}
