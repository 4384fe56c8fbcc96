/**
 * Opt-in IPv6 Router Solicitation responder (pref answerRouterSolicitations) for IPv4-only provisioning
 * segments. iPXE configures DHCPv4 and IPv6 SLAAC together and waits ~13 s for a Router Advertisement that never
 * comes (../shared/lab gotcha 3). We answer each RS with an RA of router lifetime 0 (RFC 4861 4.2: "not a
 * default router"), M=0 and O=0, sent unicast to the soliciting link-local address: iPXE ignored an RA to
 * ff02::1 in the lab, the unicast one works.
 *
 * Node has no raw sockets: the native helper opens a raw ICMPv6 socket (filtered to type 133, hop limit 255,
 * bound to the interface, joined to ff02::2) and Node drives its fd with dgram. The kernel fills the ICMPv6
 * checksum (RFC 3542 3.1) and the link-local source address.
 */
import dgram from 'node:dgram';
import type { Logger } from '../log.js';
import type { NetAddon } from './bind.js';
import type { Inventory } from './inventory.js';

const ND_ROUTER_SOLICIT = 133;
const ND_ROUTER_ADVERT = 134;
const IPPROTO_ICMPV6 = 58;

/** An RA with nothing in it but "I am not your router". */
export function routerAdvertisement(): Buffer {
  const b = Buffer.alloc(16);
  b[0] = ND_ROUTER_ADVERT;
  // code 0, checksum 0 (kernel), cur hop limit 0 (unspecified), flags 0 (M=0, O=0), router lifetime 0,
  // reachable time 0, retrans timer 0.
  return b;
}

export function startRaResponder(deps: { interfaces: string[]; inventory: Inventory; log: Logger; addon: NetAddon }): {
  close(): void;
  answered: () => number;
} {
  const sockets: dgram.Socket[] = [];
  let answered = 0;
  const last = new Map<string, number>();
  for (const ifname of deps.interfaces) {
    let fd: number;
    try {
      fd = deps.addon.openIcmp6(ifname);
    } catch (err) {
      deps.log.warn(
        { err, ifname },
        'dhcp: cannot answer IPv6 router solicitations here (needs root or CAP_NET_RAW); iPXE will wait for IPv6',
      );
      continue;
    }
    const s = dgram.createSocket('udp6');
    s.on('error', (err) => deps.log.warn({ err, ifname }, 'dhcp: router solicitation socket error'));
    s.on('message', (msg, rinfo) => {
      if (!deps.inventory.prefs().answerRouterSolicitations) return;
      if (msg.length < 8 || msg[0] !== ND_ROUTER_SOLICIT || msg[1] !== 0) return;
      if (rinfo.address === '::') return; // RFC 4861 6.2.6: no unicast reply to the unspecified address
      // At most one RA per host per second (RFC 4861 6.2.6 rate-limits solicited RAs too).
      const t = Date.now();
      if ((last.get(rinfo.address) ?? 0) > t - 1000) return;
      if (last.size > 10_000) last.clear();
      last.set(rinfo.address, t);
      const dest = rinfo.address.includes('%') ? rinfo.address : `${rinfo.address}%${ifname}`;
      // The "port" of a raw socket is its protocol number (Linux rawv6_sendmsg checks it).
      s.send(routerAdvertisement(), IPPROTO_ICMPV6, dest, (err) => {
        if (err) deps.log.debug({ err, dest }, 'dhcp: RA not sent');
        else answered++;
      });
    });
    s.bind({ fd });
    sockets.push(s);
  }
  return {
    close: () => {
      for (const s of sockets) s.close();
    },
    answered: () => answered,
  };
}
