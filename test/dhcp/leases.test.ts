import { describe, expect, it } from 'vitest';
import { HeldCounts } from '../../src/dhcp/held.js';
import { loadLeaseTable } from '../../src/dhcp/leases.js';
import { createBus } from '../../src/events.js';
import type { SubnetInfo } from '../../src/inventory/cache.js';
import { silentLogger } from '../../src/log.js';
import { ipToInt, parseCidr } from '../../src/model/common.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { SUBNET } from './helpers.js';

const subnet = (over: Partial<SubnetInfo> = {}): SubnetInfo => {
  const s = { ...SUBNET, activeStart: '10.99.1.10', activeEnd: '10.99.1.13', ...over } as SubnetInfo;
  return { ...s, net: parseCidr(s.subnet), start: ipToInt(s.activeStart!), end: ipToInt(s.activeEnd!) };
};

async function table(reserved: Record<string, string> = {}, serverId?: string) {
  let t = Date.parse('2026-01-01T00:00:00Z');
  const clock = { now: () => t, advance: (s: number) => (t += s * 1000) };
  const store = openSqliteStore(':memory:');
  const bus = createBus();
  const events: string[] = [];
  const heard: { type: string; key?: string; data?: unknown }[] = [];
  bus.on((e) => {
    events.push(e.type);
    heard.push({ type: e.type, key: e.key, data: e.data });
  });
  const leases = await loadLeaseTable({
    store,
    bus,
    log: silentLogger,
    now: clock.now,
    reservedMacAt: (a) => reserved[a],
    serverId,
  });
  return { leases, clock, store, events, heard };
}

describe('lease allocation', () => {
  it('order: reservation, existing lease, hint, next free, most expired', async () => {
    const { leases, clock } = await table({ '10.99.1.12': 'aa:00:00:00:00:12' });
    const s = subnet();
    const res = { address: '10.99.1.12', mac: 'aa:00:00:00:00:12', subnet: 'lab', options: [], description: '' };
    expect(leases.allocate(s, 'aa:00:00:00:00:12', '10.99.1.11', res)).toEqual({
      address: '10.99.1.12',
      why: 'reservation',
    });
    expect(leases.allocate(s, 'aa:00:00:00:00:01', '10.99.1.11', undefined).address).toBe('10.99.1.11');
    expect(leases.allocate(s, 'aa:00:00:00:00:01', undefined, undefined)).toMatchObject({
      address: '10.99.1.10',
      why: 'next free address',
    });
    await leases.bind(s, 'aa:00:00:00:00:01', '10.99.1.10', 60);
    expect(leases.allocate(s, 'aa:00:00:00:00:01', '10.99.1.11', undefined)).toMatchObject({
      address: '10.99.1.10',
      why: 'existing lease',
    });
    // Never the reserved address to someone else, never an address in use.
    expect(leases.allocate(s, 'aa:00:00:00:00:02', '10.99.1.12', undefined).address).toBe('10.99.1.11');
    // (the next-free cursor moves on round-robin: .11 was handed out above, so .13 is next)
    expect(leases.allocate(s, 'aa:00:00:00:00:02', '10.99.1.10', undefined).address).toBe('10.99.1.13');
    await leases.bind(s, 'aa:00:00:00:00:02', '10.99.1.11', 120);
    await leases.bind(s, 'aa:00:00:00:00:03', '10.99.1.13', 30);
    // Pool full (the reserved one excluded): nothing.
    expect(leases.allocate(s, 'aa:00:00:00:00:04', undefined, undefined).address).toBeUndefined();
    // Time passes: the lease that ended first is the most expired and is reused.
    clock.advance(200);
    expect(leases.reclaim()).toBe(3);
    expect(leases.allocate(s, 'aa:00:00:00:00:04', undefined, undefined)).toMatchObject({ address: '10.99.1.13' });
  });

  it('DECLINE quarantines the address until the quarantine ends', async () => {
    const { leases, clock, events } = await table();
    const s = subnet({ activeEnd: '10.99.1.10' } as Partial<SubnetInfo>);
    const s1 = { ...s, end: ipToInt('10.99.1.10') };
    await leases.bind(s1, 'aa:00:00:00:00:01', '10.99.1.10', 60);
    await leases.decline(s1, '10.99.1.10', 'aa:00:00:00:00:01', 600);
    expect(events).toContain('lease.declined');
    expect(leases.allocate(s1, 'aa:00:00:00:00:02', undefined, undefined).address).toBeUndefined();
    expect(leases.allocate(s1, 'aa:00:00:00:00:01', undefined, undefined).address).toBeUndefined();
    clock.advance(601);
    expect(leases.allocate(s1, 'aa:00:00:00:00:02', undefined, undefined).address).toBe('10.99.1.10');
  });

  it('writes through to the store and reloads the index from it', async () => {
    const { leases, store, clock } = await table();
    const s = subnet();
    await leases.bind(s, 'aa:00:00:00:00:01', '10.99.1.10', 60, { hostname: 'h1' });
    expect((await store.get('leases', '10.99.1.10'))?.doc).toMatchObject({
      state: 'bound',
      hostname: 'h1',
      mac: 'aa:00:00:00:00:01',
    });
    const again = await loadLeaseTable({ store, bus: createBus(), log: silentLogger, now: clock.now });
    expect(again.forMac('lab', 'aa:00:00:00:00:01')?.address).toBe('10.99.1.10');
    expect(again.allocate(s, 'aa:00:00:00:00:02', '10.99.1.10', undefined).address).toBe('10.99.1.11');
    // Operator deleted it through the API: forgotten.
    again.drop('10.99.1.10');
    expect(again.get('10.99.1.10')).toBeUndefined();
  });

  it('every lease it writes names its serverId: ACK, a move, release, decline, the reclaimed expiry', async () => {
    const { leases, store, clock } = await table({}, 'rack-a');
    const s = subnet();
    const row = async (a: string) => {
      const d = (await store.get('leases', a))?.doc;
      return `${d?.state} ${d?.serverId}`;
    };
    await leases.bind(s, 'aa:00:00:00:00:01', '10.99.1.10', 60);
    expect(await row('10.99.1.10')).toBe('bound rack-a');
    await leases.bind(s, 'aa:00:00:00:00:01', '10.99.1.11', 60); // the client moves: .10 released
    await leases.bind(s, 'aa:00:00:00:00:02', '10.99.1.12', 30);
    await leases.decline(s, '10.99.1.13', 'aa:00:00:00:00:03', 600);
    await leases.release('10.99.1.11', 'aa:00:00:00:00:01');
    clock.advance(31);
    expect(leases.reclaim()).toBe(1);
    await expect.poll(() => row('10.99.1.12')).toBe('expired rack-a');
    await expect.poll(() => row('10.99.1.10')).toBe('released rack-a');
    expect([await row('10.99.1.11'), await row('10.99.1.13')]).toEqual(['released rack-a', 'declined rack-a']);
  });

  it('its lease events name it (serverId) when it has one: offer, ACK, release, decline', async () => {
    const s = subnet();
    const story = async (serverId?: string) => {
      const { leases, heard } = await table({}, serverId);
      leases.offer(s, 'aa:00:00:00:00:01', '10.99.1.10', 30);
      await leases.bind(s, 'aa:00:00:00:00:01', '10.99.1.10', 60);
      await leases.release('10.99.1.10', 'aa:00:00:00:00:01');
      await leases.decline(s, '10.99.1.11', 'aa:00:00:00:00:02', 600);
      return heard;
    };
    const by = { serverId: 'rack-a' };
    const lab = { subnet: 'lab' };
    expect(await story('rack-a')).toEqual([
      { type: 'lease.offered', key: '10.99.1.10', data: { mac: 'aa:00:00:00:00:01', ...lab, ...by } },
      {
        type: 'lease.acked',
        key: '10.99.1.10',
        data: { mac: 'aa:00:00:00:00:01', ...lab, ...by, expiresAt: '2026-01-01T00:01:00.000Z' },
      },
      { type: 'lease.released', key: '10.99.1.10', data: { mac: 'aa:00:00:00:00:01', ...lab, ...by } },
      {
        type: 'lease.declined',
        key: '10.99.1.11',
        data: { mac: 'aa:00:00:00:00:02', ...lab, ...by, quarantineSeconds: 600 },
      },
    ]);
    // Without a serverId, the same events without it.
    const plain = await story();
    expect(plain.map((e) => e.type)).toEqual(['lease.offered', 'lease.acked', 'lease.released', 'lease.declined']);
    for (const e of plain) expect(e.data).not.toHaveProperty('serverId');
  });

  it('release makes the address reusable at once and emits lease.released', async () => {
    const { leases, events } = await table();
    const s = subnet();
    await leases.bind(s, 'aa:00:00:00:00:01', '10.99.1.10', 60);
    expect(await leases.release('10.99.1.10', 'aa:00:00:00:00:99')).toBe(false);
    expect(await leases.release('10.99.1.10', 'aa:00:00:00:00:01')).toBe(true);
    expect(events).toContain('lease.released');
    expect(leases.usable(s, 'aa:00:00:00:00:02', '10.99.1.10', undefined)).toBe(true);
  });
});

describe('reclaim: ended leases back into the pool', () => {
  const mac = 'aa:00:00:00:00:01';

  it('one daemon (SQLite) writes the ended lease expired and publishes lease.expired, naming it (serverId)', async () => {
    for (const serverId of ['rack-a', undefined]) {
      const { leases, store, clock, heard } = await table({}, serverId);
      await leases.bind(subnet(), mac, '10.99.1.10', 60);
      clock.advance(61);
      expect(leases.reclaim()).toBe(1);
      // As its other lease events: its serverId when it has one, none without.
      const by = serverId === undefined ? {} : { serverId };
      const expired = heard.filter((e) => e.type === 'lease.expired');
      expect(expired).toEqual([{ type: 'lease.expired', key: '10.99.1.10', data: { mac, subnet: 'lab', ...by } }]);
      if (serverId === undefined) expect(expired[0]!.data).not.toHaveProperty('serverId');
      expect(leases.get('10.99.1.10')?.state).toBe('expired');
      await expect.poll(async () => (await store.get('leases', '10.99.1.10'))?.doc.state).toBe('expired');
    }
  });

  it('on a shared table only the index learns it: no write, no event (the leader sweeps, once)', async () => {
    let t = Date.parse('2026-01-01T00:00:00Z');
    const base = openSqliteStore(':memory:');
    const claims: string[] = [];
    const store = {
      ...base,
      sharedLeases: true,
      claimLease: (c: Parameters<NonNullable<typeof base.claimLease>>[0]) => {
        claims.push(c.doc.state);
        return base.claimLease!(c);
      },
    };
    const bus = createBus();
    const events: string[] = [];
    bus.on((e) => events.push(e.type));
    const leases = await loadLeaseTable({ store, bus, log: silentLogger, now: () => t });
    await leases.bind(subnet(), mac, '10.99.1.10', 60);
    expect(claims).toEqual(['bound']);
    t += 61_000;
    expect(leases.reclaim()).toBe(1);
    await new Promise((r) => setTimeout(r, 50));
    expect(claims).toEqual(['bound']);
    expect(events).toEqual(['lease.acked']);
    expect(leases.get('10.99.1.10')?.state).toBe('expired');
    expect(leases.allocate(subnet(), 'aa:00:00:00:00:02', '10.99.1.10', undefined).address).toBe('10.99.1.10');
    expect((await base.get('leases', '10.99.1.10'))?.doc.state).toBe('bound');
  });
});

describe('held addresses (the offer cap asks on every unknown DISCOVER)', () => {
  it('HeldCounts counts a pool once, follows changes, and counts again when a clock moves a second', () => {
    let t = 1_000_000;
    let scans = 0;
    const counts = new HeldCounts(
      () => {
        scans++;
        return 5;
      },
      () => t,
    );
    const s = subnet();
    expect(counts.held(s)).toBe(5);
    expect(counts.held(s)).toBe(5);
    expect(scans).toBe(1);
    counts.moved(s.start + 1, false, true);
    counts.moved(s.start + 2, true, true); // bound again: no change
    counts.moved(s.end + 1, false, true); // outside the pool
    expect(counts.held(s)).toBe(6);
    counts.moved(s.start, true, false);
    expect(counts.held(s)).toBe(5);
    expect(scans).toBe(1);
    t += 1000;
    expect(counts.held(s)).toBe(5);
    expect(scans).toBe(2);
    counts.forget();
    counts.held(s);
    expect(scans).toBe(3);
  });

  it('the lease table answers what a pass over its leases would, through binds, moves, releases and declines', async () => {
    const { leases, clock } = await table();
    const s = subnet({ activeStart: '10.99.1.10', activeEnd: '10.99.1.40' });
    const addr = (i: number) => `10.99.1.${10 + i}`;
    const mac = (i: number) => `aa:00:00:00:01:${i.toString(16).padStart(2, '0')}`;
    const scan = () => {
      let n = 0;
      for (let i = 0; i <= 30; i++) {
        const r = leases.get(addr(i));
        if (r && (r.state === 'bound' || r.state === 'declined') && r.exp > clock.now()) n++;
      }
      return n;
    };
    // A deterministic sequence (a small LCG): every kind of change, checked after each.
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    expect(leases.held(s)).toBe(0);
    for (let step = 0; step < 400; step++) {
      const a = addr(rnd(31));
      const m = mac(rnd(12));
      const op = rnd(6);
      if (op === 0) leases.offer(s, m, a, 30);
      else if (op === 1 || op === 2) await leases.bind(s, m, a, 60 + rnd(60));
      else if (op === 3) await leases.release(a, m);
      else if (op === 4) await leases.decline(s, a, m, 30);
      else if (rnd(4) === 0) leases.drop(a);
      else clock.advance(rnd(3) === 0 ? 50 : 0);
      if (rnd(10) === 0) leases.reclaim();
      expect(leases.held(s), `step ${step}`).toBe(scan());
    }
  });
});
