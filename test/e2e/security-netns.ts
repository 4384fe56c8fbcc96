/**
 * The security e2e suite's lab: a server namespace (Plinth on bridge br0, 10.97.0.1/24), a client namespace for
 * the attacker (eth0 10.97.0.2) and DHCP clients (eth1..eth3, no address), and an observer namespace (10.97.0.3:
 * the watchdog and the real TFTP/HTTP clients, a different host than the attacker so per-source limits on the
 * attacker never count against them). Addresses exist only inside the namespaces, with no route out. Every
 * process is started here, tracked by PID, bounded in time and killed by PID. Needs root, iproute2, util-linux.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { nsCurl } from '../../src/lab/api.js';
import { createNamespace, deleteNamespace, ipn, type NsProcess, sh, spawnIn } from '../../src/lab/netns.js';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const PREFIX = 'plinth-sec-';
export const SRV = 'plinth-sec-srv';
export const CLI = 'plinth-sec-cli';
export const OBS = 'plinth-sec-obs';
export const NAMES = [SRV, CLI, OBS];
export const SERVER_IP = '10.97.0.1';
export const ATTACKER_IP = '10.97.0.2';
export const OBSERVER_IP = '10.97.0.3';
export const HTTP_PORT = 8091;
export const BASE = `http://${SERVER_IP}:${HTTP_PORT}`;
/** The admin API: HTTPS (TLS is on by default), verified against the daemon's self-signed certificate. */
export const HTTPS_PORT = 8443;
export const API_BASE = `https://${SERVER_IP}:${HTTPS_PORT}`;
export const apiCert = (dataDir: string) => path.join(dataDir, 'tls', 'cert.pem');
/** MACs of the client namespace's DHCP interfaces eth1..eth3. */
export const CLIENT_MACS = ['52:54:00:97:00:01', '52:54:00:97:00:02', '52:54:00:97:00:03'];
/**
 * The daemon's descriptor limit, pinned so the floods mean the same on every host: the figures were
 * taken at 20,000 (a host with 1,048,576 would never reach exhaustion, and the suite would prove nothing about it).
 */
export const DAEMON_NOFILE = Math.min(20_000, nofileHard());

/** This process's hard descriptor limit: what prlimit may raise a child to without CAP_SYS_RESOURCE. */
export function nofileHard(): number {
  const m = /Max open files\s+\S+\s+(\S+)/.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m && m[1] !== 'unlimited' ? Number(m[1]) : 1 << 20;
}

function guard(name: string) {
  if (!name.startsWith(PREFIX)) throw new Error(`namespace ${name} is not this suite's (names start with ${PREFIX})`);
}

export function deleteLab(): void {
  for (const n of NAMES) {
    guard(n);
    deleteNamespace(n);
  }
}

/** Namespaces, bridge and veths; any leftovers with exactly these names (a crashed run) are replaced. */
export function createLab(): void {
  for (const n of NAMES) {
    guard(n);
    createNamespace(n);
  }
  ipn(SRV, 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
  ipn(SRV, 'addr', 'add', `${SERVER_IP}/24`, 'dev', 'br0');
  ipn(SRV, 'link', 'set', 'br0', 'up');
  const port = (peerNs: string, ifname: string, hostSide: string, opts: { mac?: string; cidr?: string }) => {
    ipn(SRV, 'link', 'add', hostSide, 'type', 'veth', 'peer', 'name', ifname, 'netns', peerNs);
    ipn(SRV, 'link', 'set', hostSide, 'master', 'br0', 'up');
    if (opts.mac) ipn(peerNs, 'link', 'set', ifname, 'address', opts.mac);
    if (opts.cidr) ipn(peerNs, 'addr', 'add', opts.cidr, 'dev', ifname);
    ipn(peerNs, 'link', 'set', ifname, 'up');
  };
  port(CLI, 'eth0', 'sc0', { cidr: `${ATTACKER_IP}/24` });
  for (const [i, mac] of CLIENT_MACS.entries()) port(CLI, `eth${i + 1}`, `sc${i + 1}`, { mac });
  port(OBS, 'eth0', 'so0', { cidr: `${OBSERVER_IP}/24` });
  // 20,000 half-open connections from one address need more source ports than the default 28,000 leave spare.
  sh(['ip', 'netns', 'exec', CLI, 'sysctl', '-q', '-w', 'net.ipv4.ip_local_port_range=10000 65000']);
}

export type Daemon = { proc: NsProcess; pid: number; alive: () => boolean; exit: () => string };

/** Plinth from src/main.ts in the server namespace (all services, default DHCP interface mode); waits for /info. */
export async function startDaemon(dataDir: string, assetsDir: string, token: string): Promise<Daemon> {
  const proc = spawnIn(
    SRV,
    [
      'prlimit',
      `--nofile=${DAEMON_NOFILE}:${DAEMON_NOFILE}`,
      process.execPath,
      '--import',
      'tsx',
      path.join(ROOT, 'src/main.ts'),
      '--data-dir',
      dataDir,
      '--assets-dir',
      assetsDir,
      '--bootenvs-dir',
      path.join(ROOT, 'bootenvs'),
      '--http-port',
      String(HTTP_PORT),
    ],
    { cwd: ROOT, env: { ...process.env, PLINTH_ADMIN_TOKEN: token, PLINTH_LOG_LEVEL: 'info' }, keepBytes: 2 << 20 },
  );
  const alive = () => proc.child.exitCode === null && proc.child.signalCode === null;
  const api = nsCurl(OBS, BASE, token); // /api/v1/info is public on the plain port
  for (let i = 0; i < 150 && alive() && api.get('/api/v1/info').status !== 200; i++)
    await new Promise((r) => setTimeout(r, 200));
  if (api.get('/api/v1/info').status !== 200) {
    await proc.stop('SIGKILL');
    throw new Error(`plinth did not answer /api/v1/info within 30 s:\n${proc.output().slice(-4000)}`);
  }
  return {
    proc,
    pid: proc.child.pid!,
    alive,
    exit: () =>
      alive() ? 'running' : `exited (code ${proc.child.exitCode}, signal ${proc.child.signalCode ?? 'none'})`,
  };
}

/** Lines of the daemon's log that say why it died or what it refused (EMFILE, unhandled errors). */
export function deathNotes(out: string): string {
  const all = out.split('\n').filter(Boolean);
  const lines = all.filter((l) =>
    /EMFILE|too many open files|system error|nhandled|uncaught|"level":60|Error:|^\s+at /i.test(l),
  );
  return [...new Set((lines.length ? lines : all).map((l) => l.slice(0, 300)))].slice(-12).join('\n');
}

export function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return -1;
  }
}

/** Counts the daemon's open descriptors every `everyMs` (200 ms); `stop` gives the peak and the last sample. */
export function fdSampler(pid: number, everyMs = 200) {
  let peak = 0;
  let last = 0;
  let samples = 0;
  const sample = () => {
    try {
      last = readdirSync(`/proc/${pid}/fd`).length;
      peak = Math.max(peak, last);
      samples++;
    } catch {
      // gone: the daemon died; alive() says so
    }
  };
  sample();
  const t = setInterval(sample, everyMs);
  return {
    stop() {
      clearInterval(t);
      sample();
      return { peak, last, samples };
    },
  };
}

export function fdLimit(pid: number): string {
  try {
    return /Max open files\s+(\d+)/.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))?.[1] ?? '?';
  } catch {
    return '?';
  }
}

export type Tool = { proc: NsProcess; sent: Promise<number>; result: Promise<Record<string, any>> };

/**
 * Runs one of our tools (security-flood.ts, security-watch.ts) in `ns`; `sent` resolves on its "SENT n" line.
 * `nofile` raises its descriptor limit (at most to our hard limit: a floods' sockets are descriptors too).
 */
export function tool(ns: string, script: string, args: string[], opts: { nofile?: number; limitMs: number }): Tool {
  const cmd = [process.execPath, '--import', 'tsx', path.join(ROOT, 'test/e2e', script), ...args];
  const nofile = opts.nofile && Math.min(opts.nofile, nofileHard());
  const proc = spawnIn(ns, nofile ? ['prlimit', `--nofile=${nofile}:${nofile}`, ...cmd] : cmd, {
    cwd: ROOT,
  });
  const kill = setTimeout(() => proc.child.kill('SIGKILL'), opts.limitMs);
  const result = new Promise<Record<string, any>>((resolve) => {
    proc.child.once('close', (code, signal) => {
      clearTimeout(kill);
      const m = /^RESULT (.*)$/m.exec(proc.output());
      resolve(
        m
          ? JSON.parse(m[1]!)
          : {
              error: `${script} ended without a result (code ${code}, signal ${signal}): ${proc.output().slice(-2000)}`,
            },
      );
    });
  });
  const sent = new Promise<number>((resolve) => {
    const look = () => {
      const m = /^SENT (\d+)$/m.exec(proc.output());
      if (m) return resolve(Number(m[1]));
      if (proc.child.exitCode !== null || proc.child.signalCode !== null) return resolve(-1);
      setTimeout(look, 50);
    };
    look();
  });
  return { proc, sent, result };
}

/** The watchdog: GET /api/v1/info from the observer every 200 ms until `stop()`. */
export function watchdog(maxMs: number) {
  const t = tool(OBS, 'security-watch.ts', [`${BASE}/api/v1/info`, '--every-ms', '200', '--max-ms', String(maxMs)], {
    limitMs: maxMs + 20_000,
  });
  return {
    ready: async () => {
      for (let i = 0; i < 200 && !t.proc.output().includes('WATCHING'); i++)
        await new Promise((r) => setTimeout(r, 50));
    },
    stop: async () => {
      t.proc.child.kill('SIGTERM');
      return t.result;
    },
  };
}
