import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Bus } from '../events.js';
import { ipToInt } from '../model/common.js';
import type { Store } from '../store/store.js';

/** Counters the protocol servers keep themselves; read at scrape time. */
export type StatsSource = () => Record<string, Record<string, number> | undefined>;

/**
 * One Prometheus family a server's stat field goes to: counters (monotonic since start, `_total`, one unit per
 * family, the unit in the name) or gauges. `label` is the field's label value in a family shared by several fields.
 */
type Family = { name: string; help: string; gauge?: boolean; label?: [string, string] };

const packets = (outcome: string): Family => ({
  name: 'plinth_dhcp_packets_total',
  help: 'DHCP packets handled since start, by outcome (replies sent, requests answered, packets dropped)',
  label: ['outcome', outcome],
});

const notServing = (reason: string): Family => ({
  name: 'plinth_dhcp_not_owner_total',
  help: "DHCP requests left unanswered for a subnet's owners (src/dhcp/owners.ts): this daemon is not among them, or a standby while an earlier owner is alive",
  label: ['reason', reason],
});

/** The DHCP server's stats (src/dhcp/server.ts DhcpStats): every field counts packets but one. */
const DHCP: Record<string, Family> = {
  received: { name: 'plinth_dhcp_received_packets_total', help: 'DHCP packets received since start' },
  malformed: packets('malformed'),
  ignored: packets('ignored'),
  offers: packets('offer'),
  acks: packets('ack'),
  naks: packets('nak'),
  releases: packets('release'),
  declines: packets('decline'),
  informs: packets('inform'),
  proxyOffers: packets('proxy_offer'),
  proxyAcks: packets('proxy_ack'),
  errors: packets('error'),
  rogue: packets('rogue'),
  capped: packets('capped'),
  badChaddr: packets('bad_chaddr'),
  notOwner: notServing('not_owner'),
  standbySilent: notServing('standby'),
  backgroundErrors: {
    name: 'plinth_dhcp_background_errors_total',
    help: 'Failures of DHCP background tasks (interface rescan, reclaim, RA sync), caught and logged',
  },
};

const transfers = (result: string): Family => ({
  name: 'plinth_tftp_transfers_total',
  help: 'TFTP transfers ended since start, by result (evicted and unanswered are also counted as failed)',
  label: ['result', result],
});
const requests = (outcome: string): Family => ({
  name: 'plinth_tftp_requests_total',
  help: 'TFTP requests not served, by outcome',
  label: ['outcome', outcome],
});
const dropped = (reason: string): Family => ({
  name: 'plinth_tftp_dropped_packets_total',
  help: 'TFTP packets dropped since start, by reason',
  label: ['reason', reason],
});

/** The TFTP server's stats (src/tftp/stats.ts TftpStats). */
const TFTP: Record<string, Family> = {
  transfersStarted: { name: 'plinth_tftp_transfers_started_total', help: 'TFTP transfers started since start' },
  transfersCompleted: transfers('completed'),
  transfersFailed: transfers('failed'),
  sizeProbes: transfers('size_probe'),
  transfersEvicted: transfers('evicted'),
  transfersUnanswered: transfers('unanswered'),
  requestsRefused: requests('refused'),
  requestsDropped: requests('dropped'),
  duplicateRequests: requests('duplicate'),
  openErrors: requests('open_error'),
  bytesSent: { name: 'plinth_tftp_sent_bytes_total', help: 'TFTP payload bytes sent since start' },
  bytesReceived: { name: 'plinth_tftp_received_bytes_total', help: 'TFTP payload bytes received since start' },
  packetsSent: { name: 'plinth_tftp_sent_packets_total', help: 'TFTP packets sent since start' },
  retransmits: { name: 'plinth_tftp_retransmitted_packets_total', help: 'TFTP packets sent again since start' },
  windowsOnAck: {
    name: 'plinth_tftp_windows_sent_on_ack_total',
    help: 'TFTP windows the transfer socket sent by itself the moment their ACK arrived',
  },
  malformed: dropped('malformed'),
  unexpected: dropped('unexpected'),
  timeoutsDeclined: {
    name: 'plinth_tftp_timeout_options_declined_total',
    help: 'RFC 2349 timeouts above the maximum, left out of the OACK',
  },
  activeTransfers: { name: 'plinth_tftp_active_transfers', help: 'TFTP transfers in flight', gauge: true },
  openSockets: { name: 'plinth_tftp_open_sockets', help: 'TFTP transfer sockets open', gauge: true },
};

const snake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * A server's stats as families: the mapped fields, and any field a newer server adds (not yet in the table) in
 * `plinth_<proto>_other_total{counter}` rather than lost.
 */
function registerStats(registry: Registry, proto: 'dhcp' | 'tftp', table: Record<string, Family>, read: StatsSource) {
  const other: Family = {
    name: `plinth_${proto}_other_total`,
    help: `${proto.toUpperCase()} counters not yet given a family of their own, by counter`,
  };
  const families = new Map<string, { f: Family; fields: string[] }>();
  for (const [field, f] of Object.entries(table)) {
    const e = families.get(f.name) ?? { f, fields: [] };
    e.fields.push(field);
    families.set(f.name, e);
  }
  for (const { f, fields } of families.values()) {
    const labelNames = f.label ? [f.label[0]] : [];
    const collect = function (this: Counter | Gauge) {
      const s = read()[proto];
      this.reset();
      for (const field of fields) {
        const v = s?.[field];
        // A counter cannot go down: a value prom-client would refuse must not fail the whole scrape.
        if (typeof v !== 'number' || !Number.isFinite(v) || (v < 0 && !(this instanceof Gauge))) continue;
        const labels = table[field]?.label;
        const l = labels ? { [labels[0]]: labels[1] } : {};
        if (this instanceof Gauge) this.set(l, v);
        else this.inc(l, v);
      }
    };
    const conf = { name: f.name, help: f.help, labelNames, registers: [registry], collect };
    if (f.gauge) new Gauge(conf);
    else new Counter(conf);
  }
  new Counter({
    name: other.name,
    help: other.help,
    labelNames: ['counter'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [k, v] of Object.entries(read()[proto] ?? {}))
        if (!(k in table) && typeof v === 'number' && Number.isFinite(v) && v >= 0) this.inc({ counter: snake(k) }, v);
    },
  });
}

/** Per enabled address-giving subnet: the range's size, addresses bound, and free (neither bound nor declined). */
function registerPools(registry: Registry, store: Store) {
  // The registry reads its families concurrently: the three share one pass over subnets and leases per scrape.
  let inflight: ReturnType<typeof poolFigures> | undefined;
  const shared = () => {
    inflight ??= poolFigures(store).finally(() => {
      inflight = undefined;
    });
    return inflight;
  };
  const gauge = (name: string, help: string, pick: (p: Pool) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['subnet'],
      registers: [registry],
      async collect() {
        const pools = await shared();
        this.reset();
        for (const p of pools) this.set({ subnet: p.name }, pick(p));
      },
    });
  gauge(
    'plinth_dhcp_pool_size_addresses',
    'Addresses in the subnet range (activeStart..activeEnd), per subnet',
    (p) => p.size,
  );
  gauge(
    'plinth_dhcp_pool_bound_addresses',
    'Addresses of the range held by a bound, unexpired lease, per subnet',
    (p) => p.bound,
  );
  gauge(
    'plinth_dhcp_pool_free_addresses',
    'Addresses of the range neither bound nor declined (quarantined), per subnet: what a new client can get',
    (p) => Math.max(0, p.size - p.bound - p.declined),
  );
}

type Pool = { name: string; start: number; end: number; size: number; bound: number; declined: number };

/** Exported for the UI's and the tests' sake: what the pool gauges report. */
export async function poolFigures(store: Store): Promise<Pool[]> {
  const [subnets, leases] = await Promise.all([store.list('subnets'), store.list('leases')]);
  const now = Date.now();
  const pools = new Map<string, Pool>();
  for (const { doc } of subnets.items) {
    if (doc.enabled === false || doc.proxy === true || !doc.activeStart || !doc.activeEnd) continue;
    const start = ipToInt(String(doc.activeStart));
    const end = ipToInt(String(doc.activeEnd));
    const name = String(doc.name);
    pools.set(name, { name, start, end, size: Math.max(0, end - start + 1), bound: 0, declined: 0 });
  }
  for (const { doc } of leases.items) {
    const p = pools.get(String(doc.subnet));
    if (!p || Date.parse(String(doc.expiresAt)) < now) continue;
    const ip = ipToInt(String(doc.address));
    if (ip < p.start || ip > p.end) continue;
    if (doc.state === 'bound') p.bound++;
    else if (doc.state === 'declined') p.declined++;
  }
  return [...pools.values()];
}

/** HTTP families live per Node server, so the root's hooks and the /metrics scope (a child) share them. */
type HttpFamilies = { requests: Counter; duration: Histogram };
const httpFamilies = new WeakMap<object, HttpFamilies>();

function familiesOf(server: object): HttpFamilies {
  let f = httpFamilies.get(server);
  if (!f) {
    const labelNames = ['method', 'route', 'status'];
    f = {
      requests: new Counter({
        name: 'plinth_http_requests_total',
        help: 'HTTP requests answered, by method, route pattern and status class',
        labelNames,
        registers: [],
      }),
      duration: new Histogram({
        name: 'plinth_http_request_duration_seconds',
        help: 'HTTP request time from arrival to the last byte handed to the socket, by method, route pattern and status class',
        labelNames,
        buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
        registers: [],
      }),
    };
    httpFamilies.set(server, f);
  }
  return f;
}

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/**
 * Labels of a request: the route's pattern, never the URL (a scanner's random paths would make one series each),
 * `unmatched` for a 404 without a route; a method the API has none of is `OTHER`, for the same reason.
 */
export function httpLabels(req: FastifyRequest, reply: FastifyReply) {
  const method = METHODS.has(req.method) ? req.method : 'OTHER';
  const route = req.routeOptions?.url ?? 'unmatched';
  return { method, route, status: `${Math.floor(reply.statusCode / 100)}xx` };
}

/**
 * Counts and times every request the app answers. Call on the ROOT instance (buildApp's rootApp), before the
 * scopes are registered: a hook added in a child scope only sees that scope's routes.
 */
export function observeHttp(root: FastifyInstance) {
  const f = familiesOf(root.server);
  // Callback style: no promise per request on the hottest path.
  root.addHook('onResponse', (req, reply, done) => {
    const labels = httpLabels(req, reply);
    f.requests.inc(labels);
    f.duration.observe(labels, reply.elapsedTime / 1000);
    done();
  });
}

/** The event-loop lag histogram's sampling period (prom-client's `eventLoopMonitoringPrecision`), in ms. */
const LOOP_PRECISION_MS = 20;

/**
 * GET /metrics in Prometheus text format (prom-client). DHCP and TFTP counters come from the servers' own stats
 * at scrape time; boot and render counts from the event bus; pool sizes and free addresses per subnet from the
 * store; HTTP requests from `observeHttp`'s hook; event-loop lag and process figures from prom-client's defaults,
 * from the first scrape on. README.md "Observability" lists every family and the renames.
 */
export function registerMetrics(app: FastifyInstance, deps: { store: Store; bus: Bus; stats: StatsSource }) {
  const registry = new Registry();
  // prom-client's defaults start with the first scrape: their event-loop lag histogram samples the loop with a
  // timer every LOOP_PRECISION_MS (50 wakeups a second), which was about 45% of an idle daemon's CPU (0.2 s a
  // minute of 0.45, on either store) for figures only a scraper reads. Up to a scrape the loop runs without it;
  // the first waits for two samples, so it reports some.
  let defaults: Promise<void> | undefined;
  const startDefaults = () => {
    defaults ??= new Promise((resolve) => {
      collectDefaultMetrics({ register: registry, prefix: 'plinth_', eventLoopMonitoringPrecision: LOOP_PRECISION_MS });
      setTimeout(resolve, 2 * LOOP_PRECISION_MS + 5);
    });
    return defaults;
  };
  registerStats(registry, 'dhcp', DHCP, deps.stats);
  registerStats(registry, 'tftp', TFTP, deps.stats);
  registerPools(registry, deps.store);
  const http = familiesOf(app.server);
  registry.registerMetric(http.requests);
  registry.registerMetric(http.duration);
  registerBusCounters(registry, deps.bus);
  new Gauge({
    name: 'plinth_leader',
    help: 'Whether this daemon holds the singleton duties (sweeps, rollout driver, event retention): 1 or 0',
    registers: [registry],
    collect() {
      const c = deps.stats().cluster as { leader?: number } | undefined;
      this.set(c?.leader ?? 0);
    },
  });

  app.get('/metrics', async (_req, reply) => {
    await startDefaults();
    reply.type(registry.contentType);
    return registry.metrics();
  });
}

function registerBusCounters(registry: Registry, bus: Bus) {
  const perBootEnv = (name: string, help: string) =>
    new Counter({ name, help, labelNames: ['bootenv'], registers: [registry] });
  const boots = perBootEnv('plinth_boot_renders_total', 'Boot scripts and files rendered for machines, by bootenv');
  const renderErrors = perBootEnv('plinth_render_errors_total', 'Template render errors, by bootenv');
  const refused = perBootEnv(
    'plinth_boots_refused_total',
    'Boots refused because an artifact did not match its pinned digest, by bootenv',
  );
  const events = new Counter({
    name: 'plinth_events_total',
    help: 'Events published, by type',
    labelNames: ['type'],
    registers: [registry],
  });
  const byType = { 'boot.rendered': boots, 'render.error': renderErrors, 'boot.refused': refused };
  bus.on((e) => {
    // A machine's callback names its own event word: one series per word a machine invents would be unbounded.
    events.inc({ type: e.type.startsWith('machine.') && !KNOWN_MACHINE.has(e.type) ? 'machine.callback' : e.type });
    // Narrowed on the type: these three events carry the bootenv's name.
    if (e.type === 'boot.rendered' || e.type === 'render.error' || e.type === 'boot.refused')
      byType[e.type].inc({ bootenv: String(e.data?.bootEnv ?? '') });
  });
}

const KNOWN_MACHINE = new Set(['machine.inventory']);
