/**
 * The socket of one TFTP transfer (its TID, RFC 1350): bound to an ephemeral port, talking only to the client's
 * address and port.
 *
 * Two implementations behind one shape. With the native helper (native/tftp_xfer.c and tftp_send.c, `udpOpen`...) the socket is
 * watched on Node's own loop from C: a bare ACK reaches the server as a number, and a window of DATA packets leaves
 * in one system call (UDP GSO, else sendmmsg). Profiles of 16 lock-step clients showed dgram's own work around each
 * datagram (a 64 KiB receive allocation, the peer address formatted as text, an rinfo object, a send request)
 * costing more user time than the protocol. That socket is not connect()ed: a DATA or ACK from any other source is
 * answered with ERROR 5 "Unknown transfer ID" without disturbing the transfer (RFC 1350 section 4), and an ICMP port
 * unreachable is recognised as the client's from the error queue (IP_RECVERR).
 *
 * Without the helper, plain dgram does the same job one packet per call, on a connected socket: the kernel then
 * drops a stranger's datagrams (answering ICMP, not ERROR 5), but reports the client's ICMP port unreachable, which
 * an unconnected dgram socket cannot see.
 */
import dgram from 'node:dgram';
import { native, type TftpFastPath as TransferAddon } from '../native/index.js';
import type { TftpClient } from './source.js';

export type TransferHandlers = {
  /**
   * A bare 4-byte ACK (the hot path of every read). `fired`: it was the ACK the socket was armed for, and the armed
   * window has already been sent.
   */
  onAck(block: number, fired: boolean): void;
  /** Any other datagram from the client. */
  onMessage(msg: Buffer): void;
  /** A socket error; ECONNREFUSED means an ICMP port unreachable about the client came back: it has gone. */
  onError(code: string): void;
};

export type TransferSocket = {
  /** Our TID. */
  readonly port: number;
  readonly native: boolean;
  send(buf: Buffer, offset?: number, length?: number): void;
  /**
   * `count` packets stored back to back from `offset`, `slot` bytes apart, the last one `lastLength` bytes long.
   * Packets the kernel does not take (ENOBUFS) count as lost: the retransmission timer resends them.
   */
  sendBatch(buf: Buffer, offset: number, slot: number, count: number, lastLength: number): void;
  /**
   * Native sockets only (undefined on dgram): hands over the next window in advance, one or two runs of packets laid
   * out as for sendBatch, to be sent the moment a bare ACK `ack` (16-bit) is the next datagram from the client; it
   * then reaches onAck with `fired` true. Any other datagram, a new arm or disarm() cancels it. The caller keeps the
   * buffers alive and unchanged while armed.
   */
  arm?(
    ack: number,
    slot: number,
    buf: Buffer,
    offset: number,
    count: number,
    lastLength: number,
    buf2?: Buffer,
    offset2?: number,
    count2?: number,
    lastLength2?: number,
  ): void;
  disarm?(): void;
  /** Idempotent; the port is free again when it resolves. */
  close(): Promise<void>;
};

/**
 * The native helper if it is built and new enough to have transfer sockets (PLINTH_NET_ADDON overrides the path, as
 * for DHCP). A missing or stale build is not an error: transfers then run on dgram, correct and somewhat slower.
 */
export function transferAddon(): TransferAddon | undefined {
  return native.tftpFastPath;
}

function nativeSocket(
  addon: TransferAddon,
  bindAddress: string,
  client: TftpClient,
  h: TransferHandlers,
  gso: boolean,
  busyPollUs: number,
): TransferSocket {
  const handle = addon.udpOpen(
    bindAddress,
    client.address,
    client.port,
    (ack, msg, err, fired) => {
      if (ack >= 0) h.onAck(ack, fired === true);
      else if (msg !== undefined) h.onMessage(msg);
      else h.onError(err ?? 'EIO');
    },
    gso,
    busyPollUs,
  );
  const port = addon.udpLocalPort(handle);
  // Send errors (ENOBUFS...) count as losses; a vanished client is reported through onPacket from the error queue.
  return {
    port,
    native: true,
    send: (buf, offset = 0, length = buf.length - offset) => {
      addon.udpSend(handle, buf, offset, length);
    },
    sendBatch: (buf, offset, slot, count, lastLength) => {
      addon.udpSendBatch(handle, buf, offset, slot, count, lastLength);
    },
    arm:
      addon.udpArm === undefined
        ? undefined
        : (ack, slot, buf, offset, count, lastLength, buf2, offset2, count2, lastLength2) => {
            if (buf2 === undefined) addon.udpArm!(handle, ack, slot, buf, offset, count, lastLength);
            else
              addon.udpArm!(handle, ack, slot, buf, offset, count, lastLength, buf2, offset2!, count2!, lastLength2!);
          },
    disarm: addon.udpDisarm === undefined ? undefined : () => void addon.udpDisarm!(handle),
    close: async () => {
      addon.udpClose(handle);
    },
  };
}

async function dgramSocket(bindAddress: string, client: TftpClient, h: TransferHandlers): Promise<TransferSocket> {
  const sock = dgram.createSocket({ type: 'udp4' });
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(0, bindAddress, () => {
        sock.connect(client.port, client.address, () => {
          sock.off('error', reject);
          resolve();
        });
      });
    });
  } catch (err) {
    sock.close();
    throw err;
  }
  sock.on('message', (msg) => {
    if (msg.length === 4 && msg[0] === 0 && msg[1] === 4) h.onAck((msg[2] << 8) | msg[3], false);
    else h.onMessage(msg);
  });
  sock.on('error', (err: NodeJS.ErrnoException) => h.onError(err.code ?? 'EIO'));
  let closed: Promise<void> | undefined;
  return {
    port: sock.address().port,
    native: false,
    send: (buf, offset = 0, length = buf.length - offset) => sock.send(buf, offset, length),
    sendBatch: (buf, offset, slot, count, lastLength) => {
      for (let i = 0; i < count; i++) sock.send(buf, offset + i * slot, i === count - 1 ? lastLength : slot);
    },
    close: () => {
      closed ??= new Promise<void>((resolve) => {
        sock.once('close', resolve);
        sock.close();
      });
      return closed;
    },
  };
}

/**
 * `native: false` forces dgram (tests of the fallback, A/B measurements); `gso: false` keeps the native socket but
 * sends windows with sendmmsg instead of UDP GSO; `busyPollUs`: after a send, wait for a client that answers within
 * that many microseconds by polling instead of sleeping (native only; 0 = never; see xfer_spin in the helper).
 */
export async function openTransferSocket(
  bindAddress: string,
  client: TftpClient,
  handlers: TransferHandlers,
  opts: { native?: boolean; gso?: boolean; busyPollUs?: number } = {},
): Promise<TransferSocket> {
  const addon = opts.native === false ? undefined : transferAddon();
  if (addon !== undefined)
    return nativeSocket(addon, bindAddress, client, handlers, opts.gso ?? true, opts.busyPollUs ?? 0);
  return dgramSocket(bindAddress, client, handlers);
}
