import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '../..');

/** The daemon as operators run it: a child process of `tsx src/main.ts`. */
export function spawnPlinth(args: string[], env: Record<string, string> = {}): ChildProcess & { output: () => string } {
  // One process (node with tsx's loader), not the tsx CLI: a SIGKILL must hit the daemon itself.
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/main.ts'), ...args], {
    cwd: ROOT,
    // Plain HTTP on one port unless a test asks for TLS: the default HTTPS port (8443) is one for the whole host.
    env: { ...process.env, PLINTH_TLS: 'off', PLINTH_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return withOutput(child);
}

/** Collects a piped child's stdout and stderr, for failure messages: `child.output()`. */
export function withOutput<C extends ChildProcess>(child: C): C & { output: () => string } {
  let out = '';
  child.stdout!.on('data', (b) => {
    out += b;
  });
  child.stderr!.on('data', (b) => {
    out += b;
  });
  return Object.assign(child, { output: () => out });
}

/** End a daemon a test file started (SIGTERM, then SIGKILL if it does not exit in time). */
export async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  await exited(child).catch(() => child.kill('SIGKILL'));
}

export function exited(
  child: ChildProcess,
  timeoutMs = 20_000,
): Promise<{ code: number | null; signal: string | null }> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null || child.signalCode !== null)
      return resolve({ code: child.exitCode, signal: child.signalCode });
    const t = setTimeout(() => reject(new Error('process did not exit in time')), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal });
    });
  });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

/**
 * Poll /info until the daemon answers (bounded). 60 s: a daemon started from the sources under tsx has taken over
 * 20 s to answer on a 2-core machine running two test files at once.
 */
export async function waitHttp(port: number, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/api/v1/info`);
      if (r.ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`daemon on port ${port} did not answer within ${timeoutMs} ms`);
}
