/**
 * A DHCP socket driven by the native addon (native/dhcp_io.c) instead of dgram. Under load dgram's work around
 * each datagram was most of the main thread's time: a callback into JavaScript per datagram with the tick and
 * microtask queues run after each, a receive buffer, an rinfo object; per reply a DNS lookup of an address, a
 * request object and a completion callback. Here the addon reads up to a ring's worth of datagrams with one
 * recvmmsg and calls back once per batch; a reply leaves with one non-blocking sendto, its outcome known at once.
 *
 * The ring is allocated once per socket. A datagram is handed on as a view of its slot, valid during the call
 * only: the next batch overwrites it. decode (packet.ts) copies what it keeps, and nothing else holds it.
 */
import { isIPv4 } from 'node:net';
import os from 'node:os';
import type { DhcpBatchIo, DhcpIoHandle } from '../native/index.js';
import type { DatagramHandlers, DhcpSocket, Source } from './bind.js';
import { ipInt, ipStr } from './ip.js';

/** Datagrams per batch (one recvmmsg). */
export const RING_SLOTS = 32;
/**
 * Bytes per datagram. A DHCP message from a client fits in 576 bytes unless it announces more with option 57,
 * and clients stay within one Ethernet frame (1,500); a longer datagram is truncated by the kernel, flagged,
 * counted as malformed and dropped.
 */
export const SLOT_BYTES = 2048;

const TRUNCATED = 1;
const errnoNames = new Map(Object.entries(os.constants.errno).map(([name, n]) => [n, name]));

/** The error dgram's send callback would get: `send EAGAIN 10.0.0.9:68`, with code, errno, address and port. */
export function sendError(errno: number, address: string, port: number): Error {
  const code = errnoNames.get(errno) ?? `E${errno}`;
  return Object.assign(new Error(`send ${code} ${address}:${port}`), {
    code,
    errno: -errno,
    syscall: 'send',
    address,
    port,
  });
}

/** Whether a reply can go to `address`:`port` as given: a dotted quad (no name lookup, unlike dgram) and a port. */
export const sendable = (address: string, port: number): boolean =>
  isIPv4(address) && Number.isInteger(port) && port >= 0 && port <= 0xffff;

export class NativeDhcpSocket implements DhcpSocket {
  private readonly ring: Buffer;
  private readonly meta: Uint32Array;
  private h: DhcpIoHandle | undefined;
  // The last source address as text: datagrams come from a few relays (or one client) in a row, so most need no
  // new string (ipStr builds one from four numbers; perf put the formatting at about 1% of the server's CPU).
  private lastFrom = -1;
  private lastFromText = '';

  /** Takes `fd` over (closed by close()); throws when the addon refuses it, the fd then still the caller's. */
  constructor(
    private readonly io: DhcpBatchIo,
    readonly fd: number,
    private readonly on: DatagramHandlers,
    slots = RING_SLOTS,
    private readonly slotBytes = SLOT_BYTES,
  ) {
    this.ring = Buffer.alloc(slots * slotBytes);
    this.meta = new Uint32Array(slots * 4);
    this.h = io.dhcpIoOpen(fd, this.ring, this.meta, slotBytes, this.onBatch);
  }

  /** One batch: each datagram in arrival order, until all are handed on or the socket is closed meanwhile. */
  private readonly onBatch = (count: number): void => {
    const { ring, meta, slotBytes, on } = this;
    for (let i = 0; i < count && this.h !== undefined; i++) {
      const m = i * 4;
      const from = meta[m + 1]!;
      if (from !== this.lastFrom) {
        this.lastFrom = from;
        this.lastFromText = ipStr(from);
      }
      const src: Source = { address: this.lastFromText, port: meta[m + 2]! };
      if (meta[m + 3]! & TRUNCATED) {
        on.oversized(src, slotBytes);
        continue;
      }
      const at = i * slotBytes;
      on.message(ring.subarray(at, at + meta[m]!), src);
    }
  };

  send(buf: Buffer, port: number, address: string, done: (err: Error | null) => void): void {
    const h = this.h;
    // Replies go to dotted quads (giaddr, ciaddr, yiaddr, the broadcast address): no name lookup, unlike dgram.
    // A full socket buffer (EAGAIN, ENOBUFS) is a lost reply like any other: reported, never thrown.
    const r =
      h === undefined
        ? -os.constants.errno.EBADF
        : sendable(address, port)
          ? this.io.dhcpIoSend(h, buf, 0, buf.length, ipInt(address), port)
          : -os.constants.errno.EINVAL;
    done(r > 0 ? null : sendError(-r, address, port));
  }

  get directFd(): number | undefined {
    return this.h === undefined ? undefined : this.fd;
  }

  close(): Promise<void> {
    const h = this.h;
    this.h = undefined;
    if (h !== undefined) this.io.dhcpIoClose(h);
    return Promise.resolve();
  }
}
