import { existsSync } from 'node:fs';
import path from 'node:path';
import { bindErrorLine } from './bind-error.js';
import { type BootService, localAddressFor } from './boot/service.js';
import type { Config } from './config.js';
import { startDhcpServer } from './dhcp/server.js';
import type { Bus } from './events.js';
import type { BootRecorder } from './inventory/boots.js';
import { modifyDoc } from './inventory/crud.js';
import { RESOURCES } from './inventory/resources.js';
import type { Logger } from './log.js';
import type { Machine } from './model/machine.js';
import type { Store } from './store/store.js';
import { startTftpServer } from './tftp/server.js';
import { chainSources, fileRootSource, functionSource, type TftpSource } from './tftp/source.js';

const machinesRes = RESOURCES.find((r) => r.kind === 'machines')!;
export const LOADER_FILES = ['undionly.kpxe', 'ipxe.efi', 'snponly.efi'];

type Deps = {
  cfg: Config;
  store: Store;
  bus: Bus;
  log: Logger;
  boots: BootRecorder;
  boot: BootService;
  filesDir: string;
  httpPort: number;
};

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
  const machineAt = async (ip: string) =>
    (await store.list('machines', { filters: [{ field: 'address', value: ip }], limit: 1 })).items[0]?.doc as
      | Machine
      | undefined;
  const rendered = functionSource(async (p, client) => {
    const m = /^\/?machines\/([0-9a-f-]{36})\/(.+)$/.exec(p);
    if (!m) return undefined;
    const machine = (await store.get('machines', m[1]!))?.doc as Machine | undefined;
    if (!machine) return undefined;
    const address = cfg.advertiseAddress ?? localAddressFor(client.address) ?? '127.0.0.1';
    const r = await d.boot.render(machine, m[2]!, {
      server: { address, httpPort: d.httpPort },
      trusted: machine.address === client.address,
      via: 'TFTP',
    });
    return r.ok ? r.text : undefined;
  });
  const inner = chainSources([fileRootSource(assetsDir), fileRootSource(d.filesDir), rendered]);
  const source: TftpSource = {
    async open(p, client) {
      const r = await inner.open(p, client);
      machineAt(client.address)
        .then((m) => {
          if (m)
            return boots.record(m.uuid, {
              kind: 'tftp',
              detail: `RRQ ${p} -> ${r.status === 'ok' ? `${r.size} bytes` : r.status}`,
              data: { path: p },
            });
        })
        .catch(() => {});
      return r;
    },
  };
  // A firmware quirk's blksize cap (chosen with the DHCP boot decision, by MAC) applies to the address that
  // MAC's lease then gets: some UEFI TFTP clients mis-negotiate large blocks.
  const pendingCap = new Map<string, number>();
  const capByAddress = new Map<string, number>();
  const off = d.bus.on((e) => {
    const mac = e.data?.mac as string | undefined;
    if (!mac) return;
    if (e.type === 'dhcp.boot') {
      const cap = e.data?.blksize as number | undefined;
      if (cap) pendingCap.set(mac, cap);
      else pendingCap.delete(mac);
    } else if (e.type === 'lease.acked' && e.key) {
      const cap = pendingCap.get(mac);
      if (cap) capByAddress.set(e.key, cap);
      else capByAddress.delete(e.key);
    }
  });
  try {
    const srv = await startTftpServer({
      source,
      maxBlksizeFor: (address) => capByAddress.get(address),
      address: cfg.tftpAddress,
      port: cfg.tftpPort,
      logger: log,
      maxBlksize: cfg.tftpMaxBlksize,
      uploadDir: cfg.tftpUploadDir,
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
  const inv = { store, bus };
  const off = bus.on((e) => {
    const mac = (e.data?.mac as string | undefined) ?? (e.type === 'dhcp.boot' ? e.key : undefined);
    if (!mac || !(e.type === 'lease.acked' || e.type === 'dhcp.boot')) return;
    (async () => {
      const uuid = e.machine ?? (await store.keyOf('machines', 'macs', mac));
      if (!uuid) return;
      if (e.type === 'lease.acked') {
        const address = e.key!;
        await modifyDoc(inv, machinesRes, uuid, (doc) => ({ ...doc, address, lastSeen: new Date().toISOString() }));
        await boots.record(uuid, {
          kind: 'dhcp',
          detail: `lease ${address} acknowledged (subnet ${e.data?.subnet})`,
          data: e.data,
        });
      } else {
        await boots.record(
          uuid,
          { kind: 'dhcp', detail: `offered ${e.data?.filename}: ${e.data?.reason}`, data: e.data },
          { firmwareStart: true },
        );
      }
    })().catch((err) => log.warn({ err: (err as Error).message, mac }, 'could not record a DHCP event on its machine'));
  });
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
