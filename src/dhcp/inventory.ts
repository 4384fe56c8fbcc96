/**
 * What the DHCP server needs from the inventory, cached in memory: enabled subnets, reservations, prefs.
 * Reloaded when the API publishes a change on the bus (subnets.*, reservations.*, prefs.updated), so the
 * packet path never waits for a list query.
 */

import { coalesced } from '../coalesce.js';
import type { Bus } from '../events.js';
import type { Logger } from '../log.js';
import { ipToInt, parseCidr } from '../model/common.js';
import { Prefs } from '../model/profile.js';
import { Reservation, Subnet } from '../model/subnet.js';
import type { Store } from '../store/store.js';
import { ipInt } from './ip.js';

/** The prefs document's key in kind 'prefs' (one document of global settings). */
export const PREFS_KEY = 'global';

export type SubnetInfo = Subnet & { net: ReturnType<typeof parseCidr>; start: number; end: number };

export type Inventory = {
  subnets(): SubnetInfo[];
  subnetByName(name: string): SubnetInfo | undefined;
  /** The enabled subnet containing an address (most specific prefix wins). */
  subnetFor(ip: string): SubnetInfo | undefined;
  reservationFor(subnet: string, mac: string): Reservation | undefined;
  reservationAt(address: string): Reservation | undefined;
  prefs(): Prefs;
  reload(): Promise<void>;
  close(): void;
};

export async function loadInventory(store: Store, bus: Bus, log: Logger): Promise<Inventory> {
  let subnets: SubnetInfo[] = [];
  let byName = new Map<string, SubnetInfo>();
  let resByMac = new Map<string, Reservation>();
  let resByAddr = new Map<string, Reservation>();
  let prefs: Prefs = Prefs.parse({});

  const reload = async () => {
    const [s, r, p] = await Promise.all([
      store.list('subnets'),
      store.list('reservations'),
      store.get('prefs', PREFS_KEY),
    ]);
    const nextSubnets: SubnetInfo[] = [];
    for (const it of s.items) {
      const parsed = Subnet.safeParse(it.doc);
      if (!parsed.success) {
        log.warn(
          { subnet: it.key, err: parsed.error.message },
          'dhcp: subnet is invalid and not served; fix it through the API',
        );
        continue;
      }
      const sub = parsed.data;
      if (!sub.enabled) continue;
      const net = parseCidr(sub.subnet);
      nextSubnets.push({
        ...sub,
        net,
        start: sub.activeStart ? ipToInt(sub.activeStart) : 0,
        end: sub.activeEnd ? ipToInt(sub.activeEnd) : -1,
      });
    }
    nextSubnets.sort((a, b) => b.net.prefix - a.net.prefix);
    const nextByMac = new Map<string, Reservation>();
    const nextByAddr = new Map<string, Reservation>();
    for (const it of r.items) {
      const parsed = Reservation.safeParse(it.doc);
      if (!parsed.success) {
        log.warn({ reservation: it.key, err: parsed.error.message }, 'dhcp: reservation is invalid and ignored');
        continue;
      }
      nextByMac.set(`${parsed.data.subnet}|${parsed.data.mac}`, parsed.data);
      nextByAddr.set(parsed.data.address, parsed.data);
    }
    const pp = Prefs.safeParse(p?.doc ?? {});
    subnets = nextSubnets;
    byName = new Map(nextSubnets.map((x) => [x.name, x]));
    resByMac = nextByMac;
    resByAddr = nextByAddr;
    prefs = pp.success ? pp.data : Prefs.parse({});
  };
  await reload();

  // Coalesce bursts of API changes into one reload.
  const reloads = coalesced(reload, (err) =>
    log.error({ err }, 'dhcp: reloading subnets/reservations failed; serving the previous ones'),
  );
  const off = bus.on((e) => {
    if (e.type.startsWith('subnets.') || e.type.startsWith('reservations.') || e.type === 'prefs.updated')
      reloads.trigger();
  });

  return {
    subnets: () => subnets,
    subnetByName: (n) => byName.get(n),
    subnetFor: (ip) => {
      const n = ipInt(ip);
      return subnets.find((s) => (n & s.net.mask) >>> 0 === s.net.network);
    },
    reservationFor: (subnet, mac) => resByMac.get(`${subnet}|${mac}`),
    reservationAt: (a) => resByAddr.get(a),
    prefs: () => prefs,
    reload: async () => {
      await reloads.settled();
      await reload();
    },
    close: off,
  };
}
