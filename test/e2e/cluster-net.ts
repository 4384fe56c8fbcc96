/**
 * The cluster end-to-end test's world (cluster.test.ts): a throwaway PostgreSQL of its own, three Plinth daemons
 * as child processes each in a network namespace of its own, and the racks they serve. Every namespace is named
 * plinth-cl-*, created and deleted here only; every address is private and exists only inside these namespaces
 * (no route out). Processes are started here, tracked by PID and stopped by PID.
 *
 *   plinth-cl-bb: bridge br0, the backbone: daemon a 10.120.0.11, b .12, c .13 (API, peers, server id)
 *   plinth-cl-d{a,b,c}: the daemon; rack0 10.121.N.1 to its rack's relay; a and b also ha0 10.122.N.1 to the
 *     shared relay. Routes to their racks' client networks through the relays.
 *   plinth-cl-r{a,b,c}: the rack relay (IP forwarding): up0 10.121.N.2; br0 10.13N.0.1/16 with dhcrelay downstream
 *     (dhclient's namespace plinth-cl-c{a,b,c} on eth0, and tap0 for a QEMU VM); pf0 10.13N.1.1/24 to
 *     plinth-cl-p{a,b,c} (perfdhcp, eth0 10.13N.1.2, its giaddr). Rack N's subnet is 10.13N.0.0/16: both giaddrs.
 *   plinth-cl-rs: the shared relay: upa 10.122.1.2 (to a), upb 10.122.2.2 (to b), br0 10.140.0.1/24 with
 *     dhcrelay to both a and b; plinth-cl-cs has eth0..eth2 on it (the HA pair's dhclients).
 *
 * PostgreSQL runs in the host namespace; daemons reach it through its unix socket (a path, so every namespace
 * sees it), the test through 127.0.0.1.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { nsCurl } from '../../src/lab/api.js';
import { createNamespace, deleteNamespace, ipn, type NsProcess, sh, spawnIn } from '../../src/lab/netns.js';
// A veth between two namespaces with addresses (either side may be a bridge port instead).
import { addVeth as veth } from './dhcp-netns.js';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const TOKEN = 'e2e-cluster-admin-token-0123456789abcdef';
export const PREFIX = 'plinth-cl-';
export const RACKS = ['a', 'b', 'c'] as const;
export type Rack = (typeof RACKS)[number];
export const idx = (r: Rack) => RACKS.indexOf(r) + 1;
export const serverId = (r: Rack) => `cl-${r}`;
/** The daemon's backbone address: its API, its DHCP server identifier, what peers reach it at. */
export const daemonAddr = (r: Rack) => `10.120.0.1${idx(r)}`;
export const rackSubnet = (r: Rack) => `10.13${idx(r)}.0.0/16`;
/** perfdhcp's address (its giaddr) in rack r. */
export const perfAddr = (r: Rack) => `10.13${idx(r)}.1.2`;
export const NS = {
  bb: `${PREFIX}bb`,
  d: (r: Rack) => `${PREFIX}d${r}`,
  r: (r: Rack) => `${PREFIX}r${r}`,
  c: (r: Rack) => `${PREFIX}c${r}`,
  p: (r: Rack) => `${PREFIX}p${r}`,
  rs: `${PREFIX}rs`,
  cs: `${PREFIX}cs`,
};
export const allNamespaces = () => [NS.bb, NS.rs, NS.cs, ...RACKS.flatMap((r) => [NS.d(r), NS.r(r), NS.c(r), NS.p(r)])];
export const api = (r: Rack) => nsCurl(NS.d(r), `http://${daemonAddr(r)}:8091`, TOKEN);

function own(name: string) {
  if (!name.startsWith(PREFIX)) throw new Error(`refusing namespace ${name}: not plinth-cl-*`);
  return name;
}
const sysctl = (ns: string, kv: string) => sh(['ip', 'netns', 'exec', ns, 'sysctl', '-qw', kv]);

function bridge(ns: string, cidr?: string) {
  ipn(ns, 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
  if (cidr) ipn(ns, 'addr', 'add', cidr, 'dev', 'br0');
  ipn(ns, 'link', 'set', 'br0', 'up');
}

/** The MAC of dhclient interface `i` in a rack: the same in every rack (overlapping clients). */
export const clientMac = (i: number) => `52:54:00:c1:00:0${i}`;
/** The QEMU VM's MAC (rack b). */
export const VM_MAC = '52:54:00:c1:0b:01';

export function buildTopology(): void {
  deleteTopology();
  for (const n of allNamespaces()) createNamespace(own(n));
  bridge(NS.bb);
  for (const r of RACKS) {
    const i = idx(r);
    const [d, rel, c, p] = [NS.d(r), NS.r(r), NS.c(r), NS.p(r)];
    veth({ ns: NS.bb, ifname: `bb-${r}`, bridge: 'br0' }, { ns: d, ifname: 'bb0', cidr: `${daemonAddr(r)}/24` });
    veth({ ns: d, ifname: 'rack0', cidr: `10.121.${i}.1/24` }, { ns: rel, ifname: 'up0', cidr: `10.121.${i}.2/24` });
    ipn(d, 'route', 'add', `10.13${i}.0.0/16`, 'via', `10.121.${i}.2`);
    sysctl(rel, 'net.ipv4.ip_forward=1');
    // /16: the rack's whole subnet is on this segment (its clients' addresses start at 10.13N.2.1).
    bridge(rel, `10.13${i}.0.1/16`);
    ipn(rel, 'route', 'add', 'default', 'via', `10.121.${i}.1`);
    for (const k of [0, 1])
      veth({ ns: rel, ifname: `c${k}`, bridge: 'br0' }, { ns: c, ifname: `eth${k}`, mac: clientMac(k) });
    ipn(rel, 'tuntap', 'add', 'dev', 'tap0', 'mode', 'tap');
    ipn(rel, 'link', 'set', 'tap0', 'master', 'br0', 'up');
    veth({ ns: rel, ifname: 'pf0', cidr: `10.13${i}.1.1/24` }, { ns: p, ifname: 'eth0', cidr: `${perfAddr(r)}/24` });
    ipn(p, 'route', 'add', 'default', 'via', `10.13${i}.1.1`);
  }
  // The shared relay, wired to a and b.
  const rs = NS.rs;
  sysctl(rs, 'net.ipv4.ip_forward=1');
  bridge(rs, '10.140.0.1/24');
  for (const [k, r] of [
    [1, 'a'],
    [2, 'b'],
  ] as const) {
    veth(
      { ns: NS.d(r), ifname: 'ha0', cidr: `10.122.${k}.1/24` },
      { ns: rs, ifname: `up${r}`, cidr: `10.122.${k}.2/24` },
    );
    ipn(NS.d(r), 'route', 'add', '10.140.0.0/24', 'via', `10.122.${k}.2`);
    ipn(rs, 'route', 'add', `${daemonAddr(r)}/32`, 'via', `10.122.${k}.1`);
  }
  for (const k of [0, 1, 2])
    veth({ ns: rs, ifname: `s${k}`, bridge: 'br0' }, { ns: NS.cs, ifname: `eth${k}`, mac: `52:54:00:5a:00:0${k}` });
}

export function deleteTopology(): void {
  const existing = new Set(
    sh(['ip', 'netns', 'list'])
      .split('\n')
      .map((l) => l.split(' ')[0]),
  );
  for (const n of allNamespaces()) if (existing.has(n)) deleteNamespace(own(n));
}

// --- PostgreSQL: a cluster of this test's own (it is restarted mid-run, so never one shared with other tests) ---

export const PG_DIR = '/tmp/plinth-pg-cluster-e2e';
export const PG_PORT = Number(process.env.PLINTH_E2E_CLUSTER_PG_PORT ?? 55466);
const PG_BIN =
  process.env.PG_BIN ??
  (() => {
    const v = readdirSync('/usr/lib/postgresql').sort((x, y) => Number(x) - Number(y));
    return `/usr/lib/postgresql/${v[v.length - 1]}/bin`;
  })();
/** What daemons use: the unix socket in the cluster's directory (visible from every namespace). */
export const STORE_URL = `postgres://postgres@localhost/postgres?host=${PG_DIR}&port=${PG_PORT}`;
/** What the test itself uses, in the host namespace. */
export const ADMIN_URL = `postgres://postgres@127.0.0.1:${PG_PORT}/postgres`;
const script = path.join(ROOT, 'scripts/pg-throwaway.sh');

export function pgStart(): void {
  pgStop();
  rmSync(PG_DIR, { recursive: true, force: true });
  execFileSync('bash', [script, 'start', PG_DIR, String(PG_PORT)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 120_000,
  });
}
export function pgStop(): void {
  try {
    execFileSync('bash', [script, 'stop', PG_DIR], { stdio: 'ignore', timeout: 60_000 });
  } catch {
    // not running
  }
}
/** `pg_ctl restart -m fast`: every connection is cut; resolves once the server accepts connections again. */
export function pgRestart(): Promise<void> {
  const args = ['-u', 'postgres', '--', `${PG_BIN}/pg_ctl`, '-D', PG_DIR, '-l', `${PG_DIR}/server.log`];
  return new Promise((res, rej) => {
    const p = spawn('runuser', [...args, '-m', 'fast', '-w', '-t', '60', 'restart'], { stdio: 'ignore' });
    const t = setTimeout(() => p.kill('SIGKILL'), 90_000);
    p.on('exit', (code) => {
      clearTimeout(t);
      code === 0 ? res() : rej(new Error(`pg_ctl restart: exit ${code}`));
    });
  });
}
export async function sql<T = Record<string, unknown>>(text: string, values: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: ADMIN_URL });
  await c.connect();
  try {
    return (await c.query(text, values)).rows as T[];
  } finally {
    await c.end();
  }
}

// --- The daemons ---

export type Daemon = { rack: Rack; proc: NsProcess; log: string[] };
const daemons = new Map<Rack, Daemon>();
export const daemon = (r: Rack) => daemons.get(r)!;

/** Daemon `r` in its namespace, on the shared store; resolves once its API answers (bounded). */
export async function startDaemon(r: Rack, work: string): Promise<Daemon> {
  const dir = path.join(work, r);
  mkdirSync(path.join(dir, 'assets'), { recursive: true });
  const ifaces = r === 'c' ? 'rack0' : 'rack0,ha0';
  const proc = spawnIn(
    NS.d(r),
    [
      process.execPath,
      '--import',
      'tsx',
      path.join(ROOT, 'src/main.ts'),
      '--data-dir',
      path.join(dir, 'data'),
      '--assets-dir',
      path.join(dir, 'assets'),
      '--store',
      STORE_URL,
      '--server-id',
      serverId(r),
      '--http-address',
      daemonAddr(r),
      '--advertise-address',
      daemonAddr(r),
      '--dhcp-interfaces',
      ifaces,
    ],
    { cwd: ROOT, env: { ...process.env, PLINTH_TLS: 'off', PLINTH_ADMIN_TOKEN: TOKEN, PLINTH_LOG_LEVEL: 'info' } },
  );
  const prev = daemons.get(r);
  const d: Daemon = { rack: r, proc, log: prev ? [...prev.log, prev.proc.output()] : [] };
  daemons.set(r, d);
  const until = Date.now() + 60_000;
  while (api(r).get('/api/v1/info').status !== 200) {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null)
      throw new Error(`daemon ${r} exited: ${proc.output().slice(-3000)}`);
    if (Date.now() > until) throw new Error(`daemon ${r} did not answer in 60 s: ${proc.output().slice(-3000)}`);
    await new Promise((res) => setTimeout(res, 300));
  }
  return d;
}

/** kill -9 of the daemon's process (ip netns exec execs node: the child's PID is the daemon's). */
export async function killDaemon(r: Rack): Promise<void> {
  const { child } = daemon(r).proc;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((res) => child.once('exit', () => res()));
  child.kill('SIGKILL');
  await gone;
}

export async function stopDaemons(): Promise<void> {
  await Promise.all([...daemons.values()].map((d) => d.proc.stop()));
}
export const daemonLog = (r: Rack) => [...(daemons.get(r)?.log ?? []), daemons.get(r)?.proc.output() ?? ''].join('\n');
