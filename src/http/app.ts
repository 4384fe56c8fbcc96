import type { FastifyReply, FastifyRequest, FastifyServerFactory } from 'fastify';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type { Bus } from '../events.js';
import type { Fleet } from '../fleet/index.js';
import { secureNamesCache } from '../inventory/params.js';
import { tokenChecker } from '../inventory/tokens.js';
import { infoLines, type Logger } from '../log.js';
import type { BootService } from '../provision/boot.js';
import type { Store } from '../store/store.js';
import { API } from './api-prefix.js';
import { type AuditOptions, auditHook, auditLog, registerAuditRoutes } from './audit.js';
import { type Authenticate, authenticate, failClosed, publicScope, tokenScope } from './auth.js';
import { registerBackupRoutes } from './backup.js';
import { fileHooks, registerBootRoutes } from './boot.js';
import { registerDaemonRoutes } from './daemons-api.js';
import { setProblemHandlers } from './errors.js';
import { registerEvents } from './events.js';
import { registerFileRoutes } from './files-api.js';
import { registerFileServing } from './files-serve.js';
import { registerImageRoutes } from './images-api.js';
import { type InfoSource, registerInfo } from './info.js';
import { addJsonParsers } from './json-body.js';
import { registerMachineRoutes } from './machine-api.js';
import { observeHttp, registerMetrics, type StatsSource } from './metrics.js';
import { openApiDocument, registerApiDocs, registerOpenApi } from './openapi.js';
import { registerPeerBlobs } from './peer-blobs.js';
import { registerPowerRoutes } from './power-api.js';
import { logUrl } from './redact.js';
import { registerResourceRoutes } from './resources.js';
import { registerRolloutRoutes } from './rollouts-api.js';
import { registerTokenRoutes } from './tokens.js';
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
  /** A boot loader found in the distribution's iPXE directories (src/provision/loaders.ts): its path. */
  loaderFile?: (name: string) => string | undefined;
  advertiseAddress?: string;
  /** The daemon's boot service (src/provision/boot.ts), the one TFTP uses too. */
  boot: BootService;
  /** BMC power, reprovision and rollouts (src/fleet); without it those routes answer 503. */
  fleet?: Fleet;
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
};

/**
 * One JSON log line per request (fastify's own request logging is off), as `log.info({reqId, method, url,
 * status, ms, ip}, 'http')` writes it, through `infoLines`. The URL is the only field a client chooses: escaped,
 * with any `?token=` masked.
 */
function requestLogger(log: Logger) {
  const line = infoLines(log, 'http');
  return (req: FastifyRequest, reply: FastifyReply, done: () => void) => {
    if (line.on())
      line(
        `"reqId":${JSON.stringify(req.id)},"method":${JSON.stringify(req.method)},"url":${JSON.stringify(logUrl(req.url))},"status":${reply.statusCode},"ms":${Math.round(reply.elapsedTime * 10) / 10}${req.ip === undefined ? '' : `,"ip":${JSON.stringify(req.ip)}`}`,
      );
    done();
  };
}

/**
 * Boot scripts, rendered files (/boot, /machines/:uuid/*) and /files, fetched by firmware and installers
 * without credentials.
 */
async function bootScope(app: FastifyInstance, opts: AppOptions) {
  const bootDeps = {
    advertiseAddress: opts.advertiseAddress,
    boot: opts.boot,
    plainHttpPort: opts.plainHttpPort,
    ipxeHttpsPort: opts.ipxeHttpsPort,
  };
  await app.register(async (boot) => {
    registerBootRoutes(boot, bootDeps);
    registerFileServing(boot, {
      filesDir: opts.filesDir,
      assetsDir: opts.assetsDir,
      loaderFile: opts.loaderFile,
      log: opts.log,
      hooks: fileHooks(bootDeps),
    });
  });
}

/** The API under /api/v1: every route needs a token, and the token's role must allow the route (auth.ts). */
function apiRoutes(opts: AppOptions) {
  return (api: FastifyInstance) => {
    const { store, bus } = opts;
    const secureNames = secureNamesCache(store, bus);
    registerResourceRoutes(api, { store, bus, secureNames });
    // A machine's params, callback, inventory and boots; a machine token reaches the routes marked
    // config.machineToken for its own uuid only (auth.ts).
    registerMachineRoutes(api, { store, bus, secureNames, reports: opts.boot.reports });
    registerEvents(api, { bus, log: opts.log });
    registerFileRoutes(api, { store, bus, filesDir: opts.filesDir, log: opts.log });
    registerImageRoutes(api, { store, bus, filesDir: opts.filesDir, dataDir: opts.dataDir, log: opts.log });
    registerTokenRoutes(api, { store });
    registerAuditRoutes(api, { store });
    registerBackupRoutes(api, { store, dataDir: opts.dataDir, log: opts.log });
    registerDaemonRoutes(api, { store });
    registerPowerRoutes(api, { store, bus, fleet: opts.fleet });
    registerRolloutRoutes(api, { fleet: opts.fleet });
  };
}

/** The root instance: limits, logging, parsers, problem+json errors, the fail-closed net and the audit log. */
function rootApp(opts: AppOptions, auth: Authenticate): FastifyInstance {
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
  app.addHook('onResponse', requestLogger(opts.log));
  // Request count and latency by route pattern: on the root, before the scopes, so every route is counted.
  observeHttp(app);
  addJsonParsers(app);
  setProblemHandlers(app);
  // A route under the API prefix registered outside the API's scopes needs a token too (fails closed).
  app.addHook('onRequest', failClosed(auth));
  const audit = auditLog(opts.store, opts.log, opts.audit);
  void audit.prune();
  // Writes made with a valid token, in a token scope or through the net above.
  app.addHook('onResponse', auditHook(audit));
  return app;
}

/**
 * The HTTP app: fastify with one plugin scope per audience (src/http/README.md). Public: /ui, the API docs,
 * /api/v1/info and /api/v1/openapi.json, the boot routes and /files. Token: the API under /api/v1, and /metrics
 * unless it is public. Authentication is the scopes' (auth.ts), never a test on the URL.
 */
export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const auth = authenticate(tokenChecker(opts.store));
  const app = rootApp(opts, auth);
  const doc = openApiDocument(opts.version);

  // Public: no token.
  await app.register(async (ui) => registerUi(ui));
  await app.register(async (docs) => registerApiDocs(docs, doc));
  await app.register(
    publicScope((pub) => {
      registerInfo(pub, opts.info);
      registerOpenApi(pub, doc);
    }),
    { prefix: API },
  );
  await bootScope(app, opts);
  // Peers on a shared inventory fetch blobs here with the peer secret (registered only on such a daemon).
  await app.register(async (peer) => registerPeerBlobs(peer, { filesDir: opts.filesDir, log: opts.log }));

  // Token: /metrics (unless public) and the API.
  const metricsDeps = { store: opts.store, bus: opts.bus, stats: opts.stats ?? (() => ({})) };
  const metrics = (s: FastifyInstance) => registerMetrics(s, metricsDeps);
  await app.register(opts.metricsPublic ? async (s) => metrics(s) : tokenScope(auth, metrics));
  await app.register(tokenScope(auth, apiRoutes(opts)), { prefix: API });
  return app;
}
