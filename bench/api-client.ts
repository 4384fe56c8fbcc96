/**
 * The client side of `npm run bench:api`, run by bench/api.ts inside the client namespace (pinned to its own core):
 * seeds the inventory through the API, then drives wrk (else autocannon) against Plinth and nginx and prints the
 * tables. Args: PLINTH_BASE NGINX_BASE TOKEN DAEMON_PID. The daemon's CPU time (utime + stime of DAEMON_PID, all
 * its threads) per request answered, and per list, is the figure that predicts a quiet core: req/s and ms on a
 * machine other work shares are not. BENCH_ONLY=api skips the downloads (no nginx needed); machines already in the
 * data directory (a rerun) are not seeded again.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const [base, nginx, token, pidS] = process.argv.slice(2) as [string, string, string, string];
const daemonPid = Number(pidS);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const MACHINES = Number(process.env.BENCH_MACHINES ?? 10_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const ROOT = path.resolve(import.meta.dirname, '..');
const auth = { authorization: `Bearer ${token}` };
const hasWrk = spawnSync('wrk', ['--version']).error === undefined;

type Load = { rps: number; mibps: number; p99ms: number; errors: number; requests: number };

const UNITS: Record<string, number> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };
const ms = (v: string, u: string) => Number(v) * ({ us: 0.001, ms: 1, s: 1000, m: 60_000 }[u] ?? 1);

/** One load phase: `conns` connections for SECONDS on one URL; wrk when installed (it costs the client less). */
function load(url: string, conns: number, headers: Record<string, string> = {}): Load {
  const h = Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
  const limit = (SECONDS + 30) * 1000;
  if (hasWrk) {
    const r = spawnSync('wrk', ['-t1', `-c${conns}`, `-d${SECONDS}s`, '--timeout', '30s', '--latency', ...h, url], {
      encoding: 'utf8',
      timeout: limit,
    });
    const out = r.stdout ?? '';
    const num = (re: RegExp) => re.exec(out);
    const rps = Number(num(/Requests\/sec:\s+([\d.]+)/)?.[1] ?? Number.NaN);
    const requests = Number(num(/(\d+) requests in/)?.[1] ?? Number.NaN);
    const t = num(/Transfer\/sec:\s+([\d.]+)(\w+)/);
    const p99 = num(/\s99%\s+([\d.]+)(\w+)/);
    const sock = num(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
    const non2 = Number(num(/Non-2xx or 3xx responses: (\d+)/)?.[1] ?? 0);
    const errors = non2 + (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
    return {
      rps,
      mibps: t ? (Number(t[1]) * (UNITS[t[2]!] ?? 1)) / 1024 ** 2 : Number.NaN,
      p99ms: p99 ? ms(p99[1]!, p99[2]!) : Number.NaN,
      errors,
      requests,
    };
  }
  const r = spawnSync(
    process.execPath,
    [
      path.join(ROOT, 'node_modules/autocannon/autocannon.js'),
      '-j',
      '-c',
      String(conns),
      '-d',
      String(SECONDS),
      ...h,
      url,
    ],
    { encoding: 'utf8', timeout: limit, maxBuffer: 16 * 1024 * 1024 },
  );
  const j = JSON.parse(r.stdout);
  return {
    rps: j.requests.average,
    mibps: j.throughput.average / 1024 ** 2,
    p99ms: j.latency.p99,
    errors: j.non2xx + j.errors + j.timeouts,
    requests: j.requests.total,
  };
}

async function waitUp(url: string) {
  for (let i = 0; i < 150; i++) {
    try {
      if ((await fetch(url, { method: 'HEAD' })).status === 200) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not come up`);
}

/** 20 bootenvs and MACHINES machines through POST, as operators would; returns the uuids. */
async function seed(): Promise<string[]> {
  const h = { ...auth, 'content-type': 'application/json' };
  // A data directory seeded by an earlier run (a rerun with the same --data-dir): its machines as they are.
  const have = await fetch(`${base}/api/v1/machines?limit=${MACHINES}`, { headers: auth });
  const existing = (await have.json()) as { uuid: string }[];
  if (existing.length >= MACHINES) {
    console.log(`${existing.length} machines already there: not seeded again`);
    return existing.map((m) => m.uuid);
  }
  for (let b = 0; b < 20; b++) {
    await fetch(`${base}/api/v1/bootenvs`, { method: 'POST', headers: h, body: JSON.stringify({ name: `env-${b}` }) });
  }
  const t0 = Date.now();
  const uuids: string[] = [];
  let next = 0;
  const hex = (n: number) => (n & 255).toString(16).padStart(2, '0');
  const seeder = async () => {
    while (next < MACHINES) {
      const i = next++;
      const r = await fetch(`${base}/api/v1/machines`, {
        method: 'POST',
        headers: h,
        body: JSON.stringify({
          name: `node-${i}`,
          macs: [`02:00:00:${hex(i >> 16)}:${hex(i >> 8)}:${hex(i)}`],
          bootEnv: `env-${i % 20}`,
          arch: i % 4 === 0 ? 'arm64' : 'amd64',
          params: { rack: `r${i % 40}`, 'ntp/servers': ['10.0.0.1', '10.0.0.2'] },
        }),
      });
      if (r.status !== 201) throw new Error(`seed failed: ${r.status} ${await r.text()}`);
      uuids.push(((await r.json()) as { uuid: string }).uuid);
    }
  };
  await Promise.all(Array.from({ length: 32 }, seeder));
  const s = (Date.now() - t0) / 1000;
  console.log(`seeded ${MACHINES} machines through POST in ${s.toFixed(1)} s (${Math.round(MACHINES / s)} creates/s)`);
  return uuids;
}

function table(rows: string[][]) {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(w[i]!)).join('  '));
}

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

/** 64 MiB downloads, Plinth and nginx alternating (the order flips each round), ROUNDS rounds per count. */
function files() {
  const rows = [
    ['connections', 'nginx MiB/s', 'plinth MiB/s', 'ratio (median of rounds)', 'errors', 'p99 nginx / plinth'],
  ];
  for (const conns of [1, 4, 16]) {
    const ng: Load[] = [];
    const pl: Load[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      // The two run one after the other, nginx first in even rounds and Plinth first in odd ones.
      const runNginx = () => load(`${nginx}/bench/big.img`, conns);
      const runPlinth = () => load(`${base}/files/bench/big.img`, conns);
      if (r % 2 === 0) {
        ng.push(runNginx());
        pl.push(runPlinth());
      } else {
        pl.push(runPlinth());
        ng.push(runNginx());
      }
    }
    const ratios = pl.map((p, i) => p.mibps / ng[i]!.mibps);
    rows.push([
      String(conns),
      median(ng.map((l) => l.mibps)).toFixed(0),
      median(pl.map((l) => l.mibps)).toFixed(0),
      `${median(ratios).toFixed(2)} (${ratios.map((x) => x.toFixed(2)).join(' ')})`,
      String([...ng, ...pl].reduce((a, l) => a + l.errors, 0)),
      `${median(ng.map((l) => l.p99ms)).toFixed(0)} / ${median(pl.map((l) => l.p99ms)).toFixed(0)} ms`,
    ]);
  }
  console.log(
    `\n64 MiB download over a veth (servers on core 0, ${hasWrk ? 'wrk' : 'autocannon'} on core 1, ${SECONDS} s each)`,
  );
  table(rows);
}

/** One request at a time, `n` times: until the last byte of the list is in, p50 and max; the items it held. */
async function timed(url: string, n: number) {
  const t: number[] = [];
  let last = Buffer.alloc(0);
  const c0 = cpuSeconds(daemonPid);
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    // A keep-alive connection the server just closed (its 5 s idle timeout after the load phase): once more.
    const r = await fetch(url, { headers: auth }).catch(() => fetch(url, { headers: auth }));
    last = Buffer.from(await r.arrayBuffer());
    t.push(performance.now() - t0);
  }
  // The daemon's CPU per list (what a quiet core needs for it), apart from the wait for a loaded machine's cores.
  const cpuMs = ((cpuSeconds(daemonPid) - c0) * 1000) / n;
  t.sort((a, b) => a - b);
  const items = JSON.parse(last.toString()) as unknown;
  return { p50: t[Math.floor(n / 2)]!, max: t[n - 1]!, count: Array.isArray(items) ? items.length : -1, cpuMs };
}

/** The daemon's CPU time (user + system, all its threads) from /proc: the same PID namespace as the server's. */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function api(uuids: string[]) {
  const one = `${base}/api/v1/machines/${uuids[Math.floor(uuids.length / 2)]}`;
  const rows = [['request (16 connections)', 'req/s', 'p99', 'errors', 'daemon CPU/request', 'req/s per core']];
  for (const [title, url] of [
    ['GET /api/v1/machines/:uuid', one],
    ['GET /api/v1/machines/:name', `${base}/api/v1/machines/node-${Math.floor(MACHINES / 3)}`],
  ] as const) {
    const c0 = cpuSeconds(daemonPid);
    const l = load(url, 16, auth);
    // What one core can carry whatever else runs on it: the daemon's own CPU time per request answered.
    const us = ((cpuSeconds(daemonPid) - c0) * 1e6) / l.requests;
    rows.push([
      title,
      l.rps.toFixed(0),
      `${l.p99ms.toFixed(1)} ms`,
      String(l.errors),
      `${us.toFixed(0)} us`,
      (1e6 / us).toFixed(0),
    ]);
  }
  console.log(`\nAPI with its bearer token, request logging on (daemon on core 0, ${SECONDS} s each)`);
  table(rows);
  const lrows = [['list (one request at a time, 20 times)', 'items', 'p50', 'max', 'daemon CPU/list']];
  for (const [title, q] of [
    ['?arch=arm64 (a quarter of the machines)', 'arch=arm64'],
    ['?bootEnv=env-7', 'bootEnv=env-7'],
    ['?bootEnv=env-7&limit=50', 'bootEnv=env-7&limit=50'],
  ] as const) {
    const t = await timed(`${base}/api/v1/machines?${q}`, 20);
    lrows.push([
      title,
      String(t.count),
      `${t.p50.toFixed(1)} ms`,
      `${t.max.toFixed(1)} ms`,
      `${t.cpuMs.toFixed(1)} ms`,
    ]);
  }
  console.log(`\nfiltered lists over ${MACHINES} machines`);
  table(lrows);
}

// BENCH_ONLY=api: the API figures alone (no nginx needed), for a quick run against a daemon on loopback.
const only = process.env.BENCH_ONLY;
await waitUp(`${base}/api/v1/info`);
if (only !== 'api') await waitUp(`${nginx}/bench/big.img`);
const uuids = await seed();
if (only !== 'api') files();
await api(uuids);
console.log('\n(other work may have been running on this machine: compare the ratios, not the absolute figures)');
