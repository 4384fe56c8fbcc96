/**
 * Connection handling of the DHCP server: which sockets it holds (one per served interface through the native
 * helper, or one wildcard socket), following interfaces as they come and go; this host's addresses per
 * interface; which subnet a request belongs to; and how a reply's delivery kind (delivery.ts, RFC 2131 4.1)
 * becomes an address, seeding the ARP entry a unicast to a client without an address needs.
 */
import type os from 'node:os';
import type { Bus } from '../events.js';
import type { InventoryCache, SubnetInfo } from '../inventory/cache.js';
import type { Logger } from '../log.js';
import { type DhcpSocket, type NetAddon, openDhcpSocket, type Source } from './bind.js';
import type { Delivery } from './delivery.js';
import type { BackgroundGuard } from './guard.js';
import { inNet, ipInt } from './ip.js';
import type { DhcpPacket } from './packet.js';
import type { AckSender } from './state-machine.js';

/** One socket: 67 (`dhcp`), 4011 (`proxy`, the PXE boot server) or 68 (`rogue`, other servers' replies). */
export type Listener = {
  ifname?: string;
  socket: DhcpSocket;
  fd?: number;
  kind: 'dhcp' | 'proxy' | 'rogue';
  /** ACKs this listener hands to the store (durable-ack.ts), made by the server on first use. */
  acks?: AckSender;
};

type NetIfs = () => ReturnType<typeof os.networkInterfaces>;
export type LocalAddresses = { at: number; byIf: Map<string, string[]>; all: Set<string>; allList: string[] };

/**
 * This host's IPv4 addresses per interface, listed at most every `ttlMs` (addresses change at run time). When
 * the listing fails (EMFILE under a descriptor flood: it opens a netlink socket) the previous addresses stay in
 * use and the next call tries again; only the very first listing may throw (start fails).
 */
export function localAddresses(netIfs: NetIfs, guard: BackgroundGuard, ttlMs: number, serverAddress?: string) {
  let cache: LocalAddresses | undefined;
  const get = (): LocalAddresses => {
    const t = Date.now();
    if (cache && t - cache.at <= ttlMs) return cache;
    let ifs: ReturnType<NetIfs>;
    try {
      ifs = netIfs();
      guard.passed('listing interface addresses');
    } catch (err) {
      if (!cache) throw err;
      guard.failed('listing interface addresses', err);
      cache.at = t;
      return cache;
    }
    const byIf = new Map<string, string[]>();
    const all = new Set<string>();
    for (const [name, list] of Object.entries(ifs)) {
      const v4 = (list ?? []).filter((a) => a.family === 'IPv4').map((a) => a.address);
      byIf.set(name, v4);
      for (const a of v4) all.add(a);
    }
    if (serverAddress) all.add(serverAddress);
    cache = { at: t, byIf, all, allList: [...all] };
    return cache;
  };
  return {
    get,
    /** The next `get` lists again (a rescan). */
    expire: () => {
      if (cache) cache.at = 0;
    },
  };
}

/** How often auto mode looks for interfaces that came or went (names only; a full rescan is `intervalMs`). */
const WATCH_MS = 2000;

export type ConnectionOptions = {
  port: number;
  proxyPort: number;
  clientPort: number;
  relayPort: number;
  broadcastAddress: string;
  interfaces?: string[];
  wildcard?: boolean;
  serverAddress?: string;
  addon: NetAddon | undefined;
  netIfs: NetIfs;
  addresses: ReturnType<typeof localAddresses>;
  guard: BackgroundGuard;
  log: Logger;
  /** A datagram; `msg` is valid during the call only (a view of the native path's receive ring). */
  onMessage(listener: Listener, msg: Buffer, src: Source): void;
  /** A datagram longer than the native path's slot (`slot` bytes), truncated there: dropped. */
  onOversized(listener: Listener, src: Source, slot: number): void;
  /** Test hook: sees (and may rewrite) every reply destination. */
  replyTo?: (dest: Destination, kind: 'dhcp' | 'proxy') => Destination;
};

export type Destination = { address: string; port: number };
const noAddrs: readonly string[] = [];

/**
 * The sockets. Explicit `interfaces`: exactly those. None given and the native helper built ("auto"): every
 * interface with an IPv4 address, rescanned every 30 s, on subnet changes and within ~2 s of an interface coming
 * or going, so a multi-homed host answers
 * each segment from its own socket without configuration. No helper: one wildcard socket (single-homed only).
 */
export class Connections {
  readonly mode: 'explicit' | 'auto' | 'wildcard';
  readonly listeners: Listener[] = [];
  private syncing: Promise<void> | undefined;
  private rescan: NodeJS.Timeout | undefined;
  private watch: NodeJS.Timeout | undefined;
  private offRescan = () => {};

  constructor(private readonly o: ConnectionOptions) {
    this.mode = o.interfaces?.length ? 'explicit' : o.addon && !o.wildcard ? 'auto' : 'wildcard';
  }

  /** Opens every wanted interface's sockets, or none (and throws). */
  async start(): Promise<void> {
    try {
      for (const ifname of this.wanted()) await this.openInterface(ifname);
    } catch (err) {
      await this.closeAll();
      throw err;
    }
  }

  /** Auto mode: rescan every `intervalMs` and whenever a subnet changes. */
  follow(bus: Bus, intervalMs: number): void {
    if (this.mode !== 'auto') return;
    const again = () => {
      this.o.addresses.expire();
      this.syncing ??= this.sync()
        .catch((err) => this.o.guard.failed('interface rescan', err))
        .finally(() => {
          this.syncing = undefined;
        });
    };
    this.rescan = setInterval(again, intervalMs);
    this.rescan.unref();
    // A NIC that comes up after the start (a lab's veth, a hot-plugged port) is served within ~2 s, not at the
    // next full rescan: a PXE ROM that gets no answer in its few seconds of DHCP gives up ("Nothing to boot").
    // Listing interfaces is one netlink dump; the sockets are only touched when the set of names changed.
    this.watch = setInterval(() => {
      let now: string[];
      try {
        now = this.autoInterfaces();
      } catch {
        return; // the full rescan reports it
      }
      const served = new Set(this.listeners.filter((l) => l.kind === 'dhcp').map((l) => l.ifname));
      if (now.length !== served.size || now.some((n) => !served.has(n))) again();
    }, WATCH_MS);
    this.watch.unref();
    this.offRescan = bus.on((e) => {
      if (e.type.startsWith('subnets.')) again();
    });
  }

  autoInterfaces(): string[] {
    return Object.entries(this.o.netIfs())
      .filter(([, list]) => (list ?? []).some((a) => a.family === 'IPv4'))
      .map(([name]) => name);
  }

  private wanted(): (string | undefined)[] {
    if (this.mode === 'explicit') return this.o.interfaces!;
    return this.mode === 'auto' ? this.autoInterfaces() : [undefined];
  }

  private async open(kind: Listener['kind'], port: number, ifname?: string): Promise<void> {
    // Datagrams before the listener exists (none in practice: it is made in the turn the socket opens) are dropped.
    let listener: Listener | undefined;
    const socket = await openDhcpSocket(
      {
        port,
        ifname,
        // The rogue watch shares port 68 with a DHCP client the host itself may run (dhclient binds it too).
        reuse: kind === 'rogue',
        what: kind === 'proxy' ? 'proxyDHCP' : kind === 'rogue' ? 'DHCP client (rogue watch)' : 'DHCP',
      },
      {
        message: (msg, src) => listener && this.o.onMessage(listener, msg, src),
        oversized: (src, slot) => listener && this.o.onOversized(listener, src, slot),
        error: (err) => this.o.log.error({ err, ifname, kind }, 'dhcp: socket error'),
      },
    );
    listener = { ifname, socket, fd: socket.fd, kind };
    this.listeners.push(listener);
  }

  private async openInterface(ifname: string | undefined): Promise<void> {
    const before = this.listeners.length;
    try {
      await this.open('dhcp', this.o.port, ifname);
      // 4011 is for PXE boot-server discovery (proxy mode) only.
      await this.open('proxy', this.o.proxyPort, ifname);
    } catch (err) {
      // All or nothing: with port 67 open and 4011 not (EMFILE, a port in use), a rescan would find the
      // interface served and never open 4011.
      for (const l of this.listeners.splice(before)) await closeListener(l);
      throw err;
    }
    // Other servers' OFFERs are broadcast to the client port: watch it per interface (a local DHCP client
    // holding port 68 just means no watch there).
    if (ifname && this.o.addon) await this.open('rogue', this.o.clientPort, ifname).catch(() => undefined);
  }

  private async sync(): Promise<void> {
    const { guard, log } = this.o;
    let list: (string | undefined)[];
    try {
      list = this.wanted();
      guard.passed('interface rescan');
    } catch (err) {
      // Keep serving the interfaces we have; the next rescan tries again.
      guard.failed('interface rescan', err);
      return;
    }
    const want = new Set(list);
    const have = new Set(this.listeners.map((l) => l.ifname));
    for (const ifname of want) {
      if (have.has(ifname)) continue;
      try {
        await this.openInterface(ifname);
        if (this.mode === 'auto') log.info({ interface: ifname }, 'dhcp: serving interface');
        guard.passed(`opening sockets on ${ifname}`);
      } catch (err) {
        // EMFILE here too: the interface is tried again at the next rescan.
        guard.failed(`opening sockets on ${ifname}`, err);
      }
    }
    for (const l of [...this.listeners]) {
      if (want.has(l.ifname)) continue;
      this.listeners.splice(this.listeners.indexOf(l), 1);
      await closeListener(l);
    }
  }

  /**
   * The subnet a request belongs to, and this server's address on it. `linkSelection`: a relayed request's
   * RFC 3527 link selection sub-option (option 82.5), which names the client's link when giaddr is not on it.
   */
  locate(
    l: Listener,
    pkt: DhcpPacket,
    served: InventoryCache,
    warnOnce: (key: string, obj: object, msg: string) => void,
    linkSelection?: string,
  ): { subnet: SubnetInfo; server: string } | undefined {
    const addrs = this.o.addresses.get();
    const mine = l.ifname ? (addrs.byIf.get(l.ifname) ?? noAddrs) : addrs.allList;
    if (pkt.giaddr !== '0.0.0.0') {
      // RFC 2131 4.3.1: a relayed request belongs to the subnet of giaddr; RFC 3527 4: of the link selection
      // sub-option when the relay sent one (giaddr then only says where the reply goes).
      const subnet = served.subnetFor(linkSelection ?? pkt.giaddr);
      return subnet ? { subnet, server: this.serverIn(l, mine, subnet) ?? this.anyServer(mine) } : undefined;
    }
    // Directly attached clients: the subnets of this interface's addresses (or serverAddress).
    const candidates: SubnetInfo[] = [];
    for (const s of served.subnets()) if (this.serverIn(l, mine, s) !== undefined) candidates.push(s);
    if (candidates.length === 0) return undefined;
    let subnet = candidates[0]!;
    if (pkt.ciaddr !== '0.0.0.0') {
      const ci = ipInt(pkt.ciaddr);
      subnet = candidates.find((s) => inNet(s.net, ci)) ?? subnet;
    } else if (candidates.length > 1 && !l.ifname) {
      warnOnce(
        'ambiguous',
        { subnets: candidates.map((s) => s.name) },
        'dhcp: a broadcast request could belong to several subnets; answering from the first: set --dhcp-interfaces',
      );
    }
    return { subnet, server: this.serverIn(l, mine, subnet)! };
  }

  // A socket bound to an interface serves only the subnets of that interface's own addresses: serverAddress
  // must never make a broadcast on some other segment look like ours.
  private serverIn(l: Listener, mine: readonly string[], s: SubnetInfo): string | undefined {
    for (const a of mine) if (inNet(s.net, ipInt(a))) return a;
    const sa = this.o.serverAddress;
    return !l.ifname && sa && inNet(s.net, ipInt(sa)) ? sa : undefined;
  }

  private anyServer(mine: readonly string[]): string {
    if (this.o.serverAddress) return this.o.serverAddress;
    for (const a of mine) if (!a.startsWith('127.')) return a;
    return mine[0] ?? '0.0.0.0';
  }

  /** RFC 2131 4.1: the address and port of a delivery kind. */
  destination(d: Delivery, l: Listener, req: DhcpPacket, reply: DhcpPacket, src: Source): Destination {
    const { clientPort, broadcastAddress: bcast, addon } = this.o;
    switch (d) {
      case 'relay':
        return { address: req.giaddr, port: this.o.relayPort };
      case 'unicast-ciaddr':
        return { address: req.ciaddr, port: clientPort };
      case 'unicast-source':
        return { address: src.address, port: clientPort };
      case 'back-to-sender':
        return { address: src.address, port: src.port };
      case 'unicast-chaddr-arp':
        // Unicast to a client that has no address yet: only possible with an ARP entry for it (what dnsmasq does).
        if (addon && l.ifname && l.fd !== undefined && req.htype === 1 && req.hlen === 6) {
          try {
            addon.setArp(l.fd, l.ifname, reply.yiaddr, req.chaddr.subarray(0, 6));
            return { address: reply.yiaddr, port: clientPort };
          } catch {
            // No CAP_NET_ADMIN: broadcast instead, which every client accepts.
          }
        }
        return { address: bcast, port: clientPort };
      case 'broadcast':
        return { address: bcast, port: clientPort };
    }
  }

  /** Sends a reply; `done` gets the outcome (null when sent): one function for every send, not one per packet. */
  send(l: Listener, buf: Buffer, dest: Destination, done: (err: Error | null) => void): void {
    const to = this.rewritten(dest, l);
    l.socket.send(buf, to.port, to.address, done);
  }

  /** A destination through the test hook (`replyTo`), if one is set. */
  private rewritten(dest: Destination, l: Listener): Destination {
    return this.o.replyTo ? this.o.replyTo(dest, l.kind === 'proxy' ? 'proxy' : 'dhcp') : dest;
  }

  /** Where send() would send a reply of delivery `d` (destination, then the test hook): for a send made elsewhere. */
  finalDestination(d: Delivery, l: Listener, req: DhcpPacket, reply: DhcpPacket, src: Source): Destination {
    return this.rewritten(this.destination(d, l, req, reply, src), l);
  }

  private async closeAll(): Promise<void> {
    await Promise.all(this.listeners.map(closeListener));
  }

  async close(): Promise<void> {
    if (this.rescan) clearInterval(this.rescan);
    if (this.watch) clearInterval(this.watch);
    this.offRescan();
    await this.syncing;
    await this.closeAll();
  }
}

const closeListener = (l: Listener) => l.socket.close();
