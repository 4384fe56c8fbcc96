/** The facts of a client address's TFTP blksize cap, loaded from the store: the machine there, its params, subnets. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BLKSIZE_PARAM, BLKSIZE_PARAM_DEF } from '../../src/boot/caps.js';
import { Subnet } from '../../src/model/subnet.js';
import { blksizeCapFor, machineAtAddress } from '../../src/provision/tftp-caps.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';

const subnet = (name: string, cidr: string, tftpMaxBlksize?: number) =>
  Subnet.parse({ name, subnet: cidr, proxy: true, ...(tftpMaxBlksize ? { tftpMaxBlksize } : {}) });

let store: Store;
beforeEach(async () => {
  store = openSqliteStore(':memory:');
  await store.create('profiles', 'global', { name: 'global', params: {}, description: '' });
  await store.create('params', BLKSIZE_PARAM, BLKSIZE_PARAM_DEF);
});
afterEach(async () => {
  await store.close();
});

const machine = async (name: string, extra: Record<string, unknown>) => {
  const uuid = `00000000-0000-4000-8000-${String(Math.floor(Math.random() * 1e12)).padStart(12, '0')}`;
  const doc = { uuid, name, macs: [], profiles: [], params: {}, description: '', locked: false, ...extra };
  await store.create('machines', uuid, doc, [
    ...((doc.macs as string[]) ?? []).map((m) => ({ field: 'macs', value: m })),
  ]);
  return doc;
};

describe('machine caps through params resolution', () => {
  it('machine -> profiles -> global, each named in the why', async () => {
    await store.create('profiles', 'qemu-uefi', { name: 'qemu-uefi', params: { [BLKSIZE_PARAM]: 1024 } });
    const m = await machine('vm-1', { address: '10.1.2.10', profiles: ['qemu-uefi'] });
    let r = await blksizeCapFor(store, '10.1.2.10');
    expect(r.machine?.name).toBe('vm-1');
    expect(r.cap).toEqual({
      value: 1024,
      source: 'machine',
      why: `param ${BLKSIZE_PARAM} from profile:qemu-uefi of machine 'vm-1' = 1024`,
    });

    await store.replace('machines', m.uuid, { ...m, params: { [BLKSIZE_PARAM]: 1200 } });
    r = await blksizeCapFor(store, '10.1.2.10');
    expect(r.cap?.why).toBe(`param ${BLKSIZE_PARAM} from machine of machine 'vm-1' = 1200`);

    await store.replace('machines', m.uuid, { ...m, profiles: [] });
    await store.replace('profiles', 'global', { name: 'global', params: { [BLKSIZE_PARAM]: 1300 }, description: '' });
    r = await blksizeCapFor(store, '10.1.2.10');
    expect(r.cap?.why).toBe(`param ${BLKSIZE_PARAM} from profile:global of machine 'vm-1' = 1300`);
  });

  it('the smallest of machine, subnet and quirk wins', async () => {
    await store.create('subnets', 'rack', subnet('rack', '10.1.2.0/24', 1024));
    await machine('vm-2', { address: '10.1.2.11', params: { [BLKSIZE_PARAM]: 800 } });
    const quirk = { value: 600, source: 'quirk' as const, why: 'firmware quirk: x' };
    expect((await blksizeCapFor(store, '10.1.2.11')).cap?.source).toBe('machine');
    expect((await blksizeCapFor(store, '10.1.2.11', quirk)).cap).toBe(quirk);
    expect((await blksizeCapFor(store, '10.1.2.12')).cap?.source).toBe('subnet');
    expect((await blksizeCapFor(store, '10.1.2.11')).all.map((c) => c.value)).toEqual([800, 1024]);
    expect((await blksizeCapFor(store, '192.168.1.1')).cap).toBeUndefined();
  });

  it('a value that is not a blksize is ignored and reported', async () => {
    await machine('vm-3', { address: '10.1.2.13', params: { [BLKSIZE_PARAM]: 'small' } });
    const r = await blksizeCapFor(store, '10.1.2.13');
    expect(r.cap).toBeUndefined();
    expect(r.problems).toEqual([
      `param ${BLKSIZE_PARAM} from machine of machine 'vm-3' is "small", not an integer in 8..65464: ignored`,
    ]);
  });

  it('finds the machine by its address, else by the MAC of the lease at that address', async () => {
    await machine('by-lease', { macs: ['52:54:00:00:00:aa'], params: { [BLKSIZE_PARAM]: 1024 } });
    expect(await machineAtAddress(store, '10.1.2.20')).toBeUndefined();
    const lease = {
      address: '10.1.2.20',
      mac: '52:54:00:00:00:aa',
      subnet: 'rack',
      state: 'bound',
      expiresAt: new Date(Date.now() + 3600_000).toISOString(),
    };
    await store.create('leases', lease.address, lease);
    expect((await machineAtAddress(store, '10.1.2.20'))?.name).toBe('by-lease');
    expect((await blksizeCapFor(store, '10.1.2.20')).cap?.value).toBe(1024);
    await store.replace('leases', lease.address, { ...lease, state: 'released' });
    expect(await machineAtAddress(store, '10.1.2.20')).toBeUndefined();
  });
});
