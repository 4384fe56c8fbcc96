/**
 * Lease allocation and state. An in-memory index (by address; by subnet + client identifier and subnet + MAC)
 * loaded from the store at start and written through with putBatched (the store's group commit), and bind()
 * resolves only once the lease is durable, so an ACK never leaves before its lease is on disk.
 *
 * Everything that decides who gets which address is synchronous: two requests handled in the same turn
 * cannot both take one address. On a store other daemons write too (PostgreSQL, `store.sharedLeases`), the
 * index is this daemon's view only: every lease write is a claimLease (the database refuses an address another
 * client holds), an offer is claimed before it leaves, and a lost claim teaches the index the holder's lease.
 * The index also follows the rows the others write (catchUp, `store.leaseChanges`, every second), publishing
 * their lease events on this daemon's bus, so allocation, held counts, RELEASE, DECLINE and INIT-REBOOT see their
 * leases too; ended leases are marked in memory only (the leader's sweep writes them: duties.ts). */
import { isoClock } from '../events.js';
import type { SubnetInfo } from '../inventory/cache.js';
import type { Lease, Reservation } from '../model/subnet.js';
import type { DurableSend } from '../store/store.js';
import { HeldCounts, isHeld } from './held.js';
import { ipInt, ipStr } from './ip.js';
import { expiredEvent, learntEvent, leaseEvent } from './lease-events.js';
import { LeaseFollower, scanStartOf } from './lease-follow.js';
import {
  type Allocation,
  belongsTo,
  type Client,
  type ClientRef,
  type LeaseRec,
  type LeaseState,
  type LeaseTable,
  type LeaseTableDeps,
  LeaseTakenError,
  who,
} from './lease-types.js';
import { SubnetIndex } from './subnet-index.js';

export * from './lease-types.js';

/** The lease table with every lease of the store loaded. */
export async function loadLeaseTable(deps: LeaseTableDeps): Promise<LeaseTable> {
  const table = new MemoryLeaseTable(deps);
  // Where following the others' writes starts: before the load, so nothing written meanwhile is missed (what the
  // load already has comes again, the same).
  if (deps.store.sharedLeases && deps.store.leaseChanges)
    table.follow.cursor = (await deps.store.leaseChanges()).cursor;
  for (const it of (await deps.store.list('leases')).items) table.load(it.doc as Lease);
  return table;
}

const live = (r: LeaseRec, t: number) => (r.state === 'offered' || r.state === 'bound') && r.exp > t;
const inRange = (s: SubnetInfo, ip: number) => ip >= s.start && ip <= s.end;

class MemoryLeaseTable implements LeaseTable {
  private readonly now: () => number;
  private readonly byIp = new Map<number, LeaseRec>();
  // Two indexes to a client's lease, per subnet: by client identifier and by MAC (the MAC's latest lease). A
  // lookup tries the identifier, then the MAC, and keeps the MAC's lease only if it belongs to the client.
  private readonly byId = new SubnetIndex();
  private readonly byMac = new SubnetIndex();
  private readonly cursors = new Map<string, number>(); // next-free scan position per subnet
  private readonly heldCounts: HeldCounts;
  // Two formatters, each caching its own minute: now (updatedAt) and now + a lease time (expiresAt).
  private readonly isoNow = isoClock();
  private readonly isoLater = isoClock();
  /** Claims and catch-up reads on a shared store (lease-follow.ts). */
  readonly follow: LeaseFollower;

  constructor(private readonly deps: LeaseTableDeps) {
    this.now = deps.now ?? Date.now;
    this.heldCounts = new HeldCounts((s, t) => this.countHeld(s, t), this.now);
    this.follow = new LeaseFollower(
      deps.store,
      (ip) => this.byIp.get(ip),
      (d) => this.learn(d),
    );
  }

  /** A stored lease, at start. */
  load(d: Lease): void {
    if (this.place(d)) this.heldCounts.forget();
  }

  /** A stored lease in the index at its address, in place of what was there: both, or undefined for a bad row. */
  private place(d: Lease): { old: LeaseRec | undefined; rec: LeaseRec } | undefined {
    if (typeof d.address !== 'string' || typeof d.mac !== 'string' || typeof d.expiresAt !== 'string') return;
    const ip = ipInt(d.address);
    const old = this.byIp.get(ip);
    if (old) this.unindex(old);
    const rec: LeaseRec = { ...d, ip, exp: Date.parse(d.expiresAt) || 0 };
    this.byIp.set(ip, rec);
    if (rec.state !== 'declined') this.index(rec);
    return { old, rec };
  }

  private index(r: LeaseRec): void {
    this.byMac.set(r.subnet, r.mac, r.ip);
    if (r.clientId) this.byId.set(r.subnet, r.clientId, r.ip);
  }

  private unindex(r: LeaseRec): void {
    this.byMac.deleteIf(r.subnet, r.mac, r.ip);
    if (r.clientId) this.byId.deleteIf(r.subnet, r.clientId, r.ip);
  }

  private lookup(subnet: string, c: Client): LeaseRec | undefined {
    if (c.id) {
      const ip = this.byId.get(subnet, c.id);
      const r = ip === undefined ? undefined : this.byIp.get(ip);
      if (r && r.state !== 'declined' && belongsTo(r, c)) return r;
    }
    const ip = this.byMac.get(subnet, c.mac);
    const r = ip === undefined ? undefined : this.byIp.get(ip);
    return r && r.state !== 'declined' && belongsTo(r, c) ? r : undefined;
  }

  // Group commit is the store's: a write waits at most for the batch in progress (writer thread) or for the
  // next paced inline commit; persist resolves once the lease is on disk.
  private persist(rec: LeaseRec): Promise<void> {
    return this.write(rec).then(() => undefined);
  }

  // False: another daemon's client holds the address (shared store only); the index has learnt its lease.
  private write(rec: LeaseRec, send?: DurableSend): Promise<boolean> {
    // Every write names its writer: offer, ACK, release, decline, a move's release, SQLite's expiry (issue 17).
    if (this.deps.serverId !== undefined) rec.serverId = this.deps.serverId;
    const { ip, exp: _exp, ...doc } = rec;
    const { store } = this.deps;
    if (store.sharedLeases && store.claimLease) return this.follow.claim(ip, doc, new Date(this.now()).toISOString());
    return store.putBatched('leases', rec.address, doc, send).then(() => true);
  }

  /** Another daemon's lease: replaces what the index had at its address (the held counts follow). */
  private learn(d: Lease): void {
    const placed = this.place(d);
    if (!placed) return;
    const t = this.now();
    this.heldCounts.moved(placed.rec.ip, isHeld(placed.old, t), isHeld(placed.rec, t));
    const ev = learntEvent(placed.old, placed.rec, this.now);
    if (ev) this.deps.bus.emit(ev);
  }

  /** This daemon's event for its own write of `rec` in `state` (lease-events.ts: the clock read for a DECLINE only). */
  private announce(state: LeaseState, rec: LeaseRec): void {
    const ev = leaseEvent(rec, this.now, this.deps.serverId, state);
    if (ev) this.deps.bus.emit(ev);
  }

  catchUp(): Promise<number> | undefined {
    return this.follow.catchUp();
  }

  claimOffer(rec: LeaseRec): Promise<boolean> | undefined {
    if (!this.deps.store.sharedLeases) return undefined;
    return this.write(rec);
  }

  refresh(address: string, client: ClientRef): Promise<void> | undefined {
    if (!this.deps.store.sharedLeases) return undefined;
    const r = this.byIp.get(ipInt(address));
    return r && live(r, this.now()) && belongsTo(r, who(client)) ? undefined : this.follow.refresh(address);
  }

  private persistLater(rec: LeaseRec): void {
    const { guard, log } = this.deps;
    this.persist(rec).then(
      () => guard?.passed('writing expired and released leases'),
      (err) => {
        if (guard) guard.failed('writing expired and released leases', err, { address: rec.address });
        else log.error({ err, address: rec.address }, 'dhcp: lease write failed');
      },
    );
  }

  private freeFor(ip: number, c: Client, t: number): boolean {
    const r = this.byIp.get(ip);
    if (!r) return true;
    if (r.state === 'declined') return r.exp <= t;
    if (belongsTo(r, c)) return true;
    return !live(r, t);
  }

  private reservedForOther(ip: number, mac: string, reservation: Reservation | undefined): boolean {
    if (!this.deps.reservedMacAt) return false;
    const address = ipStr(ip);
    const owner = this.deps.reservedMacAt(address);
    return owner !== undefined && owner !== mac && reservation?.address !== address;
  }

  /** Whether the allocator may hand `ip` to the client: in range, not the server's, not reserved, free. */
  private okFor(s: SubnetInfo, ip: number, c: Client, t: number, excluded: Set<string>): boolean {
    return (
      inRange(s, ip) &&
      !excluded.has(ipStr(ip)) &&
      !this.reservedForOther(ip, c.mac, undefined) &&
      this.freeFor(ip, c, t)
    );
  }

  private excludedSet(): Set<string> {
    return this.deps.excluded?.() ?? new Set<string>();
  }

  get(a: string): LeaseRec | undefined {
    return this.byIp.get(ipInt(a));
  }

  forMac(subnet: string, client: ClientRef): LeaseRec | undefined {
    return this.lookup(subnet, who(client));
  }

  usable(s: SubnetInfo, client: ClientRef, address: string, reservation: Reservation | undefined): boolean {
    const c = who(client);
    const ip = ipInt(address);
    if (reservation && reservation.address === address) return this.freeFor(ip, c, this.now());
    if (!inRange(s, ip) || this.excludedSet().has(address)) return false;
    if (this.reservedForOther(ip, c.mac, reservation)) return false;
    // A MAC with a reservation gets that address only.
    if (reservation) return false;
    return this.freeFor(ip, c, this.now());
  }

  allocate(
    s: SubnetInfo,
    client: ClientRef,
    hint: string | undefined,
    reservation: Reservation | undefined,
  ): Allocation {
    const c = who(client);
    const t = this.now();
    if (reservation) {
      const ip = ipInt(reservation.address);
      if (this.freeFor(ip, c, t)) return { address: reservation.address, why: 'reservation' };
      return {
        why: `reserved address ${reservation.address} is leased to ${this.byIp.get(ip)?.mac}; delete that lease`,
      };
    }
    const excluded = this.excludedSet();
    const existing = this.lookup(s.name, c);
    if (existing !== undefined && this.okFor(s, existing.ip, c, t, excluded))
      return { address: existing.address, why: 'existing lease' };
    for (const picker of s.pickers) {
      if (picker === 'none') break;
      if (picker === 'hint' && hint && hint !== '0.0.0.0') {
        if (this.okFor(s, ipInt(hint), c, t, excluded)) return { address: hint, why: 'requested address (hint)' };
      }
      if (picker === 'nextFree') {
        const ip = this.nextFree(s, c, t, excluded);
        if (ip !== undefined) return { address: ipStr(ip), why: 'next free address' };
      }
      if (picker === 'mostExpired') {
        const best = this.mostExpired(s, c, t, excluded);
        if (best) return { address: best.address, why: `most expired address (was ${best.mac}, ${best.state})` };
      }
    }
    return { why: `no free address in ${s.name} (${ipStr(s.start)}-${ipStr(s.end)})` };
  }

  /**
   * The next never-leased address of the range from the subnet's cursor, round-robin. In a pool other daemons
   * share, the scan starts where the client hashes to instead: every daemon that a relay forwards one DISCOVER to
   * offers that client the same address (both claims win: one client), and daemons serving different clients
   * start far apart. From one shared cursor every daemon's first choice would be the same address for different
   * clients and all but one claim would lose (three daemons on one subnet lost 42% of DORAs at 1,300/s where
   * three with a subnet each lost none); from random starts, two daemons answering one DISCOVER take two addresses.
   */
  private nextFree(s: SubnetInfo, c: Client, t: number, excluded: Set<string>): number | undefined {
    const size = s.end - s.start + 1;
    const shared = this.deps.store.sharedLeases;
    let pos = shared
      ? s.start + ((this.deps.scanStart ?? scanStartOf)(c, size) % size)
      : (this.cursors.get(s.name) ?? s.start);
    if (pos < s.start || pos > s.end) pos = s.start;
    for (let n = 0; n < size; n++) {
      const ip = pos;
      pos = pos >= s.end ? s.start : pos + 1;
      if (!this.byIp.has(ip) && this.okFor(s, ip, c, t, excluded)) {
        if (!shared) this.cursors.set(s.name, pos);
        return ip;
      }
    }
    return undefined;
  }

  private mostExpired(s: SubnetInfo, c: Client, t: number, excluded: Set<string>): LeaseRec | undefined {
    let best: LeaseRec | undefined;
    for (const r of this.byIp.values()) {
      if (!inRange(s, r.ip) || live(r, t) || !this.okFor(s, r.ip, c, t, excluded)) continue;
      if (!best || r.exp < best.exp) best = r;
    }
    return best;
  }

  offer(s: SubnetInfo, client: ClientRef, address: string, seconds: number, extra: Partial<Lease> = {}): LeaseRec {
    // Offers live in memory only: losing one in a crash costs nothing (the client DISCOVERs again), and
    // not writing them halves the store's work per DORA. The lease.offered event still shows them.
    const c = who(client);
    const rec = this.upsert(s, c, address, 'offered', seconds, extra);
    this.announce('offered', rec);
    return rec;
  }

  async bind(s: SubnetInfo, cl: ClientRef, a: string, secs: number, extra: Partial<Lease> = {}, send?: DurableSend) {
    const c = who(cl);
    const rec = this.upsert(s, c, a, 'bound', secs, extra);
    if (!(await this.write(rec, send))) throw new LeaseTakenError(a);
    this.announce('bound', rec);
    return rec;
  }

  async release(address: string, client: ClientRef): Promise<boolean> {
    const r = this.byIp.get(ipInt(address));
    if (!r || !belongsTo(r, who(client)) || r.state === 'declined') return false;
    this.heldCounts.moved(r.ip, isHeld(r, this.now()), false);
    r.state = 'released';
    r.exp = this.now();
    r.expiresAt = new Date(r.exp).toISOString();
    r.updatedAt = r.expiresAt;
    await this.persist(r);
    this.announce('released', r);
    return true;
  }

  async decline(s: SubnetInfo, address: string, client: ClientRef, seconds: number): Promise<void> {
    const c = who(client);
    const t = this.now();
    const rec: LeaseRec = {
      address,
      mac: c.mac,
      subnet: s.name,
      state: 'declined',
      ip: ipInt(address),
      exp: t + seconds * 1000,
      expiresAt: new Date(t + seconds * 1000).toISOString(),
      updatedAt: new Date(t).toISOString(),
      ...(c.id ? { clientId: c.id } : {}),
    };
    const old = this.byIp.get(rec.ip);
    if (old) this.unindex(old);
    this.byIp.set(rec.ip, rec);
    this.heldCounts.moved(rec.ip, isHeld(old, t), isHeld(rec, t));
    await this.persist(rec);
    this.announce('declined', rec);
  }

  forgetOffer(subnet: string, client: ClientRef): void {
    const r = this.lookup(subnet, who(client));
    if (r && r.state === 'offered') {
      r.state = 'expired';
      r.exp = this.now();
      r.expiresAt = new Date(r.exp).toISOString();
    }
  }

  reclaim(): number {
    const t = this.now();
    // On a shared table every daemon holding the lease would write it and publish its end: the leader's sweep
    // does both, once (src/duties.ts). Here only the index learns it; a claim decides by expiresAt anyway.
    const shared = this.deps.store.sharedLeases === true;
    let n = 0;
    for (const r of this.byIp.values()) {
      if ((r.state === 'bound' || r.state === 'offered') && r.exp <= t) {
        const was = r.state;
        r.state = 'expired';
        r.updatedAt = new Date(t).toISOString();
        if (was === 'bound' && !shared) {
          this.persistLater(r);
          this.deps.bus.emit(expiredEvent(r.address, { mac: r.mac, subnet: r.subnet, serverId: this.deps.serverId }));
        }
        n++;
      }
    }
    if (n > 0) this.heldCounts.forget();
    return n;
  }

  drop(address: string): void {
    const ip = ipInt(address);
    this.follow.dropped(ip);
    const r = this.byIp.get(ip);
    if (!r) return;
    this.byIp.delete(ip);
    this.unindex(r);
    this.heldCounts.moved(ip, isHeld(r, this.now()), false);
  }

  size(): number {
    return this.byIp.size;
  }

  held(s: SubnetInfo): number {
    return this.heldCounts.held(s);
  }

  private countHeld(s: SubnetInfo, t: number): number {
    let n = 0;
    for (const r of this.byIp.values())
      if (inRange(s, r.ip) && r.exp > t && (r.state === 'bound' || r.state === 'declined')) n++;
    return n;
  }

  private upsert(
    s: SubnetInfo,
    c: Client,
    address: string,
    state: LeaseState,
    seconds: number,
    extra: Partial<Lease>,
  ): LeaseRec {
    const t = this.now();
    const ip = ipInt(address);
    // The client moves to another address: its old one becomes reusable at once.
    const prev = this.lookup(s.name, c);
    if (prev && prev.ip !== ip && live(prev, t)) {
      this.heldCounts.moved(prev.ip, isHeld(prev, t), false);
      prev.state = 'released';
      prev.exp = t;
      prev.expiresAt = this.isoNow(t);
      this.persistLater(prev);
    }
    // Whoever held this address before (expired/released) loses its stickiness to it.
    const old = this.byIp.get(ip);
    const same = old !== undefined && old.state !== 'declined' && belongsTo(old, c);
    if (old) this.unindex(old);
    const wasHeld = isHeld(old, t);
    // A client that sent no identifier this time (a PXE ROM before its OS) keeps the one its lease has.
    const clientId = c.id ?? (same ? old.clientId : undefined);
    const hostname = extra.hostname ?? (same ? old.hostname : undefined);
    const exp = t + seconds * 1000;
    const rec: LeaseRec = {
      address,
      mac: c.mac,
      subnet: s.name,
      state,
      ip,
      exp,
      expiresAt: this.isoLater(exp),
      updatedAt: this.isoNow(t),
    };
    if (clientId) rec.clientId = clientId;
    if (hostname) rec.hostname = hostname;
    this.byIp.set(ip, rec);
    this.index(rec);
    this.heldCounts.moved(ip, wasHeld, isHeld(rec, t));
    return rec;
  }
}
