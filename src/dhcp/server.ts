/**
 * The DHCPv4 server loop: sockets (one per served interface when the native helper is built), request
 * handling per RFC 2131 (DISCOVER/OFFER, REQUEST in its four states, DECLINE, RELEASE, INFORM), relays,
 * proxyDHCP on 67 and 4011, rogue server detection. Policy (what to boot) comes from src/boot/decide.ts,
 * addresses from leases.ts; this file only wires them to packets.
 */
import type dgram from 'node:dgram';
import os from 'node:os';
import { type BootDecision, decideBoot } from '../boot/decide.js';
import type { Quirk } from '../boot/quirks.js';
import type { Bus } from '../events.js';
import type { Logger } from '../log.js';
import { cidrContains, intToIp } from '../model/common.js';
import type { Reservation } from '../model/subnet.js';
import type { Store } from '../store/store.js';
import { ADDON_HINT, fdOf, loadNetAddon, openUdpSocket } from './bind.js';
import { backgroundGuard, lineBudget, rogueWatch } from './guard.js';
import { type Inventory, loadInventory, type SubnetInfo } from './inventory.js';
import { inNet, ipInt } from './ip.js';
import { belongsTo, type Client, loadLeaseTable } from './leases.js';
import { offerGate } from './offers.js';
import {
  decodeUserClass,
  encodeOptionValue,
  ipBytes,
  MessageType,
  messageTypeName,
  Opt,
  renderTemplate,
} from './options.js';
import { type DhcpPacket, decode, emptyPacket, encodeWithReport, isBroadcast, macOf } from './packet.js';
import { proxyAck, proxyOffer } from './proxy.js';
import { startRaResponder } from './ra.js';

export type DhcpServerOptions = {
  store: Store;
  bus: Bus;
  log: Logger;
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
  quirks?: readonly Quirk[];
  hasLoader?: (name: string) => boolean;
  offerSeconds?: number;
  declineSeconds?: number;
  reclaimIntervalMs?: number;
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
};

export type DhcpServer = {
  close(): Promise<void>;
  stats: DhcpStats;
  /** For tests: the lease and inventory views the server uses. */
  leases: Awaited<ReturnType<typeof loadLeaseTable>>;
  inventory: Inventory;
};

type Ctx = { ifname?: string; socket: dgram.Socket; fd?: number; kind: 'dhcp' | 'proxy' | 'rogue' };
type Machine = { uuid: string; name: string; bootEnv?: string; params?: Record<string, unknown> };

export async function startDhcpServer(opts: DhcpServerOptions): Promise<DhcpServer> {
  const { store, bus, log } = opts;
  const port = opts.port ?? 67;
  const proxyPort = opts.proxyPort ?? 4011;
  const clientPort = opts.clientPort ?? 68;
  const relayPort = opts.relayPort ?? port;
  const bcast = opts.broadcastAddress ?? '255.255.255.255';
  const now = opts.now ?? Date.now;
  const offerSeconds = opts.offerSeconds ?? 60;
  const declineSeconds = opts.declineSeconds ?? 600;
  const stats: DhcpStats = {
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
  };
  const guard = backgroundGuard(log, { intervalMs: opts.errorLogIntervalMs });
  Object.defineProperty(stats, 'backgroundErrors', { get: () => guard.failures(), enumerable: true });
  const netIfs = opts.networkInterfaces ?? os.networkInterfaces;

  // Local IPv4 addresses per interface, refreshed at most every few seconds (addresses can change at run time).
  let addrCache: { at: number; byIf: Map<string, string[]>; all: Set<string>; allList: string[] } | undefined;
  const addrTtl = Math.min(5000, opts.rescanIntervalMs ?? 30_000);
  // When the listing fails (EMFILE under a descriptor flood: it opens a netlink socket), the previous addresses
  // stay in use and the next call tries again; only the very first listing may throw (start fails).
  const localAddrs = () => {
    const t = Date.now();
    if (!addrCache || t - addrCache.at > addrTtl) {
      let ifs: ReturnType<typeof os.networkInterfaces>;
      try {
        ifs = netIfs();
        guard.passed('listing interface addresses');
      } catch (err) {
        if (!addrCache) throw err;
        guard.failed('listing interface addresses', err);
        addrCache.at = t;
        return addrCache;
      }
      const byIf = new Map<string, string[]>();
      const all = new Set<string>();
      for (const [name, list] of Object.entries(ifs)) {
        const v4 = (list ?? []).filter((a) => a.family === 'IPv4').map((a) => a.address);
        byIf.set(name, v4);
        for (const a of v4) all.add(a);
      }
      if (opts.serverAddress) all.add(opts.serverAddress);
      addrCache = { at: t, byIf, all, allList: [...all] };
    }
    return addrCache;
  };

  const inventory = await loadInventory(store, bus, log);
  const leases = await loadLeaseTable({
    store,
    bus,
    log,
    now,
    excluded: () => localAddrs().all,
    guard,
    reservedMacAt: (a) => inventory.reservationAt(a)?.mac,
  });
  // ---- offers to unknown clients: capped per pool (offers.ts) ----
  const offers = offerGate({
    offerSeconds,
    share: opts.unknownOfferShare,
    pressureSeconds: opts.pressureOfferSeconds,
    ingressRate: opts.unknownOfferRate,
    now,
    held: (pool) => leases.held(pool as SubnetInfo),
    log,
    logIntervalMs: opts.errorLogIntervalMs,
  });
  Object.defineProperty(stats, 'capped', { get: () => offers.refusals(), enumerable: true });

  // MAC -> machine, cached (two store reads per packet otherwise); any machine change clears it.
  const machines = new Map<string, Machine | null>();
  const offBus = bus.on((e) => {
    if (e.type === 'leases.deleted' && e.key) {
      leases.drop(e.key);
      offers.recount();
    }
    if (e.type.startsWith('machines.')) {
      machines.clear();
      loadKnownMacs();
    }
  });
  // Every MAC that belongs to a machine, in memory: a request from an unknown MAC (most of a boot storm) costs
  // no query. Rebuilt after any machine change; while it is being rebuilt, lookups go to the store.
  let knownMacs: Set<string> | undefined;
  let macsGen = 0;
  function loadKnownMacs() {
    knownMacs = undefined;
    const gen = ++macsGen;
    store.list('machines').then(
      (r) => {
        if (gen !== macsGen) return;
        const set = new Set<string>();
        for (const it of r.items) {
          const macs = (it.doc as { macs?: unknown }).macs;
          if (Array.isArray(macs)) for (const m of macs) if (typeof m === 'string') set.add(m);
        }
        knownMacs = set;
      },
      (err) => log.warn({ err }, 'dhcp: cannot list machines; looking MACs up one by one'),
    );
  }
  loadKnownMacs();
  /** The machine of a MAC if known without a query: a machine, null (none), undefined (ask machineOf). */
  const cachedMachine = (mac: string): Machine | null | undefined => {
    const hit = machines.get(mac);
    if (hit !== undefined) return hit;
    return knownMacs && !knownMacs.has(mac) ? null : undefined;
  };

  // ---- sockets ----
  // explicit `interfaces`: exactly those. None given and the native helper built ("auto"): every interface
  // with an IPv4 address, rescanned every 30 s and on subnet changes, so a multi-homed host answers each
  // segment from its own socket without configuration. No helper: one wildcard socket (single-homed only).
  const addon = loadNetAddon();
  const socketMode: 'explicit' | 'auto' | 'wildcard' = opts.interfaces?.length
    ? 'explicit'
    : addon && !opts.wildcard
      ? 'auto'
      : 'wildcard';
  const ctxs: Ctx[] = [];
  const open = async (kind: Ctx['kind'], p: number, ifname?: string) => {
    const socket = await openUdpSocket({
      port: p,
      ifname,
      // The rogue watch shares port 68 with a DHCP client the host itself may run (dhclient binds it too).
      reuse: kind === 'rogue',
      what: kind === 'proxy' ? 'proxyDHCP' : kind === 'rogue' ? 'DHCP client (rogue watch)' : 'DHCP',
    });
    const ctx: Ctx = { ifname, socket, fd: fdOf(socket), kind };
    socket.on('message', (msg, rinfo) => onMessage(ctx, msg, rinfo));
    socket.on('error', (err) => log.error({ err, ifname, kind }, 'dhcp: socket error'));
    ctxs.push(ctx);
  };
  const openInterface = async (ifname: string | undefined) => {
    const before = ctxs.length;
    try {
      await open('dhcp', port, ifname);
      // 4011 is for PXE boot-server discovery (proxy mode) only.
      await open('proxy', proxyPort, ifname);
    } catch (err) {
      // All or nothing: with port 67 open and 4011 not (EMFILE, a port in use), a rescan would find the
      // interface served and never open 4011.
      for (const c of ctxs.splice(before)) await closeCtx(c);
      throw err;
    }
    // Other servers' OFFERs are broadcast to the client port: watch it per interface (a local DHCP client
    // holding port 68 just means no watch there).
    if (ifname && addon) await open('rogue', clientPort, ifname).catch(() => undefined);
  };
  const autoInterfaces = () =>
    Object.entries(netIfs())
      .filter(([, list]) => (list ?? []).some((a) => a.family === 'IPv4'))
      .map(([name]) => name);
  const wanted = () =>
    socketMode === 'explicit' ? opts.interfaces! : socketMode === 'auto' ? autoInterfaces() : [undefined];
  const closeCtx = (c: Ctx) => new Promise<void>((resolve) => c.socket.close(() => resolve()));
  let syncing: Promise<void> | undefined;
  const syncInterfaces = async () => {
    let list: (string | undefined)[];
    try {
      list = wanted();
      guard.passed('interface rescan');
    } catch (err) {
      // Keep serving the interfaces we have; the next rescan tries again.
      guard.failed('interface rescan', err);
      return;
    }
    const want = new Set(list);
    const have = new Set(ctxs.map((c) => c.ifname));
    for (const ifname of want) {
      if (have.has(ifname)) continue;
      try {
        await openInterface(ifname);
        if (socketMode === 'auto') log.info({ interface: ifname }, 'dhcp: serving interface');
        guard.passed(`opening sockets on ${ifname}`);
      } catch (err) {
        // EMFILE here too: the interface is tried again at the next rescan.
        guard.failed(`opening sockets on ${ifname}`, err);
      }
    }
    for (const c of [...ctxs]) {
      if (want.has(c.ifname)) continue;
      ctxs.splice(ctxs.indexOf(c), 1);
      await closeCtx(c);
    }
  };
  try {
    for (const ifname of wanted()) await openInterface(ifname);
  } catch (err) {
    await Promise.all(ctxs.map(closeCtx));
    inventory.close();
    offBus();
    throw err;
  }
  let rescan: NodeJS.Timeout | undefined;
  let offRescan = () => {};
  if (socketMode === 'auto') {
    const again = () => {
      if (addrCache) addrCache.at = 0;
      syncing ??= syncInterfaces()
        .catch((err) => {
          guard.failed('interface rescan', err);
        })
        .finally(() => {
          syncing = undefined;
        });
    };
    rescan = setInterval(again, opts.rescanIntervalMs ?? 30_000);
    rescan.unref();
    offRescan = bus.on((e) => {
      if (e.type.startsWith('subnets.')) again();
    });
  }
  if (socketMode === 'wildcard') {
    const served = inventory.subnets().filter((s) => [...localAddrs().all].some((a) => cidrContains(s.subnet, a)));
    if (served.length > 1) {
      log.warn(
        { subnets: served.map((s) => s.name) },
        `dhcp: several served subnets are attached to this host but the socket helper is not built, so requests cannot be told apart by interface: ${ADDON_HINT}`,
      );
    }
  }

  // Router advertisements: on the given interfaces, or in auto socketMode on those holding a served subnet.
  const raInterfaces = () =>
    socketMode === 'explicit'
      ? opts.interfaces!
      : autoInterfaces().filter((i) =>
          (localAddrs().byIf.get(i) ?? []).some((a) => !a.startsWith('127.') && inventory.subnetFor(a) !== undefined),
        );
  const ra =
    addon && socketMode !== 'wildcard'
      ? startRaResponder({ interfaces: raInterfaces, inventory, log, addon, guard })
      : undefined;

  const reclaimTimer = setInterval(() => {
    try {
      leases.reclaim();
      guard.passed('reclaiming expired leases');
    } catch (err) {
      guard.failed('reclaiming expired leases', err);
    }
  }, opts.reclaimIntervalMs ?? 10_000);
  reclaimTimer.unref();

  // ---- malformed packets: counted always, logged once per source per interval ----
  // Sources are spoofable: beyond 20 lines an interval, in total, the rest are only counted.
  const malformedSeen = new Map<string, number>();
  const malformedLines = lineBudget(20, opts.malformedLogIntervalMs ?? 60_000);
  const noteMalformed = (src: string, code: string, message: string) => {
    stats.malformed++;
    const t = Date.now();
    const last = malformedSeen.get(src);
    const interval = opts.malformedLogIntervalMs ?? 60_000;
    if (last !== undefined && t - last < interval) return;
    if (malformedSeen.size > 10_000) malformedSeen.clear();
    malformedSeen.set(src, t);
    const b = malformedLines.take();
    if (!b.ok) return;
    log.warn(
      { src, code, total: stats.malformed, notLogged: b.suppressed },
      `dhcp: malformed packet dropped: ${message}`,
    );
  };
  // Some keys hold a MAC (any value a flood likes): the set is bounded, and so are its lines.
  const onceKeys = new Set<string>();
  const onceLines = lineBudget(20);
  const warnOnce = (key: string, obj: object, msg: string) => {
    if (onceKeys.has(key)) return;
    if (onceKeys.size >= 10_000) onceKeys.clear();
    onceKeys.add(key);
    const b = onceLines.take();
    if (b.ok) log.warn(b.suppressed ? { ...obj, notLogged: b.suppressed } : obj, msg);
  };

  // Bounded: spoofed replies can carry a new server id each (guard.ts).
  const rogue = rogueWatch(log);
  function onRogue(ctx: Ctx, pkt: DhcpPacket, src: string) {
    const sid = pkt.options.get(Opt.ServerId);
    const server = sid?.length === 4 ? intToIp(sid.readUInt32BE(0)) : src;
    if (localAddrs().all.has(server) || localAddrs().all.has(src)) return;
    stats.rogue++;
    if (!inventory.prefs().rogueDhcpWarnings || !rogue.seen(server)) return;
    bus.emit({
      type: 'dhcp.rogue',
      key: server,
      data: { address: server, source: src, interface: ctx.ifname, mac: macOf(pkt) },
    });
    log.warn(
      { server, source: src, interface: ctx.ifname },
      `dhcp: another DHCP server (${server}) answers on this segment`,
    );
  }

  function onMessage(ctx: Ctx, msg: Buffer, rinfo: dgram.RemoteInfo) {
    stats.received++;
    const res = decode(msg);
    if (!res.ok) {
      if (ctx.kind !== 'rogue') noteMalformed(rinfo.address, res.code, res.message);
      return;
    }
    const pkt = res.packet;
    if (ctx.kind === 'rogue') {
      if (pkt.op === 2) onRogue(ctx, pkt, rinfo.address);
      return;
    }
    if (pkt.op !== 1 || pkt.hlen === 0) {
      stats.ignored++;
      return;
    }
    if (placeholderChaddr(pkt, ctx.kind === 'proxy')) {
      // All-zero or broadcast chaddr names no machine: every such client would share one MAC's lease, boot
      // decision and trust. A client identifier (61) still identifies the client (RFC 2131 4.2), except on 4011.
      stats.badChaddr++;
      log.debug({ src: rinfo.address, chaddr: macOf(pkt) }, 'dhcp: request with a zero/broadcast chaddr dropped');
      return;
    }
    handle(ctx, pkt, rinfo).then(
      () => guard.passed('answering requests'),
      (err) => {
        // One line a minute while requests keep failing (a full disk, a broken store: every packet would log).
        stats.errors++;
        guard.failed('answering requests', err, { mac: macOf(pkt) });
      },
    );
  }

  // A socket bound to an interface serves only the subnets of that interface's own addresses: serverAddress
  // must never make a broadcast on some other segment look like ours. (Plain functions, not closures per
  // packet: this runs for every request.)
  function serverIn(ctx: Ctx, mine: readonly string[], s: SubnetInfo): string | undefined {
    for (const a of mine) if (inNet(s.net, ipInt(a))) return a;
    return !ctx.ifname && opts.serverAddress && inNet(s.net, ipInt(opts.serverAddress))
      ? opts.serverAddress
      : undefined;
  }
  function anyServer(mine: readonly string[]): string {
    if (opts.serverAddress) return opts.serverAddress;
    for (const a of mine) if (!a.startsWith('127.')) return a;
    return mine[0] ?? '0.0.0.0';
  }
  const noAddrs: readonly string[] = [];

  /** The subnet a request belongs to, and this server's address on it. */
  function locate(ctx: Ctx, pkt: DhcpPacket): { subnet: SubnetInfo; server: string } | undefined {
    const addrs = localAddrs();
    const mine = ctx.ifname ? (addrs.byIf.get(ctx.ifname) ?? noAddrs) : addrs.allList;
    if (pkt.giaddr !== '0.0.0.0') {
      // RFC 2131 4.3.1: a relayed request belongs to the subnet of giaddr.
      const subnet = inventory.subnetFor(pkt.giaddr);
      return subnet ? { subnet, server: serverIn(ctx, mine, subnet) ?? anyServer(mine) } : undefined;
    }
    // Directly attached clients: the subnets of this interface's addresses (or serverAddress).
    const candidates: SubnetInfo[] = [];
    for (const s of inventory.subnets()) if (serverIn(ctx, mine, s) !== undefined) candidates.push(s);
    if (candidates.length === 0) return undefined;
    let subnet = candidates[0]!;
    if (pkt.ciaddr !== '0.0.0.0') {
      const ci = ipInt(pkt.ciaddr);
      subnet = candidates.find((s) => inNet(s.net, ci)) ?? subnet;
    } else if (candidates.length > 1 && !ctx.ifname) {
      warnOnce(
        'ambiguous',
        { subnets: candidates.map((s) => s.name) },
        'dhcp: a broadcast request could belong to several subnets; answering from the first: set --dhcp-interfaces',
      );
    }
    return { subnet, server: serverIn(ctx, mine, subnet)! };
  }

  function sendNak(
    ctx: Ctx,
    pkt: DhcpPacket,
    server: string,
    subnet: SubnetInfo,
    mac: string,
    why: string,
    at?: string,
  ) {
    const n = baseReply(pkt, MessageType.NAK, server);
    n.options.set(Opt.Message, Buffer.from(why));
    stats.naks++;
    bus.emit({ type: 'lease.nak', key: at, data: { mac, subnet: subnet.name, reason: why } });
    log.info({ mac, address: at, subnet: subnet.name, reason: why }, 'dhcp: NAK');
    send(ctx, n, pkt, destination(ctx, pkt, n, true));
  }

  /** Whether an option 54 names this server. */
  function isOurs(serverId: string, server: string): boolean {
    return serverId === server || localAddrs().all.has(serverId);
  }

  async function machineOf(mac: string): Promise<Machine | undefined> {
    const hit = cachedMachine(mac);
    if (hit !== undefined) return hit ?? undefined;
    const uuid = await store.keyOf('machines', 'macs', mac);
    const m = uuid ? await store.get('machines', uuid) : undefined;
    const found = m ? ({ uuid, ...(m.doc as object) } as Machine) : undefined;
    if (machines.size > 100_000) machines.clear();
    machines.set(mac, found ?? null);
    return found;
  }

  function decide(
    pkt: DhcpPacket,
    mac: string,
    machine: Machine | undefined,
    server: string,
    mode: 'full' | 'proxy' | 'unmanaged',
  ): BootDecision {
    const arch = pkt.options.get(Opt.ClientArch);
    const vc = pkt.options.get(Opt.VendorClass);
    const uc = pkt.options.get(Opt.UserClass);
    const d = decideBoot({
      mac,
      arch: arch && arch.length >= 2 ? arch.readUInt16BE(0) : undefined,
      vendorClass: vc?.toString('latin1'),
      userClass: uc ? decodeUserClass(uc) : undefined,
      machine,
      prefs: inventory.prefs(),
      server: { address: server, httpPort: opts.httpPort },
      mode,
      hasLoader: opts.hasLoader,
      quirks: opts.quirks,
    });
    if (d.boot) {
      bus.emit({
        type: 'dhcp.boot',
        key: mac,
        machine: machine?.uuid,
        data: {
          mac,
          filename: d.filename,
          nextServer: d.nextServer,
          bootEnv: d.bootEnv,
          reason: d.reason,
          mode,
          arch: arch && arch.length >= 2 ? arch.readUInt16BE(0) : undefined,
          vendorClass: vc?.toString('latin1'),
          ...(d.blksize ? { blksize: d.blksize } : {}),
        },
      });
      log.info({ mac, machine: machine?.name, filename: d.filename }, `dhcp: boot: ${d.reason}`);
    }
    return d;
  }

  function renderCtx(pkt: DhcpPacket, mac: string, address: string, subnet: SubnetInfo, machine: Machine | undefined) {
    const hn = pkt.options.get(Opt.Hostname);
    return {
      mac,
      address,
      ip: address,
      subnet: { name: subnet.name, cidr: subnet.subnet },
      machine: machine ?? {},
      hostname: hn?.toString('latin1') ?? '',
    };
  }

  function baseReply(pkt: DhcpPacket, type: number, server: string): DhcpPacket {
    const r = emptyPacket(2);
    r.htype = pkt.htype;
    r.hlen = pkt.hlen;
    r.xid = pkt.xid;
    r.flags = pkt.flags;
    r.giaddr = pkt.giaddr;
    r.chaddr = pkt.chaddr;
    r.options.set(Opt.MessageType, Buffer.from([type]));
    r.options.set(Opt.ServerId, serverIdBytes(server));
    return r;
  }
  const sidCache = new Map<string, Buffer>();
  function serverIdBytes(server: string): Buffer {
    let b = sidCache.get(server);
    if (!b) {
      b = ipBytes(server);
      if (sidCache.size > 1000) sidCache.clear();
      sidCache.set(server, b);
    }
    return b;
  }

  /** Options for an OFFER/ACK/INFORM reply: subnet defaults, operator options (templates), reservation, boot. */
  function fillOptions(
    r: DhcpPacket,
    pkt: DhcpPacket,
    mac: string,
    subnet: SubnetInfo,
    reservation: Reservation | undefined,
    machine: Machine | undefined,
    address: string,
    leaseSeconds: number | undefined,
    server: string,
  ) {
    const o = r.options;
    if (leaseSeconds !== undefined) {
      o.set(Opt.LeaseTime, u32(leaseSeconds));
      o.set(Opt.RenewalTime, u32(Math.floor(leaseSeconds / 2)));
      o.set(Opt.RebindingTime, u32(Math.floor((leaseSeconds * 7) / 8)));
    }
    o.set(Opt.SubnetMask, u32(subnet.net.mask));
    o.set(Opt.BroadcastAddress, u32(subnet.net.broadcast));
    let ctx: ReturnType<typeof renderCtx> | undefined;
    const operator = reservation?.options.length ? [...subnet.options, ...reservation.options] : subnet.options;
    for (const opt of operator) {
      try {
        let v = opt.value;
        if (typeof v === 'string' && v.includes('{{')) {
          ctx ??= renderCtx(pkt, mac, address, subnet, machine);
          v = renderTemplate(v, ctx);
        }
        if (v === '') {
          o.delete(opt.code);
          continue;
        }
        o.set(opt.code, encodeOptionValue(opt.code, v));
      } catch (err) {
        warnOnce(
          `opt-${subnet.name}-${opt.code}`,
          { subnet: subnet.name, code: opt.code },
          `dhcp: option not sent: ${(err as Error).message}`,
        );
      }
    }
    if (!o.has(Opt.Hostname) && machine?.name) o.set(Opt.Hostname, Buffer.from(machine.name));
    // RFC 2131 table 3: siaddr is the next server to use; a configured one is sent to every client, PXE or not.
    const next = reservation?.nextServer ?? subnet.nextServer;
    if (next) r.siaddr = next;
    if (subnet.unmanaged) return;
    const d = decide(pkt, mac, machine, reservation?.nextServer ?? subnet.nextServer ?? server, 'full');
    if (!d.boot) return;
    r.siaddr = d.nextServer;
    r.file = d.filename.length <= 127 ? d.filename : '';
    o.set(Opt.BootfileName, Buffer.from(d.filename));
    for (const bo of d.options) o.set(bo.code, bo.value);
  }

  function send(ctx: Ctx, r: DhcpPacket, pkt: DhcpPacket, dest: { address: string; port: number }): void {
    // RFC 3046 2.2: relay agent information is echoed in replies to the relay.
    const o82 = pkt.options.get(Opt.RelayAgentInfo);
    if (o82 && pkt.giaddr !== '0.0.0.0') r.options.set(Opt.RelayAgentInfo, o82);
    // RFC 6842: the client identifier is echoed in OFFER, ACK and NAK (clients match replies by it).
    const cid = pkt.options.get(Opt.ClientId);
    if (cid && ctx.kind === 'dhcp') r.options.set(Opt.ClientId, cid);
    const prl = pkt.options.get(Opt.ParamRequestList);
    if (prl?.length) r.options = inRequestedOrder(r.options, prl);
    const mms = pkt.options.get(Opt.MaxMessageSize);
    const { buf, dropped } = encodeWithReport(r, mms?.length === 2 ? mms.readUInt16BE(0) : 576);
    if (dropped.length)
      warnOnce(
        `drop-${macOf(pkt)}`,
        { mac: macOf(pkt), dropped },
        'dhcp: reply too large for the client: options dropped',
      );
    const to = opts.replyTo ? opts.replyTo(dest, ctx.kind === 'proxy' ? 'proxy' : 'dhcp') : dest;
    ctx.socket.send(buf, to.port, to.address, (err) => {
      if (err) {
        stats.errors++;
        guard.failed('sending replies', err, { dest });
      } else guard.passed('sending replies');
    });
  }

  /** RFC 2131 4.1: where a server reply goes. */
  function destination(ctx: Ctx, pkt: DhcpPacket, r: DhcpPacket, nak: boolean): { address: string; port: number } {
    if (pkt.giaddr !== '0.0.0.0') {
      if (nak) r.flags |= 0x8000;
      return { address: pkt.giaddr, port: relayPort };
    }
    if (nak) return { address: bcast, port: clientPort };
    if (pkt.ciaddr !== '0.0.0.0') return { address: pkt.ciaddr, port: clientPort };
    if (isBroadcast(pkt) || r.yiaddr === '0.0.0.0') return { address: bcast, port: clientPort };
    // Unicast to a client that has no address yet: only possible with an ARP entry for it (what dnsmasq does).
    if (addon && ctx.ifname && ctx.fd !== undefined && pkt.htype === 1 && pkt.hlen === 6) {
      try {
        addon.setArp(ctx.fd, ctx.ifname, r.yiaddr, pkt.chaddr.subarray(0, 6));
        return { address: r.yiaddr, port: clientPort };
      } catch {
        // No CAP_NET_ADMIN: broadcast instead, which every client accepts.
      }
    }
    return { address: bcast, port: clientPort };
  }

  async function handle(ctx: Ctx, pkt: DhcpPacket, rinfo: dgram.RemoteInfo) {
    const type = pkt.options.get(Opt.MessageType)![0]!;
    const mac = macOf(pkt);
    const loc = locate(ctx, pkt);
    if (!loc) {
      stats.ignored++;
      return;
    }
    const { subnet, server } = loc;
    if (ctx.kind === 'proxy') return handleProxyPort(ctx, pkt, rinfo, subnet, server, mac, type);
    if (subnet.proxy) return handleProxy(ctx, pkt, subnet, server, mac, type);

    const reservation = inventory.reservationFor(subnet.name, mac);
    if (subnet.onlyReservations && !reservation) {
      // DRP issue 176: an onlyReservations subnet must stay silent for unknown MACs, not NAK them.
      stats.ignored++;
      return;
    }
    const leaseSeconds = leaseTimeFor(pkt, reservation ? subnet.reservedLeaseTime : subnet.leaseTime);
    const reqIp = pkt.options.get(Opt.RequestedIp);
    const requested = reqIp?.length === 4 ? intToIp(reqIp.readUInt32BE(0)) : undefined;
    // RFC 2131 4.2: option 61, when present, identifies the client; RFC 2132 9.14: at least 2 bytes (type + id).
    const cidOpt = pkt.options.get(Opt.ClientId);
    const client: Client = cidOpt && cidOpt.length >= 2 ? { mac, id: cidOpt.toString('hex') } : { mac };
    const hostname = pkt.options.get(Opt.Hostname)?.toString('latin1');
    const extra = hostname ? { hostname } : {};
    const sid = pkt.options.get(Opt.ServerId);
    const serverId = sid?.length === 4 ? intToIp(sid.readUInt32BE(0)) : undefined;

    switch (type) {
      case MessageType.DISCOVER: {
        const known = cachedMachine(mac);
        const machine = known !== undefined ? (known ?? undefined) : await machineOf(mac);
        // No await from here to the offer: the address chosen cannot be taken meanwhile.
        let hold = offerSeconds;
        const stranger = !machine && !reservation;
        if (stranger) {
          // An unknown client's offer counts against the pool's unknown share (offers.ts) unless it only
          // renews what it already holds (a repeated DISCOVER, a bound client starting over).
          const own = leases.forMac(subnet.name, client);
          const holds = own !== undefined && (own.state === 'offered' || own.state === 'bound') && own.exp > now();
          // A bound client starting over keeps the full hold: the flood must not take its address in 10 s.
          if (!holds || own.state !== 'bound') {
            const ingress = `${ctx.ifname ?? '*'}/${pkt.giaddr}`;
            const adm = offers.admit(subnet, ingress, holds);
            if (!adm.ok) return;
            hold = adm.seconds;
          }
        }
        const alloc = leases.allocate(subnet, client, requested, reservation);
        if (!alloc.address) {
          warnOnce(`full-${subnet.name}`, { subnet: subnet.name, mac }, `dhcp: no offer: ${alloc.why}`);
          stats.ignored++;
          return;
        }
        leases.offer(subnet, client, alloc.address, hold, extra);
        if (stranger) offers.track(subnet.name, ipInt(alloc.address), hold);
        else offers.settle(ipInt(alloc.address));
        const r = baseReply(pkt, MessageType.OFFER, server);
        r.yiaddr = alloc.address;
        fillOptions(r, pkt, mac, subnet, reservation, machine, alloc.address, leaseSeconds, server);
        stats.offers++;
        log.debug({ mac, address: alloc.address, why: alloc.why }, 'dhcp: offer');
        return send(ctx, r, pkt, destination(ctx, pkt, r, false));
      }
      case MessageType.REQUEST: {
        // RFC 2131 4.3.2: the client's state follows from 54, ciaddr and 50.
        const state = serverId !== undefined ? 'selecting' : pkt.ciaddr !== '0.0.0.0' ? 'renewing' : 'init-reboot';
        if (serverId !== undefined && !isOurs(serverId, server)) {
          // SELECTING for another server's OFFER: it chose that one; ours is free again.
          const offered = leases.forMac(subnet.name, client);
          if (offered?.state === 'offered') offers.settle(offered.ip);
          leases.forgetOffer(subnet.name, client);
          stats.ignored++;
          return;
        }
        const own = leases.forMac(subnet.name, client);
        let address = state === 'renewing' ? pkt.ciaddr : requested;
        // SELECTING without 50 (a MUST that some clients, and Forge's reservation scenarios, leave out): the
        // address this client was offered.
        if (!address && state === 'selecting')
          address = pkt.ciaddr !== '0.0.0.0' ? pkt.ciaddr : (own?.address ?? reservation?.address);
        const nak = (why: string, at?: string) => sendNak(ctx, pkt, server, subnet, mac, why, at);
        if (!address) {
          // Nothing to confirm. Relayed: NAK, as kea answers (Forge v4.request.initreboot-no-requested-address,
          // kea #1608); direct: silence (Forge v4.request.initreboot-no-leases).
          if (pkt.giaddr !== '0.0.0.0') return nak('no requested address');
          stats.ignored++;
          return;
        }
        const known = cachedMachine(mac);
        const machine = known !== undefined ? (known ?? undefined) : await machineOf(mac);
        if (!inNet(subnet.net, ipInt(address))) return nak(`${address} is not on this network`, address);
        if (!leases.usable(subnet, client, address, reservation)) return nak(`${address} is not available`, address);
        const mine = leases.get(address);
        const its = mine !== undefined && belongsTo(mine, client);
        if (state === 'selecting' && mine && !its) return nak(`${address} is not available`, address);
        // SELECTING answers an OFFER (RFC 2131 4.3.2): an unknown client asking for an address this server never
        // offered it would otherwise bind addresses for a whole lease time past the offer cap (a REQUEST flood).
        // A NAK sends it back to DISCOVER (as after a restart, which loses offers: they live in memory only).
        if (state === 'selecting' && !its && !machine && !reservation)
          return nak(`${address} was not offered to this client`, address);
        if (state === 'renewing' && !(its && mine.state === 'bound' && mine.exp > now())) {
          // RENEWING/REBINDING a lease that ended (or that this server never gave): the client must start over.
          return nak(`no lease of ${address} to extend`, address);
        }
        if (state === 'init-reboot' && !its && !reservation) {
          // The client has another address here: its idea is wrong. No record of it at all: RFC 2131 4.3.2
          // says the server MUST remain silent (another server may know it).
          if (own) return nak(`${address} is not this client's address`, address);
          stats.ignored++;
          return;
        }
        // Durable before the ACK leaves: a crash after this line cannot give the address to another MAC.
        await leases.bind(subnet, client, address, leaseSeconds, extra);
        offers.settle(ipInt(address), subnet.name);
        const r = baseReply(pkt, MessageType.ACK, server);
        r.yiaddr = address;
        r.ciaddr = pkt.ciaddr;
        fillOptions(r, pkt, mac, subnet, reservation, machine, address, leaseSeconds, server);
        stats.acks++;
        log.info({ mac, address, subnet: subnet.name }, 'dhcp: ACK');
        return send(ctx, r, pkt, destination(ctx, pkt, r, false));
      }
      case MessageType.DECLINE: {
        // RFC 2131 4.3.3: only the lease's own client, and only a DECLINE meant for this server (54 MUST be sent).
        if (!requested || serverId === undefined || !isOurs(serverId, server)) {
          stats.ignored++;
          return;
        }
        const l = leases.get(requested);
        if (l && l.state !== 'declined' && belongsTo(l, client)) {
          await leases.decline(subnet, requested, client, declineSeconds);
          offers.settle(ipInt(requested), subnet.name);
          stats.declines++;
          log.warn(
            { mac, address: requested },
            `dhcp: client declined ${requested} (in use by another host); quarantined for ${declineSeconds} s`,
          );
        }
        return;
      }
      case MessageType.RELEASE: {
        // RFC 2131 4.3.4: identified by ciaddr and the client (identifier or chaddr); 54 names the server, and
        // 4.4.6 / table 5 say the client MUST send it, so one without it is ignored (issue 13). Not a defence
        // against spoofing (54 is this server's public address): ownership (belongsTo) is.
        if (serverId === undefined || !isOurs(serverId, server)) {
          stats.ignored++;
          return;
        }
        if (pkt.ciaddr !== '0.0.0.0' && (await leases.release(pkt.ciaddr, client))) {
          offers.settle(ipInt(pkt.ciaddr), subnet.name);
          stats.releases++;
          log.info({ mac, address: pkt.ciaddr }, 'dhcp: released');
        }
        return;
      }
      case MessageType.INFORM: {
        // RFC 2131 3.4: configuration only; no lease, no lease time, no yiaddr.
        const machine = await machineOf(mac);
        const r = baseReply(pkt, MessageType.ACK, server);
        r.ciaddr = pkt.ciaddr;
        fillOptions(r, pkt, mac, subnet, reservation, machine, pkt.ciaddr, undefined, server);
        // RFC 2131 4.3.5: no lease time parameters, even if an operator configured them as plain options.
        for (const c of [Opt.LeaseTime, Opt.RenewalTime, Opt.RebindingTime]) r.options.delete(c);
        stats.informs++;
        const dest =
          pkt.giaddr !== '0.0.0.0'
            ? { address: pkt.giaddr, port: relayPort }
            : { address: pkt.ciaddr !== '0.0.0.0' ? pkt.ciaddr : rinfo.address, port: clientPort };
        return send(ctx, r, pkt, dest);
      }
      default:
        stats.ignored++;
        log.debug({ mac, type: messageTypeName(type) ?? type }, 'dhcp: message type not served');
    }
  }

  async function handleProxy(ctx: Ctx, pkt: DhcpPacket, subnet: SubnetInfo, server: string, mac: string, type: number) {
    // Only DISCOVERs of PXE clients (vendor class PXEClient/HTTPClient) get a proxy OFFER, never an address.
    if (type !== MessageType.DISCOVER && type !== MessageType.REQUEST) return;
    const vc = pkt.options.get(Opt.VendorClass)?.toString('latin1') ?? '';
    if (!vc.startsWith('PXEClient') && !vc.startsWith('HTTPClient')) {
      stats.ignored++;
      return;
    }
    if (type === MessageType.REQUEST) return; // the address server ACKs; the boot file comes from 4011
    const machine = await machineOf(mac);
    const d = decide(pkt, mac, machine, subnet.nextServer ?? server, 'proxy');
    if (!d.boot) return;
    const r = proxyOffer(pkt, subnet.nextServer ?? server, d);
    r.options.set(Opt.ServerId, ipBytes(server));
    stats.proxyOffers++;
    const dest =
      pkt.giaddr !== '0.0.0.0' ? { address: pkt.giaddr, port: relayPort } : { address: bcast, port: clientPort };
    return send(ctx, r, pkt, dest);
  }

  async function handleProxyPort(
    ctx: Ctx,
    pkt: DhcpPacket,
    rinfo: dgram.RemoteInfo,
    subnet: SubnetInfo,
    server: string,
    mac: string,
    type: number,
  ) {
    if (type !== MessageType.REQUEST && type !== MessageType.INFORM) return;
    if (subnet.unmanaged) return;
    const vc = pkt.options.get(Opt.VendorClass)?.toString('latin1') ?? '';
    if (!vc.startsWith('PXEClient')) {
      stats.ignored++;
      return;
    }
    const machine = await machineOf(mac);
    const d = decide(pkt, mac, machine, subnet.nextServer ?? server, 'proxy');
    if (!d.boot) return;
    const r = proxyAck(pkt, subnet.nextServer ?? server, d);
    r.options.set(Opt.ServerId, ipBytes(server));
    stats.proxyAcks++;
    send(ctx, r, pkt, { address: rinfo.address, port: rinfo.port });
    // A client that asks 4011 from the address it names as its own (ciaddr) holds that address: evidence, like
    // lease.acked, that this MAC is at this address (the trust rule of issue 11; a proxy subnet has no leases).
    if (type === MessageType.REQUEST && pkt.ciaddr !== '0.0.0.0' && pkt.ciaddr === rinfo.address)
      bus.emit({ type: 'proxy.acked', key: pkt.ciaddr, data: { mac, subnet: subnet.name } });
  }

  return {
    stats,
    leases,
    inventory,
    async close() {
      clearInterval(reclaimTimer);
      offBus();
      inventory.close();
      ra?.close();
      rogue.close();
      if (rescan) clearInterval(rescan);
      offRescan();
      await syncing;
      await Promise.all(ctxs.map(closeCtx));
    },
  };
}

/** chaddr all 0x00 or all 0xff, without a client identifier to name the client (or on the PXE port 4011). */
function placeholderChaddr(pkt: DhcpPacket, pxePort: boolean): boolean {
  const n = Math.min(pkt.hlen, 16);
  const first = pkt.chaddr[0];
  if (first !== 0 && first !== 0xff) return false;
  for (let i = 1; i < n; i++) if (pkt.chaddr[i] !== first) return false;
  if (pxePort) return true;
  const cid = pkt.options.get(Opt.ClientId);
  return !(cid && cid.length >= 2);
}

/**
 * RFC 2132 9.8: the server MUST try to insert the requested options in the order the client listed them
 * (option 55). 53 and 54 first (some PXE ROMs look only at the start), then the requested ones in order, then
 * the rest; so when a reply is too large the encoder drops unrequested options first.
 */
function inRequestedOrder(o: Map<number, Buffer>, prl: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (const c of [Opt.MessageType, Opt.ServerId]) {
    const v = o.get(c);
    if (v) out.set(c, v);
  }
  for (const c of prl) {
    const v = o.get(c);
    if (v && !out.has(c)) out.set(c, v);
  }
  if (out.size === o.size) return out;
  for (const [c, v] of o) if (!out.has(c)) out.set(c, v);
  return out;
}

/**
 * The lease time to give: the client's option 51 when it asks for less than the subnet's (RFC 2131 4.3.1:
 * the server MAY honour it; ISC dhcpd does, up to max-lease-time), never more, never under 60 s (the
 * smallest lease time a subnet can have).
 */
export function leaseTimeFor(pkt: DhcpPacket, max: number): number {
  const o = pkt.options.get(Opt.LeaseTime);
  if (o?.length !== 4) return max;
  return Math.min(max, Math.max(60, o.readUInt32BE(0)));
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
