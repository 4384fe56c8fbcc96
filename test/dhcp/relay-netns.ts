/**
 * Relay agent sub-options against Plinth and kea-dhcp4 side by side (root, the native helper built, kea-dhcp4
 * installed); not part of the unit suite:
 *   node --import tsx test/dhcp/relay-netns.ts
 * A relay namespace (plinth-dhcp-rlc, address 10.99.70.2 and the relay's 10.99.71.1) sends relayed DISCOVER and
 * REQUEST messages to the server namespace (plinth-dhcp-rls, 10.99.70.1) with option 82 carrying link
 * selection (RFC 3527: 10.99.72.0, another subnet than giaddr's 10.99.71.0/24) and server identifier override
 * (RFC 5107: 10.99.71.1), and prints what each server answered: the subnet of yiaddr, option 54, the REQUEST's
 * answer, and the answer to a relayed IPoIB DISCOVER (RFC 4390: hlen 0, client identifier). One server runs at a time; namespaces deleted at the end; every process ours and bounded in time.
 */
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeSubOptions, MessageType, messageTypeName, Opt, RelaySub } from '../../src/dhcp/options.js';
import { type DhcpPacket, decode, emptyPacket, encode, macBytes } from '../../src/dhcp/packet.js';
import { addNamespace, addVeth, deleteNamespaces, ipn, runIn, startIn } from '../e2e/dhcp-netns.js';

const SRV = 'plinth-dhcp-rls';
const CL = 'plinth-dhcp-rlc';
const ip4 = (ip: string) => Buffer.from(ip.split('.').map(Number));
const SUBNETS = [
  { name: 'relay', subnet: '10.99.71.0/24', start: '10.99.71.10', end: '10.99.71.20' },
  { name: 'linked', subnet: '10.99.72.0/24', start: '10.99.72.10', end: '10.99.72.20' },
];

/** In the relay namespace: the exchanges, as JSON on stdout. */
async function relay() {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(67, '0.0.0.0', () => r()));
  const inbox: DhcpPacket[] = [];
  s.on('message', (m) => {
    const d = decode(m);
    if (d.ok) inbox.push(d.packet);
  });
  const ask = async (p: DhcpPacket) => {
    s.send(encode(p), 67, '10.99.70.1');
    for (let i = 0; i < 40; i++) {
      const at = inbox.findIndex((x) => x.xid === p.xid);
      if (at >= 0) return inbox.splice(at, 1)[0];
      await new Promise((r) => setTimeout(r, 50));
    }
    return undefined;
  };
  const o82 = encodeSubOptions(
    [
      [RelaySub.CircuitId, Buffer.from('port7')],
      [RelaySub.LinkSelection, ip4('10.99.72.0')],
      [RelaySub.ServerIdOverride, ip4('10.99.71.1')],
    ],
    false,
  );
  const msg = (type: number, xid: number, opts: [number, Buffer][]) => {
    const p = emptyPacket(1);
    p.xid = xid;
    p.hops = 1;
    p.giaddr = '10.99.71.1';
    p.chaddr = macBytes('52:54:00:70:00:01');
    p.options.set(Opt.MessageType, Buffer.from([type]));
    for (const [c, v] of opts) p.options.set(c, v);
    return p;
  };
  const show = (p: DhcpPacket | undefined) =>
    p && {
      type: messageTypeName(p.options.get(Opt.MessageType)?.[0]),
      yiaddr: p.yiaddr,
      serverId: p.options.get(Opt.ServerId)?.join('.'),
      o82echoed: p.options.get(Opt.RelayAgentInfo)?.equals(o82) ?? false,
    };
  const offer = await ask(msg(MessageType.DISCOVER, 0x7001, [[Opt.RelayAgentInfo, o82]]));
  const req = (withSub: boolean) =>
    msg(MessageType.REQUEST, withSub ? 0x7003 : 0x7002, [
      [Opt.ServerId, ip4('10.99.71.1')],
      [Opt.RequestedIp, ip4(offer?.yiaddr ?? '0.0.0.0')],
      ...(withSub ? ([[Opt.RelayAgentInfo, o82]] as [number, Buffer][]) : []),
    ]);
  const noSub = await ask(req(false));
  await ask(msg(MessageType.DISCOVER, 0x7004, [[Opt.RelayAgentInfo, o82]]));
  const withSub = await ask(req(true));
  // RFC 4390: an IPoIB client (htype 32, hlen 0, chaddr zero) named by its client identifier, through the relay.
  const ib = msg(MessageType.DISCOVER, 0x7005, [
    [Opt.ClientId, Buffer.from([255, 0, 0, 0, 1, 0, 3, 0, 32, 0x80, 0, 2, 8, 0xfe, 0x80, 0, 1])],
  ]);
  ib.htype = 32;
  ib.hlen = 0;
  ib.chaddr = Buffer.alloc(16);
  ib.flags = 0x8000;
  const ibOffer = await ask(ib);
  console.log(
    JSON.stringify({
      ipoibOffer: ibOffer ? { ...show(ibOffer), htype: ibOffer.htype, hlen: ibOffer.hlen } : 'silence',
      offer: show(offer),
      requestNamingOverrideWithoutSubOption: show(noSub) ?? 'silence',
      requestNamingOverrideWithSubOption: show(withSub) ?? 'silence',
    }),
  );
  s.close();
}

function keaConfig() {
  return {
    Dhcp4: {
      'interfaces-config': { interfaces: ['veth-s'], 'dhcp-socket-type': 'udp' },
      'lease-database': { type: 'memfile', persist: false },
      subnet4: SUBNETS.map((s, i) => ({ id: i + 1, subnet: s.subnet, pools: [{ pool: `${s.start} - ${s.end}` }] })),
      loggers: [{ name: 'kea-dhcp4', output_options: [{ output: 'stdout' }], severity: 'INFO' }],
    },
  };
}

async function main() {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const self = fileURLToPath(import.meta.url);
  const tmp = mkdtempSync(path.join(tmpdir(), 'plinth-dhcp-relay-'));
  deleteNamespaces([SRV, CL]);
  addNamespace(SRV);
  addNamespace(CL);
  try {
    addVeth({ ns: SRV, ifname: 'veth-s', cidr: '10.99.70.1/24' }, { ns: CL, ifname: 'veth-c', cidr: '10.99.70.2/24' });
    ipn(CL, 'addr', 'add', '10.99.71.1/24', 'dev', 'veth-c');
    ipn(SRV, 'route', 'add', '10.99.71.0/24', 'via', '10.99.70.2');
    writeFileSync(path.join(tmp, 'kea.json'), JSON.stringify(keaConfig()));
    writeFileSync(
      path.join(tmp, 'cfg.json'),
      JSON.stringify({
        store: path.join(tmp, 'plinth.db'),
        interfaces: ['veth-s'],
        subnets: SUBNETS.map((s) => ({
          name: s.name,
          subnet: s.subnet,
          activeStart: s.start,
          activeEnd: s.end,
          leaseTime: 600,
          options: [],
        })),
        logLevel: 'warn',
      }),
    );
    const servers: [string, string[], RegExp][] = [
      [
        'Plinth',
        [process.execPath, '--import', 'tsx', path.join(root, 'test/e2e/dhcp-run.ts'), path.join(tmp, 'cfg.json')],
        /READY/,
      ],
      [
        'kea-dhcp4',
        ['env', `KEA_PIDFILE_DIR=${tmp}`, `KEA_LOCKFILE_DIR=${tmp}`, 'kea-dhcp4', '-c', path.join(tmp, 'kea.json')],
        /DHCP4_STARTED/,
      ],
    ];
    for (const [name, cmd, ready] of servers) {
      const srv = await startIn(SRV, cmd, (o) => ready.test(o), 30_000);
      try {
        const r = await runIn(CL, [process.execPath, '--import', 'tsx', self, 'relay'], 30_000);
        console.log(name, r.out.trim());
      } finally {
        await srv.stop();
      }
    }
  } finally {
    deleteNamespaces([SRV, CL]);
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'relay') await relay();
else await main();
