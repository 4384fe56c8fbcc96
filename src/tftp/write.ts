/**
 * A write transfer (WRQ, upload): lock-step, RFC 7440 windowsize is only granted on reads. The bytes go to an
 * `UploadSink`; on disk that is a temporary file renamed over the target once complete (as atftpd and tftp-hpa
 * replace files), so a failed upload never leaves a half-written file under the real name.
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

export class WriteTransfer extends Transfer {
  readonly kind = 'write';
  readonly blksize: number;
  /** Next block expected (absolute). */
  expected = 1;
  /** What the last DATA was acknowledged with (first the OACK or ACK 0): resent when that DATA comes again. */
  lastAck: Buffer;
  writing = false;

  constructor(
    port: TransferPort,
    req: TransferRequest,
    env: TransferEnv,
    private readonly sink: UploadSink,
    private readonly maxBytes: number,
  ) {
    super(port, req, env);
    this.blksize = req.neg.blksize;
    this.lastAck = req.neg.oack.length > 0 ? encodeOack(req.neg.oack) : encodeAck(0);
  }

  start(): void {
    this.send(this.lastAck);
  }

  protected resend(): void {
    if (this.writing) return;
    this.retransmits++;
    this.env.stats.retransmits++;
    this.send(this.lastAck);
  }

  protected release(result: Result): void {
    if (result !== 'ok') void this.sink.abort();
  }

  protected options(): Record<string, number> {
    const o: Record<string, number> = { blksize: this.blksize };
    if (this.neg.tsize !== undefined) o.tsize = this.neg.tsize;
    if (this.neg.timeout !== undefined) o.timeout = this.neg.timeout;
    return o;
  }

  protected override data(block: number, data: Buffer): void {
    void this.onData(block, data);
  }

  private async onData(block: number, data: Buffer): Promise<void> {
    if (block === ((this.expected - 1) & 0xffff)) {
      // Our ACK was lost: the receiver re-acknowledges a duplicate (this is not the sender-side apprentice bug).
      // Also while dallying after the final block (finished, socket still open).
      if (!this.writing) this.send(this.lastAck);
      return;
    }
    if (this.done || this.writing) return;
    if (block !== (this.expected & 0xffff)) return;
    if (data.length > this.blksize) {
      this.send(encodeError(ERR.ILLEGAL_OPERATION, 'block larger than blksize'));
      this.finish('client-error');
      return;
    }
    if (this.bytes + data.length > this.maxBytes) {
      this.send(encodeError(ERR.DISK_FULL, 'upload too large'));
      this.finish('write-error');
      return;
    }
    this.writing = true;
    try {
      await this.sink.write(data, this.bytes);
    } catch (err) {
      this.writing = false;
      if (this.done) return;
      this.env.log.warn({ err, client: this.key, file: this.filename }, 'tftp upload write failed');
      this.send(encodeError(ERR.DISK_FULL, 'write failed'));
      this.finish('write-error');
      return;
    }
    this.writing = false;
    if (this.done) return;
    this.accepted(data.length);
    if (data.length < this.blksize) {
      await this.complete();
      return;
    }
    this.send(this.lastAck);
  }

  /** Bookkeeping for a block written. */
  private accepted(length: number): void {
    this.bytes += length;
    this.env.stats.bytesReceived += length;
    this.lastAck = encodeAck(this.expected);
    const now = this.env.now();
    this.timer.lastProgressAt = now;
    this.timer.deadline = now + this.timer.rto;
    this.expected++;
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
    this.send(this.lastAck);
    this.finish('ok');
  }
}
