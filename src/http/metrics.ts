import type { FastifyInstance } from 'fastify';
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { Bus } from '../events.js';
import type { Store } from '../store/store.js';

/** Counters the protocol servers keep themselves; read at scrape time. */
export type StatsSource = () => Record<string, Record<string, number> | undefined>;

/**
 * GET /metrics in Prometheus text format (prom-client), no token: counters carry no secrets. DHCP and TFTP
 * counters come from the servers' own stats at scrape time; boot and render counts from the event bus; leases
 * in use per subnet from the store; event-loop lag and process figures from prom-client's defaults.
 */
export function registerMetrics(app: FastifyInstance, deps: { store: Store; bus: Bus; stats: StatsSource }) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'plinth_', eventLoopMonitoringPrecision: 20 });

  new Gauge({
    name: 'plinth_dhcp_packets',
    help: 'DHCP packets by outcome since start (received, offers, acks, naks, releases, declines, informs, malformed, ...)',
    labelNames: ['outcome'],
    registers: [registry],
    collect() {
      const s = deps.stats().dhcp ?? {};
      this.reset();
      for (const [k, v] of Object.entries(s)) if (typeof v === 'number') this.set({ outcome: k }, v);
    },
  });
  new Gauge({
    name: 'plinth_tftp',
    help: 'TFTP counters since start (transfersStarted, transfersCompleted, transfersFailed, bytesSent, retransmits, malformed, ...)',
    labelNames: ['counter'],
    registers: [registry],
    collect() {
      const s = deps.stats().tftp ?? {};
      this.reset();
      for (const [k, v] of Object.entries(s)) if (typeof v === 'number') this.set({ counter: k }, v);
    },
  });
  new Gauge({
    name: 'plinth_malformed_packets_dropped',
    help: 'Malformed packets dropped, by protocol',
    labelNames: ['protocol'],
    registers: [registry],
    collect() {
      const s = deps.stats();
      this.set({ protocol: 'dhcp' }, s.dhcp?.malformed ?? 0);
      this.set({ protocol: 'tftp' }, s.tftp?.malformed ?? 0);
    },
  });
  new Gauge({
    name: 'plinth_leases_in_use',
    help: 'Bound leases per subnet',
    labelNames: ['subnet'],
    registers: [registry],
    async collect() {
      const { items } = await deps.store.list('leases', { filters: [{ field: 'state', value: 'bound' }] });
      const now = Date.now();
      const per = new Map<string, number>();
      for (const i of items) {
        if (Date.parse(String(i.doc.expiresAt)) < now) continue;
        const s = String(i.doc.subnet);
        per.set(s, (per.get(s) ?? 0) + 1);
      }
      this.reset();
      for (const [s, n] of per) this.set({ subnet: s }, n);
    },
  });
  const boots = new Counter({
    name: 'plinth_boot_renders_total',
    help: 'Boot scripts and files rendered for machines, by bootenv',
    labelNames: ['bootenv'],
    registers: [registry],
  });
  const renderErrors = new Counter({
    name: 'plinth_render_errors_total',
    help: 'Template render errors, by bootenv',
    labelNames: ['bootenv'],
    registers: [registry],
  });
  const refused = new Counter({
    name: 'plinth_boots_refused_total',
    help: 'Boots refused because an artifact did not match its pinned digest',
    labelNames: ['bootenv'],
    registers: [registry],
  });
  const events = new Counter({
    name: 'plinth_events_total',
    help: 'Events published, by type',
    labelNames: ['type'],
    registers: [registry],
  });
  const perBootEnv = { 'boot.rendered': boots, 'render.error': renderErrors, 'boot.refused': refused };
  deps.bus.on((e) => {
    events.inc({ type: e.type });
    // Narrowed on the type: these three events carry the bootenv's name.
    if (e.type === 'boot.rendered' || e.type === 'render.error' || e.type === 'boot.refused')
      perBootEnv[e.type].inc({ bootenv: String(e.data?.bootEnv ?? '') });
  });

  app.get('/metrics', async (_req, reply) => {
    reply.type(registry.contentType);
    return registry.metrics();
  });
}
