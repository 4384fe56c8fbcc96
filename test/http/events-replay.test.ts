/**
 * The event stream's ids and replay: one sequence for the daemon (not per connection), `Last-Event-ID` gets
 * exactly the missed events from a bounded ring, a comment-free `lost` event when the ring no longer reaches back;
 * CRUD events name their object (name, key, etag) and never carry a secure param's value, even to a viewer.
 */
import type net from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createBus, type PlinthEvent } from '../../src/events.js';
import { API } from '../../src/http/api-prefix.js';
import { EventRing, registerEvents } from '../../src/http/events.js';
import { silentLogger } from '../../src/log.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

type Frame = { id?: string; event?: string; data?: any };

/** Opens a stream and reads frames until `done(frames)` or the time is up; comments are skipped. */
async function read(
  url: string,
  headers: Record<string, string>,
  done: (f: Frame[]) => boolean,
  during: () => Promise<void> | void = () => {},
  ms = 5000,
): Promise<Frame[]> {
  const ac = new AbortController();
  const r = await fetch(url, { headers, signal: ac.signal });
  expect(r.status).toBe(200);
  const frames: Frame[] = [];
  const dec = new TextDecoder();
  let buf = '';
  const timer = setTimeout(() => ac.abort(), ms);
  const reading = (async () => {
    try {
      for await (const chunk of r.body!) {
        buf += dec.decode(chunk as Uint8Array, { stream: true });
        for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const f: Frame = {};
          for (const line of block.split('\n')) {
            if (line.startsWith('id: ')) f.id = line.slice(4);
            else if (line.startsWith('event: ')) f.event = line.slice(7);
            else if (line.startsWith('data: ')) f.data = JSON.parse(line.slice(6));
          }
          if (f.event) frames.push(f);
          if (done(frames)) return ac.abort();
        }
      }
    } catch {
      // aborted
    }
  })();
  await during();
  await reading;
  clearTimeout(timer);
  return frames;
}

const ev = (n: number): PlinthEvent => ({ type: 'machine.tick', machine: 'm', data: { n }, at: '' });
const lease = (n: number): PlinthEvent => ({
  type: 'lease.acked',
  key: `10.0.${n >> 8}.${n & 255}`,
  data: { mac: '52:54:00:12:34:56', subnet: 'lab', expiresAt: '2026-12-05T19:00:00.000Z' },
  at: '2026-12-05T18:00:00.000Z',
});

describe('EventRing', () => {
  it('numbers events from 1, keeps the last `size`, and says when an id is older than what it keeps', () => {
    const ring = new EventRing(3);
    expect(ring.since(0)).toEqual({ entries: [], lost: false, oldest: 1 });
    for (let n = 1; n <= 5; n++) expect(ring.push(ev(n)).id).toBe(n);
    expect(ring.last()).toBe(5);
    expect(ring.since(3).entries.map((x) => x.id)).toEqual([4, 5]);
    expect(ring.since(3).lost).toBe(false);
    expect(ring.since(2)).toMatchObject({ lost: false }); // 3, 4, 5 are all there
    expect(ring.since(1)).toMatchObject({ lost: 'kept', oldest: 3 }); // 2 is gone
    expect(ring.since(1).entries.map((x) => x.id)).toEqual([3, 4, 5]);
    expect(ring.since(5).entries).toEqual([]);
    // An id this run never gave: a client of an earlier run of the daemon.
    expect(ring.since(99)).toMatchObject({ lost: 'restart' });
  });

  it('without replay (size 0) every event after the id is lost', () => {
    const ring = new EventRing(0);
    ring.push(ev(1));
    ring.push(ev(2));
    expect(ring.since(2)).toEqual({ entries: [], lost: false, oldest: 3 });
    expect(ring.since(1)).toEqual({ entries: [], lost: 'kept', oldest: 3 });
  });

  it('is bounded in bytes too: a few large events do not pin memory', () => {
    const ring = new EventRing(1000, 10_000);
    const big = 'x'.repeat(4000);
    for (let n = 0; n < 10; n++) ring.push({ type: 'machine.big', machine: 'm', data: { big }, at: '' });
    const kept = ring.since(0).entries;
    expect(kept.length).toBe(2);
    expect(kept.map((x) => x.id)).toEqual([9, 10]);
  });
});

describe('EventRing, DHCP events apart', () => {
  const machine = (n: number): PlinthEvent => ({ type: 'machines.created', key: `m${n}`, machine: `m${n}`, at: '' });
  const machines = (t: string) => t.startsWith('machines.');

  it('a lease flood does not push machine events out, nor tell a machine stream of a loss', () => {
    const ring = new EventRing(100);
    const start = ring.push(machine(0)).id;
    const ids: number[] = [];
    for (let n = 1; n <= 2000; n++) {
      ring.push(lease(n));
      if (n % 200 === 0) ids.push(ring.push(machine(n)).id);
    }
    expect(ring.last()).toBe(2011);
    const mine = ring.since(start, machines);
    expect(mine.lost).toBe(false);
    expect(mine.entries.filter((x) => machines(x.e.type)).map((x) => x.id)).toEqual(ids);
    // Every kept entry, both buffers merged, in id order: the 100 newest leases and the 10 machines.
    expect(mine.entries.length).toBe(110);
    expect(mine.entries.map((x) => x.id)).toEqual([...mine.entries.map((x) => x.id)].sort((a, b) => a - b));
    // A stream of every type, or of leases, is told: from `oldest` on it has every lease.
    const all = ring.since(start);
    expect(all.lost).toBe('kept');
    const leases = all.entries.filter((x) => x.e.type === 'lease.acked');
    expect(leases.length).toBe(100);
    expect(all.oldest).toBe(leases[0]!.id);
    expect(ring.since(start, (t) => t.startsWith('lease.'))).toMatchObject({ lost: 'kept', oldest: all.oldest });
    // From an id past the evicted leases, nobody is told.
    expect(ring.since(all.oldest - 1).lost).toBe(false);
  });

  it('machine events past the buffer are lost to a machine stream, told with the first id still kept', () => {
    const ring = new EventRing(3);
    for (let n = 1; n <= 5; n++) ring.push(machine(n));
    ring.push(lease(1));
    expect(ring.since(1, machines)).toMatchObject({ lost: 'kept', oldest: 3 });
    expect(ring.since(2, machines).lost).toBe(false);
    expect(ring.since(1, (t) => t.startsWith('lease.')).lost).toBe(false);
  });

  it('a gap is told to every stream from before it; an id of an earlier run, with everything kept', () => {
    const ring = new EventRing(10);
    ring.push(machine(1));
    ring.push(lease(2));
    ring.markGap();
    ring.push(machine(3));
    expect(ring.since(1, machines)).toMatchObject({ lost: 'gap', oldest: 3 });
    expect(ring.since(2, machines)).toMatchObject({ lost: 'gap' });
    expect(ring.since(3, machines).lost).toBe(false);
    const r = ring.since(50, machines);
    expect(r.lost).toBe('restart');
    expect(r.entries.map((x) => x.id)).toEqual([1, 2, 3]);
  });
});

describe("EventRing, one machine's stream (`?machine=UUID`)", () => {
  const A = '0b5c1f2e-0000-4000-8000-00000000000a';
  const B = '0b5c1f2e-0000-4000-8000-00000000000b';
  const of = (uuid: string, n: number): PlinthEvent => ({
    type: 'machines.updated',
    key: uuid,
    data: { name: `e${n}` },
    at: '',
  });
  const boot = (uuid: string): PlinthEvent => ({
    type: 'dhcp.boot',
    key: '52:54:00:00:00:01',
    machine: uuid,
    data: { mac: '52:54:00:00:00:01', filename: 'ipxe.efi', nextServer: '', bootEnv: 'x', reason: '', mode: 'full' },
    at: '',
  });
  const every = () => true;

  it("is not told of a lease flood nor of other machines' evicted events; is told of its own, from the first kept", () => {
    const ring = new EventRing(3);
    const a0 = ring.push(of(A, 0)).id;
    for (let n = 1; n <= 500; n++) ring.push(lease(n));
    const a1 = ring.push(of(A, 1)).id;
    for (let n = 2; n <= 3; n++) ring.push(of(B, n));
    // Since a0: leases and B's nothing evicted, and A's a0 (which the client had). Every type is wanted.
    const a = ring.since(a0, every, A);
    expect(a.lost).toBe(false);
    expect(a.entries.filter((x) => x.e.key === A).map((x) => x.id)).toEqual([a1]);
    // By type alone (no machine, or one that is not a uuid) the lease flood is told, as before.
    expect(ring.since(a0, every).lost).toBe('kept');
    expect(ring.since(a0, every, '52:54:00:00:00:01').lost).toBe('kept');
    // From before a0, A's stream lost a0: told, from just after it.
    expect(ring.since(0, every, A)).toMatchObject({ lost: 'kept', oldest: a0 + 1 });
    // A's a1 goes out of its buffer with B's next event: now A's stream is told from a0 on too.
    ring.push(of(B, 4));
    expect(ring.since(a0, every, A)).toMatchObject({ lost: 'kept', oldest: a1 + 1 });
    expect(ring.since(a1, every, A).lost).toBe(false);
  });

  it('a DHCP event naming the machine (dhcp.boot) counts for it', () => {
    const ring = new EventRing(2);
    const b = ring.push(boot(A)).id;
    for (let n = 1; n <= 5; n++) ring.push(lease(n));
    expect(ring.since(0, every, A)).toMatchObject({ lost: 'kept', oldest: b + 1 });
    expect(ring.since(0, every, B).lost).toBe(false);
  });

  it('past the machines it remembers one by one, an eviction of any other counts for every machine', () => {
    const quiet = new EventRing(1);
    quiet.push(of(A, 0));
    quiet.push(of(A, 1));
    expect(quiet.since(0, every, A).lost).toBe('kept');
    expect(quiet.since(0, every, B).lost).toBe(false);
    const ring = new EventRing(1);
    const uuid = (n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
    for (let n = 1; n <= 16_385; n++) ring.push(of(uuid(n), n));
    ring.push(of(A, 0));
    expect(ring.since(0, every, uuid(1)).lost).toBe('kept');
    expect(ring.since(0, every, B)).toMatchObject({ lost: 'kept', oldest: 16_385 + 1 });
  });
});

describe('EventRing without watchers', () => {
  it('serialises an event only when a stream reads it, once, and wraps around keeping ids in order', () => {
    const ring = new EventRing(4);
    const spy = vi.spyOn(JSON, 'stringify');
    try {
      for (let n = 1; n <= 10; n++) ring.push(lease(n));
      expect(spy).not.toHaveBeenCalled();
      const { entries, lost } = ring.since(5);
      expect(lost).toBe('kept'); // 6 is gone: 7..10 are kept
      expect(entries.map((x) => x.id)).toEqual([7, 8, 9, 10]);
      const f = entries[0]!.frame();
      expect(entries[0]!.frame()).toBe(f);
      expect(spy).toHaveBeenCalledTimes(1);
      expect(f).toBe(`id: 7\nevent: lease.acked\ndata: ${JSON.stringify(lease(7))}\n\n`);
    } finally {
      spy.mockRestore();
    }
    expect(ring.since(9).entries.map((x) => x.id)).toEqual([10]);
    expect(ring.since(6)).toMatchObject({ lost: false });
  });

  it('counts a flat event by an estimate close to its text, and anything else by its text', () => {
    const ring = new EventRing(10);
    const flat = ring.push(lease(1));
    expect(flat.size).toBeGreaterThanOrEqual(flat.frame().length);
    expect(flat.size).toBeLessThan(flat.frame().length * 1.5);
    // A callback's body is whatever the machine posted: nested, so measured exactly.
    const nested = ring.push({ type: 'machine.report', machine: 'm', data: { disks: [{ size: 1 }] }, at: '' });
    expect(nested.size).toBe(nested.frame().length);
    // A long string could be escaped to several times its length: measured exactly too.
    const quotes = ring.push({ type: 'machine.note', machine: 'm', data: { text: '"'.repeat(1000) }, at: '' });
    expect(quotes.size).toBe(quotes.frame().length);
    expect(quotes.size).toBeGreaterThan(2000);
  });
});

describe('Last-Event-ID replay', () => {
  const bus = createBus();
  let app: FastifyInstance;
  let url: string;
  beforeAll(async () => {
    app = Fastify();
    await app.register(async (api) => registerEvents(api, { bus, log: silentLogger, replay: 5 }), { prefix: API });
    await app.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(app.server.address() as net.AddressInfo).port}/api/v1/events`;
  });
  afterAll(() => app.close());
  const tick = (n: number) => bus.emit({ type: 'machine.tick', machine: 'm', data: { n } });
  /** The frame of one new tick, read live: its id is where a reconnect then starts. */
  const mark = async (n: number) =>
    (
      await read(
        url,
        {},
        (f) => f.length === 1,
        () => tick(n),
      )
    )[0]!;

  it('ids increase across connections; a reconnect gets exactly the missed events, then live ones', async () => {
    const first = await read(
      url,
      {},
      (f) => f.length === 2,
      () => [1, 2].forEach(tick),
    );
    const ids = first.map((f) => Number(f.id));
    expect(ids[1]).toBeGreaterThan(ids[0]!);
    // Disconnected: three events happen meanwhile.
    [3, 4, 5].forEach(tick);
    const second = await read(
      url,
      { 'last-event-id': String(ids[1]) },
      (f) => f.length === 4,
      () => tick(6),
    );
    expect(second.map((f) => f.data.data.n)).toEqual([3, 4, 5, 6]);
    expect(second.map((f) => Number(f.id))).toEqual([ids[1]! + 1, ids[1]! + 2, ids[1]! + 3, ids[1]! + 4]);
    expect(second.some((f) => f.event === 'lost')).toBe(false);
    // A new connection without Last-Event-ID continues the same sequence and replays nothing.
    const third = await read(
      url,
      {},
      (f) => f.length === 1,
      () => tick(7),
    );
    expect(third.map((f) => [Number(f.id), f.data.data.n])).toEqual([[ids[1]! + 5, 7]]);
  });

  it('says events were lost when the id is older than the ring, then sends what it has', async () => {
    const start = await mark(100);
    for (let n = 101; n <= 108; n++) tick(n);
    const back = await read(url, { 'last-event-id': start.id! }, (f) => f.length === 6);
    expect(back[0]!.event).toBe('lost');
    expect(back[0]!.id).toBeUndefined();
    expect(back[0]!.data).toMatchObject({ after: Number(start.id), oldest: Number(start.id) + 4 });
    expect(back.slice(1).map((f) => f.data.data.n)).toEqual([104, 105, 106, 107, 108]);
  });

  it('a lease flood since the id does not cost a machine stream its replay', async () => {
    const start = await mark(300);
    for (let n = 0; n < 20; n++) {
      bus.emit({ type: 'lease.acked', key: `10.0.0.${n}`, data: { mac: 'm', subnet: 's', expiresAt: '' } });
      if (n % 5 === 4) tick(301 + n);
    }
    const back = await read(`${url}?type=machine.`, { 'last-event-id': start.id! }, (f) => f.length === 4);
    expect(back.map((f) => [f.event, f.data.data.n])).toEqual([
      ['machine.tick', 305],
      ['machine.tick', 310],
      ['machine.tick', 315],
      ['machine.tick', 320],
    ]);
    // Every type: the 20 leases no longer fit in 5, and the stream says so first.
    const every = await read(url, { 'last-event-id': start.id! }, (f) => f.length === 10);
    expect(every[0]!.event).toBe('lost');
    expect(every[0]!.data.reason).toBe('only the last 5 DHCP events and the last 5 others are kept');
  });

  it("a lease flood does not cost one machine's stream (`?machine=UUID`, every type) its replay", async () => {
    const uuid = '0b5c1f2e-0000-4000-8000-0000000000aa';
    const start = await mark(400);
    for (let n = 0; n < 20; n++) {
      bus.emit({ type: 'lease.acked', key: `10.0.1.${n}`, data: { mac: 'm', subnet: 's', expiresAt: '' } });
      if (n % 10 === 9) bus.emit({ type: 'machine.tick', machine: uuid, data: { n } });
    }
    const back = await read(`${url}?machine=${uuid}`, { 'last-event-id': start.id! }, (f) => f.length === 2);
    expect(back.map((f) => [f.event, f.data.data.n])).toEqual([
      ['machine.tick', 9],
      ['machine.tick', 19],
    ]);
  });

  it('replays only what the stream filters keep; a bad Last-Event-ID replays nothing', async () => {
    const start = await mark(200);
    bus.emit({ type: 'machine.other', machine: 'x', data: {} });
    tick(201);
    const only = await read(`${url}?machine=m`, { 'last-event-id': start.id! }, (f) => f.length === 1);
    expect(only.map((f) => [f.event, f.data.data.n])).toEqual([['machine.tick', 201]]);
    const bad = await read(
      url,
      { 'last-event-id': 'x1' },
      (f) => f.length === 1,
      () => tick(202),
    );
    expect(bad.map((f) => f.data.data.n)).toEqual([202]);
  });
});

describe('CRUD events on the daemon', () => {
  let d: TestDaemon;
  let viewer: string;
  beforeAll(async () => {
    d = await startTestDaemon();
    expect(
      (await d.api('POST', '/api/v1/params', { name: 'pw', schema: { type: 'string' }, secure: true })).status,
    ).toBe(201);
    const t = await d.api('POST', '/api/v1/tokens', { name: 'watcher', role: 'viewer' });
    expect(t.status).toBe(201);
    viewer = t.body.token;
  });
  afterAll(() => d.stop());

  it('name the object (key, name, etag) and never carry a secure param, even to a viewer', async () => {
    let uuid = '';
    let etag = '';
    const frames = await read(
      `${d.url}/api/v1/events?type=machines.`,
      { authorization: `Bearer ${viewer}` },
      (f) => f.length === 3,
      async () => {
        const m = await d.api('POST', '/api/v1/machines', { name: 'ev-m', params: { pw: 'hunter2-secret' } });
        expect(m.status).toBe(201);
        uuid = m.body.uuid;
        const p = await d.api('PATCH', `/api/v1/machines/${uuid}`, { params: { pw: 'hunter3-secret' } });
        etag = p.headers.get('etag') ?? '';
        await d.api('DELETE', `/api/v1/machines/${uuid}`);
      },
    );
    expect(frames.map((f) => f.event)).toEqual(['machines.created', 'machines.updated', 'machines.deleted']);
    for (const f of frames) expect(f.data).toMatchObject({ key: uuid, machine: uuid, data: { name: 'ev-m' } });
    expect(etag).not.toBe('');
    expect(frames[1]!.data.data.etag).toBeTruthy();
    expect(etag).toContain(frames[1]!.data.data.etag);
    expect(frames[2]!.data.data.etag).toBeUndefined();
    expect(JSON.stringify(frames)).not.toContain('hunter');
  });
});
