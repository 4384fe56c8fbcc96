/**
 * Golden packets: DHCP exchanges captured from QEMU firmware in ../shared/lab (SeaBIOS+iPXE, OVMF+iPXE,
 * OVMF native PXE, OVMF HTTP Boot, proxyDHCP beside dnsmasq), filtered to ports 67/68/4011.
 * - our decode must equal <name>.expected.json (UPDATE_GOLDEN=1 rewrites it; review the diff);
 * - independently, the option order of every port 67/68 packet must equal what the lab's scapy decoder printed
 *   (<name>.lab-decoded.txt, copied from the lab unchanged);
 * - every decoded packet re-encodes to the same options;
 * - the client requests get the boot file the lab's reference setup gave them.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { decideBoot } from '../../src/boot/decide.js';
import { decodeOptionValue, decodeUserClass, messageTypeName, Opt } from '../../src/dhcp/options.js';
import { type DhcpPacket, decode, encode, macOf } from '../../src/dhcp/packet.js';
import { readPcapUdp } from './helpers.js';

const dir = fileURLToPath(new URL('../fixtures/dhcp/', import.meta.url));
const NAMES = [
  'bios-ipxe-virtio',
  'uefi-ipxe-virtio',
  'uefi-native-pxe-tftp',
  'uefi-httpboot',
  'proxy-bios-ipxe',
  'proxy-uefi-native-pxe',
];

function summarize(p: DhcpPacket) {
  return {
    op: p.op,
    type: messageTypeName(p.options.get(Opt.MessageType)?.[0]),
    xid: `0x${p.xid.toString(16).padStart(8, '0')}`,
    mac: macOf(p),
    flags: p.flags,
    ciaddr: p.ciaddr,
    yiaddr: p.yiaddr,
    siaddr: p.siaddr,
    giaddr: p.giaddr,
    sname: p.sname,
    file: p.file,
    order: [...p.options.keys()],
    options: Object.fromEntries([...p.options].map(([c, v]) => [c, decodeOptionValue(c, v)])),
  };
}

function labOrders(name: string): number[][] {
  const text = readFileSync(`${dir}${name}.lab-decoded.txt`, 'utf8');
  const out: number[][] = [];
  let inDhcp = false;
  for (const line of text.split('\n')) {
    if (/^\[/.test(line)) inDhcp = / DHCP /.test(line);
    const m = /option order: \[([\d, ]*)\]/.exec(line);
    if (m && inDhcp) out.push(m[1]!.split(',').map((s) => Number(s.trim())));
  }
  return out;
}

describe('golden packets from the lab captures', () => {
  for (const name of NAMES) {
    it(`${name}: decodes as recorded, option order matches the lab's scapy decode, re-encodes`, () => {
      const udp = readPcapUdp(`${dir}${name}.pcap`);
      expect(udp.length).toBeGreaterThan(0);
      const decoded = udp.map((u) => {
        const d = decode(u.payload);
        if (!d.ok) throw new Error(`${name}: ${d.code} ${d.message}`);
        return { u, p: d.packet };
      });
      const summary = decoded.map(({ u, p }) => ({
        from: `${u.src}:${u.sport}`,
        to: `${u.dst}:${u.dport}`,
        ...summarize(p),
      }));
      const file = `${dir}${name}.expected.json`;
      if (process.env.UPDATE_GOLDEN) writeFileSync(file, `${JSON.stringify(summary, null, 1)}\n`);
      expect(summary).toEqual(JSON.parse(readFileSync(file, 'utf8')));

      const ours = decoded
        .filter(({ u }) => u.sport !== 4011 && u.dport !== 4011)
        .map(({ p }) => [...p.options.keys()]);
      expect(ours).toEqual(labOrders(name));

      for (const { p } of decoded) {
        const again = decode(encode(p, 1500));
        expect(again.ok).toBe(true);
        if (again.ok) expect([...again.packet.options]).toEqual([...p.options]);
      }
    });
  }

  it('the firmware requests get the boot file the lab reference gave them', () => {
    const expectations: Record<string, string> = {
      'bios-ipxe-virtio': 'http://10.77.0.1:8080/boot/ipxe',
      'uefi-ipxe-virtio': 'http://10.77.0.1:8080/boot/ipxe',
      'uefi-native-pxe-tftp': 'ipxe.efi',
      'uefi-httpboot': 'http://10.77.0.1:8080/files/ipxe.efi',
    };
    for (const [name, want] of Object.entries(expectations)) {
      const first = readPcapUdp(`${dir}${name}.pcap`).find((u) => u.dport === 67);
      const d = decode(first!.payload);
      if (!d.ok) throw new Error(d.message);
      const p = d.packet;
      const uc = p.options.get(Opt.UserClass);
      const decision = decideBoot({
        mac: macOf(p),
        arch: p.options.get(Opt.ClientArch)?.readUInt16BE(0),
        vendorClass: p.options.get(Opt.VendorClass)?.toString('latin1'),
        userClass: uc ? decodeUserClass(uc) : undefined,
        prefs: { unknownBootEnv: 'discovery' },
        server: { address: '10.77.0.1', httpPort: 8080 },
        mode: 'full',
      });
      expect(decision.boot, name).toBe(true);
      if (decision.boot) expect(decision.filename, name).toBe(want);
    }
  });
});
