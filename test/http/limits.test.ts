import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config.js';
import { type Daemon, startDaemon } from '../../src/daemon.js';
import { testConfig } from '../helpers/daemon.js';

/** A daemon whose log lines are kept (parsed) for the test to read. */
async function daemonWith(over: Partial<Config>) {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'plinth-limits-'));
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  const daemon = await startDaemon(testConfig(dataDir, over), log, {});
  return { daemon, dataDir, lines };
}

const running: { daemon: Daemon; dataDir: string }[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const r of running.splice(0)) {
    await r.daemon.close();
    rmSync(r.dataDir, { recursive: true, force: true });
  }
});

type Outcome = { closedAt?: number; data: string };

/** A raw connection that writes `text` (maybe nothing) and records what came back and when it closed. */
function rawConn(port: number, text: string, t0: number, from?: string): Promise<{ sock: net.Socket; out: Outcome }> {
  return new Promise((resolve, reject) => {
    const out: Outcome = { data: '' };
    const sock = net.connect({ port, host: '127.0.0.1', localAddress: from });
    sockets.push(sock);
    sock.on('data', (b) => {
      out.data += b;
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      out.closedAt = Date.now() - t0;
    });
    sock.once('connect', () => {
      if (text) sock.write(text);
      resolve({ sock, out });
    });
    sock.once('error', reject);
  });
}

async function until(cond: () => boolean, timeoutMs: number) {
  const end = Date.now() + timeoutMs;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  return cond();
}

describe('HTTP resource bounds', () => {
  it('closes a request whose headers never finish within the headers timeout, not the idle timeout', async () => {
    const d = await daemonWith({ httpHeadersTimeoutMs: 500, httpIdleTimeoutMs: 60_000 });
    running.push(d);
    const t0 = Date.now();
    const { out } = await rawConn(d.daemon.httpPort, 'GET /api/v1/info HTTP/1.1\r\nHost: x\r\nX-Slow: ', t0);
    const idle = await rawConn(d.daemon.httpPort, '', t0);
    // Node's defaults (60 s headers timeout, checked every 30 s) would hold both well past this wait.
    expect(await until(() => out.closedAt !== undefined && idle.out.closedAt !== undefined, 10_000)).toBe(true);
    expect(out.data).toMatch(/^HTTP\/1\.1 408/);
    expect(out.closedAt).toBeGreaterThanOrEqual(400);
  });

  it('holds the connection cap against 300 idle connections, logs it once, and answers again when they time out', async () => {
    const d = await daemonWith({
      httpMaxConnections: 200,
      httpMaxConnectionsPerClient: 1_000,
      httpHeadersTimeoutMs: 3_000,
      httpIdleTimeoutMs: 60_000,
    });
    running.push(d);
    const port = d.daemon.httpPort;
    const t0 = Date.now();
    const conns: Outcome[] = [];
    for (let i = 0; i < 300; i++) conns.push((await rawConn(port, i % 2 ? 'GET / HTTP/1.1\r\n' : '', t0)).out);
    // Refused connections are closed by the daemon at once, without a byte of answer.
    await until(() => conns.filter((c) => c.closedAt !== undefined).length >= 100, 2_000);
    const dropped = conns.filter((c) => c.closedAt !== undefined && c.data === '').length;
    const held = conns.filter((c) => c.closedAt === undefined).length;
    expect(held).toBeLessThanOrEqual(200);
    expect(dropped).toBeGreaterThan(0);
    expect(dropped + held).toBe(300);
    // The held ones are closed by the headers timeout; then the API answers.
    expect(await until(() => conns.every((c) => c.closedAt !== undefined), 15_000)).toBe(true);
    const r = await fetch(`http://127.0.0.1:${port}/api/v1/info`);
    expect(r.status).toBe(200);
    const capLines = d.lines.filter((l) => String(l.msg).includes('connection cap reached'));
    expect(capLines).toHaveLength(1);
    expect(capLines[0]).toMatchObject({ listener: 'http', maxConnections: 200 });
  });

  it("keeps one client's flood to its share: another address is answered while it holds its connections", async () => {
    const d = await daemonWith({
      httpMaxConnections: 200,
      httpMaxConnectionsPerClient: 50,
      httpHeadersTimeoutMs: 20_000,
      httpIdleTimeoutMs: 60_000,
    });
    running.push(d);
    const port = d.daemon.httpPort;
    const t0 = Date.now();
    const conns: Outcome[] = [];
    for (let i = 0; i < 120; i++) conns.push((await rawConn(port, 'GET / HTTP/1.1\r\n', t0, '127.0.0.1')).out);
    await until(() => conns.filter((c) => c.closedAt !== undefined).length >= 70, 2_000);
    expect(conns.filter((c) => c.closedAt === undefined).length).toBe(50);
    // The flooding address gets nothing more; any other address (127.0.0.2 is loopback too) is served.
    const more = await rawConn(port, 'GET /api/v1/info HTTP/1.1\r\nHost: x\r\n\r\n', t0, '127.0.0.1');
    expect(await until(() => more.out.closedAt !== undefined, 2_000)).toBe(true);
    expect(more.out.data).toBe('');
    const other = await rawConn(
      port,
      'GET /api/v1/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      t0,
      '127.0.0.2',
    );
    expect(await until(() => other.out.closedAt !== undefined, 5_000)).toBe(true);
    expect(other.out.data).toMatch(/^HTTP\/1\.1 200/);
    expect(d.lines.filter((l) => String(l.msg).includes('connection share'))).toHaveLength(1);
  });

  it('bounds the HTTPS listener the same way (cap, and the handshake that never comes)', async () => {
    const d = await daemonWith({
      tls: 'on',
      httpsPort: 0,
      httpMaxConnections: 20,
      httpMaxConnectionsPerClient: 1_000,
      httpHeadersTimeoutMs: 1_000,
      httpIdleTimeoutMs: 60_000,
    });
    running.push(d);
    const t0 = Date.now();
    const conns: Outcome[] = [];
    for (let i = 0; i < 30; i++) conns.push((await rawConn(d.daemon.httpsPort!, '', t0)).out);
    await until(() => conns.filter((c) => c.closedAt !== undefined).length >= 10, 2_000);
    expect(conns.filter((c) => c.closedAt === undefined).length).toBeLessThanOrEqual(20);
    // tls.Server's own handshake timeout is 120 s: these close after the headers timeout instead.
    expect(await until(() => conns.every((c) => c.closedAt !== undefined), 10_000)).toBe(true);
  });
});
