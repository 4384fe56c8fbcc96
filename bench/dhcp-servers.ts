/**
 * The servers `bench:dhcp` (bench/dhcp.ts) runs, one at a time, in the server namespace: Plinth (this checkout or
 * a baseline one), dnsmasq and kea-dhcp4; and the helpers that read a step's figures (CPU time from
 * /proc/PID/task/TID/schedstat, perfdhcp's per-exchange timestamps).
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { openSqliteStore } from '../src/store/sqlite.js';
import { type Proc, startIn } from '../test/e2e/dhcp-netns.js';

export type BenchContext = {
  /** The server namespace. */
  ns: string;
  tmp: string;
  /** This checkout (for bench/dhcp-probe.mjs). */
  root: string;
  pool: { start: string; end: string };
  pinServer: (cmd: string[]) => string[];
  /** --profile: a directory for node --cpu-prof. */
  profile?: string;
  /** --plinth-node-flags: extra node flags for Plinth's process (V8 heap settings, say). */
  nodeFlags: string[];
  /** --heap-profile: a directory for sampling heap profiles of the measured period, garbage included. */
  heapProfile?: string;
  probeFile: (step: number) => string;
};

export type Server = {
  name: string;
  start(step: number): Promise<Proc>;
  after?(proc: Proc, step: number, acked: string[]): Promise<string>;
};

/**
 * The node flags a checkout's daemon is started with: those of its `npm start` (src/node-flags.ts keeps them in
 * step), so a baseline checkout runs as it was launched in its day and this one as it is now.
 */
export function startFlags(checkout: string): string[] {
  const pkg = path.join(checkout, 'package.json');
  if (!existsSync(pkg)) return [];
  const start = (JSON.parse(readFileSync(pkg, 'utf8')) as { scripts?: { start?: string } }).scripts?.start ?? '';
  const words = start.split(/\s+/);
  const script = words.findIndex((w, i) => i > 0 && !w.startsWith('-'));
  return words.slice(1, script < 0 ? undefined : script).filter((w) => w !== '--enable-source-maps');
}

/**
 * Plinth from `checkout`. `durability`: the store's leaseDurability ('kernel': `plinth-kernel`, ACKs once the lease
 * is written to the kernel, the class of Kea's memfile and dnsmasq, which write their lease files without fsync).
 */
export function plinthServer(
  name: string,
  checkout: string,
  ctx: BenchContext,
  durability: 'disk' | 'kernel' = 'disk',
): Server {
  const { tmp, pool: POOL, pinServer, ns: SRV } = ctx;
  const launch = startFlags(checkout);
  return {
    name,
    async start(step) {
      const cfg = {
        store: path.join(tmp, `plinth-${step}.db`),
        ...(durability === 'kernel' ? { leaseDurability: durability } : {}),
        interfaces: ['b0'],
        logLevel: 'warn',
        subnets: [
          { name: 'bench', subnet: '10.98.0.0/16', activeStart: POOL.start, activeEnd: POOL.end, leaseTime: 3600 },
        ],
      };
      const file = path.join(tmp, `plinth-${step}.json`);
      writeFileSync(file, JSON.stringify(cfg));
      const prof = ctx.profile ? ['--cpu-prof', `--cpu-prof-dir=${ctx.profile}`] : [];
      // The event loop's delay and GC pauses over the measured period (bench/dhcp-probe.mjs, signalled in step()).
      const probe = ['--import', path.join(ctx.root, 'bench/dhcp-probe.mjs')];
      return startIn(
        SRV,
        [
          'env',
          `PLINTH_PROBE_OUT=${ctx.probeFile(step)}`,
          ...(ctx.heapProfile
            ? [`PLINTH_PROBE_HEAP=${path.join(ctx.heapProfile, `${name}-${step}.heapprofile`)}`]
            : []),
          ...pinServer([
            process.execPath,
            ...launch,
            ...ctx.nodeFlags,
            ...prof,
            ...probe,
            '--import',
            'tsx',
            path.join(checkout, 'test/e2e/dhcp-run.ts'),
            file,
          ]),
        ],
        (o) => o.includes('READY'),
        30_000,
      );
    },
    // kill -9 right after the run, then every address perfdhcp saw ACKed must be a bound lease in the store.
    async after(proc, step, acked) {
      if (ctx.profile) await proc.stop();
      else proc.child.kill('SIGKILL');
      await new Promise<void>((r) =>
        proc.child.exitCode !== null || proc.child.signalCode ? r() : proc.child.once('exit', () => r()),
      );
      // PLINTH_BENCH_SERVER_OUT=PREFIX: the server's output kept as PREFIX-NAME-STEP.txt (node --trace-gc-nvp, say).
      if (process.env.PLINTH_BENCH_SERVER_OUT)
        writeFileSync(`${process.env.PLINTH_BENCH_SERVER_OUT}-${name}-${step}.txt`, proc.out());
      // dhcp-run prints its counters, event-loop delay and CPU time at a clean exit.
      const exit = /\{"stats".*\}/.exec(proc.out())?.[0];
      if (exit) console.log(`    plinth exit: ${exit}`);
      const store = openSqliteStore(path.join(tmp, `plinth-${step}.db`));
      try {
        const bound = new Set(
          (await store.list('leases', { filters: [{ field: 'state', value: 'bound' }] })).items.map((i) => i.key),
        );
        const missing = acked.filter((a) => !bound.has(a));
        return missing.length === 0
          ? `durable ${acked.length}/${acked.length}`
          : `LOST ${missing.length} of ${acked.length}`;
      } finally {
        await store.close();
      }
    },
  };
}

export function dnsmasqServer(ctx: BenchContext): Server {
  const { tmp, pool: POOL, pinServer, ns: SRV } = ctx;
  return {
    name: 'dnsmasq',
    start: (step) =>
      startIn(
        SRV,
        pinServer([
          'dnsmasq',
          '-k',
          '--conf-file=/dev/null',
          '--port=0',
          '--interface=b0',
          '--bind-interfaces',
          '--no-ping',
          '--quiet-dhcp',
          '--dhcp-authoritative',
          '--dhcp-lease-max=60000',
          `--dhcp-range=${POOL.start},${POOL.end},255.255.0.0,1h`,
          `--dhcp-leasefile=${tmp}/dnsmasq-${step}.leases`,
          `--pid-file=${tmp}/dnsmasq.pid`,
          '--log-facility=-',
        ]),
        (o) => /DHCP, IP range/.test(o),
        10_000,
      ),
  };
}

/**
 * kea-dhcp4 with the memfile backend, its fastest (leases in memory, each change appended to a CSV file with
 * write(2); no fsync, so a lease survives kill -9 but not a power loss, where Plinth fsyncs every ACK).
 * `kea`: Kea 2.2's defaults (single-threaded). `kea-mt`: multi-threading as Kea's ARM recommends for DHCPv4 with
 * memfile (thread-pool-size 4, packet-queue-size 28), Kea 2.4's default; with the server pinned to one core it
 * gains little, unpinned it may use both.
 */
export function keaServer(name: string, mt: boolean, ctx: BenchContext): Server {
  const { tmp, pool: POOL, pinServer, ns: SRV } = ctx;
  return {
    name,
    start(step) {
      const cfg = {
        Dhcp4: {
          'interfaces-config': { interfaces: ['b0'], 'dhcp-socket-type': 'udp' },
          'lease-database': { type: 'memfile', persist: true, name: `${tmp}/kea-${step}.csv`, 'lfc-interval': 0 },
          ...(mt
            ? { 'multi-threading': { 'enable-multi-threading': true, 'thread-pool-size': 4, 'packet-queue-size': 28 } }
            : {}),
          'valid-lifetime': 3600,
          subnet4: [{ id: 1, subnet: '10.98.0.0/16', pools: [{ pool: `${POOL.start} - ${POOL.end}` }] }],
          loggers: [{ name: 'kea-dhcp4', output_options: [{ output: 'stdout' }], severity: 'INFO' }],
        },
      };
      const file = path.join(tmp, `kea-${step}.json`);
      writeFileSync(file, JSON.stringify(cfg));
      return startIn(
        SRV,
        ['env', `KEA_PIDFILE_DIR=${tmp}`, `KEA_LOCKFILE_DIR=${tmp}`, ...pinServer(['kea-dhcp4', '-c', file])],
        (o) => /DHCP4_STARTED/.test(o),
        15_000,
      );
    },
  };
}

/** CPU time in ns of every live thread of `pid`, and of its main thread (/proc/PID/task/TID/schedstat). */
export function cpuNs(pid: number | undefined): { all: number; main: number } {
  const none = { all: Number.NaN, main: Number.NaN };
  if (pid === undefined) return none;
  try {
    const of = (t: string) => Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    let all = 0;
    for (const t of readdirSync(`/proc/${pid}/task`)) all += of(t);
    return { all, main: of(String(pid)) };
  } catch {
    return none;
  }
}

export async function readWhenWritten(file: string, limitMs: number): Promise<string | undefined> {
  for (const end = Date.now() + limitMs; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) {
    try {
      const s = readFileSync(file, 'utf8');
      if (s.endsWith('\n')) return s.trim();
    } catch {}
  }
  return undefined;
}

export function p99(lines: string[]): number {
  const d = lines.map((l) => {
    const m = /sent \/ received: ([\d.]+) \/ ([\d.]+)/.exec(l)!;
    return (Number(m[2]) - Number(m[1])) * 1000;
  });
  d.sort((a, b) => a - b);
  return d.length ? d[Math.min(d.length - 1, Math.floor(d.length * 0.99))]! : Number.NaN;
}

export function section(out: string, title: string): string {
  const i = out.indexOf(title);
  if (i < 0) return '';
  const j = out.indexOf('***', i + title.length + 3);
  return out.slice(i, j < 0 ? undefined : j);
}
