/**
 * The lease events a daemon publishes on its bus, for its own lease writes (leases.ts), for the other daemons'
 * it learns (lease-follow.ts) and for the ended leases the leader's sweep marks (src/duties.ts): one shape for all,
 * so SSE and /ui tell the same lease story whichever daemon a subscriber reaches (issue 17), each naming the daemon
 * that served the client (`serverId`) when it has one.
 */
import type { EventInput } from '../events.js';
import type { LeaseRec, LeaseState } from './lease-types.js';

/**
 * The event of a lease in `state` (default its own): offered, bound (lease.acked, with its expiry), released,
 * declined (with the quarantine left at `now()`, the one state that reads the clock); undefined for another state.
 * `serverId`: the daemon that wrote it, if named. A writer names the state it wrote: the record may have moved on
 * while its write was out.
 */
export function leaseEvent(
  rec: LeaseRec,
  now: () => number,
  serverId: string | undefined,
  state: LeaseState = rec.state,
): EventInput | undefined {
  // One data object, an ACK's expiry or a DECLINE's quarantine added to it rather than spread into a copy (the
  // ACK's event is on the packet path, and spread copies outlived the young generation: see events.ts).
  const data: { mac: string; subnet: string; serverId?: string } = { mac: rec.mac, subnet: rec.subnet };
  if (serverId !== undefined) data.serverId = serverId;
  switch (state) {
    case 'offered':
      return { type: 'lease.offered', key: rec.address, data };
    case 'bound':
      (data as { expiresAt?: string }).expiresAt = rec.expiresAt;
      return { type: 'lease.acked', key: rec.address, data } as EventInput;
    case 'released':
      return { type: 'lease.released', key: rec.address, data };
    case 'declined':
      (data as { quarantineSeconds?: number }).quarantineSeconds = Math.max(0, Math.round((rec.exp - now()) / 1000));
      return { type: 'lease.declined', key: rec.address, data } as EventInput;
    default:
      return undefined;
  }
}

/**
 * The event another daemon published on its own bus for a lease row this daemon's index has just learnt, for this
 * daemon's bus, naming that daemon (the row's serverId): a row now offered, bound (a new client, state or expiry),
 * released or declined. Not an expired row: the leader's sweep publishes those through the shared event log,
 * which every daemon reads. Undefined when nothing a subscriber hears changed. It comes up to a catch-up interval
 * late (or at a lost claim, which learns the holder at once).
 */
export function learntEvent(old: LeaseRec | undefined, rec: LeaseRec, now: () => number): EventInput | undefined {
  if (old && old.state === rec.state && old.expiresAt === rec.expiresAt && old.mac === rec.mac) return undefined;
  return leaseEvent(rec, now, rec.serverId);
}

/**
 * The `lease.expired` of a bound lease that ended (an offer's end is announced nowhere): by the leader's sweep of
 * a shared table (src/duties.ts), or by the one daemon's reclaim pass on SQLite. `serverId`: the daemon that wrote
 * the lease before it ended, the one that served the client (on PostgreSQL the row's, as the sweep read it: the
 * mark then names the sweeper; on SQLite the daemon's own, as in its other lease events), absent when none is named.
 */
export function expiredEvent(key: string, l: { mac: string; subnet: string; serverId?: string }): EventInput {
  const data: { mac: string; subnet: string; serverId?: string } = { mac: l.mac, subnet: l.subnet };
  if (l.serverId !== undefined) data.serverId = l.serverId;
  return { type: 'lease.expired', key, data };
}
