/**
 * proxyDHCP beside dnsmasq (the network's address server, no PXE options), and the RA responder:
 *
 *   plinth-dhcp-pxs: br0 10.99.34.1/24, dnsmasq giving 10.99.34.100-150
 *   plinth-dhcp-pxp: eth0 10.99.34.2/24 on br0, Plinth with a proxy subnet
 *   plinth-dhcp-pxc: eth0 on br0, the client (crafted packets copied from the lab's OVMF capture, udhcpc, rdisc6)
 *
 * QEMU boots through the proxy come with the boot issue; here: the proxy OFFER, the 4011 exchange, silence
 * towards non-PXE clients, and an RA of lifetime 0 to a router solicitation.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureAddon } from '../dhcp/addon.js';
import { readPcapUdp } from '../dhcp/helpers.js';
import { addBridge, addNamespace, addVeth, deleteNamespaces, type Proc, runIn, sh, startIn } from './dhcp-netns.js';

const PXS = 'plinth-dhcp-pxs';
const PXP = 'plinth-dhcp-pxp';
const PXC = 'plinth-dhcp-pxc';
const ALL = [PXS, PXP, PXC];
const root = fileURLToPath(new URL('../../', import.meta.url));
const tmp = mkdtempSync(path.join(tmpdir(), 'plinth-dhcp-proxy-'));
const procs: Proc[] = [];
const capture = readPcapUdp(path.join(root, 'test/fixtures/dhcp/proxy-uefi-native-pxe.pcap'));
const ovmfDiscover = capture.find((u) => u.dport === 67)!.payload; // OVMF native PXE, arch 7, broadcast flag
const ovmf4011 = capture.find((u) => u.dport === 4011 && u.sport === 4011)!.payload; // its boot-server REQUEST

let plinth: Proc;
beforeAll(async () => {
  if (!ensureAddon())
    throw new Error('the native socket helper could not be built: npm run build:native (needs g++, make, python3)');
  deleteNamespaces(ALL);
  for (const n of ALL) {
    addNamespace(n);
    // No duplicate address detection: link-local addresses usable at once for the RS/RA test.
    sh(['ip', 'netns', 'exec', n, 'sysctl', '-q', '-w', 'net.ipv6.conf.default.accept_dad=0']);
  }
  addBridge(PXS, 'br0', '10.99.34.1/24');
  addVeth({ ns: PXS, ifname: 'pp', bridge: 'br0' }, { ns: PXP, ifname: 'eth0', cidr: '10.99.34.2/24' });
  addVeth({ ns: PXS, ifname: 'pc', bridge: 'br0' }, { ns: PXC, ifname: 'eth0', mac: '52:54:00:00:00:22' });
  procs.push(
    await startIn(
      PXS,
      [
        'dnsmasq',
        '-k',
        '--conf-file=/dev/null',
        '--port=0',
        '--interface=br0',
        '--bind-interfaces',
        '--no-ping',
        '--dhcp-authoritative',
        '--dhcp-range=10.99.34.100,10.99.34.150,1h',
        `--dhcp-leasefile=${tmp}/dnsmasq.leases`,
        `--pid-file=${tmp}/dnsmasq.pid`,
        '--log-facility=-',
      ],
      (o) => /DHCP, IP range/.test(o),
      10_000,
    ),
  );
  const cfg = {
    store: path.join(tmp, 'plinth.db'),
    interfaces: ['eth0'],
    subnets: [{ name: 'pxe', subnet: '10.99.34.0/24', proxy: true }],
    prefs: { answerRouterSolicitations: true },
  };
  writeFileSync(path.join(tmp, 'cfg.json'), JSON.stringify(cfg));
  plinth = await startIn(
    PXP,
    [process.execPath, '--import', 'tsx', path.join(root, 'test/e2e/dhcp-run.ts'), path.join(tmp, 'cfg.json')],
    (o) => o.includes('READY'),
    30_000,
  );
  procs.push(plinth);
});

afterAll(async () => {
  for (const p of procs.reverse()) await p.stop();
  deleteNamespaces(ALL);
  rmSync(tmp, { recursive: true, force: true });
});

const probe = async (spec: object) => {
  const r = await runIn(
    PXC,
    [process.execPath, '--import', 'tsx', path.join(root, 'test/e2e/dhcp-probe.ts'), JSON.stringify(spec)],
    20_000,
  );
  return r.out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
};

describe('proxyDHCP beside dnsmasq', () => {
  it("answers OVMF's captured DISCOVER with a proxy OFFER (no address) while dnsmasq offers the address", async () => {
    const replies = await probe({
      ifname: 'eth0',
      bindPort: 68,
      sends: [{ hex: ovmfDiscover.toString('hex'), to: '255.255.255.255', port: 67 }],
      listenMs: 1500,
    });
    const proxy = replies.find((r) => r.from === '10.99.34.2:67');
    const dns = replies.find((r) => r.from === '10.99.34.1:67');
    expect(proxy, JSON.stringify(replies)).toMatchObject({ yiaddr: '0.0.0.0', siaddr: '10.99.34.2', file: '' });
    expect(proxy.options[60]).toBe('PXEClient');
    expect(proxy.options[54]).toBe('10.99.34.2');
    expect(proxy.options[51]).toBeUndefined();
    expect(dns.yiaddr).toMatch(/^10\.99\.34\.1\d\d$/);
  });

  it('answers the boot-server REQUEST on port 4011 with the loader (what OVMF boots)', async () => {
    sh(['ip', '-n', PXC, 'addr', 'add', '10.99.34.50/24', 'dev', 'eth0']);
    try {
      const replies = await probe({
        ifname: 'eth0',
        bindPort: 4011,
        sends: [{ hex: ovmf4011.toString('hex'), to: '10.99.34.2', port: 4011, ciaddr: '10.99.34.50' }],
        listenMs: 1500,
      });
      expect(replies, JSON.stringify(replies)).toHaveLength(1);
      expect(replies[0]).toMatchObject({ from: '10.99.34.2:4011', siaddr: '10.99.34.2', file: 'ipxe.efi' });
      expect(replies[0].options[53]).toBe(5);
    } finally {
      sh(['ip', '-4', '-n', PXC, 'addr', 'flush', 'dev', 'eth0']);
    }
  });

  it('stays silent towards a plain DHCP client (udhcpc gets its address from dnsmasq)', async () => {
    const c = await runIn(
      PXC,
      ['udhcpc', '-i', 'eth0', '-n', '-q', '-f', '-t', '5', '-T', '2', '-s', '/bin/true'],
      30_000,
    );
    expect(c.out).toMatch(/lease of 10\.99\.34\.1\d\d obtained from 10\.99\.34\.1\b/);
    // Plinth decided no boot for it: nothing about that client in its log.
    expect(plinth.out()).not.toMatch(/udhcp/);
  });

  it('answers an IPv6 router solicitation with a unicast RA of lifetime 0', async () => {
    const r = await runIn(PXC, ['rdisc6', '-1', '-r', '3', '-w', '1000', 'eth0'], 15_000);
    expect(r.out, r.out).toMatch(/Router lifetime\s*:\s*0 \(0x0+\) seconds/);
    expect(r.out).toMatch(/Stateful address conf\.\s*:\s*No/);
  });
});
