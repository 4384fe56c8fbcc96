/** Discovery (src/provision/discovery.ts): who may create or extend a machine record by booting, and how often. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createBus } from '../../src/events.js';
import { bootRecorder } from '../../src/inventory/boots.js';
import { silentLogger } from '../../src/log.js';
import { ANONYMOUS_UUID, discovery } from '../../src/provision/discovery.js';
import { dhcpEvidence } from '../../src/provision/evidence.js';
import { trustRule } from '../../src/provision/trust.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';

let store: Store;
let t = 1_000_000;
const now = () => t;
beforeEach(async () => {
  store = openSqliteStore(':memory:');
  t = 1_000_000;
  // Machines may only name bootenvs that exist.
  for (const name of ['discovery', 'local']) await store.create('bootenvs', name, { name });
});
afterEach(async () => {
  await store.close();
});

const mac = (i: number) =>
  `52:54:00:dd:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;

function setup(limits = {}) {
  const bus = createBus();
  const evidence = dhcpEvidence(bus, { now });
  const trust = trustRule({ store, evidence, checkToken: async () => null, now });
  const warnings: string[] = [];
  const log = Object.assign(Object.create(silentLogger), {
    warn: (_o: object, msg: string) => warnings.push(msg),
    info: () => {},
  });
  const disc = discovery({ store, bus, log, boots: bootRecorder(store), trust, limits, now });
  const acked = (m: string, address: string) =>
    bus.emit({
      type: 'lease.acked',
      key: address,
      data: { mac: m, subnet: 's', expiresAt: '2099-01-01T00:00:00.000Z' },
    });
  const machines = async () => (await store.list('machines')).total;
  return { disc, acked, machines, warnings };
}

describe('discovery', () => {
  it('creates a record only with a DHCP ACK for that MAC at that address; otherwise serves it anonymously', async () => {
    const { disc, acked, machines } = setup();
    const anon = await disc.resolve({ mac: mac(1), source: '10.0.0.1', arch: 'x86_64' });
    expect(anon.kind).toBe('anonymous');
    expect(anon.machine).toMatchObject({ uuid: ANONYMOUS_UUID, bootEnv: 'discovery', arch: 'amd64' });
    // The ACK went to another address: still nothing.
    acked(mac(1), '10.0.0.2');
    expect((await disc.resolve({ mac: mac(1), source: '10.0.0.1' })).kind).toBe('anonymous');
    expect(await machines()).toBe(0);
    acked(mac(1), '10.0.0.1');
    const created = await disc.resolve({ mac: mac(1), source: '10.0.0.1', serial: 'SN1' });
    expect(created.kind).toBe('created');
    expect(created.machine).toMatchObject({ macs: [mac(1)], address: '10.0.0.1', bootEnv: 'discovery' });
    expect((await disc.resolve({ mac: mac(1), source: '10.9.9.9' })).kind).toBe('known');
    expect(await machines()).toBe(1);
  });

  it('a new MAC joins the record with its SMBIOS UUID only with DHCP evidence; the known record is untouched otherwise', async () => {
    const { disc, acked, warnings } = setup();
    const uuid = '8c1f0d4e-1111-2222-3333-444455556666';
    acked(mac(1), '10.0.0.1');
    const first = await disc.resolve({ mac: mac(1), source: '10.0.0.1', uuid });
    const refused = await disc.resolve({ mac: mac(2), source: '10.0.0.66', uuid: uuid.toUpperCase() });
    expect(refused.kind).toBe('anonymous');
    expect((await store.get('machines', first.machine.uuid))?.doc.macs).toEqual([mac(1)]);
    expect(warnings.some((w) => w.includes('claims the SMBIOS UUID of a known machine'))).toBe(true);
    acked(mac(2), '10.0.0.2');
    const adopted = await disc.resolve({ mac: mac(2), source: '10.0.0.2', uuid });
    expect(adopted.kind).toBe('adopted');
    expect(adopted.machine.uuid).toBe(first.machine.uuid);
    expect(adopted.machine.macs).toEqual([mac(1), mac(2)]);
  });

  it('rate-limits records per source address (token bucket), other sources unaffected', async () => {
    const { disc, acked, machines, warnings } = setup({ burst: 3, refillMs: 10_000 });
    const kinds: string[] = [];
    for (let i = 0; i < 6; i++) {
      acked(mac(i), '10.0.0.1');
      kinds.push((await disc.resolve({ mac: mac(i), source: '10.0.0.1' })).kind);
    }
    expect(kinds).toEqual(['created', 'created', 'created', 'anonymous', 'anonymous', 'anonymous']);
    expect(warnings.filter((w) => w.includes('faster than'))).toHaveLength(1); // once a minute, not per request
    acked(mac(100), '10.0.0.2');
    expect((await disc.resolve({ mac: mac(100), source: '10.0.0.2' })).kind).toBe('created');
    t += 10_000; // one token back
    acked(mac(6), '10.0.0.1');
    expect((await disc.resolve({ mac: mac(6), source: '10.0.0.1' })).kind).toBe('created');
    acked(mac(7), '10.0.0.1');
    expect((await disc.resolve({ mac: mac(7), source: '10.0.0.1' })).kind).toBe('anonymous');
    expect(await machines()).toBe(5);
  });

  it('stops creating at the cap of unclaimed machines; claiming one (assigning a bootenv) makes room', async () => {
    const { disc, acked, machines, warnings } = setup({ maxUnclaimed: 4, burst: 100 });
    for (let i = 0; i < 10; i++) {
      acked(mac(i), `10.0.0.${i + 1}`);
      await disc.resolve({ mac: mac(i), source: `10.0.0.${i + 1}` });
    }
    expect(await machines()).toBe(4);
    expect(warnings.filter((w) => w.includes('already wait on bootenv discovery'))).toHaveLength(1);
    const one = (await store.list('machines', { limit: 1 })).items[0]!;
    await store.replace('machines', one.key, { ...one.doc, bootEnv: 'local' });
    t += 6_000; // the count is re-read from the store every few seconds
    acked(mac(50), '10.0.1.1');
    expect((await disc.resolve({ mac: mac(50), source: '10.0.1.1' })).kind).toBe('created');
    acked(mac(51), '10.0.1.2');
    expect((await disc.resolve({ mac: mac(51), source: '10.0.1.2' })).kind).toBe('anonymous');
    expect(await machines()).toBe(5);
  });
});
