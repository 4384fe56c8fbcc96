/**
 * RFC 4390 (DHCP over InfiniBand): htype 32, hlen 0, chaddr zeroed, the broadcast flag set and a client
 * identifier (61: type 255, IAID, DUID, RFC 4361) that alone names the client. Served, leases keyed by it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { type DhcpPacket, decode, encode, macOf, ZERO_MAC } from '../../src/dhcp/packet.js';
import { ip4, msgType, request, SUBNET, type TestEnv, testEnv } from './helpers.js';

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

/** An RFC 4361 client identifier: 255, a 4-byte IAID, a DUID-LL-like DUID. */
const cidOf = (n: number) => Buffer.from([255, 0, 0, 0, n, 0, 3, 0, 32, 0x80, 0, 2, 8, 0xfe, 0x80, 0, n]);

function ipoib(type: number, cid: Buffer | undefined, extra: Partial<DhcpPacket> = {}): DhcpPacket {
  const p = request(MessageType.DISCOVER, '00:00:00:00:00:00', { htype: 32, hlen: 0, flags: 0x8000, ...extra });
  p.options.set(Opt.MessageType, Buffer.from([type]));
  if (cid) p.options.set(Opt.ClientId, cid);
  return p;
}

describe('RFC 4390 IPoIB clients (hlen 0)', () => {
  it('decode keeps hlen 0 and names no MAC of chaddr', () => {
    const p = ipoib(MessageType.DISCOVER, cidOf(1));
    p.chaddr[0] = 0x12; // chaddr MUST be zero (RFC 4390 2.1); whatever is there is not a hardware address
    const d = decode(encode(p));
    expect(d.ok && d.packet.hlen).toBe(0);
    expect(d.ok && macOf(d.packet)).toBe(ZERO_MAC);
  });

  it('get an OFFER and an ACK (htype 32, hlen 0, 61 echoed, broadcast), leases keyed by the client identifier', async () => {
    env = await testEnv(async (s) => {
      await s.create('subnets', 'lab', SUBNET);
      // A reservation by the placeholder MAC names no one client: not applied to IPoIB clients.
      await s.create('reservations', '10.99.1.50', {
        address: '10.99.1.50',
        mac: ZERO_MAC,
        subnet: 'lab',
        options: [],
      });
    });
    const acked: string[] = [];
    for (const n of [1, 2]) {
      const cid = cidOf(n);
      const d = ipoib(MessageType.DISCOVER, cid);
      await env.client.send(d, env.p.port);
      const offer = await env.client.wait(d.xid);
      expect(msgType(offer)).toBe(MessageType.OFFER);
      expect(offer).toMatchObject({ htype: 32, hlen: 0 });
      expect(offer!.options.get(Opt.ClientId)).toEqual(cid);
      expect(env.dests.at(-1)?.address).toBe('255.255.255.255');
      const r = ipoib(MessageType.REQUEST, cid, { xid: d.xid });
      r.options.set(Opt.ServerId, offer!.options.get(Opt.ServerId)!);
      r.options.set(Opt.RequestedIp, ip4(offer!.yiaddr));
      await env.client.send(r, env.p.port);
      const ack = await env.client.wait(d.xid);
      expect(msgType(ack)).toBe(MessageType.ACK);
      acked.push(ack!.yiaddr);
      const lease = env.server.leases.get(ack!.yiaddr);
      expect(lease).toMatchObject({ state: 'bound', clientId: cid.toString('hex'), mac: ZERO_MAC });
      expect(env.server.leases.forMac('lab', { mac: ZERO_MAC, id: cid.toString('hex') })?.address).toBe(ack!.yiaddr);
      const stored = await env.store.get('leases', ack!.yiaddr);
      expect(stored?.doc).toMatchObject({ clientId: cid.toString('hex') });
    }
    // Two clients with the same (absent) hardware address are two clients.
    expect(new Set(acked).size).toBe(2);
    expect(acked).not.toContain('10.99.1.50');
    // The first one again: its own address, found by its identifier alone.
    const d = ipoib(MessageType.DISCOVER, cidOf(1));
    await env.client.send(d, env.p.port);
    expect((await env.client.wait(d.xid))?.yiaddr).toBe(acked[0]);
  });

  it('is dropped without a client identifier (nothing else names it), and on the PXE port', async () => {
    env = await testEnv();
    const d = ipoib(MessageType.DISCOVER, undefined);
    await env.client.send(d, env.p.port);
    expect(await env.client.wait(d.xid, 300)).toBeUndefined();
    expect(env.server.stats.badChaddr).toBe(1);
    const pxe = ipoib(MessageType.REQUEST, cidOf(3), { ciaddr: '10.99.1.150' });
    await env.client.send(pxe, env.p.proxyPort);
    expect(await env.client.wait(pxe.xid, 300)).toBeUndefined();
    expect(env.server.stats.badChaddr).toBe(2);
  });
});
