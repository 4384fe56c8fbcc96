import { chmod, mkdir, stat } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { bindErrorLine } from './bind-error.js';
import type { Config } from './config.js';
import { defaultServerId, startRegistry } from './daemon-registry.js';
import type { DhcpServerOptions } from './dhcp/server.js';
import { type DutyOptions, startDuties } from './duties.js';
import { type Bus, createBus } from './events.js';
import { startFilePeers } from './files/peers.js';
import { buildApp } from './http/app.js';
import { closePlain, createListeners, fdLimits, httpLimits, plainGuard } from './http/listeners.js';
import { loadTls, type TlsMaterial } from './http/tls.js';
import { AdminTokenError, bootstrapAdminToken } from './inventory/tokens.js';
import { leadershipOf } from './leader.js';
import type { Logger } from './log.js';
import { followPeers } from './peer-events.js';
import type { DriverFactory } from './power/driver.js';
import { checkAssets, type LoaderIndex } from './provision/loaders.js';
import type { BootSessions } from './provision/sessions.js';
import { seedStore } from './seed.js';
import { type OpenedStore, openStore, storeLabel } from './store/open.js';
import type { Store } from './store/store.js';
import { VERSION } from './version.js';
import { bootCore, ServiceBindError, startDhcp, startTftp } from './wiring.js';

export type Daemon = {
  store: Store;
  bus: Bus;
  /** The recent boot offers of the DHCP server (what the TFTP service caps transfers by). */
  sessions: BootSessions;
  /** The plain HTTP port: boot files, and with TLS off the API too. */
  httpPort: number;
  /** With TLS on: the API's and /ui's port, and the certificate it presents. */
  httpsPort?: number;
  tls?: TlsMaterial;
  close(): Promise<void>;
};

/** A start-up failure an operator can act on: main prints its message as one line and exits 1. */
export class StartupError extends Error {}

export type DaemonOptions = {
  /** Extra DHCP server options; tests use them to answer on loopback (`wildcard`, `replyTo`, `clientPort`). */
  dhcp?: Partial<DhcpServerOptions>;
  /** The BMC drivers (src/power): tests pass a fake BMC's; by default the IPMI, Redfish and manual drivers. */
  drivers?: DriverFactory;
  /** The singleton duties' pacing (tests shorten it). */
  duties?: DutyOptions;
};

type Closers = (() => Promise<void>)[];

/** Wires store, bus, HTTP (and DHCP/TFTP when enabled) together. main.ts only parses config and handles signals. */
export async function startDaemon(
  cfg: Config,
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
  opts: DaemonOptions = {},
): Promise<Daemon> {
  const started = new Date();
  const { dataDir, filesDir } = await dataDirs(cfg, log);
  const fds = fdLimits();
  if (fds) log.info({ soft: fds.soft, hard: fds.hard }, 'open files limit');
  const tls = cfg.tls === 'on' ? await startTls(cfg, dataDir, log) : undefined;
  const limits = httpLimits(cfg);
  const servers = createListeners({ tls, limits, log });
  /** Bound once the HTTPS listener is up (port 0 in tests). */
  let httpsPort: number | undefined;
  const serverId = cfg.serverId ?? defaultServerId();
  let store: OpenedStore;
  try {
    store = await openStore(
      cfg.store,
      dataDir,
      (err) => log.warn({ err: err.message }, 'inventory: a database connection failed; it reconnects'),
      serverId,
      cfg.leaseDurability,
      (n) =>
        n.phase === 'failed'
          ? log.warn(n, 'inventory: an index build failed; the next start builds it again')
          : log.info(n, 'inventory: an index of the upgrade, built without holding lease writes'),
    );
  } catch (err) {
    throw new StartupError(`database ${storeLabel(cfg.store, dataDir)} cannot be opened: ${(err as Error).message}`);
  }
  const durability = store.backend === 'sqlite' ? { leaseDurability: cfg.leaseDurability ?? 'disk' } : {};
  log.info({ backend: store.backend, schemaVersion: store.schemaVersion, ...durability }, 'inventory opened');
  const bus = createBus(log);
  // Closed last (closers run in reverse): the duties under it stop first.
  const leadership = leadershipOf(store, log);
  const closers: Closers = [() => leadership.close()];
  const fail = async (msg: string): Promise<never> => {
    for (const c of closers.reverse()) await c().catch(() => {});
    await store.close();
    throw new StartupError(msg);
  };

  await seedStore(store, bus, log, path.resolve(cfg.bootenvsDir));
  const admin = await adminToken(store, dataDir, env, log);
  if (admin) return fail(admin);
  closers.push(startDuties(store, leadership, log, opts.duties, bus));

  const listeners: Record<string, unknown> = {};
  // `cluster.leader` (1/0) is what a `plinth_leader` gauge reads (GET /metrics).
  const stats: Record<string, () => unknown> = { cluster: () => ({ leader: leadership.leader ? 1 : 0 }) };
  // One of each for HTTP, TFTP and DHCP: the boot service's cache of recently minted machine tokens is then one
  // too (a boot fetching over both transports mints one token), and so is the trust rule's DHCP evidence.
  // Several daemons on one inventory: a file uploaded to another is fetched from it when asked for here.
  const filePeers = await startFilePeers(cfg, { store, log, serverId, filesDir }).catch((err) =>
    fail(`files across daemons: ${err.message}`),
  );
  closers.push(async () => filePeers.close());
  const core = await bootCore(cfg, store, bus, log, filesDir, opts.drivers, leadership);
  closers.push(async () => core.close());
  const app = await buildApp({
    store,
    bus,
    log,
    dataDir,
    filesDir,
    version: VERSION,
    assetsDir: path.resolve(cfg.assetsDir),
    loaderFile: (name) => core.loaders.find(name)?.path,
    advertiseAddress: cfg.advertiseAddress,
    boot: core.boot,
    fleet: core.fleet,
    serverFactory: servers.serverFactory,
    ipxeHttpsPort: tls && cfg.ipxeHttps ? () => httpsPort : undefined,
    plainHttpPort: tls ? () => httpPort : undefined,
    metricsPublic: cfg.metricsPublic,
    stats: () => Object.fromEntries(Object.entries(stats).map(([k, f]) => [k, f() as Record<string, number>])),
    info: () => ({
      name: 'plinth',
      version: VERSION,
      startedAt: started.toISOString(),
      uptimeSeconds: Math.round((Date.now() - started.getTime()) / 1000),
      listeners,
      features: { api: true, files: true, dhcp: cfg.dhcp, tftp: cfg.tftp, proxyDhcp: cfg.dhcp, tls: Boolean(tls) },
      tls: tls
        ? { fingerprint: tls.fingerprint, source: tls.source, subject: tls.subject, notAfter: tls.notAfter }
        : undefined,
      store: { backend: store.backend, schemaVersion: store.schemaVersion },
      daemon: { serverId, leader: leadership.leader },
      loaders: loadersInfo(core.loaders),
      stats: Object.fromEntries(Object.entries(stats).map(([k, f]) => [k, f()])),
    }),
  });
  const plain = servers.plain();
  const bound = await listenHttp(app, tls ? plain : undefined, cfg, closers);
  if (typeof bound === 'string') await fail(bound);
  const httpPort = ((plain?.listening ? plain : app.server).address() as AddressInfo).port;
  if (plain?.listening) httpsPort = (app.server.address() as AddressInfo).port;
  listeners.http = { address: cfg.httpAddress, port: httpPort };
  if (httpsPort !== undefined) listeners.https = { address: cfg.httpAddress, port: httpsPort };
  const apiBase =
    httpsPort !== undefined ? `https://${cfg.httpAddress}:${httpsPort}` : `http://${cfg.httpAddress}:${httpPort}`;
  const me = { serverId, version: VERSION, backend: store.backend, api: apiBase, peerUrl: filePeers.url(httpPort) };
  await joinPeers({ store, bus, log, core, leadership, me, beatSeconds: cfg.heartbeatSeconds ?? 10 }, closers, fail);
  log.info(
    {
      address: cfg.httpAddress,
      port: httpPort,
      httpsPort,
      api: `${apiBase}/api/v1`,
      maxConnections: limits.maxConnections,
      headersTimeoutMs: limits.headersTimeoutMs,
    },
    httpsPort !== undefined
      ? 'http listening (boot files and machine routes; the API and /ui on https)'
      : 'http listening',
  );

  checkAssets(core.loaders, path.resolve(cfg.assetsDir), log);
  const udp = { cfg, store, bus, log, core, filesDir, httpPort, dhcpOptions: opts.dhcp };
  const failed = await startUdp(udp, closers, listeners, stats);
  if (failed) await fail(failed);

  let closing: Promise<void> | undefined;
  return {
    store,
    bus,
    sessions: core.sessions,
    httpPort,
    httpsPort,
    tls,
    close() {
      closing ??= (async () => {
        for (const c of closers.reverse()) await c().catch((err) => log.error({ err }, 'close failed'));
        await store.close();
        log.info('stopped');
      })();
      return closing;
    },
  };
}

/** Several daemons on one inventory: follows the others' changes, and beats in the daemons list. */
async function joinPeers(
  x: {
    store: OpenedStore;
    bus: Bus;
    log: Logger;
    core: Awaited<ReturnType<typeof bootCore>>;
    leadership: ReturnType<typeof leadershipOf>;
    me: Parameters<typeof startRegistry>[1];
    beatSeconds: number;
  },
  closers: Closers,
  fail: (msg: string) => Promise<never>,
): Promise<void> {
  const { store, bus, log, core, leadership, me, beatSeconds } = x;
  const peers = await followPeers(
    store,
    bus,
    me.serverId,
    log,
    (e) => core.fleet.peerChange(e),
    // Other daemons' changes this one never heard of: the DHCP caches read the inventory again.
    () => void core.inventory.reload().catch((err) => log.warn({ err }, 'inventory reload after a gap failed')),
  ).catch((err) => fail(`event log: ${err.message}`));
  if (peers) closers.push(peers);
  const registry = await startRegistry(store, me, log, beatSeconds, () => leadership.leader).catch((err) =>
    fail(`daemons list: ${err.message}`),
  );
  closers.push(() => registry.close());
  // The list shows a change of leader at once, not at the next beat.
  const offLead = leadership.on(() => registry.beat());
  closers.push(async () => offLead());
}

/** /api/v1/info: each loader served and from where, and the ones missing (never offered to a client). */
function loadersInfo(index: LoaderIndex) {
  return {
    // /info is public: the path of a loader in the file store would name the data dir, so it is not given.
    served: index.list().map((l) => (l.source === 'files' ? { name: l.name, source: l.source } : { ...l })),
    missing: index.missing(),
  };
}

/** The data dir (private) and the file store in it. */
async function dataDirs(cfg: Config, log: Logger): Promise<{ dataDir: string; filesDir: string }> {
  const dataDir = path.resolve(cfg.dataDir);
  const filesDir = path.join(dataDir, 'files');
  try {
    await privateDir(dataDir, log);
    await mkdir(filesDir, { recursive: true });
  } catch (err) {
    throw new StartupError(
      `data directory ${dataDir} cannot be created: ${(err as Error).message}; set --data-dir or PLINTH_DATA_DIR to a writable directory`,
    );
  }
  return { dataDir, filesDir };
}

/** The admin token (created at first start, or from PLINTH_ADMIN_TOKEN); returns the start-up error, if any. */
async function adminToken(
  store: Store,
  dataDir: string,
  env: NodeJS.ProcessEnv,
  log: Logger,
): Promise<string | undefined> {
  let tok: Awaited<ReturnType<typeof bootstrapAdminToken>>;
  try {
    tok = await bootstrapAdminToken(store, dataDir, env.PLINTH_ADMIN_TOKEN);
  } catch (err) {
    if (err instanceof AdminTokenError) return err.message;
    throw err;
  }
  if (tok.fromEnv) log.info('admin token taken from PLINTH_ADMIN_TOKEN');
  else if (tok.created) log.info({ file: tok.file }, 'admin token created: read it from this file (mode 0600)');
  else log.info({ file: tok.file }, 'admin token exists (created at first start)');
  return undefined;
}

/** TFTP and DHCP when enabled: pushes their closers, listeners and stats; returns the start-up error, if any. */
async function startUdp(
  d: Parameters<typeof startTftp>[0],
  closers: Closers,
  listeners: Record<string, unknown>,
  stats: Record<string, () => unknown>,
): Promise<string | undefined> {
  const { cfg, log } = d;
  const failure = (what: string, err: unknown) =>
    err instanceof ServiceBindError ? err.message : `${what}: ${(err as Error).message}`;
  if (cfg.tftp) {
    try {
      const tftp = await startTftp(d);
      closers.push(() => tftp.close());
      listeners.tftp = { address: tftp.address, port: tftp.port };
      stats.tftp = () => tftp.stats;
      log.info({ address: tftp.address, port: tftp.port }, 'tftp listening');
    } catch (err) {
      return failure('TFTP', err);
    }
  }
  if (cfg.dhcp) {
    try {
      const dhcp = await startDhcp(d);
      closers.push(() => dhcp.close());
      listeners.dhcp = { port: cfg.dhcpPort, proxyPort: cfg.dhcpProxyPort, interfaces: cfg.dhcpInterfaces };
      stats.dhcp = () => dhcp.stats;
      log.info(
        { port: cfg.dhcpPort, proxyPort: cfg.dhcpProxyPort, interfaces: cfg.dhcpInterfaces },
        'dhcp listening (answers only enabled subnets)',
      );
    } catch (err) {
      return failure('DHCP', err);
    }
  }
  return undefined;
}

/**
 * Connections the kernel queues before the daemon accepts them (capped by net.core.somaxconn, 4096 on current
 * kernels). Node's default, 511, overflows under a connection flood while the event loop is busy: the kernel then
 * drops the SYNs of new clients, whose retry comes a second later (the security e2e's slowloris once measured one
 * /info at 1,040 ms so).
 */
const LISTEN_BACKLOG = 4096;

/** The plain server the daemon binds itself (fastify binds only its own); rejects with the bind error. */
function listenPlain(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
      server.removeListener('error', onError);
      resolve();
    });
  });
}

/**
 * The data dir holds the database (secure params in clear), the admin token and the TLS key: only the daemon's
 * user may list or enter it. A directory that exists with looser modes is tightened, and the log says so.
 */
async function privateDir(dir: string, log: Logger): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await stat(dir);
  if ((st.mode & 0o077) === 0) return;
  try {
    await chmod(dir, 0o700);
    log.warn({ dir, was: (st.mode & 0o777).toString(8) }, 'data directory was readable by others: set to 0700');
  } catch (err) {
    log.warn(
      { dir, was: (st.mode & 0o777).toString(8), err: (err as Error).message },
      'data directory is readable by others and cannot be changed: chmod 700 it',
    );
  }
}

/** The operator's certificate or the self-signed one, logged with its fingerprint. */
async function startTls(cfg: Config, dataDir: string, log: Logger): Promise<TlsMaterial> {
  let tls: TlsMaterial;
  try {
    tls = await loadTls({
      dataDir,
      certFile: cfg.tlsCert,
      keyFile: cfg.tlsKey,
      altNames: cfg.advertiseAddress ? [cfg.advertiseAddress] : [],
    });
  } catch (err) {
    throw new StartupError((err as Error).message);
  }
  log.info(
    { fingerprint: tls.fingerprint, file: tls.certFile, subject: tls.subject, notAfter: tls.notAfter },
    tls.created
      ? 'tls: self-signed certificate created; clients pin this fingerprint (plinth --fingerprint) or trust the file (--ca)'
      : `tls: serving the ${tls.source === 'operator' ? "operator's" : 'self-signed'} certificate`,
  );
  return tls;
}

/**
 * With `plain` (TLS on): the app on HTTPS, and the plain server for boot routes with the guard that refuses the
 * rest there. Without: the app on plain HTTP. Pushes the closers; answers the bind error line on failure.
 */
async function listenHttp(
  app: FastifyInstance,
  plain: Server | undefined,
  cfg: Config,
  closers: (() => Promise<void>)[],
): Promise<string | undefined> {
  const bindLine = (svc: string, port: number, err: unknown, flag: string, off?: string) =>
    bindErrorLine(svc, 'tcp', port, err as NodeJS.ErrnoException, { port: flag, off });
  if (!plain) {
    try {
      await app.listen({ port: cfg.httpPort, host: cfg.httpAddress, backlog: LISTEN_BACKLOG });
    } catch (err) {
      return bindLine('HTTP', cfg.httpPort, err, '--http-port');
    }
    closers.push(() => app.close());
    return undefined;
  }
  const httpsPort = cfg.httpsPort ?? 8443;
  app.addHook(
    'onRequest',
    plainGuard(() => (app.server.address() as AddressInfo | null)?.port ?? httpsPort),
  );
  try {
    await app.listen({
      port: httpsPort,
      host: cfg.httpAddress,
      backlog: LISTEN_BACKLOG,
      listenTextResolver: (a) => `https listening at ${a.replace(/^http:/, 'https:')}`,
    });
  } catch (err) {
    return bindLine('HTTPS', httpsPort, err, '--https-port', '--tls off');
  }
  closers.push(() => app.close());
  try {
    await listenPlain(plain, cfg.httpPort, cfg.httpAddress);
  } catch (err) {
    return bindLine('HTTP', cfg.httpPort, err, '--http-port');
  }
  closers.push(() => closePlain(plain));
  return undefined;
}
