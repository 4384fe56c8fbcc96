/**
 * The lease table on a store other daemons write too (PostgreSQL), without sockets: two tables on two
 * connections to one schema, as two daemons. An offer of an address the other daemon gave is refused by the
 * database and the table learns the holder (the next candidate is then another address); a bind of it is a
 * LeaseTakenError (the REQUEST's NAK); refresh() teaches a table the other daemon's lease of a client (so it can
 * renew it); a late offer to the client does not shorten its lease; catchUp() follows what the other daemon
 * wrote (binds, releases, declines, held counts), leaving alone an address this daemon was writing meanwhile, and
 * reads a pass of several pages at once, a failed page again at the next catch-up (not the pages before it).
 * PostgreSQL only.
 */
import { describe, expect, it } from 'vitest';
import { LeaseTakenError, loadLeaseTable } from '../../src/dhcp/leases.js';
import { createBus } from '../../src/events.js';
import type { SubnetInfo } from '../../src/inventory/cache.js';
import { silentLogger } from '../../src/log.js';
import { ipToInt, parseCidr } from '../../src/model/common.js';
import { backends, skipUnavailable } from '../store/backends.js';
import { SUBNET } from './helpers.js';

const pgBackend = backends(import.meta.filename).find((x) => x.name === 'postgres')!;
const s = { ...SUBNET, activeStart: '10.99.1.10', activeEnd: '10.99.1.13' } as SubnetInfo;
const subnet: SubnetInfo = { ...s, net: parseCidr(s.subnet), start: ipToInt('10.99.1.10'), end: ipToInt('10.99.1.13') };

describe('lease table on a shared store', () => {
  skipUnavailable(pgBackend);

  it('learns what the other daemon holds from lost claims and refresh, and NAKs a bind of it', async () => {
    const db = await pgBackend.db();
    const t = Date.parse('2026-01-01T00:00:00Z');
    const open = async () =>
      loadLeaseTable({ store: await db.open(), bus: createBus(), log: silentLogger, now: () => t, scanStart: () => 0 });
    // Both loaded before either wrote: neither knows the other's leases.
    const [a, b, b2] = [await open(), await open(), await open()];
    const c1 = { mac: '52:54:00:00:00:01' };
    const c2 = { mac: '52:54:00:00:00:02' };
    const x = a.allocate(subnet, c1, undefined, undefined).address!;
    await a.bind(subnet, c1, x, 3600);
    // B picks the same address for another client from its own view (every scan starts at the range's first
    // address here): the database refuses the offer.
    expect(b.allocate(subnet, c2, undefined, undefined).address).toBe(x);
    const offered = b.offer(subnet, c2, x, 30);
    expect(await b.claimOffer(offered)).toBe(false);
    // B now knows A's lease: the next candidate is another address, which it wins.
    expect(b.get(x)?.mac).toBe(c1.mac);
    const y = b.allocate(subnet, c2, undefined, undefined).address!;
    expect(y).not.toBe(x);
    expect(await b.claimOffer(b.offer(subnet, c2, y, 30))).toBe(true);
    // A REQUEST on A for B's offer (A never saw it): the bind fails, the address stays c2's.
    await expect(a.bind(subnet, { mac: '52:54:00:00:00:03' }, y, 3600)).rejects.toBeInstanceOf(LeaseTakenError);
    expect(a.get(y)?.mac).toBe(c2.mac);
    // A RENEWING c1 reaching B: refresh() reads c1's lease, which B can then extend.
    expect(b2.get(x)).toBeUndefined();
    await b2.refresh(x, c1);
    expect(b2.get(x)).toMatchObject({ mac: c1.mac, state: 'bound' });
    const renewed = await b2.bind(subnet, c1, x, 7200);
    expect(renewed.expiresAt).toBe(new Date(t + 7200_000).toISOString());
    // A late offer of c1's own address from the first table keeps the lease as bound.
    expect(await a.claimOffer(a.offer(subnet, c1, x, 30))).toBe(true);
    const check = await db.open();
    expect((await check.get('leases', x))?.doc).toMatchObject({ state: 'bound', mac: c1.mac });
  });

  it("starts a client's scan where it hashes to: two daemons offer one client the same address, other clients elsewhere", async () => {
    const db = await pgBackend.db();
    const big: SubnetInfo = {
      ...subnet,
      net: parseCidr('10.99.0.0/16'),
      start: ipToInt('10.99.0.10'),
      end: ipToInt('10.99.255.209'),
    };
    const open = async () => loadLeaseTable({ store: await db.open(), bus: createBus(), log: silentLogger });
    const [a, b] = await Promise.all([open(), open()]);
    const macs = Array.from({ length: 8 }, (_, i) => `52:54:00:00:01:0${i}`);
    const fromA = macs.map((mac) => a.allocate(big, { mac }, undefined, undefined).address);
    // B, which knows nothing of A's choices, picks the same address for each client: a relay forwarding one
    // DISCOVER to both costs one address, and both offers' claims win (the same client).
    expect(macs.map((mac) => b.allocate(big, { mac }, undefined, undefined).address)).toEqual(fromA);
    // Different clients start far apart (none of them at the range's first address, where a cursor would).
    expect(new Set(fromA).size).toBe(8);
    expect(fromA).not.toContain('10.99.0.10');
    for (const [i, mac] of macs.entries()) expect(await a.claimOffer(a.offer(big, { mac }, fromA[i]!, 30))).toBe(true);
    for (const [i, mac] of macs.entries()) expect(await b.claimOffer(b.offer(big, { mac }, fromA[i]!, 30))).toBe(true);
  });

  it('catchUp follows the binds, releases and declines of the other daemon, and its held counts', async () => {
    const db = await pgBackend.db();
    const open = async () =>
      loadLeaseTable({ store: await db.open(), bus: createBus(), log: silentLogger, scanStart: () => 0 });
    const [a, b] = [await open(), await open()];
    const mac = (i: number) => ({ mac: `52:54:00:00:02:0${i}` });
    const [x, y] = ['10.99.1.10', '10.99.1.11'];
    await a.bind(subnet, mac(1), x, 3600);
    await a.bind(subnet, mac(2), y, 3600);
    expect(b.get(x)).toBeUndefined();
    expect(await b.catchUp()).toBe(2);
    expect(b.forMac(subnet.name, mac(1))).toMatchObject({ address: x, state: 'bound' });
    expect(b.held(subnet)).toBe(2);
    // B's next client gets a free address at once (without catchUp: x, a claim lost to A's client).
    expect(b.allocate(subnet, mac(3), undefined, undefined).address).toBe('10.99.1.12');
    // Nothing new: nothing learnt; B's own writes come back as the index has them.
    expect(await b.catchUp()).toBe(0);
    await b.bind(subnet, mac(3), '10.99.1.12', 3600);
    expect(await b.catchUp()).toBe(0);
    expect(b.held(subnet)).toBe(3);
    expect(await a.release(x, mac(1))).toBe(true);
    await a.decline(subnet, y, mac(2), 600);
    expect(await b.catchUp()).toBe(2);
    expect(b.get(x)?.state).toBe('released');
    expect(b.get(y)?.state).toBe('declined');
    // Held: B's bound lease and the quarantined address; the released one is free again, the declined one not.
    expect(b.held(subnet)).toBe(2);
    expect(b.usable(subnet, mac(4), x, undefined)).toBe(true);
    expect(b.usable(subnet, mac(4), y, undefined)).toBe(false);
  });

  it("publishes on its own bus the lease events of the other daemon's writes it learns, once each, naming it", async () => {
    const db = await pgBackend.db();
    const busB = createBus();
    const heard: { type: string; key?: string; data?: unknown }[] = [];
    busB.on((e) => heard.push({ type: e.type, key: e.key, data: e.data }));
    const named = async (serverId: string, bus = createBus()) =>
      loadLeaseTable({ store: await db.open({ serverId }), bus, log: silentLogger, scanStart: () => 0, serverId });
    const a = await named('rack-a');
    const b = await named('rack-b', busB);
    const mac = (i: number) => ({ mac: `52:54:00:00:03:0${i}` });
    const [x, y, z, w] = ['10.99.1.10', '10.99.1.11', '10.99.1.12', '10.99.1.13'];
    const byA = { subnet: subnet.name, serverId: 'rack-a' };
    await a.bind(subnet, mac(1), x, 3600);
    expect(await a.claimOffer(a.offer(subnet, mac(2), y, 30))).toBe(true);
    await b.catchUp();
    expect(heard).toEqual([
      { type: 'lease.acked', key: x, data: { mac: mac(1).mac, ...byA, expiresAt: expect.any(String) } },
      { type: 'lease.offered', key: y, data: { mac: mac(2).mac, ...byA } },
    ]);
    // Learnt once: a read with nothing new, and B's own writes, publish nothing more here.
    await b.catchUp();
    await b.bind(subnet, mac(3), z, 3600);
    await b.catchUp();
    expect(heard.map((e) => e.type)).toEqual(['lease.acked', 'lease.offered', 'lease.acked']);
    // B's own ACK, from its own bind, naming B.
    expect(heard[2]).toMatchObject({ key: z, data: { mac: mac(3).mac, serverId: 'rack-b' } });
    expect(await a.release(x, mac(1))).toBe(true);
    await a.decline(subnet, y, mac(2), 600);
    await b.catchUp();
    expect(heard.slice(3)).toEqual([
      { type: 'lease.released', key: x, data: { mac: mac(1).mac, ...byA } },
      { type: 'lease.declined', key: y, data: { mac: mac(2).mac, ...byA, quarantineSeconds: expect.any(Number) } },
    ]);
    expect((heard[4]!.data as { quarantineSeconds: number }).quarantineSeconds).toBeGreaterThan(590);
    // A row naming no daemon (a writer without a serverId): its event names none.
    const plain = await db.open();
    await plain.claimLease!({
      doc: { address: w, subnet: subnet.name, mac: mac(4).mac, state: 'bound', expiresAt: '2099-01-01T00:00:00.000Z' },
      now: new Date().toISOString(),
    });
    await b.catchUp();
    expect(heard.slice(5)).toEqual([
      {
        type: 'lease.acked',
        key: w,
        data: { mac: mac(4).mac, subnet: subnet.name, expiresAt: '2099-01-01T00:00:00.000Z' },
      },
    ]);
  });

  it('catchUp learns every row of a pass of several pages, and resumes a failed one after its last good page', async () => {
    const db = await pgBackend.db();
    const a = await loadLeaseTable({ store: await db.open(), bus: createBus(), log: silentLogger, scanStart: () => 0 });
    const store = await db.open({ leasePageSize: 3 });
    const b = await loadLeaseTable({ store, bus: createBus(), log: silentLogger, scanStart: () => 0 });
    const mac = (i: number) => ({ mac: `52:54:00:00:04:0${i}` });
    const all = ['10.99.1.10', '10.99.1.11', '10.99.1.12', '10.99.1.13'];
    for (const [i, x] of all.entries()) await a.bind(subnet, mac(i), x, 3600);
    expect(await b.catchUp()).toBe(4);
    expect(all.map((x) => b.get(x)?.state)).toEqual(['bound', 'bound', 'bound', 'bound']);
    // The second page of the next pass fails once: the first page's rows are learnt and not read again.
    const read = store.leaseChanges!.bind(store);
    const pages: string[][] = [];
    let calls = 0;
    store.leaseChanges = async (cursor) => {
      if (++calls === 2) throw new Error('connection lost');
      const got = await read(cursor);
      pages.push(got.docs.map((d) => d.address as string));
      return got;
    };
    for (const x of all) expect(await a.release(x, mac(all.indexOf(x)))).toBe(true);
    await expect(b.catchUp()).rejects.toThrow('connection lost');
    expect(all.map((x) => b.get(x)?.state)).toEqual(['released', 'released', 'released', 'bound']);
    expect(await b.catchUp()).toBe(1);
    expect(pages).toEqual([all.slice(0, 3), all.slice(3)]);
    expect(b.get(all[3]!)?.state).toBe('released');
  });

  it('catchUp leaves alone an address this daemon writes or drops while the read is out', async () => {
    const db = await pgBackend.db();
    const open = async () =>
      loadLeaseTable({ store: await db.open(), bus: createBus(), log: silentLogger, scanStart: () => 0 });
    const [a, b] = [await open(), await open()];
    const w = '10.99.1.13';
    await a.bind(subnet, { mac: '52:54:00:00:03:01' }, w, 3600);
    expect(await a.release(w, { mac: '52:54:00:00:03:01' })).toBe(true);
    // B reads A's released row, and binds the address to its own client meanwhile: its bind stands.
    const read = b.catchUp()!;
    const bound = b.bind(subnet, { mac: '52:54:00:00:03:02' }, w, 3600);
    await Promise.all([read, bound]);
    expect(b.get(w)).toMatchObject({ mac: '52:54:00:00:03:02', state: 'bound' });
    // The next read brings B's own row, the same.
    expect(await b.catchUp()).toBe(0);
    expect(b.get(w)).toMatchObject({ mac: '52:54:00:00:03:02', state: 'bound' });
    // A lease the API deletes (leases.deleted: drop) while a read that still has its row is out stays gone.
    const v = '10.99.1.10';
    await a.bind(subnet, { mac: '52:54:00:00:03:03' }, v, 3600);
    const out = b.catchUp()!;
    b.drop(v);
    await out;
    expect(b.get(v)).toBeUndefined();
  });
});
