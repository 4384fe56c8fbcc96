/**
 * Relay agent information (option 82) sub-options the server acts on: RFC 3527 link selection (5) picks the
 * client's subnet; RFC 5107 server identifier override (11) becomes the reply's option 54 and makes REQUESTs
 * naming it ours. Option 82 itself is echoed to the relay (RFC 3046 2.2).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { encodeSubOptions, MessageType, Opt, RelaySub, relayInfo } from '../../src/dhcp/options.js';
import type { DhcpPacket } from '../../src/dhcp/packet.js';
import type { Store } from '../../src/store/store.js';
import { ip4, listener, msgType, request, SUBNET, type TestEnv, testEnv } from './helpers.js';

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

const REMOTE = {
  ...SUBNET,
  name: 'remote',
  subnet: '10.99.2.0/24',
  activeStart: '10.99.2.10',
  activeEnd: '10.99.2.20',
  options: [],
};
const RELAYNET = {
  ...SUBNET,
  name: 'relaynet',
  subnet: '10.99.3.0/24',
  activeStart: '10.99.3.10',
  activeEnd: '10.99.3.20',
  options: [],
};
const setup = async (s: Store) => {
  await s.create('subnets', 'lab', SUBNET);
  await s.create('subnets', 'remote', REMOTE);
  await s.create('subnets', 'relaynet', RELAYNET);
};

const o82 = (subs: [number, Buffer][]) => encodeSubOptions([[RelaySub.CircuitId, Buffer.from('eth7')], ...subs], false);

async function exchange(relay: Awaited<ReturnType<typeof listener>>, p: DhcpPacket): Promise<DhcpPacket | undefined> {
  await relay.send(p, env!.p.port);
  return relay.wait(p.xid, 600);
}

describe('relay agent sub-options', () => {
  it('parses 82.5 and 82.11 (4-byte non-zero addresses only)', () => {
    expect(relayInfo(o82([[RelaySub.LinkSelection, ip4('10.1.2.0')]]))).toEqual({ linkSelection: '10.1.2.0' });
    expect(relayInfo(o82([[RelaySub.ServerIdOverride, ip4('10.1.2.1')]]))).toEqual({ serverIdOverride: '10.1.2.1' });
    expect(relayInfo(o82([[RelaySub.LinkSelection, Buffer.from([10, 1, 2])]]))).toBeUndefined();
    expect(relayInfo(o82([[RelaySub.LinkSelection, ip4('0.0.0.0')]]))).toBeUndefined();
    expect(relayInfo(Buffer.from([5, 9, 1]))).toBeUndefined();
  });

  it('RFC 3527 4: link selection picks the subnet, the reply still goes to giaddr with 82 echoed', async () => {
    env = await testEnv(setup);
    const relay = await listener(env.p.relayPort);
    try {
      const mac = '52:54:00:00:05:01';
      const info = o82([[RelaySub.LinkSelection, ip4('10.99.2.0')]]);
      const d = request(MessageType.DISCOVER, mac, { giaddr: '10.99.3.1', hops: 1 }, [[Opt.RelayAgentInfo, info]]);
      const offer = await exchange(relay, d);
      expect(msgType(offer)).toBe(MessageType.OFFER);
      expect(offer!.yiaddr).toBe('10.99.2.10'); // remote, not relaynet (giaddr's)
      expect(offer!.options.get(Opt.SubnetMask)).toEqual(ip4('255.255.255.0'));
      expect(offer!.options.get(Opt.RelayAgentInfo)).toEqual(info);
      expect(env.dests.at(-1)).toMatchObject({ address: '10.99.3.1', port: env.p.relayPort });
      const r = request(MessageType.REQUEST, mac, { xid: d.xid, giaddr: '10.99.3.1' }, [
        [Opt.ServerId, offer!.options.get(Opt.ServerId)!],
        [Opt.RequestedIp, ip4(offer!.yiaddr)],
        [Opt.RelayAgentInfo, info],
      ]);
      const ack = await exchange(relay, r);
      expect(msgType(ack)).toBe(MessageType.ACK);
      expect(env.server.leases.get('10.99.2.10')).toMatchObject({ mac, subnet: 'remote', state: 'bound' });
      // The same relay without the sub-option: giaddr's subnet.
      const plain = request(MessageType.DISCOVER, '52:54:00:00:05:02', { giaddr: '10.99.3.1' });
      expect((await exchange(relay, plain))?.yiaddr).toBe('10.99.3.10');
      // A link no served subnet holds: silence, whatever giaddr's subnet is.
      const lost = request(MessageType.DISCOVER, '52:54:00:00:05:03', { giaddr: '10.99.3.1' }, [
        [Opt.RelayAgentInfo, o82([[RelaySub.LinkSelection, ip4('172.31.0.0')]])],
      ]);
      expect(await exchange(relay, lost)).toBeUndefined();
    } finally {
      await relay.close();
    }
  });

  it('ignores option 82 sub-options in a request no relay forwarded (giaddr 0)', async () => {
    env = await testEnv(setup);
    const d = request(MessageType.DISCOVER, '52:54:00:00:05:04', { flags: 0x8000 }, [
      [Opt.RelayAgentInfo, o82([[RelaySub.LinkSelection, ip4('10.99.2.0')]])],
    ]);
    await env.client.send(d, env.p.port);
    const offer = await env.client.wait(d.xid);
    expect(offer?.yiaddr).toBe('10.99.1.100'); // the lab subnet, where the server's own address is
    expect(offer?.options.has(Opt.RelayAgentInfo)).toBe(false);
  });

  it('RFC 5107: 82.11 is the reply option 54, REQUESTs naming it are ACKed, RELEASE naming it counts', async () => {
    env = await testEnv(setup);
    const relay = await listener(env.p.relayPort);
    try {
      const mac = '52:54:00:00:0b:01';
      const info = o82([
        [RelaySub.LinkSelection, ip4('10.99.2.0')],
        [RelaySub.ServerIdOverride, ip4('10.99.2.1')],
      ]);
      const d = request(MessageType.DISCOVER, mac, { giaddr: '10.99.3.1' }, [[Opt.RelayAgentInfo, info]]);
      const offer = await exchange(relay, d);
      expect(msgType(offer)).toBe(MessageType.OFFER);
      expect(offer!.options.get(Opt.ServerId)).toEqual(ip4('10.99.2.1'));
      expect(env.dests.at(-1)).toMatchObject({ address: '10.99.3.1', port: env.p.relayPort });
      const sel = (extra: [number, Buffer][]) =>
        request(MessageType.REQUEST, mac, { xid: d.xid, giaddr: '10.99.3.1' }, [
          [Opt.ServerId, ip4('10.99.2.1')],
          [Opt.RequestedIp, ip4(offer!.yiaddr)],
          ...extra,
        ]);
      // Without the sub-option in the REQUEST, 10.99.2.1 is another server (as kea: the override is per message).
      expect(await exchange(relay, sel([]))).toBeUndefined();
      const again = await exchange(relay, d);
      const ack = await exchange(relay, sel([[Opt.RelayAgentInfo, info]]));
      expect(again?.yiaddr).toBe(offer!.yiaddr);
      expect(msgType(ack)).toBe(MessageType.ACK);
      expect(ack!.options.get(Opt.ServerId)).toEqual(ip4('10.99.2.1'));
      expect(env.dests.at(-1)).toMatchObject({ address: '10.99.3.1', port: env.p.relayPort });
      // RENEWING through the relay (the client unicast to 10.99.2.1, the relay forwards): ACK, same 54.
      const renew = request(MessageType.REQUEST, mac, { ciaddr: ack!.yiaddr, giaddr: '10.99.3.1' }, [
        [Opt.RelayAgentInfo, info],
      ]);
      const renewed = await exchange(relay, renew);
      expect(msgType(renewed)).toBe(MessageType.ACK);
      expect(renewed!.options.get(Opt.ServerId)).toEqual(ip4('10.99.2.1'));
      const rel = request(MessageType.RELEASE, mac, { ciaddr: ack!.yiaddr, giaddr: '10.99.3.1' }, [
        [Opt.ServerId, ip4('10.99.2.1')],
        [Opt.RelayAgentInfo, info],
      ]);
      await relay.send(rel, env.p.port);
      await expect.poll(() => env!.server.leases.get(ack!.yiaddr)?.state).toBe('released');
    } finally {
      await relay.close();
    }
  });
});
