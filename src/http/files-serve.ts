import { createReadStream } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import path from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { BlobUnavailable, filesCluster } from '../files/cluster.js';
import { confine } from '../files/confine.js';
import type { Logger } from '../log.js';
import { type HttpSendfile, native } from '../native/index.js';
import { sendProblem } from './problem.js';
import { logUrl } from './redact.js';

const types: Record<string, string> = {
  '.ipxe': 'text/plain; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.cfg': 'text/plain; charset=utf-8',
  '.json': 'application/json',
  '.yaml': 'application/yaml',
  '.yml': 'application/yaml',
  '.iso': 'application/x-iso9660-image',
  '.efi': 'application/efi',
  '.gz': 'application/gzip',
  '.xz': 'application/x-xz',
  '.tar': 'application/x-tar',
  '.img': 'application/octet-stream',
  '.html': 'text/html; charset=utf-8',
};

/**
 * Files that a browser would run or render as a page (script, markup, PDF): an uploaded .html served inline on the
 * same origin as /ui could read the admin token the UI keeps. They are sent as downloads.
 */
const ACTIVE = new Set([
  '.html',
  '.htm',
  '.xhtml',
  '.xht',
  '.shtml',
  '.mht',
  '.mhtml',
  '.svg',
  '.svgz',
  '.xml',
  '.xsl',
  '.xslt',
  '.js',
  '.mjs',
  '.pdf',
  '.swf',
]);

/**
 * Every served file is inert in a browser: no type sniffing, a sandbox (no script, no same-origin access, no
 * requests) if it is rendered anyway, and a download for the types a browser would otherwise run.
 */
export function inertHeaders(abs: string): Record<string, string> {
  const h: Record<string, string> = {
    'x-content-type-options': 'nosniff',
    'content-security-policy': "sandbox; default-src 'none'",
  };
  if (ACTIVE.has(path.extname(abs).toLowerCase())) {
    const name = path.basename(abs).replace(/[^A-Za-z0-9._+-]/g, '_');
    h['content-disposition'] = `attachment; filename="${name}"`;
  }
  return h;
}

/** bytes=a-b | a- | -n, one range; anything else (several ranges, garbage) is ignored and the whole file sent. */
export function parseRange(
  h: string | undefined,
  size: number,
): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (!h) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(h.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'unsatisfiable';
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return undefined;
  }
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

// 1 MiB reads where sendfile(2) cannot be used (TLS, no native helper): fewer event-loop turns than 64 KiB.
const CHUNK = 1 << 20;

/**
 * Boot files without a token at /files/<path>: Range, ETag/If-None-Match, If-Range, HEAD (OVMF HTTP Boot sends
 * HEAD first). Written against the raw response: this is the hot path of every boot.
 */
export type ServeHooks = {
  /** May refuse a file (an artifact whose digest no longer matches its bootenv): returns the reason. */
  refuse?(rel: string, abs: string, req: FastifyRequest): Promise<string | undefined>;
  /** Sees every file served (for the requesting machine's boot timeline). */
  served?(rel: string, req: FastifyRequest, status: number): void;
};

export function registerFileServing(
  app: FastifyInstance,
  deps: {
    filesDir: string;
    assetsDir?: string;
    log: Logger;
    hooks?: ServeHooks;
    /** false: always stream the body (as over TLS); by default sendfile(2) where the connection allows it. */
    sendfile?: boolean;
    /** A boot loader found outside these roots (the distribution's iPXE directories): its real path. */
    loaderFile?: (name: string) => string | undefined;
  },
) {
  /**
   * Several daemons on one inventory (src/files/cluster.ts): what to serve for a path of the files root, fetched
   * from a peer when the inventory maps it to bytes this disk lacks; undefined when no source gave the right bytes.
   */
  const fromPeers = async (rel: string): Promise<string | undefined> => {
    const abs = path.join(deps.filesDir, rel);
    const cluster = filesCluster(deps.filesDir);
    if (!cluster) return abs;
    try {
      return (await cluster.resolve(rel)) ?? abs;
    } catch (err) {
      if (!(err instanceof BlobUnavailable)) throw err;
      deps.log.error({ path: rel, err: err.message }, 'file not served: its blob could not be fetched');
      return undefined;
    }
  };
  const serve = async (req: FastifyRequest<{ Params: { '*': string } }>, reply: FastifyReply) => {
    let rel: string;
    try {
      rel = decodeURIComponent(req.params['*'] ?? '');
    } catch {
      return sendProblem(reply, 400, 'the file path is not valid percent-encoding');
    }
    // Uploaded files first, then the boot loaders shipped in assets/ (UEFI HTTP Boot fetches ipxe.efi here).
    for (const root of deps.assetsDir ? [deps.filesDir, deps.assetsDir] : [deps.filesDir]) {
      const c = await confine(root, rel);
      if (!c.ok) {
        deps.log.warn({ path: rel, ip: req.ip, reason: c.reason }, 'file request refused');
        return sendProblem(reply, 400, `path refused: ${c.reason}`);
      }
      const abs = root === deps.filesDir ? await fromPeers(c.rel) : c.abs;
      if (abs === undefined) {
        deps.hooks?.served?.(c.rel, req, 502);
        return sendProblem(reply, 502, `file '${rel}' is not on this daemon and no peer gave its bytes: see the log`);
      }
      const st = await stat(abs).catch(() => undefined);
      if (!st?.isFile()) continue;
      const why = root === deps.filesDir ? await deps.hooks?.refuse?.(c.rel, abs, req) : undefined;
      if (why) {
        deps.hooks?.served?.(c.rel, req, 409);
        return sendProblem(reply, 409, why);
      }
      deps.hooks?.served?.(c.rel, req, 200);
      return sendFile(req, reply, abs, st.size, st.mtimeMs, st.mtime, deps.log, deps.sendfile !== false);
    }
    // Only a loader's bare name reaches the distribution's directories, never anything else in them.
    const loader = rel.includes('/') ? undefined : deps.loaderFile?.(rel);
    const st = loader ? await stat(loader).catch(() => undefined) : undefined;
    if (loader && st?.isFile()) {
      deps.hooks?.served?.(rel, req, 200);
      return sendFile(req, reply, loader, st.size, st.mtimeMs, st.mtime, deps.log, deps.sendfile !== false);
    }
    return sendProblem(reply, 404, `file '${rel}' does not exist`);
  };
  app.get('/files/*', serve);
}

export function sendFile(
  req: FastifyRequest,
  reply: FastifyReply,
  abs: string,
  size: number,
  mtimeMs: number,
  mtime: Date,
  log: Logger,
  allowSendfile = true,
) {
  const etag = `"${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}"`;
  const headers: Record<string, string | number> = {
    'content-type': types[path.extname(abs).toLowerCase()] ?? 'application/octet-stream',
    etag,
    'last-modified': mtime.toUTCString(),
    'accept-ranges': 'bytes',
    ...inertHeaders(abs),
  };
  const inm = req.headers['if-none-match'];
  if (inm?.split(',').some((t) => t.trim().replace(/^W\//, '') === etag)) {
    return reply.code(304).headers(headers).send();
  }
  let range = parseRange(req.headers.range, size);
  const ifRange = req.headers['if-range'];
  if (range && ifRange && ifRange !== etag && ifRange !== headers['last-modified']) range = undefined;
  if (range === 'unsatisfiable') {
    return reply
      .code(416)
      .header('content-range', `bytes */${size}`)
      .type('application/problem+json')
      .send({
        type: 'about:blank',
        title: 'Range Not Satisfiable',
        status: 416,
        detail: `the file has ${size} bytes`,
      });
  }
  const start = range ? range.start : 0;
  const end = range ? range.end : size - 1;
  headers['content-length'] = size === 0 ? 0 : end - start + 1;
  if (range) headers['content-range'] = `bytes ${start}-${end}/${size}`;
  const status = range ? 206 : 200;
  reply.hijack();
  const res = reply.raw;
  const t0 = process.hrtime.bigint();
  const via = allowSendfile && req.method !== 'HEAD' && size > 0 ? sendfileSocket(res) : undefined;
  res.on('close', () => {
    log.info(
      {
        method: req.method,
        url: logUrl(req.url),
        status,
        bytes: res.writableFinished ? headers['content-length'] : 'aborted',
        ms: Number(process.hrtime.bigint() - t0) / 1e6,
        ip: req.ip,
        sendfile: via !== undefined,
      },
      'http file',
    );
  });
  res.writeHead(status, headers);
  if (req.method === 'HEAD' || size === 0) {
    res.end();
    return;
  }
  if (via) sendfileBody(via.sf, res, via.sock, via.fd, abs, start, end - start + 1, log);
  else streamBody(res, abs, start, end - start + 1, log);
}

/** The node:net socket under a plain-HTTP response, with the descriptor libuv gives TCP handles on Unix. */
type RawSocket = Socket & { encrypted?: boolean; _handle?: { fd?: number }; _httpMessage?: unknown };

/**
 * How the body goes, decided before the headers. On a plain TCP connection, with the native helper, by
 * sendfile(2): the kernel moves the page-cache pages, and the event loop sees the connection once per socket
 * buffer instead of once per chunk read and once per chunk written (measured in bench:api against nginx). TLS
 * must see the bytes, and a connection still flushing an earlier pipelined response is not ours to write to:
 * those are streamed (undefined here).
 */
function sendfileSocket(res: ServerResponse): { sf: HttpSendfile; sock: RawSocket; fd: number } | undefined {
  const sock = res.socket as RawSocket | null;
  const sf = native.httpSendfile;
  const fd = sock?._handle?.fd;
  if (!sf || !sock || sock.encrypted || fd === undefined || fd < 0 || sock._httpMessage !== res) return undefined;
  return { sf, sock, fd };
}

function streamBody(res: ServerResponse, abs: string, start: number, length: number, log: Logger) {
  const rs = createReadStream(abs, { start, end: start + length - 1, highWaterMark: CHUNK });
  let sent = 0;
  rs.on('data', (c) => {
    sent += c.length;
  });
  rs.on('error', (err) => {
    log.warn({ err, file: abs }, 'file read failed mid-response');
    res.destroy(err);
  });
  // A file cut short while it was sent: the Content-Length promised more, so the client must see the connection
  // end rather than wait for bytes that will not come.
  rs.on('end', () => (sent === length ? res.end() : res.destroy()));
  res.on('close', () => rs.destroy());
  rs.pipe(res, { end: false });
}

function sendfileBody(
  sf: HttpSendfile,
  res: ServerResponse,
  sock: RawSocket,
  fd: number,
  abs: string,
  start: number,
  length: number,
  log: Logger,
) {
  let fh: FileHandle | undefined;
  let job: object | undefined;
  let over = false;
  const finish = (err?: string) => {
    if (over) return;
    over = true;
    if (job) sf.tcpSendFileCancel(job);
    fh?.close().catch(() => undefined);
    if (err === undefined) res.end();
    else {
      if (err === 'EOF') log.warn({ file: abs }, 'file got shorter while it was sent: connection closed');
      res.destroy();
    }
  };
  // The client went away or the server is stopping: stop sending and let go of the dup of the socket.
  res.once('close', () => finish('closed'));
  res.flushHeaders();
  const idle = sock.timeout ?? 0;
  const go = () => {
    if (over || !fh) return;
    try {
      job = sf.tcpSendFile(fd, fh.fd, start, length, (_sent, done, err) => {
        if (!done) {
          // Progress counts as activity for the idle timeout, as each write of a stream does.
          if (idle > 0) sock.setTimeout(idle);
          return;
        }
        job = undefined;
        finish(err);
      });
    } catch (err) {
      log.warn({ err, file: abs }, 'sendfile could not start');
      finish('start');
    }
  };
  open(abs, 'r').then(
    (h) => {
      fh = h;
      if (over) return void h.close().catch(() => undefined);
      // The headers must be in the kernel before the file's bytes: they usually are, straight from flushHeaders.
      if (sock.writableLength === 0) go();
      else sock.write(Buffer.alloc(0), go);
    },
    (err) => {
      log.warn({ err, file: abs }, 'file open failed mid-response');
      finish('open');
    },
  );
}
