import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import Fastify from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeStaleUploads } from '../../src/files/store-files.js';
import { fsProblem } from '../../src/http/files-api.js';
import { parseRange, registerFileServing } from '../../src/http/files-serve.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { exited, freePort, ROOT, spawnPlinth, waitHttp } from '../helpers/proc.js';

let d: TestDaemon;
beforeAll(async () => {
  d = await startTestDaemon();
});
afterAll(async () => {
  await d.stop();
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const upload = (p: string, body: Buffer, headers: Record<string, string> = {}) =>
  fetch(`${d.url}/api/v1/files/${p}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${d.token}`, 'content-type': 'application/octet-stream', ...headers },
    body,
  });

describe('file upload and listing', () => {
  const kernel = randomBytes(3 * 1024 * 1024 + 17);

  it('streams an upload into <data-dir>/files, with its sha256', async () => {
    const r = await upload('lab/vmlinuz', kernel);
    expect(r.status).toBe(201);
    const body = (await r.json()) as any;
    expect(body).toMatchObject({
      path: 'lab/vmlinuz',
      size: kernel.length,
      sha256: sha(kernel),
      url: '/files/lab/vmlinuz',
    });
    expect(readFileSync(path.join(d.dataDir, 'files/lab/vmlinuz')).equals(kernel)).toBe(true);
    const again = await upload('lab/vmlinuz', kernel);
    expect(again.status).toBe(200);
  });

  it('lists path, size and sha256 (also for files copied in by hand)', async () => {
    const hand = Buffer.from('copied by hand\n');
    writeFileSync(path.join(d.dataDir, 'files/hand.txt'), hand);
    const r = await d.api('GET', '/api/v1/files');
    expect(r.status).toBe(200);
    expect(r.body).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ path: 'lab/vmlinuz', size: kernel.length, sha256: sha(kernel) }),
        expect.objectContaining({ path: 'hand.txt', size: hand.length, sha256: sha(hand) }),
      ]),
    );
    const one = await d.api('GET', '/api/v1/files/hand.txt');
    expect(one.body.sha256).toBe(sha(hand));
  });

  it('keeps nothing when the expected digest does not match', async () => {
    const r = await upload('lab/bad', Buffer.from('abc'), { 'x-checksum-sha256': '0'.repeat(64) });
    expect(r.status).toBe(400);
    expect(existsSync(path.join(d.dataDir, 'files/lab/bad'))).toBe(false);
    expect(readdirSync(path.join(d.dataDir, 'tmp'))).toEqual([]);
  });

  it('keeps nothing when the upload is interrupted', async () => {
    await new Promise<void>((resolve) => {
      const req = http.request(`${d.url}/api/v1/files/lab/partial`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${d.token}`, 'content-length': String(10 * 1024 * 1024) },
      });
      req.on('error', () => resolve());
      req.write(randomBytes(1024 * 1024));
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 200);
    });
    // The server notices the closed connection asynchronously.
    for (let i = 0; i < 50 && readdirSync(path.join(d.dataDir, 'tmp')).length > 0; i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(existsSync(path.join(d.dataDir, 'files/lab/partial'))).toBe(false);
    expect(readdirSync(path.join(d.dataDir, 'tmp'))).toEqual([]);
  });

  it('refuses traversal, absolute paths, NUL bytes and symlinks out of the root with 400', async () => {
    mkdirSync(path.join(d.dataDir, 'outside'), { recursive: true });
    symlinkSync(path.join(d.dataDir, 'outside'), path.join(d.dataDir, 'files/escape'));
    for (const p of ['..%2F..%2Fetc%2Fpasswd', '%2Fetc%2Fpasswd', 'a%00b', 'escape/x', 'a%5C..%5Cb']) {
      const r = await upload(p, Buffer.from('x'));
      expect(r.status, p).toBe(400);
    }
    expect(readdirSync(path.join(d.dataDir, 'outside'))).toEqual([]);
    const del = await d.api('DELETE', '/api/v1/files/..%2Fplinth.db');
    expect(del.status).toBe(400);
    expect(existsSync(path.join(d.dataDir, 'plinth.db'))).toBe(true);
  });

  it('deletes', async () => {
    expect((await d.api('DELETE', '/api/v1/files/hand.txt')).status).toBe(204);
    expect((await d.api('DELETE', '/api/v1/files/hand.txt')).status).toBe(404);
  });
});

describe('serving /files without a token', () => {
  const data = randomBytes(200_000);
  beforeAll(async () => {
    expect((await upload('boot/initrd.gz', data)).status).toBe(201);
  });

  it('GET, HEAD, ETag and 304', async () => {
    const r = await fetch(`${d.url}/files/boot/initrd.gz`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-length')).toBe(String(data.length));
    expect(r.headers.get('accept-ranges')).toBe('bytes');
    expect(Buffer.from(await r.arrayBuffer()).equals(data)).toBe(true);
    const etag = r.headers.get('etag')!;
    const h = await fetch(`${d.url}/files/boot/initrd.gz`, { method: 'HEAD' });
    expect(h.status).toBe(200);
    expect(h.headers.get('content-length')).toBe(String(data.length));
    const nm = await fetch(`${d.url}/files/boot/initrd.gz`, { headers: { 'if-none-match': etag } });
    expect(nm.status).toBe(304);
  });

  it('Range requests: first bytes, open-ended, suffix, unsatisfiable, If-Range', async () => {
    const get = (range: string, extra: Record<string, string> = {}) =>
      fetch(`${d.url}/files/boot/initrd.gz`, { headers: { range, ...extra } });
    const a = await get('bytes=0-99');
    expect(a.status).toBe(206);
    expect(a.headers.get('content-range')).toBe(`bytes 0-99/${data.length}`);
    expect(Buffer.from(await a.arrayBuffer()).equals(data.subarray(0, 100))).toBe(true);
    const b = await get('bytes=199990-');
    expect(Buffer.from(await b.arrayBuffer()).equals(data.subarray(199990))).toBe(true);
    const c = await get('bytes=-10');
    expect(Buffer.from(await c.arrayBuffer()).equals(data.subarray(data.length - 10))).toBe(true);
    const e = await get('bytes=300000-');
    expect(e.status).toBe(416);
    expect(e.headers.get('content-range')).toBe(`bytes */${data.length}`);
    const stale = await get('bytes=0-9', { 'if-range': '"stale"' });
    expect(stale.status).toBe(200);
    await stale.arrayBuffer();
  });

  it('refuses traversal and 404s missing files as problem+json', async () => {
    const t = await fetch(`${d.url}/files/..%2Fplinth.db`);
    expect(t.status).toBe(400);
    const m = await fetch(`${d.url}/files/missing`);
    expect(m.status).toBe(404);
    expect(m.headers.get('content-type')).toMatch(/problem\+json/);
    expect(await m.text()).not.toContain(d.dataDir);
  });

  it('parseRange', () => {
    expect(parseRange('bytes=0-0', 10)).toEqual({ start: 0, end: 0 });
    expect(parseRange('bytes=5-100', 10)).toEqual({ start: 5, end: 9 });
    expect(parseRange('bytes=0-1,3-4', 10)).toBeUndefined();
    expect(parseRange('bytes=-0', 10)).toBe('unsatisfiable');
    expect(parseRange('bytes=10-', 10)).toBe('unsatisfiable');
    expect(parseRange('items=1-2', 10)).toBeUndefined();
  });
});

describe('served files are inert in a browser', () => {
  it('an uploaded .html is a download with nosniff and a sandbox CSP, not a page on the /ui origin', async () => {
    const page = Buffer.from('<script>fetch("/api/v1/machines",{headers:{authorization:localStorage.token}})</script>');
    expect((await upload('evil.html', page)).status).toBe(201);
    for (const method of ['GET', 'HEAD']) {
      const r = await fetch(`${d.url}/files/evil.html`, { method });
      expect(r.status).toBe(200);
      expect(r.headers.get('x-content-type-options')).toBe('nosniff');
      expect(r.headers.get('content-security-policy')).toBe("sandbox; default-src 'none'");
      expect(r.headers.get('content-disposition')).toBe('attachment; filename="evil.html"');
      await r.arrayBuffer();
    }
    expect((await upload('pic.SVG', Buffer.from('<svg onload="alert(1)"/>'))).status).toBe(201);
    const svg = await fetch(`${d.url}/files/pic.SVG`);
    expect(svg.headers.get('content-disposition')).toBe('attachment; filename="pic.SVG"');
    await svg.arrayBuffer();
  });

  it('boot files keep their type and are not downloads, but still carry nosniff and the sandbox', async () => {
    const r = await fetch(`${d.url}/files/lab/vmlinuz`);
    expect(r.headers.get('content-type')).toBe('application/octet-stream');
    expect(r.headers.get('content-disposition')).toBeNull();
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    expect(r.headers.get('content-security-policy')).toBe("sandbox; default-src 'none'");
    await r.arrayBuffer();
  });

  it('the "http file" log line does not keep ?token=', async () => {
    const lines: any[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(JSON.parse(String(chunk)));
        cb();
      },
    });
    const app = Fastify();
    registerFileServing(app, { filesDir: path.join(d.dataDir, 'files'), log: pino({ level: 'info' }, sink) });
    await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const port = (app.server.address() as { port: number }).port;
      const r = await fetch(`http://127.0.0.1:${port}/files/lab/vmlinuz?x=1&token=s3cr3t-machine-token&Token=AbC`);
      expect(r.status).toBe(200);
      await r.arrayBuffer();
      for (let i = 0; i < 50 && !lines.some((l) => l.msg === 'http file'); i++)
        await new Promise((x) => setTimeout(x, 20));
      const line = lines.find((l) => l.msg === 'http file');
      expect(line.url).toBe('/files/lab/vmlinuz?x=1&token=[secure]&Token=[secure]');
      expect(JSON.stringify(lines)).not.toContain('s3cr3t');
    } finally {
      await app.close();
    }
  });
});

describe('upload failures say what happened', () => {
  it('an upload onto a directory is a 409, under a file a 409, not a 500', async () => {
    const r = await upload('lab', Buffer.from('x'));
    expect(r.status).toBe(409);
    expect(r.headers.get('content-type')).toMatch(/problem\+json/);
    expect(((await r.json()) as any).detail).toBe("'lab' is a directory: upload to a file name inside it");
    const under = await upload('lab/vmlinuz/x', Buffer.from('x'));
    expect(under.status).toBe(409);
    expect(((await under.json()) as any).detail).toContain('is a file, not a directory');
    expect(readdirSync(path.join(d.dataDir, 'tmp'))).toEqual([]);
  });

  it('maps ENOSPC/EDQUOT to 507 and EACCES/EPERM/EROFS to 403', () => {
    const e = (code: string) => Object.assign(new Error(code), { code });
    expect(fsProblem(e('ENOSPC'), 'a')?.status).toBe(507);
    expect(fsProblem(e('EDQUOT'), 'a')?.status).toBe(507);
    for (const c of ['EACCES', 'EPERM', 'EROFS']) expect(fsProblem(e(c), 'a')?.status).toBe(403);
    expect(fsProblem(e('EIO'), 'a')).toBeUndefined();
  });

  it('uploaded files and the directories made for them are owner-only', () => {
    expect(statSync(path.join(d.dataDir, 'files/lab/vmlinuz')).mode & 0o777).toBe(0o600);
    expect(statSync(path.join(d.dataDir, 'files/boot')).mode & 0o777).toBe(0o700);
  });

  it('removeStaleUploads removes only upload temp files older than the start', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'plinth-stale-'));
    try {
      const old = new Date(Date.now() - 60_000);
      const names = [
        `plinth-upload-${randomUUID()}.part`,
        `upload-${randomUUID()}`,
        'keep.me',
        `plinth-upload-${randomUUID()}.part`,
      ];
      for (const n of names) writeFileSync(path.join(dir, n), 'x');
      for (const n of names.slice(0, 3)) utimesSync(path.join(dir, n), old, old);
      const removed = await removeStaleUploads(dir, new Date(Date.now() - 1000));
      expect(removed.sort()).toEqual(names.slice(0, 2).sort());
      expect(readdirSync(dir).sort()).toEqual([names[3], 'keep.me'].sort());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('uploads and the daemon process', () => {
  const base = ['--no-dhcp', '--no-tftp', '--http-address', '127.0.0.1'];
  const dirs: string[] = [];
  afterAll(() => {
    for (const x of dirs) rmSync(x, { recursive: true, force: true });
  });

  it('the temp file of an upload cut by kill -9 is removed at the next start', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'plinth-kill-'));
    dirs.push(dataDir);
    const port = await freePort();
    const p = spawnPlinth([...base, '--data-dir', dataDir, '--http-port', String(port)]);
    try {
      await waitHttp(port);
      const token = readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
      const req = http.request(`http://127.0.0.1:${port}/api/v1/files/big.img`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-length': String(8 * 1024 * 1024) },
      });
      req.on('error', () => {});
      req.write(randomBytes(1024 * 1024));
      const tmp = path.join(dataDir, 'tmp');
      for (let i = 0; i < 100 && !(existsSync(tmp) && readdirSync(tmp).length); i++)
        await new Promise((r) => setTimeout(r, 50));
      expect(readdirSync(tmp)).toHaveLength(1);
      p.kill('SIGKILL');
      await exited(p);
      req.destroy();
      expect(readdirSync(tmp)[0]).toMatch(/^plinth-upload-[0-9a-f-]{36}\.part$/);
      const p2 = spawnPlinth([...base, '--data-dir', dataDir, '--http-port', String(port)]);
      try {
        await waitHttp(port);
        expect(readdirSync(tmp)).toEqual([]);
      } finally {
        p2.kill('SIGTERM');
        await exited(p2);
      }
    } finally {
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    }
  });

  // A tmpfs needs a mount namespace of our own: root (or CAP_SYS_ADMIN) only.
  const canMount = spawnSync('unshare', ['-m', '--propagation', 'private', 'true']).status === 0;
  it.skipIf(!canMount)(
    'a full disk is a 507 that keeps nothing, and the daemon carries on',
    async () => {
      const dataDir = mkdtempSync(path.join(tmpdir(), 'plinth-full-'));
      dirs.push(dataDir);
      const port = await freePort();
      const token = randomBytes(24).toString('hex');
      // A 4 MiB tmpfs as the data dir, in a mount namespace of its own (root only; nothing is mounted outside it).
      const p = spawn(
        'unshare',
        [
          '-m',
          '--propagation',
          'private',
          'sh',
          '-c',
          'mount -t tmpfs -o size=4m,mode=0700 tmpfs "$0" && exec "$@"',
          dataDir,
          process.execPath,
          '--import',
          'tsx',
          path.join(ROOT, 'src/main.ts'),
          ...base,
          '--data-dir',
          dataDir,
          '--http-port',
          String(port),
        ],
        // The token file would be on the tmpfs, which only the child sees: a token of our own instead.
        {
          cwd: ROOT,
          stdio: 'ignore',
          env: { ...process.env, PLINTH_TLS: 'off', PLINTH_LOG_LEVEL: 'warn', PLINTH_ADMIN_TOKEN: token },
        },
      );
      try {
        await waitHttp(port);
        const put = await fetch(`http://127.0.0.1:${port}/api/v1/files/big.img`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
          body: randomBytes(8 * 1024 * 1024),
        });
        expect(put.status).toBe(507);
        expect(put.headers.get('content-type')).toMatch(/problem\+json/);
        expect(((await put.json()) as any).detail).toContain("no space left for 'big.img'");
        const small = await fetch(`http://127.0.0.1:${port}/api/v1/files/small.txt`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
          body: 'fits',
        });
        expect(small.status).toBe(201);
        // The 507 went out while the client was still sending 8 MiB, so the server closed that connection; fetch may
        // still hand a request a pooled socket the server has closed (ECONNRESET). A retry tells that race from a dead
        // daemon, which refuses every attempt.
        const listOnce = () =>
          fetch(`http://127.0.0.1:${port}/api/v1/files`, { headers: { authorization: `Bearer ${token}` } });
        const list = await listOnce().catch(() => listOnce());
        expect(((await list.json()) as any[]).map((f) => f.path)).toEqual(['small.txt']);
      } finally {
        p.kill('SIGTERM');
        await exited(p);
      }
      // The daemon starts from the sources under tsx: on a loaded 2-core machine that alone has taken over 20 s.
    },
    90_000,
  );
});
