/**
 * The lease journal's writes in memory (src/store/journal.ts): each from its append until SQLite has it, with the
 * caller's promise and the datagram the addon sends for it.
 */
import type { BatchItem } from './batch.mjs';
import type { DurableSend } from './store.js';

export type Entry = {
  seq: number;
  item: BatchItem;
  resolve?: () => void;
  reject?: (e: Error) => void;
  at: number;
  send: DurableSend | undefined;
};
type BatchStats = { sizes: number[]; commits: number[]; tx: number[]; waits: number[] };
export const STATS = (globalThis as Record<symbol, unknown>)[Symbol.for('plinth.store.batchStats')] as
  | BatchStats
  | undefined;

/**
 * The journaled writes in sequence order: [head, sent) at the writer, [sent, dur) durable, [dur, end) waiting for
 * their write and fdatasync (or, 'kernel', the turn's flush); and how many of each kind are not applied yet.
 */
export class WriteLog {
  private log: Entry[] = [];
  private head = 0;
  private sent = 0;
  private dur = 0;
  private readonly kinds = new Map<string, number>();

  private count(kind: string, d: number) {
    this.kinds.set(kind, (this.kinds.get(kind) ?? 0) + d);
  }
  push(e: Entry) {
    this.log.push(e);
    this.count(e.item.kind, 1);
  }
  pending = (kind: string) => (this.kinds.get(kind) ?? 0) > 0;
  /** Writes appended and not applied yet. */
  get size() {
    return this.log.length - this.head;
  }
  get empty() {
    return this.head === this.log.length;
  }
  /** The last write appended, if any is not applied. */
  last(): number | undefined {
    return this.empty ? undefined : this.log[this.log.length - 1]!.seq;
  }
  /** Durable writes not sent to the writer yet: how many, and the first one's sequence number. */
  ready(): { n: number; first: number } {
    return { n: this.dur - this.sent, first: this.dur > this.sent ? this.log[this.sent]!.seq : 0 };
  }
  /** Resolves the writes up to `seq`, now on disk; their datagrams were sent, but those in `failed` (seq -> errno). */
  durable(seq: number, failed?: Map<number, number>) {
    const from = this.dur;
    while (this.dur < this.log.length && this.log[this.dur]!.seq <= seq) {
      const e = this.log[this.dur++]!;
      if (e.send) {
        e.send.sent(failed?.get(e.seq) ?? 0);
        e.send = undefined;
      }
      e.resolve?.();
      e.resolve = e.reject = undefined;
    }
    if (STATS && this.dur > from) record(STATS, this.log, from, this.dur);
  }
  /** Rejects (and forgets) the writes that never reached the disk. */
  refuseUndurable(e: Error) {
    for (let i = this.dur; i < this.log.length; i++) {
      this.log[i]!.reject?.(e);
      this.count(this.log[i]!.item.kind, -1);
    }
    this.log.length = this.dur;
  }
  /** The durable writes not yet sent, now sent, and the last one's sequence number. */
  take(): { items: BatchItem[]; seq: number } {
    const items = this.log.slice(this.sent, this.dur).map((e) => e.item);
    const seq = this.log[this.dur - 1]!.seq;
    this.sent = this.dur;
    return { items, seq };
  }
  /** An apply failed: everything not applied goes again. */
  resend() {
    this.sent = this.head;
  }
  applied(seq: number) {
    while (this.head < this.sent && this.log[this.head]!.seq <= seq) this.count(this.log[this.head++]!.item.kind, -1);
    if (this.head > 4096 && this.head * 2 > this.log.length) {
      this.log = this.log.slice(this.head);
      this.sent -= this.head;
      this.dur -= this.head;
      this.head = 0;
    }
  }
}

/** For the benchmark's probe: per fdatasync its size and the oldest write's wait; per write put to durable. */
function record(stats: BatchStats, log: Entry[], from: number, to: number) {
  const t = performance.now();
  stats.sizes.push(to - from);
  stats.commits.push(t - log[from]!.at);
  for (let i = from; i < to; i++) stats.waits.push(t - log[i]!.at);
}
