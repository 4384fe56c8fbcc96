/**
 * Lease allocation and state. An in-memory index (by address, by subnet+MAC) loaded from the store at start
 * and written through with putBatched: every change is queued in the current event-loop turn's transaction,
 * and bind() resolves only once it is durable, so an ACK never leaves before its lease is on disk.
 *
 * Everything that decides who gets which address is synchronous: two requests handled in the same turn
 * cannot both take one address.
 */
import type { Bus } from '../events.js';
import type { Logger } from '../log.js';
import { intToIp, ipToInt } from '../model/common.js';
import type { Lease, Reservation } from '../model/subnet.js';
import type { Store } from '../store/store.js';
import type { SubnetInfo } from './inventory.js';

export type LeaseState = Lease['state'];
export type LeaseRec = Lease & { ip: number; exp: number };

export type Allocation = { address: string; why: string } | { address?: undefined; why: string };

export type LeaseTable = {
  get(address: string): LeaseRec | undefined;
  forMac(subnet: string, mac: string): LeaseRec | undefined;
  /** Chooses an address: reservation, existing lease, hint, next free, most expired (subnet.pickers order). */
  allocate(subnet: SubnetInfo, mac: string, hint: string | undefined, reservation: Reservation | undefined): Allocation;
  /** Whether `mac` may hold `address` now (free, expired, or already its own; not reserved for another). */
  usable(subnet: SubnetInfo, mac: string, address: string, reservation: Reservation | undefined): boolean;
  offer(subnet: SubnetInfo, mac: string, address: string, seconds: number, extra?: Partial<Lease>): LeaseRec;
  /** Binds and resolves when durable. */
  bind(subnet: SubnetInfo, mac: string, address: string, seconds: number, extra?: Partial<Lease>): Promise<LeaseRec>;
  release(address: string, mac: string): Promise<boolean>;
  /** DECLINE (RFC 2131 4.3.3): someone else uses the address; keep it out of the pool for `seconds`. */
  decline(subnet: SubnetInfo, address: string, mac: string, seconds: number): Promise<void>;
  /** Drops an offer the client turned down (it chose another server). */
  forgetOffer(subnet: string, mac: string): void;
  /** Marks leases past their end as expired; returns how many. */
  reclaim(): number;
  /** The API deleted a lease: forget it. */
  drop(address: string): void;
  size(): number;
};

export async function loadLeaseTable(deps: {
  store: Store;
  bus: Bus;
  log: Logger;
  now?: () => number;
  /** Addresses never handed out (the server's own). */
  excluded?: () => Set<string>;
  /** At most one lease commit per this many ms under load (default 4). */
  groupCommitMs?: number;
  /** The MAC an address is reserved for, if any (from the inventory's reservations). */
  reservedMacAt?: (address: string) => string | undefined;
}): Promise<LeaseTable> {
  const { store, bus, log } = deps;
  const now = deps.now ?? Date.now;
  const byIp = new Map<number, LeaseRec>();
  const byMac = new Map<string, number>(); // `${subnet}|${mac}` -> ip
  const cursors = new Map<string, number>(); // next-free scan position per subnet

  for (const it of (await store.list('leases')).items) {
    const d = it.doc as Lease;
    if (typeof d.address !== 'string' || typeof d.mac !== 'string' || typeof d.expiresAt !== 'string') continue;
    const rec: LeaseRec = { ...d, ip: ipToInt(d.address), exp: Date.parse(d.expiresAt) || 0 };
    byIp.set(rec.ip, rec);
    if (rec.state !== 'declined') byMac.set(`${rec.subnet}|${rec.mac}`, rec.ip);
  }

  // Group commit: the store commits (and fsyncs) once per event-loop turn; under load a turn holds only a few
  // requests, so at most one commit per GROUP_MS is started and the writes that arrive meanwhile share it.
  // At low load nothing waits (the first write of a quiet period goes out in the current turn).
  const GROUP_MS = deps.groupCommitMs ?? 4;
  let queued: { key: string; doc: Record<string, unknown>; resolve: () => void; reject: (e: Error) => void }[] = [];
  let scheduled = false;
  let lastFlush = 0;
  const flush = () => {
    scheduled = false;
    lastFlush = performance.now();
    const items = queued;
    queued = [];
    for (const it of items) store.putBatched('leases', it.key, it.doc).then(it.resolve, it.reject);
  };
  const persist = (rec: LeaseRec): Promise<void> => {
    const { ip: _ip, exp: _exp, ...doc } = rec;
    return new Promise<void>((resolve, reject) => {
      queued.push({ key: rec.address, doc, resolve, reject });
      if (scheduled) return;
      scheduled = true;
      const wait = lastFlush + GROUP_MS - performance.now();
      if (wait <= 0) setImmediate(flush);
      else setTimeout(flush, wait);
    });
  };
  const persistLater = (rec: LeaseRec) => {
    persist(rec).catch((err) => log.error({ err, address: rec.address }, 'dhcp: lease write failed'));
  };

  const live = (r: LeaseRec, t: number) => (r.state === 'offered' || r.state === 'bound') && r.exp > t;

  const freeFor = (ip: number, mac: string, t: number): boolean => {
    const r = byIp.get(ip);
    if (!r) return true;
    if (r.state === 'declined') return r.exp <= t;
    if (r.mac === mac) return true;
    return !live(r, t);
  };
  const reservedForOther = (ip: number, mac: string, reservation: Reservation | undefined) => {
    const owner = deps.reservedMacAt?.(intToIp(ip));
    return owner !== undefined && owner !== mac && reservation?.address !== intToIp(ip);
  };

  const inRange = (s: SubnetInfo, ip: number) => ip >= s.start && ip <= s.end;
  const excludedSet = () => deps.excluded?.() ?? new Set<string>();

  const table: LeaseTable = {
    get: (a) => byIp.get(ipToInt(a)),
    forMac: (subnet, mac) => {
      const ip = byMac.get(`${subnet}|${mac}`);
      return ip === undefined ? undefined : byIp.get(ip);
    },
    usable(s, mac, address, reservation) {
      const ip = ipToInt(address);
      if (reservation && reservation.address === address) return freeFor(ip, mac, now());
      if (!inRange(s, ip) || excludedSet().has(address)) return false;
      if (reservedForOther(ip, mac, reservation)) return false;
      // A MAC with a reservation gets that address only.
      if (reservation) return false;
      return freeFor(ip, mac, now());
    },
    allocate(s, mac, hint, reservation) {
      const t = now();
      if (reservation) {
        const ip = ipToInt(reservation.address);
        if (freeFor(ip, mac, t)) return { address: reservation.address, why: 'reservation' };
        return { why: `reserved address ${reservation.address} is leased to ${byIp.get(ip)?.mac}; delete that lease` };
      }
      const excluded = excludedSet();
      const ok = (ip: number) =>
        inRange(s, ip) && !excluded.has(intToIp(ip)) && !reservedForOther(ip, mac, undefined) && freeFor(ip, mac, t);
      const existing = byMac.get(`${s.name}|${mac}`);
      if (existing !== undefined && ok(existing)) return { address: intToIp(existing), why: 'existing lease' };
      for (const picker of s.pickers) {
        if (picker === 'none') break;
        if (picker === 'hint' && hint && hint !== '0.0.0.0') {
          const ip = ipToInt(hint);
          if (ok(ip)) return { address: hint, why: 'requested address (hint)' };
        }
        if (picker === 'nextFree') {
          const size = s.end - s.start + 1;
          let pos = cursors.get(s.name) ?? s.start;
          if (pos < s.start || pos > s.end) pos = s.start;
          for (let n = 0; n < size; n++) {
            const ip = pos;
            pos = pos >= s.end ? s.start : pos + 1;
            if (!byIp.has(ip) && ok(ip)) {
              cursors.set(s.name, pos);
              return { address: intToIp(ip), why: 'next free address' };
            }
          }
          cursors.set(s.name, pos);
        }
        if (picker === 'mostExpired') {
          let best: LeaseRec | undefined;
          for (const r of byIp.values()) {
            if (!inRange(s, r.ip) || live(r, t) || !ok(r.ip)) continue;
            if (!best || r.exp < best.exp) best = r;
          }
          if (best) return { address: best.address, why: `most expired address (was ${best.mac}, ${best.state})` };
        }
      }
      return { why: `no free address in ${s.name} (${intToIp(s.start)}-${intToIp(s.end)})` };
    },
    offer(s, mac, address, seconds, extra = {}) {
      // Offers live in memory only: losing one in a crash costs nothing (the client DISCOVERs again), and
      // not writing them halves the store's work per DORA. The lease.offered event still shows them.
      const rec = upsert(s, mac, address, 'offered', seconds, extra);
      bus.emit({ type: 'lease.offered', key: address, data: { mac, subnet: s.name } });
      return rec;
    },
    async bind(s, mac, address, seconds, extra = {}) {
      const rec = upsert(s, mac, address, 'bound', seconds, extra);
      await persist(rec);
      bus.emit({ type: 'lease.acked', key: address, data: { mac, subnet: s.name, expiresAt: rec.expiresAt } });
      return rec;
    },
    async release(address, mac) {
      const r = byIp.get(ipToInt(address));
      if (!r || r.mac !== mac || r.state === 'declined') return false;
      r.state = 'released';
      r.exp = now();
      r.expiresAt = new Date(r.exp).toISOString();
      r.updatedAt = r.expiresAt;
      await persist(r);
      bus.emit({ type: 'lease.released', key: address, data: { mac, subnet: r.subnet } });
      return true;
    },
    async decline(s, address, mac, seconds) {
      const t = now();
      const rec: LeaseRec = {
        address,
        mac,
        subnet: s.name,
        state: 'declined',
        ip: ipToInt(address),
        exp: t + seconds * 1000,
        expiresAt: new Date(t + seconds * 1000).toISOString(),
        updatedAt: new Date(t).toISOString(),
      };
      const old = byIp.get(rec.ip);
      if (old && byMac.get(`${old.subnet}|${old.mac}`) === rec.ip) byMac.delete(`${old.subnet}|${old.mac}`);
      byIp.set(rec.ip, rec);
      await persist(rec);
      bus.emit({ type: 'lease.declined', key: address, data: { mac, subnet: s.name, quarantineSeconds: seconds } });
    },
    forgetOffer(subnet, mac) {
      const ip = byMac.get(`${subnet}|${mac}`);
      const r = ip === undefined ? undefined : byIp.get(ip);
      if (r && r.state === 'offered') {
        r.state = 'expired';
        r.exp = now();
        r.expiresAt = new Date(r.exp).toISOString();
      }
    },
    reclaim() {
      const t = now();
      let n = 0;
      for (const r of byIp.values()) {
        if ((r.state === 'bound' || r.state === 'offered') && r.exp <= t) {
          const was = r.state;
          r.state = 'expired';
          r.updatedAt = new Date(t).toISOString();
          if (was === 'bound') persistLater(r);
          if (was === 'bound')
            bus.emit({ type: 'lease.expired', key: r.address, data: { mac: r.mac, subnet: r.subnet } });
          n++;
        }
      }
      return n;
    },
    drop(address) {
      const ip = ipToInt(address);
      const r = byIp.get(ip);
      if (!r) return;
      byIp.delete(ip);
      if (byMac.get(`${r.subnet}|${r.mac}`) === ip) byMac.delete(`${r.subnet}|${r.mac}`);
    },
    size: () => byIp.size,
  };

  function upsert(
    s: SubnetInfo,
    mac: string,
    address: string,
    state: LeaseState,
    seconds: number,
    extra: Partial<Lease>,
  ): LeaseRec {
    const t = now();
    const ip = ipToInt(address);
    const key = `${s.name}|${mac}`;
    // The client moves to another address: its old one becomes reusable at once.
    const prevIp = byMac.get(key);
    if (prevIp !== undefined && prevIp !== ip) {
      const prev = byIp.get(prevIp);
      if (prev && prev.mac === mac && live(prev, t)) {
        prev.state = 'released';
        prev.exp = t;
        prev.expiresAt = new Date(t).toISOString();
        persistLater(prev);
      }
    }
    // Whoever held this address before (expired/released) loses its stickiness to it.
    const old = byIp.get(ip);
    if (old && old.mac !== mac && byMac.get(`${old.subnet}|${old.mac}`) === ip)
      byMac.delete(`${old.subnet}|${old.mac}`);
    const rec: LeaseRec = {
      address,
      mac,
      subnet: s.name,
      state,
      ip,
      exp: t + seconds * 1000,
      expiresAt: new Date(t + seconds * 1000).toISOString(),
      updatedAt: new Date(t).toISOString(),
      ...(extra.clientId
        ? { clientId: extra.clientId }
        : old?.mac === mac && old.clientId
          ? { clientId: old.clientId }
          : {}),
      ...(extra.hostname
        ? { hostname: extra.hostname }
        : old?.mac === mac && old.hostname
          ? { hostname: old.hostname }
          : {}),
    };
    byIp.set(ip, rec);
    byMac.set(key, ip);
    return rec;
  }

  return table;
}
