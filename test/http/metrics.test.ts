/**
 * /metrics as a Prometheus server reads it: the text is parsed (TYPE lines, names, labels, values), not grepped.
 * Protocol counters are counters named with `_total` and one unit per family; HTTP requests are counted and timed
 * by route pattern; pool gauges move with leases.
 */
import type net from 'node:net';
import perfHooks from 'node:perf_hooks';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createBus } from '../../src/events.js';
import { observeHttp, registerMetrics } from '../../src/http/metrics.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

type Sample = { name: string; labels: Record<string, string>; value: number };
type Scrape = { types: Map<string, string>; samples: Sample[] };

/** The Prometheus text exposition format (0.0.4): `# TYPE name type`, `name{l="v",...} value`. */
function parse(text: string): Scrape {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) {
      types.set(t[1]!, t[2]!);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/.exec(line);
    if (!m) throw new Error(`not exposition format: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return { types, samples };
}

const value = (s: Scrape, name: string, labels: Record<string, string> = {}) =>
  s.samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))?.value;

describe('protocol counters', () => {
  let app: FastifyInstance;
  const dhcp: Record<string, number> = { received: 0, offers: 0, acks: 0, malformed: 0, backgroundErrors: 0 };
  const tftp: Record<string, number> = { transfersStarted: 0, bytesSent: 0, activeTransfers: 0, futureField: 0 };
  beforeAll(async () => {
    app = Fastify();
    registerMetrics(app, { store: emptyStore, bus: createBus(), stats: () => ({ dhcp, tftp }) });
    await app.ready();
  });
  afterAll(() => app.close());
  const scrape = async () => parse((await app.inject('/metrics')).body);

  it('are counters with _total and a unit per family; gauges stay gauges; unknown fields are not lost', async () => {
    Object.assign(dhcp, { received: 7, offers: 3, acks: 2, malformed: 1, backgroundErrors: 4 });
    Object.assign(tftp, { transfersStarted: 5, bytesSent: 123456, activeTransfers: 2, futureField: 9 });
    const s = await scrape();
    for (const [name, type] of s.types) {
      if (!name.startsWith('plinth_dhcp_') && !name.startsWith('plinth_tftp_')) continue;
      if (name.startsWith('plinth_dhcp_pool_')) continue;
      expect(type === 'counter' ? name.endsWith('_total') : !name.endsWith('_total'), name).toBe(true);
    }
    expect(s.types.get('plinth_dhcp_received_packets_total')).toBe('counter');
    expect(value(s, 'plinth_dhcp_received_packets_total')).toBe(7);
    expect(value(s, 'plinth_dhcp_packets_total', { outcome: 'offer' })).toBe(3);
    expect(value(s, 'plinth_dhcp_packets_total', { outcome: 'ack' })).toBe(2);
    expect(value(s, 'plinth_dhcp_packets_total', { outcome: 'malformed' })).toBe(1);
    expect(value(s, 'plinth_dhcp_background_errors_total')).toBe(4);
    expect(s.types.get('plinth_tftp_sent_bytes_total')).toBe('counter');
    expect(value(s, 'plinth_tftp_sent_bytes_total')).toBe(123456);
    // Bytes and transfers never share a family.
    expect(s.samples.filter((x) => x.name === 'plinth_tftp_transfers_started_total').map((x) => x.value)).toEqual([5]);
    expect(s.types.get('plinth_tftp_active_transfers')).toBe('gauge');
    expect(value(s, 'plinth_tftp_active_transfers')).toBe(2);
    expect(value(s, 'plinth_tftp_other_total', { counter: 'future_field' })).toBe(9);
    // The old names are gone (README lists the renames).
    for (const old of [
      'plinth_dhcp_packets',
      'plinth_tftp',
      'plinth_malformed_packets_dropped',
      'plinth_leases_in_use',
    ])
      expect(s.types.has(old), old).toBe(false);
  });

  it('follow the servers as they count', async () => {
    dhcp.offers = 10;
    tftp.bytesSent = 200000;
    const s = await scrape();
    expect(value(s, 'plinth_dhcp_packets_total', { outcome: 'offer' })).toBe(10);
    expect(value(s, 'plinth_tftp_sent_bytes_total')).toBe(200000);
  });
});

describe('HTTP requests', () => {
  let app: FastifyInstance;
  beforeAll(async () => {
    app = Fastify();
    observeHttp(app);
    await app.register(async (s) => {
      s.get('/machines/:id', async () => ({ ok: true }));
      s.get('/boom', async () => {
        throw new Error('x');
      });
    });
    await app.register(async (s) => registerMetrics(s, { store: emptyStore, bus: createBus(), stats: () => ({}) }));
    await app.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(() => app.close());
  const url = () => `http://127.0.0.1:${(app.server.address() as net.AddressInfo).port}`;
  const scrape = async () => parse(await (await fetch(`${url()}/metrics`)).text());

  it('are counted and timed by method, route pattern and status class, never by raw URL', async () => {
    const route = { method: 'GET', route: '/machines/:id', status: '2xx' };
    const before = value(await scrape(), 'plinth_http_requests_total', route) ?? 0;
    for (const id of ['a', 'b', 'c']) expect((await fetch(`${url()}/machines/${id}`)).status).toBe(200);
    expect((await fetch(`${url()}/boom`)).status).toBe(500);
    expect((await fetch(`${url()}/no/such/${Math.random()}`)).status).toBe(404);
    const s = await scrape();
    expect(s.types.get('plinth_http_requests_total')).toBe('counter');
    expect(s.types.get('plinth_http_request_duration_seconds')).toBe('histogram');
    expect(value(s, 'plinth_http_requests_total', route)).toBe(before + 3);
    expect(value(s, 'plinth_http_request_duration_seconds_count', route)).toBe(before + 3);
    expect(value(s, 'plinth_http_request_duration_seconds_bucket', { ...route, le: '+Inf' })).toBe(before + 3);
    expect(value(s, 'plinth_http_requests_total', { route: '/boom', status: '5xx' })).toBe(1);
    expect(value(s, 'plinth_http_requests_total', { route: 'unmatched', status: '4xx' })).toBe(1);
    const routes = new Set(s.samples.filter((x) => x.name === 'plinth_http_requests_total').map((x) => x.labels.route));
    for (const r of routes) expect(r).not.toMatch(/\/machines\/[abc]|no\/such/);
  });
});

describe('pools per subnet (daemon)', () => {
  let d: TestDaemon;
  beforeAll(async () => {
    d = await startTestDaemon();
  });
  afterAll(() => d.stop());
  const scrape = async () =>
    parse(await (await fetch(`${d.url}/metrics`, { headers: { authorization: `Bearer ${d.token}` } })).text());

  it('report size and free addresses; a lease takes one, its expiry gives it back', async () => {
    const subnet = { name: 'pool', subnet: '10.77.0.0/24', activeStart: '10.77.0.10', activeEnd: '10.77.0.19' };
    expect((await d.api('POST', '/api/v1/subnets', subnet)).status).toBe(201);
    let s = await scrape();
    expect(s.types.get('plinth_dhcp_pool_free_addresses')).toBe('gauge');
    expect(value(s, 'plinth_dhcp_pool_size_addresses', { subnet: 'pool' })).toBe(10);
    expect(value(s, 'plinth_dhcp_pool_free_addresses', { subnet: 'pool' })).toBe(10);
    const lease = (address: string, state: string, expiresAt: string) => ({
      address,
      mac: '52:54:00:00:77:01',
      subnet: 'pool',
      state,
      expiresAt,
    });
    await d.daemon.store.create('leases', '10.77.0.10', lease('10.77.0.10', 'bound', '2099-01-01T00:00:00Z'), []);
    await d.daemon.store.create('leases', '10.77.0.11', lease('10.77.0.11', 'declined', '2099-01-01T00:00:00Z'), []);
    await d.daemon.store.create('leases', '10.77.0.12', lease('10.77.0.12', 'bound', '2000-01-01T00:00:00Z'), []);
    s = await scrape();
    expect(value(s, 'plinth_dhcp_pool_bound_addresses', { subnet: 'pool' })).toBe(1);
    expect(value(s, 'plinth_dhcp_pool_free_addresses', { subnet: 'pool' })).toBe(8);
    await d.daemon.store.remove('leases', '10.77.0.10');
    s = await scrape();
    expect(value(s, 'plinth_dhcp_pool_free_addresses', { subnet: 'pool' })).toBe(9);
  });

  it("counts the daemon's own requests by route pattern (the hook is on the app's root)", async () => {
    const labels = { method: 'GET', route: '/api/v1/subnets/:id', status: '2xx' };
    const before = value(await scrape(), 'plinth_http_requests_total', labels) ?? 0;
    for (let i = 0; i < 3; i++) expect((await d.api('GET', '/api/v1/subnets/pool')).status).toBe(200);
    expect(value(await scrape(), 'plinth_http_requests_total', labels)).toBe(before + 3);
  });
});

describe('process figures (prom-client defaults)', () => {
  it('start with the first scrape: no event-loop sampler before, one after, and the first scrape has a sample', async () => {
    const monitor = vi.spyOn(perfHooks, 'monitorEventLoopDelay');
    const app = Fastify();
    registerMetrics(app, { store: emptyStore, bus: createBus(), stats: () => ({}) });
    await app.ready();
    try {
      expect(monitor).not.toHaveBeenCalled();
      const first = parse((await app.inject({ url: '/metrics' })).body);
      expect(monitor).toHaveBeenCalledTimes(1);
      expect(first.types.get('plinth_process_cpu_seconds_total')).toBe('counter');
      // An empty histogram's min is 2^63 ns: the first scrape reports a sampled delay instead.
      expect(value(first, 'plinth_nodejs_eventloop_lag_min_seconds')).toBeLessThan(1);
      expect(value(first, 'plinth_nodejs_eventloop_lag_max_seconds')).toBeGreaterThan(0);
      await app.inject({ url: '/metrics' });
      expect(monitor).toHaveBeenCalledTimes(1);
    } finally {
      monitor.mockRestore();
      await app.close();
    }
  });
});

const emptyStore = {
  list: async () => ({ items: [], total: 0 }),
} as unknown as Parameters<typeof registerMetrics>[1]['store'];
