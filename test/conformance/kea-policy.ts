/**
 * Plinth next to kea-dhcp4 on the NAK-or-silence decisions of issue 13 (INIT-REBOOT with and without a record,
 * SELECTING outside the pool, RELEASE without 54): the same relayed packets to each server on loopback, one
 * line per case. A comparison to read, not a test (it needs kea-dhcp4 and never runs in the suite):
 *
 *   node --import tsx test/conformance/kea-policy.ts
 *
 * kea runs with `dhcp-socket-type: udp` on lo, ports 16767/16768 (`-p`/`-P`); Plinth on ports() of the test
 * helpers. Both serve 127.0.0.0/8 with the pool .100-.110; packets come "relayed" from 127.0.0.2.
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type DhcpPacket, decode, emptyPacket, encode, macBytes } from '../../src/dhcp/packet.js';
import { startDhcpServer } from '../../src/dhcp/server.js';
import { createBus } from '../../src/events.js';
import { silentLogger } from '../../src/log.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { ports } from '../dhcp/helpers.js';

const ip4 = (ip: string) => Buffer.from(ip.split('.').map(Number));
const NAMES: Record<number, string> = { 2: 'OFFER', 5: 'ACK', 6: 'NAK' };

/** A relay on 127.0.0.2 that sends to `port` and reads replies on `listen`. */
async function relay(port: number, listen: number, serverId: string) {
  const s = dgram.createSocket('udp4');
  const got = new Map<number, DhcpPacket>();
  s.on('message', (m) => {
    const d = decode(m);
    if (d.ok) got.set(d.packet.xid, d.packet);
  });
  await new Promise<void>((r) => s.bind(listen, '127.0.0.2', () => r()));
  let xid = 1;
  const send = async (type: number, mac: string, opts: [number, Buffer][] = [], extra: Partial<DhcpPacket> = {}) => {
    const p = emptyPacket(1);
    Object.assign(p, { xid: xid++, chaddr: macBytes(mac), giaddr: '127.0.0.2', hops: 1 }, extra);
    p.options.set(53, Buffer.from([type]));
    for (const [c, v] of opts) p.options.set(c, v);
    s.send(encode(p), port, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 300));
    const r = got.get(p.xid);
    return r ? { type: NAMES[r.options.get(53)![0]!] ?? '?', yiaddr: r.yiaddr } : undefined;
  };
  const dora = async (mac: string) => {
    const o = await send(1, mac);
    if (!o) throw new Error(`no OFFER for ${mac}`);
    await send(3, mac, [
      [54, ip4(serverId)],
      [50, ip4(o.yiaddr)],
    ]);
    return o.yiaddr;
  };
  return { send, dora, close: () => s.close() };
}

/** The cases, in order, against one server: one answer per case. */
async function cases(r: Awaited<ReturnType<typeof relay>>, sid: string): Promise<[string, string][]> {
  const out: [string, string][] = [];
  const say = (name: string, a: { type: string; yiaddr: string } | undefined) =>
    out.push([name, a ? `${a.type}${a.type === 'NAK' ? '' : ` ${a.yiaddr}`}` : 'silence']);
  const [A, B, C, D] = ['52:54:00:00:00:0a', '52:54:00:00:00:0b', '52:54:00:00:00:0c', '52:54:00:00:00:0d'];
  const ya = await r.dora(A);
  say("INIT-REBOOT, no record, another client's address", await r.send(3, B, [[50, ip4(ya)]]));
  say('INIT-REBOOT, no record, on the network outside the pool', await r.send(3, B, [[50, ip4('127.0.0.20')]]));
  say('INIT-REBOOT, no record, wrong network', await r.send(3, B, [[50, ip4('192.168.7.7')]]));
  const sel = (a: string): [number, Buffer][] => [
    [54, ip4(sid)],
    [50, ip4(a)],
  ];
  say('SELECTING this server, no lease, outside the pool', await r.send(3, C, sel('127.0.0.20')));
  say("SELECTING this server, no lease, another client's address", await r.send(3, C, sel(ya)));
  const yb = await r.dora(B);
  say("INIT-REBOOT, with a binding, another client's address", await r.send(3, B, [[50, ip4(ya)]]));
  say('INIT-REBOOT, with a binding, outside the pool', await r.send(3, B, [[50, ip4('127.0.0.20')]]));
  await r.send(7, B, [], { ciaddr: yb });
  const after = await r.send(1, D, [[50, ip4(yb)]]);
  out.push([
    'RELEASE without 54 (then another client asks for that address)',
    after?.yiaddr === yb ? 'released (offered to the other)' : 'ignored (still held)',
  ]);
  return out;
}

async function kea(dir: string): Promise<[string, string][]> {
  const conf = {
    Dhcp4: {
      'interfaces-config': { interfaces: ['lo'], 'dhcp-socket-type': 'udp' },
      'lease-database': { type: 'memfile', persist: false },
      'valid-lifetime': 4000,
      subnet4: [{ id: 1, subnet: '127.0.0.0/8', pools: [{ pool: '127.0.0.100 - 127.0.0.110' }] }],
      loggers: [{ name: 'kea-dhcp4', output_options: [{ output: path.join(dir, 'kea.log') }], severity: 'INFO' }],
    },
  };
  const file = path.join(dir, 'kea.json');
  writeFileSync(file, JSON.stringify(conf));
  const env = { ...process.env, KEA_PIDFILE_DIR: dir, KEA_LOCKFILE_DIR: dir };
  const child = spawn('kea-dhcp4', ['-c', file, '-p', '16767', '-P', '16768'], { env, stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 1500));
    const r = await relay(16767, 16768, '127.0.0.1');
    try {
      return await cases(r, '127.0.0.1');
    } finally {
      r.close();
    }
  } finally {
    child.kill();
  }
}

async function plinth(): Promise<[string, string][]> {
  const store = openSqliteStore(':memory:');
  const p = ports();
  const subnet = { name: 'lo', subnet: '127.0.0.0/8', activeStart: '127.0.0.100', activeEnd: '127.0.0.110' };
  await store.create('subnets', 'lo', subnet);
  const server = await startDhcpServer({
    store,
    bus: createBus(),
    log: silentLogger,
    httpPort: 8080,
    serverAddress: '127.0.0.1',
    wildcard: true,
    replyTo: () => ({ address: '127.0.0.2', port: p.clientPort }),
    ...p,
  });
  const r = await relay(p.port, p.clientPort, '127.0.0.1');
  try {
    return await cases(r, '127.0.0.1');
  } finally {
    r.close();
    await server.close();
    await store.close();
  }
}

const dir = mkdtempSync(path.join(tmpdir(), 'plinth-keapolicy-'));
try {
  const k = await kea(dir);
  const p = await plinth();
  console.log(`| case | kea-dhcp4 | Plinth |\n| --- | --- | --- |`);
  for (let i = 0; i < k.length; i++) console.log(`| ${k[i]![0]} | ${k[i]![1]} | ${p[i]![1]} |`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
