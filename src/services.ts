import { existsSync } from 'node:fs';
import path from 'node:path';
import { bindErrorLine } from './bind-error.js';
import type { BlksizeCap } from './boot/caps.js';
import { DEFAULT_QUIRKS, findQuirks, type Quirk, quirkTable } from './boot/quirks.js';
import { coalesced } from './coalesce.js';
import type { Config } from './config.js';
import { type DhcpServerOptions, startDhcpServer } from './dhcp/server.js';
import type { Bus } from './events.js';
import type { BootRecorder } from './inventory/boots.js';
import { getPrefs } from './inventory/resources.js';
import type { Logger } from './log.js';
import type { Machine } from './model/machine.js';
import type { BootService } from './provision/boot-render.js';
import { recordDhcpFacts } from './provision/dhcp-facts.js';
import { localAddressFor } from './provision/local-address.js';
import { blksizeCapFor } from './provision/tftp-caps.js';
import type { Trust } from './provision/trust.js';
import type { Store } from './store/store.js';
import { startTftpServer } from './tftp/server.js';
import { chainSources, fileRootSource, functionSource, type TftpSource } from './tftp/source.js';

export const LOADER_FILES = ['undionly.kpxe', 'ipxe.efi', 'snponly.efi'];

type Deps = {
  cfg: Config;
  store: Store;
  bus: Bus;
  log: Logger;
  boots: BootRecorder;
  boot: BootService;
  /** The one trust rule (HTTP and TFTP), fed by this daemon's DHCP evidence. */
  trust: Trust;
  filesDir: string;
  httpPort: number;
  /** The firmware quirk table (operator entries, then built-in ones); see `liveQuirks`. Default: built-in only. */
  quirks?: LiveQuirks;
  /** Extra DHCP server options: tests reply to loopback (`wildcard`, `replyTo`, `clientPort`). */
  dhcpOptions?: Partial<DhcpServerOptions>;
};

export type LiveQuirks = { table: readonly Quirk[]; reload(): Promise<void>; close(): void };

/**
 * The firmware quirk table the DHCP server consults: the `firmwareQuirks` pref, then DEFAULT_QUIRKS. It is one
 * array, updated in place when the prefs change (`prefs.updated` on the bus), so a server holding it sees an
 * operator's new entry from the next request on, without a restart.
 */
export async function liveQuirks(store: Store, bus: Bus, log: Logger): Promise<LiveQuirks> {
  const table: Quirk[] = [...DEFAULT_QUIRKS];
  const reload = async () => {
    const prefs = await getPrefs(store);
    table.splice(0, table.length, ...quirkTable(prefs.firmwareQuirks));
  };
  await reload().catch((err) =>
    log.error({ err: (err as Error).message }, 'firmware quirks: prefs are unreadable; only the built-in quirks apply'),
  );
  // Coalesce bursts of prefs writes into one reload, in order.
  const reloads = coalesced(reload, (err) =>
    log.error({ err: (err as Error).message }, 'firmware quirks: reloading prefs failed; keeping the previous table'),
  );
  const off = bus.on((e) => {
    if (e.type === 'prefs.updated') reloads.trigger();
  });
  return {
    table,
    reload: async () => {
      await reloads.settled();
      await reload();
    },
    close: off,
  };
}

/** Thrown when a service port cannot be bound: main prints the one-line message and exits 1. */
export class ServiceBindError extends Error {}

const isBindError = (err: unknown) =>
  ['EACCES', 'EPERM', 'EADDRINUSE', 'EADDRNOTAVAIL'].includes((err as NodeJS.ErrnoException).code ?? '');

/** Say once at start which boot loaders are missing and how to get them (README: assets/). */
export function checkAssets(assetsDir: string, log: Logger) {
  const missing = LOADER_FILES.filter((f) => !existsSync(path.join(assetsDir, f)));
  if (missing.length) {
    log.warn(
      { assetsDir, missing },
      `boot loaders missing in ${assetsDir}: ${missing.join(', ')}. PXE firmware cannot chainload iPXE until they are there: ` +
        `apt-get install ipxe; cp /usr/lib/ipxe/undionly.kpxe /usr/lib/ipxe/snponly.efi /boot/ipxe.efi ${assetsDir}/`,
    );
  }
}

/**
 * TFTP serves the boot loaders (assets/), uploaded files (data-dir/files) and each machine's rendered files at
 * machines/<uuid>/<path>; every fetch lands in the requesting machine's boot timeline.
 */
export async function startTftp(d: Deps) {
  const { cfg, store, boots, log } = d;
  const assetsDir = path.resolve(cfg.assetsDir);
  const quirks = d.quirks?.table ?? DEFAULT_QUIRKS;
  const rendered = functionSource(async (p, client) => {
    const m = /^\/?machines\/([0-9a-f-]{36})\/(.+)$/.exec(p);
    if (!m) return undefined;
    const machine = (await store.get('machines', m[1]!))?.doc as Machine | undefined;
    if (!machine) return undefined;
    const address = cfg.advertiseAddress ?? localAddressFor(client.address) ?? '127.0.0.1';
    // UDP sources are forged for free: over TFTP only a fresh DHCP acknowledgement from this daemon counts.
    const trust = await d.trust.isTheMachine({ transport: 'tftp', source: client.address, machine });
    const r = await d.boot.render(machine, m[2]!, { server: { address, httpPort: d.httpPort }, trust, via: 'TFTP' });
    return r.ok ? r.text : undefined;
  });
  const inner = chainSources([fileRootSource(assetsDir), fileRootSource(d.filesDir), rendered]);

  // A firmware quirk's blksize cap (chosen with the DHCP boot decision, by MAC) applies to the address that
  // MAC's lease then gets: some UEFI TFTP clients mis-negotiate large blocks.
  const pendingCap = new Map<string, BlksizeCap>();
  const quirkCapByAddress = new Map<string, BlksizeCap>();
  const off = d.bus.on((e) => {
    const mac = e.data?.mac as string | undefined;
    if (!mac) return;
    if (e.type === 'dhcp.boot') {
      const value = e.data?.blksize as number | undefined;
      if (!value) {
        pendingCap.delete(mac);
        return;
      }
      const q = findQuirks(quirks, {
        mac,
        arch: e.data?.arch as number | undefined,
        vendorClass: e.data?.vendorClass as string | undefined,
      }).blksize;
      const why = q?.value === value ? `${q.why}${q.from ? ` [${q.from}]` : ''}` : `chosen at DHCP time for ${mac}`;
      pendingCap.set(mac, { value, source: 'quirk', why: `firmware quirk: ${why}` });
    } else if (e.type === 'lease.acked' && e.key) {
      const cap = pendingCap.get(mac);
      if (cap) quirkCapByAddress.set(e.key, cap);
      else quirkCapByAddress.delete(e.key);
    }
  });

  const source: TftpSource = {
    async open(p, client) {
      const [r, who] = await Promise.all([
        inner.open(p, client),
        blksizeCapFor(store, client.address, quirkCapByAddress.get(client.address)).catch((err) => {
          log.warn(
            { err: (err as Error).message, client: client.address },
            'tftp: cannot work out the blksize cap of this client; the global maximum applies',
          );
          return undefined;
        }),
      ]);
      for (const problem of who?.problems ?? []) log.warn({ client: client.address, file: p }, `tftp: ${problem}`);
      const cap = who?.cap && who.cap.value < cfg.tftpMaxBlksize ? who.cap : undefined;
      if (cap && r.status === 'ok') {
        log.info(
          { client: client.address, file: p, blksize: cap.value, cap: cap.source, why: cap.why },
          `tftp: blksize at most ${cap.value} for ${client.address}: ${cap.why}`,
        );
      }
      const m = who?.machine;
      if (m) {
        boots
          .record(m.uuid, {
            kind: 'tftp',
            detail: `RRQ ${p} -> ${r.status === 'ok' ? `${r.size} bytes` : r.status}${cap && r.status === 'ok' ? `; blksize at most ${cap.value} (${cap.why})` : ''}`,
            data: { path: p, ...(cap ? { blksizeCap: cap.value, blksizeCapWhy: cap.why } : {}) },
          })
          .catch(() => {});
      }
      return r.status === 'ok' && cap ? { ...r, blksizeCap: cap.value } : r;
    },
  };
  try {
    const srv = await startTftpServer({
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
    return {
      ...srv,
      stats: srv.stats,
      close: async () => {
        off();
        await srv.close();
      },
    };
  } catch (err) {
    off();
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
 * DHCP, driven by the store's subnets; what it hands out updates the machines (address, lastSeen) and their
 * boot timelines (what was offered and why).
 */
export async function startDhcp(d: Deps) {
  const { cfg, store, bus, log, boots } = d;
  const assetsDir = path.resolve(cfg.assetsDir);
  const off = recordDhcpFacts({ store, bus, log, boots });
  try {
    const srv = await startDhcpServer({
      store,
      bus,
      log,
      interfaces: cfg.dhcpInterfaces.length ? cfg.dhcpInterfaces : undefined,
      port: cfg.dhcpPort,
      proxyPort: cfg.dhcpProxyPort,
      httpPort: d.httpPort,
      serverAddress: cfg.advertiseAddress,
      hasLoader: (name) => existsSync(path.join(assetsDir, name)) || existsSync(path.join(d.filesDir, name)),
      quirks: d.quirks?.table ?? DEFAULT_QUIRKS,
      ...d.dhcpOptions,
    });
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
