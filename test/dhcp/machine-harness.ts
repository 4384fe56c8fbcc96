/**
 * The socket-free harness for the DHCP state machine: answerRequest with an in-memory lease table (SQLite
 * :memory:), a fixed machine table and reservation list, the real boot decision and a clock the test moves.
 */
import { expect } from 'vitest';
import type { Quirk } from '../../src/boot/quirks.js';
import { bootDecider, type Decide } from '../../src/dhcp/boot.js';
import { loadLeaseTable } from '../../src/dhcp/leases.js';
import { type CachedMachine, staticMachines } from '../../src/dhcp/machines.js';
import { offerGate } from '../../src/dhcp/offers.js';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { type DhcpPacket, emptyPacket, macBytes } from '../../src/dhcp/packet.js';
import {
  answerRequest,
  type Outcome,
  type Reply,
  type Silence,
  type StateMachineEnv,
} from '../../src/dhcp/state-machine.js';
import { createBus, type PlinthEvent } from '../../src/events.js';
import type { SubnetInfo } from '../../src/inventory/cache.js';
import { type Logger, silentLogger } from '../../src/log.js';
import { ipToInt, parseCidr } from '../../src/model/common.js';
import { type Reservation, Subnet } from '../../src/model/subnet.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { ip4, SUBNET } from './helpers.js';

export const SERVER = '10.99.1.2';
export const OTHER_SERVER = '10.99.1.3';

export function subnet(over: Record<string, unknown> = {}): SubnetInfo {
  const s = Subnet.parse({ ...SUBNET, ...over });
  // As the inventory cache reads it: no range is the empty range 0..-1.
  const start = s.activeStart ? ipToInt(s.activeStart) : 0;
  return { ...s, net: parseCidr(s.subnet), start, end: s.activeEnd ? ipToInt(s.activeEnd) : -1 };
}

let xid = 1;
export function pkt(type: number, mac: string, extra: Partial<DhcpPacket> = {}, options: [number, Buffer][] = []) {
  const p = emptyPacket(1);
  p.xid = xid++;
  p.chaddr = macBytes(mac);
  Object.assign(p, extra);
  p.options.set(Opt.MessageType, Buffer.from([type]));
  for (const [c, v] of options) p.options.set(c, v);
  return p;
}

export async function machine(
  opts: {
    reservations?: Reservation[];
    machines?: Map<string, CachedMachine>;
    quirks?: Quirk[];
    decide?: Decide;
    log?: Logger;
    probe?: StateMachineEnv['probe'];
  } = {},
) {
  let t = Date.parse('2026-01-01T00:00:00Z');
  const now = () => t;
  const bus = createBus();
  const events: PlinthEvent[] = [];
  bus.on((e) => events.push(e));
  const reservations = opts.reservations ?? [];
  const warnings: string[] = [];
  const leases = await loadLeaseTable({
    store: openSqliteStore(':memory:'),
    bus,
    log: silentLogger,
    now,
    excluded: () => new Set([SERVER]),
    reservedMacAt: (a) => reservations.find((r) => r.address === a)?.mac,
  });
  const env: StateMachineEnv = {
    leases,
    served: { reservationFor: (s, mac) => reservations.find((r) => r.subnet === s && r.mac === mac) },
    machines: staticMachines(opts.machines ?? new Map()),
    decide:
      opts.decide ??
      bootDecider({
        prefs: () => ({ unknownBootEnv: 'discovery' }),
        quirks: () => opts.quirks ?? [],
        httpPort: 8080,
      }),
    offers: offerGate({ offerSeconds: 60, now, held: (p) => leases.held(p as SubnetInfo), log: silentLogger }),
    isOurs: (serverId, server) => serverId === server,
    now,
    offerSeconds: 60,
    declineSeconds: 600,
    bus,
    log: opts.log ?? silentLogger,
    ...(opts.probe ? { probe: opts.probe } : {}),
    warnOnce: (_key, _obj, msg) => warnings.push(msg),
  };
  const lab = subnet();
  const ask = (p: DhcpPacket, s: SubnetInfo = lab) =>
    answerRequest(
      {
        pkt: p,
        mac: [...p.chaddr.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':'),
        type: p.options.get(Opt.MessageType)![0]!,
        subnet: s,
        server: SERVER,
        ingress: `eth0/${p.giaddr}`,
        source: p.ciaddr,
      },
      env,
    );
  return { env, leases, events, warnings, ask, lab, advance: (s: number) => (t += s * 1000) };
}

export function replied(o: Outcome): Reply {
  if (!o.reply) throw new Error(`expected a reply, got silence: ${(o as Silence).reason}`);
  return o;
}
export function silent(o: Outcome): Silence {
  if (o.reply) throw new Error(`expected silence, got message type ${o.reply.options.get(Opt.MessageType)?.[0]}`);
  return o;
}
export const typeOf = (r: Reply) => r.reply.options.get(Opt.MessageType)![0];
export const u32 = (b: Buffer | undefined) => b?.readUInt32BE(0);

/** DISCOVER then SELECTING REQUEST: the bound address. */
export async function bound(m: Awaited<ReturnType<typeof machine>>, mac: string) {
  const offer = replied(await m.ask(pkt(MessageType.DISCOVER, mac)));
  const ack = replied(
    await m.ask(
      pkt(MessageType.REQUEST, mac, {}, [
        [Opt.ServerId, ip4(SERVER)],
        [Opt.RequestedIp, ip4(offer.reply.yiaddr)],
      ]),
    ),
  );
  expect(typeOf(ack)).toBe(MessageType.ACK);
  return ack.reply.yiaddr;
}
