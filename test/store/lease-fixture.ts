/** Lease documents and claims for the store's lease tests: stamped at a fixed time, held for an hour unless told. */
import type { Store } from '../../src/store/store.js';

export const T0 = Date.parse('2026-01-01T00:00:00.000Z');
export const iso = (ms: number) => new Date(ms).toISOString();
export const NOW = iso(T0);
export const HOUR = 3_600_000;

/** `serverId`: the daemon the lease names as its writer; `until`: its expiresAt (ms). */
export type LeaseOptions = { serverId?: string; until?: number };

export const lease = (address: string, mac: string, state = 'bound', o: LeaseOptions = {}) => ({
  address,
  subnet: 'lab',
  mac,
  state,
  expiresAt: iso(o.until ?? T0 + HOUR),
  updatedAt: NOW,
  ...(o.serverId ? { serverId: o.serverId } : {}),
});

export const claim = (s: Store, doc: ReturnType<typeof lease>) => s.claimLease!({ doc, now: NOW });
