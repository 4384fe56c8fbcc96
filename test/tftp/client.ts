/**
 * A small TFTP client for tests, with knobs to misbehave: drop received DATA blocks, skip or repeat ACKs, abort after
 * the OACK (the PXE tsize probe). RFC 7440 receiver rules: ACK the last block of each window, and on an out-of-order
 * block ACK the last block received in order.
 */
import dgram from 'node:dgram';
import { decodePacket, encodeAck, encodeError, encodeRequest, type OptionList } from '../../src/tftp/codec.js';

export type GetOptions = {
  host?: string;
  /** Local address to send from (default: host), e.g. another 127.0.0.0/8 address to be a different client. */
  from?: string;
  mode?: string;
  options?: OptionList;
  /** Drop this DATA packet (n counts every DATA packet received, from 0). */
  dropData?: (block: number, n: number) => boolean;
  /** Do not send this ACK (n counts ACKs the client meant to send). */
  dropAck?: (block: number, n: number) => boolean;
  /** Send every ACK this many times (Sorcerer's Apprentice provocation). */
  ackCopies?: number;
  /** Send ERROR 8 instead of ACK 0 after an OACK. */
  abortAfterOack?: boolean;
  /** Client retransmission timeout (ms). */
  retransmitMs?: number;
  /** Overall limit (ms). */
  limitMs?: number;
};

export type GetResult = {
  data: Buffer;
  oack?: OptionList;
  error?: { code: number; message: string };
  dataPackets: number;
  duplicates: number;
  serverPort?: number;
  timedOut: boolean;
};

export function tftpGet(port: number, filename: string, o: GetOptions = {}): Promise<GetResult> {
  const host = o.host ?? '127.0.0.1';
  const sock = dgram.createSocket('udp4');
  const parts: Buffer[] = [];
  let received = 0; // absolute blocks received in order
  let blksize = 512;
  let window = 1;
  let serverPort: number | undefined;
  let lastSent = encodeRequest('RRQ', filename, o.mode ?? 'octet', o.options ?? []);
  let lastSentPort = port;
  let ackCount = 0;
  let dataPackets = 0;
  let duplicates = 0;
  let oack: OptionList | undefined;
  const copies = o.ackCopies ?? 1;

  return new Promise((resolve) => {
    let done = false;
    let inFlight = 0;
    const send = (buf: Buffer, to: number) => {
      inFlight++;
      sock.send(buf, to, host, () => {
        if (--inFlight === 0 && done) sock.close();
      });
    };
    const end = (r: Partial<GetResult>) => {
      if (done) return;
      done = true;
      clearInterval(timer);
      clearTimeout(limit);
      // Close only after queued sends (the final ACK) have left: closing cancels them.
      if (inFlight === 0) sock.close();
      resolve({ data: Buffer.concat(parts), oack, dataPackets, duplicates, serverPort, timedOut: false, ...r });
    };
    let lastRx = Date.now();
    const rtx = o.retransmitMs ?? 200;
    const timer = setInterval(
      () => {
        if (Date.now() - lastRx >= rtx) {
          lastRx = Date.now();
          send(lastSent, lastSentPort);
        }
      },
      Math.max(5, Math.floor(rtx / 4)),
    );
    const limit = setTimeout(() => end({ timedOut: true }), o.limitMs ?? 20_000);

    const ack = (block: number) => {
      const n = ackCount++;
      lastSent = encodeAck(block);
      lastSentPort = serverPort!;
      if (o.dropAck?.(block, n)) return;
      for (let i = 0; i < copies; i++) send(lastSent, serverPort!);
    };

    sock.on('message', (msg, rinfo) => {
      lastRx = Date.now();
      if (serverPort === undefined) serverPort = rinfo.port;
      else if (rinfo.port !== serverPort) {
        // RFC 1350: a packet from another TID gets ERROR 5 and does not disturb the transfer.
        send(encodeError(5, 'Unknown transfer ID'), rinfo.port);
        return;
      }
      const d = decodePacket(msg);
      if (!d.ok) return;
      const p = d.packet;
      if (p.op === 'ERROR') return end({ error: { code: p.code, message: p.message } });
      if (p.op === 'OACK') {
        if (received > 0) return;
        oack = p.options;
        for (const [k, v] of p.options) {
          if (k === 'blksize') blksize = Number(v);
          if (k === 'windowsize') window = Number(v);
        }
        if (o.abortAfterOack) {
          send(encodeError(8, 'User aborted the transfer'), serverPort);
          end({});
          return;
        }
        ack(0);
        return;
      }
      if (p.op !== 'DATA') return;
      const n = dataPackets++;
      if (o.dropData?.(p.block, n)) return;
      if (p.block !== ((received + 1) & 0xffff)) {
        duplicates++;
        // Out of order or a repeat: say where we are (RFC 7440 receiver; in lock-step this re-ACKs the last block).
        ack(received);
        return;
      }
      received++;
      parts.push(Buffer.from(p.data));
      const last = p.data.length < blksize;
      if (last || received % window === 0) ack(received);
      if (last) end({});
    });
    sock.bind(0, o.from ?? host, () => send(lastSent, port));
  });
}

/** Sends raw datagrams to a port and collects whatever comes back within `waitMs`. */
export async function exchange(port: number, packets: Buffer[], waitMs = 200): Promise<Buffer[]> {
  const sock = dgram.createSocket('udp4');
  const replies: Buffer[] = [];
  sock.on('message', (m) => replies.push(m));
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  for (const p of packets) sock.send(p, port, '127.0.0.1');
  await new Promise((r) => setTimeout(r, waitMs));
  await new Promise<void>((r) => sock.close(() => r()));
  return replies;
}
