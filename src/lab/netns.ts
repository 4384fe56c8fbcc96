/**
 * Network namespaces for Plinth's lab (`plinth lab`) and its end-to-end suite: a private L2 segment (a bridge
 * with taps for QEMU) whose addresses exist only inside the namespace, with no route out. Every name starts
 * with "plinth-" and every process is started here, tracked by PID and killed by PID. Needs root and iproute2.
 * A namespace is deleted (and what runs in it killed) only when it carries the marker written when it was
 * created here (src/lab/owner.ts): a namespace of the same name made by anyone else is refused, never touched.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  ForeignNamespaceError,
  forgetMarker,
  namespaceId,
  ownership,
  readMarker,
  staleEntry,
  writeMarker,
} from './owner.js';

export const NS_PREFIX = 'plinth-';

export function sh(cmd: string[], limitMs = 30_000): string {
  return execFileSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8', timeout: limitMs, stdio: ['ignore', 'pipe', 'pipe'] });
}
export const ipn = (ns: string, ...args: string[]) => sh(['ip', '-n', ns, ...args]);

function ours(name: string) {
  if (!name.startsWith(NS_PREFIX))
    throw new Error(`namespace '${name}' is not Plinth's (names start with ${NS_PREFIX})`);
}

export function namespaces(): string[] {
  return sh(['ip', 'netns', 'list'])
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter(Boolean);
}

/**
 * Kill what still runs inside (only our lab starts processes there), then delete the namespace: only one this
 * code created (its marker matches), else ForeignNamespaceError and nothing is touched.
 */
export function deleteNamespace(name: string): void {
  ours(name);
  const id = namespaceId(name);
  if (!id || staleEntry(name)) {
    if (id) sh(['ip', 'netns', 'del', name]);
    forgetMarker(name);
    return;
  }
  if (ownership(id, readMarker(name)) !== 'ours') throw new ForeignNamespaceError(name);
  const pids = sh(['ip', 'netns', 'pids', name]).split('\n').filter(Boolean).map(Number);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  sh(['ip', 'netns', 'del', name]);
  forgetMarker(name);
}

/** A fresh namespace: a leftover of ours is replaced, anyone else's is refused (ForeignNamespaceError). */
export function createNamespace(name: string): void {
  ours(name);
  deleteNamespace(name);
  sh(['ip', 'netns', 'add', name]);
  const id = namespaceId(name);
  if (id) writeMarker(name, id);
  ipn(name, 'link', 'set', 'lo', 'up');
}

export type Segment = { ns: string; bridge: string; address: string; prefix: number; taps: string[] };

/**
 * One provisioning segment: bridge (STP off, forward delay 0: a firmware's first DISCOVER leaves within a
 * second of link-up) with the server's address, and `taps` taps for QEMU VMs.
 */
export function createSegment(ns: string, opts: { bridge?: string; cidr: string; taps: number }): Segment {
  const bridge = opts.bridge ?? 'br0';
  ipn(ns, 'link', 'add', bridge, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
  ipn(ns, 'addr', 'add', opts.cidr, 'dev', bridge);
  ipn(ns, 'link', 'set', bridge, 'up');
  const taps: string[] = [];
  for (let i = 0; i < opts.taps; i++) {
    const tap = `tap${i}`;
    ipn(ns, 'tuntap', 'add', 'dev', tap, 'mode', 'tap');
    ipn(ns, 'link', 'set', tap, 'master', bridge, 'up');
    taps.push(tap);
  }
  const [address, prefix] = opts.cidr.split('/');
  return { ns, bridge, address: address!, prefix: Number(prefix), taps };
}

/** A veth from the segment's bridge to a new namespace `peerNs` (interface eth0), e.g. for real DHCP clients. */
export function addClientNamespace(seg: Segment, peerNs: string, peerCidr?: string): void {
  createNamespace(peerNs);
  const hostSide = `v-${peerNs.slice(NS_PREFIX.length, NS_PREFIX.length + 10)}`;
  ipn(seg.ns, 'link', 'add', hostSide, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', peerNs);
  ipn(seg.ns, 'link', 'set', hostSide, 'master', seg.bridge, 'up');
  ipn(peerNs, 'link', 'set', 'eth0', 'up');
  if (peerCidr) ipn(peerNs, 'addr', 'add', peerCidr, 'dev', 'eth0');
}

export type NsProcess = { child: ChildProcess; output: () => string; stop: (signal?: NodeJS.Signals) => Promise<void> };

/** A long-running process inside a namespace; its output is kept (bounded) for diagnostics. */
export function spawnIn(
  ns: string,
  cmd: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; keepBytes?: number } = {},
): NsProcess {
  const child = spawn('ip', ['netns', 'exec', ns, ...cmd], {
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const keep = opts.keepBytes ?? 4 * 1024 * 1024;
  let out = '';
  const add = (b: Buffer) => {
    out += b.toString();
    if (out.length > keep) out = out.slice(out.length - keep);
  };
  child.stdout!.on('data', add);
  child.stderr!.on('data', add);
  return {
    child,
    output: () => out,
    stop: (signal = 'SIGTERM') =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        child.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        child.kill(signal);
      }),
  };
}

/** Run a command inside a namespace to completion (bounded), e.g. curl against the API. */
export function runIn(
  ns: string,
  cmd: string[],
  limitMs = 60_000,
  opts: { netOnly?: boolean } = {},
): { code: number; stdout: string; stderr: string } {
  // netOnly: nsenter joins the network namespace alone. `ip netns exec` also gives the command a mount namespace
  // of its own (sysfs remounted), so a namespace the command creates (`plinth lab up`) is mounted there only:
  // invisible to the host afterwards, and what runs in it outlives a `lab down` run from the host.
  const argv = opts.netOnly ? ['nsenter', `--net=/run/netns/${ns}`, ...cmd] : ['ip', 'netns', 'exec', ns, ...cmd];
  try {
    const stdout = execFileSync(argv[0]!, argv.slice(1), {
      encoding: 'utf8',
      timeout: limitMs,
      stdio: ['ignore', 'pipe', 'pipe'],
      maxBuffer: 64 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr: '' };
  } catch (err) {
    const e = err as { status?: number; stdout?: string; stderr?: string };
    return { code: e.status ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}
