import { afterEach, describe, expect, it } from 'vitest';
import { MessageType } from '../../src/dhcp/options.js';
import type { Store } from '../../src/store/store.js';
import { adminApp } from '../helpers/boot-service.js';
import { ip4, msgType, SUBNET, type TestEnv, testEnv } from './helpers.js';

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

/** Writes documents the way an operator does: POSTs through the HTTP API onto the store the server reads. */
async function viaApi(store: Store, posts: [string, unknown][]) {
  const { app, token, close } = await adminApp('optsent', { store });
  try {
    for (const [url, body] of posts) {
      const r = await app.inject({
        method: 'POST',
        url: `/api/v1/${url}`,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        payload: JSON.stringify(body),
      });
      expect(r.statusCode, r.body).toBe(201);
    }
  } finally {
    await close();
  }
}

const { name, subnet, activeStart, activeEnd } = SUBNET;
const lab = (options: unknown[]) => ({ name, subnet, activeStart, activeEnd, options });

describe('accepted option values are sent', () => {
  it('booleans written True/off/false go out as one octet 1/0 in the OFFER and the ACK, with the other typed values', async () => {
    env = await testEnv((s) =>
      viaApi(s, [
        [
          'subnets',
          lab([
            { code: 3, value: '10.99.1.1' },
            { code: 19, value: 'True' },
            { code: 20, value: 'off' },
            { code: 39, value: false },
            { code: 26, value: '1500' },
            { code: 6, value: '10.99.1.1, 10.99.1.2' },
          ]),
        ],
      ]),
    );
    const { offer, ack } = await env.dora('52:54:00:00:19:01');
    expect(msgType(offer)).toBe(MessageType.OFFER);
    expect(msgType(ack)).toBe(MessageType.ACK);
    for (const r of [offer!, ack!]) {
      expect(r.options.get(19)).toEqual(Buffer.from([1]));
      expect(r.options.get(20)).toEqual(Buffer.from([0]));
      expect(r.options.get(39)).toEqual(Buffer.from([0]));
      expect(r.options.get(26)).toEqual(Buffer.from([0x05, 0xdc]));
      expect(r.options.get(6)).toEqual(Buffer.concat([ip4('10.99.1.1'), ip4('10.99.1.2')]));
    }
  });

  it("a reservation's boolean is sent to its MAC, and its '' takes back the subnet's option", async () => {
    const mac = '52:54:00:00:19:02';
    env = await testEnv((s) =>
      viaApi(s, [
        [
          'subnets',
          lab([
            { code: 3, value: '10.99.1.1' },
            { code: 19, value: 'on' },
          ]),
        ],
        [
          'reservations',
          {
            address: '10.99.1.150',
            mac,
            subnet: name,
            options: [
              { code: 31, value: 'ON' },
              { code: 19, value: '' },
            ],
          },
        ],
      ]),
    );
    const { offer, ack } = await env.dora(mac);
    expect(offer!.yiaddr).toBe('10.99.1.150');
    for (const r of [offer!, ack!]) {
      expect(r.options.get(31)).toEqual(Buffer.from([1]));
      expect(r.options.has(19)).toBe(false);
    }
    const other = await env.dora('52:54:00:00:19:03');
    expect(other.offer!.options.get(19)).toEqual(Buffer.from([1]));
    expect(other.offer!.options.has(31)).toBe(false);
  });

  // Fails until the encoder normalises rendered values with checkOptionValue (see the helper's report): a
  // template is accepted at write time, and what it renders to per client must be read the same way.
  it('a boolean template rendering True for a machine is sent as 1', async () => {
    const mac = '52:54:00:00:19:04';
    env = await testEnv(async (s) => {
      await viaApi(s, [['subnets', lab([{ code: 19, value: '{{machine.params.forwarding}}' }])]]);
      await s.create('machines', 'u-19', { uuid: 'u-19', name: 'fw1', macs: [mac], params: { forwarding: 'True' } }, [
        { field: 'macs', value: mac },
      ]);
    });
    const { offer } = await env.dora(mac);
    expect(msgType(offer)).toBe(MessageType.OFFER);
    expect(offer!.options.get(19)).toEqual(Buffer.from([1]));
  });

  // Fail until the DHCP inventory reads stored options with keepValidOptions (see the helper's report): a document
  // written before these checks must not cost the whole subnet or reservation on upgrade, only the bad option.
  it('a subnet stored before the checks with a bad option is still served, without that option', async () => {
    env = await testEnv(async (s) => {
      await s.create('subnets', name, {
        ...SUBNET,
        options: [
          { code: 3, value: '10.99.1.1' },
          { code: 19, value: 2 },
          { code: 20, value: 'True' },
        ],
      });
    });
    const { offer } = await env.dora('52:54:00:00:19:05');
    expect(msgType(offer)).toBe(MessageType.OFFER);
    expect(offer!.options.get(3)).toEqual(ip4('10.99.1.1'));
    expect(offer!.options.has(19)).toBe(false);
    expect(offer!.options.get(20)).toEqual(Buffer.from([1]));
  });

  it('a reservation stored before the checks with a bad option still gives its address', async () => {
    const mac = '52:54:00:00:19:06';
    env = await testEnv(async (s) => {
      await s.create('subnets', name, SUBNET);
      await s.create('reservations', '10.99.1.160', {
        address: '10.99.1.160',
        mac,
        subnet: name,
        options: [{ code: 26, value: 20 }],
        description: '',
      });
    });
    const { offer } = await env.dora(mac);
    expect(offer!.yiaddr).toBe('10.99.1.160');
    expect(offer!.options.has(26)).toBe(false);
  });
});
