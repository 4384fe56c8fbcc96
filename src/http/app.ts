import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest, LogController } from 'fastify';
import type { Bus } from '../events.js';
import { type BootRecorder, bootRecorder } from '../inventory/boots.js';
import { type Principal, tokenChecker } from '../inventory/tokens.js';
import type { Logger } from '../log.js';
import { InvalidError, StateConflictError } from '../model/errors.js';
import { BackendError, ConflictError, NotFoundError, PreconditionError, type Store } from '../store/store.js';
import { fileHooks, registerBootRoutes } from './boot.js';
import { registerEvents } from './events.js';
import { registerFileRoutes } from './files-api.js';
import { registerFileServing } from './files-serve.js';
import { type InfoSource, registerInfo } from './info.js';
import { registerMetrics, type StatsSource } from './metrics.js';
import { registerOpenApi } from './openapi.js';
import { HttpProblem, problemBody } from './problem.js';
import { registerResourceRoutes } from './resources.js';
import { registerUi } from './ui.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

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
  stats?: StatsSource;
};

export const API = '/api/v1';
const PUBLIC_API = new Set([`${API}/info`, `${API}/openapi.json`]);

/** The machine uuid of the routes a machine's own token may use, else undefined. */
function machineRoute(req: FastifyRequest): string | undefined {
  const url = req.url.split('?')[0]!;
  const m = /^\/api\/v1\/machines\/([0-9a-f-]{36})(\/callback|\/inventory)?$/.exec(url);
  if (!m) return undefined;
  if (!m[2] && req.method !== 'GET') return undefined;
  return m[1];
}

/** Tokens never reach a log line, not even in a query string. */
export function logUrl(url: string): string {
  return url.replace(/([?&]token=)[^&]*/g, '$1[secure]');
}

/** Everything under the API needs a bearer token, except the few public routes; boot files never do. */
function needsToken(req: FastifyRequest): boolean {
  const url = req.url.split('?')[0]!;
  if (!url.startsWith(`${API}/`) && url !== API) return false;
  return !PUBLIC_API.has(url);
}

export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: opts.log as FastifyBaseLogger,
    // Our own onResponse hook writes the one line per request.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 16 * 1024 * 1024,
    routerOptions: { ignoreTrailingSlash: true },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
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

  // JSON bodies under any +json media type (merge-patch, json-patch) parse like application/json.
  app.addContentTypeParser(/^application\/[a-z0-9.+-]*\+json$/, { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, body === '' ? undefined : JSON.parse(body as string));
    } catch (err) {
      done(new HttpProblem(400, `the body is not valid JSON: ${(err as Error).message}`), undefined);
    }
  });

  const check = tokenChecker(opts.store);
  app.addHook('onRequest', async (req) => {
    if (!needsToken(req)) return;
    const h = req.headers.authorization;
    const m = h ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
    // A booted machine's initrd may only manage a GET with the token in the query (busybox wget).
    const token = m?.[1] ?? (machineRoute(req) ? (req.query as { token?: string })?.token : undefined);
    if (!token) {
      throw new HttpProblem(
        401,
        'this route needs "Authorization: Bearer <token>"; the admin token is in <data-dir>/admin.token',
        undefined,
        {
          'www-authenticate': 'Bearer realm="plinth"',
        },
      );
    }
    const p = await check(token);
    if (!p) {
      throw new HttpProblem(401, 'the bearer token is not valid (or has expired)', undefined, {
        'www-authenticate': 'Bearer realm="plinth", error="invalid_token"',
      });
    }
    // A machine token reaches only its own machine's record, callback and inventory; the rest is admin-only.
    if (p.role !== 'admin') {
      const own = machineRoute(req);
      if (!own || own !== p.machine) throw new HttpProblem(403, 'a machine token may only reach its own machine');
    }
    req.principal = p;
  });

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

  registerInfo(app, opts.info);
  registerUi(app);
  registerEvents(app, { bus: opts.bus, log: opts.log });
  registerMetrics(app, { store: opts.store, bus: opts.bus, stats: opts.stats ?? (() => ({})) });
  registerOpenApi(app, opts.version);
  registerResourceRoutes(app, { store: opts.store, bus: opts.bus });
  registerFileRoutes(app, { store: opts.store, bus: opts.bus, filesDir: opts.filesDir, log: opts.log });
  const boots = opts.boots ?? bootRecorder(opts.store);
  const bootDeps = {
    store: opts.store,
    bus: opts.bus,
    log: opts.log,
    filesDir: opts.filesDir,
    boots,
    advertiseAddress: opts.advertiseAddress,
  };
  const bootRoutes = registerBootRoutes(app, bootDeps);
  app.register(async (api) => bootRoutes.registerMachineApi(api), { prefix: API });
  registerFileServing(app, {
    filesDir: opts.filesDir,
    assetsDir: opts.assetsDir,
    log: opts.log,
    hooks: fileHooks(bootDeps),
  });
  return app;
}
