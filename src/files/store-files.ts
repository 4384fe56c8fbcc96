import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Store } from '../store/store.js';
import { adoptBlob, blobAbs, blobRel, digestOfBlobRel, filesLock, inBlobStore, linkPath } from './blobs.js';
import { filesCluster } from './cluster.js';
import { type Confined, confine } from './confine.js';

/** Metadata of one file under <data-dir>/files, as the API lists it. */
export type FileInfo = { path: string; size: number; sha256: string; modifiedAt: string };
/**
 * What the inventory's `files` kind holds per path: the metadata above, and `mtimeMs` of the copy that was hashed
 * (a cache key, meaningful only on the disk of the daemon that wrote it: `serverId`, set on a shared inventory).
 */
export type FileRecord = FileInfo & { mtimeMs: number; serverId?: string };

const publicInfo = (r: FileRecord): FileInfo => ({
  path: r.path,
  size: r.size,
  sha256: r.sha256,
  modifiedAt: r.modifiedAt,
});

/** A stored `files` document as a file record, or undefined when it is not one (no digest). */
const recordOf = (doc: unknown): FileRecord | undefined => {
  const d = doc as FileRecord | undefined;
  return typeof d?.sha256 === 'string' ? d : undefined;
};

export async function fileRecord(store: Store, rel: string): Promise<FileRecord | undefined> {
  return recordOf((await store.get('files', rel))?.doc);
}

/** The records of those of `rels` that have one, by path: one read where the store has `getMany`. */
export async function fileRecords(store: Store, rels: readonly string[]): Promise<Map<string, FileRecord>> {
  const found = new Map<string, FileRecord>();
  if (store.getMany) {
    for (const s of await store.getMany('files', rels)) {
      const rec = recordOf(s.doc);
      if (rec) found.set(s.key, rec);
    }
  } else {
    const recs = await Promise.all(rels.map(async (r) => [r, await fileRecord(store, r)] as const));
    for (const [r, rec] of recs) if (rec) found.set(r, rec);
  }
  return found;
}

/**
 * What the inventory records of a digest: its blob's record (written at upload on a shared inventory), else the
 * record of a path holding it (an upload made before blobs were recorded), as the blob's.
 */
export async function digestRecord(store: Store, sha256: string): Promise<FileRecord | undefined> {
  const b = blobRel(sha256);
  const own = await fileRecord(store, b);
  if (own) return own;
  const { items } = await store.list('files', { filters: [{ field: 'sha256', value: sha256 }], limit: 1 });
  const d = items[0]?.doc as FileRecord | undefined;
  return d ? { ...d, path: b } : undefined;
}

export class FileRefused extends Error {}
export class FileDigestMismatch extends Error {}

async function confineOrThrow(root: string, rel: string): Promise<Extract<Confined, { ok: true }>> {
  const c = await confine(root, rel);
  if (!c.ok) throw new FileRefused(`path '${rel}' is refused: ${c.reason}`);
  return c;
}

async function writablePath(root: string, rel: string): Promise<Extract<Confined, { ok: true }>> {
  const c = await confineOrThrow(root, rel);
  if (inBlobStore(c.rel)) throw new FileRefused(`path '${rel}' is refused: the blob store is written only by Plinth`);
  return c;
}

async function fsyncPath(p: string) {
  const fh = await open(p, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Temp files of uploads in flight: `plinth-upload-<uuid>.part` in <data-dir>/tmp (older versions: `upload-<uuid>`).
 * A kill -9 mid-upload leaves one behind; removeStaleUploads clears them at the next start.
 */
const TEMP_RE = /^(plinth-upload-[0-9a-f-]{36}\.part|upload-[0-9a-f-]{36})$/;

/**
 * Removes the upload temp files in `tmpDir` last written before `before` (the daemon's start: no upload of this
 * run is older). Anything else in the directory is left alone. Returns the names removed.
 */
export async function removeStaleUploads(tmpDir: string, before: Date): Promise<string[]> {
  const names = await readdir(tmpDir).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const n of names) {
    if (!TEMP_RE.test(n)) continue;
    const p = path.join(tmpDir, n);
    const st = await stat(p).catch(() => undefined);
    if (!st?.isFile() || st.mtimeMs >= before.getTime()) continue;
    await unlink(p).then(
      () => removed.push(n),
      () => {},
    );
  }
  return removed;
}

/**
 * Stream `body` into <root>/<rel>: written to a temp file beside the root (same filesystem), hashed on the way,
 * fsynced, kept as the blob of its digest (src/files/blobs.ts), and the path pointed at that blob by an atomic
 * rename. A failed or interrupted upload, or a digest that does not match `expectSha256`, leaves nothing behind.
 */
export async function writeFileAtomically(
  store: Store,
  root: string,
  tmpDir: string,
  rel: string,
  body: Readable,
  expectSha256?: string,
): Promise<{ info: FileInfo; created: boolean }> {
  const c = await writablePath(root, rel);
  await mkdir(tmpDir, { recursive: true, mode: 0o700 });
  const tmp = path.join(tmpDir, `plinth-upload-${randomUUID()}.part`);
  const hash = createHash('sha256');
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  try {
    await pipeline(body, tap, createWriteStream(tmp, { flags: 'wx', mode: 0o600 }));
    const sha256 = hash.digest('hex');
    if (expectSha256 && expectSha256.toLowerCase() !== sha256) {
      throw new FileDigestMismatch(`sha256 of the upload is ${sha256}, not ${expectSha256}: the file was not kept`);
    }
    await fsyncPath(tmp);
    return await adoptAt(store, root, c, tmp, sha256, size);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
}

/**
 * A complete, fsynced temp file with a known digest becomes the blob of that digest and the content of `rel`.
 * Under the files lock (shared): gc never runs between the blob appearing and the path linking it.
 */
export async function adoptFile(
  store: Store,
  root: string,
  rel: string,
  tmp: string,
  sha256: string,
  size: number,
): Promise<{ info: FileInfo; created: boolean }> {
  return adoptAt(store, root, await writablePath(root, rel), tmp, sha256, size);
}

async function adoptAt(
  store: Store,
  root: string,
  c: Extract<Confined, { ok: true }>,
  tmp: string,
  sha256: string,
  size: number,
): Promise<{ info: FileInfo; created: boolean }> {
  return filesLock(root).withShared(async () => {
    // Owner only: uploads are the operator's boot files, sometimes with secrets baked in (an initrd, a config).
    await mkdir(path.dirname(c.abs), { recursive: true, mode: 0o700 });
    await confineOrThrow(root, c.rel); // the directories just made must not have raced a symlink in
    const blob = await adoptBlob(root, tmp, sha256);
    const created = !(await stat(c.abs).then(
      () => true,
      () => false,
    ));
    // The record before the link (the path becomes the blob's inode, so its dates are the blob's): on a shared
    // inventory a linked path without a record is one deleted through another daemon (dropDeleted).
    const st = await stat(blob);
    const info: FileInfo = { path: c.rel, size, sha256, modifiedAt: st.mtime.toISOString() };
    const cl = filesCluster(root);
    const mine = cl ? { serverId: cl.serverId } : {};
    const record = () => store.putBatched('files', c.rel, { ...info, mtimeMs: st.mtimeMs, ...mine });
    if (!cl) {
      await linkPath(blob, c.abs);
      await record();
      return { info, created };
    }
    // Several daemons: the digest is recorded as content the cluster holds, so a peer asked for it (a pinned
    // artifact's blob URL, or this path) knows it exists and fetches it (src/files/peers.ts).
    const b = blobRel(sha256);
    if (!(await fileRecord(store, b)))
      await store.putBatched('files', b, { ...info, path: b, mtimeMs: st.mtimeMs, ...mine });
    const before = (await store.get('files', c.rel))?.doc ?? null;
    await record();
    await linkPath(blob, c.abs).catch(async (err) => {
      await store.putBatched('files', c.rel, before);
      throw err;
    });
    return { info, created };
  });
}

export async function sha256File(abs: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(abs, { highWaterMark: 1 << 20 }), h);
  return h.digest('hex');
}

/**
 * Size, digest and date of one file; the digest is cached in the store and recomputed when the file changed.
 * On a shared inventory (src/files/cluster.ts) the record another daemon wrote is the truth for its path: this
 * daemon serves those bytes (fetching them when its disk lacks them or holds others), so it reports them, and it
 * never overwrites that record with a hash of its own disk (a stale copy would undo the other daemon's upload).
 */
export async function fileInfo(store: Store, root: string, rel: string): Promise<FileInfo | undefined> {
  const c = await confineOrThrow(root, rel);
  const cl = filesCluster(root);
  const st = await stat(c.abs).catch(() => undefined);
  if (!st && !cl) return undefined;
  const cached = await fileRecord(store, c.rel);
  if (!st) {
    const named = cl && !cached ? digestOfBlobRel(c.rel) : undefined;
    const rec = named ? await digestRecord(store, named) : cached;
    return rec ? publicInfo(rec) : undefined;
  }
  if (!st.isFile()) return undefined;
  if (!cached && cl && !inBlobStore(c.rel) && (await dropDeleted(root, c.abs, st))) return undefined;
  if (cl && cached?.serverId !== undefined && cached.serverId !== cl.serverId) return publicInfo(cached);
  if (cached && cached.size === st.size && cached.mtimeMs === st.mtimeMs) return publicInfo(cached);
  const info: FileInfo = {
    path: c.rel,
    size: st.size,
    sha256: await sha256File(c.abs),
    modifiedAt: st.mtime.toISOString(),
  };
  await store.putBatched('files', c.rel, { ...info, mtimeMs: st.mtimeMs, ...(cl ? { serverId: cl.serverId } : {}) });
  return info;
}

/** Every regular file under the root (symlinks are not followed: they may point anywhere). */
export async function listFiles(store: Store, root: string): Promise<FileInfo[]> {
  const out: FileInfo[] = [];
  const walk = async (dir: string) => {
    const entries = await readdir(path.join(root, dir), { withFileTypes: true }).catch(() => []);
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const rel = dir ? `${dir}/${e.name}` : e.name;
      if (inBlobStore(rel)) continue; // blobs are listed by digest (GET /bootenvs/:name/status, gc), not as paths
      if (e.isDirectory()) await walk(rel);
      else if (e.isFile()) {
        const i = await fileInfo(store, root, rel);
        if (i) out.push(i);
      }
    }
  };
  await walk('');
  if (!filesCluster(root)) return out;
  // Several daemons: what the others hold is listed too (this daemon fetches it when asked for it).
  const here = new Set(out.map((f) => f.path));
  for (const r of (await store.list('files')).items) {
    const d = r.doc as FileRecord;
    if (inBlobStore(r.key) || here.has(r.key) || typeof d.sha256 !== 'string') continue;
    out.push(publicInfo(d));
  }
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

/**
 * On a shared inventory, a path with no record that is a link of its blob here (it came in through the API or an
 * import, which write the record before the link) was deleted through another daemon: it is removed here, lazily,
 * when next asked for. A file copied in by hand is no link of a blob (until an artifact check takes it in, after
 * recording it) and is kept.
 */
export async function dropDeleted(root: string, abs: string, st: { nlink: number; ino: number }): Promise<boolean> {
  if (st.nlink < 2) return false;
  const blob = await stat(blobAbs(root, await sha256File(abs))).catch(() => undefined);
  if (blob?.ino !== st.ino) return false;
  await unlink(abs).catch(() => {});
  return true;
}

/**
 * Removes the path only: its blob stays (a bootenv may pin it) until `plinth files gc`. On a shared inventory the
 * record goes too, for every daemon: a path only another daemon holds is removed by removing its record, and the
 * daemons that fetched a copy stop serving it on its next request (no record: 404, src/files/peers.ts).
 */
export async function removeFile(store: Store, root: string, rel: string): Promise<boolean> {
  const c = await writablePath(root, rel);
  try {
    await unlink(c.abs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      if (!filesCluster(root) || !(await fileRecord(store, c.rel))) return false;
      await store.putBatched('files', c.rel, null);
      return true;
    }
    if ((err as NodeJS.ErrnoException).code === 'EISDIR' || (err as NodeJS.ErrnoException).code === 'EPERM') {
      throw new FileRefused(`'${rel}' is a directory`);
    }
    throw err;
  }
  await store.putBatched('files', c.rel, null);
  return true;
}
