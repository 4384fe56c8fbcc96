/**
 * DHCP throughput: Plinth vs dnsmasq vs kea-dhcp4, side by side in one run (`npm run bench:dhcp`, as root).
 *
 * perfdhcp (Debian package kea-admin) acts as a relay (`-l 10.98.0.2`, giaddr set) in namespace
 * plinth-dhcp-bcli, across a veth to plinth-dhcp-bsrv where one server at a time serves a pool of 50,000
 * addresses (10.98.1.1-10.98.196.80 in 10.98.0.0/16, addresses that exist only inside these namespaces).
 * Servers are pinned to CPU 1, perfdhcp to CPU 0. Each step is a fresh server with an empty lease database
 * and full DORA exchanges at a fixed rate for up to 5 s (never more than 45,000 exchanges, so the pool is
 * never the limit); rates climb until a server loses >= 1% of the DORAs (ACKs received / DISCOVERs sent),
 * then one bisection step. Steps alternate between servers so machine noise hits all three alike; each step
 * starts with an unmeasured warm-up (--warmup, default 10,000 DORAs at 1,000/s) and a failed step is retried once.
 *
 * Prints per server: the highest rate sustained with < 1% drops, p99 latency of DISCOVER->OFFER and
 * REQUEST->ACK at that rate (from perfdhcp's per-exchange timestamps, -x t), and for Plinth whether every
 * ACKed address was in its store after a kill -9 right after the run (durability, checked every step).
 *
 * Needs: iproute2, util-linux (taskset), kea-admin (perfdhcp), kea-dhcp4-server, dnsmasq; the native addon
 * built (npm run build:native).
 *
 * `--store postgres` runs the PostgreSQL comparison instead (bench/dhcp-pg.ts: Plinth with 1 and 3 daemons on one
 * database vs Kea's PostgreSQL lease backend); the ladder and perfdhcp's figures are shared (bench/dhcp-ladder.ts).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureAddon } from '../test/dhcp/addon.js';
import { addNamespace, deleteNamespaces, ipn, runIn } from '../test/e2e/dhcp-netns.js';
import { parsePerfdhcp, printSummary, type Result, runLadder } from './dhcp-ladder.js';
import {
  type BenchContext,
  cpuNs,
  dnsmasqServer,
  keaServer,
  plinthServer,
  readWhenWritten,
  type Server,
} from './dhcp-servers.js';

// `--store postgres`: Plinth with 1 and 3 daemons on one PostgreSQL against Kea's PostgreSQL backend
// (bench/dhcp-pg.ts, its own options); `--store sqlite` (the default) is this file's comparison.
const storeArg = process.argv.findIndex((a) => a === '--store' || a.startsWith('--store='));
if (storeArg >= 0) {
  const a = process.argv[storeArg]!;
  const store = a.includes('=') ? a.slice(a.indexOf('=') + 1) : process.argv[storeArg + 1];
  if (store === 'postgres') {
    await import('./dhcp-pg.js');
    process.exit(process.exitCode ?? 0);
  }
  if (store !== 'sqlite') throw new Error('--store: sqlite (the default) or postgres');
  process.argv.splice(storeArg, a.includes('=') ? 1 : 2);
}

const { values } = parseArgs({
  options: {
    servers: { type: 'string', default: 'plinth,plinth-kernel,kea,kea-mt,dnsmasq' },
    rates: { type: 'string', default: '500,1000,2000,3000,4000,5000,6000,8000,10000,12000,14000' },
    seconds: { type: 'string', default: '5' },
    // Runs per step and server (interleaved): a step passes on the median run's loss. One run per step is what
    // made two runs of an independent ladder disagree (4,800 vs 3,200 and then 3,200 vs 4,800) on a shared host.
    runs: { type: 'string', default: '3' },
    // 'split': servers on CPU 1, perfdhcp on CPU 0 (one core each, as measured for the README). 'none': no
    // pinning, every process anywhere (how the disagreeing ladder ran: perfdhcp's two threads then compete with
    // the server for both cores, and where the scheduler puts them changes the result from run to run).
    // 'apart': as split, but after the warm-up every thread of Plinth's server except its main thread (the store's
    // writer, V8's GC and compiler helpers) moves to CPU 0 beside perfdhcp: how much of the latency is the
    // event loop sharing its core.
    pin: { type: 'string', default: 'split' },
    pool: { type: 'string', default: '50000' },
    // The unmeasured warm-up before each step, in DORAs at --warmup-rate, the same for every server. 500 at 500/s
    // measured Plinth 1-2 s after its start, while V8 still compiled its hot code on the same core (slow clusters at
    // the same offsets of every run, gone after 10,000): the default measures a server as it runs for days;
    // --warmup 500 --warmup-rate 500 measures the first seconds after a start.
    warmup: { type: 'string', default: '10000' },
    'warmup-rate': { type: 'string', default: '1000' },
    // A Plinth checkout (with its node_modules) to run as server 'baseline' next to this one: before/after a change.
    baseline: { type: 'string' },
    // The baseline's --lease-durability (disk, the default, or kernel: to set it beside `plinth-kernel`).
    'baseline-durability': { type: 'string', default: 'disk' },
    // CPU profiles of Plinth's server process (node --cpu-prof) into this directory; the server is then stopped
    // with SIGTERM (the profile is written at exit) instead of kill -9, so the durability check is weaker.
    profile: { type: 'string' },
    // Sampling heap profiles (garbage included) of Plinth's measured period into this directory.
    'heap-profile': { type: 'string' },
    // Extra node flags for this checkout's server process (not the baseline's), e.g. V8 heap settings: with
    // `--baseline .` the same code runs with and without them.
    'plinth-node-flags': { type: 'string' },
  },
});
const SRV = 'plinth-dhcp-bsrv';
const CLI = 'plinth-dhcp-bcli';
const root = fileURLToPath(new URL('../', import.meta.url));
const POOL_SIZE = Number(values.pool);
if (!(POOL_SIZE >= 1000 && POOL_SIZE <= 60_000)) throw new Error('--pool: 1000 to 60000 addresses');
const tmp = mkdtempSync(path.join(tmpdir(), 'plinth-dhcp-bench-'));
const POOL = { start: '10.98.1.1', end: ipPlus('10.98.1.1', POOL_SIZE - 1) };
const SECONDS = Number(values.seconds);
const RUNS = Math.max(1, Number(values.runs));
// Each step and its warm-up stay under 90% of the pool (perfdhcp's -R draws clients at random, so some repeat), so
// the pool is never what limits a server.
const MAX_EXCHANGES = Math.max(1000, Math.floor(POOL_SIZE * 0.9) - Number(values.warmup));
const pinServer = (cmd: string[]) => (values.pin === 'none' ? cmd : ['taskset', '-c', '1', ...cmd]);
const pinClient = (cmd: string[]) => (values.pin === 'none' ? cmd : ['taskset', '-c', '0', ...cmd]);

const probeFile = (step: number) => path.join(tmp, `probe-${step}.json`);

function ipPlus(ip: string, n: number): string {
  const v = ip.split('.').reduce((a, b) => a * 256 + Number(b), 0) + n;
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
}

const ctx: BenchContext = {
  ns: SRV,
  tmp,
  root,
  pool: POOL,
  pinServer,
  profile: values.profile ? path.resolve(values.profile) : undefined,
  nodeFlags: [],
  heapProfile: values['heap-profile'] ? path.resolve(values['heap-profile']) : undefined,
  probeFile,
};
const plinthCtx = { ...ctx, nodeFlags: values['plinth-node-flags']?.split(' ').filter(Boolean) ?? [] };
const plinth = plinthServer('plinth', root, plinthCtx);
// This checkout with --lease-durability kernel: an ACK once its lease is written, not fdatasynced (Kea's memfile
// and dnsmasq do not fsync their lease files either); kill -9 durability is checked the same.
const plinthKernel = plinthServer('plinth-kernel', root, plinthCtx, 'kernel');
// Another checkout of Plinth (--baseline DIR: e.g. the commit before a change), in the same run as this one.
const baselineDurability = values['baseline-durability'];
if (baselineDurability !== 'disk' && baselineDurability !== 'kernel')
  throw new Error('--baseline-durability: disk or kernel');
const baseline = values.baseline
  ? plinthServer('baseline', path.resolve(values.baseline), ctx, baselineDurability)
  : undefined;
const dnsmasq = dnsmasqServer(ctx);
const kea = keaServer('kea', false, ctx);
const keaMt = keaServer('kea-mt', true, ctx);

/** perfdhcp as the relay (10.98.0.2) to the server, its clients drawn from the pool's size, pinned. */
const relay = (args: string[]) =>
  pinClient(['perfdhcp', '-4', '-l', '10.98.0.2', ...args, '-R', String(POOL_SIZE), '10.98.0.1']);

async function step(server: Server, rate: number, n: number): Promise<Result> {
  const proc = await server.start(n);
  try {
    // Warm-up (JIT, first queries, caches) at a low rate, the same for every server; not measured.
    await runIn(
      CLI,
      relay(['-r', values['warmup-rate'], '-n', values.warmup]),
      20_000 + (1000 * Number(values.warmup)) / Number(values['warmup-rate']),
    );
    const secs = Math.max(1, Math.min(SECONDS, Math.floor(MAX_EXCHANGES / rate)));
    if (values.pin === 'apart' && server.after && proc.child.pid) threadsApart(proc.child.pid);
    const cpu0 = cpuNs(proc.child.pid);
    const probed = server.after !== undefined; // Plinth: bench/dhcp-probe.mjs is loaded
    if (probed) proc.child.kill('SIGUSR2');
    // -W: exchanges still in flight when the period ends get perfdhcp's drop time (1 s) to complete instead of
    // counting as lost, so the loss figure is the server's and not the length of the run's tail.
    const r = await runIn(
      CLI,
      relay(['-r', String(rate), '-p', String(secs), '-W', '1000000', '-u', '-x', 'tl']),
      (secs + 30) * 1000,
    );
    const cpu1 = cpuNs(proc.child.pid);
    let probe: string | undefined;
    if (probed) {
      proc.child.kill('SIGUSR2');
      // A heap snapshot (PLINTH_PROBE_SNAPSHOT, dhcp-probe.mjs) is written first and takes seconds.
      probe = await readWhenWritten(probeFile(n), process.env.PLINTH_PROBE_SNAPSHOT ? 120_000 : 2000);
    }
    const out = r.out;
    if (process.env.PERFDHCP_OUT) writeFileSync(`${process.env.PERFDHCP_OUT}-${n}.txt`, out);
    const x = parsePerfdhcp([out]);
    const { sent, acks } = x;
    const acked = [...x.owners.keys()];
    let note = x.nonUnique > 0 ? `${x.nonUnique} NON-UNIQUE addresses (${x.twice} to two clients)` : '';
    if (server.after) note = [note, await server.after(proc, n, acked)].filter(Boolean).join(', ');
    return {
      rate,
      // DISCOVERs sent over the period: perfdhcp's own "Rate" also counts the -W wait.
      achieved: sent / secs,
      sent,
      acks,
      drop: sent > 0 ? 1 - acks / sent : 1,
      p99do: x.p99do,
      p99ra: x.p99ra,
      cpuPerAck: acks > 0 ? (cpu1.all - cpu0.all) / 1000 / acks : Number.NaN,
      cpuMainPerAck: acks > 0 ? (cpu1.main - cpu0.main) / 1000 / acks : Number.NaN,
      note,
      probe,
    };
  } finally {
    await proc.stop();
  }
}

/** --pin apart: every thread of `pid` but the main one to CPU 0 (the writer thread exists after the warm-up). */
function threadsApart(pid: number): void {
  for (const tid of readdirSync(`/proc/${pid}/task`))
    if (tid !== String(pid)) execFileSync('taskset', ['-p', '-c', '0', tid], { stdio: 'ignore' });
}

async function main() {
  if (process.getuid?.() !== 0) throw new Error('run as root: the benchmark creates network namespaces');
  for (const bin of ['perfdhcp', 'kea-dhcp4', 'dnsmasq', 'taskset']) {
    try {
      execFileSync('which', [bin], { stdio: 'ignore' });
    } catch {
      throw new Error(`${bin} is missing: apt-get install -y kea-admin kea-dhcp4-server dnsmasq util-linux`);
    }
  }
  if (!ensureAddon())
    throw new Error('the native socket helper could not be built: npm run build:native (needs g++, make, python3)');
  deleteNamespaces([SRV, CLI]);
  addNamespace(SRV);
  addNamespace(CLI);
  ipn(SRV, 'link', 'add', 'b0', 'type', 'veth', 'peer', 'name', 'b1', 'netns', CLI);
  ipn(SRV, 'addr', 'add', '10.98.0.1/16', 'dev', 'b0');
  ipn(CLI, 'addr', 'add', '10.98.0.2/16', 'dev', 'b1');
  ipn(SRV, 'link', 'set', 'b0', 'up');
  ipn(CLI, 'link', 'set', 'b1', 'up');

  const all = [plinth, plinthKernel, baseline, kea, keaMt, dnsmasq].filter(
    (s): s is Server => !!s && (s === baseline || values.servers.split(',').includes(s.name)),
  );
  const rates = values.rates.split(',').map(Number);
  const { best, table } = await runLadder(all, rates, RUNS, step);
  printSummary(
    all,
    best,
    table,
    `median of ${RUNS} run(s) per step, pinning ${values.pin}, pool ${POOL_SIZE}`,
    `full DORA, relayed, ${POOL_SIZE}-address pool`,
  );
}

try {
  await main();
} finally {
  deleteNamespaces([SRV, CLI]);
  rmSync(tmp, { recursive: true, force: true });
}
