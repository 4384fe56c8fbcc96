/**
 * npm run bench:api — API and file-serving figures as machines reach them: over a veth between two network
 * namespaces, Plinth and nginx (sendfile, its best static-file configuration) side by side in the same run.
 *
 * plinth-bench-srv holds the servers, pinned to core 0 (Plinth with request logging on, to a file as a daemon's
 * log would go; nginx with one worker); plinth-bench-cli holds the load generator (wrk, else autocannon), pinned
 * to core 1, so "req/s on one core" means what it says. The client side (bench/api-client.ts) seeds 10,000
 * machines through the API, then prints: 64 MiB downloads at 1, 4 and 16 connections from Plinth's /files and
 * from nginx, alternating, with the ratio; a single `GET /api/v1/machines/:id` with its bearer token at 16
 * connections, with the daemon's CPU time per request (what one core carries, whatever else the machine runs);
 * and lists of the 10,000 machines filtered by a field, timed request by request.
 * Needs root, iproute2, taskset and nginx (apt-get install nginx-light); wrk if installed. Bounded: each load
 * phase runs BENCH_SECONDS; everything started is stopped by PID and the namespaces deleted at the end.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createNamespace, deleteNamespace, ipn, type NsProcess, spawnIn } from '../src/lab/netns.js';
import { DAEMON_NODE_FLAGS } from '../src/node-flags.js';
import { nginxCommand } from './nginx.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const SRV = 'plinth-bench-srv';
const CLI = 'plinth-bench-cli';
const SRV_IP = '10.79.1.1';
const TOKEN = 'bench-token-0123456789abcdefghij';
const work = mkdtempSync(path.join(tmpdir(), 'plinth-bench-'));
chmodSync(work, 0o755);
const dataDir = path.join(work, 'data');
const procs: NsProcess[] = [];
let daemon: ChildProcess | undefined;

function network() {
  createNamespace(SRV);
  createNamespace(CLI);
  ipn(SRV, 'link', 'add', 'v-cli', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', CLI);
  ipn(SRV, 'addr', 'add', `${SRV_IP}/24`, 'dev', 'v-cli');
  ipn(SRV, 'link', 'set', 'v-cli', 'up');
  ipn(CLI, 'addr', 'add', '10.79.1.2/24', 'dev', 'eth0');
  ipn(CLI, 'link', 'set', 'eth0', 'up');
}

function startDaemon(): ChildProcess {
  const log = openSync(path.join(work, 'plinth.log'), 'a');
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      SRV,
      'taskset',
      '-c',
      '0',
      process.execPath,
      ...DAEMON_NODE_FLAGS,
      // BENCH_NODE_FLAGS: extra node flags for the daemon (e.g. --cpu-prof --cpu-prof-dir=DIR: it stops with SIGTERM).
      ...(process.env.BENCH_NODE_FLAGS?.split(' ').filter(Boolean) ?? []),
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
      SRV_IP,
      '--http-port',
      '8091',
      '--data-dir',
      dataDir,
    ],
    {
      cwd: ROOT,
      env: { ...process.env, PLINTH_ADMIN_TOKEN: TOKEN, PLINTH_LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'info' },
      // Request logging on, written where a daemon's log goes (a file), not into this process.
      stdio: ['ignore', log, log],
    },
  );
  closeSync(log);
  return child;
}

async function main() {
  network();
  const files = path.join(dataDir, 'files');
  mkdirSync(path.join(files, 'bench'), { recursive: true });
  writeFileSync(path.join(files, 'bench', 'big.img'), randomBytes(64 * 1024 * 1024));
  for (const d of [dataDir, files, path.join(files, 'bench')]) chmodSync(d, 0o755);
  daemon = startDaemon();
  if (spawnSync('nginx', ['-v']).status !== 0) throw new Error('nginx is not installed: apt-get install nginx-light');
  procs.push(
    spawnIn(SRV, ['taskset', '-c', '0', ...nginxCommand(path.join(work, 'nginx'), `${SRV_IP}:8080`, files, 1024)]),
  );
  const client = spawnIn(
    CLI,
    [
      'taskset',
      '-c',
      '1',
      process.execPath,
      '--import',
      'tsx',
      path.join(ROOT, 'bench/api-client.ts'),
      `http://${SRV_IP}:8091`,
      `http://${SRV_IP}:8080`,
      TOKEN,
      // ip netns exec, taskset and node each exec the next: this PID ends up being the daemon's.
      String(daemon.pid),
    ],
    { cwd: ROOT },
  );
  procs.push(client);
  client.child.stdout!.pipe(process.stdout);
  const code = await new Promise<number | null>((r) => client.child.once('exit', (c) => r(c)));
  if (code !== 0) throw new Error(`bench client failed (${code}): ${client.output().slice(-3000)}`);
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(async () => {
    for (const p of procs) await p.stop();
    daemon?.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    deleteNamespace(CLI);
    deleteNamespace(SRV);
    rmSync(work, { recursive: true, force: true });
  });
