/**
 * The PostgreSQL event log (src/store/pg-events.ts): an event is written in the transaction of its change (a
 * change that fails writes none), every daemon following the log gets every event in id order with the serverId
 * that wrote it, and a follower whose connection was cut catches up on what was written meanwhile (NOTIFY alone
 * would have lost it). PostgreSQL only.
 */
import { describe, expect, it } from 'vitest';
import { openPgStore, type PgStore } from '../../src/store/pg.js';
import { ConflictError, type LoggedEvent, PreconditionError } from '../../src/store/store.js';
import { adminQuery, backends, PG_URL, relay, skipUnavailable } from './backends.js';

const pgBackend = backends(import.meta.filename).find((x) => x.name === 'postgres')!;

/** Resolves once `got` holds `n` events (bounded: 10 s). */
async function until(got: LoggedEvent[], n: number): Promise<void> {
  for (let i = 0; i < 200 && got.length < n; i++) await new Promise((r) => setTimeout(r, 50));
  expect(got.length).toBe(n);
}

describe('PostgreSQL event log', () => {
  skipUnavailable(pgBackend);

  it('is written in the change transaction: a failed change writes no event', async () => {
    const db = await pgBackend.db();
    const s = (await db.open({ serverId: 'rack-1' })) as PgStore;
    const ev = (type: string) => ({ event: { type, key: 'u1', data: { name: 'a' } } });
    const made = await s.create(
      'machines',
      'u1',
      { name: 'a' },
      [{ field: 'name', value: 'a' }],
      ev('machines.created'),
    );
    await expect(
      s.create('machines', 'u2', { name: 'a' }, [{ field: 'name', value: 'a' }], ev('machines.created')),
    ).rejects.toBeInstanceOf(ConflictError);
    await expect(
      s.replace('machines', 'u1', { name: 'b' }, [], { ifMatch: 'stale', ...ev('x') }),
    ).rejects.toBeInstanceOf(PreconditionError);
    await s.replace('machines', 'u1', { name: 'b' }, [], { ifMatch: made.etag, ...ev('machines.updated') });
    await s.remove('machines', 'u1', ev('machines.deleted'));
    const all = await s.events!.since(0);
    expect(all.map((e) => [e.type, e.key, e.serverId, e.data])).toEqual([
      ['machines.created', 'u1', 'rack-1', { name: 'a' }],
      ['machines.updated', 'u1', 'rack-1', { name: 'a' }],
      ['machines.deleted', 'u1', 'rack-1', { name: 'a' }],
    ]);
    expect(all.map((e) => e.id)).toEqual([...all.map((e) => e.id)].sort((x, y) => x - y));
    expect(await s.events!.last()).toBe(all.at(-1)!.id);
  });

  it('a follower gets what another daemon writes, and catches up after its connection was cut', async () => {
    const db = await pgBackend.db();
    const writer = (await db.open({ serverId: 'rack-a' })) as PgStore;
    const r1 = await relay();
    const url = new URL(PG_URL!);
    url.port = String(r1.port);
    const reader = await openPgStore(url.toString(), {
      schema: db.where,
      serverId: 'rack-b',
      connectTimeoutMs: 1000,
      follow: { probeMs: 200, maxBackoffMs: 200 },
    });
    const got: LoggedEvent[] = [];
    const f = reader.events!.follow(await reader.events!.last(), (e) => got.push(e));
    try {
      // Written before the follower listened, or after: it reads from where it started either way.
      for (let i = 0; i < 3; i++)
        await writer.create('subnets', `s${i}`, {}, [], { event: { type: 'subnets.created', key: `s${i}` } });
      await until(got, 3);
      expect(got.map((e) => [e.key, e.serverId])).toEqual([
        ['s0', 'rack-a'],
        ['s1', 'rack-a'],
        ['s2', 'rack-a'],
      ]);

      await r1.cut();
      for (let i = 3; i < 6; i++)
        await writer.create('subnets', `s${i}`, {}, [], { event: { type: 'subnets.created', key: `s${i}` } });
      await new Promise((r) => setTimeout(r, 300));
      expect(got).toHaveLength(3); // nothing reached it while cut
      const r2 = await relay(r1.port);
      try {
        await until(got, 6);
        expect(got.map((e) => e.key)).toEqual(['s0', 's1', 's2', 's3', 's4', 's5']);
        await writer.remove('subnets', 's0', { event: { type: 'subnets.deleted', key: 's0' } });
        await until(got, 7);
      } finally {
        await f.close();
        await reader.close();
        await r2.cut();
      }
    } finally {
      await f.close();
      await reader.close();
    }
    // Events from the other daemon only: the writer's own store wrote them, nobody else.
    const rows = await adminQuery(`SELECT DISTINCT server_id FROM ${db.where}.events`);
    expect(rows.rows.map((r) => r.server_id)).toEqual(['rack-a']);
  }, 30_000);
});
