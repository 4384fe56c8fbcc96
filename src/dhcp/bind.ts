/**
 * Sockets for DHCP: one per served interface, bound to it with SO_BINDTODEVICE through the native addon
 * (native/dhcp_sock.c), because Node's dgram cannot tell on which interface a broadcast arrived. Without the
 * addon only a single wildcard socket is possible, which is correct for one segment (plus relays) only.
 */
import dgram from 'node:dgram';
import { bindFailure } from '../bind-error.js';
import { type DhcpSockets, native, type RaResponder } from '../native/index.js';

/** The native helper's DHCP sockets, ARP entries and Router Solicitation responder (src/native). */
export type NetAddon = DhcpSockets & RaResponder;

/** The addon from native/build/Release (node-gyp's output), or PLINTH_NET_ADDON; undefined when it was not built. */
export function loadNetAddon(): NetAddon | undefined {
  return native.dhcpSockets && native.raResponder && { ...native.dhcpSockets, ...native.raResponder };
}

export const ADDON_HINT =
  'build the native addon: `npm run build:native` in the Plinth folder (needs g++, make and python3)';

/**
 * A port that cannot be bound: which socket, why, and the fixes (the same formatter as TFTP and HTTP); the
 * daemon prefixes `DHCP: `. Keeps `code` for callers that branch on it.
 */
export function portError(port: number, what: string, err: NodeJS.ErrnoException): Error {
  const code = err.code ?? '';
  const e = new Error(
    bindFailure('DHCP', `${what} UDP port ${port}${code ? ` (${code})` : ''}`, port, err, {
      port: '--dhcp-port',
      off: '--no-dhcp',
      holders: 'another DHCP server (dnsmasq, isc-dhcp-server, kea)',
      check: 'check the interface names (--dhcp-interfaces)',
    }),
  );
  (e as NodeJS.ErrnoException).code = code;
  return e;
}

const fds = new WeakMap<dgram.Socket, number>();

function bindFd(fd: number): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket({ type: 'udp4' });
    s.once('error', reject);
    s.bind({ fd }, () => {
      s.off('error', reject);
      resolve(s);
    });
  });
}

/**
 * A UDP socket on `port`, bound to `ifname` when given (addon required), else a wildcard socket. No
 * SO_REUSEADDR: another DHCP server on the port must make this fail (EADDRINUSE), not share the broadcasts.
 * Broadcast is enabled for replies to 255.255.255.255.
 */
export async function openUdpSocket(opts: {
  /** SO_REUSEADDR: only for passive sockets that must coexist with a local DHCP client (rogue watch on 68). */
  reuse?: boolean;
  port: number;
  ifname?: string;
  address?: string;
  what?: string;
}): Promise<dgram.Socket> {
  const what = opts.what ?? 'DHCP';
  const addon = loadNetAddon();
  if (opts.ifname && !addon) {
    throw new Error(`cannot serve DHCP on interface ${opts.ifname}: the socket helper is missing; ${ADDON_HINT}`);
  }
  if (addon) {
    let fd: number;
    try {
      fd = addon.openUdp4(opts.ifname ?? null, opts.port, opts.address, opts.reuse ?? false);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENODEV') throw new Error(`interface ${opts.ifname} does not exist: check --dhcp-interfaces`);
      throw portError(opts.port, opts.ifname ? `${what} (on ${opts.ifname})` : what, e);
    }
    try {
      const s = await bindFd(fd);
      fds.set(s, fd);
      s.setBroadcast(true);
      return s;
    } catch (err) {
      addon.closeFd(fd);
      throw err;
    }
  }
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket({ type: 'udp4', reuseAddr: opts.reuse ?? false });
    s.once('error', (err) => reject(portError(opts.port, what, err as NodeJS.ErrnoException)));
    s.bind({ port: opts.port, address: opts.address ?? '0.0.0.0' }, () => {
      s.removeAllListeners('error');
      s.setBroadcast(true);
      resolve(s);
    });
  });
}

/** The file descriptor behind a socket opened through the addon (for the ARP ioctl). */
export function fdOf(s: dgram.Socket): number | undefined {
  return fds.get(s);
}
