import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { FastifyRequest, FastifyServerFactory } from 'fastify';
import type { Logger } from '../log.js';
import { rateLimited } from '../log-limit.js';
import { API } from './api-prefix.js';
import { HttpProblem } from './problem.js';
import type { TlsMaterial } from './tls.js';

/**
 * The HTTP listeners' resource bounds. A slowloris (thousands of connections that never finish their headers) used
 * to hold one descriptor each until the process ran out and died: every listener now closes a request whose
 * headers are late, a connection idle either way, a keep-alive connection between requests, and refuses
 * connections past a cap well under the open-files limit.
 */
export type HttpLimits = {
  maxConnections: number;
  /** Per client address: one host's flood fills its own share, not the whole listener. */
  maxPerClient: number;
  headersTimeoutMs: number;
  idleTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
};

/** The open-files limits of this process (Linux /proc), or undefined elsewhere. Node raises soft to hard at start. */
export function fdLimits(): { soft: number; hard: number } | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (!m) return undefined;
    const n = (s: string) => (s === 'unlimited' ? Number.POSITIVE_INFINITY : Number(s));
    return { soft: n(m[1]!), hard: n(m[2]!) };
  } catch {
    return undefined;
  }
}

/** A quarter of the soft limit (two listeners, TFTP transfers, the database and the log keep the rest), at most 4096. */
export function defaultMaxConnections(soft = fdLimits()?.soft): number {
  if (!soft || !Number.isFinite(soft)) return 4096;
  return Math.max(16, Math.min(4096, Math.floor(soft / 4)));
}

export function httpLimits(cfg: {
  httpMaxConnections?: number;
  httpMaxConnectionsPerClient?: number;
  httpHeadersTimeoutMs?: number;
  httpIdleTimeoutMs?: number;
  httpRequestTimeoutMs?: number;
}): HttpLimits {
  const requestTimeoutMs = cfg.httpRequestTimeoutMs ?? 3_600_000;
  const idleTimeoutMs = cfg.httpIdleTimeoutMs ?? 60_000;
  const maxConnections = cfg.httpMaxConnections ?? defaultMaxConnections();
  return {
    maxConnections,
    maxPerClient: Math.min(cfg.httpMaxConnectionsPerClient ?? 64, maxConnections),
    // Node refuses a headers timeout longer than the request timeout.
    headersTimeoutMs: Math.min(cfg.httpHeadersTimeoutMs ?? 10_000, requestTimeoutMs),
    idleTimeoutMs,
    requestTimeoutMs,
    // Longer than the clients' own idle expiry (undici: 4 s, checked on a 1 s tick): the server closing first races
    // a request the client sends on the connection at that moment, which then fails with no response (bench:boot's
    // "fetch failed"). The server's count starts when the last byte is handed to the socket; a client 50 downloads
    // deep reads the buffered megabytes a second or more later. nginx keeps 75 s.
    keepAliveTimeoutMs: Math.min(30_000, idleTimeoutMs),
  };
}

/** Options every server is created with; the expiry check must run often enough for the headers timeout to hold. */
function serverOptions(l: HttpLimits): http.ServerOptions {
  return {
    headersTimeout: l.headersTimeoutMs,
    requestTimeout: l.requestTimeoutMs,
    keepAliveTimeout: l.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(l.headersTimeoutMs / 4))),
  };
}

/**
 * The cap, the idle timeout, and an 'error' listener: an accept() that fails with EMFILE is emitted as an 'error'
 * on the server, and with no listener that is an uncaught exception that ends the process. The connections libuv
 * cannot accept are closed by it; the server keeps listening and accepts again once descriptors are free.
 */
function bound(server: http.Server, name: string, l: HttpLimits, log: Logger): void {
  server.maxConnections = l.maxConnections;
  server.setTimeout(l.idleTimeoutMs);
  server.on(
    'drop',
    rateLimited(10_000, (n) =>
      log.warn(
        { listener: name, refused: n, maxConnections: l.maxConnections },
        'http: connection cap reached, new connections are closed (raise --http-max-connections if this is real load)',
      ),
    ),
  );
  const perClient = new Map<string, number>();
  const refusedClient = rateLimited(10_000, (n) =>
    log.warn(
      { listener: name, refused: n, maxPerClient: l.maxPerClient, client: lastRefused },
      'http: a client reached its connection share, its new connections are closed (--http-max-connections-per-client)',
    ),
  );
  let lastRefused: string | undefined;
  server.on('connection', (sock: Socket) => {
    const ip = sock.remoteAddress ?? '?';
    const n = (perClient.get(ip) ?? 0) + 1;
    if (n > l.maxPerClient) {
      lastRefused = ip;
      refusedClient();
      sock.destroy();
      return;
    }
    perClient.set(ip, n);
    sock.once('close', () => {
      const left = (perClient.get(ip) ?? 1) - 1;
      if (left <= 0) perClient.delete(ip);
      else perClient.set(ip, left);
    });
  });
  const errors = rateLimited(10_000, (n) => log.error({ listener: name, errors: n }, 'http: accept failed'));
  server.on('error', (err: NodeJS.ErrnoException) => {
    errors();
    if (err.code !== 'EMFILE' && err.code !== 'ENFILE') log.debug({ err }, 'http server error');
  });
  // A failed handshake (a scanner, a client that does not trust us) is the client's business, not a log line each.
  if (server instanceof https.Server) server.on('tlsClientError', () => {});
}

export type Listeners = {
  /** Hand to Fastify: the server `app.listen` binds (HTTPS when TLS is on, else plain HTTP). */
  serverFactory: FastifyServerFactory;
  /** The plain HTTP server for boot files when TLS is on (listened on by the daemon); created by serverFactory. */
  plain(): http.Server | undefined;
};

/** One fastify handler behind one or two Node servers, each created with the limits. */
export function createListeners(opts: { tls?: TlsMaterial; limits: HttpLimits; log: Logger }): Listeners {
  let plain: http.Server | undefined;
  const { limits: l, log } = opts;
  const serverFactory: FastifyServerFactory = (handler) => {
    if (!opts.tls) {
      const s = http.createServer(serverOptions(l), handler);
      bound(s, 'http', l, log);
      return s;
    }
    plain = http.createServer(serverOptions(l), handler);
    bound(plain, 'http', l, log);
    const s = https.createServer(
      { ...serverOptions(l), key: opts.tls.key, cert: opts.tls.cert, handshakeTimeout: l.headersTimeoutMs },
      handler,
    );
    bound(s as unknown as http.Server, 'https', l, log);
    return s as unknown as http.Server;
  };
  return { serverFactory, plain: () => plain };
}

/** Stop the plain server: idle connections now, requests in flight (a large download) at most `graceMs` later. */
export function closePlain(server: http.Server, graceMs = 5_000): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    const t = setTimeout(() => server.closeAllConnections(), graceMs).unref();
    server.close(() => {
      clearTimeout(t);
      resolve();
    });
    server.closeIdleConnections();
  });
}

/** Routes a client without TLS may use: what firmware and an initrd's busybox wget fetch, and public read-outs. */
const PLAIN_ROUTES = new Set([
  '/boot/ipxe',
  '/boot/ipxe/:mac',
  '/files/*',
  // Blobs between daemons (issue 17): verified by sha256 at the receiver; /files/.blobs is plain already.
  '/peer/v1/blobs/:sha256',
  '/machines/:uuid/*',
  `${API}/machines/:id/callback`,
  `${API}/machines/:id/inventory`,
  `${API}/info`,
  `${API}/openapi.json`,
  '/metrics',
]);

/**
 * With TLS on, the plain listener refuses the admin API and /ui: a token sent there crosses the segment in
 * clear. The decision is by the route the request matched (fastify decoded and routed it), never by the URL text,
 * so `/%61pi/v1/...` is refused like `/api/v1/...`. Machine-token routes (`config.machineToken`) stay open: an
 * initrd's busybox wget speaks no TLS. An unmatched request gets the ordinary 404.
 */
export function plainGuard(httpsPort: () => number) {
  return async (req: FastifyRequest) => {
    if ((req.raw.socket as TLSSocket | (Socket & { encrypted?: boolean })).encrypted) return;
    const route = req.routeOptions.url;
    if (route === undefined) return;
    const config = req.routeOptions.config as { machineToken?: boolean } | undefined;
    // A machine route stays open on plain HTTP for the machine's own token only: an admin reading a machine
    // record (secure params and all) goes over HTTPS like the rest of the API. (The bearer check ran first.)
    const role = (req as { principal?: { role: string } }).principal?.role;
    if (config?.machineToken && (role === undefined || role === 'machine')) return;
    if (PLAIN_ROUTES.has(route)) return;
    const host = (req.hostname || 'HOST').replace(/:\d+$/, '').replace(/[^\w.:[\]-]/g, '');
    throw new HttpProblem(
      403,
      `${req.method} ${route} is served over HTTPS only: use https://${host}:${httpsPort()} (this port serves boot files to firmware)`,
    );
  };
}
