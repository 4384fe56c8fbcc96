/**
 * What the TFTP server serves. The server only knows `TftpSource`: a path (as the client sent it) and the client's
 * address go in; a readable file of known size, or a reason to refuse, comes out. A path can therefore be answered by
 * a function (per-machine rendered content) as well as by a file under a root directory.
 */
import type { FileHandle } from 'node:fs/promises';
import { open, stat } from 'node:fs/promises';
import { filesCluster } from '../files/cluster.js';
import { confine } from '../files/confine.js';

export type TftpClient = { address: string; port: number };

export type TftpFile = {
  status: 'ok';
  /**
   * Identity of the content, when the source knows one: transfers of files with the same id share their DATA packets
   * (layout.ts). Files whose bytes may differ must never share an id.
   */
  id?: string;
  /** Exact byte size: RFC 2349 tsize and the number of blocks come from it. */
  size: number;
  /** Bytes [position, position+length) clamped to the size. The returned Buffer must not be modified by callers. */
  read(position: number, length: number): Promise<Buffer>;
  /**
   * An open descriptor of the same bytes, valid until close(), when the source has one: the server may then read
   * positionally by itself (layout.ts layoutPacketsNow) and uses read() only for what is not in the page cache.
   */
  fd?: number;
  /**
   * The largest blksize to grant this transfer (e.g. a firmware quirk of the machine asking: some UEFI TFTP clients
   * mis-negotiate large blocks); absent, the server's maximum applies. It travels with the file, so the cap is the one
   * decided for this very request.
   */
  blksizeCap?: number;
  /** Releases the file; called exactly once per successful open. */
  close(): void;
};

/** `reason` is for the log only: it may hold absolute paths and must never reach the client. */
export type OpenResult = TftpFile | { status: 'not-found'; reason: string } | { status: 'refused'; reason: string };

export interface TftpSource {
  open(path: string, client: TftpClient): Promise<OpenResult>;
}

/** A file whose content is already in memory (rendered scripts, tests). */
export function bufferFile(content: Buffer | string): TftpFile {
  const buf = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
  return {
    status: 'ok',
    size: buf.length,
    read: async (position, length) => buf.subarray(position, Math.min(buf.length, position + length)),
    close: () => {},
  };
}

/** Fixed in-memory files, by exact path. */
export function bufferSource(files: Map<string, Buffer | string> | Record<string, Buffer | string>): TftpSource {
  const map = files instanceof Map ? files : new Map(Object.entries(files));
  return {
    async open(path) {
      const content = map.get(path);
      if (content === undefined) return { status: 'not-found', reason: 'not in buffer source' };
      return bufferFile(content);
    },
  };
}

/**
 * Content computed per request: `render` returns the bytes for this path and client, or undefined when it has none
 * (the next source in a chain is asked). This is the hook for per-machine rendered files.
 */
export function functionSource(
  render: (path: string, client: TftpClient) => Promise<Buffer | string | undefined> | Buffer | string | undefined,
): TftpSource {
  return {
    async open(path, client) {
      const content = await render(path, client);
      if (content === undefined) return { status: 'not-found', reason: 'no rendered content' };
      return bufferFile(content);
    },
  };
}

/**
 * Sources tried in order; the first that has the file wins. A refusal (e.g. a traversal attempt) is remembered and
 * reported if no later source has the file, so a path refused by a file root is not reported as merely missing.
 */
export function chainSources(sources: TftpSource[]): TftpSource {
  return {
    async open(path, client) {
      let refused: OpenResult | undefined;
      const reasons: string[] = [];
      for (const s of sources) {
        const r = await s.open(path, client);
        if (r.status === 'ok') return r;
        if (r.status === 'refused' && refused === undefined) refused = r;
        reasons.push(r.reason);
      }
      return refused ?? { status: 'not-found', reason: reasons.join('; ') || 'no sources' };
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Files under a root directory, shared between transfers.

export type FileRootOptions = {
  /** Bytes per cached chunk (read unit from disk). */
  chunkBytes?: number;
  /** Chunks kept per open file: clients booting together read nearly the same offsets, so a few suffice. */
  chunksPerFile?: number;
};

type Shared = {
  key: string;
  fh: FileHandle;
  size: number;
  refs: number;
  /** Insertion order = age; a small LRU of in-flight or finished chunk reads, shared by all readers. */
  chunks: Map<number, Promise<Buffer>>;
};

/**
 * Streams files under `root` with positional reads from one FileHandle per file, shared (ref-counted) by every
 * transfer of the same file, with a small chunk cache so N clients booting at once do not read it N times.
 * Nothing is read whole into memory; tsize comes from fstat.
 */
export function fileRootSource(root: string, opts: FileRootOptions = {}): TftpSource & { openFiles(): number } {
  const chunkBytes = opts.chunkBytes ?? 256 * 1024;
  const chunksPerFile = opts.chunksPerFile ?? 16;
  const shared = new Map<string, Shared>();
  const opening = new Map<string, Promise<Shared>>();

  function chunk(s: Shared, idx: number): Promise<Buffer> {
    let p = s.chunks.get(idx);
    if (p !== undefined) {
      // Refresh its LRU position.
      s.chunks.delete(idx);
      s.chunks.set(idx, p);
      return p;
    }
    const start = idx * chunkBytes;
    const len = Math.min(chunkBytes, s.size - start);
    p = (async () => {
      const buf = Buffer.allocUnsafe(len);
      let off = 0;
      while (off < len) {
        const { bytesRead } = await s.fh.read(buf, off, len - off, start + off);
        if (bytesRead === 0) throw new Error('file shrank while being served');
        off += bytesRead;
      }
      return buf;
    })();
    // A failed read must not stay cached.
    p.catch(() => s.chunks.get(idx) === p && s.chunks.delete(idx));
    s.chunks.set(idx, p);
    while (s.chunks.size > chunksPerFile) s.chunks.delete(s.chunks.keys().next().value as number);
    return p;
  }

  async function read(s: Shared, position: number, length: number): Promise<Buffer> {
    const end = Math.min(s.size, position + length);
    if (position >= end) return Buffer.alloc(0);
    const first = Math.floor(position / chunkBytes);
    const last = Math.floor((end - 1) / chunkBytes);
    if (first === last) {
      const c = await chunk(s, first);
      return c.subarray(position - first * chunkBytes, end - first * chunkBytes);
    }
    const out = Buffer.allocUnsafe(end - position);
    const parts = await Promise.all(Array.from({ length: last - first + 1 }, (_, i) => chunk(s, first + i)));
    let off = 0;
    for (let i = 0; i < parts.length; i++) {
      const cStart = (first + i) * chunkBytes;
      const from = Math.max(position, cStart) - cStart;
      const to = Math.min(end, cStart + parts[i].length) - cStart;
      off += parts[i].copy(out, off, from, to);
    }
    return out;
  }

  function release(s: Shared): void {
    if (--s.refs > 0) return;
    if (shared.get(s.key) === s) shared.delete(s.key);
    s.chunks.clear();
    s.fh.close().catch(() => {});
  }

  async function acquire(abs: string): Promise<Shared | 'not-file'> {
    const st = await stat(abs);
    if (!st.isFile()) return 'not-file';
    // Identity includes mtime and size: a replaced or rewritten file gets a fresh handle and cache.
    const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
    const existing = shared.get(key);
    if (existing !== undefined) {
      existing.refs++;
      return existing;
    }
    let pending = opening.get(key);
    if (pending === undefined) {
      pending = (async () => {
        const fh = await open(abs, 'r');
        const s: Shared = { key, fh, size: st.size, refs: 0, chunks: new Map() };
        shared.set(key, s);
        return s;
      })();
      opening.set(key, pending);
      pending.finally(() => opening.delete(key)).catch(() => {});
    }
    const s = await pending;
    s.refs++;
    return s;
  }

  return {
    openFiles: () => shared.size,
    async open(requested) {
      let c: Awaited<ReturnType<typeof confine>>;
      try {
        c = await confine(root, requested);
      } catch (err) {
        // The root itself is missing or unreadable (e.g. assets not fetched yet): a clear log line, "not found" out.
        const code = (err as NodeJS.ErrnoException).code ?? String(err);
        return { status: 'not-found', reason: `TFTP root ${root} cannot be resolved (${code})` };
      }
      if (!c.ok) return { status: 'refused', reason: c.reason };
      let s: Shared | 'not-file';
      try {
        // Several daemons (src/files/cluster.ts): a file the inventory knows but this disk lacks is fetched first.
        s = await acquire((await filesCluster(root)?.resolve(c.rel)) ?? c.abs);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') return { status: 'not-found', reason: `${c.abs} does not exist` };
        // Out of descriptors is temporary, not a refusal: thrown, so the server leaves the request unanswered (the
        // client retries) instead of sending an ERROR that makes firmware abort the boot.
        if (code === 'EMFILE' || code === 'ENFILE') throw err;
        return { status: 'refused', reason: `${c.abs}: ${code ?? String(err)}` };
      }
      if (s === 'not-file') return { status: 'refused', reason: `${c.abs} is not a regular file` };
      const file = s;
      let closed = false;
      return {
        status: 'ok',
        id: `${root}\0${file.key}`,
        size: file.size,
        fd: file.fh.fd,
        read: (position, length) => read(file, position, length),
        close: () => {
          if (closed) return;
          closed = true;
          release(file);
        },
      };
    },
  };
}

/**
 * Thrown by a source that cannot answer now (its render queue is full): the request goes unanswered, as when
 * descriptors run out, so the firmware repeats it a moment later. An ERROR would make most PXE ROMs give up.
 */
export class SourceBusy extends Error {
  readonly code = 'EBUSY';
}
