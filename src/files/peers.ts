/**
 * Boot artifacts across daemons (issue 17): an upload to one daemon is bootable from all. The inventory records
 * every file by path (`files` kind: path -> sha256, size, the uploading daemon's serverId) and, at upload, its
 * digest (`.blobs/sha256/..` record); the bytes live in the uploading daemon's data dir only. A daemon asked for a
 * path (or a pinned blob) that the inventory knows but its own disk lacks, or holds with other bytes, fetches the
 * blob from a live peer (the `daemons` kind: each heartbeat carries the `peerUrl` peers reach it at) or from the
 * configured origin (`--files-origin https://mirror/{sha256}`), streaming into a temp file while hashing; only a
 * blob whose sha256 matches is renamed into the blob store, a mismatch is discarded with a log line and the next
 * source tried. Concurrent requests for one blob share one fetch. Peers authenticate with one secret shared
 * through the inventory (src/http/peer-blobs.ts).
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, stat, unlink } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ClusterFilesConfig } from '../config-cluster.js';
import { listDaemons } from '../daemon-registry.js';
import type { Logger } from '../log.js';
import { ConflictError, type Store } from '../store/store.js';
import {
  adoptBlob,
  blobAbs,
  blobRel,
  digestOfBlobRel,
  ensureView,
  filesLock,
  inBlobStore,
  ingestPath,
} from './blobs.js';
import { BlobUnavailable, type FilesCluster, setFilesCluster } from './cluster.js';
import { confineLexical } from './confine.js';
import { pinnedDigests } from './pins.js';
import { digestRecord, dropDeleted, type FileRecord, fileInfo, fileRecord, sha256File } from './store-files.js';

export type PeerDeps = {
  store: Store;
  log: Logger;
  serverId: string;
  /** The files root (<data-dir>/files); temp files go to <data-dir>/tmp, on the same file system. */
  root: string;
  secret: string;
  /** `https://mirror/{sha256}`: asked after the peers. */
  origin?: string;
  /** Idle time allowed on a source's connection (default 30 s). */
  timeoutMs?: number;
};

type Source = { name: string; url: string; headers: Record<string, string> };

/** How long a blob no source gave is not asked for again. */
const FAILED_MS = 5000;

/** The route peers serve blobs at (src/http/peer-blobs.ts). */
export const PEER_BLOBS = '/peer/v1/blobs';

/** Streams one source's body into `tmp`, hashing it; never more than `maxSize` bytes are kept. */
function fetchInto(s: Source, tmp: string, maxSize: number | undefined, timeoutMs: number) {
  return new Promise<{ sha256: string; size: number }>((resolve, reject) => {
    const mod = s.url.startsWith('https:') ? https : http;
    const req = mod.get(s.url, { headers: s.headers, timeout: timeoutMs }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return reject(new Error(`HTTP ${res.statusCode}`));
      }
      const hash = createHash('sha256');
      let size = 0;
      const tap = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          size += chunk.length;
          if (maxSize !== undefined && size > maxSize) return cb(new Error(`more than the ${maxSize} bytes recorded`));
          hash.update(chunk);
          cb(null, chunk);
        },
      });
      pipeline(res, tap, createWriteStream(tmp, { flags: 'wx', mode: 0o600 })).then(
        () => resolve({ sha256: hash.digest('hex'), size }),
        reject,
      );
    });
    req.on('timeout', () => req.destroy(new Error(`nothing received for ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

async function fsyncFile(p: string) {
  const fh = await open(p, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** The live peers (the record's writer first), then the origin. */
async function sources(d: PeerDeps, sha256: string, prefer?: string): Promise<Source[]> {
  const peers = (await listDaemons(d.store)).filter((p) => p.alive && p.serverId !== d.serverId && p.peerUrl);
  peers.sort((a, b) => Number(b.serverId === prefer) - Number(a.serverId === prefer));
  const out: Source[] = peers.map((p) => ({
    name: p.serverId,
    url: `${p.peerUrl!.replace(/\/+$/, '')}${PEER_BLOBS}/${sha256}`,
    headers: { authorization: `Bearer ${d.secret}` },
  }));
  if (d.origin) out.push({ name: 'origin', url: d.origin.replaceAll('{sha256}', sha256), headers: {} });
  return out;
}

/** Each source in turn until one gives bytes with this digest, which become the blob; BlobUnavailable if none. */
async function fetchBlob(d: PeerDeps, stats: Stats, sha256: string, size?: number, prefer?: string): Promise<string> {
  const { log, root } = d;
  const tmpDir = path.join(path.dirname(root), 'tmp');
  const list = await sources(d, sha256, prefer);
  const failed: string[] = [];
  await mkdir(tmpDir, { recursive: true, mode: 0o700 });
  for (const s of list) {
    // The upload temp name: a fetch a kill -9 interrupts is removed at the next start (removeStaleUploads).
    const tmp = path.join(tmpDir, `plinth-upload-${randomUUID()}.part`);
    const t0 = Date.now();
    stats.fetches++;
    try {
      const got = await fetchInto(s, tmp, size, d.timeoutMs ?? 30_000);
      if (got.sha256 !== sha256) {
        stats.failures++;
        log.error(
          { sha256, got: got.sha256, from: s.name, size: got.size },
          'blob fetched with the wrong sha256: discarded',
        );
        failed.push(`${s.name} sent bytes with sha256 ${got.sha256}`);
        await unlink(tmp).catch(() => {});
        continue;
      }
      await fsyncFile(tmp);
      const abs = await filesLock(root).withShared(() => adoptBlob(root, tmp, sha256));
      log.info({ sha256, from: s.name, size: got.size, ms: Date.now() - t0 }, 'blob fetched');
      return abs;
    } catch (err) {
      stats.failures++;
      await unlink(tmp).catch(() => {});
      log.warn({ sha256, from: s.name, err: (err as Error).message }, 'blob fetch failed; next source');
      failed.push(`${s.name}: ${(err as Error).message}`);
    }
  }
  throw new BlobUnavailable(
    list.length
      ? `no source gave the bytes of sha256 ${sha256} (${failed.join('; ')})`
      : `sha256 ${sha256} is on no live daemon reachable from here, and no --files-origin is set`,
  );
}

type Stats = { fetches: number; failures: number };

export function filePeers(d: PeerDeps): FilesCluster & { stats: { fetches: number; failures: number } } {
  const { store, log, root } = d;
  const inflight = new Map<string, Promise<string>>();
  const stats: Stats = { fetches: 0, failures: 0 };
  // Digests of files whose record another daemon wrote, by path and identity (the hash is not recomputed).
  const hashed = new Map<string, { key: string; sha256: string }>();

  // A blob no source gave, for a few seconds: requests for it (any client can send them) fail at once instead of
  // each asking every peer again.
  const unavailable = new Map<string, { at: number; err: BlobUnavailable }>();
  const ensureBlob = (sha256: string, size?: number, prefer?: string): Promise<string> => {
    const running = inflight.get(sha256);
    if (running) return running;
    const p = (async () => {
      const abs = blobAbs(root, sha256);
      if ((await stat(abs).catch(() => undefined))?.isFile()) return abs;
      const f = unavailable.get(sha256);
      if (f && Date.now() - f.at < FAILED_MS) throw f.err;
      unavailable.delete(sha256);
      return fetchBlob(d, stats, sha256, size, prefer).catch((err) => {
        if (err instanceof BlobUnavailable) {
          if (unavailable.size >= 1000) unavailable.clear();
          unavailable.set(sha256, { at: Date.now(), err });
        }
        throw err;
      });
    })().finally(() => inflight.delete(sha256));
    inflight.set(sha256, p);
    return p;
  };

  /** Whether the file at `abs` holds the record's bytes: the blob's own inode, else its hash (computed once). */
  const holds = async (abs: string, st: { ino: number; size: number; mtimeMs: number }, rec: FileRecord) => {
    if (st.size !== rec.size) return false;
    const b = await stat(blobAbs(root, rec.sha256)).catch(() => undefined);
    if (b?.ino === st.ino) return true;
    const key = `${st.ino}:${st.size}:${st.mtimeMs}`;
    const h = hashed.get(abs);
    if (h?.key === key) return h.sha256 === rec.sha256;
    const sha256 = await sha256File(abs);
    hashed.set(abs, { key, sha256 });
    return sha256 === rec.sha256;
  };

  /** A blob or its view by name: fetched when the inventory knows the digest (never for any other digest). */
  const resolveBlobRel = async (rel: string, sha256: string): Promise<string | undefined> => {
    if (await stat(path.join(root, rel)).catch(() => undefined)) return undefined;
    const rec = await digestRecord(store, sha256);
    // A digest a bootenv pins but no upload recorded (the origin may have it): fetched too, its size unknown.
    if (!rec && !(await pinnedDigests(store)).has(sha256)) return undefined;
    const blob = await ensureBlob(sha256, rec?.size, rec?.serverId);
    if (rel === blobRel(sha256)) return blob;
    return path.join(root, await ensureView(root, sha256, rel.slice(`.blobs/views/${sha256}/`.length)));
  };

  const localBlob = async (sha256: string): Promise<string | undefined> => {
    const abs = blobAbs(root, sha256);
    if ((await stat(abs).catch(() => undefined))?.isFile()) return abs;
    const { items } = await store.list('files', { filters: [{ field: 'sha256', value: sha256 }] });
    for (const { key, doc } of items) {
      const mine = (doc as FileRecord).serverId === d.serverId;
      if (!mine || inBlobStore(key)) continue;
      const info = await fileInfo(store, root, key).catch(() => undefined);
      const c = confineLexical(root, key);
      if (info?.sha256 !== sha256 || !c.ok) continue;
      return ingestPath(root, c.abs, sha256).catch(() => undefined);
    }
    return undefined;
  };

  return {
    serverId: d.serverId,
    secret: d.secret,
    stats,
    localBlob,
    ensureBlob: (sha256, size) => ensureBlob(sha256, size),
    async resolve(rel) {
      const named = digestOfBlobRel(rel);
      if (named) return resolveBlobRel(rel, named);
      const abs = path.join(root, rel);
      const st = await stat(abs).catch(() => undefined);
      const rec = await fileRecord(store, rel);
      if (!rec) {
        if (st?.isFile() && (await dropDeleted(root, abs, st)))
          log.info({ path: rel }, 'file deleted through another daemon: its copy here is removed');
        return undefined;
      }
      if (st && !st.isFile()) return undefined;
      // This daemon's own record: its disk is the truth, as on a lone daemon (fileInfo rehashes a changed file).
      if (st && (rec.serverId === undefined || rec.serverId === d.serverId)) return undefined;
      if (st && (await holds(abs, st, rec))) return undefined;
      await ensureBlob(rec.sha256, rec.size, rec.serverId);
      // Served as the blob's view: the path's own name (iPXE's initrd name, the media type) on the pinned bytes.
      return path.join(root, await ensureView(root, rec.sha256, rel));
    },
  };
}

/** The secret peers present, one for the inventory: made by the first daemon, read by the others. */
export async function peerSecret(store: Store): Promise<string> {
  const key = 'peer-secret';
  const read = async () => (await store.get('prefs', key))?.doc.secret as string | undefined;
  const have = await read();
  if (have) return have;
  try {
    await store.create('prefs', key, { secret: randomBytes(32).toString('base64url') });
  } catch (err) {
    if (!(err instanceof ConflictError)) throw err;
  }
  const made = await read();
  if (!made) throw new Error('the peer secret could not be read back from the inventory');
  return made;
}

/** `http://<listen address or, for a wildcard, the advertised address or host name>:<port>`. */
export function defaultPeerUrl(cfg: { httpAddress: string; advertiseAddress?: string }, port: number): string {
  const wild = ['', '0.0.0.0', '::', '[::]'].includes(cfg.httpAddress);
  const host = wild ? (cfg.advertiseAddress ?? os.hostname()) : cfg.httpAddress;
  return `http://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
}

export type FilePeersHandle = { url(port: number): string | undefined; close(): void };

/**
 * At start: on a shared inventory (PostgreSQL: the store has an event log) or with an origin, the files root
 * fetches what it lacks; a lone daemon without an origin is left as it was. Returns the URL to advertise.
 */
export async function startFilePeers(
  cfg: ClusterFilesConfig & { httpAddress: string; advertiseAddress?: string },
  d: { store: Store; log: Logger; serverId: string; filesDir: string },
): Promise<FilePeersHandle> {
  if (!d.store.events && !cfg.filesOrigin) return { url: () => undefined, close() {} };
  const secret = await peerSecret(d.store);
  setFilesCluster(d.filesDir, filePeers({ ...d, root: d.filesDir, secret, origin: cfg.filesOrigin }));
  return {
    url: (port) => (d.store.events ? (cfg.advertiseUrl ?? defaultPeerUrl(cfg, port)) : undefined),
    close: () => setFilesCluster(d.filesDir, undefined),
  };
}
