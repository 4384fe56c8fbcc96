import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { filePath, networkError, problemOf } from './client.js';
import type { CliContext } from './context.js';
import { ApiError, UsageError } from './errors.js';
import { humanBytes, print } from './output.js';
import { progress } from './progress.js';
import { tlsFailure } from './tls.js';

export type FileInfo = { path: string; size: number; sha256: string; url?: string };

const HEX64 = /^[0-9a-fA-F]{64}$/;

/** A counting pass-through: progress without a second read. */
export function counter(onChunk: (chunk: Buffer) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      onChunk(chunk);
      cb(null, chunk);
    },
  });
}

/** One streaming pass over a local file for its sha256. */
export async function sha256File(ctx: CliContext, local: string, size: number): Promise<string> {
  const h = createHash('sha256');
  const bar = progress(ctx.io, `hashing ${path.basename(local)}`, size);
  await pipeline(
    createReadStream(local),
    counter((c) => {
      h.update(c);
      bar.add(c.length);
    }),
    async (src: AsyncIterable<Buffer>) => {
      for await (const _ of src);
    },
    { signal: ctx.signal },
  );
  bar.done();
  return h.digest('hex');
}

/**
 * PUT a stream to /api/v1/files/REMOTE with node:http: a body of any size is never held in memory, the length
 * is declared when known, and the daemon's answer is read even when it comes before the body is all sent.
 */
export function putStream(
  ctx: CliContext,
  remote: string,
  source: Readable,
  opts: { size?: number; sha256?: string; label: string },
): Promise<FileInfo> {
  const { client } = ctx;
  const url = new URL(client.url(`/files/${filePath(remote)}`));
  const headers: Record<string, string> = {
    ...client.authHeaders(),
    'content-type': 'application/octet-stream',
    accept: 'application/json',
  };
  if (opts.size !== undefined) headers['content-length'] = String(opts.size);
  if (opts.sha256) headers['x-checksum-sha256'] = opts.sha256.toLowerCase();
  const bar = progress(ctx.io, opts.label, opts.size);
  return new Promise<FileInfo>((resolve, reject) => {
    let settled = false;
    let answered = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      fn();
    };
    const req = (url.protocol === 'https:' ? https : http).request(url, {
      method: 'PUT',
      headers,
      signal: ctx.signal,
      agent: url.protocol === 'https:' ? client.agent : undefined,
    });
    req.on('response', (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => settle(() => reject(networkError(err, client.base))));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: any;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300 && body && typeof body.sha256 === 'string') {
          bar.done();
          return settle(() => resolve(body as FileInfo));
        }
        const { detail, errors } = problemOf(status, body, text);
        settle(() => reject(new ApiError(`upload of ${remote} failed: ${detail}`, status, errors)));
      });
    });
    req.on('error', (err) => {
      // A daemon that refuses early may close while we still write: its answer is the error to report.
      if (!answered) client.explain(err).then((e) => settle(() => reject(e)));
    });
    pipeline(
      source,
      counter((c) => bar.add(c.length)),
      req,
    ).catch((err) => {
      if (answered) return;
      if ((err as Error).name === 'AbortError') return settle(() => reject(err));
      req.destroy();
      // The request failed before it was sent (an untrusted certificate): say how to trust it.
      if (tlsFailure(err)) return void client.explain(err).then((e) => settle(() => reject(e)));
      settle(() => reject(err instanceof ApiError ? err : new ApiError(`${opts.label}: ${(err as Error).message}`)));
    });
  });
}

function localSize(local: string): number {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(local);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(`cannot read ${local}: ${code === 'ENOENT' ? 'no such file' : code}`);
  }
  if (!st.isFile()) throw new UsageError(`${local} is not a regular file`);
  return st.size;
}

/** Hash, then upload with the digest for the daemon to verify, then check what it says it stored. */
export async function uploadFile(ctx: CliContext, local: string, remote: string, expect?: string): Promise<FileInfo> {
  const size = localSize(local);
  const sha256 = expect?.toLowerCase() ?? (await sha256File(ctx, local, size));
  const info = await putStream(ctx, remote, createReadStream(local), {
    size,
    sha256,
    label: `uploading ${path.basename(local)}`,
  });
  if (info.sha256 !== sha256 || info.size !== size) {
    throw new ApiError(
      `the daemon stored ${remote} with sha256 ${info.sha256} (${info.size} bytes), but ${local} has ${sha256} (${size} bytes): ` +
        'the file changed during the upload or the daemon ignored X-Checksum-Sha256; upload it again',
    );
  }
  return info;
}

/** `plinth files list`: sizes for people in the table, bytes for scripts. */
export async function listFiles(ctx: CliContext): Promise<void> {
  const items = (await ctx.client.request('GET', '/files')).body as FileInfo[];
  const shown = ctx.mode === 'table' ? items.map((f) => ({ ...f, size: humanBytes(f.size) })) : items;
  print(ctx.io, ctx.mode, shown, { columns: ['path', 'size', 'sha256'], what: 'files' });
}

export async function showFile(remote: string, ctx: CliContext): Promise<void> {
  print(ctx.io, ctx.mode, (await ctx.client.request('GET', `/files/${filePath(remote)}`)).body);
}

/** `plinth files upload LOCAL [REMOTE]`: REMOTE defaults to LOCAL's name; one ending in / keeps it. */
export async function uploadCommand(
  local: string,
  remoteArg: string | undefined,
  values: { sha256?: string },
  ctx: CliContext,
): Promise<void> {
  let remote = remoteArg ?? path.basename(local);
  if (remote.endsWith('/')) remote += path.basename(local);
  const expect = values.sha256;
  if (expect !== undefined && !HEX64.test(expect)) throw new UsageError('--sha256 takes 64 hex digits');
  print(ctx.io, ctx.mode, await uploadFile(ctx, local, remote, expect));
}

export async function deleteFile(remote: string, ctx: CliContext): Promise<void> {
  await ctx.client.request('DELETE', `/files/${filePath(remote)}`);
  ctx.io.err(`file '${remote}' deleted\n`);
}

/** `plinth files gc`: remove the blobs no bootenv pins and no path links; say what it freed. */
export async function gcFiles(ctx: CliContext): Promise<void> {
  const r = (await ctx.client.request('POST', '/files/gc')).body as {
    removed: { sha256: string; size: number }[];
    freedBytes: number;
    kept: number;
  };
  if (ctx.mode !== 'table') return print(ctx.io, ctx.mode, r);
  if (r.removed.length) print(ctx.io, ctx.mode, r.removed, { columns: ['sha256', 'size'], what: 'blobs' });
  ctx.io.err(`${r.removed.length} blob(s) removed, ${humanBytes(r.freedBytes)} freed; ${r.kept} kept\n`);
}
