/**
 * What the DHCP server is given (its options), what it counts (stats) and what it hands back (the handle), apart
 * from server.ts so that file holds only the wiring and the packet path.
 */
import type os from 'node:os';
import type { Quirk } from '../boot/quirks.js';
import type { Bus } from '../events.js';
import type { InventoryCache } from '../inventory/cache.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import type { BootOffer } from './boot.js';
import type { LeaseTable } from './leases.js';

export type DhcpServerOptions = {
  store: Store;
  bus: Bus;
  log: Logger;
  /**
   * The daemon's inventory cache (served subnets, reservations, prefs, quirks). Absent: the server loads its
   * own from `store` and `bus` (and closes it with the server).
   */
  inventory?: InventoryCache;
  /** Called (synchronously) for every reply carrying a boot decision, before it is sent: records the boot session. */
  onBoot?: (offer: BootOffer) => void;
  /**
   * Interfaces to serve, one socket each (SO_BINDTODEVICE). Absent: every interface with an IPv4 address,
   * followed as they come and go (needs the native helper; without it, one wildcard socket).
   */
  interfaces?: string[];
  port?: number;
  proxyPort?: number;
  /** Where clients listen (68); tests use high ports. */
  clientPort?: number;
  /** Where relays listen (RFC 1542: 67, i.e. `port`). */
  relayPort?: number;
  httpPort: number;
  /** One socket for all interfaces, as without the native helper: single-homed hosts and loopback tests. */
  wildcard?: boolean;
  /** This server's address on the served segment (option 54, next-server) when it cannot be found from the interface. */
  serverAddress?: string;
  /** Limited broadcast by default. */
  broadcastAddress?: string;
  /** Test hook: sees (and may rewrite) every reply destination, e.g. to loopback. */
  replyTo?: (dest: { address: string; port: number }, kind: 'dhcp' | 'proxy') => { address: string; port: number };
  now?: () => number;
  /** A fixed firmware quirk table instead of the inventory cache's (tests). */
  quirks?: readonly Quirk[];
  hasLoader?: (name: string) => boolean;
  offerSeconds?: number;
  declineSeconds?: number;
  reclaimIntervalMs?: number;
  /** On a shared lease table: how often the index reads the rows other daemons wrote (default 1000 ms). */
  leaseFollowMs?: number;
  malformedLogIntervalMs?: number;
  /** Interface rescan period in auto mode (default 30 s). */
  rescanIntervalMs?: number;
  /** Test hook: replaces os.networkInterfaces (e.g. one that throws EMFILE). */
  networkInterfaces?: () => ReturnType<typeof os.networkInterfaces>;
  /** Fraction of a pool's free addresses unknown clients' un-REQUESTed offers may hold (default 0.5; offers.ts). */
  unknownOfferShare?: number;
  /** Offer hold for unknown clients while the pool is under pressure, seconds (default 10). */
  pressureOfferSeconds?: number;
  /** New offers to unknown clients per ingress (giaddr or interface) per second under pressure (default 50, 0 = no limit). */
  unknownOfferRate?: number;
  /** Interval of the summary lines of repeated background errors and refused offers (default 60 s). */
  errorLogIntervalMs?: number;
  /**
   * This daemon's serverId, matched against subnets' `owners` (owners.ts; default: the host name, as the daemon's)
   * and, when given, recorded in every lease this server writes (the daemon always gives it, src/wiring.ts).
   */
  serverId?: string;
  /** How often the live-daemon cache for subnet owners reads the daemons list (default 2 s). */
  ownersRefreshMs?: number;
};

export type DhcpStats = {
  received: number;
  malformed: number;
  ignored: number;
  offers: number;
  acks: number;
  naks: number;
  releases: number;
  declines: number;
  informs: number;
  proxyOffers: number;
  proxyAcks: number;
  errors: number;
  rogue: number;
  /** DISCOVERs of unknown clients refused by the offer cap or the ingress rate (offers.ts). */
  capped: number;
  /** Requests with an all-zero or all-ones chaddr and no client identifier, dropped. */
  badChaddr: number;
  /** Failures of background tasks (interface rescan, reclaim, RA sync), caught and logged. */
  backgroundErrors: number;
  /** Requests for a subnet whose `owners` do not list this daemon, dropped (owners.ts). */
  notOwner: number;
  /** Requests a standby owner left to an earlier owner that is alive, dropped (owners.ts). */
  standbySilent: number;
};

export type DhcpServer = {
  close(): Promise<void>;
  stats: DhcpStats;
  /** For tests: the lease and inventory views the server uses. */
  leases: LeaseTable;
  inventory: InventoryCache;
};

export const zeroStats = (): DhcpStats => ({
  received: 0,
  malformed: 0,
  ignored: 0,
  offers: 0,
  acks: 0,
  naks: 0,
  releases: 0,
  declines: 0,
  informs: 0,
  proxyOffers: 0,
  proxyAcks: 0,
  errors: 0,
  rogue: 0,
  capped: 0,
  badChaddr: 0,
  backgroundErrors: 0,
  notOwner: 0,
  standbySilent: 0,
});
