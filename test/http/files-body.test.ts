/**
 * The body of a /files response, both ways it can go: sendfile(2) through the native helper (plain TCP) and a
 * stream (TLS, no helper, or `sendfile: false`). The same behaviour is asked of both: whole file, Range,
 * If-Range, If-None-Match, HEAD, a file cut short or replaced while it is sent, and a client that leaves mid-file.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import Fastify, { type FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerFileServing } from '../../src/http/files-serve.js';
import { createListeners, httpLimits } from '../../src/http/listeners.js';
import { loadTls } from '../../src/http/tls.js';
import { silentLogger } from '../../src/log.js';
import { native } from '../../src/native/index.js';

const MiB = 1 << 20;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Got = { status: number; headers: http.IncomingHttpHeaders; body: Buffer; complete: boolean };

/** One request on a connection of its own; `midway` runs once the body has started and the client has stopped reading. */
function get(url: string, headers: Record<string, string> = {}, method = 'GET', midway?: () => void): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      const collect = () => res.on('data', (c: Buffer) => chunks.push(c));
      const done = () =>
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), complete: res.complete });
      res.once('close', done);
      res.once('error', () => undefined); // a connection cut mid-body: `complete` says so
      if (!midway) return collect();
      // Not reading: the socket buffers fill and the server is left with most of the file still to send.
      setTimeout(() => {
        midway();
        collect();
      }, 150);
    });
    req.on('error', reject);
    req.end();
  });
}

const fdCount = () => readdirSync('/proc/self/fd').length;

describe.each([
  ['sendfile(2)', true],
  ['a stream', false],
])('/files bodies sent by %s', (_name, sendfile) => {
  let app: FastifyInstance;
  let dir: string;
  let base: string;
  const lines: { msg: string; method?: string; sendfile?: boolean; status?: number }[] = [];
  const big = randomBytes(24 * MiB);
  const small = randomBytes(100_000);
  const viaSendfile = sendfile && native.caps.httpSendfile;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'plinth-files-body-'));
    writeFileSync(path.join(dir, 'small.img'), small);
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(JSON.parse(String(chunk)));
        cb();
      },
    });
    app = Fastify();
    registerFileServing(app, { filesDir: dir, log: pino({ level: 'info' }, sink), sendfile });
    await app.listen({ port: 0, host: '127.0.0.1' });
    base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}/files`;
  });
  afterAll(async () => {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('whole file, ranges, If-Range, If-None-Match and HEAD, by the path the log line names', async () => {
    lines.length = 0;
    const whole = await get(`${base}/small.img`);
    expect(whole.status).toBe(200);
    expect(whole.headers['content-length']).toBe(String(small.length));
    expect(sha(whole.body)).toBe(sha(small));
    const etag = whole.headers.etag!;

    const mid = await get(`${base}/small.img`, { range: 'bytes=1000-2999' });
    expect(mid.status).toBe(206);
    expect(mid.headers['content-range']).toBe(`bytes 1000-2999/${small.length}`);
    expect(mid.body.equals(small.subarray(1000, 3000))).toBe(true);
    const tail = await get(`${base}/small.img`, { range: 'bytes=-7' });
    expect(tail.body.equals(small.subarray(small.length - 7))).toBe(true);
    const open = await get(`${base}/small.img`, { range: 'bytes=99990-' });
    expect(open.body.equals(small.subarray(99990))).toBe(true);

    // If-Range: the range only while the file is still the one the client has part of (RFC 9110 13.1.5).
    const same = await get(`${base}/small.img`, { range: 'bytes=0-9', 'if-range': etag });
    expect(same.status).toBe(206);
    expect(same.body.equals(small.subarray(0, 10))).toBe(true);
    const changed = await get(`${base}/small.img`, { range: 'bytes=0-9', 'if-range': '"1-1"' });
    expect(changed.status).toBe(200);
    expect(sha(changed.body)).toBe(sha(small));

    const notModified = await get(`${base}/small.img`, { 'if-none-match': `"x", ${etag}` });
    expect(notModified.status).toBe(304);
    expect(notModified.body.length).toBe(0);
    const head = await get(`${base}/small.img`, {}, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(small.length));
    expect(head.body.length).toBe(0);

    for (let i = 0; i < 50 && lines.filter((l) => l.msg === 'http file').length < 8; i++) await sleep(20);
    const bodies = lines.filter((l) => l.msg === 'http file' && l.method === 'GET' && l.status !== 304);
    expect(bodies.length).toBe(6);
    // Every response with a body went the way this suite is about (HEAD has none to send).
    for (const l of bodies) expect(l.sendfile).toBe(viaSendfile);
  });

  it('keep-alive: several files one after another on one connection, each whole', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (const [name, content] of [
        ['small.img', small],
        ['small.img', small],
      ] as const) {
        const body = await new Promise<Buffer>((resolve, reject) => {
          http
            .get(`${base}/${name}`, { agent }, (res) => {
              const c: Buffer[] = [];
              res.on('data', (b: Buffer) => c.push(b));
              res.on('end', () => resolve(Buffer.concat(c)));
            })
            .on('error', reject);
        });
        expect(sha(body)).toBe(sha(content));
      }
    } finally {
      agent.destroy();
    }
  });

  it('a file cut short while it is sent: the connection ends, the client does not wait for the missing bytes', async () => {
    const f = path.join(dir, 'shrinks.img');
    writeFileSync(f, big);
    const r = await get(`${base}/shrinks.img`, {}, 'GET', () => truncateSync(f, MiB));
    expect(r.status).toBe(200);
    expect(r.headers['content-length']).toBe(String(big.length));
    expect(r.complete).toBe(false);
    expect(r.body.length).toBeLessThan(big.length);
    // The part the file still has arrived as it is. (Past it, bytes already in flight when the file was cut may
    // not be the old ones: sendfile hands the socket page-cache pages, not copies. Incomplete all the same, so
    // no client keeps them; uploads land by rename, the next test, which keeps the old file whole.)
    expect(r.body.length).toBeGreaterThanOrEqual(MiB);
    expect(r.body.subarray(0, MiB).equals(big.subarray(0, MiB))).toBe(true);
  });

  it('a file replaced while it is sent (an upload renamed over it): the client gets the old file whole', async () => {
    const f = path.join(dir, 'replaced.img');
    writeFileSync(f, big);
    const next = path.join(dir, 'replaced.next');
    writeFileSync(next, randomBytes(2 * MiB));
    const r = await get(`${base}/replaced.img`, {}, 'GET', () => renameSync(next, f));
    expect(r.complete).toBe(true);
    expect(sha(r.body)).toBe(sha(big));
  });

  it('a client that leaves mid-file: the server lets go of the connection and the file, and serves on', async () => {
    writeFileSync(path.join(dir, 'big.img'), big);
    const before = fdCount();
    await new Promise<void>((resolve, reject) => {
      const req = http.get(`${base}/big.img`, { agent: false }, (res) => {
        res.once('data', () => {
          res.pause();
          setTimeout(() => {
            req.destroy();
            resolve();
          }, 100);
        });
      });
      req.on('error', () => undefined);
      setTimeout(() => reject(new Error('no body started')), 10_000);
    });
    // Bounded wait for the server side to notice the close; a leaked dup or file descriptor keeps the count up.
    let now = fdCount();
    for (let i = 0; i < 100 && now > before; i++) {
      await sleep(20);
      now = fdCount();
    }
    expect(now).toBeLessThanOrEqual(before);
    const after = await get(`${base}/small.img`);
    expect(sha(after.body)).toBe(sha(small));
    const aborted = lines.filter((l) => l.msg === 'http file' && (l as { bytes?: unknown }).bytes === 'aborted');
    expect(aborted.length).toBeGreaterThanOrEqual(1);
  });

  it('the server dropping a connection mid-file (stopping, a timeout) closes it for the client too', async () => {
    writeFileSync(path.join(dir, 'big.img'), big);
    const before = fdCount();
    const r = await get(`${base}/big.img`, {}, 'GET', () => app.server.closeAllConnections());
    // A dup of the socket still sending would keep the connection open past Node's close: the client would wait.
    expect(r.complete).toBe(false);
    expect(r.body.length).toBeLessThan(big.length);
    let now = fdCount();
    for (let i = 0; i < 100 && now > before; i++) {
      await sleep(20);
      now = fdCount();
    }
    expect(now).toBeLessThanOrEqual(before);
  });
});

describe('/files over HTTPS', () => {
  it('streams the body (TLS must see the bytes, sendfile cannot): whole, and a range', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'plinth-files-tls-'));
    const content = randomBytes(3 * MiB);
    writeFileSync(path.join(dir, 'k.img'), content);
    const lines: { msg: string; sendfile?: boolean }[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(JSON.parse(String(chunk)));
        cb();
      },
    });
    const material = await loadTls({ dataDir: dir });
    const listeners = createListeners({ tls: material, limits: httpLimits({}), log: silentLogger });
    const app = Fastify({ serverFactory: listeners.serverFactory });
    registerFileServing(app, { filesDir: dir, log: pino({ level: 'info' }, sink) });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as { port: number }).port;
    const fetchTls = (headers: Record<string, string> = {}) =>
      new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
        https
          .get(
            { host: '127.0.0.1', port, path: '/files/k.img', headers, rejectUnauthorized: false, agent: false },
            (res) => {
              const c: Buffer[] = [];
              res.on('data', (b: Buffer) => c.push(b));
              res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(c) }));
            },
          )
          .on('error', reject);
      });
    try {
      const whole = await fetchTls();
      expect(whole.status).toBe(200);
      expect(sha(whole.body)).toBe(sha(content));
      const part = await fetchTls({ range: 'bytes=100-199' });
      expect(part.status).toBe(206);
      expect(part.body.equals(content.subarray(100, 200))).toBe(true);
      for (let i = 0; i < 50 && lines.filter((l) => l.msg === 'http file').length < 2; i++) await sleep(20);
      const served = lines.filter((l) => l.msg === 'http file');
      expect(served.length).toBe(2);
      for (const l of served) expect(l.sendfile).toBe(false);
    } finally {
      await app.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
