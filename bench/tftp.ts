/**
 * TFTP throughput: Plinth vs tftpd-hpa, dnsmasq and atftpd, side by side in one run (`npm run bench:tftp`, as root).
 *
 * Servers run one at a time in namespace plinth-bench-srv, pinned to CPU 0; atftp clients run in plinth-bench-cli,
 * pinned to the other CPUs (unpinned lock-step figures are bimodal). Cases: a 64 MiB file to one client and a 30 MiB
 * file to 16 concurrent clients, blksize 512 and 1468, windowsize 1 and 16 (servers that do not speak RFC 7440 fall
 * back to lock-step). Prints MiB/s (median of --runs) and the ratio against atftpd.
 *
 * Needs: iproute2, util-linux (taskset), atftp, tftpd-hpa, dnsmasq, and atftpd unpacked under .lab/atftpd (done here
 * with `apt-get download atftpd` + `dpkg -x` if missing, because the atftpd package conflicts with tftpd-hpa).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createNetns, deleteNetns, runIn, startServer, udpListening } from '../test/e2e/tftp-netns.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '1' },
    servers: { type: 'string', default: 'plinth,tftpd-hpa,dnsmasq,atftpd' },
    quick: { type: 'boolean', default: false },
    /** Substring filter on the case label, e.g. "1 client" or "window 16". */
    only: { type: 'string', default: '' },
  },
});
const RUNS = Math.max(1, Math.min(9, Number(values.runs)));
const MiB = 1024 * 1024;
const repo = path.resolve(import.meta.dirname, '..');
const ncpu = cpus().length;
const SERVER_CPU = '0';
const CLIENT_CPUS = ncpu > 1 ? `1-${ncpu - 1}` : '0';

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

const allServers: ServerDef[] = [
  {
    name: 'plinth',
    cmd: (root, ip) => [
      process.execPath,
      '--import',
      'tsx',
      path.join(repo, 'test/e2e/tftp-run.ts'),
      '--root',
      root,
      '--address',
      ip,
      '--port',
      '69',
    ],
  },
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
  return out.filter((c) => label(c).includes(values.only ?? ''));
}

const label = (c: Case) =>
  `${c.clients === 1 ? '1 client ' : `${c.clients} clients`} ${c.size / MiB} MiB blksize ${String(c.blksize).padEnd(4)} window ${String(c.windowsize).padEnd(2)}`;

async function runCase(ns: { cli: string; srvIp: string }, c: Case, outDir: string): Promise<number> {
  const started = performance.now();
  const runs = await Promise.all(
    Array.from({ length: c.clients }, (_, i) =>
      runIn(
        ns.cli,
        [
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
          ns.srvIp,
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
  const ns = createNetns('plinth-bench', 5);
  const results = new Map<string, Map<string, number>>();
  try {
    console.log(`cpus: ${ncpu}, server on ${SERVER_CPU}, clients on ${CLIENT_CPUS}, median of ${RUNS} run(s)`);
    // Case by case, every server in turn: on a shared machine the load drifts, so the figures compared side by side
    // are taken minutes apart at most, not a whole run apart.
    for (const c of cases()) {
      for (const s of servers) {
        const srv = await startServer(ns.srv, s.cmd(root, ns.srvIp), () => udpListening(ns.srv, 69), {
          cpus: SERVER_CPU,
          cwd: repo,
        });
        try {
          // Warm-up (JIT, page cache, thread pools), the same for every server; not measured.
          await runCase(ns, { file: 'f30', size: 30 * MiB, clients: 2, blksize: 1468, windowsize: 16 }, outDir);
          const figures: number[] = [];
          for (let r = 0, failures = 0; r < RUNS; ) {
            try {
              figures.push(await runCase(ns, c, outDir));
              r++;
            } catch (err) {
              // This machine is shared: a run can be disturbed (a client killed from outside). Retry, but not forever.
              if (++failures > 2) throw err;
              console.log(`${s.name}: ${label(c)}: run failed, retrying: ${String(err).slice(0, 200)}`);
            }
          }
          figures.sort((a, b) => a - b);
          const mibs = figures[Math.floor(figures.length / 2)];
          if (!results.has(label(c))) results.set(label(c), new Map());
          results.get(label(c))!.set(s.name, mibs);
          console.log(
            `${s.name.padEnd(10)} ${label(c)}  ${mibs.toFixed(1).padStart(6)} MiB/s  [${figures.map((f) => f.toFixed(1)).join(' ')}]  load ${loadavg()[0].toFixed(1)}`,
          );
        } finally {
          await srv.stop();
        }
      }
    }
  } finally {
    deleteNetns(ns);
    await rm(work, { recursive: true, force: true });
    await rm(outDir, { recursive: true, force: true });
  }
  console.log('\nMiB/s (ratio vs atftpd)');
  const names = servers.map((s) => s.name);
  console.log(`${'case'.padEnd(44)}${names.map((n) => n.padStart(16)).join('')}`);
  for (const [caseLabel, row] of results) {
    const ref = row.get('atftpd');
    const cells = names.map((n) => {
      const v = row.get(n);
      if (v === undefined) return '-'.padStart(16);
      return `${v.toFixed(1)}${ref ? ` (${(v / ref).toFixed(2)}x)` : ''}`.padStart(16);
    });
    console.log(`${caseLabel.padEnd(44)}${cells.join('')}`);
  }
}

await main();
