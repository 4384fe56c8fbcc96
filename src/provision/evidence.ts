import type { Bus } from '../events.js';

/**
 * What this daemon's own DHCP service has seen: which MAC it acknowledged at which address, and when. It is the
 * evidence that ties a bare source address to a machine (src/provision/trust.ts). Only the acknowledgements this
 * process sent count: an ACK binds a MAC to an address the DHCP server chose (`lease.acked`), or, in proxyDHCP
 * mode, the port-4011 REQUEST whose ciaddr is its UDP source (`proxy.acked`: iPXE and PXE firmware send it after
 * their DHCPACK from the network's own server). In memory only: bounded, and stale after `freshnessMs`.
 */
export type EvidenceVia = 'lease' | 'proxy';
export type EvidenceHit = { mac: string; via: EvidenceVia; ageMs: number };

export type EvidenceOptions = {
  /** How long an ACK stays evidence (default 10 minutes): firmware fetches its files within seconds of it. */
  freshnessMs?: number;
  /** Addresses remembered at most (default 65,536); the least recently acknowledged go first. */
  maxAddresses?: number;
  now?: () => number;
};

export type DhcpEvidence = {
  note(address: string, mac: string, via: EvidenceVia): void;
  forget(address: string, mac?: string): void;
  /** The freshest ACK binding one of `macs` to `address`, if any. */
  binds(macs: readonly string[], address: string): EvidenceHit | undefined;
  size(): number;
  close(): void;
};

export const DEFAULT_FRESHNESS_MS = 10 * 60_000;
/** One address can follow a few MACs in the window (a lease handed over after a RELEASE); more is noise. */
const MACS_PER_ADDRESS = 4;
const ipv4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const macRe = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;
const normMac = (m: unknown) => (typeof m === 'string' ? m.toLowerCase().replace(/-/g, ':') : '');

export function dhcpEvidence(bus: Bus | undefined, opts: EvidenceOptions = {}): DhcpEvidence {
  const freshness = opts.freshnessMs ?? DEFAULT_FRESHNESS_MS;
  const max = opts.maxAddresses ?? 65_536;
  const now = opts.now ?? Date.now;
  // Insertion order is recency: a note moves its address to the end, eviction takes from the front.
  const byAddress = new Map<string, { mac: string; via: EvidenceVia; at: number }[]>();

  const note = (address: string, mac: string, via: EvidenceVia) => {
    const m = normMac(mac);
    if (!ipv4.test(address) || !macRe.test(m)) return;
    const prev = (byAddress.get(address) ?? []).filter((e) => e.mac !== m);
    byAddress.delete(address);
    byAddress.set(address, [{ mac: m, via, at: now() }, ...prev].slice(0, MACS_PER_ADDRESS));
    while (byAddress.size > max) byAddress.delete(byAddress.keys().next().value!);
  };
  const forget = (address: string, mac?: string) => {
    const list = byAddress.get(address);
    if (!list) return;
    const rest = mac ? list.filter((e) => e.mac !== normMac(mac)) : [];
    if (rest.length) byAddress.set(address, rest);
    else byAddress.delete(address);
  };

  const off = bus?.on((e) => {
    if (typeof e.key !== 'string') return;
    if (e.type === 'lease.acked') note(e.key, e.data?.mac as string, 'lease');
    else if (e.type === 'proxy.acked') note(e.key, e.data?.mac as string, 'proxy');
    // The address is no longer that MAC's: a later request from it proves nothing.
    else if (e.type === 'lease.released' || e.type === 'lease.expired' || e.type === 'lease.declined')
      forget(e.key, e.data?.mac as string | undefined);
  });

  return {
    note,
    forget,
    binds(macs, address) {
      const list = byAddress.get(address);
      if (!list) return undefined;
      const t = now();
      for (const e of list) {
        if (t - e.at > freshness) continue;
        if (macs.includes(e.mac)) return { mac: e.mac, via: e.via, ageMs: t - e.at };
      }
      return undefined;
    },
    size: () => byAddress.size,
    close: () => off?.(),
  };
}
