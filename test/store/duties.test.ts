/**
 * The singleton duties on a shared inventory (src/duties.ts): only the leading daemon sweeps ended leases and
 * prunes the event log, and when its lock connection is terminated the other daemon takes both over. PostgreSQL
 * only (a SQLite daemon leads alone: test/fleet/rollout-sync.test.ts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startDuties } from '../../src/duties.js';
import { silentLogger } from '../../src/log.js';
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

/** A daemon's duties on `store`, counting the sweeps and prunes it runs. */
function daemon(store: Store) {
  const calls = { sweeps: 0, prunes: 0 };
  const expire = store.expireLeases!.bind(store);
  const prune = store.events!.prune.bind(store.events);
  const counted: Store = {
    ...store,
    sharedLeases: true,
    expireLeases: (before, limit) => {
      calls.sweeps++;
      return expire(before, limit);
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
  const stop = startDuties(counted, lead, silentLogger, {
    leaseSweepMs: 50,
    leaseGraceMs: 0,
    retentionMs: 50,
    eventMaxAgeMs: 0,
    eventKeep: 2,
  });
  stops.push(() => lead.close(), stop);
  return { lead, calls };
}

describe('singleton duties on PostgreSQL', () => {
  skipUnavailable(pgBackend);

  it('run on the leader only, and move when its lock connection is terminated', async () => {
    const db = await pgBackend.db();
    const s1 = await db.open({ serverId: 'rack-a' });
    const s2 = await db.open({ serverId: 'rack-b' });
    const a = daemon(s1);
    expect(await until(() => a.lead.leader)).toBe(true);
    const b = daemon(s2);
    const ended = { subnet: 'lab', mac: 'aa:01', state: 'bound', expiresAt: '2020-01-01T00:00:00.000Z' };
    await s2.putBatched('leases', '10.0.0.1', { address: '10.0.0.1', ...ended });
    for (let i = 0; i < 5; i++) await s2.create('machines', `m${i}`, { name: `m${i}` }, [], { event: { type: 'x' } });

    expect(await until(async () => (await s2.get('leases', '10.0.0.1'))?.doc.state === 'expired')).toBe(true);
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
  }, 30_000);
});
