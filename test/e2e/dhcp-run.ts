/**
 * Runs Plinth's DHCP server alone, for the e2e suite and the benchmark, inside a namespace:
 *   ip netns exec NS node --import tsx test/e2e/dhcp-run.ts CONFIG.json
 * CONFIG: { store, leaseDurability?, interfaces?, port?, proxyPort?, httpPort?, subnets?, reservations?, machines?, prefs? }.
 * Seeds the store file, starts the server, prints READY; SIGTERM closes it. Logs JSON lines to stderr.
 */
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import pino from 'pino';
import { startDhcpServer } from '../../src/dhcp/server.js';
import { createBus } from '../../src/events.js';
import { openSqliteStore } from '../../src/store/sqlite.js';

type Cfg = {
  store: string;
  /** The store's leaseDurability (default disk). */
  leaseDurability?: 'disk' | 'kernel';
  interfaces?: string[];
  port?: number;
  proxyPort?: number;
  httpPort?: number;
  serverAddress?: string;
  logLevel?: string;
  subnets?: Record<string, unknown>[];
  reservations?: Record<string, unknown>[];
  machines?: { uuid: string; name: string; macs: string[]; bootEnv?: string }[];
  prefs?: Record<string, unknown>;
};
const cfg = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as Cfg;
const store = openSqliteStore(cfg.store, { durability: cfg.leaseDurability });
const upsert = async (
  kind: 'subnets' | 'reservations' | 'machines' | 'prefs',
  key: string,
  doc: Record<string, unknown>,
  uniques: { field: string; value: string }[] = [],
) => {
  if (await store.get(kind, key)) await store.replace(kind, key, doc, uniques);
  else await store.create(kind, key, doc, uniques);
};
for (const s of cfg.subnets ?? []) await upsert('subnets', String(s.name), s);
for (const r of cfg.reservations ?? []) await upsert('reservations', String(r.address), r);
for (const m of cfg.machines ?? [])
  await upsert(
    'machines',
    m.uuid,
    m,
    m.macs.map((v) => ({ field: 'macs', value: v })),
  );
if (cfg.prefs) await upsert('prefs', 'global', cfg.prefs);

const log = pino({ level: cfg.logLevel ?? 'info' }, pino.destination(2));
const bus = createBus();
bus.on((e) => {
  if (e.type === 'dhcp.rogue' || e.type.startsWith('lease.')) log.info({ event: e }, 'event');
});
const server = await startDhcpServer({
  store,
  bus,
  log,
  interfaces: cfg.interfaces,
  port: cfg.port,
  proxyPort: cfg.proxyPort,
  httpPort: cfg.httpPort ?? 8080,
  serverAddress: cfg.serverAddress,
});
// Event-loop stalls, printed at exit: what the benchmark's p99 latency is made of. Not under bench:dhcp's probe
// (PLINTH_PROBE_OUT: bench/dhcp-probe.mjs measures the same, with its own period): a second 1 ms timer would keep
// waking the loop whatever period the probe was given (an idle loop pays about 15-20 ms of CPU a second for one).
const eld = process.env.PLINTH_PROBE_OUT ? undefined : monitorEventLoopDelay({ resolution: 1 });
eld?.enable();
const cpuAtReady = process.cpuUsage();
process.stdout.write('READY\n');
const stop = async () => {
  await server.close();
  await store.close();
  const ms = (n: number) => Math.round(n / 1e4) / 100;
  const loop = eld && { p50: ms(eld.percentile(50)), p99: ms(eld.percentile(99)), max: ms(eld.max) };
  const cpu = process.cpuUsage(cpuAtReady);
  process.stderr.write(
    `${JSON.stringify({ stats: server.stats, eventLoopDelayMs: loop, cpuMsSinceReady: Math.round((cpu.user + cpu.system) / 1000) })}\n`,
  );
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
