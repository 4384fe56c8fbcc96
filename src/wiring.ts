/**
 * Wiring only: builds the boot objects the daemon creates once (timeline, trust, boot service, boot sessions,
 * inventory cache) and starts the DHCP and TFTP servers on them from the config. What a boot does lives in
 * src/provision; what to boot in src/boot.
 */
import path from 'node:path';
import { bindErrorLine } from './bind-error.js';
import type { Config } from './config.js';
import { defaultServerId } from './daemon-registry.js';
import { type DhcpServerOptions, startDhcpServer } from './dhcp/server.js';
import type { Bus } from './events.js';
import { createFleet, type Fleet } from './fleet/index.js';
import { type BootRecorder, bootRecorder } from './inventory/boots.js';
import { type InventoryCache, loadInventoryCache } from './inventory/cache.js';
import { tokenChecker } from './inventory/tokens.js';
import type { Leadership } from './leader.js';
import type { Logger } from './log.js';
import { createDriver, type DriverFactory } from './power/index.js';
import { powerOptions } from './power/settings.js';
import { type BootService, bootService } from './provision/boot.js';
import { recordDhcpFacts } from './provision/dhcp-facts.js';
import { dhcpEvidence } from './provision/evidence.js';
import {
  DEFAULT_LOADER_SEARCH,
  type LoaderIndex,
  loaderIndex,
  loaderTftpSource,
  recordedLoaders,
} from './provision/loaders.js';
import { localAddressFor } from './provision/local-address.js';
import { type BootSessions, bootSessions } from './provision/sessions.js';
import { bootTftpSource } from './provision/tftp-source.js';
import { type Trust, trustRule } from './provision/trust.js';
import type { Store } from './store/store.js';
import { startTftpServer } from './tftp/server.js';

/** What a boot goes through, one of each for the whole daemon (HTTP, TFTP and DHCP share them). */
export type BootCore = {
  boots: BootRecorder;
  trust: Trust;
  boot: BootService;
  sessions: BootSessions;
  /** Served subnets, reservations, prefs and the firmware quirk table, in memory, reloaded on changes. */
  inventory: InventoryCache;
  /** Where each boot loader is served from (assets dir, distribution, file store): DHCP, TFTP and /info ask it. */
  loaders: LoaderIndex;
  /** BMC power control, reprovision and rollouts (src/fleet): the API's power and rollout routes use it. */
  fleet: Fleet;
  close(): Promise<void>;
};

export async function bootCore(
  cfg: Config,
  store: Store,
  bus: Bus,
  log: Logger,
  filesDir: string,
  drivers: DriverFactory = createDriver,
  leadership?: Leadership,
): Promise<BootCore> {
  // Several daemons may write one machine's timeline (the leader's reprovision steps, another's DHCP and
  // callback): on PostgreSQL each entry is a conditional write, re-applied on conflict; on SQLite, batched
  // (src/inventory/boots.ts).
  // Each entry names the daemon that recorded it (`--server-id`, default the host name, as the daemon's).
  const boots = bootRecorder(store, { log, serverId: cfg.serverId ?? defaultServerId() });
  // The trust rule's DHCP evidence and the boot sessions listen before the DHCP server can send an ACK.
  const evidence = dhcpEvidence(bus, cfg.trustEvidenceSeconds ? { freshnessMs: cfg.trustEvidenceSeconds * 1000 } : {});
  const sessions = bootSessions(bus);
  const trust = trustRule({ store, evidence, checkToken: tokenChecker(store) });
  const discovery = cfg.discoveryMaxUnclaimed !== undefined ? { maxUnclaimed: cfg.discoveryMaxUnclaimed } : undefined;
  const boot = bootService({ store, bus, log, filesDir, boots, trust, discovery });
  const inventory = await loadInventoryCache(store, bus, log);
  // Several daemons: a loader uploaded through any of them is offered by all (fetched on first use).
  const recorded = store.sharedLeases ? recordedLoaders(store, bus, log) : undefined;
  const loaders = loaderIndex({
    assetsDir: path.resolve(cfg.assetsDir),
    search: cfg.loaderSearch ?? DEFAULT_LOADER_SEARCH,
    filesDir,
    recorded: recorded?.has,
  });
  // Rollouts are driven by the leading daemon only (src/leader.ts); any daemon's API changes them.
  const fleet = createFleet({ store, bus, log, boots, drivers, leadership, ...powerOptions(cfg) });
  // With DHCP on, rollouts resume once it listens (startDhcp): a machine power-cycled before would go unanswered.
  const resume = cfg.dhcp ? undefined : setTimeout(() => void fleet.start(), 1000).unref();
  return {
    loaders,
    boots,
    trust,
    boot,
    sessions,
    inventory,
    fleet,
    async close() {
      clearTimeout(resume);
      await fleet.close();
      inventory.close();
      recorded?.close();
      boot.close();
      sessions.close();
      evidence.close();
    },
  };
}

type Deps = {
  cfg: Config;
  store: Store;
  bus: Bus;
  log: Logger;
  core: BootCore;
  filesDir: string;
  httpPort: number;
  /** Extra DHCP server options: tests reply to loopback (`wildcard`, `replyTo`, `clientPort`). */
  dhcpOptions?: Partial<DhcpServerOptions>;
};

/** Thrown when a service port cannot be bound: main prints the one-line message and exits 1. */
export class ServiceBindError extends Error {}

const isBindError = (err: unknown) =>
  ['EACCES', 'EPERM', 'EADDRINUSE', 'EADDRNOTAVAIL'].includes((err as NodeJS.ErrnoException).code ?? '');

export async function startTftp(d: Deps) {
  const { cfg, log } = d;
  const source = bootTftpSource({
    store: d.store,
    log,
    boots: d.core.boots,
    boot: d.core.boot,
    sessions: d.core.sessions,
    roots: [path.resolve(cfg.assetsDir), d.filesDir, loaderTftpSource(d.core.loaders)],
    serverAddress: (client) => cfg.advertiseAddress ?? localAddressFor(client) ?? '127.0.0.1',
    httpPort: d.httpPort,
    maxBlksize: cfg.tftpMaxBlksize,
  });
  try {
    return await startTftpServer({
      source,
      address: cfg.tftpAddress,
      port: cfg.tftpPort,
      logger: log,
      maxBlksize: cfg.tftpMaxBlksize,
      busyPollUs: cfg.tftpBusyPollUs,
      uploadDir: cfg.tftpUploadDir,
      maxTransfers: cfg.tftpMaxTransfers,
      maxTransfersPerClient: cfg.tftpMaxPerClient,
      maxClientTimeout: cfg.tftpMaxTimeout,
      unansweredRetries: cfg.tftpUnansweredRetries,
    });
  } catch (err) {
    if (isBindError(err)) {
      throw new ServiceBindError(
        bindErrorLine('TFTP', 'udp', cfg.tftpPort, err as NodeJS.ErrnoException, {
          port: '--tftp-port',
          off: '--no-tftp',
        }),
      );
    }
    throw err;
  }
}

/**
 * DHCP, driven by the store's subnets. Each boot decision it sends is a boot session (`onBoot`); what it hands out
 * updates the machines (address, lastSeen) and their boot timelines (what was offered and why).
 */
export async function startDhcp(d: Deps) {
  const { cfg, store, bus, log } = d;
  const off = recordDhcpFacts({ store, bus, log, boots: d.core.boots });
  const options: DhcpServerOptions = {
    store,
    bus,
    log,
    interfaces: cfg.dhcpInterfaces.length ? cfg.dhcpInterfaces : undefined,
    port: cfg.dhcpPort,
    proxyPort: cfg.dhcpProxyPort,
    httpPort: d.httpPort,
    serverAddress: cfg.advertiseAddress,
    hasLoader: d.core.loaders.has,
    inventory: d.core.inventory,
    onBoot: d.core.sessions.record,
    // Resolved as the daemon's and its store's are (src/daemon.ts): the one name its leases and events carry.
    serverId: cfg.serverId ?? defaultServerId(),
    ...d.dhcpOptions,
  };
  try {
    const srv = await startDhcpServer(options);
    void d.core.fleet.start().catch((err) => log.error({ err }, 'rollouts could not resume'));
    return {
      ...srv,
      close: async () => {
        off();
        await srv.close();
      },
    };
  } catch (err) {
    off();
    const code = (err as NodeJS.ErrnoException).code;
    if (isBindError(err) || code) throw new ServiceBindError(`DHCP: ${(err as Error).message}`);
    throw err;
  }
}
