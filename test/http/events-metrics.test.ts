import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
    const scrape = async () => (await fetch(`${d.url}/metrics`)).text();
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
