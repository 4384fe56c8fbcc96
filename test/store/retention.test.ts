/**
 * The leader's housekeeping of a shared inventory (issue 17): the event log keeps a bounded window (events older
 * than the age go, the newest N always stay), a follower that was away longer than the window is told so (its
 * SSE clients get `event: lost`, live and on reconnecting from before the gap, and re-read), and the lease sweep
 * marks ended offered/bound leases expired without touching live ones or anything else in them but their writer,
 * now the sweeping daemon (both backends).
 */
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { createBus, type EventInput } from '../../src/events.js';
import { registerEvents } from '../../src/http/events.js';
import { silentLogger } from '../../src/log.js';
import { followPeers } from '../../src/peer-events.js';
import { etagOf } from '../../src/store/batch.mjs';
import { openPgStore, type PgStore } from '../../src/store/pg.js';
import type { ExpiredLease } from '../../src/store/store.js';
import { backends, PG_URL, relay, skipUnavailable } from './backends.js';

const all = backends(import.meta.filename);
const pgBackend = all.find((x) => x.name === 'postgres')!;

const created = (name: string) => {
  const e: EventInput = { type: 'machines.created', key: name, machine: name, data: { name } };
  return { event: { type: e.type, key: name, data: e } };
};

/** Reads an SSE stream into `text` until closed. */
async function sse(url: string, headers: Record<string, string> = {}) {
  const ctl = new AbortController();
  const res = await fetch(url, { signal: ctl.signal, headers });
  const out = { text: '', close: () => ctl.abort() };
  void (async () => {
    const dec = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) out.text += dec.decode(chunk);
  })().catch(() => {});
  return out;
}

const until = async (test: () => boolean, ms = 15_000) => {
  const end = Date.now() + ms;
  while (!test() && Date.now() < end) await new Promise((r) => setTimeout(r, 25));
  return test();
};

describe('event log retention (PostgreSQL)', () => {
  skipUnavailable(pgBackend);

  it('deletes events past the age, always keeping the newest N', async () => {
    const db = await pgBackend.db();
    const s = (await db.open({ serverId: 'rack-a' })) as PgStore;
    for (let i = 0; i < 10; i++) await s.create('machines', `m${i}`, { name: `m${i}` }, [], created(`m${i}`));
    const ids = (await s.events!.since(0)).map((e) => e.id);
    expect(ids).toHaveLength(10);
    // None is an hour old: nothing goes, whatever N.
    expect(await s.events!.prune({ maxAgeMs: 3_600_000, keep: 1 })).toBe(0);
    // All are older than 0 ms: all but the newest 3 go, oldest first, in batches.
    expect(await s.events!.prune({ maxAgeMs: 0, keep: 3, batch: 5 })).toBe(5);
    expect(await s.events!.prune({ maxAgeMs: 0, keep: 3, batch: 5 })).toBe(2);
    expect((await s.events!.since(0)).map((e) => e.id)).toEqual(ids.slice(7));
    expect(await s.events!.prune({ maxAgeMs: 0, keep: 3 })).toBe(0);
  });

  it('a follower behind the window reports a gap, and its SSE clients get lost, live and on reconnect', async () => {
    const db = await pgBackend.db();
    const writer = (await db.open({ serverId: 'rack-a' })) as PgStore;
    await writer.create('machines', 'before', { name: 'before' }, [], created('before'));
    const r1 = await relay();
    const url = new URL(PG_URL!);
    url.port = String(r1.port);
    const reader = await openPgStore(url.toString(), {
      schema: db.where,
      serverId: 'rack-b',
      follow: { probeMs: 200, maxBackoffMs: 200 },
    });
    const bus = createBus(silentLogger);
    const app = Fastify();
    registerEvents(app, { bus, log: silentLogger });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}/events`;
    const gaps: unknown[] = [];
    const stop = await followPeers(reader, bus, 'rack-b', silentLogger, undefined, (g) => gaps.push(g));
    let r2: Awaited<ReturnType<typeof relay>> | undefined;
    const stream = await sse(base);
    try {
      await writer.create('machines', 'seen', { name: 'seen' }, [], created('seen'));
      expect(await until(() => stream.text.includes('"key":"seen"'))).toBe(true);
      const seenId = Number(/id: (\d+)\nevent: machines.created/.exec(stream.text)![1]);

      await r1.cut();
      for (const n of ['gone1', 'gone2', 'kept']) await writer.create('machines', n, { name: n }, [], created(n));
      expect(await writer.events!.prune({ maxAgeMs: 0, keep: 1 })).toBe(4);
      r2 = await relay(r1.port);

      expect(await until(() => stream.text.includes('"key":"kept"'))).toBe(true);
      expect(gaps).toHaveLength(1);
      // The lost notice comes before the kept event; the deleted ones never come.
      expect(stream.text.indexOf('event: lost')).toBeGreaterThan(-1);
      expect(stream.text.indexOf('event: lost')).toBeLessThan(stream.text.indexOf('"key":"kept"'));
      expect(stream.text).not.toContain('gone1');
      // A client that last saw an event from before the gap is told too; one from after it is not.
      const late = await sse(base, { 'last-event-id': String(seenId) });
      const after = await sse(base, { 'last-event-id': String(seenId + 1) });
      expect(await until(() => late.text.includes('"key":"kept"'))).toBe(true);
      expect(late.text).toContain('event: lost');
      await new Promise((r) => setTimeout(r, 200));
      expect(after.text).not.toContain('event: lost');
      late.close();
      after.close();
    } finally {
      stream.close();
      await stop?.();
      await app.close();
      await reader.close();
      await r2?.cut();
    }
  }, 30_000);
});

describe.each(all)('lease sweep ($name)', (b) => {
  skipUnavailable(b);

  it("marks ended offered/bound leases expired in the sweeper's name, keeping the rest and every live one", async () => {
    const s = await (await b.db()).open({ serverId: 'rack-sweep' });
    const lease = (address: string, state: string, expiresAt: string) => ({
      address,
      subnet: 'lab',
      mac: `aa:${address.slice(-1)}`,
      state,
      expiresAt,
      serverId: 'rack-a',
    });
    const past = '2020-01-01T00:00:00.000Z';
    const future = '2099-01-01T00:00:00.000Z';
    // A lease naming no daemon (written before leases recorded one, or by a tool without one).
    const { serverId: _none, ...unnamed } = lease('10.0.0.6', 'bound', past);
    const docs: { address: string; serverId?: string }[] = [
      lease('10.0.0.1', 'bound', past),
      lease('10.0.0.2', 'offered', past),
      lease('10.0.0.3', 'bound', future),
      lease('10.0.0.4', 'released', past),
      lease('10.0.0.5', 'declined', past),
      unnamed,
    ];
    await Promise.all(docs.map((d) => s.putBatched('leases', d.address, d)));
    const now = new Date().toISOString();
    // An event for each bound lease marked, none for the offer.
    const ev = (l: ExpiredLease) => (l.was === 'bound' ? { type: 'lease.expired', key: l.key, data: l } : undefined);
    // Each names the daemon that wrote it before it ended (its row's serverId as read), not the sweeper.
    const marked: ExpiredLease[] = [
      { key: '10.0.0.1', mac: 'aa:1', subnet: 'lab', serverId: 'rack-a', was: 'bound' },
      { key: '10.0.0.2', mac: 'aa:2', subnet: 'lab', serverId: 'rack-a', was: 'offered' },
      { key: '10.0.0.6', mac: 'aa:6', subnet: 'lab', was: 'bound' },
    ];
    expect(await s.expireLeases!(now, { event: ev })).toEqual(marked);
    // PostgreSQL: in the same transaction (SQLite has no event log).
    if (s.events)
      expect((await s.events.since(0)).map((e) => [e.type, e.key, e.data])).toEqual([
        ['lease.expired', '10.0.0.1', marked[0]],
        ['lease.expired', '10.0.0.6', marked[2]],
      ]);
    for (const d of docs) {
      const got = (await s.get('leases', d.address))!;
      const swept = ['10.0.0.1', '10.0.0.2', '10.0.0.6'].includes(d.address);
      const { updatedAt, ...rest } = got.doc as Record<string, unknown>;
      // The sweeper names itself (PostgreSQL); SQLite's store has no serverId and drops the old writer's.
      const { serverId: _old, ...kept } = d;
      const by = b.name === 'postgres' ? { serverId: 'rack-sweep' } : {};
      expect(rest).toEqual(swept ? { ...kept, state: 'expired', ...by } : d);
      expect(updatedAt !== undefined).toBe(swept);
      expect(got.etag).toBe(etagOf(got.json));
    }
    expect(await s.expireLeases!(now, { event: ev })).toEqual([]);
    if (s.events) expect(await s.events.since(0)).toHaveLength(2);
  });

  it('marks and logs nothing for a lease that had not ended by `before`, nor past the limit', async () => {
    const s = await (await b.db()).open();
    const doc = {
      address: '10.0.0.9',
      subnet: 'lab',
      mac: 'aa:9',
      state: 'bound',
      expiresAt: '2020-01-01T00:00:00.000Z',
    };
    await s.putBatched('leases', doc.address, doc);
    const ev = (l: { key: string }) => ({ type: 'lease.expired', key: l.key, data: l });
    // `before` earlier than the lease's end: nothing is marked, nothing logged; the limit is honoured.
    expect(await s.expireLeases!('2019-01-01T00:00:00.000Z', { event: ev })).toEqual([]);
    expect(await s.expireLeases!(new Date().toISOString(), { limit: 0, event: ev })).toEqual([]);
    if (s.events) expect(await s.events.since(0)).toEqual([]);
    expect((await s.get('leases', doc.address))?.doc.state).toBe('bound');
  });
});
