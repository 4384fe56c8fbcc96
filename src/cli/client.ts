import { readFileSync } from 'node:fs';
import type https from 'node:https';
import path from 'node:path';
import { ApiError, type FieldError, UsageError } from './errors.js';
import { agentFor, explainTls, fetchWith, resolveTrust, type Trust, tlsFailure } from './tls.js';

/**
 * A thin client of the REST API: where the daemon is (flag, PLINTH_ENDPOINT, the local default), which token to
 * send (flag, PLINTH_TOKEN, the local daemon's admin.token), and problem+json answers turned into ApiError.
 */
export const DEFAULT_ENDPOINT = 'https://127.0.0.1:8443';

export type Reply = { status: number; headers: Headers; body: any; text: string };

export type RequestOptions = {
  query?: Record<string, string | undefined>;
  /** An object or array is sent as JSON; a string as it is. */
  body?: unknown;
  contentType?: string;
  headers?: Record<string, string>;
  /** Statuses that are answers, not errors (e.g. 404 when asking whether a file exists). */
  allow?: number[];
};

export type Client = {
  /** http://host:port, without the API prefix. */
  base: string;
  token?: string;
  /** Where the token came from (or the admin.token file that was not there), for error messages. */
  tokenFrom: string;
  url(p: string, query?: Record<string, string | undefined>): string;
  authHeaders(): Record<string, string>;
  request(method: string, p: string, opts?: RequestOptions): Promise<Reply>;
  /** fetch that verifies the daemon as --ca / --fingerprint say (watch's event stream). */
  fetch(
    url: string,
    init?: { method?: string; headers?: Record<string, string>; signal?: AbortSignal },
  ): Promise<Response>;
  /** The agent for node:https requests (uploads); undefined: Node's defaults. */
  agent?: https.Agent;
  /** A failed connection as the error to show: the fingerprint to pin when TLS verification failed. */
  explain(err: unknown): Promise<ApiError>;
};

export function resolveEndpoint(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  let raw = (flag ?? env.PLINTH_ENDPOINT ?? '').trim() || DEFAULT_ENDPOINT;
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) raw = `http://${raw}`;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new UsageError(`endpoint '${raw}' is not a URL: use one like ${DEFAULT_ENDPOINT}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new UsageError(`endpoint '${raw}' must be http:// or https://, like ${DEFAULT_ENDPOINT}`);
  // Accept the API URL as well as the server's: http://host:8091/api/v1 means the same daemon.
  const p = u.pathname.replace(/\/+$/, '').replace(/\/api\/v1$/, '');
  return `${u.protocol}//${u.host}${p}`;
}

export function resolveToken(
  flag: string | undefined,
  env: NodeJS.ProcessEnv,
  cwd: string,
): { token?: string; from: string } {
  if (flag) return { token: flag.trim(), from: '--token' };
  if (env.PLINTH_TOKEN) return { token: env.PLINTH_TOKEN.trim(), from: 'PLINTH_TOKEN' };
  const file = path.resolve(cwd, env.PLINTH_DATA_DIR || './var', 'admin.token');
  try {
    const token = readFileSync(file, 'utf8').trim();
    if (token) return { token, from: file };
  } catch {
    // No local daemon here: requests go without a token and a 401 explains what to do.
  }
  return { from: file };
}

/** The detail of a problem+json answer, or something readable when the answer is not one. */
export function problemOf(status: number, body: any, text: string): { detail: string; errors: FieldError[] } {
  if (body && typeof body === 'object' && !Array.isArray(body)) {
    const detail = typeof body.detail === 'string' && body.detail ? body.detail : (body.title ?? `HTTP ${status}`);
    const errors = Array.isArray(body.errors)
      ? body.errors.map((e: any) => ({ path: String(e?.path ?? ''), message: String(e?.message ?? '') }))
      : [];
    return { detail: String(detail), errors };
  }
  const t = text.trim().split('\n')[0]?.slice(0, 200);
  return { detail: t ? `HTTP ${status}: ${t}` : `HTTP ${status}`, errors: [] };
}

/** fetch's "fetch failed" says nothing; its cause says which connection failed and why. */
export function networkError(err: unknown, where: string): ApiError {
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  const own = (err as { code?: string })?.code;
  const why = cause?.code ?? cause?.message ?? own ?? (err as Error)?.message ?? String(err);
  // The default moved to HTTPS: a daemon started with --tls off answers on its plain port only.
  const hint = where === DEFAULT_ENDPOINT ? ' (a daemon with --tls off: --endpoint http://127.0.0.1:8091)' : '';
  return new ApiError(
    `cannot reach Plinth at ${where}: ${why}. Is the daemon running (plinth serve)? Point the CLI at it with --endpoint or PLINTH_ENDPOINT${hint}`,
  );
}

export function createClient(opts: {
  endpoint?: string;
  token?: string;
  ca?: string;
  fingerprint?: string;
  env: NodeJS.ProcessEnv;
  cwd: string;
  signal?: AbortSignal;
}): Client {
  const base = resolveEndpoint(opts.endpoint, opts.env);
  const { token, from } = resolveToken(opts.token, opts.env, opts.cwd);
  const trust: Trust = resolveTrust(opts, opts.env, opts.cwd, base);
  const agent = agentFor(trust);
  const doFetch = fetchWith(agent);
  const explain = async (err: unknown) => {
    const f = tlsFailure(err);
    return f ? explainTls(f, base, trust) : networkError(err, base);
  };
  const url = (p: string, query?: Record<string, string | undefined>) => {
    const u = new URL(`${base}/api/v1${p}`);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) u.searchParams.append(k, v);
    return u.toString();
  };
  const authHeaders = (): Record<string, string> => (token ? { authorization: `Bearer ${token}` } : {});

  const fail = (status: number, body: unknown, text: string): never => {
    const { detail, errors } = problemOf(status, body, text);
    let msg = detail;
    if (status === 401) {
      msg += token
        ? ` (token from ${from} was refused: pass the admin token with --token or PLINTH_TOKEN)`
        : ` (no token: none given with --token or PLINTH_TOKEN, and ${from} is not readable; pass --token, or set PLINTH_DATA_DIR to the daemon's data directory)`;
    }
    throw new ApiError(msg, status, errors);
  };

  return {
    base,
    token,
    tokenFrom: from,
    url,
    authHeaders,
    fetch: doFetch,
    agent,
    explain,
    async request(method, p, ro = {}) {
      const headers: Record<string, string> = { accept: 'application/json', ...authHeaders(), ...ro.headers };
      let body: string | undefined;
      if (ro.body !== undefined) {
        body = typeof ro.body === 'string' ? ro.body : JSON.stringify(ro.body);
        headers['content-type'] = ro.contentType ?? 'application/json';
      }
      let r: Response;
      try {
        r = await doFetch(url(p, ro.query), { method, headers, body, signal: opts.signal });
      } catch (err) {
        if (opts.signal?.aborted) throw err;
        throw await explain(err);
      }
      const text = await r.text();
      let parsed: unknown;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        parsed = undefined;
      }
      if (!r.ok && !ro.allow?.includes(r.status)) fail(r.status, parsed, text);
      return { status: r.status, headers: r.headers, body: parsed, text };
    },
  };
}

/** A key as one URL path segment (machine names, MACs with colons, bootenv names). */
export const seg = (id: string) => encodeURIComponent(id);

/**
 * A file path under the files root, each segment encoded, slashes kept. URLs resolve dot segments (even as
 * %2e) before they are sent, so `../x` would quietly become another route: it is refused here instead.
 */
export const filePath = (rel: string) => {
  const segs = rel.replace(/^\/+/, '').split('/');
  if (segs.some((s) => s === '.' || s === '..'))
    throw new UsageError(`file path '${rel}' has a '.' or '..' segment: give a path under the files root`);
  return segs.map((s) => encodeURIComponent(s)).join('/');
};
