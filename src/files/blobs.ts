/**
 * The content-addressed blob store under the files root: every uploaded or imported file is kept once, under its
 * sha256, at `.blobs/sha256/<first 2 hex>/<digest>`, read-only. The operator's paths (`lab/vmlinuz`) are hard links
 * to a blob: /files and TFTP serve a path as they always did, a PUT moves the path to another blob, and the blob a
 * bootenv pins stays what it was (a bootenv's artifacts name blobs, not paths). Blobs nothing uses are removed only
 * by `gc`, which runs alone (uploads and imports hold the lock shared, gc exclusive) and re-reads the pins before it
 * deletes, so a bootenv created while it ran keeps its blobs.
 */
import { randomUUID } from 'node:crypto';
import { chmod, link, lstat, mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { filesCluster } from './cluster.js';

export const BLOB_DIR = '.blobs';
const SHA = /^[0-9a-f]{64}$/;

/** The blob's path relative to the files root (what /files/<rel> and TFTP serve). */
export function blobRel(sha256: string): string {
  if (!SHA.test(sha256)) throw new Error(`not a sha256 digest: ${sha256}`);
  return `${BLOB_DIR}/sha256/${sha256.slice(0, 2)}/${sha256}`;
}

export function blobAbs(root: string, sha256: string): string {
  return path.join(root, blobRel(sha256));
}

/**
 * A pinned artifact under its own name, for a bootenv whose path has since moved on to other bytes:
 * `.blobs/views/<digest>/<path>`, a hard link to the blob. The name keeps the path's last segment, which iPXE
 * gives the kernel as the initrd's name (`initrd=initrd.gz`), and it is shared by every bootenv pinning that digest
 * at that path.
 */
export function viewRel(sha256: string, rel: string): string {
  if (!SHA.test(sha256)) throw new Error(`not a sha256 digest: ${sha256}`);
  return `${BLOB_DIR}/views/${sha256}/${rel}`;
}

/** The digest a blob or view path names, or undefined for any other path. */
export function digestOfBlobRel(rel: string): string | undefined {
  const m = /^\.blobs\/sha256\/([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(rel);
  if (m) return m[2]!.startsWith(m[1]!) ? m[2] : undefined;
  return /^\.blobs\/views\/([0-9a-f]{64})\/[^/]/.exec(rel)?.[1];
}

/**
 * Makes (or finds) the view of a present blob; returns its path relative to the root. On a shared inventory a blob
 * this daemon lacks still gets its view's name: the first request for it fetches the blob (src/files/peers.ts).
 */
export async function ensureView(root: string, sha256: string, rel: string): Promise<string> {
  const v = viewRel(sha256, rel);
  const abs = path.join(root, v);
  const blob = blobAbs(root, sha256);
  const absent = filesCluster(root) ? () => undefined : (err: unknown) => Promise.reject(err);
  const [a, b] = await Promise.all([stat(abs).catch(() => undefined), stat(blob).catch(absent)]);
  if (!b) return v;
  if (a && a.ino === b.ino && a.dev === b.dev) return v;
  await mkdir(path.dirname(abs), { recursive: true, mode: 0o700 });
  await linkPath(blob, abs);
  return v;
}

/** Whether a path relative to the root lies in the blob store (never listed, never uploaded to by path). */
export function inBlobStore(rel: string): boolean {
  return rel === BLOB_DIR || rel.startsWith(`${BLOB_DIR}/`);
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Moves a complete, fsynced temp file (on the same file system) into the store as the blob `sha256`. A blob that
 * is already there is kept (same digest, same bytes) and the temp file dropped: two uploads of the same content
 * end with one blob and neither sees a torn file, because a blob appears only by rename(2).
 */
export async function adoptBlob(root: string, tmp: string, sha256: string): Promise<string> {
  const abs = blobAbs(root, sha256);
  await mkdir(path.dirname(abs), { recursive: true, mode: 0o700 });
  const there = await stat(abs).catch(() => undefined);
  if (there?.isFile()) {
    await unlink(tmp).catch(() => {});
    return abs;
  }
  // Owner only (boot files may carry secrets). Paths are hard links to the blob: a path rewritten in place (not
  // replaced through the API or by mv) alters the blob too, which readiness and /files then report as corrupt.
  await chmod(tmp, 0o600);
  await rename(tmp, abs);
  await fsyncDir(path.dirname(abs));
  return abs;
}

/**
 * Points `pathAbs` at the blob: a hard link made under a temp name beside it, then renamed over it, so a reader of
 * the path sees the old file or the new one, never a missing or half-written one.
 */
export async function linkPath(blob: string, pathAbs: string): Promise<void> {
  const dir = path.dirname(pathAbs);
  const tmp = path.join(dir, `.plinth-link-${randomUUID()}`);
  await link(blob, tmp);
  try {
    await rename(tmp, pathAbs);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await fsyncDir(dir);
}

/**
 * A file already under the root with a known digest (copied in by hand, or uploaded before blobs existed) becomes
 * a blob too: the blob is a hard link to it, so nothing is copied. Returns the blob's absolute path.
 */
export async function ingestPath(root: string, pathAbs: string, sha256: string): Promise<string> {
  const abs = blobAbs(root, sha256);
  if ((await stat(abs).catch(() => undefined))?.isFile()) return abs;
  await mkdir(path.dirname(abs), { recursive: true, mode: 0o700 });
  await link(pathAbs, abs).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
  await fsyncDir(path.dirname(abs));
  return abs;
}

/** One writer-side lock for the files root: many uploads at once, or one gc alone. */
export class FilesLock {
  private shared = 0;
  private exclusive = false;
  private waiters: (() => void)[] = [];

  private wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  async withShared<T>(fn: () => Promise<T>): Promise<T> {
    while (this.exclusive) await new Promise<void>((r) => this.waiters.push(r));
    this.shared++;
    try {
      return await fn();
    } finally {
      this.shared--;
      this.wake();
    }
  }

  async withExclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.exclusive || this.shared > 0) await new Promise<void>((r) => this.waiters.push(r));
    this.exclusive = true;
    try {
      return await fn();
    } finally {
      this.exclusive = false;
      this.wake();
    }
  }
}

const locks = new Map<string, FilesLock>();
/** The lock of one files root (one per daemon: every writer of the root goes through this process). */
export function filesLock(root: string): FilesLock {
  const l = locks.get(root) ?? new FilesLock();
  locks.set(root, l);
  return l;
}

export type GcResult = { removed: { sha256: string; size: number }[]; freedBytes: number; kept: number };

/** The inodes of every operator path under the root (not the blob store): a blob one of them links is in use. */
async function linkedInodes(root: string): Promise<Set<string>> {
  const seen = new Set<string>();
  const walk = async (dir: string) => {
    const entries = await readdir(path.join(root, dir), { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const rel = dir ? `${dir}/${e.name}` : e.name;
      if (inBlobStore(rel)) continue;
      if (e.isDirectory()) await walk(rel);
      else if (e.isFile()) {
        const st = await lstat(path.join(root, rel)).catch(() => undefined);
        if (st) seen.add(`${st.dev}:${st.ino}`);
      }
    }
  };
  await walk('');
  return seen;
}

async function allBlobs(root: string): Promise<{ sha256: string; abs: string; key: string; size: number }[]> {
  const base = path.join(root, BLOB_DIR, 'sha256');
  const out: { sha256: string; abs: string; key: string; size: number }[] = [];
  for (const pre of await readdir(base).catch(() => [] as string[])) {
    for (const name of await readdir(path.join(base, pre)).catch(() => [] as string[])) {
      if (!SHA.test(name)) continue;
      const abs = path.join(base, pre, name);
      const st = await lstat(abs).catch(() => undefined);
      if (st?.isFile()) out.push({ sha256: name, abs, key: `${st.dev}:${st.ino}`, size: st.size });
    }
  }
  return out;
}

/**
 * Mark and sweep, alone on the root: a blob is used when a bootenv pins its digest or an operator path links it.
 * `pinned` is asked twice, before the mark and again right before the sweep, and a blob pinned by then is kept.
 */
export async function collectGarbage(root: string, pinned: () => Promise<Set<string>>): Promise<GcResult> {
  return filesLock(root).withExclusive(async () => {
    const before = await pinned();
    const linked = await linkedInodes(root);
    const candidates = (await allBlobs(root)).filter((b) => !before.has(b.sha256) && !linked.has(b.key));
    const now = await pinned();
    const removed: GcResult['removed'] = [];
    for (const b of candidates) {
      if (now.has(b.sha256)) continue;
      try {
        // Its views first: a hard link left there would keep the bytes on disk.
        await rm(path.join(root, BLOB_DIR, 'views', b.sha256), { recursive: true, force: true });
        await unlink(b.abs);
        removed.push({ sha256: b.sha256, size: b.size });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    const total = (await allBlobs(root)).length;
    return { removed, freedBytes: removed.reduce((n, r) => n + r.size, 0), kept: total };
  });
}
