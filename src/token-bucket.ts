/**
 * Token buckets keyed by something an attacker may choose (a source address, a relay): each key may spend `burst`
 * at once, then one more per `refillMs`. The table keeps at most `maxKeys` keys, the least recently used going
 * first, so a flood of new keys costs memory once and then only displaces itself.
 */
export function tokenBuckets(o: { burst: number; refillMs: number; maxKeys: number }) {
  const buckets = new Map<string, { tokens: number; at: number }>();
  return {
    /** Spend one token of `key` at time `t` (ms); false when none is left. */
    take(key: string, t: number): boolean {
      let b = buckets.get(key);
      if (b) buckets.delete(key);
      else {
        b = { tokens: o.burst, at: t };
        if (buckets.size >= o.maxKeys) buckets.delete(buckets.keys().next().value!);
      }
      buckets.set(key, b);
      b.tokens = Math.min(o.burst, b.tokens + (t - b.at) / o.refillMs);
      b.at = t;
      if (b.tokens < 1) return false;
      b.tokens--;
      return true;
    },
  };
}
