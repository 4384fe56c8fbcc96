/**
 * The random-MAC DISCOVER flood of issue 11 against a real server in network namespaces (root, the native helper
 * built, dhclient installed), for the figures in src/dhcp/README.md ("Under attack"); not part of the unit suite:
 *   node --import tsx test/dhcp/flood-netns.ts
 * A server namespace serves a /24 pool of 245 addresses on a bridge (auto mode is not used: `interfaces: [br0]`);
 * a client namespace sends a burst of 400 DISCOVERs from random MACs, then 400 a second for 15 s while dhclient
 * asks on the MAC of a machine of the inventory, then on an unknown MAC. Bounded: 6,400 packets, about 25 s.
 * The namespaces are plinth-dhcp-fs and plinth-dhcp-fc, deleted at the end.
 * With `send IFNAME N PER_SECOND` it is the sender itself (run inside the client namespace).
 */
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadNetAddon } from '../../src/dhcp/bind.js';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { decode, emptyPacket, encode } from '../../src/dhcp/packet.js';
import { addBridge, addNamespace, addVeth, deleteNamespaces, runIn, startIn } from '../e2e/dhcp-netns.js';

async function send(ifname: string, n: number, perSec: number) {
  const addon = loadNetAddon();
  if (!addon) throw new Error('the native helper is not built: npm run build:native');
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind({ fd: addon.openUdp4(ifname, 68) }, () => r()));
  s.setBroadcast(true);
  const xids = new Set<number>();
  let offers = 0;
  s.on('message', (m) => {
    const d = decode(m);
    if (d.ok && xids.has(d.packet.xid) && d.packet.options.get(Opt.MessageType)?.[0] === MessageType.OFFER) offers++;
  });
  const t0 = Date.now();
  for (let i = 0; i < n; i++) {
    const p = emptyPacket(1);
    p.xid = (0x7000_0000 + i) >>> 0;
    xids.add(p.xid);
    p.flags = 0x8000;
    p.chaddr = Buffer.from([0x02, ...Array.from({ length: 5 }, () => Math.floor(Math.random() * 256))]);
    p.options.set(Opt.MessageType, Buffer.from([MessageType.DISCOVER]));
    await new Promise<void>((r) => s.send(encode(p), 67, '255.255.255.255', () => r()));
    if (perSec && i % 20 === 19)
      await new Promise((r) => setTimeout(r, Math.max(0, t0 + ((i + 1) * 1000) / perSec - Date.now())));
  }
  const sentMs = Date.now() - t0;
  await new Promise((r) => setTimeout(r, 3000));
  console.log(JSON.stringify({ sent: n, sentMs, offers }));
  s.close();
}

async function main() {
  const SRV = 'plinth-dhcp-fs';
  const CL = 'plinth-dhcp-fc';
  const self = fileURLToPath(import.meta.url);
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const tmp = mkdtempSync(path.join(tmpdir(), 'plinth-dhcp-flood-'));
  deleteNamespaces([SRV, CL]);
  addNamespace(SRV);
  addNamespace(CL);
  try {
    addBridge(SRV, 'br0', '10.99.41.1/24');
    addVeth({ ns: SRV, ifname: 'fp0', bridge: 'br0' }, { ns: CL, ifname: 'eth0', mac: '52:54:00:41:00:01' });
    addVeth({ ns: SRV, ifname: 'fp1', bridge: 'br0' }, { ns: CL, ifname: 'eth1', mac: '52:54:00:41:00:02' });
    addVeth({ ns: SRV, ifname: 'fp2', bridge: 'br0' }, { ns: CL, ifname: 'eth2', mac: '52:54:00:41:00:03' });
    const cfg = {
      store: path.join(tmp, 'plinth.db'),
      interfaces: ['br0'],
      subnets: [
        {
          name: 'f',
          subnet: '10.99.41.0/24',
          activeStart: '10.99.41.10',
          activeEnd: '10.99.41.254',
          leaseTime: 600,
          options: [],
        },
      ],
      machines: [{ uuid: 'm1', name: 'known', macs: ['52:54:00:41:00:01'] }],
      logLevel: 'warn',
    };
    writeFileSync(path.join(tmp, 'cfg.json'), JSON.stringify(cfg));
    const tsx = [process.execPath, '--import', 'tsx'];
    const srv = await startIn(
      SRV,
      [...tsx, path.join(root, 'test/e2e/dhcp-run.ts'), path.join(tmp, 'cfg.json')],
      (o) => o.includes('READY'),
      30_000,
    );
    try {
      const burst = await runIn(CL, [...tsx, self, 'send', 'eth1', '400', '0'], 30_000);
      console.log('burst of 400 DISCOVERs', burst.out.trim());
      const sustained = runIn(CL, [...tsx, self, 'send', 'eth1', '6000', '400'], 60_000);
      await new Promise((r) => setTimeout(r, 2000));
      const dhclient = async (ifname: string) => {
        const t = Date.now();
        const lf = path.join(tmp, `${ifname}.leases`);
        const pf = path.join(tmp, `${ifname}.pid`);
        const r = await runIn(
          CL,
          ['dhclient', '-4', '-v', '-1', '-sf', '/bin/true', '-lf', lf, '-pf', pf, ifname],
          60_000,
        );
        await runIn(CL, ['sh', '-c', `kill $(cat ${pf}) 2>/dev/null; true`]);
        return { ms: Date.now() - t, bound: /bound to ([\d.]+)/.exec(r.out)?.[1] };
      };
      console.log('machine of the inventory, dhclient', JSON.stringify(await dhclient('eth0')));
      console.log('unknown newcomer, dhclient', JSON.stringify(await dhclient('eth2')));
      console.log('400 DISCOVERs a second for 15 s', (await sustained).out.trim());
    } finally {
      await srv.stop();
      console.log(
        'server',
        srv
          .out()
          .split('\n')
          .filter((l) => l.includes('"stats"'))
          .join('\n'),
      );
    }
  } finally {
    deleteNamespaces([SRV, CL]);
    rmSync(tmp, { recursive: true, force: true });
  }
}

const [mode, ifname, n, perSec] = process.argv.slice(2);
if (mode === 'send') await send(ifname!, Number(n), Number(perSec));
else await main();
