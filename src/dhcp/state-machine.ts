/**
 * The RFC 2131 state machine of the address server: one request (already placed in its subnet, with this
 * server's address there) in, a reply with its delivery kind or silence with a reason out. It reads and
 * updates the lease table, asks the served subnets for reservations, the machine lookup for the client's
 * machine and `decide` for the boot; no sockets, no timers (connection.ts and server.ts own those), so a test
 * can call it with an in-memory lease table.
 */
import type { Bus } from '../events.js';
import type { InventoryCache, SubnetInfo } from '../inventory/cache.js';
import type { Logger } from '../log.js';
import type { Reservation } from '../model/subnet.js';
import type { DurableSend } from '../store/store.js';
import { bootOffer, type Decide } from './boot.js';
import { type Delivery, deliveryFor } from './delivery.js';
import { inNet, ipInt, ipStr } from './ip.js';
import { belongsTo, type Client, type LeaseRec, type LeaseTable, LeaseTakenError } from './leases.js';
import type { CachedMachine, MachineLookup } from './machines.js';
import type { OfferGate } from './offers.js';
import { MessageType, messageTypeName, Opt } from './options.js';
import type { Counter, Outcome, Reply, Silence } from './outcome.js';
import { soleOwner } from './owners.js';
import type { DhcpPacket } from './packet.js';
import { applyBoot, baseReply, fillOptions, finishReply, leaseTimeFor, nakReply } from './reply.js';
import { type FreeAddresses, sharedCandidates } from './shared-candidates.js';

export * from './outcome.js';

/** One request, placed: its subnet and this server's address on it; `ingress` names where it came in. */
export type DhcpRequest = {
  pkt: DhcpPacket;
  mac: string;
  type: number;
  subnet: SubnetInfo;
  server: string;
  /** The receiving interface and relay (the offer rate is per ingress). */
  ingress: string;
  /** The UDP source address. */
  source: string;
  /**
   * How the reply is finished for the wire (finishReply's arguments). Given, an ACK is encoded while its lease
   * commits, so the event-loop turn that confirms a batch of leases only has their sends left.
   */
  wire?: { echoClientId: boolean; serverIdOverride?: string };
  /** With `wire`: where an ACK may be handed to the store, to leave the moment its lease is durable. */
  acks?: AckSender;
};

/**
 * The server's side of an ACK sent by the store (durable-ack.ts): the datagram for `buf` (the finished ACK) to
 * its destination, or undefined when the server sends it itself (no direct socket, a delivery it keeps).
 */
export interface AckSender {
  durableSend(req: DhcpRequest, reply: DhcpPacket, buf: Buffer, delivery: Delivery): DurableSend | undefined;
}

export type StateMachineEnv = {
  leases: LeaseTable;
  served: Pick<InventoryCache, 'reservationFor'>;
  machines: MachineLookup;
  decide: Decide;
  offers: OfferGate;
  /** Whether an option 54 names this server (the subnet's address or any of this host's). */
  isOurs(serverId: string, server: string): boolean;
  now(): number;
  offerSeconds: number;
  declineSeconds: number;
  bus: Bus;
  log: Logger;
  /**
   * Whether a host answers at `address` now (subnet `probeBeforeOffer`; ICMP echo, ARP or anything the server
   * can send): true when in use. Its timeout is the implementation's; absent, no subnet is probed.
   */
  probe?(address: string): Promise<boolean>;
  /** A warning keyed once (bounded: keys can hold a MAC). */
  warnOnce(key: string, obj: object, msg: string): void;
  freeAddresses?: FreeAddresses;
  /** This daemon's serverId, as subnets' `owners` name it (issue 17); absent, no subnet is this daemon's alone. */
  daemonId?: string;
};

/** What every message type's handler gets, parsed once. */
type Ask = DhcpRequest & {
  reservation: Reservation | undefined;
  client: Client;
  requested: string | undefined;
  serverId: string | undefined;
  leaseSeconds: number;
  extra: { hostname?: string };
};

const silence = (reason: string, count?: Counter): Silence => ({ reason, count });

/** The address server's answer to a request in a subnet that gives addresses (not proxy). */
export async function answerRequest(req: DhcpRequest, env: StateMachineEnv): Promise<Outcome> {
  const { pkt, subnet, mac } = req;
  const reservation = env.served.reservationFor(subnet.name, mac);
  // A subnet without a dynamic range gives addresses to reservations only; anyone else gets silence, not a NAK
  // (DRP issue 176: another server on the wire may serve it), but an INFORM, which takes no address, is
  // answered (RFC 2131 3.4: statically configured hosts get the subnet's options). onlyReservations is the
  // operator's word that other servers share the wire: silence to every unreserved MAC, INFORM included.
  if (!reservation && (subnet.onlyReservations || (subnet.end < subnet.start && req.type !== MessageType.INFORM))) {
    const why = `not reserved in ${subnet.onlyReservations ? 'an onlyReservations subnet' : 'a subnet without a dynamic range'}`;
    env.log.debug({ mac, subnet: subnet.name, type: messageTypeName(req.type) }, `dhcp: ${why}`);
    return silence(why, 'ignored');
  }
  const reqIp = pkt.options.get(Opt.RequestedIp);
  // RFC 2131 4.2: option 61, when present, identifies the client; RFC 2132 9.14: at least 2 bytes (type + id).
  const cidOpt = pkt.options.get(Opt.ClientId);
  const hostname = pkt.options.get(Opt.Hostname)?.toString('latin1');
  const sid = pkt.options.get(Opt.ServerId);
  const ask: Ask = {
    pkt,
    mac,
    type: req.type,
    subnet,
    server: req.server,
    ingress: req.ingress,
    source: req.source,
    wire: req.wire,
    acks: req.acks,
    reservation,
    client: cidOpt && cidOpt.length >= 2 ? { mac, id: cidOpt.toString('hex') } : { mac },
    requested: reqIp?.length === 4 ? ipStr(reqIp.readUInt32BE(0)) : undefined,
    serverId: sid?.length === 4 ? ipStr(sid.readUInt32BE(0)) : undefined,
    leaseSeconds: leaseTimeFor(pkt, reservation ? subnet.reservedLeaseTime : subnet.leaseTime),
    extra: hostname ? { hostname } : {},
  };
  switch (req.type) {
    case MessageType.DISCOVER:
      return discover(ask, env);
    case MessageType.REQUEST:
      return request(ask, env);
    case MessageType.DECLINE:
      return decline(ask, env);
    case MessageType.RELEASE:
      return release(ask, env);
    case MessageType.INFORM:
      return inform(ask, env);
    default:
      env.log.debug({ mac, type: messageTypeName(req.type) ?? req.type }, 'dhcp: message type not served');
      return silence('message type not served', 'ignored');
  }
}

/** OFFER/ACK/INFORM options, and the boot asked of `decide` explicitly (never in an unmanaged subnet). */
function filled(
  a: Ask,
  env: StateMachineEnv,
  r: DhcpPacket,
  machine: CachedMachine | undefined,
  address: string,
  leaseSeconds: number | undefined,
) {
  fillOptions(r, {
    req: a.pkt,
    mac: a.mac,
    subnet: a.subnet,
    reservation: a.reservation,
    machine,
    address,
    leaseSeconds,
    warnOnce: env.warnOnce,
  });
  if (a.subnet.unmanaged) return undefined;
  const nextServer = a.reservation?.nextServer ?? a.subnet.nextServer ?? a.server;
  const choice = env.decide({ req: a.pkt, mac: a.mac, machine, nextServer, mode: 'full' });
  if (!choice) return undefined;
  applyBoot(r, choice.decision);
  return { choice, offer: bootOffer(choice, address) };
}

async function discover(a: Ask, env: StateMachineEnv): Promise<Outcome> {
  const { subnet, client, mac } = a;
  const { leases, offers } = env;
  // Without a query (or a microtask) when the cache knows the MAC.
  const known = env.machines.cached(mac);
  const machine = known !== undefined ? (known ?? undefined) : await env.machines.lookup(mac);
  // No await from here to the offer: the address chosen cannot be taken meanwhile.
  let hold = env.offerSeconds;
  const stranger = !machine && !a.reservation;
  if (stranger) {
    // An unknown client's offer counts against the pool's unknown share (offers.ts) unless it only
    // renews what it already holds (a repeated DISCOVER, a bound client starting over).
    const own = leases.forMac(subnet.name, client);
    const holds = own !== undefined && (own.state === 'offered' || own.state === 'bound') && own.exp > env.now();
    // A bound client starting over keeps the full hold: the flood must not take its address in 10 s.
    if (!holds || own.state !== 'bound') {
      const adm = offers.admit(subnet, a.ingress, holds);
      if (!adm.ok) return silence(`offer cap: ${adm.why}`);
      hold = adm.seconds;
    }
  }
  // Made only when a shared table's claim lost or the index found no address: not on every DISCOVER.
  let shared: ReturnType<typeof sharedCandidates> | undefined;
  let alloc = leases.allocate(subnet, client, a.requested, a.reservation);
  for (let probes = 0; ; probes++) {
    if (!alloc.address) {
      shared ??= sharedCandidates(a, env);
      alloc = (await shared.next(undefined)) ?? alloc;
    }
    if (!alloc.address) {
      env.warnOnce(`full-${subnet.name}`, { subnet: subnet.name, mac }, `dhcp: no offer: ${alloc.why}`);
      return silence(alloc.why, 'ignored');
    }
    const held = leases.offer(subnet, client, alloc.address, hold, a.extra);
    // Another daemon on the inventory may hold it (issue 17): claimed before it leaves; lost: the next candidate.
    // Not in a subnet this daemon owns alone (owners.ts soleOwner): no other daemon answers its clients, so none
    // offers from its pool, and the ACK's claim still refuses an address someone holds.
    const claimed = soleOwner(subnet, env.daemonId) ? undefined : leases.claimOffer(held);
    if (claimed && !(await claimed)) {
      shared ??= sharedCandidates(a, env);
      alloc = await shared.lost(alloc, () => leases.allocate(subnet, client, a.requested, a.reservation));
      if (!alloc.address) return silence(alloc.why, 'ignored');
      probes--;
      continue;
    }
    if (stranger) offers.track(subnet.name, ipInt(alloc.address), hold);
    else offers.settle(ipInt(alloc.address));
    // The offer above holds the address while the probe is out: no other DISCOVER can take it meanwhile.
    if (!(await inUse(a, env, alloc))) break;
    if (probes + 1 >= MAX_PROBES) return silence(`${MAX_PROBES} addresses probed, all in use`, 'ignored');
    alloc = leases.allocate(subnet, client, a.requested, a.reservation);
  }
  const r = baseReply(a.pkt, MessageType.OFFER, a.server);
  r.yiaddr = alloc.address;
  const boot = filled(a, env, r, machine, alloc.address, a.leaseSeconds);
  env.log.debug({ mac, address: alloc.address, why: alloc.why }, 'dhcp: offer');
  return { reply: r, delivery: deliveryFor(a.pkt, r, false), count: 'offers', boot };
}

/** Addresses probed for one DISCOVER at most: each costs a probe's timeout of the client's wait. */
const MAX_PROBES = 3;

/**
 * The subnet's `probeBeforeOffer` (what ISC dhcpd's ping-check and dnsmasq do): a new address that answers the
 * probe is used by a host the lease table does not know (a static address, a lost lease database). It is
 * quarantined like a DECLINEd one (RFC 2131 4.3.3) and another is chosen. Not for a reservation nor the
 * client's own lease: the client itself may answer. A probe that fails counts as silence (logged).
 */
async function inUse(a: Ask, env: StateMachineEnv, alloc: { address?: string; why: string }): Promise<boolean> {
  const address = alloc.address!;
  if (!a.subnet.probeBeforeOffer || alloc.why === 'reservation' || alloc.why === 'existing lease') return false;
  if (!env.probe) {
    env.warnOnce(
      `noprobe-${a.subnet.name}`,
      { subnet: a.subnet.name },
      'dhcp: probeBeforeOffer is set but this server has no probe; offering unprobed',
    );
    return false;
  }
  let answered: boolean;
  try {
    answered = await env.probe(address);
  } catch (err) {
    env.warnOnce(
      `probefail-${a.subnet.name}`,
      { subnet: a.subnet.name, err },
      'dhcp: address probe failed; offering unprobed',
    );
    return false;
  }
  if (!answered) return false;
  await env.leases.decline(a.subnet, address, a.client, env.declineSeconds);
  env.offers.settle(ipInt(address), a.subnet.name);
  env.log.warn(
    { address, subnet: a.subnet.name, mac: a.mac },
    `dhcp: ${address} answered the probe before an offer: in use by a host the lease table does not know; quarantined for ${env.declineSeconds} s`,
  );
  return true;
}

function nak(a: Ask, env: StateMachineEnv, why: string, at?: string): Reply {
  const n = nakReply(a.pkt, a.server, why);
  env.bus.emit({ type: 'lease.nak', key: at, data: { mac: a.mac, subnet: a.subnet.name, reason: why } });
  env.log.info({ mac: a.mac, address: at, subnet: a.subnet.name, reason: why }, 'dhcp: NAK');
  return { reply: n, delivery: deliveryFor(a.pkt, n, true), count: 'naks' };
}

/** RFC 2131 4.3.2: the client's state follows from 54, ciaddr and 50. */
async function request(a: Ask, env: StateMachineEnv): Promise<Outcome> {
  const { pkt, subnet, client } = a;
  const leases = env.leases;
  const state = a.serverId !== undefined ? 'selecting' : pkt.ciaddr !== '0.0.0.0' ? 'renewing' : 'init-reboot';
  if (a.serverId !== undefined && !env.isOurs(a.serverId, a.server)) {
    // SELECTING for another server's OFFER: it chose that one; ours is free again.
    const offered = leases.forMac(subnet.name, client);
    if (offered?.state === 'offered') env.offers.settle(offered.ip);
    leases.forgetOffer(subnet.name, client);
    return silence(`the client chose server ${a.serverId}`, 'ignored');
  }
  const own = leases.forMac(subnet.name, client);
  let address = state === 'renewing' ? pkt.ciaddr : a.requested;
  // SELECTING without 50 (a MUST that some clients, and Forge's reservation scenarios, leave out): the
  // address this client was offered.
  if (!address && state === 'selecting')
    address = pkt.ciaddr !== '0.0.0.0' ? pkt.ciaddr : (own?.address ?? a.reservation?.address);
  if (!address) {
    // Nothing to confirm. Relayed: NAK, as kea answers (Forge v4.request.initreboot-no-requested-address,
    // kea #1608); direct: silence (Forge v4.request.initreboot-no-leases).
    if (pkt.giaddr !== '0.0.0.0') return nak(a, env, 'no requested address');
    return silence('no requested address', 'ignored');
  }
  const known = env.machines.cached(a.mac);
  const machine = known !== undefined ? (known ?? undefined) : await env.machines.lookup(a.mac);
  // Another daemon on the same inventory may have given this address, or this client's lease: the store says.
  const fresh = leases.refresh(address, client);
  if (fresh) await fresh;
  const refused = refusal(a, env, state, address, machine !== undefined, own);
  if (refused) return refused;
  // The ACK is built first, so that a batch of ACKs confirmed by one commit has only their sending left, and the
  // store may send it itself the moment its lease is durable (`a.acks`: the journal's thread, no event-loop turn
  // in between). Durable before the ACK leaves, either way: a crash cannot give the address to another MAC.
  const r = baseReply(pkt, MessageType.ACK, a.server);
  r.yiaddr = address;
  r.ciaddr = pkt.ciaddr;
  const boot = filled(a, env, r, machine, address, a.leaseSeconds);
  const wire = a.wire ? finishReply(r, pkt, a.wire.echoClientId, a.wire.serverIdOverride) : undefined;
  const delivery = deliveryFor(pkt, r, false);
  const send = wire && a.acks ? a.acks.durableSend(a, r, wire.buf, delivery) : undefined;
  try {
    // bind takes the address before it returns (synchronously) and resolves once the lease is on disk.
    await leases.bind(subnet, client, address, a.leaseSeconds, a.extra, send);
  } catch (err) {
    // Another daemon's client won the address between our check and our COMMIT: RFC 2131 4.3.2, NAK.
    if (err instanceof LeaseTakenError) return nak(a, env, err.message, address);
    throw err;
  }
  env.offers.settle(ipInt(address), subnet.name);
  return { reply: r, delivery, count: 'acks', boot, wire, sent: send?.taken === true };
}

/** Why a REQUEST for `address` gets no ACK: a NAK, silence, or undefined (ACK it). */
function refusal(
  a: Ask,
  env: StateMachineEnv,
  state: 'selecting' | 'renewing' | 'init-reboot',
  address: string,
  known: boolean,
  own: LeaseRec | undefined,
): Outcome | undefined {
  const { subnet, client } = a;
  const leases = env.leases;
  // RFC 2131 4.3.2 (INIT-REBOOT): the network is checked first, and a wrong one is NAKed whoever asks: no
  // server on this segment can give that address here.
  if (!inNet(subnet.net, ipInt(address))) return nak(a, env, `${address} is not on this network`, address);
  const mine = leases.get(address);
  const its = mine !== undefined && belongsTo(mine, client);
  if (state === 'init-reboot') {
    const r = initReboot(a, env, address, its, own);
    if (r) return r;
  }
  if (!leases.usable(subnet, client, address, a.reservation))
    return nak(a, env, `${address} is not available`, address);
  // RFC 2131 3.1 step 4: the server the client selected (54 names this one) SHOULD NAK what it cannot give.
  if (state === 'selecting' && mine && !its) return nak(a, env, `${address} is not available`, address);
  // SELECTING answers an OFFER (RFC 2131 4.3.2): an unknown client asking for an address this server never
  // offered it would otherwise bind addresses for a whole lease time past the offer cap (a REQUEST flood).
  // A NAK sends it back to DISCOVER (as after a restart, which loses offers: they live in memory only).
  if (state === 'selecting' && !its && !known && !a.reservation)
    return nak(a, env, `${address} was not offered to this client`, address);
  if (state === 'renewing' && !(its && mine.state === 'bound' && mine.exp > env.now())) {
    // RENEWING/REBINDING a lease that ended (or that this server never gave): the client must start over.
    return nak(a, env, `no lease of ${address} to extend`, address);
  }
  return undefined;
}

/**
 * RFC 2131 4.3.2, INIT-REBOOT on the right network: "If the DHCP server has no record of this client, then it
 * MUST remain silent" (another server on the wire may have given the address). A record: a reservation, the
 * lease of the address itself, or a binding in force; then a wrong address is NAKed. An ended or released
 * lease elsewhere is no record of the address the client holds now (it may have it from another server).
 * Undefined: go on (the address must still be usable).
 */
function initReboot(
  a: Ask,
  env: StateMachineEnv,
  address: string,
  its: boolean,
  own: LeaseRec | undefined,
): Outcome | undefined {
  if (its || a.reservation) return undefined;
  if (own && own.state === 'bound' && own.exp > env.now())
    return nak(a, env, `${address} is not this client's address (it holds ${own.address})`, address);
  const why = `no record of this client for ${address} (INIT-REBOOT)`;
  env.log.debug({ mac: a.mac, address, subnet: a.subnet.name }, `dhcp: ${why}: silent (RFC 2131 4.3.2)`);
  return silence(why, 'ignored');
}

/** RFC 2131 4.3.3: only the lease's own client, and only a DECLINE meant for this server (54 MUST be sent). */
async function decline(a: Ask, env: StateMachineEnv): Promise<Outcome> {
  const { requested, subnet, client } = a;
  if (!requested || a.serverId === undefined || !env.isOurs(a.serverId, a.server))
    return silence('DECLINE without 50 or 54 naming this server', 'ignored');
  // Another daemon on the inventory may have given the lease (issue 17): the store says, as for a REQUEST.
  await env.leases.refresh(requested, client);
  const l = env.leases.get(requested);
  if (!(l && l.state !== 'declined' && belongsTo(l, client)))
    return silence(`DECLINE of ${requested}, not this client's`);
  await env.leases.decline(subnet, requested, client, env.declineSeconds);
  env.offers.settle(ipInt(requested), subnet.name);
  env.log.warn(
    { mac: a.mac, address: requested },
    `dhcp: client declined ${requested} (in use by another host); quarantined for ${env.declineSeconds} s`,
  );
  return silence(`${requested} declined`, 'declines');
}

/**
 * RFC 2131 4.3.4: identified by ciaddr and the client (identifier or chaddr); 54 names the server, and
 * 4.4.6 / table 5 say the client MUST send it, so one without it is ignored (issue 13). Not a defence
 * against spoofing (54 is this server's public address): ownership (belongsTo) is.
 */
async function release(a: Ask, env: StateMachineEnv): Promise<Outcome> {
  const { pkt, subnet } = a;
  if (a.serverId === undefined || !env.isOurs(a.serverId, a.server)) {
    env.log.debug(
      { mac: a.mac, address: pkt.ciaddr, serverId: a.serverId },
      'dhcp: RELEASE without 54 naming this server ignored',
    );
    return silence('RELEASE without 54 naming this server', 'ignored');
  }
  if (pkt.ciaddr !== '0.0.0.0') await env.leases.refresh(pkt.ciaddr, a.client);
  if (pkt.ciaddr === '0.0.0.0' || !(await env.leases.release(pkt.ciaddr, a.client)))
    return silence(`RELEASE of ${pkt.ciaddr}, not this client's`);
  env.offers.settle(ipInt(pkt.ciaddr), subnet.name);
  env.log.info({ mac: a.mac, address: pkt.ciaddr }, 'dhcp: released');
  return silence(`${pkt.ciaddr} released`, 'releases');
}

/** RFC 2131 3.4: configuration only; no lease, no lease time, no yiaddr. */
async function inform(a: Ask, env: StateMachineEnv): Promise<Outcome> {
  const { pkt } = a;
  const machine = await env.machines.lookup(a.mac);
  const r = baseReply(pkt, MessageType.ACK, a.server);
  r.ciaddr = pkt.ciaddr;
  const boot = filled(a, env, r, machine, pkt.ciaddr, undefined);
  // RFC 2131 4.3.5: no lease time parameters, even if an operator configured them as plain options.
  for (const c of [Opt.LeaseTime, Opt.RenewalTime, Opt.RebindingTime]) r.options.delete(c);
  const delivery: Delivery =
    pkt.giaddr !== '0.0.0.0' ? 'relay' : pkt.ciaddr !== '0.0.0.0' ? 'unicast-ciaddr' : 'unicast-source';
  return { reply: r, delivery, count: 'informs', boot };
}
