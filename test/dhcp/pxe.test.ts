/**
 * The live server's PXE answers to the DISCOVERs and REQUESTs captured from QEMU firmware in the lab
 * (test/fixtures/dhcp/*.pcap): the right boot file, next-server, 175.176 for iPXE, option 60 for HTTP Boot,
 * nothing for an unmanaged subnet.
 */
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { decode, encode } from '../../src/dhcp/packet.js';
import { ip4, msgType, readPcapUdp, SUBNET, type TestEnv, testEnv } from './helpers.js';

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

const lab = {
  ...SUBNET,
  name: 'lab',
  subnet: '10.77.0.0/24',
  activeStart: '10.77.0.100',
  activeEnd: '10.77.0.199',
  options: [],
};
const first = (name: string, type: number) =>
  readPcapUdp(fileURLToPath(new URL(`../fixtures/dhcp/${name}.pcap`, import.meta.url)))
    .filter((u) => u.dport === 67)
    .map((u) => ({ raw: u.payload, d: decode(u.payload) }))
    .find((x) => x.d.ok && x.d.packet.options.get(Opt.MessageType)?.[0] === type)!;

async function exchange(name: string) {
  const disc = first(name, MessageType.DISCOVER);
  const req = first(name, MessageType.REQUEST);
  await env!.client.send(disc.raw, env!.p.port);
  const offer = await env!.client.wait(disc.d.ok ? disc.d.packet.xid : 0);
  // The captured REQUEST selects the address the lab's server offered; a client selects ours (an address
  // never offered to a client is NAKed in SELECTING), so option 50 becomes the one we offered.
  if (!req.d.ok || !offer) throw new Error(`${name}: no REQUEST in the capture, or no OFFER`);
  req.d.packet.options.set(Opt.RequestedIp, ip4(offer.yiaddr));
  await env!.client.send(encode(req.d.packet), env!.p.port);
  const ack = await env!.client.wait(req.d.ok ? req.d.packet.xid : 0);
  return { offer, ack };
}

describe('PXE answers to the captured firmware requests', () => {
  const cases: [string, string, boolean][] = [
    ['bios-ipxe-virtio', 'http://10.77.0.1:8080/boot/ipxe', true],
    ['uefi-ipxe-virtio', 'http://10.77.0.1:8080/boot/ipxe', true],
    ['uefi-native-pxe-tftp', 'ipxe.efi', false],
    ['uefi-httpboot', 'http://10.77.0.1:8080/files/ipxe.efi', false],
  ];
  for (const [name, file, ipxe] of cases) {
    it(`${name}: OFFER and ACK carry ${file}`, async () => {
      env = await testEnv(
        async (s) => {
          await s.create('subnets', 'lab', lab);
        },
        { serverAddress: '10.77.0.1' },
      );
      const { offer, ack } = await exchange(name);
      expect(msgType(offer)).toBe(MessageType.OFFER);
      expect(msgType(ack), name).toBe(MessageType.ACK);
      for (const r of [offer!, ack!]) {
        expect(r.file).toBe(file);
        expect(r.siaddr).toBe('10.77.0.1');
        expect(r.options.get(Opt.BootfileName)?.toString()).toBe(file);
        // iPXE: no-pxedhcp so it does not wait for a proxy; never for other clients.
        expect(r.options.get(175)?.equals(Buffer.from([176, 1, 1])) ?? false).toBe(ipxe);
      }
      if (name === 'uefi-httpboot') expect(ack!.options.get(Opt.VendorClass)?.toString()).toBe('HTTPClient');
      const boot = env.events.find((e) => e.type === 'dhcp.boot');
      expect(boot?.data?.reason).toMatch(/unknown machine/);
    });
  }

  it('an unmanaged subnet gives the address and no boot options', async () => {
    env = await testEnv(
      async (s) => {
        await s.create('subnets', 'lab', { ...lab, unmanaged: true });
      },
      { serverAddress: '10.77.0.1' },
    );
    const { offer, ack } = await exchange('uefi-native-pxe-tftp');
    expect(ack!.yiaddr).toMatch(/^10\.77\.0\.1\d\d$/);
    for (const r of [offer!, ack!]) {
      expect(r.file).toBe('');
      expect(r.options.has(Opt.BootfileName)).toBe(false);
    }
  });
});
