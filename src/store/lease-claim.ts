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

const sameClient = (held: Doc, c: Doc): boolean =>
  held.clientId && c.clientId ? held.clientId === c.clientId : held.mac === c.mac;
const ended = (held: Doc, now: string): boolean =>
  typeof held.expiresAt !== 'string' || held.expiresAt <= now || held.state === 'expired' || held.state === 'released';

/**
 * An offer of the address the client already has bound: it stands (ok) but writes nothing, so an offer a second
 * daemon makes late never shortens a lease the first one ACKed to its offer's hold.
 */
export function keeps(held: Doc | undefined, claim: LeaseClaim): boolean {
  return (
    held !== undefined &&
    claim.doc.state === 'offered' &&
    held.state === 'bound' &&
    !ended(held, claim.now) &&
    sameClient(held, claim.doc)
  );
}

/** Whether `claim` may overwrite the row `held` (undefined: no row). */
export function claimable(held: Doc | undefined, claim: LeaseClaim): boolean {
  if (!held || ended(held, claim.now)) return true;
  // 'expired' is a daemon's reclaim of a lease it saw end: a lease the client renewed through another daemon
  // (a later expiresAt) has not ended and stays.
  if (claim.doc.state === 'expired' || held.state === 'declined' || keeps(held, claim)) return false;
  return sameClient(held, claim.doc);
}

/**
 * Whether a winning claim releases the client's other row `d`: a bound claim (the client REQUESTed this address)
 * releases any; an offer only ended ones. A live offer or lease of the client elsewhere makes the offer lose
 * instead (one live row per client), and its holder tells the daemon which address the client has: two daemons
 * answering one DISCOVER then offer the same address, rather than each freeing the other's.
 */
export function retires(d: Doc, claim: LeaseClaim): boolean {
  if (!isLiveState(d.state) || clientKey(d) !== clientKey(claim.doc)) return false;
  return claim.doc.state === 'bound' || ended(d, claim.now);
}

/**
 * The client's other row once a live claim elsewhere won: released now, by the claim's writer (`by`, its serverId;
 * none: the row's previous writer is dropped, as a daemon's catch-up read leaves out rows naming it).
 */
export function retired(d: Doc, now: string, by: unknown): Doc {
  const { serverId: _, ...rest } = d;
  const named = typeof by === 'string' ? { serverId: by } : {};
  return { ...rest, state: 'released', expiresAt: now, updatedAt: now, ...named };
}
