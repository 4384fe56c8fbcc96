import type { FastifyServerFactory } from 'fastify';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type { Bus } from '../events.js';
import { type BootRecorder, bootRecorder } from '../inventory/boots.js';
import { tokenChecker } from '../inventory/tokens.js';
import type { Logger } from '../log.js';
import { InvalidError, StateConflictError } from '../model/errors.js';
import type { BootService } from '../provision/boot-render.js';
import type { DiscoveryLimits } from '../provision/discovery.js';
import type { Trust } from '../provision/trust.js';
import { BackendError, ConflictError, NotFoundError, PreconditionError, type Store } from '../store/store.js';
import { type AuditOptions, auditHook, auditLog, registerAuditRoutes } from './audit.js';
import { fileHooks, registerBootRoutes } from './boot.js';
import { registerEvents } from './events.js';
import { registerFileRoutes } from './files-api.js';
import { registerFileServing } from './files-serve.js';
import { type InfoSource, registerInfo } from './info.js';
import { registerMetrics, type StatsSource } from './metrics.js';
import { registerOpenApi } from './openapi.js';
import { HttpProblem, problemBody } from './problem.js';
import { logUrl } from './redact.js';
import { registerResourceRoutes } from './resources.js';
import { authenticate, registerTokenRoutes } from './tokens.js';
import { registerUi } from './ui.js';

export type AppOptions = {
  store: Store;
  bus: Bus;
  log: Logger;
  dataDir: string;
  filesDir: string;
  info: InfoSource;
  version: string;
  assetsDir?: string;
  advertiseAddress?: string;
  boots?: BootRecorder;
  /** The daemon's boot renderer, shared with TFTP; tests leave it out and get one of their own. */
  boot?: BootService;
  stats?: StatsSource;
  /** /metrics without a token (for a scraper that cannot send one); by default it needs a viewer token. */
  metricsPublic?: boolean;
  audit?: AuditOptions;
  /** The Node server(s) behind the app, with their limits and TLS (src/http/listeners.ts); tests leave it out. */
  serverFactory?: FastifyServerFactory;
  /** With --ipxe-https: the HTTPS port iPXE scripts chain to (known once listening); absent: chain over plain HTTP. */
  ipxeHttpsPort?: () => number | undefined;
  /** With TLS on: the plain HTTP port (known once listening), named in scripts asked for over HTTPS. */
  plainHttpPort?: () => number | undefined;
  /** The daemon's trust rule (src/provision/trust.ts), shared with TFTP; tests leave it out. */
  trust?: Trust;
  /** Discovery's limits (src/provision/discovery.ts). */
  discovery?: Partial<DiscoveryLimits>;
};

export const API = '/api/v1';
/** Matched route patterns (never the raw URL) under the API prefix that need no token. */
const PUBLIC_API = new Set([`${API}/info`, `${API}/openapi.json`]);
/** JSON nested deeper than this is refused at parse time (nothing Plinth stores comes near it). */
export const MAX_JSON_DEPTH = 64;

/** Whether JSON text nests arrays/objects deeper than `max`: one pass over the text, strings skipped. */
export function jsonTooDeep(s: string, max = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 34) {
      // a string: skip to its closing quote
      for (i++; i < s.length; i++) {
        const d = s.charCodeAt(i);
        if (d === 92) i++;
        else if (d === 34) break;
      }
    } else if (c === 123 || c === 91) {
      if (++depth > max) return true;
    } else if (c === 125 || c === 93) depth--;
  }
  return false;
}

const tooDeep = () =>
  new HttpProblem(400, `the body nests JSON deeper than ${MAX_JSON_DEPTH} levels`, [
    { path: '(body)', message: 'too deeply nested' },
  ]);

export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: opts.log as FastifyBaseLogger,
    // Our own onResponse hook writes the one line per request.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 16 * 1024 * 1024,
    routerOptions: { ignoreTrailingSlash: true },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    ...(opts.serverFactory ? { serverFactory: opts.serverFactory } : {}),
  }) as unknown as FastifyInstance;

  // One JSON log line per request.
  app.addHook('onResponse', async (req, reply) => {
    req.log.info(
      {
        method: req.method,
        url: logUrl(req.url),
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
        ip: req.ip,
      },
      'http',
    );
  });

  // JSON parsers: fastify's own (which refuses __proto__ and constructor.prototype keys) after a depth check,
  // since a 5,000-deep document parses fine but then fails in the store (SQLite's JSON functions stop at 1,000).
  const defaultJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (jsonTooDeep(body as string)) return done(tooDeep(), undefined);
    defaultJson(req, body as string, done);
  });
  // JSON bodies under any +json media type (merge-patch, json-patch) parse like application/json.
  app.addContentTypeParser(/^application\/[a-z0-9.+-]*\+json$/, { parseAs: 'string' }, (req, body, done) => {
    if (body === '') return done(null, undefined);
    if (jsonTooDeep(body as string)) return done(tooDeep(), undefined);
    defaultJson(req, body as string, done);
  });

  // Authentication is decided by the route a request matched, never by the URL's text: the router decodes
  // (`/%61pi/v1/machines` is `/api/v1/machines`), so a string test on req.url can be walked around. The API's
  // routes live in one scope whose onRequest hook authenticates; this net catches a route under the API prefix
  // registered anywhere else, which then needs a token too (fails closed).
  const check = tokenChecker(opts.store);
  const auth = authenticate(check);
  app.addHook('onRequest', async (req) => {
    const url = req.routeOptions.url;
    if (!url || (url !== API && !url.startsWith(`${API}/`))) return;
    if (req.routeOptions.config?.apiScope || PUBLIC_API.has(url)) return;
    await auth(req);
  });
  const audit = auditLog(opts.store, opts.log, opts.audit);
  void audit.prune();
  // Writes made with a valid token, in the scope or through the net above.
  app.addHook('onResponse', auditHook(audit));

  app.setErrorHandler((err, req, reply) => {
    let status = 500;
    let detail = 'internal error: see the daemon log';
    let errors: { path: string; message: string }[] | undefined;
    if (err instanceof HttpProblem) {
      status = err.status;
      detail = err.message;
      errors = err.errors;
      if (err.headers) reply.headers(err.headers);
    } else if (err instanceof InvalidError) {
      status = 400;
      errors = err.errors;
      const first = err.errors[0];
      detail = first ? `${err.message}: ${first.path || '(body)'}: ${first.message}` : err.message;
    } else if (err instanceof StateConflictError) {
      status = 409;
      detail = err.message;
      errors = err.errors.length ? err.errors : undefined;
    } else if (err instanceof NotFoundError) {
      status = 404;
      detail = err.message;
    } else if (err instanceof ConflictError) {
      status = 409;
      detail = err.message;
      errors = [{ path: err.field === 'key' ? 'name' : err.field, message: err.message }];
    } else if (err instanceof PreconditionError) {
      status = 412;
      detail = err.message;
    } else if (err instanceof BackendError) {
      status = 503;
      detail = `${err.message}: the inventory could not be read or written; nothing was changed`;
    } else if (
      typeof (err as { statusCode?: number }).statusCode === 'number' &&
      (err as { statusCode: number }).statusCode < 500
    ) {
      // fastify's own 4xx (body too large, bad JSON, unsupported media type).
      status = (err as { statusCode: number }).statusCode;
      detail = (err as Error).message;
    }
    if (status >= 500) req.log.error({ err, url: logUrl(req.url) }, 'request failed');
    reply
      .code(status)
      .type('application/problem+json')
      .send(problemBody(status, detail, errors));
  });

  app.setNotFoundHandler((req, reply) => {
    reply
      .code(404)
      .type('application/problem+json')
      .send(problemBody(404, `no route ${req.method} ${req.url.split('?')[0]}: see ${API}/openapi.json`));
  });

  // Public: no token.
  registerInfo(app, opts.info);
  registerUi(app);
  registerOpenApi(app, opts.version);
  const metricsDeps = { store: opts.store, bus: opts.bus, stats: opts.stats ?? (() => ({})) };
  if (opts.metricsPublic) registerMetrics(app, metricsDeps);
  const boots = opts.boots ?? bootRecorder(opts.store);
  const bootDeps = {
    store: opts.store,
    bus: opts.bus,
    log: opts.log,
    filesDir: opts.filesDir,
    boots,
    advertiseAddress: opts.advertiseAddress,
    boot: opts.boot,
    plainHttpPort: opts.plainHttpPort,
    ipxeHttpsPort: opts.ipxeHttpsPort,
    trust: opts.trust,
    discovery: opts.discovery,
  };
  const bootRoutes = registerBootRoutes(app, bootDeps);
  registerFileServing(app, {
    filesDir: opts.filesDir,
    assetsDir: opts.assetsDir,
    log: opts.log,
    hooks: fileHooks(bootDeps),
  });

  // The API: every route in here needs a token, and the token's role must allow the route (tokens.ts).
  await app.register(async (api) => {
    api.addHook('onRoute', (r) => {
      r.config = { ...(r.config ?? {}), apiScope: true };
    });
    api.addHook('onRequest', auth);
    registerResourceRoutes(api, { store: opts.store, bus: opts.bus });
    registerEvents(api, { bus: opts.bus, log: opts.log });
    registerFileRoutes(api, { store: opts.store, bus: opts.bus, filesDir: opts.filesDir, log: opts.log });
    registerTokenRoutes(api, { store: opts.store });
    registerAuditRoutes(api, { store: opts.store });
    // Callback, inventory and boots: declared without the prefix in machine-api.ts; a machine token reaches the
    // routes marked config.machineToken for its own uuid only (tokens.ts).
    await api.register(async (m) => bootRoutes.registerMachineApi(m), { prefix: API });
    if (!opts.metricsPublic) registerMetrics(api, metricsDeps);
  });
  return app;
}
