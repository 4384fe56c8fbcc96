/**
 * A DISCOVER's candidates on a shared lease table (issue 17, PostgreSQL) once a claim lost: the addresses the
 * database has free, since this daemon's index does not know the leases other daemons wrote, and near exhaustion its
 * own next guesses would mostly lose too (docs/scaling.md, bench/pg-pool-full.ts).
 */
import type { SubnetInfo } from '../inventory/cache.js';
import type { Reservation } from '../model/subnet.js';
import type { Store } from '../store/store.js';
import { ipInt, ipStr } from './ip.js';
import type { Allocation, Client, LeaseTable } from './lease-types.js';

/**
 * On a shared lease table (StateMachineEnv.freeAddresses): up to `limit` addresses of the subnet's range, from
 * `from` on (wrapping), that no client holds in the database now.
 */
export type FreeAddresses = (subnet: SubnetInfo, from: string, limit: number) => Promise<string[]>;

/** The store's free addresses on a shared lease table; undefined on a store of one daemon (its index knows all). */
export function freeAddressesOf(store: Store, now: () => number): FreeAddresses | undefined {
  const free = store.sharedLeases ? store.freeLeaseAddresses : undefined;
  if (!free) return undefined;
  return (s, from, limit) =>
    free({ start: s.start, end: s.end, from: ipInt(from), now: new Date(now()).toISOString(), limit });
}

/** Lost claims of the index's own guesses for one DISCOVER at most (other daemons' clients kept winning them). */
export const MAX_CLAIMS = 8;
/**
 * Lost claims of the database's free addresses for one DISCOVER at most: each was free a moment before, so each
 * loss is another client served; near exhaustion several DISCOVERs at once chase the same last addresses.
 */
export const MAX_FREE_CLAIMS = 32;

/** An allocation's `why` when the address came from the database's free ones. */
const FREE = 'free in the shared lease table';

/** Free addresses read from the shared lease table at once, when a claim lost. */
const CANDIDATES = 4;

/**
 * A DISCOVER's next candidates from the shared lease table (env.freeAddresses): read once after the first lost
 * claim (from the address lost, so daemons serving different clients still start far apart), again when used up.
 * Each is checked against the index first (a reservation, an excluded address, a lease it learnt meanwhile). None
 * without a shared table or for a reserved client (its address is the reservation's only).
 */
export function sharedCandidates(
  a: { subnet: SubnetInfo; client: Client; reservation: Reservation | undefined },
  env: { leases: LeaseTable; freeAddresses?: FreeAddresses },
) {
  let queue: string[] = [];
  let after: string | undefined;
  let guesses = 0;
  let frees = 0;
  const self = {
    /**
     * The claim of `alloc` lost: the next candidate (from the database, else `fallback`, the index's next guess), or
     * why the DISCOVER gives up (MAX_CLAIMS lost guesses, or MAX_FREE_CLAIMS lost free addresses).
     */
    async lost(alloc: Allocation, fallback: () => Allocation): Promise<Allocation> {
      if (alloc.why === FREE ? ++frees >= MAX_FREE_CLAIMS : ++guesses >= MAX_CLAIMS)
        return { why: `${guesses + frees} addresses held by other servers' clients` };
      return (await self.next(alloc.address)) ?? fallback();
    },
    async next(lost: string | undefined): Promise<{ address: string; why: string } | undefined> {
      if (!env.freeAddresses || a.reservation) return undefined;
      if (lost) after = lost;
      for (let reads = 0; reads < 2; reads++) {
        while (queue.length) {
          const address = queue.shift()!;
          if (address !== after && env.leases.usable(a.subnet, a.client, address, undefined))
            return { address, why: FREE };
        }
        if (reads === 1) break;
        queue = await env.freeAddresses(a.subnet, after ?? ipStr(a.subnet.start), CANDIDATES);
        if (after) queue = queue.filter((x) => x !== after);
      }
      return undefined;
    },
  };
  return self;
}
