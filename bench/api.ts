/**
 * npm run bench:api — API and file-serving figures, side by side with nginx in the same run.
 *
 * The daemon runs pinned to core 0, the load generators (autocannon in this process, curl) to core 1, so
 * "req/s on one core" means what it says. Prints req/s and p99 for a single-object GET and filtered lists over
 * 10,000 machines, and 64 MiB download throughput from Plinth's /files and from nginx (sendfile) with the ratio.
 * Bounded: each load phase runs a fixed number of seconds; everything it starts is stopped by PID at the end.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { freePort, waitHttp } from '../test/helpers/proc.js';
import { nginxCommand } from './nginx.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const MACHINES = Number(process.env.BENCH_MACHINES ?? 10_000);
const DOWNLOADS = Number(process.env.BENCH_DOWNLOADS ?? 8);

const work = mkdtempSync(path.join(tmpdir(), 'plinth-bench-'));
chmodSync(work, 0o755);
const dataDir = path.join(work, 'data');
const children: number[] = [];
const cleanup = () => {
  for (const pid of children) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {}
  }
};
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

try {
  execFileSync('taskset', ['-p', '-c', '1', String(process.pid)], { stdio: 'ignore' });
} catch {
  console.warn('taskset failed: load generator not pinned');
}

async function main() {
  const port = await freePort();
  const token = 'bench-token-0123456789abcdefghij';
  const daemon = spawn(
    'taskset',
    [
      '-c',
      '0',
      process.execPath,
      '--import',
      'tsx',
      path.join(ROOT, 'src/main.ts'),
      '--no-dhcp',
      '--no-tftp',
      '--tls',
      'off',
      // Every simulated client shares one source address here; nginx has no per-address cap either.
      '--http-max-connections-per-client',
      '100000',
      '--http-address',
      '127.0.0.1',
      '--http-port',
      String(port),
      '--data-dir',
      dataDir,
    ],
    {
      cwd: ROOT,
      env: { ...process.env, PLINTH_ADMIN_TOKEN: token, PLINTH_LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'info' },
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  children.push(daemon.pid!);
  await waitHttp(port);
  const base = `http://127.0.0.1:${port}`;
  const h = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };

  // Seed through the API, as operators would: 20 bootenvs, 10,000 machines spread over them.
  for (let b = 0; b < 20; b++) {
    await fetch(`${base}/api/v1/bootenvs`, { method: 'POST', headers: h, body: JSON.stringify({ name: `env-${b}` }) });
  }
  const t0 = Date.now();
  const uuids: string[] = [];
  let next = 0;
  const seeder = async () => {
    while (next < MACHINES) {
      const i = next++;
      const r = await fetch(`${base}/api/v1/machines`, {
        method: 'POST',
        headers: h,
        body: JSON.stringify({
          name: `node-${i}`,
          macs: [
            `02:00:00:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
          ],
          bootEnv: `env-${i % 20}`,
          arch: i % 4 === 0 ? 'arm64' : 'amd64',
          params: { rack: `r${i % 40}`, 'ntp/servers': ['10.0.0.1', '10.0.0.2'] },
        }),
      });
      if (r.status !== 201) throw new Error(`seed failed: ${r.status} ${await r.text()}`);
      uuids.push(((await r.json()) as { uuid: string }).uuid);
    }
  };
  await Promise.all(Array.from({ length: 8 }, seeder));
  const seedS = (Date.now() - t0) / 1000;
  console.log(
    `seeded ${MACHINES} machines through POST in ${seedS.toFixed(1)} s (${Math.round(MACHINES / seedS)} creates/s, each durable)`,
  );

  const rows: string[][] = [];
  const load = async (title: string, paths: () => string) => {
    const result = await autocannon({
      url: base,
      connections: 32,
      duration: SECONDS,
      headers: { authorization: `Bearer ${token}` },
      requests: [{ setupRequest: (req: Record<string, unknown>) => ({ ...req, path: paths() }) }],
    });
    const non2xx = result.non2xx + result.errors;
    rows.push([title, Math.round(result.requests.average).toString(), `${result.latency.p99} ms`, String(non2xx)]);
  };
  let k = 0;
  await load('GET /api/v1/machines/:uuid', () => `/api/v1/machines/${uuids[k++ % uuids.length]}`);
  await load('GET /api/v1/machines/:name', () => `/api/v1/machines/node-${k++ % MACHINES}`);
  await load('GET /machines?bootEnv=env-N&limit=50', () => `/api/v1/machines?bootEnv=env-${k++ % 20}&limit=50`);
  await load(
    'GET /machines?arch=arm64&limit=100&offset=N',
    () => `/api/v1/machines?arch=arm64&limit=100&offset=${(k++ % 20) * 100}`,
  );
  console.log('\nAPI (daemon pinned to one core; autocannon, 32 connections, %d s each)', SECONDS);
  table([['request', 'req/s', 'p99', 'errors'], ...rows]);

  // 64 MiB download: Plinth /files vs nginx sendfile on the same file.
  const filesDir = path.join(dataDir, 'files', 'bench');
  mkdirSync(filesDir, { recursive: true });
  const big = path.join(filesDir, 'big.img');
  writeFileSync(big, randomBytes(64 * 1024 * 1024));
  const nginxPort = await freePort();
  chmodSync(dataDir, 0o755);
  chmodSync(path.join(dataDir, 'files'), 0o755);
  const [nginxBinName, ...nginxArgs] = nginxCommand(
    path.join(work, 'nginx'),
    `127.0.0.1:${nginxPort}`,
    path.join(dataDir, 'files'),
    64,
  );
  let nginxOk = false;
  const nginxBin = ['/usr/sbin/nginx', nginxBinName!].find((b) => spawnSync(b, ['-v']).status === 0);
  if (nginxBin) {
    const ng = spawn('taskset', ['-c', '0', nginxBin, ...nginxArgs], {
      stdio: 'ignore',
    });
    children.push(ng.pid!);
    for (let i = 0; i < 50 && !nginxOk; i++) {
      await new Promise((r) => setTimeout(r, 100));
      nginxOk =
        spawnSync('curl', ['-sf', '-o', '/dev/null', `http://127.0.0.1:${nginxPort}/bench/big.img`]).status === 0;
    }
  }
  const speed = (url: string) => {
    const s: number[] = [];
    for (let i = 0; i < DOWNLOADS; i++) {
      const r = spawnSync('curl', ['-s', '-o', '/dev/null', '-w', '%{speed_download}', url], { encoding: 'utf8' });
      s.push(Number(r.stdout) / (1024 * 1024));
    }
    s.sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)]!;
  };
  const plinth = speed(`${base}/files/bench/big.img`);
  const ref = nginxOk ? speed(`http://127.0.0.1:${nginxPort}/bench/big.img`) : Number.NaN;
  console.log(`\n64 MiB download over loopback (curl, median of ${DOWNLOADS}; servers pinned to core 0)`);
  table([
    ['server', 'MiB/s', 'ratio'],
    ['nginx (sendfile)', nginxOk ? ref.toFixed(0) : 'not installed (apt-get install nginx-light)', '1.00'],
    ['plinth /files', plinth.toFixed(0), nginxOk ? (plinth / ref).toFixed(2) : '-'],
  ]);
  const rss = readFileSync(`/proc/${daemon.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/);
  if (rss)
    console.log(`\nnote: the pinned process is taskset's exec of node; RSS ${Math.round(Number(rss[1]) / 1024)} MiB`);
}

function table(rows: string[][]) {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(w[i]!)).join('  '));
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => {
    cleanup();
    rmSync(work, { recursive: true, force: true });
  });
