/**
 * npm run bench:boot — a boot storm: 200 simulated machines each do a DHCP DORA (relayed), fetch their iPXE
 * script, then a 10 MiB kernel and a 30 MiB initrd over HTTP, against Plinth in a network namespace; then the
 * same downloads from nginx in the same namespace. Prints completion time, p99 per step, errors, and HTTP
 * throughput against nginx. Needs root (namespaces). Bounded: 300 s per phase; stops everything it started.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { nsCurl } from '../src/lab/api.js';
import { createNamespace, deleteNamespace, ipn, type NsProcess, spawnIn } from '../src/lab/netns.js';
import { DAEMON_NODE_FLAGS } from '../src/node-flags.js';
import { nginxCommand } from './nginx.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const SRV = 'plinth-bench-srv';
const CLI = 'plinth-bench-cli';
const COUNT = Number(process.env.BENCH_MACHINES ?? 200);
const CONC = Number(process.env.BENCH_CONCURRENCY ?? 50);
const TOKEN = 'bench-admin-token-0123456789abcdef';
const work = mkdtempSync(path.join(tmpdir(), 'plinth-bootbench-'));
chmodSync(work, 0o755);
const procs: NsProcess[] = [];

async function main() {
  createNamespace(SRV);
  createNamespace(CLI);
  // srv: br0 10.79.0.1/24 (the served segment) + veth to cli 10.79.1.1/24; cli relays from 10.80.0.1.
  ipn(SRV, 'link', 'add', 'br0', 'type', 'bridge');
  ipn(SRV, 'addr', 'add', '10.79.0.1/24', 'dev', 'br0');
  ipn(SRV, 'link', 'set', 'br0', 'up');
  ipn(SRV, 'link', 'add', 'v-cli', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', CLI);
  ipn(SRV, 'addr', 'add', '10.79.1.1/24', 'dev', 'v-cli');
  ipn(SRV, 'link', 'set', 'v-cli', 'up');
  ipn(CLI, 'addr', 'add', '10.79.1.2/24', 'dev', 'eth0');
  ipn(CLI, 'addr', 'add', '10.80.0.1/16', 'dev', 'eth0');
  ipn(CLI, 'link', 'set', 'eth0', 'up');
  ipn(CLI, 'route', 'add', '10.79.0.0/24', 'via', '10.79.1.1');
  ipn(SRV, 'route', 'add', '10.80.0.0/16', 'via', '10.79.1.2');

  const files = path.join(work, 'www');
  mkdirSync(path.join(files, 'lab'), { recursive: true });
  const kernel = randomBytes(10 * 1024 * 1024);
  const initrd = randomBytes(30 * 1024 * 1024);
  writeFileSync(path.join(files, 'lab/vmlinuz'), kernel);
  writeFileSync(path.join(files, 'lab/initrd.img'), initrd);
  chmodSync(files, 0o755);

  const plinth = spawnIn(
    SRV,
    [
      'taskset',
      '-c',
      '0',
      process.execPath,
      ...DAEMON_NODE_FLAGS,
      '--import',
      'tsx',
      path.join(ROOT, 'src/main.ts'),
      '--data-dir',
      path.join(work, 'data'),
      '--no-tftp',
      '--tls',
      'off',
      // Every simulated client shares one source address here; nginx has no per-address cap either.
      '--http-max-connections-per-client',
      '100000',
      '--dhcp-interfaces',
      'br0,v-cli',
    ],
    { cwd: ROOT, env: { ...process.env, PLINTH_ADMIN_TOKEN: TOKEN, PLINTH_LOG_LEVEL: 'warn' } },
  );
  procs.push(plinth);
  const api = nsCurl(SRV, 'http://10.79.0.1:8091', TOKEN);
  for (let i = 0; i < 100; i++) {
    try {
      if (api.get('/api/v1/info').status === 200) break;
    } catch {}
    await new Promise((r) => setTimeout(r, 200));
  }
  const ok = (r: { status: number; text: string }, what: string) => {
    if (r.status >= 300) throw new Error(`${what}: ${r.status} ${r.text}`);
  };
  ok(
    api.json('POST', '/api/v1/subnets', {
      name: 'storm',
      subnet: '10.80.0.0/16',
      activeStart: '10.80.1.1',
      activeEnd: '10.80.4.254',
      leaseTime: 3600,
    }),
    'subnet',
  );
  ok(api.upload(path.join(files, 'lab/vmlinuz'), 'lab/vmlinuz'), 'upload kernel');
  ok(api.upload(path.join(files, 'lab/initrd.img'), 'lab/initrd.img'), 'upload initrd');
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  ok(
    api.json('POST', '/api/v1/bootenvs', {
      name: 'storm',
      kernel: 'lab/vmlinuz',
      initrds: ['lab/initrd.img'],
      bootParams: 'console=ttyS0',
      artifacts: [
        { path: 'lab/vmlinuz', sha256: sha(kernel) },
        { path: 'lab/initrd.img', sha256: sha(initrd) },
      ],
    }),
    'bootenv',
  );
  ok(api.json('PATCH', '/api/v1/prefs', { unknownBootEnv: 'storm' }), 'prefs');

  let nginxUrl = '';
  try {
    execFileSync('nginx', ['-v'], { stdio: 'ignore' });
    procs.push(
      spawnIn(SRV, ['taskset', '-c', '0', ...nginxCommand(path.join(work, 'nginx'), '10.79.0.1:8080', files)]),
    );
    nginxUrl = 'http://10.79.0.1:8080';
    await new Promise((r) => setTimeout(r, 500));
  } catch {
    console.warn('nginx not installed (apt-get install nginx-light): no HTTP reference figure');
  }

  const client = spawnIn(
    CLI,
    [
      'taskset',
      '-c',
      '1',
      process.execPath,
      '--import',
      'tsx',
      path.join(ROOT, 'bench/boot-client.ts'),
      '10.79.0.1',
      '10.80.0.1',
      String(COUNT),
      String(CONC),
      nginxUrl,
    ],
    { cwd: ROOT },
  );
  procs.push(client);
  await new Promise<void>((r) => client.child.once('exit', () => r()));
  const line = client.output().trim().split('\n').pop() ?? '';
  let res: any;
  try {
    res = JSON.parse(line);
  } catch {
    throw new Error(`boot client failed: ${client.output().slice(-2000)}`);
  }
  console.log(
    `boot storm: ${res.machines} machines (DORA + iPXE script + 10 MiB kernel + 30 MiB initrd), ${CONC} at a time`,
  );
  console.log(`  completed in ${res.seconds.toFixed(1)} s, errors ${res.errors}`);
  if (res.started < res.machines)
    console.log(`  only ${res.started} of ${res.machines} machines started within the 300 s a phase may take`);
  console.log(
    `  p99 per step (ms): DORA ${res.p99ms.dora}, script ${res.p99ms.script}, kernel ${res.p99ms.kernel}, initrd ${res.p99ms.initrd}`,
  );
  console.log(`  storm HTTP throughput (DHCP and scripts in between): ${res.httpMiBps.toFixed(0)} MiB/s`);
  const pf = res.plinthFiles;
  const ng = res.nginx;
  console.log(
    '  the same downloads alone, 50 at a time (best of 2 runs each, alternating):\n' +
      `    plinth /files ${pf.MiBps.toFixed(0)} MiB/s, p99 kernel ${pf.p99ms.kernel} ms, initrd ${pf.p99ms.initrd} ms\n` +
      (ng
        ? `    nginx         ${ng.MiBps.toFixed(0)} MiB/s, p99 kernel ${ng.p99ms.kernel} ms, initrd ${ng.p99ms.initrd} ms\n` +
          `    ratio ${(pf.MiBps / ng.MiBps).toFixed(2)}`
        : '    (no nginx: apt-get install nginx-light)'),
  );
  if (res.downloadErrors) console.log(`  ${res.downloadErrors} errors in the downloads alone`);
  if (res.errorsSeen.length) console.log(`  errors by kind: ${res.errorsSeen.join('; ')}`);
  if (res.retried) console.log(`  (${res.retried} requests sent again after an idle keep-alive connection was closed)`);
  console.log('  (servers pinned to core 0, clients to core 1)');
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(async () => {
    for (const p of procs) await p.stop();
    deleteNamespace(CLI);
    deleteNamespace(SRV);
    rmSync(work, { recursive: true, force: true });
  });
