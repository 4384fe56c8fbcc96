/**
 * TFTP throughput: Plinth vs tftpd-hpa, dnsmasq and atftpd, side by side in one run (`npm run bench:tftp`, as root).
 *
 * All servers run at once in namespace plinth-bench-tftp-srv, each on its own address (port 69), pinned to CPU 0 (or
 * --server-cpu N); atftp clients run in plinth-bench-tftp-cli, pinned to the other CPUs (or --client-cpu M; unpinned
 * lock-step figures are bimodal). --one-up starts each server only for its own runs (started, warmed up, measured,
 * stopped), so no idle server shares the machine with the one measured. --no-gso turns GSO/TSO off on both veth ends
 * (ethtool): a veth with GSO hands a whole UDP GSO window to the receiving socket before splitting it, which a real NIC
 * without UDP segmentation offload does not, so windowed figures with it on may flatter. --rt runs servers and clients
 * under SCHED_RR, for a machine shared with other work. `plinth-nopoll` (--servers plinth,plinth-nopoll,atftpd) is
 * Plinth with busy polling off (--tftp-busy-poll-us 0): its CPU per MiB against plinth's is what the polling costs.
 * Cases: a 64 MiB file to one client and a 30 MiB file to 16 concurrent clients, blksize 512 and 1468, windowsize 1
 * and 16 (servers that do not speak RFC 7440 fall back to lock-step). Runs go round-robin (server A, B, C, D, then
 * again in another order), so on a shared machine a burst of load from elsewhere hits every server of a round alike
 * rather than one server's whole series. Prints MiB/s (median of --runs, with the spread) and the ratio against
 * atftpd: the median of the per-round ratios, each taken from runs minutes apart at most.
 *
 * Needs: iproute2, util-linux (taskset, chrt), ethtool (--no-gso), atftp, tftpd-hpa, dnsmasq, and atftpd unpacked
 * under .lab/atftpd (done here with `apt-get download atftpd` + `dpkg -x` if missing, because the atftpd package
 * conflicts with tftpd-hpa).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DAEMON_NODE_FLAGS } from '../src/node-flags.js';
import { createNetns, deleteNetns, runIn, startServer } from '../test/e2e/tftp-netns.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '1' },
    servers: { type: 'string', default: 'plinth,tftpd-hpa,dnsmasq,atftpd' },
    quick: { type: 'boolean', default: false },
    /** Substring filters on the case label, all must match, e.g. "1 client" or "1 client,window 16". */
    only: { type: 'string', default: '' },
    /** CPU the servers are pinned to (taskset -c), and the clients' CPU list (default: every other CPU). */
    'server-cpu': { type: 'string', default: '0' },
    'client-cpu': { type: 'string' },
    /** One server up at a time: each started and warmed up for its run, stopped after it. */
    'one-up': { type: 'boolean', default: false },
    /**
     * Servers and clients under SCHED_RR (chrt -r 10): on a machine shared with other work, what is measured is then
     * the servers, not the scheduler's share (RT throttling still leaves others 5%). Round-robin, not FIFO: under FIFO
     * Node's own helper threads (thread pool, GC) starved behind its busy main thread and 16-client runs stalled.
     */
    rt: { type: 'boolean', default: false },
    /** GSO and TSO off on both veth ends (see the header). */
    'no-gso': { type: 'boolean', default: false },
    /** Namespace prefix (two namespaces, PREFIX-srv and PREFIX-cli); must start with plinth-. */
    ns: { type: 'string', default: 'plinth-bench-tftp' },
  },
});
const RUNS = Math.max(1, Math.min(9, Number(values.runs)));
const MiB = 1024 * 1024;
const repo = path.resolve(import.meta.dirname, '..');
const ncpu = cpus().length;
const RT = values.rt ? ['chrt', '-r', '10'] : [];
const SERVER_CPU = values['server-cpu'];
const CLIENT_CPUS =
  values['client-cpu'] ??
  (ncpu > 1
    ? Array.from({ length: ncpu }, (_, i) => String(i))
        .filter((c) => c !== SERVER_CPU)
        .join(',')
    : '0');

function atftpdPath(): string {
  const dir = path.join(repo, '.lab', 'atftpd');
  const bin = path.join(dir, 'root', 'usr', 'sbin', 'atftpd');
  if (existsSync(bin)) return bin;
  execFileSync('mkdir', ['-p', dir]);
  execFileSync('apt-get', ['download', 'atftpd'], { cwd: dir, stdio: 'inherit' });
  const deb = readdirSync(dir).find((f) => f.startsWith('atftpd_') && f.endsWith('.deb'));
  if (deb === undefined) throw new Error('apt-get download atftpd produced no .deb');
  execFileSync('dpkg', ['-x', deb, 'root'], { cwd: dir });
  return bin;
}

async function makeFile(p: string, size: number): Promise<void> {
  // Pseudo-random content (not sparse, not zeros) written in 1 MiB pieces.
  const fh = await open(p, 'w');
  const block = Buffer.alloc(MiB);
  let x = 0x12345678;
  for (let i = 0; i < block.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    block.writeInt32LE(x | 0, i);
  }
  for (let off = 0; off < size; off += MiB) {
    block[0] = off / MiB;
    await fh.write(block, 0, Math.min(MiB, size - off), off);
  }
  await fh.close();
}

type ServerDef = { name: string; cmd: (root: string, ip: string) => string[] };

const plinthCmd =
  (...extra: string[]) =>
  (root: string, ip: string) => [
    process.execPath,
    ...DAEMON_NODE_FLAGS,
    '--import',
    'tsx',
    path.join(repo, 'test/e2e/tftp-run.ts'),
    '--root',
    root,
    '--address',
    ip,
    '--port',
    '69',
    ...extra,
  ];

const allServers: ServerDef[] = [
  { name: 'plinth', cmd: plinthCmd() },
  // Busy polling off: what the poll costs (CPU per MiB) and what it buys.
  { name: 'plinth-nopoll', cmd: plinthCmd('--busy-poll-us', '0') },
  { name: 'tftpd-hpa', cmd: (root, ip) => ['/usr/sbin/in.tftpd', '-L', '-s', '-u', 'root', '-a', `${ip}:69`, root] },
  {
    name: 'dnsmasq',
    cmd: (root, ip) => [
      '/usr/sbin/dnsmasq',
      '--keep-in-foreground',
      '--conf-file=/dev/null',
      '--port=0',
      '--enable-tftp',
      `--tftp-root=${root}`,
      `--listen-address=${ip}`,
      '--bind-interfaces',
      '--tftp-max=100',
      '--user=root',
      '--pid-file=',
      '--log-facility=-',
    ],
  },
  {
    name: 'atftpd',
    cmd: (root, ip) => [
      atftpdPath(),
      '--daemon',
      '--no-fork',
      '--user',
      'root.root',
      '--bind-address',
      ip,
      '--port',
      '69',
      '--logfile',
      '/dev/null',
      '--maxthread',
      '100',
      root,
    ],
  },
];
const servers = allServers.filter((s) => values.servers.split(',').includes(s.name));

type Case = { file: string; size: number; clients: number; blksize: number; windowsize: number };

function cases(): Case[] {
  const out: Case[] = [];
  for (const [file, size, clients] of [
    ['f64', 64 * MiB, 1],
    ['f30', 30 * MiB, 16],
  ] as const) {
    for (const blksize of values.quick ? [1468] : [512, 1468]) {
      for (const windowsize of [1, 16]) out.push({ file, size, clients, blksize, windowsize });
    }
  }
  return out.filter((c) => (values.only ?? '').split(',').every((part) => label(c).includes(part)));
}

const label = (c: Case) =>
  `${c.clients === 1 ? '1 client ' : `${c.clients} clients`} ${c.size / MiB} MiB blksize ${String(c.blksize).padEnd(4)} window ${String(c.windowsize).padEnd(2)}`;

async function runCase(ns: { cli: string }, srvIp: string, c: Case, outDir: string): Promise<number> {
  const started = performance.now();
  const runs = await Promise.all(
    Array.from({ length: c.clients }, (_, i) =>
      runIn(
        ns.cli,
        [
          ...RT,
          'atftp',
          '--option',
          `blksize ${c.blksize}`,
          '--option',
          `windowsize ${c.windowsize}`,
          '--option',
          'tsize 0',
          '-g',
          '-r',
          c.file,
          '-l',
          path.join(outDir, `out-${i}`),
          srvIp,
          '69',
        ],
        { cpus: CLIENT_CPUS, limitMs: 300_000 },
      ),
    ),
  );
  const seconds = (performance.now() - started) / 1000;
  const { statSync } = await import('node:fs');
  for (let i = 0; i < runs.length; i++) {
    const got = statSync(path.join(outDir, `out-${i}`), { throwIfNoEntry: false })?.size;
    if (runs[i].code !== 0 || got !== c.size) {
      throw new Error(
        `client ${i}: exit ${runs[i].code ?? runs[i].signal} size ${got}/${c.size}: ${runs[i].stderr.slice(-300)}`,
      );
    }
  }
  return (c.size * c.clients) / MiB / seconds;
}

/** True once something listens on UDP `ip`:69 inside `ns`. */
function listeningOn(ns: string, ip: string): boolean {
  try {
    const out = execFileSync('ip', ['netns', 'exec', ns, 'ss', '-Huln', `src ${ip} and sport = :69`], {
      encoding: 'utf8',
    });
    return out.trim().length > 0;
  } catch {
    return false;
  }
}

/**
 * CPU time of a server process in ms, its reaped children included (in.tftpd forks per transfer): utime, stime,
 * cutime, cstime of /proc/PID/stat. Printed per MiB next to the throughput, because the servers do not spend the
 * same CPU to get it (Plinth busy-polls for fast clients: see --tftp-busy-poll-us).
 */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14-17 of proc(5); f[0] is field 3.
    const ticks = [11, 12, 13, 14].reduce((a, i) => a + Number(f[i]), 0);
    return (ticks * 1000) / CLK_TCK;
  } catch {
    return Number.NaN;
  }
}
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

const median = (xs: number[]) => {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 === 1 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root: it creates network namespaces');
  const work = await mkdtemp(path.join(tmpdir(), 'tftpbench-'));
  await chmod(work, 0o755);
  const root = path.join(work, 'root');
  const outDir = path.join('/dev/shm', path.basename(work));
  await mkdir(root);
  await mkdir(outDir, { recursive: true });
  await makeFile(path.join(root, 'f64'), 64 * MiB);
  await makeFile(path.join(root, 'f30'), 30 * MiB);
  const ns = createNetns(values.ns, 5);
  if (values['no-gso']) {
    for (const [n, dev] of [
      [ns.srv, 'pt5s'],
      [ns.cli, 'pt5c'],
    ])
      execFileSync('ip', ['netns', 'exec', n, 'ethtool', '-K', dev, 'gso', 'off', 'tso', 'off']);
  }
  // One address per server on the server side of the veth pair (10.99.5.11, .12, ...): all listen on port 69 at once.
  const ipOf = new Map(servers.map((s, i) => [s.name, `10.99.5.${11 + i}`]));
  for (const a of ipOf.values()) execFileSync('ip', ['-n', ns.srv, 'addr', 'add', `${a}/24`, 'dev', 'pt5s']);
  const running = new Map<string, Awaited<ReturnType<typeof startServer>>>();
  const outputs: string[] = [];
  // Per case: each server's figures, and the per-round ratio against atftpd.
  const results = new Map<
    string,
    { figures: Map<string, number[]>; ratios: Map<string, number[]>; cpu: Map<string, number[]> }
  >();
  const up = async (s: ServerDef) => {
    const ip = ipOf.get(s.name)!;
    const started = await startServer(ns.srv, [...RT, ...s.cmd(root, ip)], () => listeningOn(ns.srv, ip), {
      cpus: SERVER_CPU,
      cwd: repo,
      // Node and tsx start slowly on a loaded machine.
      limitMs: 60_000,
    });
    running.set(s.name, started);
    // Warm-up (JIT, page cache, thread pools), the same for every server; not measured.
    await runCase(ns, ip, { file: 'f30', size: 30 * MiB, clients: 2, blksize: 1468, windowsize: 16 }, outDir);
  };
  const down = async (s: ServerDef) => {
    const r = running.get(s.name);
    running.delete(s.name);
    await r?.stop();
    if (r) outputs.push(r.output());
  };
  // `ip netns exec` and taskset exec the server: the child's PID is the server's.
  const pidOf = (name: string) => running.get(name)?.child.pid;
  try {
    const gso = values['no-gso'] ? 'GSO/TSO off on the veth' : 'GSO on (veth default)';
    const mode = `${values['one-up'] ? 'one server up at a time' : 'all servers up'}${values.rt ? ', SCHED_RR' : ''}`;
    console.log(
      `cpus: ${ncpu}, servers on ${SERVER_CPU}, clients on ${CLIENT_CPUS}, ${mode}, ${gso}, ${RUNS} round(s) per case`,
    );
    if (!values['one-up']) for (const s of servers) await up(s);
    for (const c of cases()) {
      const row = {
        figures: new Map<string, number[]>(),
        ratios: new Map<string, number[]>(),
        cpu: new Map<string, number[]>(),
      };
      results.set(label(c), row);
      for (let r = 0; r < RUNS; r++) {
        // Rotate the order each round: no server always runs right after another one.
        const order = servers.map((_, i) => servers[(i + r) % servers.length]);
        const round = new Map<string, number>();
        for (const s of order) {
          if (values['one-up']) await up(s);
          for (let failures = 0; ; ) {
            try {
              const cpu0 = cpuMs(pidOf(s.name));
              round.set(s.name, await runCase(ns, ipOf.get(s.name)!, c, outDir));
              const perMiB = (cpuMs(pidOf(s.name)) - cpu0) / ((c.size * c.clients) / MiB);
              if (!row.cpu.has(s.name)) row.cpu.set(s.name, []);
              row.cpu.get(s.name)!.push(perMiB);
              break;
            } catch (err) {
              // This machine is shared: a run can be disturbed (a client killed from outside). Retry, but not forever.
              if (++failures > 2) throw err;
              console.log(`${s.name}: ${label(c)}: run failed, retrying: ${String(err).slice(0, 200)}`);
            }
          }
          if (values['one-up']) await down(s);
        }
        const ref = round.get('atftpd');
        for (const [name, v] of round) {
          if (!row.figures.has(name)) row.figures.set(name, []);
          row.figures.get(name)!.push(v);
          if (ref !== undefined) {
            if (!row.ratios.has(name)) row.ratios.set(name, []);
            row.ratios.get(name)!.push(v / ref);
          }
        }
      }
      for (const s of servers) {
        const f = row.figures.get(s.name)!;
        const q = row.ratios.get(s.name);
        const cpu = median(row.cpu.get(s.name) ?? [Number.NaN]);
        console.log(
          `${s.name.padEnd(13)} ${label(c)}  ${median(f).toFixed(1).padStart(6)} MiB/s  [${f.map((x) => x.toFixed(1)).join(' ')}]${q ? `  ratio ${median(q).toFixed(2)}x [${q.map((x) => x.toFixed(2)).join(' ')}]` : ''}  cpu ${cpu.toFixed(1)} ms/MiB  load ${loadavg()[0].toFixed(1)}`,
        );
      }
    }
  } finally {
    for (const s of servers) await down(s);
    // Plinth prints its counters when stopped: retransmissions explain a slow figure.
    const stats = outputs.flatMap((o) => o.split('\n')).filter((l) => l.startsWith('STATS '));
    for (const line of stats) console.log(line);
    deleteNetns(ns);
    await rm(work, { recursive: true, force: true });
    await rm(outDir, { recursive: true, force: true });
  }
  console.log('\nMiB/s, median of the runs (ratio vs atftpd: median of the per-round ratios)');
  const names = servers.map((s) => s.name);
  console.log(`${'case'.padEnd(44)}${names.map((n) => n.padStart(16)).join('')}`);
  for (const [caseLabel, row] of results) {
    const cells = names.map((n) => {
      const f = row.figures.get(n);
      if (f === undefined) return '-'.padStart(16);
      const q = row.ratios.get(n);
      return `${median(f).toFixed(1)}${q ? ` (${median(q).toFixed(2)}x)` : ''}`.padStart(16);
    });
    console.log(`${caseLabel.padEnd(44)}${cells.join('')}`);
  }
  console.log('\nServer CPU time (its threads and reaped children), ms per MiB delivered, median of the runs');
  console.log(`${'case'.padEnd(44)}${names.map((n) => n.padStart(16)).join('')}`);
  for (const [caseLabel, row] of results) {
    const cells = names.map((n) => {
      const c = row.cpu.get(n);
      return (c === undefined ? '-' : median(c).toFixed(1)).padStart(16);
    });
    console.log(`${caseLabel.padEnd(44)}${cells.join('')}`);
  }
}

await main();
