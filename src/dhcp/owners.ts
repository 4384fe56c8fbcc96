/**
 * Subnet owners and HA pairs (issue 17): which of the daemons sharing one inventory answer a subnet's clients.
 * `ownerDecision` is the rule, a pure function (facts in, answer or not with the reason); `ownerGate` is what the
 * packet path asks: the rule against a cache of the live daemons refreshed on a timer (never a store read per
 * packet), counting and logging what it keeps silent about. Load balancing by `secs` is ISC dhcpd failover's
 * "load balance max seconds" (and RFC 3074's rule that a request naming a server in option 54 is that server's).
 */
import { listDaemons } from '../daemon-registry.js';
import type { InventoryCache } from '../inventory/cache.js';
import type { Logger } from '../log.js';
import { rateLimited } from '../log-limit.js';
import type { Store } from '../store/store.js';
import type { BackgroundGuard } from './guard.js';
import { ipStr } from './ip.js';
import { Opt } from './options.js';
import type { DhcpPacket } from './packet.js';
import type { DhcpServerOptions, DhcpStats } from './server-options.js';

/** A standby answers a client that has been trying this long (its `secs`) even while the primary is alive. */
export const DEFAULT_STANDBY_SECS = 10;
/** How often the live-daemon cache reads the `daemons` kind. */
export const ALIVE_REFRESH_MS = 2000;

/** Which daemons are alive: a Set, or "every one" before the first read. */
export type AliveSet = { has(serverId: string): boolean };

export type OwnerFacts = {
  subnet: { owners?: readonly string[]; standbySecs?: number };
  /** This daemon's serverId. */
  serverId: string;
  alive: AliveSet;
  /** The request's `secs` (seconds since the client began acquiring or renewing). */
  secs: number;
  /** The request names this server in option 54 (a SELECTING REQUEST for our OFFER, a RELEASE, a DECLINE). */
  chosen?: boolean;
};

export type OwnerDecision =
  | { answer: true; reason: 'no owners' | 'primary' | 'owners before it not alive' | 'secs' | 'chosen' }
  | { answer: false; reason: 'not an owner' }
  | { answer: false; reason: 'standby'; waitingFor: string };

/**
 * Whether this daemon answers a request for a subnet. No owners: every daemon does (one daemon, or active/active
 * on a shared store). owners[0], the primary, always does. A standby does when every owner before it is not alive,
 * when the client has been trying for `standbySecs` (the primary may be alive to the registry but not reaching
 * this client), or when the client chose it (an OFFER it made). A daemon not among the owners never does.
 */
export function ownerDecision(f: OwnerFacts): OwnerDecision {
  const owners = f.subnet.owners;
  if (!owners || owners.length === 0) return { answer: true, reason: 'no owners' };
  const rank = owners.indexOf(f.serverId);
  if (rank < 0) return { answer: false, reason: 'not an owner' };
  if (rank === 0) return { answer: true, reason: 'primary' };
  let waitingFor: string | undefined;
  for (let i = 0; i < rank && waitingFor === undefined; i++) if (f.alive.has(owners[i]!)) waitingFor = owners[i];
  if (waitingFor === undefined) return { answer: true, reason: 'owners before it not alive' };
  if (f.secs >= (f.subnet.standbySecs ?? DEFAULT_STANDBY_SECS)) return { answer: true, reason: 'secs' };
  if (f.chosen) return { answer: true, reason: 'chosen' };
  return { answer: false, reason: 'standby', waitingFor };
}

export type OwnerGate = {
  /**
   * Whether to answer `pkt`, placed in `subnet` with this server's address `server` (and a relay's server
   * identifier override): the rule against the cached live set. A silence is counted and logged (debug, one line
   * a minute). Subnets without owners cost one property read.
   */
  answers(
    subnet: OwnerFacts['subnet'] & { name: string },
    pkt: DhcpPacket,
    server: string,
    serverIdOverride?: string,
  ): boolean;
  /** The live set now (tests, logs). */
  alive(): AliveSet;
  close(): void;
};

export type OwnerGateOptions = {
  store: Store;
  serverId: string;
  log: Logger;
  guard: BackgroundGuard;
  /** Whether option 54's address is this server (the state machine's `isOurs`). */
  isOurs(serverId: string, server: string): boolean;
  /** Counts a request dropped because this daemon is not an owner, or a standby while an earlier owner is alive. */
  dropped(reason: 'not an owner' | 'standby'): void;
  /** Whether any served subnet has owners: the daemons list is read only then. */
  wanted(): boolean;
  refreshMs?: number;
};

const EVERY_ONE: AliveSet = { has: () => true };

/**
 * The gate and its live-daemon cache, read every `refreshMs` (default 2 s) while `wanted()` (some served subnet
 * has owners), and at once when a request for such a subnet comes before the first read.
 */
export function ownerGate(o: OwnerGateOptions): OwnerGate {
  // Before the first read, earlier owners count as alive: a standby starting next to a primary does not answer
  // in between (a client still gets the standby past standbySecs).
  let alive: AliveSet = EVERY_ONE;
  let read = false;
  let reading = false;
  const refresh = () => {
    if (reading) return;
    reading = true;
    read = true;
    listDaemons(o.store)
      .then((list) => {
        alive = new Set(list.filter((d) => d.alive).map((d) => d.serverId));
        o.guard.passed('reading the daemons list');
      })
      // A failed read keeps the last set: while the store is unreachable nothing can be ACKed anyway.
      .catch((err) => o.guard.failed('reading the daemons list', err))
      .finally(() => {
        reading = false;
      });
  };
  const tick = () => {
    if (o.wanted()) refresh();
  };
  tick();
  const timer = setInterval(tick, o.refreshMs ?? ALIVE_REFRESH_MS);
  timer.unref();
  let last: { subnet: string; reason: string; waitingFor?: string } = { subnet: '', reason: '' };
  const logDrop = rateLimited(60_000, (count) =>
    o.log.debug(
      { ...last, serverId: o.serverId, count },
      'dhcp: not answering a subnet this daemon does not serve now',
    ),
  );
  return {
    answers(subnet, pkt, server, serverIdOverride) {
      if (!subnet.owners || subnet.owners.length === 0) return true;
      if (!read) refresh();
      const d = ownerDecision({
        subnet,
        serverId: o.serverId,
        alive,
        secs: pkt.secs,
        chosen: namesThisServer(pkt, server, serverIdOverride, o.isOurs),
      });
      if (d.answer) return true;
      o.dropped(d.reason);
      last = { subnet: subnet.name, reason: d.reason, ...(d.reason === 'standby' ? { waitingFor: d.waitingFor } : {}) };
      logDrop();
      return false;
    },
    alive: () => alive,
    close() {
      clearInterval(timer);
    },
  };
}

/** Option 54 names this server (or the relay's RFC 5107 override, which stands for it). */
function namesThisServer(
  pkt: DhcpPacket,
  server: string,
  override: string | undefined,
  isOurs: OwnerGateOptions['isOurs'],
): boolean {
  const sid = pkt.options.get(Opt.ServerId);
  if (sid?.length !== 4) return false;
  const id = ipStr(sid.readUInt32BE(0));
  return id === override || isOurs(id, server);
}

/**
 * Whether `serverId` is the subnet's only owner, and so, by ownerDecision, the only daemon that answers its
 * clients: no other daemon offers from its pool (the DHCP server then offers without a claim: state-machine.ts).
 */
export const soleOwner = (subnet: OwnerFacts['subnet'], serverId: string | undefined): boolean =>
  serverId !== undefined && subnet.owners?.length === 1 && subnet.owners[0] === serverId;

/** The DHCP server's gate: its serverId (the daemon's: server.ts), its stats, its guard. */
export function serverOwnerGate(
  serverId: string,
  opts: DhcpServerOptions,
  stats: DhcpStats,
  guard: BackgroundGuard,
  isOurs: OwnerGateOptions['isOurs'],
  inventory: InventoryCache,
): OwnerGate {
  return ownerGate({
    store: opts.store,
    log: opts.log,
    guard,
    isOurs,
    wanted: () => inventory.subnets().some((s) => s.owners !== undefined && s.owners.length > 0),
    refreshMs: opts.ownersRefreshMs,
    serverId,
    dropped: (why) => stats[why === 'standby' ? 'standbySilent' : 'notOwner']++,
  });
}
