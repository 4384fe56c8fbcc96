import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { exited, freePort, ROOT, waitHttp, withOutput } from '../helpers/proc.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(path.join(tmpdir(), 'plinth-proc-'));
  dirs.push(d);
  return d;
};
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const base = ['--no-dhcp', '--no-tftp', '--tls', 'off', '--http-address', '127.0.0.1'];

/** The daemon as a child, with `preload` modules run before it and an optional open-files limit (sh's ulimit). */
function daemon(args: string[], opts: { preload?: string[]; nofile?: number } = {}) {
  const node = [
    process.execPath,
    '--import',
    'tsx',
    ...(opts.preload ?? []).flatMap((p) => ['--import', path.join(import.meta.dirname, 'fixtures', p)]),
    path.join(ROOT, 'src/main.ts'),
    ...args,
  ];
  const q = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
  const cmd = `${opts.nofile ? `ulimit -n ${opts.nofile} && ` : ''}exec ${node.map(q).join(' ')}`;
  const child = spawn('sh', ['-c', cmd], {
    cwd: ROOT,
    env: { ...process.env, PLINTH_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  return withOutput(child);
}

const alive = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;

describe('process-level errors', () => {
  it('a rejected promise in a background timer is logged (rate-limited) and the daemon keeps serving', async () => {
    const port = await freePort();
    const p = daemon([...base, '--data-dir', tmp(), '--http-port', String(port)], { preload: ['reject-in-timer.mjs'] });
    await waitHttp(port);
    p.kill('SIGUSR2');
    // Node's default would have exited at the first; wait for the third, and a little longer.
    for (let i = 0; i < 100 && !p.output().includes('fixture: rejection 3') && alive(p); i++)
      await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 300));
    expect(alive(p), p.output()).toBe(true);
    expect((await fetch(`http://127.0.0.1:${port}/api/v1/info`)).status).toBe(200);
    const logged = p
      .output()
      .split('\n')
      .filter((l) => l.includes('unhandled promise rejection'));
    expect(logged.length).toBe(1);
    expect(logged[0]).toContain('EMFILE');
    p.kill('SIGTERM');
    expect(await exited(p)).toEqual({ code: 0, signal: null });
  });

  it('an uncaught exception still ends the process (exit 1), after a log line that says so', async () => {
    const port = await freePort();
    const p = daemon([...base, '--data-dir', tmp(), '--http-port', String(port)], { preload: ['throw-in-timer.mjs'] });
    expect((await exited(p)).code).toBe(1);
    expect(p.output()).toContain('uncaught exception');
    expect(p.output()).toContain('fixture: uncaught in a timer');
  });

  it('survives running out of descriptors (accept fails with EMFILE) and answers once they are free', async () => {
    const port = await freePort();
    // 160 descriptors, no connection cap to save it: the listener itself must outlive EMFILE.
    const p = daemon([...base, '--data-dir', tmp(), '--http-port', String(port), '--http-max-connections', '100000'], {
      nofile: 160,
    });
    await waitHttp(port);
    const socks: net.Socket[] = [];
    let closedByPeer = 0;
    for (let i = 0; i < 300; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      s.on('close', () => closedByPeer++);
      socks.push(s);
      await new Promise((r) => s.once('connect', r).once('error', r));
    }
    // libuv closes what it cannot accept (and an accept error, if one reaches the server, is only logged).
    await new Promise((r) => setTimeout(r, 1_000));
    expect(alive(p), p.output().slice(-2000)).toBe(true);
    expect(closedByPeer).toBeGreaterThan(0);
    for (const s of socks) s.destroy();
    let ok = 0;
    for (let i = 0; i < 50 && ok === 0; i++) {
      ok = await fetch(`http://127.0.0.1:${port}/api/v1/info`).then(
        (r) => (r.status === 200 ? 1 : 0),
        () => 0,
      );
      if (!ok) await new Promise((r) => setTimeout(r, 200));
    }
    expect(ok).toBe(1);
    expect(alive(p)).toBe(true);
    p.kill('SIGTERM');
    expect((await exited(p)).code).toBe(0);
  });
});

describe('data directory', () => {
  it('is created 0700, and an existing one readable by others is tightened with a log line', async () => {
    const parent = tmp();
    const fresh = path.join(parent, 'new', 'data');
    const loose = path.join(parent, 'loose');
    mkdirSync(loose, { mode: 0o755 });
    for (const [dir, note] of [
      [fresh, false],
      [loose, true],
    ] as const) {
      const port = await freePort();
      const p = daemon([...base, '--data-dir', dir, '--http-port', String(port)]);
      await waitHttp(port);
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      expect(p.output().includes('data directory was readable by others'), p.output()).toBe(note);
      p.kill('SIGTERM');
      await exited(p);
    }
  });
});
