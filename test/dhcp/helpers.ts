/** Test helpers: a tiny pcap reader, request builders, a loopback DHCP client, a server with a store. */
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import pino from 'pino';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { type DhcpPacket, decode, emptyPacket, encode, macBytes } from '../../src/dhcp/packet.js';
import { type DhcpServer, type DhcpServerOptions, startDhcpServer } from '../../src/dhcp/server.js';
import { type Bus, createBus, type PlinthEvent } from '../../src/events.js';
import { type Logger, silentLogger } from '../../src/log.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';

export type PcapUdp = { ts: number; src: string; dst: string; sport: number; dport: number; payload: Buffer };

/** Reads UDP/IPv4 datagrams over Ethernet from a classic pcap file (the lab's tcpdump -w output). */
export function readPcapUdp(file: string): PcapUdp[] {
  const b = readFileSync(file);
  const magic = b.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  const nano = magic === 0xa1b23c4d || magic === 0x4d3cb2a1;
  const u32 = (o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const linktype = u32(20);
  if (linktype !== 1) throw new Error(`pcap link type ${linktype}: only Ethernet (1) is read here`);
  const out: PcapUdp[] = [];
  let off = 24;
  while (off + 16 <= b.length) {
    const ts = u32(off) + u32(off + 4) / (nano ? 1e9 : 1e6);
    const incl = u32(off + 8);
    const frame = b.subarray(off + 16, off + 16 + incl);
    off += 16 + incl;
    let p = 12;
    let etype = frame.readUInt16BE(p);
    if (etype === 0x8100) {
      p += 4;
      etype = frame.readUInt16BE(p);
    }
    if (etype !== 0x0800) continue;
    const ip = frame.subarray(p + 2);
    const ihl = (ip[0]! & 0x0f) * 4;
    if (ip[9] !== 17) continue;
    const ipStr = (o: number) => `${ip[o]}.${ip[o + 1]}.${ip[o + 2]}.${ip[o + 3]}`;
    const udp = ip.subarray(ihl);
    const ulen = udp.readUInt16BE(4);
    out.push({
      ts,
      src: ipStr(12),
      dst: ipStr(16),
      sport: udp.readUInt16BE(0),
      dport: udp.readUInt16BE(2),
      payload: Buffer.from(udp.subarray(8, Math.min(ulen, udp.length))),
    });
  }
  return out;
}

export function request(
  type: number,
  mac: string,
  extra: Partial<DhcpPacket> = {},
  options: [number, Buffer][] = [],
): DhcpPacket {
  const p = emptyPacket(1);
  p.xid = Math.floor(Math.random() * 0xffffffff);
  p.chaddr = macBytes(mac);
  Object.assign(p, extra);
  p.options.set(Opt.MessageType, Buffer.from([type]));
  for (const [c, v] of options) p.options.set(c, v);
  return p;
}

export const ip4 = (ip: string) => Buffer.from(ip.split('.').map(Number));

// Below Linux's ephemeral range (32768-60999): sockets bound to port 0 anywhere on the machine (other test
// files, other suites) cannot take these, which made a server start fail now and then with EADDRINUSE.
let nextPort = 10000 + Math.floor(Math.random() * 22000);
/** Consecutive ports for one test server (server, proxy, client, relay). */
export function ports() {
  nextPort += 7;
  if (nextPort > 32700) nextPort = 10000;
  return { port: nextPort, proxyPort: nextPort + 1, clientPort: nextPort + 2, relayPort: nextPort + 3 };
}

/** A UDP endpoint on loopback that collects decoded DHCP replies. */
export async function listener(port: number, address = '127.0.0.1') {
  const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  const got: { pkt: DhcpPacket; from: dgram.RemoteInfo }[] = [];
  const raw: Buffer[] = [];
  const waiters: (() => void)[] = [];
  s.on('message', (m, r) => {
    raw.push(m);
    const d = decode(m);
    if (d.ok) got.push({ pkt: d.packet, from: r });
    for (const w of waiters.splice(0)) w();
  });
  await new Promise<void>((res) => s.bind(port, address, () => res()));
  return {
    socket: s,
    got,
    raw,
    /** Next reply with this xid, or undefined after `ms`. */
    async wait(xid: number, ms = 1000): Promise<DhcpPacket | undefined> {
      const end = Date.now() + ms;
      for (;;) {
        const i = got.findIndex((g) => g.pkt.xid === xid);
        if (i >= 0) return got.splice(i, 1)[0]!.pkt;
        const left = end - Date.now();
        if (left <= 0) return undefined;
        await new Promise<void>((res) => {
          const t = setTimeout(res, left);
          waiters.push(() => {
            clearTimeout(t);
            res();
          });
        });
      }
    },
    send(p: DhcpPacket | Buffer, port: number, to = '127.0.0.1') {
      return new Promise<void>((res, rej) =>
        s.send(Buffer.isBuffer(p) ? p : encode(p), port, to, (e) => (e ? rej(e) : res())),
      );
    },
    close: () => new Promise<void>((res) => s.close(() => res())),
  };
}

export type TestEnv = {
  store: Store;
  bus: Bus;
  events: PlinthEvent[];
  /** Where the server meant to send each reply (before the loopback rewrite). */
  dests: { address: string; port: number; kind: string }[];
  server: DhcpServer;
  client: Awaited<ReturnType<typeof listener>>;
  p: ReturnType<typeof ports>;
  close(): Promise<void>;
  /** DISCOVER + REQUEST; returns the ACK (or NAK/undefined). */
  dora(
    mac: string,
    opts?: [number, Buffer][],
    extra?: Partial<DhcpPacket>,
  ): Promise<{ offer?: DhcpPacket; ack?: DhcpPacket }>;
};

export const SUBNET = {
  name: 'lab',
  subnet: '10.99.1.0/24',
  activeStart: '10.99.1.100',
  activeEnd: '10.99.1.199',
  leaseTime: 3600,
  reservedLeaseTime: 7200,
  options: [{ code: 3, value: '10.99.1.1' }],
  enabled: true,
  proxy: false,
  unmanaged: false,
  onlyReservations: false,
  pickers: ['hint', 'nextFree', 'mostExpired'],
  description: '',
};

export async function testEnv(
  setup: (store: Store) => Promise<void> = async (s) => {
    await s.create('subnets', SUBNET.name, SUBNET);
  },
  opts: Partial<DhcpServerOptions> = {},
  file = ':memory:',
): Promise<TestEnv> {
  const store = openSqliteStore(file);
  await setup(store);
  const bus = createBus();
  const events: PlinthEvent[] = [];
  bus.on((e) => events.push(e));
  const p = ports();
  const dests: TestEnv['dests'] = [];
  const server = await startDhcpServer({
    store,
    bus,
    log: silentLogger,
    httpPort: 8080,
    serverAddress: '10.99.1.1',
    wildcard: true,
    replyTo: (d, kind) => {
      dests.push({ ...d, kind });
      return { address: '127.0.0.1', port: d.port };
    },
    ...p,
    ...opts,
  });
  const client = await listener(p.clientPort);
  const env: TestEnv = {
    store,
    bus,
    events,
    dests,
    server,
    client,
    p,
    async close() {
      await client.close();
      await server.close();
      await store.close();
    },
    async dora(mac, o = [], extra = {}) {
      const d = request(MessageType.DISCOVER, mac, { flags: 0x8000, ...extra }, o);
      await client.send(d, p.port);
      const offer = await client.wait(d.xid);
      if (!offer) return {};
      const r = request(MessageType.REQUEST, mac, { xid: d.xid, flags: 0x8000, ...extra }, [
        ...o,
        [Opt.ServerId, offer.options.get(Opt.ServerId)!],
        [Opt.RequestedIp, ip4(offer.yiaddr)],
      ]);
      await client.send(r, p.port);
      return { offer, ack: await client.wait(d.xid) };
    },
  };
  return env;
}

export const msgType = (p: DhcpPacket | undefined) => p?.options.get(Opt.MessageType)?.[0];

/** A warn-level logger whose lines (raw JSON text) the test reads. */
export function capturedLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { log: pino({ level: 'warn' }, sink), lines };
}
