import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { BootOffer } from '../../src/dhcp/boot.js';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { decode } from '../../src/dhcp/packet.js';
import { listener, msgType, readPcapUdp, request, SUBNET, type TestEnv, testEnv } from './helpers.js';

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

const fixture = fileURLToPath(new URL('../fixtures/dhcp/proxy-uefi-native-pxe.pcap', import.meta.url));
const proxySubnet = { ...SUBNET, proxy: true, activeStart: undefined, activeEnd: undefined };
delete (proxySubnet as Record<string, unknown>).activeStart;
delete (proxySubnet as Record<string, unknown>).activeEnd;

describe('proxyDHCP', () => {
  it('answers the captured OVMF DISCOVER with a proxy OFFER (no address) and its 4011 REQUEST with the boot file', async () => {
    env = await testEnv(async (s) => {
      await s.create('subnets', 'lab', proxySubnet);
    });
    const pkts = readPcapUdp(fixture);
    const discover = pkts.find((u) => u.dport === 67)!;
    const d = decode(discover.payload);
    if (!d.ok) throw new Error(d.message);
    await env.client.send(discover.payload, env.p.port);
    const offer = await env.client.wait(d.packet.xid);
    expect(msgType(offer)).toBe(MessageType.OFFER);
    expect(offer!.yiaddr).toBe('0.0.0.0');
    expect(offer!.siaddr).toBe('10.99.1.1');
    expect(offer!.options.get(Opt.VendorClass)?.toString()).toBe('PXEClient');
    expect(offer!.options.get(Opt.ClientUuid)).toEqual(d.packet.options.get(Opt.ClientUuid));
    expect(offer!.options.has(Opt.LeaseTime)).toBe(false);
    expect(offer!.file).toBe(''); // edk2 takes the file from the 4011 ACK

    // The firmware's 4011 REQUEST as captured; the ACK goes back to its source port.
    const req4011 = pkts.find((u) => u.dport === 4011)!;
    const client4011 = await listener(env.p.clientPort + 10);
    try {
      await client4011.send(req4011.payload, env.p.proxyPort);
      const r = decode(req4011.payload);
      if (!r.ok) throw new Error(r.message);
      const ack = await client4011.wait(r.packet.xid);
      expect(msgType(ack)).toBe(MessageType.ACK);
      expect(ack!.file).toBe('ipxe.efi');
      expect(ack!.siaddr).toBe('10.99.1.1');
      expect(ack!.options.get(Opt.VendorClass)?.toString()).toBe('PXEClient');
      expect(env.dests.at(-1)).toMatchObject({ kind: 'proxy' });
    } finally {
      await client4011.close();
    }
  });

  it('ignores non-PXE clients and never offers addresses in proxy mode', async () => {
    env = await testEnv(async (s) => {
      await s.create('subnets', 'lab', proxySubnet);
    });
    const d = request(MessageType.DISCOVER, '52:54:00:00:03:01', { flags: 0x8000 }, [
      [Opt.VendorClass, Buffer.from('udhcp 1.35.0')],
    ]);
    await env.client.send(d, env.p.port);
    expect(await env.client.wait(d.xid, 300)).toBeUndefined();
    const ipxe = request(MessageType.DISCOVER, '52:54:00:00:03:02', { flags: 0x8000 }, [
      [Opt.VendorClass, Buffer.from('PXEClient:Arch:00000:UNDI:002001')],
      [Opt.ClientArch, Buffer.from([0, 0])],
      [Opt.UserClass, Buffer.from('iPXE')],
    ]);
    await env.client.send(ipxe, env.p.port);
    const offer = await env.client.wait(ipxe.xid);
    expect(offer!.yiaddr).toBe('0.0.0.0');
    // No file: iPXE then asks 4011 from its new address (the trust evidence, issue 11), and boots that ACK's file.
    expect(offer!.file).toBe('');
    expect(offer!.options.has(175)).toBe(false); // no-pxedhcp never in proxy replies
  });

  it('emits proxy.acked for a 4011 REQUEST whose ciaddr is its source address, and not otherwise (issue 11 trust evidence)', async () => {
    env = await testEnv(async (s) => {
      await s.create('subnets', 'lab', proxySubnet);
    });
    const pxe: [number, Buffer][] = [
      [Opt.VendorClass, Buffer.from('PXEClient:Arch:00007:UNDI:003016')],
      [Opt.ClientArch, Buffer.from([0, 7])],
    ];
    const c4011 = await listener(env.p.clientPort + 11);
    try {
      const ask = async (mac: string, ciaddr: string) => {
        const r = request(MessageType.REQUEST, mac, { ciaddr }, pxe);
        await c4011.send(r, env!.p.proxyPort);
        return c4011.wait(r.xid);
      };
      // ciaddr = the UDP source (the client holds that address): evidence.
      expect(msgType(await ask('52:54:00:00:04:01', '127.0.0.1'))).toBe(MessageType.ACK);
      // Answered too, but a ciaddr that is not the source (or none) proves nothing.
      expect(msgType(await ask('52:54:00:00:04:02', '10.99.1.150'))).toBe(MessageType.ACK);
      expect(msgType(await ask('52:54:00:00:04:03', '0.0.0.0'))).toBe(MessageType.ACK);
      const acked = env.events.filter((e) => e.type === 'proxy.acked');
      expect(acked).toEqual([
        expect.objectContaining({ key: '127.0.0.1', data: { mac: '52:54:00:00:04:01', subnet: 'lab' } }),
      ]);
    } finally {
      await c4011.close();
    }
  });

  it('hands each boot to onBoot with the client address: yiaddr in server mode, the 4011 ciaddr in proxy mode', async () => {
    const quirks = [{ match: { vendorClass: 'PXEClient:Arch:00007' }, blksize: 1200, why: 'lab firmware' }];
    const pxe: [number, Buffer][] = [
      [Opt.VendorClass, Buffer.from('PXEClient:Arch:00007:UNDI:003016')],
      [Opt.ClientArch, Buffer.from([0, 7])],
    ];
    const offers: BootOffer[] = [];
    env = await testEnv(undefined, { quirks, onBoot: (o) => offers.push(o) });
    const { ack } = await env.dora('52:54:00:00:05:01', pxe);
    expect(ack?.file).toBe('ipxe.efi');
    expect(offers.map((o) => [o.mode, o.address, o.blksize?.value])).toEqual([
      ['server', ack!.yiaddr, 1200],
      ['server', ack!.yiaddr, 1200],
    ]);
    await env.close();

    offers.length = 0;
    env = await testEnv(
      async (s) => {
        await s.create('subnets', 'lab', proxySubnet);
      },
      {
        quirks,
        onBoot: (o) => {
          offers.push(o);
          throw new Error('a broken session store must not stop the reply');
        },
      },
    );
    const c4011 = await listener(env.p.clientPort + 12);
    try {
      const r = request(MessageType.REQUEST, '52:54:00:00:05:02', { ciaddr: '127.0.0.1' }, pxe);
      await c4011.send(r, env.p.proxyPort);
      expect(msgType(await c4011.wait(r.xid))).toBe(MessageType.ACK);
      expect(offers).toEqual([
        expect.objectContaining({
          mac: '52:54:00:00:05:02',
          mode: 'proxy',
          address: '127.0.0.1',
          filename: 'ipxe.efi',
          blksize: { value: 1200, why: 'lab firmware' },
        }),
      ]);
      expect(env.events.filter((e) => e.type === 'dhcp.boot')).toHaveLength(1);
    } finally {
      await c4011.close();
    }
  });
});
