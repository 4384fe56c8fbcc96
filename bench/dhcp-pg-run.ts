/**
 * One Plinth DHCP daemon on a PostgreSQL inventory, for `bench:dhcp -- --store postgres` (bench/dhcp-pg.ts), run
 * inside the server namespace:
 *   ip netns exec NS node --import tsx bench/dhcp-pg-run.ts URL SERVER_ID INTERFACE
 * What a daemon started with `--store URL --server-id ID` runs for DHCP: the store opened as src/daemon.ts opens it
 * (src/store/open.ts: the pool, the offer pool, the event log), the other daemons' events followed (the LISTEN
 * connection and its reads of the events table), the heartbeat row, and the DHCP server on INTERFACE; no HTTP, TFTP
 * or API, as the SQLite bench's test/e2e/dhcp-run.ts. The subnet is seeded by the bench before the start. Prints
 * READY; SIGTERM closes it; the bench ends it with kill -9.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import pino from 'pino';
import { startRegistry } from '../src/daemon-registry.js';
import { startDhcpServer } from '../src/dhcp/server.js';
import { createBus } from '../src/events.js';
import { followPeers } from '../src/peer-events.js';
import { openStore } from '../src/store/open.js';
import { openPgStore } from '../src/store/pg.js';
import { VERSION } from '../src/version.js';

const [url, serverId, iface] = process.argv.slice(2);
if (!url || !serverId || !iface) throw new Error('usage: dhcp-pg-run.ts URL SERVER_ID INTERFACE');
const log = pino({ level: process.env.PLINTH_LOG_LEVEL ?? 'warn' }, pino.destination(2));
const warn = (err: Error) => log.warn({ err: err.message }, 'pg connection');
// PLINTH_BENCH_CLAIMS_IN_FLIGHT=D:O (the bench's plinth-pg-par): claim batches in flight, durable and offers.
const inFlight = process.env.PLINTH_BENCH_CLAIMS_IN_FLIGHT?.split(':').map(Number);
const store = inFlight
  ? await openPgStore(url, {
      onIdleError: warn,
      serverId,
      follow: { onError: warn },
      claimsInFlight: { durable: inFlight[0]!, offers: inFlight[1] ?? inFlight[0]! },
    })
  : await openStore(url, '/nonexistent', warn, serverId);
const bus = createBus(log);
const peers = await followPeers(store, bus, serverId, log);
const registry = await startRegistry(store, { serverId, version: VERSION, backend: store.backend }, log);
// The serverId as src/wiring.ts gives it: the leases record it, and the store's catch-up reads leave them out.
// PLINTH_BENCH_LEASE_FOLLOW_MS: how often the daemon reads the leases the others wrote (default 1000; the bench's
// plinth-pg3owned-follow60 takes 60,000: none in a step, to see what the catch-up costs the others' tail).
const leaseFollowMs = Number(process.env.PLINTH_BENCH_LEASE_FOLLOW_MS) || undefined;
const server = await startDhcpServer({ store, bus, log, interfaces: [iface], httpPort: 8080, serverId, leaseFollowMs });
process.stdout.write('READY\n');
// PLINTH_BENCH_PROFILE=FILE: a CPU profile of the first 8 s after READY (warm-up and measured period), written
// before the bench's kill -9 (node --cpu-prof writes only at a clean exit). A `%s` in FILE is the serverId (three
// daemons of plinth-pg3 each write their own). PLINTH_BENCH_PROFILE_AFTER=MS starts it that long after READY
// instead (past the warm-up: the measured step alone).
if (process.env.PLINTH_BENCH_PROFILE) {
  const file = process.env.PLINTH_BENCH_PROFILE.replace('%s', serverId);
  const session = new Session();
  session.connect();
  const after = Number(process.env.PLINTH_BENCH_PROFILE_AFTER ?? 0);
  setTimeout(
    () =>
      session.post('Profiler.enable', () =>
        session.post('Profiler.start', () =>
          setTimeout(
            () =>
              session.post('Profiler.stop', (err, r) => {
                if (!err) writeFileSync(file, JSON.stringify(r.profile));
              }),
            8000,
          ),
        ),
      ),
    after,
  );
}
// PLINTH_CLAIM_STATS=1: once a second, the claim batches' sizes, queue waits and round trips (src/store/pg-lease-batch.ts)
// the event loop's delay and the GC's, as one JSON line on stderr (the bench keeps it with PERFDHCP_OUT).
if (process.env.PLINTH_CLAIM_STATS) {
  const st = { sizes: [] as number[], waits: [] as number[], rtts: [] as number[], inFlight: [] as number[] };
  (globalThis as Record<symbol, unknown>)[Symbol.for('plinth.store.claimStats')] = st;
  const eld = monitorEventLoopDelay({ resolution: 1 });
  eld.enable();
  // The collections of the second: how many, their pause in all and the longest, and how many were full ones
  // (mark-compact: V8's memory reducer starts them in an idle daemon too).
  const gc = { n: 0, ms: 0, max: 0, major: 0 };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gc.n++;
      gc.ms += e.duration;
      gc.max = Math.max(gc.max, e.duration);
      if ((e as { detail?: { kind?: number } }).detail?.kind === 4) gc.major++;
    }
  }).observe({ entryTypes: ['gc'] });
  const q = (xs: number[], f: number) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length ? Number(s[Math.min(s.length - 1, Math.floor(f * s.length))]!.toFixed(2)) : 0;
  };
  setInterval(() => {
    if (st.sizes.length === 0) return;
    const line = {
      batches: st.sizes.length,
      claims: st.waits.length,
      size: [q(st.sizes, 0.5), q(st.sizes, 0.99), Math.max(...st.sizes)],
      waitMs: [q(st.waits, 0.5), q(st.waits, 0.99), Math.max(...st.waits)],
      rttMs: [q(st.rtts, 0.5), q(st.rtts, 0.99), Math.max(...st.rtts)],
      inFlight: st.inFlight.length ? [q(st.inFlight, 0.5), Math.max(...st.inFlight)] : undefined,
      eldMs: [eld.percentile(50) / 1e6, eld.percentile(99) / 1e6, eld.max / 1e6],
      cpuMs: process.cpuUsage(),
      gc: { n: gc.n, ms: Number(gc.ms.toFixed(1)), maxMs: Number(gc.max.toFixed(2)), major: gc.major },
    };
    Object.assign(gc, { n: 0, ms: 0, max: 0, major: 0 });
    process.stderr.write(`claimStats ${JSON.stringify(line)}\n`);
    for (const k of ['sizes', 'waits', 'rtts', 'inFlight'] as const) st[k].length = 0;
    eld.reset();
  }, 1000).unref();
}
const stop = async () => {
  await server.close();
  await registry.close();
  await peers?.();
  await store.close();
  process.stderr.write(`${JSON.stringify({ stats: server.stats })}\n`);
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
