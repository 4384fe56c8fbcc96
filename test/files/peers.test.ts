/**
 * Issue 17, files: an upload to one daemon is bootable from all. Two daemons in this process on one PostgreSQL
 * schema, each with its own data dir: what is uploaded to A is served by B over HTTP (whole, a Range, HEAD) and
 * TFTP, fetched from A once (concurrent requests share the fetch) and verified; a peer sending altered bytes is
 * refused (502 and a log line, never the wrong bytes); an iPXE script rendered by B names URLs B serves, also for
 * a bootenv pinned to bytes its path no longer holds; B's own stale copy of a path gives way to A's newer upload;
 * a file deleted through A is 404 on B; the peer endpoint wants the inventory's peer secret. PostgreSQL only.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Daemon, startDaemon } from '../../src/daemon.js';
import { blobRel } from '../../src/files/blobs.js';
import { filesCluster } from '../../src/files/cluster.js';
import { peerSecret } from '../../src/files/peers.js';
import type { Logger } from '../../src/log.js';
import { testConfig } from '../helpers/daemon.js';
import { adminQuery, backends, PG_URL } from '../store/backends.js';
import { tftpGet } from '../tftp/client.js';

const pgBackend = backends(import.meta.filename).find((x) => x.name === 'postgres')!;
const TOKEN = 'files-peers-test-admin-token-0123456789abcdef';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

type Node = { d: Daemon; url: string; dir: string; files: string; lines: string[]; log: Logger };
const nodes: Node[] = [];
let schema = '';

/** A pino logger whose lines the test reads. */
function capture(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  return { log: pino({ level: 'info' }, sink) as unknown as Logger, lines };
}

async function start(serverId: string, over: Record<string, unknown> = {}): Promise<Node> {
  const dir = mkdtempSync(path.join(tmpdir(), `plinth-peers-${serverId}-`));
  const url = new URL(PG_URL!);
  url.searchParams.set('options', `-c search_path=${schema}`);
  const { log, lines } = capture();
  const cfg = testConfig(dir, { store: url.toString(), serverId, ...over });
  const d = await startDaemon(cfg, log, { PLINTH_ADMIN_TOKEN: TOKEN });
  const n = { d, url: `http://127.0.0.1:${d.httpPort}`, dir, files: path.join(dir, 'files'), lines, log };
  nodes.push(n);
  return n;
}

const api = (n: Node, method: string, p: string, body?: unknown) =>
  fetch(`${n.url}/api/v1${p}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
const put = async (n: Node, p: string, body: Buffer) => {
  const r = await fetch(`${n.url}/api/v1/files/${p}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${TOKEN}` },
    body,
  });
  expect(r.status).toBeLessThan(300);
  return (await r.json()) as { sha256: string };
};
const get = async (url: string, headers: Record<string, string> = {}, method = 'GET') => {
  const r = await fetch(url, { headers, method });
  return { status: r.status, headers: r.headers, body: Buffer.from(await r.arrayBuffer()) };
};
const fetches = (n: Node) => (filesCluster(n.files) as unknown as { stats: { fetches: number } }).stats.fetches;
const hasBlob = (n: Node, digest: string) => existsSync(path.join(n.files, blobRel(digest)));
const tempFiles = (n: Node) => readdirSync(path.join(n.dir, 'tmp')).filter((f) => f.startsWith('plinth-upload-'));

let a: Node;
let b: Node;
let tftpPort: number;

beforeAll(async () => {
  if (!PG_URL) return;
  schema = (await pgBackend.db()).where;
  a = await start('files-a');
  b = await start('files-b', { tftp: true, tftpPort: 0 });
  tftpPort = ((await (await api(b, 'GET', '/info')).json()) as { listeners: { tftp: { port: number } } }).listeners.tftp
    .port;
}, 60_000);
afterAll(async () => {
  for (const n of nodes.splice(0)) {
    await n.d.close();
    rmSync(n.dir, { recursive: true, force: true });
  }
});

describe.skipIf(!PG_URL)('the peer secret', () => {
  it('is made once for the inventory, however many daemons start together', async () => {
    const db = await pgBackend.db();
    const stores = await Promise.all([db.open(), db.open(), db.open()]);
    const secrets = await Promise.all(stores.map((s) => peerSecret(s)));
    expect(new Set(secrets).size).toBe(1);
    expect(secrets[0]!.length).toBeGreaterThanOrEqual(43);
    expect(await peerSecret(stores[0]!)).toBe(secrets[0]);
  });
});

describe.skipIf(!PG_URL)('files across daemons on one PostgreSQL inventory', () => {
  it('each heartbeat advertises where peers fetch from, and the peer endpoint wants the peer secret', async () => {
    const beats = await adminQuery(`SELECT key, doc FROM ${schema}.daemons ORDER BY key`);
    expect(beats.rows.map((r) => [r.key, r.doc.peerUrl])).toEqual([
      ['files-a', a.url],
      ['files-b', b.url],
    ]);
    const body = randomBytes(1000);
    const { sha256 } = await put(a, 'auth/blob.bin', body);
    const blobUrl = `${a.url}/peer/v1/blobs/${sha256}`;
    expect((await get(blobUrl)).status).toBe(401);
    expect((await get(blobUrl, { authorization: `Bearer ${TOKEN}` })).status).toBe(401); // the admin token is not it
    const secret = (await adminQuery(`SELECT doc FROM ${schema}.prefs WHERE key = 'peer-secret'`)).rows[0].doc.secret;
    const auth = { authorization: `Bearer ${secret}` };
    const ok = await get(blobUrl, auth);
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual(body);
    // Only a digest names a blob: a path, or a digest this daemon does not hold, is refused or missing.
    expect((await get(`${a.url}/peer/v1/blobs/..%2F..%2Fplinth.db`, auth)).status).toBe(400);
    expect((await get(`${a.url}/peer/v1/blobs/${'0'.repeat(64)}`, auth)).status).toBe(404);
  });

  it("a file uploaded to A is served by B (whole, a Range, HEAD), fetched once and kept in B's data dir", async () => {
    const body = randomBytes(300_000);
    const { sha256 } = await put(a, 'os/vmlinuz', body);
    expect(hasBlob(b, sha256)).toBe(false);
    const before = fetches(b);
    const whole = await get(`${b.url}/files/os/vmlinuz`);
    expect(whole.status).toBe(200);
    expect(sha(whole.body)).toBe(sha256);
    expect(hasBlob(b, sha256)).toBe(true);
    const part = await get(`${b.url}/files/os/vmlinuz`, { range: 'bytes=1000-1999' });
    expect(part.status).toBe(206);
    expect(part.body).toEqual(body.subarray(1000, 2000));
    const head = await get(`${b.url}/files/os/vmlinuz`, {}, 'HEAD');
    expect(head.headers.get('content-length')).toBe(String(body.length));
    expect(fetches(b) - before).toBe(1);
    expect(b.lines.some((l) => l.includes('"msg":"blob fetched"') && l.includes(sha256))).toBe(true);
    // The API on B knows the file too (from the inventory's record).
    const listed = (await (await api(b, 'GET', '/files')).json()) as { path: string; sha256: string }[];
    expect(listed.find((f) => f.path === 'os/vmlinuz')?.sha256).toBe(sha256);
  });

  it('concurrent requests on B for a blob it lacks cause one fetch', async () => {
    const body = randomBytes(2_000_000);
    const { sha256 } = await put(a, 'os/initrd.gz', body);
    const before = fetches(b);
    const all = await Promise.all(Array.from({ length: 8 }, () => get(`${b.url}/files/os/initrd.gz`)));
    for (const r of all) {
      expect(r.status).toBe(200);
      expect(sha(r.body)).toBe(sha256);
    }
    expect(fetches(b) - before).toBe(1);
  });

  it('B serves over TFTP a file uploaded to A', async () => {
    const body = randomBytes(100_000);
    await put(a, 'pxe/tftp.bin', body);
    const r = await tftpGet(tftpPort, 'pxe/tftp.bin', { options: [['blksize', '1468']] });
    expect(r.error).toBeUndefined();
    expect(r.data).toEqual(body);
  });

  it('a peer sending altered bytes is refused: 502 and a log line, never the wrong bytes', async () => {
    const body = randomBytes(50_000);
    const { sha256 } = await put(a, 'os/tampered.img', body);
    // Rewritten in place on A's disk: the path is a hard link to A's blob, so the blob's bytes change too.
    const altered = Buffer.from(body);
    altered[100] ^= 0xff;
    writeFileSync(path.join(a.files, 'os/tampered.img'), altered);
    const r = await get(`${b.url}/files/os/tampered.img`);
    expect(r.status).toBe(502);
    expect(r.headers.get('content-type')).toContain('application/problem+json');
    expect(r.body.toString()).toContain('no peer gave its bytes');
    expect(b.lines.some((l) => l.includes('wrong sha256: discarded') && l.includes(sha256))).toBe(true);
    expect(hasBlob(b, sha256)).toBe(false);
    expect(tempFiles(b)).toEqual([]);
    // TFTP refuses it as well.
    const t = await tftpGet(tftpPort, 'os/tampered.img', { limitMs: 5000 });
    expect(t.error).toBeDefined();
    expect(t.data.length).toBe(0);
  });

  it('a daemon with --files-origin takes the next source when a peer sends altered bytes', async () => {
    const body = randomBytes(20_000);
    const digest = sha(body);
    const asked: string[] = [];
    const origin = http.createServer((req, res) => {
      asked.push(req.url ?? '');
      if (req.url === `/blobs/${digest}`) res.end(body);
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    try {
      const port = (origin.address() as AddressInfo).port;
      const c = await start('files-c', { filesOrigin: `http://127.0.0.1:${port}/blobs/{sha256}` } as never);
      await put(a, 'os/mirrored.img', body);
      const altered = Buffer.from(body);
      altered[0] ^= 0xff;
      writeFileSync(path.join(a.files, 'os/mirrored.img'), altered); // A's copy no longer matches
      const r = await get(`${c.url}/files/os/mirrored.img`);
      expect(r.status).toBe(200);
      expect(sha(r.body)).toBe(digest);
      expect(asked).toEqual([`/blobs/${digest}`]);
      expect(c.lines.some((l) => l.includes('wrong sha256: discarded') && l.includes('"from":"files-a"'))).toBe(true);
      expect(c.lines.some((l) => l.includes('"msg":"blob fetched"') && l.includes('"from":"origin"'))).toBe(true);
    } finally {
      origin.close();
    }
  });

  it('a bootenv pinning a digest only the origin holds is ready on a daemon with --files-origin: fetched on first use', async () => {
    const body = randomBytes(12_000);
    const digest = sha(body);
    const origin = http.createServer((req, res) => {
      if (req.url === `/o/${digest}`) res.end(body);
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    try {
      const port = (origin.address() as AddressInfo).port;
      const d = await start('files-d', {
        filesOrigin: `http://127.0.0.1:${port}/o/{sha256}`,
        heartbeatSeconds: 3,
      } as never);
      const beat = await adminQuery(`SELECT doc FROM ${schema}.daemons WHERE key = 'files-d'`);
      expect(beat.rows[0].doc.beatSeconds).toBe(3); // --heartbeat-seconds
      const be = {
        name: 'mirror-1',
        kernel: 'mirror/vmlinuz',
        artifacts: [{ path: 'mirror/vmlinuz', sha256: digest }],
      };
      expect((await api(a, 'POST', '/bootenvs', be)).status).toBe(201);
      // No daemon recorded the digest: A (no origin) reports it missing, D fetches it from the origin.
      expect(((await (await api(a, 'GET', '/bootenvs/mirror-1/status')).json()) as { ready: boolean }).ready).toBe(
        false,
      );
      expect(hasBlob(d, digest)).toBe(false);
      const status = (await (await api(d, 'GET', '/bootenvs/mirror-1/status')).json()) as { ready: boolean };
      expect(status.ready).toBe(true);
      expect(hasBlob(d, digest)).toBe(true);
      expect(d.lines.some((l) => l.includes('"msg":"blob fetched"') && l.includes('"from":"origin"'))).toBe(true);
    } finally {
      origin.close();
    }
  });

  it('a pinned digest no source has is logged once a minute, not at every readiness check', async () => {
    const digest = sha(randomBytes(64));
    const be = {
      name: 'nowhere-1',
      kernel: 'nowhere/vmlinuz',
      artifacts: [{ path: 'nowhere/vmlinuz', sha256: digest }],
    };
    expect((await api(a, 'POST', '/bootenvs', be)).status).toBe(201);
    for (let i = 0; i < 4; i++) {
      const st = (await (await api(a, 'GET', '/bootenvs/nowhere-1/status')).json()) as { ready: boolean };
      expect(st.ready).toBe(false);
    }
    const warned = a.lines.filter((l) => l.includes('no peer or origin gave its pinned blob') && l.includes(digest));
    expect(warned).toHaveLength(1);
  });

  it('an iPXE loader uploaded through A is offered by B (its /info lists it from the file store) and served from A', async () => {
    const body = randomBytes(9000);
    await put(a, 'ipxe.efi', body);
    const source = async () => {
      const info = (await (await api(b, 'GET', '/info')).json()) as {
        loaders: { served: { name: string; source: string }[] };
      };
      return info.loaders.served.find((l) => l.name === 'ipxe.efi')?.source;
    };
    // B reads the inventory's loader records every 5 s; its loader index reuses a look-up for 5 s.
    const until = Date.now() + 15_000;
    while ((await source()) !== 'files' && Date.now() < until) await new Promise((r) => setTimeout(r, 250));
    expect(await source()).toBe('files');
    expect(existsSync(path.join(b.files, 'ipxe.efi'))).toBe(false);
    const r = await tftpGet(tftpPort, 'ipxe.efi', { options: [['blksize', '1468']] });
    expect(r.error).toBeUndefined();
    expect(r.data).toEqual(body);
  });

  it('a blob recorded only by the path holding it (uploaded before blob records) is fetched by digest too', async () => {
    const body = randomBytes(3000);
    const { sha256 } = await put(a, 'old/kernel', body);
    await adminQuery(`DELETE FROM ${schema}.files WHERE key = $1`, [blobRel(sha256)]);
    const r = await get(`${b.url}/files/${blobRel(sha256)}`);
    expect(r.status).toBe(200);
    expect(r.body).toEqual(body);
  });

  it('a file copied by hand into A and indexed there is fetched by B from A', async () => {
    const body = randomBytes(7000);
    mkdirSync(path.join(a.files, 'byhand'), { recursive: true });
    writeFileSync(path.join(a.files, 'byhand/loader.efi'), body);
    expect((await api(a, 'GET', '/files/byhand/loader.efi')).status).toBe(200); // A hashes and records it
    const r = await get(`${b.url}/files/byhand/loader.efi`);
    expect(r.status).toBe(200);
    expect(r.body).toEqual(body);
    expect(hasBlob(a, sha(body))).toBe(true); // taken into A's blob store by a hard link when B asked
  });

  it('a digest the inventory does not know is 404 on B without asking any peer', async () => {
    const before = fetches(b);
    const r = await get(`${b.url}/files/${blobRel(sha(Buffer.from('never uploaded')))}`);
    expect(r.status).toBe(404);
    expect(fetches(b)).toBe(before);
  });

  it('B renders and serves a bootenv created through A with files uploaded to A, also pinned bytes since replaced', async () => {
    const v1 = Buffer.from('cluster kernel one\n');
    const v2 = Buffer.from('cluster kernel two, longer\n');
    const initrd = randomBytes(4096);
    await put(a, 'lab/vmlinuz', v1);
    await put(a, 'lab/initrd.gz', initrd);
    expect(
      (await api(a, 'POST', '/bootenvs', { name: 'lab-1', kernel: 'lab/vmlinuz', initrds: ['lab/initrd.gz'] })).status,
    ).toBe(201);
    await put(a, 'lab/vmlinuz', v2); // lab-1 keeps booting v1 (issue 16), from B too
    expect(
      (await api(a, 'POST', '/machines', { name: 'peer-m', macs: ['52:54:00:17:00:01'], bootEnv: 'lab-1' })).status,
    ).toBe(201);
    const status = (await (await api(b, 'GET', '/bootenvs/lab-1/status')).json()) as { ready: boolean };
    expect(status.ready).toBe(true);
    const script = await fetch(`${b.url}/boot/ipxe/52-54-00-17-00-01`);
    expect(script.status).toBe(200);
    const text = await script.text();
    const kernel = /^kernel (\S+)/m.exec(text)?.[1];
    const initrdUrl = /^initrd (\S+)/m.exec(text)?.[1];
    expect(kernel).toBe(`${b.url}/files/.blobs/views/${sha(v1)}/lab/vmlinuz`);
    const k = await get(kernel!);
    expect(k.body.toString()).toBe(v1.toString());
    expect((await get(initrdUrl!)).body).toEqual(initrd);
    // The path itself holds bytes no bootenv pins there: refused on B as on A (issue 16's rule, unchanged).
    expect((await get(`${a.url}/files/lab/vmlinuz`)).status).toBe(409);
    expect((await get(`${b.url}/files/lab/vmlinuz`)).status).toBe(409);
  });

  it("B's own older copy of a path gives way to A's newer upload", async () => {
    await put(b, 'shared/config.txt', Buffer.from('written through B\n'));
    await put(a, 'shared/config.txt', Buffer.from('written through A, later\n'));
    expect((await get(`${b.url}/files/shared/config.txt`)).body.toString()).toBe('written through A, later\n');
    const info = (await (await api(b, 'GET', '/files/shared/config.txt')).json()) as { sha256: string };
    expect(info.sha256).toBe(sha(Buffer.from('written through A, later\n')));
    // A's record was not overwritten by B's hash of its own copy.
    expect((await get(`${a.url}/files/shared/config.txt`)).body.toString()).toBe('written through A, later\n');
  });

  it('a file deleted through A is 404 on B, which had fetched it', async () => {
    const body = randomBytes(5000);
    await put(a, 'gone/file.bin', body);
    expect((await get(`${b.url}/files/gone/file.bin`)).status).toBe(200);
    expect((await api(a, 'DELETE', '/files/gone/file.bin')).status).toBe(204);
    expect((await get(`${b.url}/files/gone/file.bin`)).status).toBe(404);
    expect((await api(b, 'GET', '/files/gone/file.bin')).status).toBe(404);
    // And a file only A holds can be deleted through B; A drops its copy lazily.
    await put(a, 'gone/other.bin', body);
    expect((await api(b, 'DELETE', '/files/gone/other.bin')).status).toBe(204);
    expect(existsSync(path.join(a.files, 'gone/other.bin'))).toBe(true); // A learns on its next request
    expect((await get(`${a.url}/files/gone/other.bin`)).status).toBe(404);
    expect(existsSync(path.join(a.files, 'gone/other.bin'))).toBe(false);
    expect(a.lines.some((l) => l.includes('file deleted through another daemon'))).toBe(true);
  });
});

it('the lone SQLite daemon registers no peer endpoint and no files cluster', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'plinth-peers-lone-'));
  const d = await startDaemon(testConfig(dir), pino({ level: 'silent' }) as unknown as Logger, {
    PLINTH_ADMIN_TOKEN: TOKEN,
  });
  try {
    expect(filesCluster(path.join(dir, 'files'))).toBeUndefined();
    const r = await fetch(`http://127.0.0.1:${d.httpPort}/peer/v1/blobs/${'0'.repeat(64)}`);
    expect(r.status).toBe(404);
  } finally {
    await d.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
