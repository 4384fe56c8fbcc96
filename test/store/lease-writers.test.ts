/**
 * Each lease row names the daemon that last wrote it (issue 17), whoever that is: a claim's release of the client's
 * other row names the claim's writer, the leader's sweep names the sweeper (PostgreSQL; SQLite's daemon never
 * sweeps, its mark names no one). And a daemon's catch-up read (`leaseChanges`, PostgreSQL) leaves out the rows
 * naming it, returning the other daemons' and those naming no one.
 */
import { describe, expect, it } from 'vitest';
import type { Doc, Store } from '../../src/store/store.js';
import { backends, skipUnavailable } from './backends.js';
import { claim, HOUR, iso, lease, NOW, T0 } from './lease-fixture.js';

const docOf = async (s: Store, address: string) => (await s.get('leases', address))?.doc as Doc;
const MAC = (i: number) => `52:54:00:00:01:0${i}`;

describe.each(backends(import.meta.filename))('lease writers on $name', (b) => {
  skipUnavailable(b);
  const pgOnly = b.name === 'postgres' ? it : it.skip;

  it("a claim's release of the client's other row names the claim's writer, or no one", async () => {
    const s = await (await b.db()).open();
    await claim(s, lease('10.0.0.10', MAC(1), 'offered', { serverId: 'rack-b' }));
    expect(await claim(s, lease('10.0.0.11', MAC(1), 'bound', { serverId: 'rack-a' }))).toEqual({ ok: true });
    expect(await docOf(s, '10.0.0.10')).toMatchObject({ state: 'released', serverId: 'rack-a' });
    // A writer without a serverId leaves none: the row no longer names rack-b, which would not read it back.
    await claim(s, lease('10.0.0.12', MAC(2), 'offered', { serverId: 'rack-b' }));
    expect(await claim(s, lease('10.0.0.13', MAC(2), 'bound'))).toEqual({ ok: true });
    const released = await docOf(s, '10.0.0.12');
    expect(released.state).toBe('released');
    expect(released).not.toHaveProperty('serverId');
  });

  it('the sweep marks ended leases expired in the name of the sweeping daemon', async () => {
    const s = await (await b.db()).open({ serverId: 'rack-a' });
    await s.putBatched(
      'leases',
      '10.0.0.20',
      lease('10.0.0.20', MAC(3), 'bound', { serverId: 'rack-b', until: T0 - HOUR }),
    );
    expect((await s.expireLeases!(NOW)).map((l) => l.key)).toEqual(['10.0.0.20']);
    const d = await docOf(s, '10.0.0.20');
    expect(d.state).toBe('expired');
    if (b.name === 'postgres') expect(d.serverId).toBe('rack-a');
    else expect(d).not.toHaveProperty('serverId');
  });

  pgOnly("a daemon's catch-up read leaves out its own rows, not the other's nor those naming no one", async () => {
    const db = await b.db();
    const [a, other, plain] = [
      await db.open({ serverId: 'rack-a' }),
      await db.open({ serverId: 'rack-b' }),
      await db.open(),
    ];
    const from = await Promise.all([a, other, plain].map(async (s) => (await s.leaseChanges!()).cursor));
    const read = async (s: Store, i: number) => {
      const got = await s.leaseChanges!(from[i]);
      from[i] = got.cursor;
      return got.docs.map((d) => `${d.address} ${d.serverId ?? '-'}`).sort();
    };
    await claim(a, lease('10.0.0.30', MAC(4), 'bound', { serverId: 'rack-a' }));
    await claim(other, lease('10.0.0.31', MAC(5), 'bound', { serverId: 'rack-b' }));
    await a.putBatched('leases', '10.0.0.32', lease('10.0.0.32', MAC(6), 'bound'));
    // rack-a's lease, then renewed through rack-b: rack-b's row now.
    await claim(a, lease('10.0.0.33', MAC(7), 'bound', { serverId: 'rack-a' }));
    await claim(other, lease('10.0.0.33', MAC(7), 'bound', { serverId: 'rack-b', until: T0 + 2 * HOUR }));
    expect(await read(a, 0)).toEqual(['10.0.0.31 rack-b', '10.0.0.32 -', '10.0.0.33 rack-b']);
    expect(await read(other, 1)).toEqual(['10.0.0.30 rack-a', '10.0.0.32 -']);
    expect(await read(plain, 2)).toEqual(['10.0.0.30 rack-a', '10.0.0.31 rack-b', '10.0.0.32 -', '10.0.0.33 rack-b']);
    // rack-a's sweep: every row is rack-a's now; rack-a reads none of them back, the others all.
    expect(await a.expireLeases!(iso(T0 + 3 * HOUR))).toHaveLength(4);
    expect(await read(a, 0)).toEqual([]);
    const all = ['10.0.0.30 rack-a', '10.0.0.31 rack-a', '10.0.0.32 rack-a', '10.0.0.33 rack-a'];
    expect(await read(other, 1)).toEqual(all);
    expect(await read(plain, 2)).toEqual(all);
  });
});
