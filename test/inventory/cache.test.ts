/**
 * The one inventory cache: served subnets (enabled, valid, most specific first), reservations, prefs and the
 * firmware quirk table (the `firmwareQuirks` pref first, then the built-in entries), reloaded from bus events.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_QUIRKS } from '../../src/boot/quirks.js';
import { createBus } from '../../src/events.js';
import { loadInventoryCache } from '../../src/inventory/cache.js';
import { PREFS_KEY } from '../../src/inventory/resources.js';
import { silentLogger } from '../../src/log.js';
import { openSqliteStore } from '../../src/store/sqlite.js';

const subnet = (name: string, cidr: string, over: Record<string, unknown> = {}) => ({
  name,
  subnet: cidr,
  activeStart: cidr.replace(/\.0\/\d+$/, '.10'),
  activeEnd: cidr.replace(/\.0\/\d+$/, '.20'),
  ...over,
});

/** Polls (bounded) until `ok` holds: the reload the bus triggers runs in the background. */
async function eventually(ok: () => boolean, ms = 2000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!ok() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  return ok();
}

async function setup() {
  const store = openSqliteStore(':memory:');
  const bus = createBus();
  await store.create(
    'subnets',
    'wide',
    subnet('wide', '10.0.0.0/16', { activeStart: '10.0.1.10', activeEnd: '10.0.1.20' }),
  );
  await store.create('subnets', 'narrow', subnet('narrow', '10.0.5.0/24'));
  await store.create('subnets', 'off', subnet('off', '10.9.0.0/24', { enabled: false }));
  await store.create('subnets', 'broken', { name: 'broken', subnet: 'not a cidr' });
  await store.create('reservations', 'r1', { subnet: 'narrow', mac: 'aa:00:00:00:00:01', address: '10.0.5.50' });
  const cache = await loadInventoryCache(store, bus, silentLogger);
  return { store, bus, cache };
}

describe('inventory cache', () => {
  it('holds enabled, valid subnets (most specific first), reservations by MAC and by address, prefs', async () => {
    const { cache } = await setup();
    expect(cache.subnets().map((s) => s.name)).toEqual(['narrow', 'wide']);
    expect(cache.subnetFor('10.0.5.7')?.name).toBe('narrow');
    expect(cache.subnetFor('10.0.6.7')?.name).toBe('wide');
    expect(cache.subnetFor('10.9.0.7')).toBeUndefined();
    expect(cache.subnetByName('narrow')?.start).toBe(0x0a00050a);
    expect(cache.reservationFor('narrow', 'aa:00:00:00:00:01')?.address).toBe('10.0.5.50');
    expect(cache.reservationFor('wide', 'aa:00:00:00:00:01')).toBeUndefined();
    expect(cache.reservationAt('10.0.5.50')?.mac).toBe('aa:00:00:00:00:01');
    expect(cache.prefs().unknownBootEnv).toBeTypeOf('string');
    cache.close();
  });

  it('quirks(): the firmwareQuirks pref before the built-in table, reloaded on prefs.updated', async () => {
    const { store, bus, cache } = await setup();
    expect(cache.quirks()).toEqual(DEFAULT_QUIRKS);
    await store.create('prefs', PREFS_KEY, {
      firmwareQuirks: [{ match: { vendorClass: 'PXEClient:Arch:00007' }, blksize: 1024, why: 'lab firmware' }],
    });
    // Not reloaded until the bus says so.
    expect(cache.quirks()).toEqual(DEFAULT_QUIRKS);
    bus.emit({ type: 'prefs.updated', key: PREFS_KEY });
    expect(await eventually(() => cache.quirks().length > DEFAULT_QUIRKS.length)).toBe(true);
    const q = cache.quirks();
    expect(q[0]).toMatchObject({ blksize: 1024, why: 'lab firmware', from: 'prefs firmwareQuirks[0]' });
    expect(q.slice(1)).toEqual(DEFAULT_QUIRKS);
    cache.close();
  });

  it('follows subnet and reservation changes from the bus, and stops after close', async () => {
    const { store, bus, cache } = await setup();
    await store.create('subnets', 'more', subnet('more', '10.0.7.0/24'));
    bus.emit({ type: 'subnets.created', key: 'more' });
    expect(await eventually(() => cache.subnetFor('10.0.7.1')?.name === 'more')).toBe(true);
    cache.close();
    await store.create('reservations', 'r2', { subnet: 'more', mac: 'aa:00:00:00:00:02', address: '10.0.7.50' });
    bus.emit({ type: 'reservations.created', key: 'r2' });
    expect(await eventually(() => cache.reservationAt('10.0.7.50') !== undefined, 200)).toBe(false);
  });
});
