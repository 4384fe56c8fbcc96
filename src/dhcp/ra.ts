/**
 * IPv6 Router Solicitation responder for IPv4-only provisioning segments, on by default (pref
 * answerRouterSolicitations). iPXE's `ifconf` (what its autoboot runs first, in the NIC ROM, before any script of
 * ours can say otherwise) starts DHCPv4 and IPv6 SLAAC together and returns only when both are done; with no
 * router it resends Router Solicitations until its IPv6 configurator times out, ~16 s after the DHCPv4 ACK in the
 * lab (../shared/lab gotcha 3). No DHCP option or boot script can switch that off, so we answer each RS with an
 * RA of router lifetime 0 (RFC 4861 4.2: "not a default router"), no prefix, M=0 and O=0, sent unicast to the
 * soliciting link-local address: iPXE ignored an RA to ff02::1 in the lab, the unicast one works. Only
 * solicitations are answered (no periodic RAs), only on served interfaces, so hosts that do not ask hear nothing;
 * and not on an interface where this host has an IPv6 address beyond link-local: there a router (or an operator)
 * configures IPv6, iPXE hears that router, and our M=0/O=0 answer must not contradict its flags to other hosts.
 *
 * Node has no raw sockets, and libuv refuses to drive a raw socket's fd ("Unsupported fd type"), so the
 * responder lives in the native helper (native/ra.c, raStart): a raw ICMPv6 socket per interface,
 * filtered to type 133, hop limit 255 (RFC 4861 6.1.2), joined to ff02::2, served by one small thread. This
 * module keeps the set of answering interfaces equal to the served ones as the pref and the interfaces change
 * (a lab's veth appears after the daemon started).
 */

import os from 'node:os';
import type { InventoryCache } from '../inventory/cache.js';
import type { Logger } from '../log.js';
import type { NetAddon } from './bind.js';
import type { BackgroundGuard } from './guard.js';

/** EMFILE, ENFILE, ENOBUFS, ENOMEM (the native helper names other errnos E<n>): worth trying again later. */
const outOfResources = (err: unknown) =>
  /^(EMFILE|ENFILE|ENOBUFS|ENOMEM|E24|E23|E105|E12)$/.test(String((err as { code?: unknown })?.code ?? ''));

export function startRaResponder(deps: {
  /** Evaluated at each check: the interfaces that should answer. */
  interfaces: () => string[];
  inventory: Pick<InventoryCache, 'prefs'>;
  log: Logger;
  addon: NetAddon;
  checkEveryMs?: number;
  /** Where errors of the periodic check go (listing interfaces fails under descriptor exhaustion). */
  guard?: BackgroundGuard;
  /** The host's IPv6 addresses on an interface (default: os.networkInterfaces). */
  ipv6Of?: (ifname: string) => string[];
}): { close(): void; answered: () => number; interfaces: () => string[] } {
  const ipv6Of =
    deps.ipv6Of ??
    ((ifname: string) =>
      (os.networkInterfaces()[ifname] ?? []).filter((a) => a.family === 'IPv6').map((a) => a.address));
  // An interface with IPv6 configured beyond link-local has its own router: said once per interface.
  const routed = new Set<string>();
  const hasOwnIpv6 = (ifname: string) => {
    const global = ipv6Of(ifname).filter((a) => !/^fe[89ab]/i.test(a) && a !== '::1');
    if (global.length && !routed.has(ifname)) {
      routed.add(ifname);
      deps.log.info(
        { ifname, address: global[0] },
        'dhcp: not answering IPv6 router solicitations here: IPv6 is configured on this segment (its router answers)',
      );
    }
    if (!global.length) routed.delete(ifname);
    return global.length > 0;
  };
  const running = new Map<string, number>();
  // Interfaces whose start failed for good (no privilege, no IPv6): not retried while they stay wanted.
  const failed = new Set<string>();
  const stop = (ifname: string) => {
    deps.addon.raStop(running.get(ifname)!);
    running.delete(ifname);
  };
  const sync = () => {
    const wanted = new Set(
      deps.inventory.prefs().answerRouterSolicitations ? deps.interfaces().filter((i) => !hasOwnIpv6(i)) : [],
    );
    for (const ifname of [...running.keys()]) if (!wanted.has(ifname)) stop(ifname);
    for (const ifname of [...failed]) if (!wanted.has(ifname)) failed.delete(ifname);
    const started: string[] = [];
    for (const ifname of wanted) {
      if (running.has(ifname) || failed.has(ifname)) continue;
      try {
        running.set(ifname, deps.addon.raStart(ifname));
        started.push(ifname);
      } catch (err) {
        if (outOfResources(err)) {
          // Descriptor or memory exhaustion passes: stop everything (so the next check starts every interface
          // afresh, not some of them) and let the guard log it.
          for (const i of [...running.keys()]) stop(i);
          throw err;
        }
        failed.add(ifname);
        deps.log.warn(
          { err, ifname },
          'dhcp: cannot answer IPv6 router solicitations (needs root or CAP_NET_RAW, and IPv6 on the interface); iPXE will wait ~16 s for IPv6',
        );
      }
    }
    if (started.length)
      deps.log.info({ interfaces: started }, 'dhcp: answering IPv6 router solicitations with lifetime-0 RAs');
  };
  // A throw from a timer callback is an uncaught exception: Node would exit.
  const guarded = () => {
    try {
      sync();
      deps.guard?.passed('router advertisement sync');
    } catch (err) {
      if (deps.guard) deps.guard.failed('router advertisement sync', err);
      else deps.log.error({ err }, 'dhcp: router advertisement sync failed');
    }
  };
  guarded();
  // Prefs change through the API and served interfaces come and go; we follow within a couple of seconds.
  const timer = setInterval(guarded, deps.checkEveryMs ?? 2000);
  timer.unref();
  return {
    close: () => {
      clearInterval(timer);
      for (const ifname of [...running.keys()]) stop(ifname);
    },
    answered: () => [...running.values()].reduce((n, id) => n + deps.addon.raAnswered(id), 0),
    interfaces: () => [...running.keys()],
  };
}
