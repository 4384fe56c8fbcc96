/**
 * What every TFTP transfer shares, whichever way the data flows: its port (the transfer socket, our TID), the
 * retransmission timer, the client's ERROR, and ending exactly once. Read and write transfers (read.ts, write.ts)
 * build on it. A transfer owns no socket and no global timer: it is given a port to send on and an environment
 * (clock, counters, the server's hooks), so a test can drive one with plain function calls.
 */
import type { Logger } from '../log.js';
import { decodePacket, type Negotiated } from './codec.js';
import { RetransmitTimer, type RetryBudget } from './retransmit.js';
import type { TftpClient } from './source.js';
import type { Result, TftpStats, TransferLine } from './stats.js';
import type { TransferHandlers, TransferSocket } from './transport.js';

/** What a transfer sends on: the transfer socket (transport.ts), or a test's recorder. */
export type TransferPort = Pick<TransferSocket, 'send' | 'sendBatch' | 'arm' | 'disarm' | 'close'>;

/** A transfer slot (see limits.ts), held from the request until its transfer ends or never starts. */
export type Slot = { address: string; held: boolean };

export type TransferEnv = RetryBudget & {
  readonly stats: TftpStats;
  readonly log: Logger;
  now(): number;
  /** Lowest adaptive retransmission timeout at this moment (it rises with the load; see the server). */
  rtoFloor(): number;
  /** The first datagram from the client's TID: from now on it is not a candidate for eviction. */
  answered(t: Transfer): void;
  /** Called once when the transfer ends, after it released what it holds (file, upload): the server's part. */
  finished(t: Transfer, result: Result): void;
};

/** Who asked for what, and what was negotiated (RFC 2347). */
export type TransferRequest = {
  client: TftpClient;
  filename: string;
  mode: string;
  neg: Negotiated;
  /** The server's own retransmission timeout (ms), used when the client asked none. */
  timeoutMs: number;
  slot: Slot;
};

export abstract class Transfer implements TransferHandlers {
  abstract readonly kind: 'read' | 'write';
  abstract readonly blksize: number;
  /** "address:port" of the client: logs and the server's de-duplication key. */
  readonly key: string;
  readonly client: TftpClient;
  readonly filename: string;
  readonly mode: string;
  readonly neg: Negotiated;
  readonly slot: Slot;
  readonly startedAt: number;
  readonly timer: RetransmitTimer;
  bytes = 0;
  retransmits = 0;
  done = false;
  /** Any datagram from the client's TID yet: until then the source address may be forged. */
  answered = false;

  constructor(
    readonly port: TransferPort,
    req: TransferRequest,
    protected readonly env: TransferEnv,
  ) {
    this.client = req.client;
    this.key = `${req.client.address}:${req.client.port}`;
    this.filename = req.filename;
    this.mode = req.mode;
    this.neg = req.neg;
    this.slot = req.slot;
    const now = env.now();
    this.startedAt = now;
    const fixed = req.neg.timeout !== undefined;
    this.timer = new RetransmitTimer(now, fixed ? req.neg.timeout! * 1000 : req.timeoutMs, fixed);
  }

  /** Sends the first packet (OACK, DATA 1, or an upload's ACK 0 / OACK). */
  abstract start(): void;
  /** The retransmission timer expired and the budget allows another try. */
  protected abstract resend(): void;
  /** Releases what the transfer holds (file, upload) before the server's part of ending it. */
  protected abstract release(result: Result): void;
  /** The RFC 2349 options the log line reports. */
  protected abstract options(): Record<string, number>;

  /** A bare ACK from the client (transport.ts hands those over without decoding). */
  onAck(block: number, fired: boolean): void {
    this.heard();
    this.ack(block, fired);
  }

  /** Any other datagram from the client. */
  onMessage(msg: Buffer): void {
    this.heard();
    this.message(msg);
  }

  onError(code: string): void {
    this.env.log.debug({ code, client: this.key }, 'tftp transfer socket error');
    // ICMP port unreachable on a connected socket: the client has gone, stop now rather than retransmit into the void.
    // Anything else (ENOBUFS under load, ...) is left to the retransmission timer.
    if (code === 'ECONNREFUSED' && !this.done) this.finish('client-error');
  }

  /** Its deadline has passed (the server's tick, or a test). */
  expired(now: number): void {
    const e = this.timer.expire(now, this.answered, this.env);
    if (e === 'resend') this.resend();
    else this.finish(e);
  }

  /** Ends the transfer once: what it holds is released, then the server frees its slot and socket and logs it. */
  finish(result: Result): void {
    if (this.done) return;
    this.done = true;
    this.release(result);
    this.env.finished(this, result);
  }

  /** The log line's fields (see stats.ts). */
  line(): TransferLine {
    return {
      client: this.key,
      op: this.kind,
      file: this.filename,
      mode: this.mode,
      options: this.options(),
      bytes: this.bytes,
      durationMs: Math.round(this.env.now() - this.startedAt),
      retransmits: this.retransmits,
    };
  }

  protected send(buf: Buffer): void {
    this.env.stats.packetsSent++;
    this.port.send(buf);
  }

  protected ack(_block: number, _fired: boolean): void {
    this.env.stats.unexpected++;
  }

  protected data(_block: number, _data: Buffer): void {
    this.env.stats.unexpected++;
  }

  /** An ERROR 8 that is the client declining our OACK after reading tsize (PXE), not a failure. */
  protected isProbe(_code: number): boolean {
    return false;
  }

  protected message(msg: Buffer): void {
    const d = decodePacket(msg);
    if (!d.ok) {
      this.env.stats.malformed++;
      return;
    }
    const p = d.packet;
    if (p.op === 'ERROR') {
      if (this.isProbe(p.code)) this.finish('probe');
      else {
        this.env.log.debug({ client: this.key, code: p.code, message: p.message }, 'tftp client sent ERROR');
        this.finish('client-error');
      }
      return;
    }
    if (p.op === 'DATA') {
      this.data(p.block, p.data);
      return;
    }
    this.env.stats.unexpected++;
  }

  private heard(): void {
    if (this.answered) return;
    this.answered = true;
    this.env.answered(this);
  }
}
