/**
 * The rule of claimLease (store.ts, LeaseClaim), in one place for SQLite's transaction; pg-leases.ts says the
 * same in SQL. Kea's PostgreSQL lease backend does the same: a new address is an INSERT on the address key, an
 * ended lease is taken over only if it is still the ended one.
 */
import type { Doc, LeaseClaim } from './store.js';

/** States that hold an address; one row per client and subnet may be in one of them. */
export const LIVE_STATES = ['offered', 'bound'] as const;
export const isLiveState = (s: unknown): boolean => s === 'offered' || s === 'bound';

/** The client a lease row counts against (the identifier when it has one, else the MAC). */
export const clientKey = (d: Doc): string => String(d.clientId ?? d.mac);

/** Whether `claim` may overwrite the row `held` (undefined: no row). */
export function claimable(held: Doc | undefined, claim: LeaseClaim): boolean {
  if (!held) return true;
  if (typeof held.expiresAt !== 'string' || held.expiresAt <= claim.now) return true;
  if (held.state === 'expired' || held.state === 'released') return true;
  if (held.state === 'declined') return false;
  const c = claim.doc;
  return held.clientId && c.clientId ? held.clientId === c.clientId : held.mac === c.mac;
}

/** The client's other row once a live claim elsewhere won: released now. */
export function retired(d: Doc, now: string): Doc {
  return { ...d, state: 'released', expiresAt: now, updatedAt: now };
}
