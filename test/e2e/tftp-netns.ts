/**
 * Two network namespaces joined by a veth pair, for the TFTP e2e suite and benchmark. Addresses exist only inside
 * them (no route out), so nothing here can reach a real network. Needs root and iproute2.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createNamespace, deleteNamespace, namespaces } from '../../src/lab/netns.js';

export type Netns = { srv: string; cli: string; srvIp: string; cliIp: string };

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export function netnsExists(name: string): boolean {
  return namespaces().includes(name);
}

export function deleteNetns(n: Netns): void {
  for (const name of [n.srv, n.cli]) deleteNamespace(name);
}

/** `subnet` is the third octet of 10.99.x.0/24. Any namespaces of the same names left by a crashed run are replaced. */
export function createNetns(prefix: string, subnet: number): Netns {
  const n: Netns = {
    srv: `${prefix}-srv`,
    cli: `${prefix}-cli`,
    srvIp: `10.99.${subnet}.1`,
    cliIp: `10.99.${subnet}.2`,
  };
  createNamespace(n.srv);
  createNamespace(n.cli);
  const a = `pt${subnet}s`;
  const b = `pt${subnet}c`;
  ip('-n', n.srv, 'link', 'add', a, 'type', 'veth', 'peer', 'name', b, 'netns', n.cli);
  ip('-n', n.srv, 'addr', 'add', `${n.srvIp}/24`, 'dev', a);
  ip('-n', n.cli, 'addr', 'add', `${n.cliIp}/24`, 'dev', b);
  ip('-n', n.srv, 'link', 'set', a, 'up');
  ip('-n', n.cli, 'link', 'set', b, 'up');
  return n;
}

/** Runs a command in a namespace, optionally pinned to CPUs with taskset. */
export function spawnIn(ns: string, cmd: string[], opts: { cpus?: string; cwd?: string } = {}): ChildProcess {
  const pinned = opts.cpus !== undefined ? ['taskset', '-c', opts.cpus, ...cmd] : cmd;
  return spawn('ip', ['netns', 'exec', ns, ...pinned], { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
}

export type RunResult = {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
};

/** Runs to completion with a hard time limit (SIGKILL to that PID on expiry). */
export function runIn(ns: string, cmd: string[], opts: { cpus?: string; limitMs?: number } = {}): Promise<RunResult> {
  const started = performance.now();
  const child = spawnIn(ns, cmd, opts);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => {
    stdout += d;
  });
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.limitMs ?? 120_000);
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - started });
    });
  });
}

/** Starts a server process and waits until `ready` is true (polled), bounded by `limitMs`. */
export async function startServer(
  ns: string,
  cmd: string[],
  ready: (out: string) => boolean | Promise<boolean>,
  opts: { cpus?: string; cwd?: string; limitMs?: number } = {},
): Promise<{ child: ChildProcess; output: () => string; stop: () => Promise<void> }> {
  const child = spawnIn(ns, cmd, opts);
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  const deadline = Date.now() + (opts.limitMs ?? 15_000);
  while (!(await ready(out))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${cmd.join(' ')} did not become ready: ${out.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    child,
    output: () => out,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** True once something listens on UDP `port` inside `ns`. */
export function udpListening(ns: string, port: number): boolean {
  try {
    const out = execFileSync('ip', ['netns', 'exec', ns, 'ss', '-Huln', `sport = :${port}`], { encoding: 'utf8' });
    return out.trim().length > 0;
  } catch {
    return false;
  }
}
