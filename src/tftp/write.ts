/**
 * A write transfer (WRQ, upload): lock-step, or windows acknowledged once each (RFC 7440 applies to both directions).
 * Blocks are taken in order only, written one after the other, and acknowledged only once written. The bytes go to an
 * `UploadSink`; on disk that is a temporary file renamed over the target once complete (as atftpd and tftp-hpa replace
 * files), so a failed upload never leaves a half-written file under the real name.
 */
import type { FileHandle } from 'node:fs/promises';
import { open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { ERR, encodeAck, encodeError, encodeOack } from './codec.js';
import type { Result } from './stats.js';
import { Transfer, type TransferEnv, type TransferPort, type TransferRequest } from './transfer.js';

/** Where an upload's bytes go. */
export type UploadSink = {
  /** The final name, for logs. */
  readonly target: string;
  write(data: Buffer, position: number): Promise<void>;
  /** Every byte is written: put the upload in place under its final name. */
  complete(): Promise<void>;
  /** Failed or cancelled: nothing is left behind (resolves once the temporary file is gone). */
  abort(): Promise<void>;
};

/** An upload to `target` through a temporary file next to it (created exclusively: throws what open throws). */
export async function uploadFile(target: string): Promise<UploadSink> {
  const tmp = path.join(
    path.dirname(target),
    `.${path.basename(target)}.upload-${process.pid}-${Math.random().toString(36).slice(2)}`,
  );
  let fh: FileHandle | undefined = await open(tmp, 'wx', 0o644);
  return {
    target,
    async write(data, position) {
      let off = 0;
      while (off < data.length) {
        const { bytesWritten } = await fh!.write(data, off, data.length - off, position + off);
        off += bytesWritten;
      }
    },
    async complete() {
      await fh!.close();
      fh = undefined;
      // Complete: replace the target in one step (readers see the old file or the new one, never a part).
      await rename(tmp, target);
    },
    async abort() {
      const f = fh;
      fh = undefined;
      await f?.close().catch(() => {});
      await unlink(tmp).catch(() => {});
    },
  };
}

/** A block taken in order, waiting for its write; `ack`: acknowledge it once written. */
type Pending = { block: number; data: Buffer; position: number; ack: boolean };

export class WriteTransfer extends Transfer {
  readonly kind = 'write';
  readonly blksize: number;
  readonly window: number;
  /** Next block expected (absolute): every block before it is written or queued to be. */
  expected = 1;
  /** Absolute number of the final (short) block once it has been taken, else 0. */
  last = 0;
  /** The block the latest acknowledgement is (or will be) for: the client's window starts after it. */
  windowBase = 0;
  /** The last block acknowledged because of a gap (RFC 7440): one acknowledgement per gap, not one per block. */
  gapAcked = -1;
  /** The last acknowledgement sent (first the OACK or ACK 0), and its block: what a repeated DATA gets again. */
  lastAck: Buffer;
  lastAckBlock = 0;
  /** Bytes taken in order (written or queued): the next block's position, and what the size limit counts. */
  taken = 0;
  writing = false;
  private readonly queue: Pending[] = [];
  private current: Pending | undefined;

  constructor(
    port: TransferPort,
    req: TransferRequest,
    env: TransferEnv,
    private readonly sink: UploadSink,
    private readonly maxBytes: number,
  ) {
    super(port, req, env);
    this.blksize = req.neg.blksize;
    this.window = req.neg.windowsize;
    this.lastAck = req.neg.oack.length > 0 ? encodeOack(req.neg.oack) : encodeAck(0);
  }

  start(): void {
    this.send(this.lastAck);
  }

  protected resend(): void {
    if (this.writing) return;
    this.retransmits++;
    this.env.stats.retransmits++;
    // Nothing is being written, so every block taken is on disk: acknowledge the last one (mid-window too), and a
    // windowed client goes on from the block after it.
    const written = this.expected - 1;
    if (written > this.lastAckBlock) this.lastAck = encodeAck(written & 0xffff);
    this.lastAckBlock = written;
    this.windowBase = written;
    this.send(this.lastAck);
  }

  protected release(result: Result): void {
    this.queue.length = 0;
    if (result !== 'ok') void this.sink.abort();
  }

  protected options(): Record<string, number> {
    const o: Record<string, number> = { blksize: this.blksize, windowsize: this.window };
    if (this.neg.tsize !== undefined) o.tsize = this.neg.tsize;
    if (this.neg.timeout !== undefined) o.timeout = this.neg.timeout;
    return o;
  }

  protected override data(block: number, data: Buffer): void {
    // How far the 16-bit number lies past the block expected (numbers wrap past 65535 to 0).
    const ahead = (block - this.expected) & 0xffff;
    if (ahead === 0) {
      if (!this.done && this.last === 0) this.take(data);
      return;
    }
    if (ahead < this.window) {
      // RFC 7440 section 4: a block after a missing one. Acknowledge the last block received in order, once per gap:
      // the client sends again from the block after it. Nothing past the gap is kept (it comes again).
      const inOrder = this.expected - 1;
      if (!this.done && this.last === 0 && this.gapAcked !== inOrder) {
        this.gapAcked = inOrder;
        this.acknowledge(inOrder);
      }
      return;
    }
    // Behind: our acknowledgement was lost and the client sends again (lock-step: that block; windowed: the window).
    // The block acknowledged last gets its acknowledgement again once nothing is being written; other repeats are
    // dropped, never written twice. Also while dallying after the final block (finished, socket still open).
    const abs = this.expected - (0x10000 - ahead);
    if (abs === this.lastAckBlock && !this.writing) this.send(this.lastAck);
  }

  /** The block expected: checked against the limits, then queued to be written in order. */
  private take(data: Buffer): void {
    if (data.length > this.blksize) {
      this.send(encodeError(ERR.ILLEGAL_OPERATION, 'block larger than blksize'));
      this.finish('client-error');
      return;
    }
    if (this.taken + data.length > this.maxBytes) {
      this.send(encodeError(ERR.DISK_FULL, 'upload too large'));
      this.finish('write-error');
      return;
    }
    const block = this.expected++;
    const final = data.length < this.blksize;
    if (final) this.last = block;
    // RFC 7440: the receiver acknowledges the last block of each window, and the final block of the transfer.
    const ack = final || block - this.windowBase >= this.window;
    if (ack) this.windowBase = block;
    this.queue.push({ block, data, position: this.taken, ack });
    this.taken += data.length;
    void this.drain();
  }

  /** Acknowledges `block` (the last taken) once it is written: at once if it is, else when its write completes. */
  private acknowledge(block: number): void {
    this.windowBase = block;
    const pending = this.queue.at(-1) ?? this.current;
    if (pending !== undefined) pending.ack = true;
    else this.sendAck(block);
  }

  private sendAck(block: number): void {
    this.lastAck = encodeAck(block & 0xffff);
    this.lastAckBlock = block;
    this.send(this.lastAck);
  }

  /** Writes the queued blocks one after the other; an acknowledgement goes out only for a block written. */
  private async drain(): Promise<void> {
    if (this.writing) return;
    this.writing = true;
    try {
      for (let p = this.queue.shift(); p !== undefined && !this.done; p = this.queue.shift()) {
        this.current = p;
        try {
          await this.sink.write(p.data, p.position);
        } catch (err) {
          if (this.done) return;
          this.env.log.warn({ err, client: this.key, file: this.filename }, 'tftp upload write failed');
          this.send(encodeError(ERR.DISK_FULL, 'write failed'));
          this.finish('write-error');
          return;
        }
        if (this.done) return;
        this.written(p.data.length);
        if (p.block === this.last) {
          await this.complete();
          return;
        }
        if (p.ack) this.sendAck(p.block);
      }
    } finally {
      this.current = undefined;
      this.writing = false;
    }
  }

  /** Bookkeeping for a block written. */
  private written(length: number): void {
    this.bytes += length;
    this.env.stats.bytesReceived += length;
    const now = this.env.now();
    this.timer.lastProgressAt = now;
    this.timer.deadline = now + this.timer.rto;
  }

  /** The final (short) block is written: the upload goes in place, then its ACK goes out. */
  private async complete(): Promise<void> {
    try {
      await this.sink.complete();
    } catch (err) {
      if (this.done) return;
      this.env.log.warn({ err, file: this.sink.target }, 'tftp upload could not be put in place');
      this.send(encodeError(ERR.DISK_FULL, 'write failed'));
      this.finish('write-error');
      return;
    }
    if (this.done) return;
    this.sendAck(this.last);
    this.finish('ok');
  }
}
