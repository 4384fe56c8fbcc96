import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRange } from '../../src/http/files-serve.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

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
