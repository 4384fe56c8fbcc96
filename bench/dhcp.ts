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
 * starts with an unmeasured warm-up (500 DORAs at 500/s) and a failed step is retried once.
 *
 * Prints per server: the highest rate sustained with < 1% drops, p99 latency of DISCOVER->OFFER and
 * REQUEST->ACK at that rate (from perfdhcp's per-exchange timestamps, -x t), and for Plinth whether every
 * ACKed address was in its store after a kill -9 right after the run (durability, checked every step).
 *
 * Needs: iproute2, util-linux (taskset), kea-admin (perfdhcp), kea-dhcp4-server, dnsmasq; the native addon
 * built (npm run build:native).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureAddon } from '../test/dhcp/addon.js';
import { addNamespace, deleteNamespaces, ipn, runIn } from '../test/e2e/dhcp-netns.js';
import {
  type BenchContext,
  cpuNs,
  dnsmasqServer,
  keaServer,
  p99,
  plinthServer,
  readWhenWritten,
  type Server,
  section,
} from './dhcp-servers.js';

const { values } = parseArgs({
  options: {
    servers: { type: 'string', default: 'plinth,kea,kea-mt,dnsmasq' },
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
    // A Plinth checkout (with its node_modules) to run as server 'baseline' next to this one: before/after a change.
    baseline: { type: 'string' },
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
const tmp = mkdtempSync(path.join(tmpdir(), 'plinth-dhcp-bench-'));
const POOL_SIZE = Number(values.pool);
if (!(POOL_SIZE >= 1000 && POOL_SIZE <= 60_000)) throw new Error('--pool: 1000 to 60000 addresses');
const POOL = { start: '10.98.1.1', end: ipPlus('10.98.1.1', POOL_SIZE - 1) };
const SECONDS = Number(values.seconds);
const RUNS = Math.max(1, Number(values.runs));
// Each step stays under 90% of the pool (perfdhcp's -R draws clients at random, so some repeat), so the pool is
// never what limits a server.
const MAX_EXCHANGES = Math.floor(POOL_SIZE * 0.9);
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
const plinth = plinthServer('plinth', root, {
  ...ctx,
  nodeFlags: values['plinth-node-flags']?.split(' ').filter(Boolean) ?? [],
});
// Another checkout of Plinth (--baseline DIR: e.g. the commit before a change), in the same run as this one.
const baseline = values.baseline ? plinthServer('baseline', path.resolve(values.baseline), ctx) : undefined;
const dnsmasq = dnsmasqServer(ctx);
const kea = keaServer('kea', false, ctx);
const keaMt = keaServer('kea-mt', true, ctx);

type Result = {
  rate: number;
  achieved: number;
  sent: number;
  acks: number;
  drop: number;
  p99do: number;
  p99ra: number;
  /** The server's CPU time (every thread) per ACK over the measured period, in µs: robust on a loaded host. */
  cpuPerAck: number;
  /** The same for the main thread alone (the event loop that reads packets and sends replies). */
  cpuMainPerAck: number;
  note: string;
  /** Plinth: the event loop's delay and GC pauses over the measured period (bench/dhcp-probe.mjs). */
  probe?: string;
};

async function step(server: Server, rate: number, n: number): Promise<Result> {
  const proc = await server.start(n);
  try {
    // Warm-up (JIT, first queries, caches) at a low rate, the same for every server; not measured.
    await runIn(
      CLI,
      pinClient(['perfdhcp', '-4', '-l', '10.98.0.2', '-r', '500', '-n', '500', '-R', String(POOL_SIZE), '10.98.0.1']),
      20_000,
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
      pinClient([
        'perfdhcp',
        '-4',
        '-l',
        '10.98.0.2',
        '-r',
        String(rate),
        '-p',
        String(secs),
        '-W',
        '1000000',
        '-R',
        String(POOL_SIZE),
        '-u',
        '-x',
        'tl',
        '10.98.0.1',
      ]),
      (secs + 30) * 1000,
    );
    const cpu1 = cpuNs(proc.child.pid);
    let probe: string | undefined;
    if (probed) {
      proc.child.kill('SIGUSR2');
      probe = await readWhenWritten(probeFile(n), 2000);
    }
    const out = r.out;
    if (process.env.PERFDHCP_OUT) writeFileSync(`${process.env.PERFDHCP_OUT}-${n}.txt`, out);
    const num = (s: string, re: RegExp) => Number(re.exec(s)?.[1] ?? Number.NaN);
    const doS = section(out, 'Statistics for: DISCOVER-OFFER');
    const raS = section(out, 'Statistics for: REQUEST-ACK');
    const sent = num(doS, /sent packets: (\d+)/);
    const acks = num(raS, /received packets: (\d+)/);
    const nonUnique = num(raS, /non unique addresses: (\d+)/) + num(doS, /non unique addresses: (\d+)/);
    const lines = (t: string) =>
      section(out, t)
        .split('\n')
        .filter((l) => l.startsWith('sent / received'));
    const leases = section(out, 'Leases for REQUEST-ACK')
      .split('\n')
      .map((l) => l.split(','))
      .filter((f) => !!f[1] && /^\d+\.\d+\.\d+\.\d+$/.test(f[1]));
    const acked = leases.map((f) => f[1]!);
    // perfdhcp counts an address ACKed twice as non-unique even to the same client (-R repeats clients, and a
    // client that starts over gets its lease again): an address ACKed to two client ids is the real fault.
    const owner = new Map<string, string>();
    let twice = 0;
    for (const [client, address] of leases) {
      const o = owner.get(address!);
      if (o === undefined) owner.set(address!, client!);
      else if (o !== client) twice++;
    }
    let note = nonUnique > 0 ? `${nonUnique} NON-UNIQUE addresses (${twice} to two clients)` : '';
    if (server.after) note = [note, await server.after(proc, n, [...new Set(acked)])].filter(Boolean).join(', ');
    return {
      rate,
      // DISCOVERs sent over the period: perfdhcp's own "Rate" also counts the -W wait.
      achieved: sent / secs,
      sent,
      acks,
      drop: sent > 0 ? 1 - acks / sent : 1,
      p99do: p99(lines('Timestamps for packets: DISCOVER-OFFER')),
      p99ra: p99(lines('Timestamps for packets: REQUEST-ACK')),
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

  const all = [plinth, baseline, kea, keaMt, dnsmasq].filter(
    (s): s is Server => !!s && (s === baseline || values.servers.split(',').includes(s.name)),
  );
  const rates = values.rates.split(',').map(Number);
  const best = new Map<string, Result | undefined>();
  const failedAt = new Map<string, number>(); // first rate of the current run of failures
  const misses = new Map<string, number>();
  const table = new Map<number, Map<string, Result>>(); // rate -> server -> median run
  let n = 0;
  const report = (s: Server, r: Result) => {
    console.log(
      `${s.name.padEnd(8)} rate ${String(r.rate).padStart(6)}/s achieved ${r.achieved.toFixed(0).padStart(6)}/s  DORAs ${String(r.acks).padStart(6)}/${String(r.sent).padEnd(6)} drops ${(r.drop * 100).toFixed(2).padStart(6)}%  p99 DO ${r.p99do.toFixed(1).padStart(7)} ms RA ${r.p99ra.toFixed(1).padStart(7)} ms  cpu ${r.cpuPerAck.toFixed(0).padStart(4)} µs/DORA (main ${r.cpuMainPerAck.toFixed(0)}) ${r.note}`,
    );
    if (r.probe) console.log(`    ${s.name} loop/gc: ${r.probe}`);
  };
  const ok = (r: Result) => r.drop < 0.01 && r.achieved >= r.rate * 0.95 && !/NON-UNIQUE|LOST/.test(r.note);
  // Every server runs each rate RUNS times, the runs interleaved so that machine noise hits all alike; the
  // step is the median run by loss (its p99s with it), and a lost lease or a duplicate address in any run fails it.
  const ladderStep = async (rate: number, servers: Server[]) => {
    const runs = new Map<string, Result[]>(servers.map((s) => [s.name, []]));
    for (let i = 0; i < RUNS; i++)
      for (const s of servers) {
        const r = await step(s, rate, n++);
        report(s, r);
        runs.get(s.name)!.push(r);
      }
    const out = new Map<string, { median: Result; pass: boolean }>();
    for (const s of servers) {
      const rs = runs.get(s.name)!;
      const median = [...rs].sort((a, b) => a.drop - b.drop)[Math.floor((rs.length - 1) / 2)]!;
      const bad = rs.find((r) => /NON-UNIQUE|LOST/.test(r.note));
      const m = bad ? { ...median, note: bad.note } : median;
      out.set(s.name, { median: m, pass: ok(m) });
      if (!table.has(rate)) table.set(rate, new Map());
      table.get(rate)!.set(s.name, m);
    }
    return out;
  };
  // A server leaves the ladder after two failed rates in a row.
  const done = (s: Server) => (misses.get(s.name) ?? 0) >= 2;
  for (const rate of rates) {
    const res = await ladderStep(
      rate,
      all.filter((s) => !done(s)),
    );
    for (const [name, { median, pass }] of res) {
      if (pass) {
        best.set(name, median);
        misses.set(name, 0);
        failedAt.delete(name);
      } else {
        misses.set(name, (misses.get(name) ?? 0) + 1);
        if (!failedAt.has(name)) failedAt.set(name, rate);
      }
    }
    if (all.every(done)) break;
  }
  // One bisection step between the best passing and the first failing rate.
  for (const s of all) {
    const lo = best.get(s.name)?.rate ?? 0;
    const hi = failedAt.get(s.name);
    if (!hi || hi - lo < 500) continue;
    const mid = Math.round((lo + hi) / 2 / 100) * 100;
    const r = (await ladderStep(mid, [s])).get(s.name)!;
    if (r.pass) best.set(s.name, r.median);
  }
  printSummary(all, best, table);
}

function printSummary(all: Server[], best: Map<string, Result | undefined>, table: Map<number, Map<string, Result>>) {
  console.log(
    `\nmedian of ${RUNS} run(s) per step, pinning ${values.pin}, pool ${POOL_SIZE}: REQUEST->ACK p99 (ms) / loss per rate`,
  );
  console.log(`  ${'rate'.padStart(6)}  ${all.map((s) => s.name.padStart(16)).join('')}`);
  for (const [rate, row] of [...table].sort((a, b) => a[0] - b[0]))
    console.log(
      `  ${String(rate).padStart(6)}  ${all
        .map((s) => {
          const r = row.get(s.name);
          return (r ? `${r.p99ra.toFixed(1)} / ${(r.drop * 100).toFixed(1)}%` : '-').padStart(16);
        })
        .join('')}`,
    );
  console.log(`\nhighest rate with < 1% drops (full DORA, relayed, ${POOL_SIZE}-address pool):`);
  for (const s of all) {
    const r = best.get(s.name);
    console.log(
      r
        ? `  ${s.name.padEnd(8)} ${String(r.rate).padStart(6)} DORA/s   p99 DISCOVER->OFFER ${r.p99do.toFixed(1)} ms, REQUEST->ACK ${r.p99ra.toFixed(1)} ms ${r.note}`
        : `  ${s.name.padEnd(8)} none of the rates tried`,
    );
  }
}

try {
  await main();
} finally {
  deleteNamespaces([SRV, CLI]);
  rmSync(tmp, { recursive: true, force: true });
}
