/**
 * The daemon's one in-memory copy of what the packet paths read on every request: enabled subnets,
 * reservations, prefs and the firmware quirk table (the `firmwareQuirks` pref before the built-in entries).
 * Reloaded when the API publishes a change on the bus (subnets.*, reservations.*, prefs.updated), so DHCP,
 * boot and caps never wait for a list query.
 */

import { DEFAULT_QUIRKS, type Quirk, quirkTable } from '../boot/quirks.js';
import { coalesced } from '../coalesce.js';
import { ipInt } from '../dhcp/ip.js';
import type { Bus } from '../events.js';
import type { Logger } from '../log.js';
import { ipToInt, parseCidr } from '../model/common.js';
import { keepValidOptions } from '../model/dhcp-option-values.js';
import { Prefs } from '../model/profile.js';
import { Reservation, Subnet } from '../model/subnet.js';
import type { Store } from '../store/store.js';
import { PREFS_KEY } from './resources.js';

/**
 * An enabled subnet with its network and active range parsed once. Without activeStart/activeEnd (a subnet of
 * reservations only) the range is empty: start 0, end -1, so every `start <= ip <= end` test fails.
 */
export type SubnetInfo = Subnet & { net: ReturnType<typeof parseCidr>; start: number; end: number };

export type InventoryCache = {
  subnets(): SubnetInfo[];
  subnetByName(name: string): SubnetInfo | undefined;
  /** The enabled subnet containing an address (most specific prefix wins). */
  subnetFor(ip: string): SubnetInfo | undefined;
  reservationFor(subnet: string, mac: string): Reservation | undefined;
  reservationAt(address: string): Reservation | undefined;
  prefs(): Prefs;
  /** The firmware quirk table: the `firmwareQuirks` pref's entries, then DEFAULT_QUIRKS (first match wins). */
  quirks(): readonly Quirk[];
  reload(): Promise<void>;
  close(): void;
};

type Snapshot = {
  subnets: SubnetInfo[];
  byName: Map<string, SubnetInfo>;
  resByMac: Map<string, Reservation>;
  resByAddr: Map<string, Reservation>;
  prefs: Prefs;
  quirks: readonly Quirk[];
};

/**
 * A document stored before option values were checked may hold one the checks now refuse: leave that option out
 * (with a warning) rather than the whole subnet or reservation, so an upgrade takes nothing offline.
 */
function withValidOptions(key: string, doc: unknown, log: Logger): unknown {
  const d = doc as { options?: unknown } | null;
  if (!d || typeof d !== 'object' || d.options === undefined) return doc;
  const { options, refused } = keepValidOptions(d.options);
  for (const r of refused)
    log.warn(
      { object: key, code: r.code, err: r.message },
      'dhcp: stored option is invalid and not sent; fix it through the API',
    );
  return { ...d, options };
}

function servedSubnets(items: { key: string; doc: unknown }[], log: Logger): SubnetInfo[] {
  const out: SubnetInfo[] = [];
  for (const it of items) {
    const parsed = Subnet.safeParse(withValidOptions(it.key, it.doc, log));
    if (!parsed.success) {
      log.warn(
        { subnet: it.key, err: parsed.error.message },
        'dhcp: subnet is invalid and not served; fix it through the API',
      );
      continue;
    }
    const sub = parsed.data;
    if (!sub.enabled) continue;
    out.push({
      ...sub,
      net: parseCidr(sub.subnet),
      start: sub.activeStart ? ipToInt(sub.activeStart) : 0,
      end: sub.activeEnd ? ipToInt(sub.activeEnd) : -1,
    });
  }
  return out.sort((a, b) => b.net.prefix - a.net.prefix);
}

async function snapshot(store: Store, log: Logger): Promise<Snapshot> {
  const [s, r, p] = await Promise.all([
    store.list('subnets'),
    store.list('reservations'),
    store.get('prefs', PREFS_KEY),
  ]);
  const subnets = servedSubnets(s.items, log);
  const resByMac = new Map<string, Reservation>();
  const resByAddr = new Map<string, Reservation>();
  for (const it of r.items) {
    const parsed = Reservation.safeParse(withValidOptions(it.key, it.doc, log));
    if (!parsed.success) {
      log.warn({ reservation: it.key, err: parsed.error.message }, 'dhcp: reservation is invalid and ignored');
      continue;
    }
    resByMac.set(`${parsed.data.subnet}|${parsed.data.mac}`, parsed.data);
    resByAddr.set(parsed.data.address, parsed.data);
  }
  const pp = Prefs.safeParse(p?.doc ?? {});
  if (!pp.success)
    log.error({ err: pp.error.message }, 'firmware quirks: prefs are unreadable; only the built-in quirks apply');
  const prefs = pp.success ? pp.data : Prefs.parse({});
  return {
    subnets,
    byName: new Map(subnets.map((x) => [x.name, x])),
    resByMac,
    resByAddr,
    prefs,
    quirks: quirkTable(prefs.firmwareQuirks ?? [], DEFAULT_QUIRKS),
  };
}

export async function loadInventoryCache(store: Store, bus: Bus, log: Logger): Promise<InventoryCache> {
  let now = await snapshot(store, log);
  const reload = async () => {
    now = await snapshot(store, log);
  };
  // Coalesce bursts of API changes into one reload.
  const reloads = coalesced(reload, (err) =>
    log.error({ err }, 'dhcp: reloading subnets/reservations failed; serving the previous ones'),
  );
  const off = bus.on((e) => {
    if (e.type.startsWith('subnets.') || e.type.startsWith('reservations.') || e.type === 'prefs.updated')
      reloads.trigger();
  });

  return {
    subnets: () => now.subnets,
    subnetByName: (n) => now.byName.get(n),
    subnetFor: (ip) => {
      const n = ipInt(ip);
      return now.subnets.find((s) => (n & s.net.mask) >>> 0 === s.net.network);
    },
    reservationFor: (subnet, mac) => now.resByMac.get(`${subnet}|${mac}`),
    reservationAt: (a) => now.resByAddr.get(a),
    prefs: () => now.prefs,
    quirks: () => now.quirks,
    reload: async () => {
      await reloads.settled();
      await reload();
    },
    close: off,
  };
}
