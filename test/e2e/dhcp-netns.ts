/**
 * Network namespaces for the DHCP e2e suite and benchmark (names start with plinth-dhcp-). Addresses exist
 * only inside them, with no route out, so nothing here reaches a real network. Every process is started by
 * us, tracked by PID, bounded in time, and killed by PID. Needs root and iproute2.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createNamespace, deleteNamespace, ipn, namespaces, sh } from '../../src/lab/netns.js';

// The generic parts are the lab's (src/lab/netns.ts); this suite only adds its own name guard.
export { ipn, sh };
export const netnsList = namespaces;

export function deleteNamespaces(names: string[]): void {
  for (const n of names) {
    if (!n.startsWith('plinth-dhcp-')) throw new Error(`refusing to delete namespace ${n}: not ours`);
    deleteNamespace(n);
  }
}

export function addNamespace(name: string): void {
  if (!name.startsWith('plinth-dhcp-')) throw new Error(`namespace names start with plinth-dhcp-: ${name}`);
  createNamespace(name);
}

export function addBridge(ns: string, br: string, cidr?: string): void {
  ipn(ns, 'link', 'add', br, 'type', 'bridge');
  if (cidr) ipn(ns, 'addr', 'add', cidr, 'dev', br);
  ipn(ns, 'link', 'set', br, 'up');
}

/** A veth from `a` (name ifA, optionally enslaved to bridge) to `b` (name ifB), with an optional MAC and address. */
export function addVeth(
  a: { ns: string; ifname: string; bridge?: string; cidr?: string },
  b: { ns: string; ifname: string; mac?: string; cidr?: string },
): void {
  const tmp = `pd${Math.random().toString(36).slice(2, 9)}`;
  ipn(a.ns, 'link', 'add', a.ifname, 'type', 'veth', 'peer', 'name', tmp);
  ipn(a.ns, 'link', 'set', tmp, 'netns', b.ns);
  ipn(b.ns, 'link', 'set', tmp, 'name', b.ifname);
  if (b.mac) ipn(b.ns, 'link', 'set', b.ifname, 'address', b.mac);
  if (a.bridge) ipn(a.ns, 'link', 'set', a.ifname, 'master', a.bridge);
  if (a.cidr) ipn(a.ns, 'addr', 'add', a.cidr, 'dev', a.ifname);
  if (b.cidr) ipn(b.ns, 'addr', 'add', b.cidr, 'dev', b.ifname);
  ipn(a.ns, 'link', 'set', a.ifname, 'up');
  ipn(b.ns, 'link', 'set', b.ifname, 'up');
}

export type Proc = { child: ChildProcess; out: () => string; stop: () => Promise<void> };

/** A long-running process in a namespace; `ready` is polled on its output (bounded by limitMs). */
export async function startIn(
  ns: string,
  cmd: string[],
  ready: (out: string) => boolean,
  limitMs = 20_000,
): Promise<Proc> {
  const child = spawn('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode) return;
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    await new Promise<void>((r) => child.once('exit', () => r()));
    clearTimeout(t);
  };
  const end = Date.now() + limitMs;
  while (!ready(out)) {
    if (child.exitCode !== null || child.signalCode) throw new Error(`${cmd.join(' ')} exited early:\n${out}`);
    if (Date.now() > end) {
      await stop();
      throw new Error(`${cmd.join(' ')} not ready after ${limitMs} ms:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, out: () => out, stop };
}

/** Runs to completion in a namespace with a hard limit (SIGKILL to that PID). */
export function runIn(ns: string, cmd: string[], limitMs = 30_000): Promise<{ code: number | null; out: string }> {
  const child = spawn('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  const t = setTimeout(() => child.kill('SIGKILL'), limitMs);
  return new Promise((resolve) =>
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, out });
    }),
  );
}
