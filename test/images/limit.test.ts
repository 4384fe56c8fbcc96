/**
 * The per-artifact size limit of a verified import (src/images/import.ts): an artifact whose answer announces more
 * bytes than allowed is refused before its body is read, and one that streams past the limit without announcing a
 * length is cut off there; either is an ImportError 'too-large' that leaves no temp file, path, blob or bootenv.
 * A local HTTP server on loopback serves the fixtures; the manifest pins digests (unsigned: no key needed).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBus } from '../../src/events.js';
import { ImportError, importManifest } from '../../src/images/import.js';
import { validateManifest } from '../../src/images/manifest.js';
import { silentLogger } from '../../src/log.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';

const kernel = Buffer.alloc(64 * 1024, 'k');
const big = Buffer.alloc(256 * 1024, 'b');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
let server: Server;
let base: string;
let dataDir: string;
let store: Store;
let bodiesSent = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    const body = req.url?.endsWith('/big') ? big : kernel;
    // /chunked/*: no Content-Length, so only the bytes received can show the size.
    if (req.url?.startsWith('/chunked/')) res.writeHead(200, { 'content-type': 'application/octet-stream' });
    else res.writeHead(200, { 'content-length': String(body.length) });
    if (req.url?.endsWith('/big')) bodiesSent++;
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'plinth-import-limit-'));
  mkdirSync(path.join(dataDir, 'files'), { recursive: true });
  store = openSqliteStore(':memory:');
});
afterAll(async () => {
  server.close();
  await store.close();
  rmSync(dataDir, { recursive: true, force: true });
});

const deps = () => ({ store, bus: createBus(), log: silentLogger, filesDir: path.join(dataDir, 'files'), dataDir });
const manifest = (name: string, bigUrl: string) =>
  validateManifest({
    name,
    os: { name: 'test' },
    unsigned: true,
    artifacts: [
      { role: 'kernel', url: `${base}/vmlinuz`, path: `${name}/vmlinuz`, sha256: sha256(kernel) },
      { role: 'rootfs', url: bigUrl, path: `${name}/root.img`, sha256: sha256(big) },
    ],
  });
const left = () => [
  ...readdirSync(path.join(dataDir, 'files'), { recursive: true }),
  ...readdirSync(path.join(dataDir, 'tmp'), { recursive: true }),
];

describe('verified import: the per-artifact size limit', () => {
  it('an artifact announcing more bytes than allowed is refused before its body, and nothing is kept', async () => {
    const err = await importManifest(deps(), manifest('announced', `${base}/big`), {
      allowUnsigned: true,
      maxArtifactBytes: 128 * 1024,
    }).catch((e) => e);
    expect(err).toBeInstanceOf(ImportError);
    expect((err as ImportError).problem).toBe('too-large');
    expect((err as Error).message).toBe(
      `artifact ${base}/big is ${big.length} bytes, more than the ${128 * 1024} allowed (per artifact): refused, nothing was kept`,
    );
    expect(left()).toEqual([]);
    expect(await store.get('bootenvs', 'announced')).toBeUndefined();
  });

  it('an artifact streamed without a length is cut off at the limit, and nothing is kept', async () => {
    const err = await importManifest(deps(), manifest('streamed', `${base}/chunked/big`), {
      allowUnsigned: true,
      maxArtifactBytes: 128 * 1024,
    }).catch((e) => e);
    expect((err as ImportError).problem).toBe('too-large');
    expect((err as Error).message).toContain(`${base}/chunked/big sent more than the ${128 * 1024} bytes allowed`);
    expect(left()).toEqual([]);
    expect(await store.get('bootenvs', 'streamed')).toBeUndefined();
  });

  it('within the limit (and under the default) the same artifacts import', async () => {
    const sent = bodiesSent;
    const r = await importManifest(deps(), manifest('fits', `${base}/chunked/big`), { allowUnsigned: true });
    expect(r.artifacts.map((a) => a.size)).toEqual([kernel.length, big.length]);
    expect(bodiesSent).toBe(sent + 1);
    expect(await store.get('bootenvs', 'fits')).toBeDefined();
  });
});
