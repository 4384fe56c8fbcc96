import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import Fastify from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';
import { type Daemon, StartupError, startDaemon } from '../../src/daemon.js';
import { createListeners, httpLimits, plainGuard } from '../../src/http/listeners.js';
import { fingerprintOf, loadTls } from '../../src/http/tls.js';
import { silentLogger } from '../../src/log.js';
import { testConfig } from '../helpers/daemon.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(path.join(tmpdir(), 'plinth-tls-'));
  dirs.push(d);
  return d;
};
const daemons: Daemon[] = [];
afterAll(async () => {
  for (const d of daemons) await d.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function tlsDaemon(dataDir: string, over: Parameters<typeof testConfig>[1] = {}) {
  const d = await startDaemon(testConfig(dataDir, { tls: 'on', httpsPort: 0, ...over }), silentLogger, {});
  daemons.push(d);
  return d;
}

type Answer = { status: number; body: any; text: string };

/** A request over HTTPS trusting only `ca`. */
function httpsReq(
  port: number,
  p: string,
  ca: Buffer,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port, path: p, method: opts.method ?? 'GET', headers: opts.headers, ca, agent: false },
      (res) => {
        let text = '';
        res.on('data', (b) => {
          text += b;
        });
        res.on('end', () => {
          let body: any;
          try {
            body = JSON.parse(text);
          } catch {}
          resolve({ status: res.statusCode ?? 0, body, text });
        });
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

async function plainReq(port: number, p: string, init: RequestInit = {}): Promise<Answer> {
  const r = await fetch(`http://127.0.0.1:${port}${p}`, init);
  const text = await r.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: r.status, body, text };
}

/** The certificate a listener presents, read without trusting it. */
function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      resolve(fingerprintOf(s.getPeerCertificate().raw));
      s.destroy();
    });
    s.on('error', reject);
  });
}

describe('TLS for the API and /ui', () => {
  it('creates a self-signed certificate at first start (key 0600), serves it, reports its fingerprint, keeps it', async () => {
    const dataDir = tmp();
    const d = await tlsDaemon(dataDir);
    const certFile = path.join(dataDir, 'tls', 'cert.pem');
    expect(statSync(path.join(dataDir, 'tls', 'key.pem')).mode & 0o777).toBe(0o600);
    const fp = fingerprintOf(readFileSync(certFile));
    expect(fp).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(d.tls?.fingerprint).toBe(fp);
    expect(await servedFingerprint(d.httpsPort!)).toBe(fp);
    const info = await plainReq(d.httpPort, '/api/v1/info');
    expect(info.status).toBe(200);
    expect(info.body.tls).toMatchObject({ fingerprint: fp, source: 'self-signed' });
    expect(info.body.listeners.https.port).toBe(d.httpsPort);
    // It names this host: a client trusting the file verifies 127.0.0.1 without a pin.
    expect((await httpsReq(d.httpsPort!, '/api/v1/info', readFileSync(certFile))).status).toBe(200);
    await d.close();
    daemons.splice(daemons.indexOf(d), 1);
    const again = await tlsDaemon(dataDir);
    expect(again.tls?.fingerprint).toBe(fp);
    expect(again.tls?.created).toBe(false);
  });

  it("serves the operator's certificate and refuses a key that does not belong to it", async () => {
    const a = await loadTls({ dataDir: tmp() });
    const b = await loadTls({ dataDir: tmp() });
    const d = await tlsDaemon(tmp(), { tlsCert: a.certFile, tlsKey: path.join(path.dirname(a.certFile), 'key.pem') });
    expect(d.tls).toMatchObject({ source: 'operator', fingerprint: a.fingerprint });
    expect(await servedFingerprint(d.httpsPort!)).toBe(a.fingerprint);
    const wrong = startDaemon(
      testConfig(tmp(), {
        tls: 'on',
        httpsPort: 0,
        tlsCert: a.certFile,
        tlsKey: path.join(path.dirname(b.certFile), 'key.pem'),
      }),
      silentLogger,
      {},
    );
    await expect(wrong).rejects.toThrow(StartupError);
    await expect(wrong).rejects.toThrow(/does not belong to the certificate/);
  });

  it('the plain port serves boot routes and refuses the admin API and /ui by the route matched, encoded or not', async () => {
    const dataDir = tmp();
    const d = await tlsDaemon(dataDir);
    const ca = readFileSync(path.join(dataDir, 'tls', 'cert.pem'));
    const token = readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
    const auth = { authorization: `Bearer ${token}` };
    const json = { ...auth, 'content-type': 'application/json' };
    // Over HTTPS everything works.
    const made = await httpsReq(d.httpsPort!, '/api/v1/machines', ca, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ name: 'm1', macs: ['52:54:00:00:00:01'] }),
    });
    expect(made.status, made.text).toBe(201);
    expect((await httpsReq(d.httpsPort!, '/api/v1/machines', ca, { headers: auth })).status).toBe(200);
    expect((await httpsReq(d.httpsPort!, '/ui', ca)).status).toBe(200);
    // Over plain HTTP, admin routes are refused even with the right token, and the refusal says where to go.
    for (const [method, p] of [
      ['GET', '/api/v1/machines'],
      ['GET', '/%61pi/v1/machines'],
      ['GET', '/api/v1/%6dachines'],
      ['POST', '/api/v1/machines'],
      ['GET', `/api/v1/machines/${made.body.uuid}`],
      ['GET', '/api/v1/prefs'],
      ['GET', '/api/v1/events'],
      ['GET', '/ui'],
      ['GET', '/'],
    ]) {
      const r = await plainReq(d.httpPort, p!, {
        method,
        headers: json,
        body: method === 'POST' ? JSON.stringify({ name: 'x' }) : undefined,
      });
      expect(r.status, `${method} ${p}: ${r.text}`).toBe(403);
      expect(r.body.detail).toContain(`https://127.0.0.1:${d.httpsPort}`);
    }
    // Firmware's and an initrd's routes stay on plain HTTP.
    expect((await plainReq(d.httpPort, '/boot/ipxe')).status).toBe(200);
    expect((await plainReq(d.httpPort, '/boot/ipxe/52-54-00-00-00-01')).status).toBe(200);
    expect((await plainReq(d.httpPort, '/api/v1/info')).status).toBe(200);
    const cb = await plainReq(d.httpPort, `/api/v1/machines/${made.body.uuid}/callback?event=booted`);
    expect(cb.status, cb.text).not.toBe(403);
    const up = await httpsReq(d.httpsPort!, '/api/v1/files/t/hello.txt', ca, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'application/octet-stream' },
      body: 'hello',
    });
    expect(up.status, up.text).toBeLessThan(300);
    const file = await plainReq(d.httpPort, '/files/t/hello.txt');
    expect(file).toMatchObject({ status: 200, text: 'hello' });
  });

  it('routes marked config.machineToken stay open on the plain listener; others are refused', async () => {
    const material = await loadTls({ dataDir: tmp() });
    const listeners = createListeners({ tls: material, limits: httpLimits({}), log: silentLogger });
    const app = Fastify({ serverFactory: listeners.serverFactory });
    let httpsPort = 0;
    app.addHook(
      'onRequest',
      plainGuard(() => httpsPort),
    );
    app.get('/api/v1/things/:id/report', { config: { machineToken: true } }, async () => ({ ok: true }));
    app.get('/api/v1/things/:id', async () => ({ ok: true }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    httpsPort = (app.server.address() as AddressInfo).port;
    const plain = listeners.plain()!;
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', () => r()));
    const port = (plain.address() as AddressInfo).port;
    try {
      expect((await plainReq(port, '/api/v1/things/1/report')).status).toBe(200);
      expect((await plainReq(port, '/api/v1/things/1/%72eport')).status).toBe(200);
      expect((await plainReq(port, '/api/v1/things/1')).status).toBe(403);
      expect((await plainReq(port, '/api/v1/%74hings/1')).status).toBe(403);
      expect((await plainReq(port, '/nothing/here')).status).toBe(404);
      expect((await httpsReq(httpsPort, '/api/v1/things/1', material.cert)).status).toBe(200);
    } finally {
      plain.close();
      await app.close();
    }
  });
});
