import net from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBus } from '../../src/events.js';
import { API } from '../../src/http/api-prefix.js';
import { registerEvents } from '../../src/http/events.js';
import { silentLogger } from '../../src/log.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

let d: TestDaemon;
beforeAll(async () => {
  d = await startTestDaemon();
});
afterAll(async () => {
  await d.stop();
});

/** Reads SSE events until `n` arrived or the time is up. */
async function collect(url: string, n: number, during: () => Promise<void>, ms = 5000) {
  const ac = new AbortController();
  const r = await fetch(url, { headers: { authorization: `Bearer ${d.token}` }, signal: ac.signal });
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const events: any[] = [];
  const reader = r.body!.getReader();
  const dec = new TextDecoder();
  let buf = '';
  const timer = setTimeout(() => ac.abort(), ms);
  const reading = (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = block.split('\n').find((l) => l.startsWith('data: '));
          if (data) events.push(JSON.parse(data.slice(6)));
          if (events.length >= n) {
            ac.abort();
            return;
          }
        }
      }
    } catch {
      // aborted
    }
  })();
  await during();
  await reading;
  clearTimeout(timer);
  return events;
}

describe('GET /api/v1/events (SSE)', () => {
  it('streams inventory changes in order, filtered by type and machine', async () => {
    const events = await collect(`${d.url}/api/v1/events?type=machines.`, 3, async () => {
      await d.api('POST', '/api/v1/bootenvs', { name: 'not-a-machine-event' });
      const m = await d.api('POST', '/api/v1/machines', { name: 'ev1' });
      await d.api('PATCH', `/api/v1/machines/${m.body.uuid}`, { description: 'x' });
      await d.api('DELETE', `/api/v1/machines/${m.body.uuid}`);
    });
    expect(events.map((e) => e.type)).toEqual(['machines.created', 'machines.updated', 'machines.deleted']);
    expect(new Set(events.map((e) => e.machine)).size).toBe(1);
    expect(events[0].at).toMatch(/^\d{4}-/);
  });

  it('needs the token', async () => {
    expect((await fetch(`${d.url}/api/v1/events`)).status).toBe(401);
  });
});

describe('GET /metrics', () => {
  it('is Prometheus text and its counters move with traffic', async () => {
    const scrape = async () =>
      (await fetch(`${d.url}/metrics`, { headers: { authorization: `Bearer ${d.token}` } })).text();
    const before = await scrape();
    expect(before).toContain('# TYPE plinth_boot_renders_total counter');
    expect(before).toMatch(/plinth_nodejs_eventloop_lag_seconds \d/);
    await d.api('POST', '/api/v1/machines', { name: 'mx', macs: ['52:54:00:00:99:01'], bootEnv: 'local' });
    expect((await fetch(`${d.url}/boot/ipxe/52-54-00-00-99-01`)).status).toBe(200);
    const after = await scrape();
    expect(after).toMatch(/plinth_boot_renders_total\{bootenv="local"\} 1/);
    expect(after).toMatch(/plinth_events_total\{type="machines.created"\} [1-9]/);
  });
});

describe('stopping with watchers connected', () => {
  it('ends open event streams instead of waiting for them', async () => {
    const other = await startTestDaemon();
    const r = await fetch(`${other.url}/api/v1/events`, { headers: { authorization: `Bearer ${other.token}` } });
    expect(r.status).toBe(200);
    const ended = (async () => {
      for await (const _ of r.body!) {
        // drain until the daemon ends the stream
      }
    })();
    const t0 = Date.now();
    await other.stop();
    await ended;
    expect(Date.now() - t0).toBeLessThan(3000);
  });
});

describe('event stream bounds', () => {
  const bus = createBus();
  let app: FastifyInstance;
  let url: string;
  let streams: ReturnType<typeof registerEvents>;
  beforeAll(async () => {
    app = Fastify();
    // Declared relative to the API's prefix, as in the app's API scope.
    await app.register(
      async (api) => {
        streams = registerEvents(api, { bus, log: silentLogger, maxSubscribers: 3, maxBacklog: 64 * 1024 });
      },
      { prefix: API },
    );
    await app.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(app.server.address() as net.AddressInfo).port}/api/v1/events`;
  });
  afterAll(async () => {
    await app.close();
  });
  const until = async (cond: () => boolean) => {
    for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  };

  it('caps subscribers: one more is a 503 with Retry-After; a closed stream frees its place', async () => {
    const acs = [new AbortController(), new AbortController(), new AbortController()];
    const open = await Promise.all(acs.map((ac) => fetch(url, { signal: ac.signal })));
    expect(open.map((r) => r.status)).toEqual([200, 200, 200]);
    const over = await fetch(url);
    expect(over.status).toBe(503);
    expect(over.headers.get('retry-after')).toBe('10');
    expect(((await over.json()) as any).detail).toContain('3 event streams are open');
    acs[0]!.abort();
    await until(() => streams.subscribers() < 3);
    const again = new AbortController();
    const r = await fetch(url, { signal: again.signal });
    expect(r.status).toBe(200);
    for (const ac of [...acs, again]) ac.abort();
    await until(() => streams.subscribers() === 0);
    expect(streams.subscribers()).toBe(0);
  });

  it('serialises each event once for all subscribers', async () => {
    const acs = [new AbortController(), new AbortController(), new AbortController()];
    const rs = await Promise.all(acs.map((ac) => fetch(url, { signal: ac.signal })));
    await until(() => streams.subscribers() === 3);
    let serialised = 0;
    const data = {
      toJSON() {
        serialised++;
        return { n: 1 };
      },
    };
    bus.emit({ type: 'machine.once', machine: 'm1', data: data as unknown as Record<string, unknown> });
    expect(serialised).toBe(1);
    // And every subscriber got it.
    for (const r of rs) {
      const reader = r.body!.getReader();
      let text = '';
      for (let i = 0; i < 20 && !text.includes('event: machine.once'); i++) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      expect(text).toContain('data: {"type":"machine.once","machine":"m1","data":{"n":1}');
    }
    for (const ac of acs) ac.abort();
    await until(() => streams.subscribers() === 0);
  });

  it('drops a subscriber that stops reading once its backlog passes the bound; others keep theirs', async () => {
    const sock = net.connect((app.server.address() as net.AddressInfo).port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    sock.write('GET /api/v1/events HTTP/1.1\r\nhost: x\r\n\r\n');
    await until(() => streams.subscribers() === 1);
    sock.pause(); // never reads again: the kernel buffers fill, then the response's own buffer
    const big = 'x'.repeat(64 * 1024);
    for (let i = 0; i < 400 && streams.subscribers() > 0; i++) {
      bus.emit({ type: 'machine.big', machine: 'm1', data: { big } });
      await new Promise((r) => setImmediate(r));
    }
    expect(streams.subscribers()).toBe(0);
    sock.destroy();
  });
});
