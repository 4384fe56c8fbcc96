/**
 * A read transfer (RRQ): the file goes out in go-back-N windows (RFC 7440; windowsize 1 is RFC 1350 lock-step), a
 * window's packets sent in one batch from shared ready-made buffers (layout.ts). Block numbers wrap 65535 -> 0, so
 * files past 32 MiB at blksize 512 transfer whole. The next window is armed in the native socket so it leaves the
 * moment its ACK arrives (see arm). Sends happen only in reaction to an ACK, a timer expiry or a finished read.
 */
import { ERR, encodeError, encodeOack } from './codec.js';
import { layoutPackets, layoutPacketsNow, type PacketCache } from './layout.js';
import type { TftpFile } from './source.js';
import type { Result } from './stats.js';
import { Transfer, type TransferEnv, type TransferPort, type TransferRequest } from './transfer.js';

/** Bytes of file data per chunk read from the source. */
const CHUNK_TARGET = 128 * 1024;

export type ReadEnv = TransferEnv & {
  /** DATA packets shared between transfers of the same content (layout.ts). */
  readonly packets: PacketCache;
  /** Hand the next window to the socket before its ACK (native sockets; false for A/B figures). */
  readonly armWindows: boolean;
};

export class ReadTransfer extends Transfer {
  readonly kind = 'read';
  readonly file: TftpFile;
  readonly size: number;
  readonly blksize: number;
  readonly window: number;
  /** Absolute number of the final block (always shorter than blksize, possibly empty). */
  readonly last: number;
  /** OACK bytes when options were granted: then it is "block 0" and needs ACK 0. */
  readonly oack?: Buffer;
  /** First block not yet acknowledged. */
  base: number;
  next: number;
  /** Highest block sent so far. */
  hi: number;
  /** Retransmitted since the last progress: no RTT sample then (Karn). */
  rtx = false;
  lastTxAt = 0;
  readonly chunkBlocks: number;
  /** Packet-ready chunks (header + payload per block, back to back), by chunk index. */
  readonly chunks = new Map<number, Buffer>();
  /** The socket holds the next window, to send when ACK `hi` arrives (see arm). */
  armed = false;
  private readonly loading = new Set<number>();

  constructor(
    port: TransferPort,
    req: TransferRequest,
    protected override readonly env: ReadEnv,
    file: TftpFile,
  ) {
    super(port, req, env);
    const { neg } = req;
    this.file = file;
    this.size = file.size;
    this.blksize = neg.blksize;
    this.window = neg.windowsize;
    this.last = Math.floor(file.size / neg.blksize) + 1;
    const options = neg.oack.length > 0;
    this.oack = options ? encodeOack(neg.oack) : undefined;
    this.base = options ? 0 : 1;
    this.next = options ? 0 : 1;
    this.hi = options ? -1 : 0;
    // A whole number of windows per chunk: a window then lies in one chunk (one send) unless a loss shifted it.
    this.chunkBlocks = this.window * Math.ceil(Math.ceil(CHUNK_TARGET / this.blksize) / this.window);
  }

  start(): void {
    this.pump();
  }

  protected resend(): void {
    // RFC 7440 section 4: on timeout resend the window from the first unacknowledged block.
    this.rtx = true;
    this.next = this.base;
    this.pump();
  }

  protected release(_result: Result): void {
    this.file.close();
    this.chunks.clear();
  }

  protected options(): Record<string, number> {
    const o: Record<string, number> = { blksize: this.blksize, windowsize: this.window };
    if (this.neg.tsize !== undefined) o.tsize = this.size;
    if (this.neg.timeout !== undefined) o.timeout = this.neg.timeout;
    return o;
  }

  protected override isProbe(code: number): boolean {
    return code === ERR.OPTION_NEGOTIATION && this.base === 0 && this.oack !== undefined;
  }

  /** The OACK went out and was never acknowledged: a request replacing this one ends it as a size probe. */
  get probing(): boolean {
    return this.base === 0 && this.oack !== undefined;
  }

  protected override message(msg: Buffer): void {
    this.armed = false; // any datagram disarms the socket
    super.message(msg);
  }

  protected override ack(block: number, fired: boolean): void {
    if (this.done) return;
    // Whatever came in, the socket is no longer armed (it sent the window, or dropped it).
    this.armed = false;
    // Map the 16-bit number onto [base-1, hi]: block numbers wrap past 65535 (rollover to 0).
    const delta = (block - (this.base - 1)) & 0xffff;
    const abs = this.base - 1 + delta;
    // Sorcerer's Apprentice (RFC 1123 4.2.3.1): a duplicate ACK never triggers a resend. Future blocks: garbage.
    if (delta === 0 || abs > this.hi) return;
    const now = this.env.now();
    if (!this.rtx && abs === this.hi) this.timer.sample(now - this.lastTxAt, this.env.rtoFloor());
    this.rtx = false;
    const oldChunk = this.base > 0 ? this.chunkOf(this.base) : 0;
    this.base = abs + 1;
    this.timer.lastProgressAt = now;
    if (this.base > this.last) {
      this.finish('ok');
      return;
    }
    // Armed only for ACK hi with everything up to hi sent, so the window sent is exactly hi+1.. (see arm).
    if (fired) this.armedSent();
    // RFC 7440: an ACK inside the window means the receiver lost the next block: resend from there.
    else if (abs < this.next - 1) this.next = this.base;
    const baseChunk = this.chunkOf(this.base);
    if (baseChunk !== oldChunk) for (const k of this.chunks.keys()) if (k < baseChunk) this.chunks.delete(k);
    this.pump();
    this.timer.deadline = now + this.timer.rto;
  }

  private chunkOf(block: number): number {
    return Math.floor((block - 1) / this.chunkBlocks);
  }

  private load(idx: number): void {
    if (this.loading.has(idx) || this.chunks.has(idx)) return;
    const first = idx * this.chunkBlocks + 1;
    if (first > this.last) return;
    const n = Math.min(this.chunkBlocks, this.last - first + 1);
    const pos = (first - 1) * this.blksize;
    const file = this.file;
    const blksize = this.blksize;
    this.loading.add(idx);
    const make = () => {
      // Warm file: laid out now, in one system call between two windows. Otherwise a thread-pool read.
      if (file.fd !== undefined) {
        const now = layoutPacketsNow(file.fd, pos, Math.min(n * blksize, this.size - pos), first, n, blksize);
        if (now !== undefined) return Promise.resolve(now);
      }
      return file.read(pos, n * blksize).then((data) => layoutPackets(data, first, n, blksize));
    };
    // Same content, same blksize: the same packets, whoever asks (see layout.ts).
    const loaded =
      file.id === undefined
        ? make()
        : this.env.packets.get(`${file.id}|${blksize}|${this.chunkBlocks}|${idx}`, n * (4 + blksize), make);
    loaded.then(
      (pkt) => {
        this.loading.delete(idx);
        if (this.done) return;
        this.chunks.set(idx, pkt);
        this.pump();
      },
      (err) => {
        this.loading.delete(idx);
        if (this.done) return;
        this.env.log.warn({ err, client: this.key, file: this.filename }, 'tftp read failed');
        this.send(encodeError(ERR.NOT_DEFINED, 'read error'));
        this.finish('read-error');
      },
    );
  }

  /**
   * Sends what the window allows from `next`; stops (to be called again) when a chunk is not loaded yet. The blocks of
   * a window that sit in one chunk are contiguous packets there, so they leave in one batch (one system call with the
   * native socket).
   */
  private pump(): void {
    // RFC 2347: the OACK stands alone until the client acknowledges it with ACK 0.
    const limit = this.base === 0 ? 0 : Math.min(this.base + this.window - 1, this.last);
    const slot = 4 + this.blksize;
    let sent = false;
    while (this.next <= limit) {
      const b = this.next;
      if (b === 0) {
        this.send(this.oack!);
        if (this.hi >= 0) {
          this.retransmits++;
          this.env.stats.retransmits++;
        } else this.hi = 0;
        this.next = 1;
        sent = true;
        continue;
      }
      const idx = this.chunkOf(b);
      const pkt = this.chunks.get(idx);
      if (pkt === undefined) {
        this.load(idx);
        break;
      }
      const i = b - 1 - idx * this.chunkBlocks;
      // Read ahead one chunk as soon as the transfer enters this one.
      if (i === 0) this.load(idx + 1);
      const end = Math.min(limit, (idx + 1) * this.chunkBlocks);
      const count = end - b + 1;
      // Only the file's final block is short, and it can only be the last of a run.
      const lastLen = this.packetLength(end);
      this.port.sendBatch(pkt, i * slot, slot, count, lastLen);
      this.sentRun(b, end, lastLen);
      sent = true;
    }
    if (sent) {
      // The retransmission interval runs from the last send: a window sent when its chunk finished loading (after the
      // ACK that asked for it) gets the full timeout, RFC 2349's "seconds to wait before retransmitting".
      this.lastTxAt = this.env.now();
      this.timer.deadline = this.lastTxAt + this.timer.rto;
    }
    this.arm();
  }

  /** Bookkeeping for blocks b..end just sent (`lastLen`: bytes of the packet of `end`). */
  private sentRun(b: number, end: number, lastLen: number): void {
    const stats = this.env.stats;
    const count = end - b + 1;
    stats.packetsSent += count;
    const fresh = end - Math.max(b - 1, this.hi);
    if (fresh > 0) {
      const bytes = (fresh - 1) * this.blksize + lastLen - 4;
      this.bytes += bytes;
      stats.bytesSent += bytes;
      this.hi = end;
    }
    const again = count - Math.max(0, fresh);
    this.retransmits += again;
    stats.retransmits += again;
    this.next = end + 1;
  }

  /** Length of the packet of block `end` (only the file's final block is short). */
  private packetLength(end: number): number {
    return 4 + Math.min(this.blksize, this.size - (end - 1) * this.blksize);
  }

  /**
   * Where the window is fully sent and the next one is already laid out, hand it to the socket now: the native socket
   * sends it the moment the ACK of this window arrives, before any JavaScript runs (onAck then only does the
   * bookkeeping, while the client is busy with the new window). Without it, the round trip of every window carries
   * the event loop's turn and this file's work, which is what kept one windowed client below atftpd.
   */
  private arm(): void {
    const port = this.port;
    if (port.arm === undefined || !this.env.armWindows) return;
    const from = this.hi + 1;
    const to = Math.min(this.hi + this.window, this.last);
    const steady =
      this.base > 0 && this.next === from && this.hi === Math.min(this.base + this.window - 1, this.last) && from <= to;
    const idxA = this.chunkOf(from);
    const idxB = this.chunkOf(to);
    const a = steady ? this.chunks.get(idxA) : undefined;
    const b = idxB === idxA ? a : this.chunks.get(idxB);
    if (a === undefined || b === undefined) {
      if (this.armed) {
        this.armed = false;
        port.disarm?.();
      }
      return;
    }
    const slot = 4 + this.blksize;
    const endA = Math.min(to, (idxA + 1) * this.chunkBlocks);
    const offA = (from - 1 - idxA * this.chunkBlocks) * slot;
    if (idxB === idxA) port.arm(this.hi & 0xffff, slot, a, offA, endA - from + 1, this.packetLength(endA));
    else port.arm(this.hi & 0xffff, slot, a, offA, endA - from + 1, slot, b, 0, to - endA, this.packetLength(to));
    this.armed = true;
  }

  /** The socket sent the armed window (blocks hi+1..) when this ACK came in: account for it as pump would have. */
  private armedSent(): void {
    this.env.stats.windowsOnAck++;
    const from = this.next;
    const to = Math.min(this.hi + this.window, this.last);
    const idxA = this.chunkOf(from);
    const endA = Math.min(to, (idxA + 1) * this.chunkBlocks);
    this.sentRun(from, endA, this.packetLength(endA));
    if (endA < to) this.sentRun(endA + 1, to, this.packetLength(to));
    // Read ahead as pump does when a run starts a chunk.
    if (from - 1 === idxA * this.chunkBlocks) this.load(idxA + 1);
    if (endA < to) this.load(idxA + 2);
    this.lastTxAt = this.env.now();
  }
}
