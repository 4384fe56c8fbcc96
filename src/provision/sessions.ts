/**
 * The recent boot sessions: the last boot offer the DHCP server made to each MAC (its injected `onBoot` callback
 * calls `record`), and which MAC is at which address. The TFTP source asks for the client address's quirk cap when
 * it opens a file (src/provision/tftp-source.ts): the address comes with the offer (server mode: the ACK's yiaddr;
 * proxy mode: the port-4011 REQUEST's ciaddr) or with the lease acknowledged afterwards (`lease.acked`). In memory,
 * bounded: the least recently offered or linked go first.
 */
import type { BlksizeCap } from '../boot/caps.js';
import { type BootOffer, offerCap } from '../boot/session.js';
import type { Bus } from '../events.js';

export type SessionOptions = {
  /** MACs (and, separately, addresses) remembered at most (default 65,536). */
  max?: number;
};

export type BootSessions = {
  /** The DHCP server's `onBoot`: never throws (it runs in the packet path). */
  record(offer: BootOffer): void;
  /** Ties an address to a MAC (a lease acknowledged for it). */
  link(address: string, mac: string): void;
  /** The latest offer to the MAC at `address`, if any. */
  at(address: string): BootOffer | undefined;
  /** The firmware quirk's blksize cap for the client at `address`, chosen with its latest boot offer. */
  quirkCap(address: string): BlksizeCap | undefined;
  size(): { macs: number; addresses: number };
  close(): void;
};

const ipv4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const macRe = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;
const normMac = (m: unknown) => (typeof m === 'string' ? m.toLowerCase().replace(/-/g, ':') : '');

/** Map insertion order is recency: set moves a key to the end, eviction takes from the front. */
function touch<K, V>(map: Map<K, V>, key: K, value: V, max: number) {
  map.delete(key);
  map.set(key, value);
  while (map.size > max) map.delete(map.keys().next().value as K);
}

export function bootSessions(bus: Bus | undefined, opts: SessionOptions = {}): BootSessions {
  const max = opts.max ?? 65_536;
  const byMac = new Map<string, BootOffer>();
  const macAt = new Map<string, string>();

  const link = (address: string, mac: string) => {
    const m = normMac(mac);
    if (ipv4.test(address) && macRe.test(m)) touch(macAt, address, m, max);
  };
  const record = (offer: BootOffer) => {
    const mac = normMac(offer?.mac);
    if (!macRe.test(mac)) return;
    touch(byMac, mac, { ...offer, mac }, max);
    if (offer.address) link(offer.address, mac);
  };
  const at = (address: string) => {
    const mac = macAt.get(address);
    return mac ? byMac.get(mac) : undefined;
  };

  const off = bus?.on((e) => {
    if (e.type === 'lease.acked' && typeof e.key === 'string') link(e.key, e.data?.mac as string);
  });

  return {
    record,
    link,
    at,
    quirkCap: (address) => {
      const offer = at(address);
      return offer ? offerCap(offer) : undefined;
    },
    size: () => ({ macs: byMac.size, addresses: macAt.size }),
    close: () => off?.(),
  };
}
