/**
 * DHCP throughput on PostgreSQL (issue 17): Plinth with one daemon and with three daemons on one database vs
 * kea-dhcp4 with its PostgreSQL lease backend on the same database server, side by side in one run
 * (`npm run bench:dhcp -- --store postgres`, as root; bench/dhcp.ts hands this file the run).
 *
 * PostgreSQL: a throwaway cluster of its own (scripts/pg-throwaway.sh, --pg-dir /tmp/plinth-bench-pg, --pg-port
 * 55499), fsync and synchronous_commit on (the defaults; printed at the start), so a lease committed before its ACK
 * is on disk. Every server reaches it over its unix socket (the servers run in network namespaces) and every step
 * gets a fresh database: Plinth's migrations and subnet, or Kea's dhcpdb_create.pgsql.
 *
 * Topology: perfdhcp is a relay (`-l`, giaddr set) and sends to one server address, so each daemon gets its own
 * pair of namespaces, plinth-dhcp-bpsrvN and plinth-dhcp-bpcliN (N = 1..3) joined by a veth: server 10.98.0.1,
 * .5, .9 and relay 10.98.0.2, .6, .10, all in the one served subnet 10.98.0.0/16 (pool 10.98.1.1 up, 50,000
 * addresses). `plinth-pg` and the Kea servers use pair 1; `plinth-pg3` runs three daemons (serverIds bench-1..3),
 * one per pair, on one database and one subnet, and three perfdhcp relays each at a third of the rate: the rate
 * given and printed is always the total. Each relay's clients are its own (perfdhcp -b mac=00:0c:0N:...: the same
 * client behind two racks' relays is not a thing), but all three daemons allocate from the same pool, so every free
 * address is fought over by three daemons (the lease uniqueness in the database, not in code). Why not three
 * daemons on three addresses of one namespace: each daemon binds port 67 on the interface, and one perfdhcp relays
 * to one address anyway. `plinth-pg3own` is the per-rack layout instead: the same three daemons and relays, each
 * pair with a subnet of its own (10.101/16, 10.102/16, 10.103/16, a third of the pool each; second addresses on
 * the same veths), so no two daemons want the same address: against plinth-pg3 it separates the cost of three
 * daemons fighting over one pool from the cost of three processes on one core. `plinth-pg-par` and `plinth-pg3-par`
 * are `plinth-pg` and `plinth-pg3` with four durable and three offer claim batches in flight (the store's default is
 * one of each; src/store/pg-leases.ts), for an A/B in one run. `plinth-pg-owned` and `plinth-pg3owned` are plinth-pg
 * and plinth-pg3own with each subnet owned by its daemon alone (`owners`, as rack daemons serving their own subnets
 * are configured): their offers are not claimed in the database, one transaction per DORA as Kea's;
 * `plinth-pg-owned-par` and `plinth-pg3owned-par` are those with four durable and three offer batches in flight.
 * `plinth-pg3owned-follow60` is plinth-pg3owned with each daemon reading the others' leases every 60 s instead of
 * every second (PLINTH_BENCH_LEASE_FOLLOW_MS, bench/dhcp-pg-run.ts): none within a step, for an A/B of what that
 * catch-up costs.
 *
 * Pinning (--pin split): the DHCP server processes (Kea, or every Plinth daemon) on CPU 1, perfdhcp on CPU 0, and
 * PostgreSQL (postmaster and every backend) on --pg-cpu (default 0, beside perfdhcp, so the server core is the
 * server's alone, as in the SQLite bench); the same for every server. --pin none: no pinning at all.
 *
 * Steps, rates, runs, warm-up (--warmup DORAs per daemon, default 10,000, at --warmup-rate in total, default
 * 1,000/s, but here never faster than the step's own rate: a reference warmed beyond its capacity starts the step
 * behind), the 1% loss rule and the bisection are the SQLite bench's (bench/dhcp-ladder.ts). Durability, every
 * step and every server: kill -9 of the daemon(s) right after the run, then SQL: every address perfdhcp saw
 * ACKed is a bound lease of the client it was ACKed to (Kea: lease4 state 0), and (Plinth) no client holds two
 * live leases. Also printed per step: CPU time per DORA of the server
 * processes and of PostgreSQL's, and the summary's ratios to `kea-pg` in the same run.
 *
 * Kea's configuration (--servers kea-pg,kea-pg-st to compare): `kea-pg` is multi-threaded with --kea-threads
 * threads (default 8) and a --kea-queue (default 64) packet queue: each thread holds its own PostgreSQL connection,
 * so commits overlap; `kea-pg-st` is Kea 2.2's default, one thread and one connection. `kea-pg3own` is three
 * multi-threaded kea-dhcp4 on one lease database, each behind its own relay and serving that relay's own subnet:
 * the same three relays, perfdhcp processes and PostgreSQL core as plinth-pg3, so the summary compares the
 * three-daemon servers with it when it ran (three perfdhcp take about 0.6 of PostgreSQL's core at 300/s where one
 * takes 0.3: one Kea behind one relay is not the same conditions). `kea-pg3` is three on one pool: Kea 2.2's
 * iterative allocator makes each daemon walk the pool from its start into the others' inserts.
 *
 * Needs: postgresql (15), kea-admin (perfdhcp), kea-dhcp4-server, iproute2, util-linux (taskset).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureAddon } from '../test/dhcp/addon.js';
import { addNamespace, deleteNamespaces, ipn, runIn } from '../test/e2e/dhcp-netns.js';
import { parsePerfdhcp, printSummary, type Result, runLadder } from './dhcp-ladder.js';
import {
  keaPgServer,
  type Pair,
  type PgBenchContext,
  type PgServer,
  pgCpuNs,
  plinthPgServer,
  sql,
} from './dhcp-pg-servers.js';
import { cpuNs } from './dhcp-servers.js';

const { values } = parseArgs({
  options: {
    store: { type: 'string', default: 'postgres' },
    servers: { type: 'string', default: 'plinth-pg,plinth-pg3,plinth-pg3own,kea-pg' },
    rates: { type: 'string', default: '500,1000,1500,2000,3000,4000,5000,6000,8000' },
    seconds: { type: 'string', default: '5' },
    // The unmeasured warm-up: DORAs per daemon, at --warmup-rate in total, with bench:dhcp's defaults and reason.
    // 500 at 500/s left V8 compiling the daemon's hot code through the measured step (perf at 300/s: 17% of its
    // CPU in the optimizing compiler, 2.6% after 10,000): that measures a start, not a daemon that runs for days.
    warmup: { type: 'string', default: '10000' },
    'warmup-rate': { type: 'string', default: '1000' },
    runs: { type: 'string', default: '3' },
    pin: { type: 'string', default: 'split' },
    pool: { type: 'string', default: '50000' },
    'pg-dir': { type: 'string', default: '/tmp/plinth-bench-pg' },
    'pg-port': { type: 'string', default: '55499' },
    'pg-cpu': { type: 'string', default: '0' },
    'kea-threads': { type: 'string', default: '8' },
    'kea-queue': { type: 'string', default: '64' },
    'plinth-node-flags': { type: 'string' },
  },
});
const root = fileURLToPath(new URL('../', import.meta.url));
const POOL_SIZE = Number(values.pool);
if (!(POOL_SIZE >= 1000 && POOL_SIZE <= 60_000)) throw new Error('--pool: 1000 to 60000 addresses');
const SECONDS = Number(values.seconds);
const RUNS = Math.max(1, Number(values.runs));
const MAX_EXCHANGES = Math.floor(POOL_SIZE * 0.9);
const PG_CPU = values['pg-cpu'];
if (!/^\d+$/.test(PG_CPU)) throw new Error('--pg-cpu: a CPU number');
const pinServer = (cmd: string[]) => (values.pin === 'none' ? cmd : ['taskset', '-c', '1', ...cmd]);
const pinClient = (cmd: string[]) => (values.pin === 'none' ? cmd : ['taskset', '-c', '0', ...cmd]);

const pairs: Pair[] = [1, 2, 3].map((i) => ({
  srv: `plinth-dhcp-bpsrv${i}`,
  cli: `plinth-dhcp-bpcli${i}`,
  srvAddr: `10.98.0.${4 * i - 3}`,
  cliAddr: `10.98.0.${4 * i - 2}`,
  mac: `00:0c:0${i}:00:00:00`,
  own: {
    subnet: `10.${100 + i}.0.0/16`,
    srvAddr: `10.${100 + i}.0.1`,
    cliAddr: `10.${100 + i}.0.2`,
    start: `10.${100 + i}.1.1`,
    end: ipPlus(`10.${100 + i}.1.1`, Math.floor(POOL_SIZE / 3) - 1),
  },
}));
const ctx: PgBenchContext = {
  tmp: '',
  root,
  pool: { start: '10.98.1.1', end: ipPlus('10.98.1.1', POOL_SIZE - 1) },
  pinServer,
  pgDir: path.resolve(values['pg-dir']),
  pgPort: Number(values['pg-port']),
  pairs,
  keaThreads: Number(values['kea-threads']),
  keaQueue: Number(values['kea-queue']),
  nodeFlags: values['plinth-node-flags']?.split(' ').filter(Boolean) ?? [],
};
const known: PgServer[] = [
  plinthPgServer('plinth-pg', 1, ctx),
  plinthPgServer('plinth-pg3', 3, ctx),
  plinthPgServer('plinth-pg3own', 3, ctx, true),
  plinthPgServer('plinth-pg-par', 1, ctx, false, '4:3'),
  plinthPgServer('plinth-pg3-par', 3, ctx, false, '4:3'),
  plinthPgServer('plinth-pg-owned', 1, ctx, false, undefined, true),
  plinthPgServer('plinth-pg3owned', 3, ctx, true, undefined, true),
  plinthPgServer('plinth-pg-owned-par', 1, ctx, false, '4:3', true),
  plinthPgServer('plinth-pg3owned-par', 3, ctx, true, '4:3', true),
  plinthPgServer('plinth-pg3owned-follow60', 3, ctx, true, undefined, true, ['PLINTH_BENCH_LEASE_FOLLOW_MS=60000']),
  keaPgServer('kea-pg', true, ctx),
  keaPgServer('kea-pg-st', false, ctx),
  keaPgServer('kea-pg3', true, ctx, 3),
  keaPgServer('kea-pg3own', true, ctx, 3, true),
];
const wanted = values.servers.split(',');
for (const w of wanted) if (!known.some((s) => s.name === w)) throw new Error(`--servers: unknown ${w}`);
const all = known.filter((s) => wanted.includes(s.name));
// Made once the options are known good, so that a refused option leaves nothing behind.
const tmp = mkdtempSync(path.join(tmpdir(), 'plinth-dhcp-pg-bench-'));
ctx.tmp = tmp;
const usedPairs = pairs.slice(0, Math.max(...all.map((s) => s.daemons)));
const namespaces = usedPairs.flatMap((p) => [p.srv, p.cli]);

function ipPlus(ip: string, n: number): string {
  const v = ip.split('.').reduce((a, b) => a * 256 + Number(b), 0) + n;
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
}

const perfdhcp = (p: Pair, own: boolean | undefined, args: string[], clients: number) =>
  pinClient([
    'perfdhcp',
    '-4',
    ...(process.env.PERFDHCP_G ? ['-g', process.env.PERFDHCP_G] : []),
    '-l',
    own ? p.own.cliAddr : p.cliAddr,
    ...args,
    '-R',
    String(clients),
    '-b',
    `mac=${p.mac}`,
    own ? p.own.srvAddr : p.srvAddr,
  ]);

async function step(server: PgServer, rate: number, n: number): Promise<Result> {
  const db = `bench_${n}`;
  await sql(ctx, 'postgres', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  await sql(ctx, 'postgres', `CREATE DATABASE ${db}`);
  const mine = pairs.slice(0, server.daemons);
  // Each relay's own clients; together no more than the pool (-R draws at random, so some repeat).
  const clients = Math.floor(POOL_SIZE / mine.length);
  let procs: Awaited<ReturnType<PgServer['start']>> = [];
  try {
    await server.prepare(db);
    procs = await server.start(n, db);
    // Warm-up: --warmup DORAs per daemon (its JIT), at --warmup-rate in total but never faster than the step
    // itself, and -W so that a late reply reaches the warm-up's perfdhcp and not the measured one (where it would
    // be an orphan). Not faster than the step: a warm-up above what a server sustains leaves it behind at the
    // step's start. Session 23: 1,000/s of warm-up before a 300/s step, beyond kea-pg3own's rate with PostgreSQL
    // on its core, put its p99 at 8.4 ms (median of six runs) against 6.7 warmed at 300/s, which made Plinth's
    // look 1.47x Kea's instead of 1.75x.
    const warmRate = Math.min(Number(values['warmup-rate']), rate);
    const warm = String(Math.max(1, Math.round(warmRate / mine.length)));
    const warmSecs = Number(values.warmup) / (warmRate / mine.length);
    await Promise.all(
      mine.map((p) =>
        runIn(
          p.cli,
          perfdhcp(p, server.own, ['-r', warm, '-n', values.warmup, '-W', '1000000'], clients),
          30_000 + warmSecs * 1000,
        ),
      ),
    );
    const secs = Math.max(1, Math.min(SECONDS, Math.floor(MAX_EXCHANGES / rate)));
    const cpu = () =>
      procs.map((p) => cpuNs(p.child.pid)).reduce((a, b) => ({ all: a.all + b.all, main: a.main + b.main }));
    const db0 = await dbCounters(server, db);
    const cpu0 = cpu();
    const pg0 = pgCpuNs(ctx.pgDir);
    const each = Math.max(1, Math.round(rate / mine.length));
    // -W: exchanges in flight at the end get perfdhcp's drop time to complete (bench/dhcp.ts).
    const runs = await Promise.all(
      mine.map((p) =>
        runIn(
          p.cli,
          perfdhcp(p, server.own, ['-r', String(each), '-p', String(secs), '-W', '1000000', '-u', '-x', 'tl'], clients),
          (secs + 30) * 1000,
        ),
      ),
    );
    const cpu1 = cpu();
    const pg1 = pgCpuNs(ctx.pgDir);
    const db1 = await dbCounters(server, db);
    const x = parsePerfdhcp(runs.map((r) => r.out));
    // PERFDHCP_OUT=PREFIX: each relay's perfdhcp output and each daemon's log (PLINTH_LOG_LEVEL) kept as files.
    if (process.env.PERFDHCP_OUT) {
      const out = `${process.env.PERFDHCP_OUT}-${n}-${server.name}`;
      for (const [i, r] of runs.entries()) writeFileSync(`${out}-perfdhcp${i + 1}.txt`, r.out);
      for (const [i, p] of procs.entries()) writeFileSync(`${out}-server${i + 1}.log`, p.out());
    }
    const { sent, acks } = x;
    const notes = [x.nonUnique > 0 ? `${x.nonUnique} non-unique` : ''];
    if (x.twice > 0) notes.push(`TWICE: ${x.twice} addresses ACKed to two clients`);
    if (acks > 0) {
      // Write transactions (xids) and WAL per DORA, the events table's rows per DORA, connections held.
      const per1 = (d: number) => (d / acks).toFixed(2);
      notes.push(
        `pg: ${per1(db1.xid - db0.xid)} xact/DORA, ${((db1.wal - db0.wal) / acks / 1024).toFixed(2)} kB WAL/DORA, ${db1.conns} conns` +
          (server.name.startsWith('plinth') ? `, ${per1(db1.events - db0.events)} events/DORA` : ''),
      );
    }
    notes.push(await server.check(procs, db, x.owners));
    const per = (ns: number) => (acks > 0 ? ns / 1000 / acks : Number.NaN);
    return {
      rate,
      achieved: sent / secs,
      sent,
      acks,
      drop: sent > 0 ? 1 - acks / sent : 1,
      p99do: x.p99do,
      p99ra: x.p99ra,
      cpuPerAck: per(cpu1.all - cpu0.all),
      cpuMainPerAck: per(cpu1.main - cpu0.main),
      pgCpuPerAck: per(pg1 - pg0),
      note: notes.filter(Boolean).join(', '),
    };
  } finally {
    for (const p of procs) await p.stop();
    await sql(ctx, 'postgres', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`).catch(() => {});
  }
}

/** Cluster-wide xid and WAL position, the step database's connections and (Plinth) its newest event id. */
async function dbCounters(server: PgServer, db: string) {
  const [r] = await sql<{ xid: string; wal: string; conns: string }>(
    ctx,
    'postgres',
    `SELECT pg_current_xact_id()::text AS xid, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::text AS wal,
       (SELECT count(*) FROM pg_stat_activity WHERE datname = '${db}')::text AS conns`,
  );
  const events = server.name.startsWith('plinth')
    ? Number((await sql<{ n: string }>(ctx, db, 'SELECT coalesce(max(id), 0)::text AS n FROM events'))[0]!.n)
    : 0;
  return { xid: Number(r!.xid), wal: Number(r!.wal), conns: Number(r!.conns), events };
}

/** The throwaway cluster, started pinned; its processes (a cluster already running too) moved to --pg-cpu. */
function startPg(): void {
  const script = path.join(root, 'scripts/pg-throwaway.sh');
  // A cluster left running in this directory (an interrupted run) is stopped first, so the new one starts pinned.
  if (existsSync(path.join(ctx.pgDir, 'postmaster.pid')))
    execFileSync('bash', [script, 'stop', ctx.pgDir], { stdio: ['ignore', 'ignore', 'inherit'] });
  const start = ['bash', script, 'start', ctx.pgDir, String(ctx.pgPort)];
  execFileSync(
    values.pin === 'none' ? start[0]! : 'taskset',
    values.pin === 'none' ? start.slice(1) : ['-c', PG_CPU, ...start],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  if (values.pin === 'none') return;
  const postmaster = execFileSync('head', ['-1', path.join(ctx.pgDir, 'postmaster.pid')], { encoding: 'utf8' }).trim();
  const children = execFileSync('pgrep', ['-P', postmaster], { encoding: 'utf8' }).split('\n').filter(Boolean);
  for (const pid of [postmaster, ...children])
    execFileSync('taskset', ['-a', '-p', '-c', PG_CPU, pid], { stdio: 'ignore' });
}

async function main() {
  if (process.getuid?.() !== 0) throw new Error('run as root: the benchmark creates network namespaces');
  if (values.store !== 'postgres') throw new Error('bench/dhcp-pg.ts: --store postgres');
  for (const bin of ['perfdhcp', 'kea-dhcp4', 'psql', 'taskset', 'pgrep']) {
    try {
      execFileSync('which', [bin], { stdio: 'ignore' });
    } catch {
      throw new Error(`${bin} is missing: apt-get install -y postgresql kea-admin kea-dhcp4-server util-linux procps`);
    }
  }
  if (!ensureAddon()) throw new Error('the native socket helper could not be built: npm run build:native');
  startPg();
  const settings = await sql<{ name: string; setting: string }>(
    ctx,
    'postgres',
    "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method', 'server_version', 'max_connections')",
  );
  const fs = execFileSync('stat', ['-f', '-c', '%T', ctx.pgDir], { encoding: 'utf8' }).trim();
  console.log(
    `PostgreSQL ${ctx.pgDir} port ${ctx.pgPort} (${fs}), ${settings.map((r) => `${r.name}=${r.setting}`).join(' ')}, pinned to ${values.pin === 'none' ? 'no CPU' : `CPU ${PG_CPU}`}`,
  );
  deleteNamespaces(namespaces);
  for (const p of usedPairs) {
    addNamespace(p.srv);
    addNamespace(p.cli);
    ipn(p.srv, 'link', 'add', 'b0', 'type', 'veth', 'peer', 'name', 'b1', 'netns', p.cli);
    ipn(p.srv, 'addr', 'add', `${p.srvAddr}/16`, 'dev', 'b0');
    ipn(p.cli, 'addr', 'add', `${p.cliAddr}/16`, 'dev', 'b1');
    // plinth-pg3own's relays and servers: one more subnet per pair, on the same veth.
    ipn(p.srv, 'addr', 'add', `${p.own.srvAddr}/16`, 'dev', 'b0');
    ipn(p.cli, 'addr', 'add', `${p.own.cliAddr}/16`, 'dev', 'b1');
    ipn(p.srv, 'link', 'set', 'b0', 'up');
    ipn(p.cli, 'link', 'set', 'b1', 'up');
  }
  const rates = values.rates.split(',').map(Number);
  const { best, table } = await runLadder(all, rates, RUNS, step);
  printSummary(
    all,
    best,
    table,
    `median of ${RUNS} run(s) per step, pinning ${values.pin} (PostgreSQL on CPU ${PG_CPU}), pool ${POOL_SIZE}, kea-pg ${ctx.keaThreads} threads`,
    `full DORA, relayed, every ACK committed to PostgreSQL; rate = total over all relays`,
    // Three daemons behind three relays against three Kea daemons behind the same relays, when run: the relays'
    // perfdhcp share PostgreSQL's core, so one Kea behind one relay has a core to itself that they do not.
    (name) => {
      const three = all.find((s) => s.name === name)?.daemons === 3;
      const ref = three && all.some((s) => s.name === 'kea-pg3own') ? 'kea-pg3own' : 'kea-pg';
      return all.some((s) => s.name === ref) ? ref : undefined;
    },
  );
}

try {
  await main();
} finally {
  deleteNamespaces(namespaces);
  rmSync(tmp, { recursive: true, force: true });
  try {
    execFileSync('bash', [path.join(root, 'scripts/pg-throwaway.sh'), 'stop', ctx.pgDir], { stdio: 'ignore' });
  } catch {}
}
