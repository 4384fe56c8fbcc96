/**
 * ACKs sent by the store the moment their lease is durable (store.ts DurableSend): with the SQLite store's lease
 * journal, the thread that fdatasyncs the record sends the ACK right after, with sendmmsg for the group it made
 * durable (native/journal.c journalAppendSend). Without it the ACK waits for the event loop to run the durable
 * callback, and then for its own send: at high rates a busy turn or a garbage collection on the loop's core put
 * milliseconds between the lease on disk and the ACK on the wire (REQUEST->ACK p99 several ms above
 * DISCOVER->OFFER's, issue 13). Only replies on a direct socket (the native path's fd) go this way; the store
 * says whether it took one (`taken`), and the server sends the others itself after the write, as before.
 */
import type { DurableSend } from '../store/store.js';
import type { Connections, Listener } from './connection.js';
import type { Delivery } from './delivery.js';
import { ipInt } from './ip.js';
import { sendable } from './native-socket.js';
import type { DhcpPacket } from './packet.js';
import type { AckSender, DhcpRequest } from './state-machine.js';

/** The send's outcome as the server's send callback takes it (the error dgram would give, or null). */
export type SendReport = (errno: number, address: number, port: number) => void;

class ThreadAck implements DurableSend {
  taken = false;
  constructor(
    readonly fd: number,
    readonly buf: Buffer,
    readonly address: number,
    readonly port: number,
    private readonly report: SendReport,
  ) {}
  sent(errno: number): void {
    this.report(errno, this.address, this.port);
  }
}

/** One listener's AckSender: the destination the server would send to, on the listener's direct fd. */
export class DurableAcks implements AckSender {
  constructor(
    private readonly conn: Connections,
    private readonly l: Listener,
    private readonly report: SendReport,
  ) {}

  durableSend(req: DhcpRequest, reply: DhcpPacket, buf: Buffer, delivery: Delivery): DurableSend | undefined {
    const fd = this.l.socket.directFd;
    // Back to the sender's own port: the source port is the server's to know (a 4011 exchange, not an ACK here).
    if (fd === undefined || delivery === 'back-to-sender') return undefined;
    const to = this.conn.finalDestination(delivery, this.l, req.pkt, reply, { address: req.source, port: 0 });
    // Not sendable as given: the server's own send reports it, as for any reply.
    if (!sendable(to.address, to.port)) return undefined;
    return new ThreadAck(fd, buf, ipInt(to.address), to.port, this.report);
  }
}
