/**
 * Sockets for DHCP: one per served interface, bound to it with SO_BINDTODEVICE through the native addon
 * (native/dhcp_sock.c), because Node's dgram cannot tell on which interface a broadcast arrived. Without the
 * addon only a single wildcard socket is possible, which is correct for one segment (plus relays) only.
 */
import dgram from 'node:dgram';
import { bindFailure } from '../bind-error.js';
import { type DhcpSockets, native, type RaResponder } from '../native/index.js';
import { NativeDhcpSocket } from './native-socket.js';

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

type OpenOptions = {
  /** SO_REUSEADDR: only for passive sockets that must coexist with a local DHCP client (rogue watch on 68). */
  reuse?: boolean;
  port: number;
  ifname?: string;
  address?: string;
  what?: string;
};

/** A socket's fd from the addon, bound as asked; undefined without the addon (a wildcard socket for dgram). */
function openFd(opts: OpenOptions, addon: NetAddon | undefined): number | undefined {
  const what = opts.what ?? 'DHCP';
  if (opts.ifname && !addon) {
    throw new Error(`cannot serve DHCP on interface ${opts.ifname}: the socket helper is missing; ${ADDON_HINT}`);
  }
  if (!addon) return undefined;
  try {
    return addon.openUdp4(opts.ifname ?? null, opts.port, opts.address, opts.reuse ?? false);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENODEV') throw new Error(`interface ${opts.ifname} does not exist: check --dhcp-interfaces`);
    throw portError(opts.port, opts.ifname ? `${what} (on ${opts.ifname})` : what, e);
  }
}

/**
 * A UDP socket on `port`, bound to `ifname` when given (addon required), else a wildcard socket. No
 * SO_REUSEADDR: another DHCP server on the port must make this fail (EADDRINUSE), not share the broadcasts.
 * Broadcast is enabled for replies to 255.255.255.255.
 */
export async function openUdpSocket(opts: OpenOptions): Promise<dgram.Socket> {
  const fd = openFd(opts, loadNetAddon());
  if (fd !== undefined) return adopt(fd);
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket({ type: 'udp4', reuseAddr: opts.reuse ?? false });
    s.once('error', (err) => reject(portError(opts.port, opts.what ?? 'DHCP', err as NodeJS.ErrnoException)));
    s.bind({ port: opts.port, address: opts.address ?? '0.0.0.0' }, () => {
      s.removeAllListeners('error');
      s.setBroadcast(true);
      resolve(s);
    });
  });
}

/** dgram on an fd the addon opened (closed again when dgram refuses it). */
async function adopt(fd: number): Promise<dgram.Socket> {
  try {
    const s = await bindFd(fd);
    s.setBroadcast(true);
    return s;
  } catch (err) {
    loadNetAddon()?.closeFd(fd);
    throw err;
  }
}

/** Where a datagram came from. */
export type Source = { address: string; port: number };

/** What a DHCP listener needs of its socket: the dgram one and the native one (native-socket.ts) both fit. */
export interface DhcpSocket {
  /** The fd, when the addon opened the socket (for the ARP ioctl). */
  readonly fd: number | undefined;
  /**
   * The fd replies may be sent on from another thread (the native path's, while open): the store's journal sends
   * ACKs on it (durable-ack.ts). Undefined for dgram, which owns its sends.
   */
  readonly directFd?: number;
  /** Sends one datagram; `done` gets null or the error, never a throw (the same function for every reply). */
  send(buf: Buffer, port: number, address: string, done: (err: Error | null) => void): void;
  close(): Promise<void>;
}

export type DatagramHandlers = {
  /** One datagram. `msg` may be a view of a receive ring: valid only during the call (decode copies it). */
  message(msg: Buffer, src: Source): void;
  /** A datagram longer than the native path's slot, truncated by it and not handed on. */
  oversized(src: Source, slot: number): void;
  error(err: Error): void;
};

/**
 * A DHCP socket (see openUdpSocket for how it is bound). Through the addon and with its batch I/O, datagrams
 * are read by the batch and replies sent directly (native-socket.ts: dgram's per-datagram work was most of the main
 * thread's time under load); otherwise dgram, as before.
 */
export async function openDhcpSocket(opts: OpenOptions, on: DatagramHandlers): Promise<DhcpSocket> {
  const addon = loadNetAddon();
  const fd = openFd(opts, addon);
  // PLINTH_DHCP_IO=dgram keeps dgram on the addon's sockets: a way back, and the A/B of bench/dhcp-io.ts.
  const io = process.env.PLINTH_DHCP_IO === 'dgram' ? undefined : native.dhcpBatchIo;
  if (fd !== undefined && io) {
    try {
      return new NativeDhcpSocket(io, fd, on);
    } catch (err) {
      addon?.closeFd(fd);
      throw err;
    }
  }
  const s = fd !== undefined ? await adopt(fd) : await openUdpSocket(opts);
  s.on('message', on.message);
  s.on('error', on.error);
  return {
    fd,
    send: (buf, port, address, done) => s.send(buf, port, address, done),
    close: () => new Promise<void>((resolve) => s.close(() => resolve())),
  };
}
