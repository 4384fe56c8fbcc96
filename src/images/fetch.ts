/**
 * Downloads one URL to a temp file while hashing it, for an import that must verify the bytes before keeping
 * them. A dropped connection is resumed with `Range: bytes=<got>-` (and `If-Range`, so a file that changed on
 * the server restarts from zero rather than splicing two versions); the hashes run over the bytes as they land,
 * so a resume never reads the file back. Whatever fails, the temp file is removed before the error reaches the
 * caller: an import leaves no file behind.
 */
import { createHash, type Hash, randomUUID } from 'node:crypto';
import { mkdir, open, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Algorithm } from './checksums.js';

export class DownloadError extends Error {}
/** The answer is, or announces, more bytes than the caller allows. */
export class TooLargeError extends DownloadError {}

export type Downloaded = { tmp: string; size: number; digests: Partial<Record<Algorithm, string>> };

export type DownloadOptions = {
  /** Digests to compute besides sha256 (the blob's name). */
  algorithms?: Algorithm[];
  /** Reconnects after a dropped connection (each resumes where the last stopped). */
  retries?: number;
  /** No byte for this long: the attempt is abandoned (and resumed if retries are left). */
  idleMs?: number;
  /** Refused beyond this size: a server streaming forever must not fill the data disk. */
  maxBytes?: number;
  onProgress?(bytes: number, total: number | undefined): void;
  signal?: AbortSignal;
};

/** The total size an answer promises: Content-Range's `/total`, else Content-Length (of a 200). */
function totalOf(r: Response, from: number): number | undefined {
  const cr = /\/(\d+)\s*$/.exec(r.headers.get('content-range') ?? '');
  if (cr) return Number(cr[1]);
  const cl = r.headers.get('content-length');
  return cl !== null && /^\d+$/.test(cl) ? from + Number(cl) : undefined;
}

export async function download(url: string, tmpDir: string, o: DownloadOptions = {}): Promise<Downloaded> {
  const u = new URL(url);
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new DownloadError(`${url}: only http and https URLs are fetched`);
  await mkdir(tmpDir, { recursive: true, mode: 0o700 });
  const tmp = path.join(tmpDir, `plinth-upload-${randomUUID()}.part`);
  const fh = await open(tmp, 'wx', 0o600);
  const algs = [...new Set<Algorithm>(['sha256', ...(o.algorithms ?? [])])];
  let hashes: Map<Algorithm, Hash> = new Map();
  let got = 0;
  let total: number | undefined;
  let validator: string | undefined;
  const restart = async () => {
    hashes = new Map(algs.map((a) => [a, createHash(a)]));
    got = 0;
    await fh.truncate(0);
  };
  await restart();
  const retries = o.retries ?? 3;
  let lastErr = '';
  try {
    for (let attempt = 0; attempt <= retries; attempt++) {
      const idle = new AbortController();
      const signal = o.signal ? AbortSignal.any([o.signal, idle.signal]) : idle.signal;
      const headers: Record<string, string> = {};
      if (got > 0) {
        headers.range = `bytes=${got}-`;
        if (validator) headers['if-range'] = validator;
      }
      let r: Response;
      try {
        r = await fetch(url, { headers, signal, redirect: 'follow' });
      } catch (err) {
        if (o.signal?.aborted) throw new DownloadError(`${url}: the import was cancelled`);
        lastErr = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
        continue;
      }
      if (got > 0 && r.status === 206 && new RegExp(`^bytes ${got}-`).test(r.headers.get('content-range') ?? '')) {
        // resumed: append
      } else if (r.status === 200) {
        if (got > 0) await restart(); // the server ignored Range, or the file changed (If-Range): from zero
      } else {
        await r.body?.cancel().catch(() => {});
        throw new DownloadError(`${url} answered HTTP ${r.status}${got > 0 ? ` to a resume at byte ${got}` : ''}`);
      }
      validator = r.headers.get('etag') ?? r.headers.get('last-modified') ?? validator;
      total = totalOf(r, got) ?? total;
      if (o.maxBytes !== undefined && total !== undefined && total > o.maxBytes)
        throw new TooLargeError(`${url} is ${total} bytes, more than the ${o.maxBytes} allowed`);
      let timer = setTimeout(() => idle.abort(), o.idleMs ?? 30_000);
      try {
        for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
          clearTimeout(timer);
          timer = setTimeout(() => idle.abort(), o.idleMs ?? 30_000);
          if (o.maxBytes !== undefined && got + chunk.length > o.maxBytes)
            throw new TooLargeError(`${url} sent more than the ${o.maxBytes} bytes allowed`);
          await fh.write(chunk, 0, chunk.length, got);
          for (const h of hashes.values()) h.update(chunk);
          got += chunk.length;
          o.onProgress?.(got, total);
        }
      } catch (err) {
        if (err instanceof DownloadError) throw err;
        if (o.signal?.aborted) throw new DownloadError(`${url}: the import was cancelled`);
        lastErr = idle.signal.aborted ? 'no data for too long' : (err as Error).message;
        continue;
      } finally {
        clearTimeout(timer);
      }
      if (total !== undefined && got < total) {
        lastErr = `the connection ended at byte ${got} of ${total}`;
        continue;
      }
      await fh.sync();
      await fh.close();
      const digests: Partial<Record<Algorithm, string>> = {};
      for (const [a, h] of hashes) digests[a] = h.digest('hex');
      return { tmp, size: got, digests };
    }
    throw new DownloadError(
      `download of ${url} failed after ${retries + 1} attempts (${got} bytes${total !== undefined ? ` of ${total}` : ''}): ${lastErr}`,
    );
  } catch (err) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw err;
  }
}
