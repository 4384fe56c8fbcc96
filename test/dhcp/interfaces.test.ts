/**
 * Auto interface mode (no `interfaces`, native helper built): one socket per interface, and a socket serves
 * only the subnets of its own interface's addresses. The two-bridge proof is in test/e2e/dhcp-clients.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { loadNetAddon } from '../../src/dhcp/bind.js';
import { MessageType } from '../../src/dhcp/options.js';
import { ensureAddon } from './addon.js';
import { msgType, request, SUBNET, type TestEnv, testEnv } from './helpers.js';

ensureAddon();

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});
const loopback = {
  ...SUBNET,
  name: 'lo',
  subnet: '127.0.0.0/8',
  activeStart: '127.0.0.100',
  activeEnd: '127.0.0.199',
  options: [],
};

describe.skipIf(!loadNetAddon() || process.getuid?.() !== 0)('auto interface mode', () => {
  it("answers a request on lo from lo's subnet", async () => {
    env = await testEnv(
      async (s) => {
        await s.create('subnets', 'lo', loopback);
      },
      { wildcard: false, serverAddress: undefined },
    );
    const d = request(MessageType.DISCOVER, '52:54:00:00:07:01', { flags: 0x8000 });
    await env.client.send(d, env.p.port);
    const offer = await env.client.wait(d.xid);
    expect(msgType(offer)).toBe(MessageType.OFFER);
    expect(offer!.yiaddr).toBe('127.0.0.100');
  });

  it('never answers a direct request from a subnet that is not on the receiving interface, serverAddress or not', async () => {
    env = await testEnv(undefined, { wildcard: false, serverAddress: '10.99.1.1' });
    const d = request(MessageType.DISCOVER, '52:54:00:00:07:02', { flags: 0x8000 });
    await env.client.send(d, env.p.port);
    expect(await env.client.wait(d.xid, 300)).toBeUndefined();
    // Relayed from that subnet: answered (to the relay).
    const r = request(MessageType.DISCOVER, '52:54:00:00:07:03', { giaddr: '10.99.1.1' });
    await env.client.send(r, env.p.port);
    await new Promise((res) => setTimeout(res, 200));
    expect(env.dests.at(-1)).toMatchObject({ address: '10.99.1.1', port: env.p.relayPort });
  });
});
