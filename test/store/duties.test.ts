/**
 * The singleton duties on a shared inventory (src/duties.ts): only the leading daemon sweeps ended leases and
 * prunes the event log, each lease it marks is one `lease.expired` on every daemon's bus (its own, the others' from
 * the event log), and when its lock connection is terminated the other daemon takes both over. PostgreSQL
 * only (a SQLite daemon leads alone: test/fleet/rollout-sync.test.ts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startDuties } from '../../src/duties.js';
import { createBus, type PlinthEvent } from '../../src/events.js';
import { silentLogger } from '../../src/log.js';
import { followPeers } from '../../src/peer-events.js';
import type { Leadership, Store } from '../../src/store/store.js';
import { adminQuery, backends, leaderPid, skipUnavailable } from './backends.js';

const pgBackend = backends(import.meta.filename).find((x) => x.name === 'postgres')!;
const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
});

const until = async (test: () => boolean | Promise<boolean>, ms = 15_000) => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await test()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return test();
};

/** A daemon's duties on `store`, counting the sweeps and prunes it runs; `heard`: its bus, with its peers' events. */
async function daemon(store: Store, serverId: string) {
  const calls = { sweeps: 0, prunes: 0 };
  const bus = createBus(silentLogger);
  const heard: PlinthEvent[] = [];
  bus.on((e) => heard.push(e));
  const follow = await followPeers(store, bus, serverId, silentLogger);
  if (follow) stops.push(follow);
  const expire = store.expireLeases!.bind(store);
  const prune = store.events!.prune.bind(store.events);
  const counted: Store = {
    ...store,
    sharedLeases: true,
    expireLeases: (before, o) => {
      calls.sweeps++;
      return expire(before, o);
    },
    events: {
      ...store.events!,
      prune: (o) => {
        calls.prunes++;
        return prune(o);
      },
    },
  };
  const lead: Leadership = store.leadership!({ retryMs: 100, probeMs: 100, sessionTimeoutMs: 1500 });
  const stop = startDuties(
    counted,
    lead,
    silentLogger,
    {
      leaseSweepMs: 50,
      leaseGraceMs: 0,
      retentionMs: 50,
      eventMaxAgeMs: 0,
      eventKeep: 2,
    },
    bus,
  );
  stops.push(() => lead.close(), stop);
  return { lead, calls, heard };
}

const expiredOf = (heard: PlinthEvent[]) => heard.filter((e) => e.type === 'lease.expired').map((e) => [e.key, e.data]);

describe('singleton duties on PostgreSQL', () => {
  skipUnavailable(pgBackend);

  it('run on the leader only, and move when its lock connection is terminated', async () => {
    const db = await pgBackend.db();
    const s1 = await db.open({ serverId: 'rack-a' });
    const s2 = await db.open({ serverId: 'rack-b' });
    const a = await daemon(s1, 'rack-a');
    expect(await until(() => a.lead.leader)).toBe(true);
    const b = await daemon(s2, 'rack-b');
    const ended = { subnet: 'lab', mac: 'aa:01', state: 'bound', expiresAt: '2020-01-01T00:00:00.000Z' };
    // The lease of a client rack-c served: its lease.expired names rack-c, not the sweeper.
    await s2.putBatched('leases', '10.0.0.1', { address: '10.0.0.1', ...ended, serverId: 'rack-c' });
    // An offer that ran out is marked too, and announced nowhere (as a daemon's own reclaim pass does).
    await s2.putBatched('leases', '10.0.0.9', { address: '10.0.0.9', ...ended, mac: 'aa:09', state: 'offered' });
    for (let i = 0; i < 5; i++) await s2.create('machines', `m${i}`, { name: `m${i}` }, [], { event: { type: 'x' } });

    expect(await until(async () => (await s2.get('leases', '10.0.0.1'))?.doc.state === 'expired')).toBe(true);
    // Its own pass may be the next one: the first may have run between the two writes.
    expect(await until(async () => (await s2.get('leases', '10.0.0.9'))?.doc.state === 'expired')).toBe(true);
    // lease.expired, once: on the leader's bus once its sweep has committed, on the other's from the event log
    // (which can come first: the NOTIFY leaves at that COMMIT, before the leader's code runs on).
    const one = [['10.0.0.1', { mac: 'aa:01', subnet: 'lab', serverId: 'rack-c' }]];
    expect(await until(() => expiredOf(a.heard).length > 0 && expiredOf(b.heard).length > 0)).toBe(true);
    expect(expiredOf(a.heard)).toEqual(one);
    expect(expiredOf(b.heard)).toEqual(one);
    expect(await until(async () => (await s2.events!.since(0)).length === 2)).toBe(true);
    expect(a.calls.sweeps).toBeGreaterThan(0);
    expect(a.calls.prunes).toBeGreaterThan(0);
    expect(b.calls).toEqual({ sweeps: 0, prunes: 0 });

    await adminQuery('SELECT pg_terminate_backend($1)', [await leaderPid(db.where)]);
    expect(await until(() => b.lead.leader)).toBe(true);
    await s2.putBatched('leases', '10.0.0.2', { address: '10.0.0.2', ...ended, mac: 'aa:02' });
    expect(await until(async () => (await s2.get('leases', '10.0.0.2'))?.doc.state === 'expired')).toBe(true);
    expect(b.calls.sweeps).toBeGreaterThan(0);
    expect(a.lead.leader).toBe(false);
    expect(await until(() => expiredOf(a.heard).length > 1 && expiredOf(b.heard).length > 1)).toBe(true);
    // A lease naming no daemon: its event names none.
    const two = [...one, ['10.0.0.2', { mac: 'aa:02', subnet: 'lab' }]];
    expect(expiredOf(a.heard)).toEqual(two);
    expect(expiredOf(b.heard)).toEqual(two);
  }, 30_000);
});
