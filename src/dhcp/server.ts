/**
 * The DHCPv4 server: wires the parts together and owns their lifecycle. Sockets, interfaces and reply routing
 * are connection.ts's; the RFC 2131 state machine is state-machine.ts's (proxyDHCP: proxy.ts); replies are built
 * by reply.ts; the boot decision is asked of src/boot/decide.ts through boot.ts, which also hands each boot to
 * the injected `onBoot`. This file decodes a packet, places it, asks the right answerer and sends what it says.
 */
import os from 'node:os';
import { defaultServerId } from '../daemon-registry.js';
import { type InventoryCache, loadInventoryCache, type SubnetInfo } from '../inventory/cache.js';
import { type InfoLines, infoLines, type Logger } from '../log.js';
import { rateLimitedLog } from '../log-limit.js';
import { cidrContains } from '../model/common.js';
import { ADDON_HINT, loadNetAddon, type Source } from './bind.js';
import { announceBoot, bootDecider } from './boot.js';
import { Connections, type Listener, localAddresses } from './connection.js';
import { DurableAcks, type SendReport } from './durable-ack.js';
import { backgroundGuard, malformedLog, onceWarnings, rogueWatch } from './guard.js';
import { ipStr } from './ip.js';
import { type LeaseTable, loadLeaseTable } from './leases.js';
import { machineCache } from './machines.js';
import { sendError } from './native-socket.js';
import { offerGate } from './offers.js';
import { Opt, relayInfo } from './options.js';
import { type OwnerGate, serverOwnerGate } from './owners.js';
import { type DhcpPacket, decode, macOf, ZERO_MAC } from './packet.js';
import { openAddressProbe } from './probe.js';

import { answerBootServer, answerProxy, type ProxyEnv } from './proxy.js';
import { startRaResponder } from './ra.js';
import { finishReply } from './reply.js';
import { type DhcpServer, type DhcpServerOptions, type DhcpStats, zeroStats } from './server-options.js';
import { freeAddressesOf } from './shared-candidates.js';
import { answerRequest, type DhcpRequest, type Outcome, type StateMachineEnv } from './state-machine.js';

export type { DhcpServer, DhcpServerOptions, DhcpStats };

const PLACEHOLDER_MACS = new Set([ZERO_MAC, 'ff:ff:ff:ff:ff:ff']);
// How replies are finished for the wire (finishReply): option 61 is echoed on port 67, not on the PXE port 4011.
const WIRE_DHCP = { echoClientId: true };
const WIRE_PROXY = { echoClientId: false };

export async function startDhcpServer(opts: DhcpServerOptions): Promise<DhcpServer> {
  const { store, bus, log } = opts;
  const now = opts.now ?? Date.now;
  const stats = zeroStats();
  const guard = backgroundGuard(log, { intervalMs: opts.errorLogIntervalMs });
  Object.defineProperty(stats, 'backgroundErrors', { get: () => guard.failures(), enumerable: true });
  const netIfs = opts.networkInterfaces ?? os.networkInterfaces;
  const rescanMs = opts.rescanIntervalMs ?? 30_000;
  const addresses = localAddresses(netIfs, guard, Math.min(5000, rescanMs), opts.serverAddress);

  // Who this daemon is to subnets' owners (default: the host name, as the daemon's).
  const serverId = opts.serverId ?? defaultServerId();
  const ownInventory = !opts.inventory;
  const inventory = opts.inventory ?? (await loadInventoryCache(store, bus, log));
  const leases = await loadLeaseTable({
    store,
    bus,
    log,
    now,
    excluded: () => addresses.get().all,
    guard,
    reservedMacAt: (a) => inventory.reservationAt(a)?.mac,
    serverId: opts.serverId,
  });
  // Offers to unknown clients: capped per pool (offers.ts).
  const offers = offerGate({
    offerSeconds: opts.offerSeconds ?? 60,
    share: opts.unknownOfferShare,
    pressureSeconds: opts.pressureOfferSeconds,
    ingressRate: opts.unknownOfferRate,
    now,
    held: (pool) => leases.held(pool as SubnetInfo),
    log,
    logIntervalMs: opts.errorLogIntervalMs,
  });
  Object.defineProperty(stats, 'capped', { get: () => offers.refusals(), enumerable: true });
  const machines = machineCache(store, bus, log);
  const offLeases = bus.on((e) => {
    if (e.type === 'leases.deleted' && e.key) {
      leases.drop(e.key);
      offers.recount();
    }
  });
  const warnOnce = onceWarnings(log);
  const noBootLog = rateLimitedLog(log, 60_000);
  const fixedQuirks = opts.quirks;
  const decide = bootDecider({
    prefs: () => inventory.prefs(),
    quirks: fixedQuirks ? () => fixedQuirks : () => inventory.quirks(),
    httpPort: opts.httpPort,
    hasLoader: opts.hasLoader,
    // Say why a PXE client gets an address but nothing to boot (a loader missing): once a minute per reason.
    onNoBoot: (mac, reason) => noBootLog('warn', reason, { mac }, `dhcp: not booting: ${reason}`),
  });
  // probeBeforeOffer: ICMP echo before a new address is offered (RFC 2131 2.2, 3.1 step 2); see probe.ts.
  const prober = openAddressProbe({ log });
  const env: StateMachineEnv = {
    leases,
    // A placeholder chaddr (IPoIB's hlen 0, a zero chaddr with 61) is many clients: a reservation by that MAC
    // would hand one address to all of them. They are told apart by client identifier only.
    served: { reservationFor: (s, mac) => (PLACEHOLDER_MACS.has(mac) ? undefined : inventory.reservationFor(s, mac)) },
    machines,
    decide,
    offers,
    isOurs: (serverId, server) => serverId === server || addresses.get().all.has(serverId),
    now,
    offerSeconds: opts.offerSeconds ?? 60,
    declineSeconds: opts.declineSeconds ?? 600,
    bus,
    log,
    warnOnce,
    probe: prober?.probe,
    freeAddresses: freeAddressesOf(store, now),
    daemonId: serverId,
  };

  const owners = serverOwnerGate(serverId, opts, stats, guard, env.isOurs, inventory);
  const addon = loadNetAddon();
  let dispatcher: Dispatcher | undefined;
  const conn = new Connections({
    port: opts.port ?? 67,
    proxyPort: opts.proxyPort ?? 4011,
    clientPort: opts.clientPort ?? 68,
    relayPort: opts.relayPort ?? opts.port ?? 67,
    broadcastAddress: opts.broadcastAddress ?? '255.255.255.255',
    interfaces: opts.interfaces,
    wildcard: opts.wildcard,
    serverAddress: opts.serverAddress,
    addon,
    netIfs,
    addresses,
    guard,
    log,
    replyTo: opts.replyTo,
    onMessage: (l, msg, src) => dispatcher?.onMessage(l, msg, src),
    onOversized: (l, src, slot) => dispatcher?.onOversized(l, src, slot),
  });
  const rogue = rogueWatch(log);
  dispatcher = new Dispatcher({ opts, stats, guard, conn, inventory, env, addresses, rogue, warnOnce, owners });
  try {
    await conn.start();
  } catch (err) {
    if (ownInventory) inventory.close();
    machines.close();
    offLeases();
    rogue.close();
    prober?.close();
    owners.close();
    throw err;
  }
  conn.follow(bus, rescanMs);
  if (conn.mode === 'wildcard') warnSeveralServed(inventory, addresses.get().all, log);

  // Router advertisements: on the given interfaces, or in auto mode on those holding a served subnet.
  const raInterfaces = () =>
    conn.mode === 'explicit'
      ? opts.interfaces!
      : conn
          .autoInterfaces()
          .filter((i) =>
            (addresses.get().byIf.get(i) ?? []).some(
              (a) => !a.startsWith('127.') && inventory.subnetFor(a) !== undefined,
            ),
          );
  const ra =
    addon && conn.mode !== 'wildcard'
      ? startRaResponder({ interfaces: raInterfaces, inventory, log, addon, guard })
      : undefined;

  const reclaimTimer = reclaimEvery(leases, guard, opts.reclaimIntervalMs ?? 10_000);
  const followTimer = followEvery(leases, guard, opts.leaseFollowMs ?? 1000);

  return {
    stats,
    leases,
    inventory,
    async close() {
      for (const t of [reclaimTimer, followTimer]) clearInterval(t);
      offLeases();
      machines.close();
      if (ownInventory) inventory.close();
      ra?.close();
      rogue.close();
      prober?.close();
      owners.close();
      await dispatcher?.settled(5000); // ACKs the store sends leave on these sockets
      await conn.close();
    },
  };
}

/** Expired leases back into their pools every `ms`; a failure is the guard's to log. */
function reclaimEvery(leases: { reclaim(): unknown }, guard: ReturnType<typeof backgroundGuard>, ms: number) {
  const timer = setInterval(() => {
    try {
      leases.reclaim();
      guard.passed('reclaiming expired leases');
    } catch (err) {
      guard.failed('reclaiming expired leases', err);
    }
  }, ms);
  timer.unref();
  return timer;
}

/**
 * On a shared lease table: the rows other daemons wrote, into the index every `ms` (one read at a time); a failure
 * (the database away) is the guard's to log, and the next read starts where the last good one ended.
 */
function followEvery(leases: LeaseTable, guard: ReturnType<typeof backgroundGuard>, ms: number) {
  const timer = setInterval(() => {
    leases.catchUp()?.then(
      () => guard.passed('following the lease table'),
      (err) => guard.failed('following the lease table', err),
    );
  }, ms);
  timer.unref();
  return timer;
}

/** Without the socket helper, requests cannot be told apart by interface: say so when that matters. */
function warnSeveralServed(inventory: InventoryCache, local: Set<string>, log: Logger): void {
  const served = inventory.subnets().filter((s) => [...local].some((a) => cidrContains(s.subnet, a)));
  if (served.length > 1) {
    log.warn(
      { subnets: served.map((s) => s.name) },
      `dhcp: several served subnets are attached to this host but the socket helper is not built, so requests cannot be told apart by interface: ${ADDON_HINT}`,
    );
  }
}

type DispatcherDeps = {
  opts: DhcpServerOptions;
  stats: DhcpStats;
  guard: ReturnType<typeof backgroundGuard>;
  conn: Connections;
  inventory: InventoryCache;
  env: StateMachineEnv;
  addresses: ReturnType<typeof localAddresses>;
  rogue: ReturnType<typeof rogueWatch>;
  warnOnce: (key: string, obj: object, msg: string) => void;
  owners: OwnerGate;
};

/** The packet path: decode, drop what names no client, place, ask the answerer, send what it says. */
class Dispatcher {
  private readonly malformed: (src: string, code: string, message: string) => void;
  private readonly proxyEnv: ProxyEnv;
  // The ACK's info line, one per DORA at the default level: from a template (log.ts infoLines), a fifth of pino's
  // cost, read exactly as log.info({ mac, address, subnet }, 'dhcp: ACK') wrote it.
  private readonly ackLine: InfoLines;

  constructor(private readonly d: DispatcherDeps) {
    this.malformed = malformedLog(d.opts.log, () => d.stats.malformed, d.opts.malformedLogIntervalMs);
    this.proxyEnv = { machines: d.env.machines, decide: d.env.decide };
    this.ackLine = infoLines(d.opts.log, 'dhcp: ACK');
  }

  // One send callback for every reply (not a closure per packet); dgram's error names the address and port.
  private readonly sent = (err: Error | null) => {
    if (!err) return this.d.guard.passed('sending replies');
    this.d.stats.errors++;
    this.d.guard.failed('sending replies', err);
  };
  // The same for an ACK the store sent (durable-ack.ts).
  private readonly storeSent: SendReport = (errno, address, port) =>
    this.sent(errno === 0 ? null : sendError(errno, ipStr(address), port));
  // Requests being answered with an ACK the store may send: the sockets close only once they settle.
  private answering = 0;
  private readonly idle: (() => void)[] = [];

  /** An address request on a direct socket: its ACK may leave from the store the moment it is durable. */
  private acksOf(l: Listener): Listener['acks'] {
    if (l.socket.directFd === undefined) return undefined;
    l.acks ??= new DurableAcks(this.d.conn, l, this.storeSent);
    return l.acks;
  }

  /** Resolves once no request hands an ACK to the store (or after `ms`): before the sockets close. */
  settled(ms: number): Promise<void> {
    if (this.answering === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.idle.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  // `msg` is valid during this call only (the native path's receive ring): decode copies what the packet keeps.
  onMessage(l: Listener, msg: Buffer, rinfo: Source): void {
    const { stats, opts } = this.d;
    stats.received++;
    const res = decode(msg);
    if (!res.ok) {
      if (l.kind !== 'rogue') {
        stats.malformed++;
        this.malformed(rinfo.address, res.code, res.message);
      }
      return;
    }
    const pkt = res.packet;
    if (l.kind === 'rogue') {
      if (pkt.op === 2) this.onRogue(l, pkt, rinfo.address);
      return;
    }
    if (pkt.op !== 1) {
      stats.ignored++;
      return;
    }
    if (placeholderChaddr(pkt, l.kind === 'proxy')) {
      // All-zero or broadcast chaddr names no machine: every such client would share one MAC's lease, boot
      // decision and trust. A client identifier (61) still identifies the client (RFC 2131 4.2), except on 4011;
      // so does it a client without any hardware address (hlen 0, IPoIB: RFC 4390 2.1 makes 61 a MUST).
      stats.badChaddr++;
      opts.log.debug(
        { src: rinfo.address, chaddr: macOf(pkt), hlen: pkt.hlen },
        'dhcp: request with a zero/broadcast/empty chaddr and no client identifier dropped',
      );
      return;
    }
    void this.handle(l, pkt, rinfo);
  }

  /** A datagram too long for the receive ring's slot: malformed for DHCP (clients stay within one frame). */
  onOversized(l: Listener, src: Source, slot: number): void {
    this.d.stats.received++;
    if (l.kind === 'rogue') return;
    this.d.stats.malformed++;
    this.malformed(src.address, 'oversized', `a datagram of more than ${slot} bytes`);
  }

  private onRogue(l: Listener, pkt: DhcpPacket, src: string): void {
    const { stats, opts } = this.d;
    const sid = pkt.options.get(Opt.ServerId);
    const server = sid?.length === 4 ? ipStr(sid.readUInt32BE(0)) : src;
    const local = this.d.addresses.get().all;
    if (local.has(server) || local.has(src)) return;
    stats.rogue++;
    if (!this.d.inventory.prefs().rogueDhcpWarnings || !this.d.rogue.seen(server)) return;
    opts.bus.emit({
      type: 'dhcp.rogue',
      key: server,
      data: { address: server, source: src, interface: l.ifname, mac: macOf(pkt) },
    });
    opts.log.warn(
      { server, source: src, interface: l.ifname },
      `dhcp: another DHCP server (${server}) answers on this segment`,
    );
  }

  // Never rejects: every packet's failure is counted and logged here (no promise chain per packet).
  private async handle(l: Listener, pkt: DhcpPacket, rinfo: Source): Promise<void> {
    const { stats, guard } = this.d;
    try {
      // Option 82 sub-options are a relay's word: read only in relayed requests (a client could send its own).
      const relay = pkt.giaddr !== '0.0.0.0' ? relayInfo(pkt.options.get(Opt.RelayAgentInfo)) : undefined;
      const loc = this.d.conn.locate(l, pkt, this.d.inventory, this.d.warnOnce, relay?.linkSelection);
      if (loc) {
        if (!this.d.owners.answers(loc.subnet, pkt, loc.server, relay?.serverIdOverride)) return;
        const acks = l.kind === 'dhcp' && !loc.subnet.proxy ? this.acksOf(l) : undefined;
        const req: DhcpRequest = {
          pkt,
          mac: macOf(pkt),
          type: pkt.options.get(Opt.MessageType)![0]!,
          subnet: loc.subnet,
          server: loc.server,
          ingress: `${l.ifname ?? '*'}/${pkt.giaddr}`,
          source: rinfo.address,
          wire: relay?.serverIdOverride
            ? { echoClientId: l.kind === 'dhcp', serverIdOverride: relay.serverIdOverride }
            : l.kind === 'dhcp'
              ? WIRE_DHCP
              : WIRE_PROXY,
          acks,
        };
        if (acks) this.answering++;
        let out: Outcome;
        try {
          out =
            l.kind === 'proxy'
              ? await answerBootServer(req, this.proxyEnv)
              : loc.subnet.proxy
                ? await answerProxy(req, this.proxyEnv)
                : await answerRequest(
                    req,
                    relay?.serverIdOverride ? overriddenEnv(this.d.env, relay.serverIdOverride) : this.d.env,
                  );
        } finally {
          if (acks && --this.answering === 0) for (const f of this.idle.splice(0)) f();
        }
        this.deliver(l, req, out, rinfo, relay?.serverIdOverride);
      } else stats.ignored++;
      guard.passed('answering requests');
    } catch (err) {
      // One line a minute while requests keep failing (a full disk, a broken store: every packet would log).
      stats.errors++;
      guard.failed('answering requests', err, { mac: macOf(pkt) });
    }
  }

  /** Counts the outcome; for a reply: hands its boot on (event, onBoot), encodes and sends it. */
  private deliver(l: Listener, req: DhcpRequest, out: Outcome, rinfo: Source, serverIdOverride?: string): void {
    const { stats, opts, conn } = this.d;
    if (out.count) stats[out.count]++;
    if (!out.reply) return;
    // The MAC (hex, colons) and the address (a dotted quad) need no escaping. Built only when it is written.
    if (out.count === 'acks' && this.ackLine.on())
      this.ackLine(`"mac":"${req.mac}","address":"${out.reply.yiaddr}","subnet":${JSON.stringify(req.subnet.name)}`);
    if (out.boot) announceBoot(opts, out.boot.choice, out.boot.offer);
    const { pkt, mac } = req;
    const { buf, dropped } = out.wire ?? finishReply(out.reply, pkt, l.kind === 'dhcp', serverIdOverride);
    if (dropped.length)
      this.d.warnOnce(`drop-${mac}`, { mac, dropped }, 'dhcp: reply too large for the client: options dropped');
    if (!out.sent) conn.send(l, buf, conn.destination(out.delivery, l, pkt, out.reply, rinfo), this.sent);
    if (out.proxyAcked)
      opts.bus.emit({ type: 'proxy.acked', key: out.proxyAcked.address, data: { mac, subnet: out.proxyAcked.subnet } });
  }
}

/**
 * RFC 5107 4: with a relay's server identifier override, a REQUEST, DECLINE or RELEASE naming the override
 * address in 54 is meant for this server (as kea's acceptServerId: only with the sub-option in the same message).
 */
function overriddenEnv(env: StateMachineEnv, override: string): StateMachineEnv {
  return { ...env, isOurs: (serverId, server) => serverId === override || env.isOurs(serverId, server) };
}

/**
 * chaddr all 0x00 or all 0xff, or none at all (hlen 0), without a client identifier to name the client (or
 * on the PXE port 4011).
 */
function placeholderChaddr(pkt: DhcpPacket, pxePort: boolean): boolean {
  const n = Math.min(pkt.hlen, 16);
  if (n > 0) {
    const first = pkt.chaddr[0];
    if (first !== 0 && first !== 0xff) return false;
    for (let i = 1; i < n; i++) if (pkt.chaddr[i] !== first) return false;
  }
  if (pxePort) return true;
  const cid = pkt.options.get(Opt.ClientId);
  return !(cid && cid.length >= 2);
}
