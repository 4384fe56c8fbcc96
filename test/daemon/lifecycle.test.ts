import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { exited, freePort, spawnPlinth, waitHttp } from '../helpers/proc.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(path.join(tmpdir(), 'plinth-life-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

// Plain HTTP for the API (TLS is on by default; test/http/tls.test.ts covers it).
const base = ['--no-dhcp', '--no-tftp', '--tls', 'off', '--http-address', '127.0.0.1'];

describe('daemon lifecycle', () => {
  it('creates the admin token 0600 on first start, logs its path but never the token, stops cleanly on SIGTERM', async () => {
    const dataDir = tmp();
    const port = await freePort();
    const p = spawnPlinth([...base, '--data-dir', dataDir, '--http-port', String(port)]);
    await waitHttp(port);
    const tokFile = path.join(dataDir, 'admin.token');
    expect(statSync(tokFile).mode & 0o777).toBe(0o600);
    const token = readFileSync(tokFile, 'utf8').trim();
    expect(token.length).toBeGreaterThan(30);
    expect(p.output()).toContain(tokFile);
    expect(p.output()).not.toContain(token);
    // The database holds only its hash.
    expect(readFileSync(path.join(dataDir, 'plinth.db')).includes(Buffer.from(token))).toBe(false);
    p.kill('SIGTERM');
    expect(await exited(p)).toEqual({ code: 0, signal: null });
  });

  it('loses nothing acknowledged with 201 when killed with SIGKILL', async () => {
    const dataDir = tmp();
    const port = await freePort();
    const p = spawnPlinth([...base, '--data-dir', dataDir, '--http-port', String(port)]);
    await waitHttp(port);
    const token = readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
    const h = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const acked: string[] = [];
    // Four clients create machines in a loop; after 60 acknowledgements the daemon is killed mid-flight.
    let n = 0;
    let killed = false;
    const worker = async () => {
      while (!killed && n < 2000) {
        const i = n++;
        try {
          const r = await fetch(`http://127.0.0.1:${port}/api/v1/machines`, {
            method: 'POST',
            headers: h,
            body: JSON.stringify({ name: `k${i}` }),
          });
          if (r.status === 201) acked.push(((await r.json()) as { uuid: string }).uuid);
        } catch {
          return;
        }
        if (acked.length >= 60 && !killed) {
          killed = true;
          p.kill('SIGKILL');
        }
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    await exited(p);
    expect(acked.length).toBeGreaterThanOrEqual(60);
    expect(p.signalCode).toBe('SIGKILL');
    const p2 = spawnPlinth([...base, '--data-dir', dataDir, '--http-port', String(port)]);
    await waitHttp(port);
    const r = await fetch(`http://127.0.0.1:${port}/api/v1/machines?limit=1000`, { headers: h });
    const have = new Set(((await r.json()) as { uuid: string }[]).map((m) => m.uuid));
    for (const u of acked) expect(have.has(u)).toBe(true);
    p2.kill('SIGTERM');
    await exited(p2);
  });

  it('a wrong setting stops the daemon with one line naming it (exit 2)', async () => {
    const p = spawnPlinth([...base, '--http-port', 'eighty']);
    expect((await exited(p)).code).toBe(2);
    const lines = p.output().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('--http-port');
    const e = spawnPlinth(base, { PLINTH_LOG_LEVEL: 'loud' });
    expect((await exited(e)).code).toBe(2);
    expect(e.output()).toContain('PLINTH_LOG_LEVEL');
    const u = spawnPlinth([...base, '--frobnicate']);
    expect((await exited(u)).code).toBe(2);
    expect(u.output()).toContain('frobnicate');
  });

  it('a port in use stops the daemon with the port, the reason and the fixes (exit 1)', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const port = (blocker.address() as net.AddressInfo).port;
    const p = spawnPlinth([...base, '--data-dir', tmp(), '--http-port', String(port)]);
    expect((await exited(p)).code).toBe(1);
    const out = p.output();
    expect(out).toContain(`cannot bind tcp port ${port}`);
    expect(out).toContain('--http-port');
    blocker.close();
  });

  it('serve --help lists every flag and environment variable', async () => {
    // `plinth --help` is the CLI's list of commands; the daemon's flags are `plinth serve --help`.
    const p = spawnPlinth(['serve', '--help']);
    expect((await exited(p)).code).toBe(0);
    for (const s of [
      '--data-dir',
      'PLINTH_DATA_DIR',
      '--http-port',
      'PLINTH_HTTP_PORT',
      '--no-dhcp',
      '--no-tftp',
      '--dhcp-port',
      '--tftp-port',
      '--dhcp-interfaces',
      '--log-level',
      '--config',
      'PLINTH_ADMIN_TOKEN',
      '--tls',
      '--https-port',
      '--tls-cert',
      'PLINTH_TLS_KEY',
      '--http-max-connections',
      '--http-headers-timeout-ms',
    ]) {
      expect(p.output()).toContain(s);
    }
  });

  it('PLINTH_ADMIN_TOKEN is accepted as the admin token', async () => {
    const port = await freePort();
    const p = spawnPlinth([...base, '--data-dir', tmp(), '--http-port', String(port)], {
      PLINTH_ADMIN_TOKEN: 'ci-token-0123456789abcdefghijklmnop',
    });
    await waitHttp(port);
    const ok = await fetch(`http://127.0.0.1:${port}/api/v1/machines`, {
      headers: { authorization: 'Bearer ci-token-0123456789abcdefghijklmnop' },
    });
    expect(ok.status).toBe(200);
    p.kill('SIGTERM');
    await exited(p);
  });
});
