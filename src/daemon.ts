import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { bindErrorLine } from './bind-error.js';
import { bootService } from './boot/service.js';
import type { Config } from './config.js';
import type { DhcpServerOptions } from './dhcp/server.js';
import { type Bus, createBus } from './events.js';
import { buildApp } from './http/app.js';
import { bootRecorder } from './inventory/boots.js';
import { bootstrapAdminToken, pruneExpiredTokens } from './inventory/tokens.js';
import type { Logger } from './log.js';
import { seedStore } from './seed.js';
import { checkAssets, liveQuirks, ServiceBindError, startDhcp, startTftp } from './services.js';
import { openSqliteStore } from './store/sqlite.js';
import type { Store } from './store/store.js';
import { VERSION } from './version.js';

export type Daemon = {
  store: Store;
  bus: Bus;
  httpPort: number;
  close(): Promise<void>;
};

/** A start-up failure an operator can act on: main prints its message as one line and exits 1. */
export class StartupError extends Error {}

export type DaemonOptions = {
  /** Extra DHCP server options; tests use them to answer on loopback (`wildcard`, `replyTo`, `clientPort`). */
  dhcp?: Partial<DhcpServerOptions>;
};

/** Wires store, bus, HTTP (and DHCP/TFTP when enabled) together. main.ts only parses config and handles signals. */
export async function startDaemon(
  cfg: Config,
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
  opts: DaemonOptions = {},
): Promise<Daemon> {
  const started = new Date();
  const dataDir = path.resolve(cfg.dataDir);
  const filesDir = path.join(dataDir, 'files');
  try {
    await mkdir(filesDir, { recursive: true });
  } catch (err) {
    throw new StartupError(
      `data directory ${dataDir} cannot be created: ${(err as Error).message}; set --data-dir or PLINTH_DATA_DIR to a writable directory`,
    );
  }
  let store: Store & { schemaVersion: number };
  try {
    store = openSqliteStore(path.join(dataDir, 'plinth.db'));
  } catch (err) {
    throw new StartupError(`database ${path.join(dataDir, 'plinth.db')} cannot be opened: ${(err as Error).message}`);
  }
  const bus = createBus();
  const closers: (() => Promise<void>)[] = [];
  const fail = async (msg: string): Promise<never> => {
    for (const c of closers.reverse()) await c().catch(() => {});
    await store.close();
    throw new StartupError(msg);
  };

  await seedStore(store, bus, log, path.resolve(cfg.bootenvsDir));
  const tok = await bootstrapAdminToken(store, dataDir, env.PLINTH_ADMIN_TOKEN);
  if (tok.fromEnv) log.info('admin token taken from PLINTH_ADMIN_TOKEN');
  else if (tok.created) log.info({ file: tok.file }, 'admin token created: read it from this file (mode 0600)');
  else log.info({ file: tok.file }, 'admin token exists (created at first start)');

  // Expired machine tokens: swept at start and hourly, so a busy lab does not grow the table without bound.
  const sweepTokens = () =>
    pruneExpiredTokens(store)
      .then((n) => n && log.info({ removed: n }, 'expired machine tokens removed'))
      .catch((err) => log.warn({ err }, 'token sweep failed; retried in an hour'));
  void sweepTokens();
  const sweeper = setInterval(sweepTokens, 3_600_000).unref();
  closers.push(async () => clearInterval(sweeper));

  const listeners: Record<string, unknown> = {};
  const stats: Record<string, () => unknown> = {};
  const boots = bootRecorder(store);
  const app = await buildApp({
    store,
    bus,
    log,
    dataDir,
    filesDir,
    version: VERSION,
    assetsDir: path.resolve(cfg.assetsDir),
    advertiseAddress: cfg.advertiseAddress,
    boots,
    stats: () => Object.fromEntries(Object.entries(stats).map(([k, f]) => [k, f() as Record<string, number>])),
    info: () => ({
      name: 'plinth',
      version: VERSION,
      startedAt: started.toISOString(),
      uptimeSeconds: Math.round((Date.now() - started.getTime()) / 1000),
      listeners,
      features: { api: true, files: true, dhcp: cfg.dhcp, tftp: cfg.tftp, proxyDhcp: cfg.dhcp },
      store: { backend: 'sqlite', schemaVersion: store.schemaVersion },
      stats: Object.fromEntries(Object.entries(stats).map(([k, f]) => [k, f()])),
    }),
  });
  try {
    await app.listen({ port: cfg.httpPort, host: cfg.httpAddress });
  } catch (err) {
    await fail(bindErrorLine('HTTP', 'tcp', cfg.httpPort, err as NodeJS.ErrnoException, { port: '--http-port' }));
  }
  closers.push(() => app.close());
  const httpPort = (app.server.address() as AddressInfo).port;
  listeners.http = { address: cfg.httpAddress, port: httpPort };
  log.info(
    { address: cfg.httpAddress, port: httpPort, api: `http://${cfg.httpAddress}:${httpPort}/api/v1` },
    'http listening',
  );

  const quirks = await liveQuirks(store, bus, log);
  closers.push(async () => quirks.close());
  const deps = {
    cfg,
    store,
    bus,
    log,
    boots,
    boot: bootService({ store, bus, log, filesDir, boots }),
    filesDir,
    httpPort,
    quirks,
    dhcpOptions: opts.dhcp,
  };
  checkAssets(path.resolve(cfg.assetsDir), log);
  if (cfg.tftp) {
    try {
      const tftp = await startTftp(deps);
      closers.push(() => tftp.close());
      listeners.tftp = { address: tftp.address, port: tftp.port };
      stats.tftp = () => tftp.stats;
      log.info({ address: tftp.address, port: tftp.port }, 'tftp listening');
    } catch (err) {
      await fail(err instanceof ServiceBindError ? err.message : `TFTP: ${(err as Error).message}`);
    }
  }
  if (cfg.dhcp) {
    try {
      const dhcp = await startDhcp(deps);
      closers.push(() => dhcp.close());
      listeners.dhcp = { port: cfg.dhcpPort, proxyPort: cfg.dhcpProxyPort, interfaces: cfg.dhcpInterfaces };
      stats.dhcp = () => dhcp.stats;
      log.info(
        { port: cfg.dhcpPort, proxyPort: cfg.dhcpProxyPort, interfaces: cfg.dhcpInterfaces },
        'dhcp listening (answers only enabled subnets)',
      );
    } catch (err) {
      await fail(err instanceof ServiceBindError ? err.message : `DHCP: ${(err as Error).message}`);
    }
  }

  let closing: Promise<void> | undefined;
  return {
    store,
    bus,
    httpPort,
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
