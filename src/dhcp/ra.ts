/**
 * Opt-in IPv6 Router Solicitation responder (pref answerRouterSolicitations) for IPv4-only provisioning
 * segments. iPXE configures DHCPv4 and IPv6 SLAAC together and waits ~13 s for a Router Advertisement that never
 * comes (../shared/lab gotcha 3). We answer each RS with an RA of router lifetime 0 (RFC 4861 4.2: "not a
 * default router"), M=0 and O=0, sent unicast to the soliciting link-local address: iPXE ignored an RA to
 * ff02::1 in the lab, the unicast one works.
 *
 * Node has no raw sockets, and libuv refuses to drive a raw socket's fd ("Unsupported fd type"), so the
 * responder lives in the native helper (native/ra.c, raStart): a raw ICMPv6 socket per interface,
 * filtered to type 133, hop limit 255 (RFC 4861 6.1.2), joined to ff02::2, served by one small thread. This
 * module only switches it on and off as the pref changes.
 */

import type { InventoryCache } from '../inventory/cache.js';
import type { Logger } from '../log.js';
import type { NetAddon } from './bind.js';
import type { BackgroundGuard } from './guard.js';

/** EMFILE, ENFILE, ENOBUFS, ENOMEM (the native helper names other errnos E<n>): worth trying again later. */
const outOfResources = (err: unknown) =>
  /^(EMFILE|ENFILE|ENOBUFS|ENOMEM|E24|E23|E105|E12)$/.test(String((err as { code?: unknown })?.code ?? ''));

export function startRaResponder(deps: {
  /** Evaluated each time the responder is switched on. */
  interfaces: () => string[];
  inventory: Pick<InventoryCache, 'prefs'>;
  log: Logger;
  addon: NetAddon;
  checkEveryMs?: number;
  /** Where errors of the periodic check go (listing interfaces fails under descriptor exhaustion). */
  guard?: BackgroundGuard;
}): { close(): void; answered: () => number } {
  const running = new Map<string, number>();
  let failed = false;
  const sync = () => {
    const want = deps.inventory.prefs().answerRouterSolicitations;
    if (want && running.size === 0 && !failed) {
      for (const ifname of deps.interfaces()) {
        try {
          running.set(ifname, deps.addon.raStart(ifname));
        } catch (err) {
          if (outOfResources(err)) {
            // Descriptor or memory exhaustion passes: stop what started (all or nothing, so the next check
            // starts every interface) and let the guard log it; the next check tries again.
            for (const id of running.values()) deps.addon.raStop(id);
            running.clear();
            throw err;
          }
          failed = true;
          deps.log.warn(
            { err, ifname },
            'dhcp: cannot answer IPv6 router solicitations (needs root or CAP_NET_RAW, and IPv6 on the interface); iPXE will wait ~13 s for IPv6',
          );
        }
      }
      if (running.size)
        deps.log.info(
          { interfaces: [...running.keys()] },
          'dhcp: answering IPv6 router solicitations with lifetime-0 RAs',
        );
    } else if (!want && running.size) {
      for (const id of running.values()) deps.addon.raStop(id);
      running.clear();
    }
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
  // Prefs change through the API; the inventory reloads them, we follow within a couple of seconds.
  const timer = setInterval(guarded, deps.checkEveryMs ?? 2000);
  timer.unref();
  return {
    close: () => {
      clearInterval(timer);
      for (const id of running.values()) deps.addon.raStop(id);
      running.clear();
    },
    answered: () => [...running.values()].reduce((n, id) => n + deps.addon.raAnswered(id), 0),
  };
}
