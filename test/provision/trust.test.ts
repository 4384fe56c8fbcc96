/** The one trust rule (src/provision/trust.ts) and the DHCP evidence behind it, without fastify or sockets. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createBus } from '../../src/events.js';
import { dhcpEvidence } from '../../src/provision/evidence.js';
import { requestToken, type TokenCheck, trustRule } from '../../src/provision/trust.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';

const A = '52:54:00:aa:00:01';
const B = '52:54:00:aa:00:02';
const machine = { uuid: '11111111-2222-4333-8444-555555555555', macs: [A] };
const tokens: Record<string, { role: string; machine?: string }> = {
  own: { role: 'machine', machine: machine.uuid },
  other: { role: 'machine', machine: '99999999-2222-4333-8444-555555555555' },
  admin: { role: 'admin' },
  viewer: { role: 'viewer' },
};
const checkToken: TokenCheck = async (t) => tokens[t] ?? null;

let store: Store;
let t = 1_000_000;
const now = () => t;
beforeEach(() => {
  store = openSqliteStore(':memory:');
  t = 1_000_000;
});
afterEach(async () => {
  await store.close();
});

describe('DHCP evidence', () => {
  it('lease.acked and proxy.acked bind a MAC to an address until stale, released or evicted', () => {
    const bus = createBus();
    const ev = dhcpEvidence(bus, { freshnessMs: 60_000, maxAddresses: 3, now });
    bus.emit({
      type: 'lease.acked',
      key: '10.0.0.5',
      data: { mac: A, subnet: 's', expiresAt: '2099-01-01T00:00:00.000Z' },
    });
    expect(ev.binds([A], '10.0.0.5')).toEqual({ mac: A, via: 'lease', ageMs: 0 });
    expect(ev.binds([B], '10.0.0.5')).toBeUndefined();
    expect(ev.binds([A], '10.0.0.6')).toBeUndefined();
    // The event H-dhcp's proxyDHCP server emits for a port-4011 REQUEST whose ciaddr is its source.
    bus.emit({ type: 'proxy.acked', key: '10.0.0.6', data: { mac: B.toUpperCase(), subnet: 's' } });
    expect(ev.binds([B], '10.0.0.6')?.via).toBe('proxy');
    t += 60_001;
    expect(ev.binds([A], '10.0.0.5')).toBeUndefined();
    bus.emit({
      type: 'lease.acked',
      key: '10.0.0.5',
      data: { mac: A, subnet: 's', expiresAt: '2099-01-01T00:00:00.000Z' },
    });
    bus.emit({ type: 'lease.released', key: '10.0.0.5', data: { mac: A, subnet: 's' } });
    expect(ev.binds([A], '10.0.0.5')).toBeUndefined();
    // Bounded: the least recently acknowledged address goes first.
    for (let i = 1; i <= 5; i++)
      bus.emit({
        type: 'lease.acked',
        key: `10.0.1.${i}`,
        data: { mac: A, subnet: 's', expiresAt: '2099-01-01T00:00:00.000Z' },
      });
    expect(ev.size()).toBe(3);
    expect(ev.binds([A], '10.0.1.1')).toBeUndefined();
    expect(ev.binds([A], '10.0.1.5')).toBeDefined();
    // Malformed events are ignored.
    bus.emit({
      type: 'lease.acked',
      key: 'not-an-ip',
      data: { mac: A, subnet: 's', expiresAt: '2099-01-01T00:00:00.000Z' },
    });
    bus.emit({ type: 'lease.acked', key: '10.0.2.1', data: { mac: 42 } } as never);
    expect(ev.size()).toBe(3);
    ev.close();
    bus.emit({
      type: 'lease.acked',
      key: '10.0.3.1',
      data: { mac: A, subnet: 's', expiresAt: '2099-01-01T00:00:00.000Z' },
    });
    expect(ev.binds([A], '10.0.3.1')).toBeUndefined();
  });
});

describe('is this request the machine', () => {
  const setup = () => {
    const bus = createBus();
    const evidence = dhcpEvidence(bus, { now });
    return { bus, trust: trustRule({ store, evidence, checkToken, now }) };
  };

  it('a bare source address is never enough, over HTTP or TFTP, whatever the record says', async () => {
    const { trust } = setup();
    const m = { ...machine, address: '10.0.0.5' };
    for (const transport of ['http', 'tftp'] as const) {
      const v = await trust.isTheMachine({ transport, source: '10.0.0.5', machine: m });
      expect(v.machine).toBe(false);
    }
  });

  it('its own token or an admin token is; a foreign, unknown or viewer token is not', async () => {
    const { trust } = setup();
    const q = (token: string) => trust.isTheMachine({ transport: 'http', source: '10.9.9.9', machine, token });
    expect(await q('own')).toEqual({ machine: true, by: 'machine-token' });
    expect(await q('admin')).toEqual({ machine: true, by: 'admin-token' });
    expect((await q('other')).machine).toBe(false);
    expect((await q('nope')).machine).toBe(false);
    expect((await q('viewer')).machine).toBe(false);
  });

  it('a fresh ACK for one of its MACs at the source address is, over both transports (IPv4-mapped too)', async () => {
    const { bus, trust } = setup();
    bus.emit({
      type: 'lease.acked',
      key: '10.0.0.5',
      data: { mac: A, subnet: 's', expiresAt: '2099-01-01T00:00:00.000Z' },
    });
    expect(await trust.isTheMachine({ transport: 'tftp', source: '10.0.0.5', machine })).toEqual({
      machine: true,
      by: 'dhcp-ack',
    });
    expect((await trust.isTheMachine({ transport: 'http', source: '::ffff:10.0.0.5', machine })).machine).toBe(true);
    bus.emit({ type: 'proxy.acked', key: '10.0.0.7', data: { mac: A, subnet: 's' } });
    expect(await trust.isTheMachine({ transport: 'tftp', source: '10.0.0.7', machine })).toEqual({
      machine: true,
      by: 'proxy-ack',
    });
    t += 11 * 60_000; // default freshness is 10 minutes
    expect((await trust.isTheMachine({ transport: 'tftp', source: '10.0.0.5', machine })).machine).toBe(false);
  });

  it('an active lease in the store counts over HTTP only; expired, offered or foreign leases do not', async () => {
    const { trust } = setup();
    const lease = (address: string, mac: string, state: string, inMs: number) =>
      store.putBatched('leases', address, {
        address,
        mac,
        subnet: 's',
        state,
        expiresAt: new Date(t + inMs).toISOString(),
      });
    await lease('10.0.0.5', A, 'bound', 60_000);
    await lease('10.0.0.6', A, 'bound', -1);
    await lease('10.0.0.7', A, 'offered', 60_000);
    await lease('10.0.0.8', B, 'bound', 60_000);
    const q = (transport: 'http' | 'tftp', source: string) => trust.isTheMachine({ transport, source, machine });
    expect(await q('http', '10.0.0.5')).toEqual({ machine: true, by: 'lease' });
    expect((await q('tftp', '10.0.0.5')).machine).toBe(false);
    expect((await q('http', '10.0.0.6')).machine).toBe(false);
    expect((await q('http', '10.0.0.7')).machine).toBe(false);
    expect((await q('http', '10.0.0.8')).machine).toBe(false);
  });

  it('reads the token from a Bearer header, else ?token=', () => {
    expect(requestToken('Bearer abc', { token: 'q' })).toBe('abc');
    expect(requestToken(undefined, { token: 'q' })).toBe('q');
    expect(requestToken('Basic x', {})).toBeUndefined();
    expect(requestToken(undefined, { token: ['a', 'b'] })).toBeUndefined();
  });
});
