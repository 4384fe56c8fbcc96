import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import tls, { type TLSSocket } from 'node:tls';
import { fingerprintOf, normalizeFingerprint } from '../http/tls.js';
import { ApiError, UsageError } from './errors.js';

/**
 * How the CLI trusts an https:// daemon: a CA file (`--ca`, PLINTH_CA), a SHA-256 pin of its certificate
 * (`--fingerprint`, PLINTH_FINGERPRINT), both, or, for a daemon on this host, the certificate the local daemon
 * wrote (`$PLINTH_DATA_DIR/tls/cert.pem`, found like admin.token). With none, the system's CAs.
 */
export type Trust = { ca?: Buffer; caFrom?: string; fingerprint?: string };

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i;

export function resolveTrust(
  flags: { ca?: string; fingerprint?: string },
  env: NodeJS.ProcessEnv,
  cwd: string,
  base: string,
): Trust {
  const trust: Trust = {};
  const caFile = flags.ca ?? (env.PLINTH_CA || undefined);
  const from = flags.ca !== undefined ? '--ca' : 'PLINTH_CA';
  if (caFile) {
    try {
      trust.ca = readFileSync(path.resolve(cwd, caFile));
      trust.caFrom = caFile;
    } catch (err) {
      throw new UsageError(
        `${from}: cannot read ${caFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
  }
  const pin = flags.fingerprint ?? (env.PLINTH_FINGERPRINT || undefined);
  if (pin) {
    trust.fingerprint = normalizeFingerprint(pin);
    if (!trust.fingerprint)
      throw new UsageError(
        `${flags.fingerprint !== undefined ? '--fingerprint' : 'PLINTH_FINGERPRINT'} '${pin}' is not a SHA-256 fingerprint: give it as sha256:<64 hex digits>, as the daemon logs it`,
      );
  }
  const u = new URL(base);
  if (u.protocol === 'https:' && !trust.ca && !trust.fingerprint && LOOPBACK.test(u.hostname)) {
    const local = path.resolve(cwd, env.PLINTH_DATA_DIR || './var', 'tls', 'cert.pem');
    try {
      trust.ca = readFileSync(local);
      trust.caFrom = local;
    } catch {
      // No local daemon's certificate: the system's CAs decide, and a failure names the fingerprint to pin.
    }
  }
  return trust;
}

/** Connections that verify as `trust` says; undefined: Node's defaults. */
export function agentFor(trust: Trust): https.Agent | undefined {
  if (!trust.ca && !trust.fingerprint) return undefined;
  const pin = trust.fingerprint;
  // A pin replaces the chain check (a self-signed certificate has no chain); with --ca as well, both must hold.
  // No session resumption: every connection shows its certificate to be checked.
  const agent = new https.Agent({
    keepAlive: false,
    ca: trust.ca,
    rejectUnauthorized: !pin || Boolean(trust.ca),
    maxCachedSessions: pin ? 0 : undefined,
  });
  if (!pin) return agent;
  const create = (agent as unknown as { createConnection: (o: unknown, cb?: unknown) => TLSSocket }).createConnection;
  (agent as unknown as { createConnection: unknown }).createConnection = function (
    this: https.Agent,
    o: unknown,
    cb?: unknown,
  ) {
    const sock = create.call(this, o, cb);
    // Checked when the handshake completes, before the request (and its token) is written to the socket.
    sock.once('secureConnect', () => {
      let seen = '(no certificate)';
      try {
        seen = fingerprintOf(sock.getPeerCertificate().raw);
      } catch {}
      if (seen !== pin)
        sock.destroy(Object.assign(new Error('certificate fingerprint mismatch'), { code: 'PIN_MISMATCH', seen }));
    });
    return sock;
  };
  return agent;
}

type Init = { method?: string; headers?: Record<string, string>; body?: string; signal?: AbortSignal };

/** fetch over node:https with our agent (global fetch takes no agent in Node 20), answering a web Response. */
export function fetchWith(agent: https.Agent | undefined): (url: string, init?: Init) => Promise<Response> {
  if (!agent) return (url, init) => fetch(url, init);
  return (url, init = {}) =>
    new Promise((resolve, reject) => {
      const u = new URL(url);
      const mod = u.protocol === 'https:' ? https : http;
      const req = mod.request(
        u,
        {
          method: init.method ?? 'GET',
          headers: init.headers,
          signal: init.signal,
          agent: u.protocol === 'https:' ? agent : undefined,
        },
        (res) => {
          const headers = new Headers();
          for (const [k, v] of Object.entries(res.headers))
            for (const one of Array.isArray(v) ? v : v === undefined ? [] : [v]) headers.append(k, one);
          const status = res.statusCode ?? 502;
          const noBody = init.method === 'HEAD' || [204, 205, 304].includes(status);
          if (noBody) res.resume();
          resolve(
            new Response(noBody ? null : (Readable.toWeb(res) as ReadableStream), {
              status,
              statusText: res.statusMessage,
              headers,
            }),
          );
        },
      );
      req.on('error', reject);
      req.end(init.body);
    });
}

const VERIFY_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'PIN_MISMATCH',
]);

/** The TLS verification failure in an error from fetch (its cause) or node:https, if that is what it is. */
export function tlsFailure(err: unknown): { code: string; message: string; seen?: string } | undefined {
  for (const e of [err, (err as { cause?: unknown })?.cause] as { code?: string; message?: string; seen?: string }[])
    if (e?.code && VERIFY_CODES.has(e.code)) return { code: e.code, message: e.message ?? e.code, seen: e.seen };
  return undefined;
}

/** The certificate the daemon presents, read without trusting it and without sending anything. */
export function probeFingerprint(base: string, timeoutMs = 5_000): Promise<string | undefined> {
  const u = new URL(base);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  return new Promise((resolve) => {
    const sock = tls.connect({
      host,
      port: Number(u.port || 443),
      servername: isIP(host) ? undefined : host,
      rejectUnauthorized: false,
    });
    const done = (fp?: string) => {
      sock.destroy();
      resolve(fp);
    };
    sock.setTimeout(timeoutMs, () => done());
    sock.once('secureConnect', () => {
      try {
        done(fingerprintOf(sock.getPeerCertificate().raw));
      } catch {
        done();
      }
    });
    sock.once('error', () => done());
  });
}

/** A TLS verification failure as one actionable message: the fingerprint to pin, or the pin that did not match. */
export async function explainTls(
  f: { code: string; message: string; seen?: string },
  base: string,
  trust: Trust,
): Promise<ApiError> {
  const seen = f.seen ?? (await probeFingerprint(base));
  const fp = seen ?? '(could not be read)';
  if (f.code === 'PIN_MISMATCH')
    return new ApiError(
      `refused ${base}: its certificate has fingerprint ${fp}, not the pinned ${trust.fingerprint}; nothing was sent. ` +
        "A different daemon, a new certificate, or someone in between: compare with the fingerprint in the daemon's log",
    );
  const trusted = trust.caFrom ? `the CA in ${trust.caFrom}` : "this system's CAs";
  const name = f.code === 'ERR_TLS_CERT_ALTNAME_INVALID' ? ' (the certificate does not name this host)' : '';
  return new ApiError(
    `the certificate of ${base} is not trusted by ${trusted}: ${f.message}${name}. Its SHA-256 fingerprint is ${fp}. ` +
      `If that is the fingerprint the daemon logged at start (also in GET /api/v1/info on its host), pin it with --fingerprint ${fp} ` +
      '(or PLINTH_FINGERPRINT), or trust its certificate file with --ca FILE (PLINTH_CA; a self-signed one is <data-dir>/tls/cert.pem)',
  );
}
