import { afterEach, describe, expect, it } from 'vitest';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { ip4, listener, msgType, request, SUBNET, type TestEnv, testEnv } from './helpers.js';

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

describe('relayed requests (giaddr)', () => {
  it('are answered to port 67 of the relay with an address from the relay subnet, option 82 echoed', async () => {
    env = await testEnv(async (s) => {
      await s.create('subnets', 'lab', SUBNET);
      await s.create('subnets', 'remote', {
        ...SUBNET,
        name: 'remote',
        subnet: '10.99.2.0/24',
        activeStart: '10.99.2.10',
        activeEnd: '10.99.2.20',
        options: [],
      });
    });
    const relay = await listener(env.p.relayPort);
    try {
      const o82 = Buffer.from([1, 4, 0x65, 0x74, 0x68, 0x30]);
      const d = request(MessageType.DISCOVER, '52:54:00:00:02:01', { giaddr: '10.99.2.1', hops: 1 }, [
        [Opt.RelayAgentInfo, o82],
      ]);
      await relay.send(d, env.p.port);
      const offer = await relay.wait(d.xid);
      expect(msgType(offer)).toBe(MessageType.OFFER);
      expect(offer!.yiaddr).toBe('10.99.2.10');
      expect(offer!.giaddr).toBe('10.99.2.1');
      expect(offer!.options.get(Opt.RelayAgentInfo)).toEqual(o82);
      expect(env.dests.at(-1)).toMatchObject({ address: '10.99.2.1', port: env.p.relayPort });
      const r = request(MessageType.REQUEST, '52:54:00:00:02:01', { xid: d.xid, giaddr: '10.99.2.1' }, [
        [Opt.ServerId, offer!.options.get(Opt.ServerId)!],
        [Opt.RequestedIp, ip4(offer!.yiaddr)],
      ]);
      await relay.send(r, env.p.port);
      const ack = await relay.wait(d.xid);
      expect(msgType(ack)).toBe(MessageType.ACK);
      expect(env.dests.at(-1)).toMatchObject({ address: '10.99.2.1', port: env.p.relayPort });
      // A giaddr in no subnet: silence.
      const lost = request(MessageType.DISCOVER, '52:54:00:00:02:02', { giaddr: '172.31.9.1' });
      await relay.send(lost, env.p.port);
      expect(await relay.wait(lost.xid, 300)).toBeUndefined();
    } finally {
      await relay.close();
    }
  });
});
