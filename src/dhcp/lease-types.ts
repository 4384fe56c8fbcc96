/**
 * The lease table's types (leases.ts implements it): who a client is (RFC 2131 4.2), the table's operations, and
 * the error a bind lost to another daemon's client raises.
 */
import type { Bus } from '../events.js';
import type { SubnetInfo } from '../inventory/cache.js';
import type { Logger } from '../log.js';
import type { Lease, Reservation } from '../model/subnet.js';
import type { DurableSend, Store } from '../store/store.js';
import type { BackgroundGuard } from './guard.js';

export type LeaseState = Lease['state'];
export type LeaseRec = Lease & { ip: number; exp: number };

export type Allocation = { address: string; why: string } | { address?: undefined; why: string };

/**
 * Who a request comes from. RFC 2131 4.2: the client identifier (option 61, hex here), when sent, identifies
 * the client; chaddr otherwise. A bare string is a MAC (a client without option 61).
 */
export type Client = { mac: string; id?: string };
export type ClientRef = string | Client;
export const who = (c: ClientRef): Client => (typeof c === 'string' ? { mac: c } : c);

/**
 * Whether a lease is this client's (kea's Lease4::belongsToClient): the client identifiers decide when both
 * sides have one; otherwise the hardware address does. So a PXE ROM without option 61 and the OS that boots
 * after it with one keep one address, while two clients with different identifiers behind one MAC (two OSes
 * of a dual-boot, a VM host's bridge) are different clients.
 */
export const belongsTo = (r: Pick<Lease, 'mac' | 'clientId'>, c: Client): boolean =>
  r.clientId && c.id ? r.clientId === c.id : r.mac === c.mac;

/** bind() lost the address to another daemon's client: the REQUEST is NAKed (the index now has the holder). */
export class LeaseTakenError extends Error {
  constructor(readonly address: string) {
    super(`${address} is held by another client (another server's lease)`);
  }
}

export type LeaseTable = {
  get(address: string): LeaseRec | undefined;
  /** The client's lease in a subnet (by client identifier, else by MAC; see belongsTo). */
  forMac(subnet: string, client: ClientRef): LeaseRec | undefined;
  /** Chooses an address: reservation, existing lease, hint, next free, most expired (subnet.pickers order). */
  allocate(
    subnet: SubnetInfo,
    client: ClientRef,
    hint: string | undefined,
    reservation: Reservation | undefined,
  ): Allocation;
  /** Whether the client may hold `address` now (free, expired, or already its own; not reserved for another). */
  usable(subnet: SubnetInfo, client: ClientRef, address: string, reservation: Reservation | undefined): boolean;
  offer(subnet: SubnetInfo, client: ClientRef, address: string, seconds: number, extra?: Partial<Lease>): LeaseRec;
  /**
   * On a shared store, claims the offer just made (a short hold in the database, so two daemons never offer one
   * address): false when another client holds it (the index then knows). Undefined on a store of one daemon.
   */
  claimOffer(rec: LeaseRec): Promise<boolean> | undefined;
  /** On a shared store, re-reads the address's lease unless the index has it live for this client. */
  refresh(address: string, client: ClientRef): Promise<void> | undefined;
  /**
   * On a shared store, reads the lease rows written since the last catch-up (store.leaseChanges, page after page)
   * and learns those that differ from the index, unless this daemon was writing that address meanwhile; resolves
   * with how many it learnt. One read at a time (a call during one gets that one). Undefined on a store of one
   * daemon.
   */
  catchUp(): Promise<number> | undefined;
  /**
   * Binds and resolves when durable; rejects with LeaseTakenError when another daemon's client holds it. `send`:
   * the ACK, sent by the store the moment the lease is durable when it can (`send.taken`), else the caller's.
   */
  bind(
    subnet: SubnetInfo,
    client: ClientRef,
    address: string,
    seconds: number,
    extra?: Partial<Lease>,
    send?: DurableSend,
  ): Promise<LeaseRec>;
  /** RELEASE: only the lease's own client may release it. */
  release(address: string, client: ClientRef): Promise<boolean>;
  /** DECLINE (RFC 2131 4.3.3): someone else uses the address; keep it out of the pool for `seconds`. */
  decline(subnet: SubnetInfo, address: string, client: ClientRef, seconds: number): Promise<void>;
  /** Drops an offer the client turned down (it chose another server). */
  forgetOffer(subnet: string, client: ClientRef): void;
  /** Marks leases past their end as expired; returns how many. */
  reclaim(): number;
  /** The API deleted a lease: forget it. */
  drop(address: string): void;
  size(): number;
  /** Addresses of the subnet's range bound or declined now (not offered, not free): one pass over the table. */
  held(subnet: SubnetInfo): number;
};

export type LeaseTableDeps = {
  store: Store;
  bus: Bus;
  log: Logger;
  now?: () => number;
  /** Addresses never handed out (the server's own). */
  excluded?: () => Set<string>;
  /** The MAC an address is reserved for, if any (from the inventory's reservations). */
  reservedMacAt?: (address: string) => string | undefined;
  /** Where background write errors go, rate-limited (a full disk fails every write). */
  guard?: BackgroundGuard;
  /** Where in a shared pool the scan for this client starts, as an offset into the range (default: a hash of it). */
  scanStart?: (c: Client, size: number) => number;
  /**
   * This daemon's serverId, recorded in every lease it writes (none: not recorded). On a shared store the other
   * daemons' catch-up reads return the row, and this daemon's own leave it out (store.leaseChanges).
   */
  serverId?: string;
};
