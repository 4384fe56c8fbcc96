/**
 * putBatched's lease journal (a file store with the addon built): each write is appended to an append-only file by
 * native/journal.c, whose thread writes what is queued and fdatasyncs it, and the write resolves once that is
 * done: the DHCP server's ACK waits for one small write and one fdatasync, not for a SQLite transaction (its WAL
 * pages, its fsync, the checkpoints between transactions). The durable writes are then applied to SQLite in the
 * background, by the writer thread, in large batches (every `applyMs` or `applyItems`), each with the journal's
 * applied mark in the same transaction. A segment is removed once everything in it is applied; a crash leaves
 * the segments, and the next opener replays what is after the mark (journal-recovery.ts). With `durability:
 * 'kernel'` there is no fdatasync to wait for: the event loop writes each turn's records itself at the end of the
 * turn (journalFlush: one pwrite, then the ACKs), with no thread to hand them to and wait for.
 *
 * Other store calls must see journaled writes: sqlite.ts asks `pending(kind)` and, when the kind has writes not
 * yet applied, waits for `drain()` (everything appended so far applied) before reading or writing SQLite, so a
 * later API delete is never undone by an earlier journaled upsert applied after it.
 */
import { closeSync, unlink, unlinkSync } from 'node:fs';
import type Database from 'better-sqlite3';
import { type JournalHandle, type LeaseJournal, native } from '../native/index.js';
import type { BatchItem, Prep } from './batch.mjs';
import { STATS, WriteLog } from './journal-log.js';
import { encodeItem, lockPath, type Recovered, recoverJournal, segmentPrefix, segments } from './journal-recovery.js';
import { BackendError, type DurableSend } from './store.js';

export type JournalOptions = {
  /**
   * 'auto' (default): a file store journals putBatched when the addon is built; 'off': the writer thread commits
   * each batch before it resolves (the path without the addon). Recovery runs either way.
   */
  journal?: 'auto' | 'off';
  /** Durable writes are applied to SQLite at least this often, in ms (default 50)... */
  applyMs?: number;
  /** ...or as soon as this many wait (default 2000). */
  applyItems?: number;
  /** Each segment's preallocated size in bytes (default 8 MiB). */
  segmentBytes?: number;
  /**
   * Writes not yet applied to SQLite (waiting for the disk or for the apply) beyond which a write is refused, as a
   * failed commit is, instead of queued (default 100,000: about 60 MB, 20 s of leases at 5,000/s). Memory stays
   * bounded while the disk or SQLite is stuck; the DHCP server sends no ACK for a refused write.
   */
  maxBacklog?: number;
  /**
   * Group commit under load (native/journal.c): at `groupRate` journaled writes a second or more (default 2,500,
   * over 100 ms windows), the thread waits for about four writes' arrivals, at most `groupUs` µs (default 1,000; 0:
   * never), before its write and fdatasync, so each covers several. Below that rate nothing waits. The environment's
   * PLINTH_JOURNAL_GROUP_US and PLINTH_JOURNAL_GROUP_RATE set them where the options do not (benchmarks).
   */
  groupUs?: number;
  groupRate?: number;
  /**
   * When a journaled write counts as durable, so when its ACK leaves. 'disk' (default): once fdatasynced, it survives
   * a power loss. 'kernel': once written to the kernel (pwrite, no fdatasync), it survives the daemon's kill -9 or
   * crash but not a power loss or a kernel crash: what Kea's memfile backend gives. There is nothing to wait for
   * then, so the event loop writes each turn's records itself at the end of the turn (and the addon sends their
   * ACKs), as Kea's memfile writes in its one thread, instead of handing them to the journal's thread and waiting
   * for that thread to run.
   */
  durability?: 'disk' | 'kernel';
  /** The addon's journal functions (default: the built addon's); a test wraps them to see the arguments. */
  addon?: LeaseJournal;
};

const envCount = (name: string): number | undefined => {
  const v = process.env[name];
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
};
/** The journal's thread, writing segments of `file` from generation `gen` and sequence number `first`. */
function openThread(
  addon: LeaseJournal,
  file: string,
  gen: number,
  first: number,
  o: JournalOptions,
  onDurable: Parameters<LeaseJournal['journalOpen']>[4],
): JournalHandle {
  const sync = o.durability !== 'kernel';
  return addon.journalOpen(
    segmentPrefix(file),
    gen,
    first,
    o.segmentBytes ?? 8 << 20,
    onDurable,
    Math.min(100_000, o.groupUs ?? envCount('PLINTH_JOURNAL_GROUP_US') ?? (sync ? 1000 : 0)),
    o.groupRate ?? envCount('PLINTH_JOURNAL_GROUP_RATE') ?? 2500,
    sync ? 1 : 0,
  );
}

/** Commits `items` with the applied mark `seq` (the writer thread, else inline); `done` once committed or failed. */
export type Apply = (items: BatchItem[], seq: number, done: (err?: Error) => void) => void;

export type Journal = {
  /**
   * Appends the write; resolves once it is durable. Undefined when the journal is down: write it another way.
   * `send`: taken (sent by the journal's thread right after the fdatasync) when the addon can.
   */
  put(item: BatchItem, send?: DurableSend): Promise<void> | undefined;
  /** Whether writes of `kind` are journaled and not yet applied to SQLite. */
  pending(kind: string): boolean;
  /** Resolves once every write appended so far is applied (rejects when applying fails). */
  drain(): Promise<void>;
  /** Applies everything, stops the thread and removes the segments. */
  close(): Promise<void>;
};

type Drain = { seq: number; resolve: () => void; reject: (e: Error) => void };

/**
 * Recovery, then the journal's owner: every opener of a file replays what a crash left. Only the process holding
 * the journal's lock replays and journals; another one opening the same file while the daemon runs (a CLI) gets
 * neither and writes through SQLite as before. Without the addon there is no lock to take: it replays all the same.
 */
export function prepareJournal(
  file: string,
  db: Database.Database,
  prep: Prep,
  opts: JournalOptions,
): ((apply: Apply, onDown: () => void) => Journal) | undefined {
  const addon = opts.addon ?? native.leaseJournal;
  let lockFd: number | undefined;
  if (addon) {
    try {
      lockFd = addon.journalLock(lockPath(file));
    } catch (err) {
      if ((err as { code?: string }).code === 'EWOULDBLOCK') return undefined;
      // No lock file (the directory cannot be written): no journal; what a crash left is still replayed.
    }
  }
  let recovered: Recovered;
  try {
    recovered = recoverJournal(db, prep, file);
  } catch (err) {
    if (lockFd !== undefined) closeSync(lockFd);
    throw err;
  }
  if (recovered.replayed > 0)
    process.emitWarning(`plinth store: replayed ${recovered.replayed} journaled writes into ${file}`);
  if (!addon || lockFd === undefined || opts.journal === 'off') {
    if (lockFd !== undefined) closeSync(lockFd);
    return undefined;
  }
  const fd = lockFd;
  return (apply, onDown) => startJournal(file, addon, fd, recovered, apply, onDown, opts);
}

function startJournal(
  file: string,
  addon: LeaseJournal,
  lockFd: number,
  recovered: Recovered,
  apply: Apply,
  onDown: () => void,
  opts: JournalOptions,
): Journal {
  const APPLY_MS = opts.applyMs ?? 50;
  const APPLY_ITEMS = opts.applyItems ?? 2000;
  const log = new WriteLog();
  let applying = false;
  let urgent = 0; // a drain waits for everything up to here: apply it without waiting for the timer
  let timer: NodeJS.Timeout | undefined;
  const drains: Drain[] = [];
  let gen = recovered.nextGen;
  let genFirst = 0;
  let removedBelow = recovered.nextGen;
  let closed = false;
  // Opened with the first write: a store opened only to read (a CLI, the benchmark's check) starts no thread
  // and preallocates no segment.
  let h: JournalHandle | undefined;
  let isDown = false;
  // 'kernel': nothing waits for the disk, so this thread writes each turn's records itself (journalFlush) and the
  // addon sends their ACKs right after: no journal thread to hand them to and wait for.
  const inline = opts.durability === 'kernel';
  const kick = kicker(
    addon,
    () => h,
    inline ? (hh) => flushed(addon.journalFlush(hh)) : undefined,
    (e) => down(e),
  );

  const onDurable = (seq: number, g: number, gFirst: number, error?: string, sendFailures?: number[]) => {
    if (g >= gen) {
      gen = g;
      genFirst = gFirst;
    }
    log.durable(seq, sendFailures && failures(sendFailures));
    if (error !== undefined) return down(error);
    schedule();
  };

  const flushed = ([seq, g, gFirst, ...sendFailures]: number[]) =>
    onDurable(seq!, g!, gFirst!, undefined, sendFailures.length > 0 ? sendFailures : undefined);

  const schedule = () => {
    const r = log.ready();
    if (applying || r.n === 0) return;
    if (urgent >= r.first || r.n >= APPLY_ITEMS || isDown) applyNow();
    else timer ??= setTimeout(applyNow, APPLY_MS);
  };

  const applyNow = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (applying || log.ready().n === 0) return;
    const { items, seq } = log.take();
    applying = true;
    // Called synchronously by the writer's confirmation, so the next batch is sent before anything queued
    // behind this one (a write of the fallback path after the journal went down).
    apply(items, seq, (err) => {
      applying = false;
      if (err) {
        log.resend();
        for (const d of drains.splice(0)) d.reject(err);
        timer ??= setTimeout(applyNow, APPLY_MS);
        return;
      }
      onApplied(seq);
      schedule();
    });
  };

  const onApplied = (seq: number) => {
    log.applied(seq);
    settle(drains, seq);
    // Every record of the segments before the one being written is applied: they go.
    if (genFirst > 0 && seq >= genFirst - 1)
      // Off the event loop (the thread pool): freeing a segment's 8 MiB of extents takes milliseconds.
      for (; removedBelow < gen; removedBelow++) unlink(`${segmentPrefix(file)}.${hex8(removedBelow)}`, () => {});
    if (isDown && log.empty) removeAll(file);
  };

  // The journal failed (a write or fdatasync error): what was not durable is refused, like a failed commit,
  // what was durable is still applied, and putBatched goes back to the writer thread's commits.
  const down = (why: string) => {
    if (isDown) return;
    isDown = true;
    const hh = h;
    h = undefined;
    closeQuietly(addon, hh);
    log.refuseUndurable(new BackendError(`storage failed: ${why}`));
    // A drain waits no longer for the writes refused: up to the last durable one, or nothing left at all.
    for (const d of drains) d.seq = Math.min(d.seq, log.last() ?? 0);
    settle(drains, 0);
    if (!closed) process.emitWarning(`plinth store: the lease journal stopped (${why}); committing each batch`);
    onDown();
    schedule();
    if (log.empty) removeAll(file);
  };

  const drain = (): Promise<void> => {
    const seq = log.last();
    if (seq === undefined) return Promise.resolve();
    urgent = Math.max(urgent, seq);
    schedule();
    return new Promise((resolve, reject) => drains.push({ seq, resolve, reject }));
  };

  return {
    put(item, send) {
      if (log.size >= (opts.maxBacklog ?? 100_000) && !isDown && !closed) return backlogFull(log.size);
      let seq: number;
      try {
        if (h === undefined && !isDown && !closed)
          h = openThread(addon, file, gen, recovered.lastSeq + 1, opts, onDurable);
        if (h === undefined) return undefined;
        seq = append(addon, h, item, send);
        kick();
      } catch (err) {
        down((err as Error).message);
        return undefined;
      }
      return new Promise<void>((resolve, reject) => {
        log.push({ seq, item, resolve, reject, at: STATS ? performance.now() : 0, send: taken(send) });
      });
    },
    pending: log.pending,
    drain,
    async close() {
      if (closed) return;
      closed = true;
      const ok = await drain().then(
        () => true,
        () => false,
      );
      const hh = h;
      h = undefined;
      if (hh !== undefined) addon.journalClose(hh);
      if (timer) clearTimeout(timer);
      // Anything not applied stays on disk for the next opener's recovery.
      if (ok && log.empty) removeAll(file);
      closeSync(lockFd);
    },
  };
}

/** Resolves the drains waiting for writes up to `applied` (or less). */
function settle(drains: Drain[], applied: number) {
  for (let i = drains.length - 1; i >= 0; i--) if (drains[i]!.seq <= applied) drains.splice(i, 1)[0]!.resolve();
}

function closeQuietly(addon: LeaseJournal, h: JournalHandle | undefined) {
  try {
    if (h !== undefined) addon.journalClose(h);
  } catch {
    // already stopped
  }
}

/**
 * Wakes the journal's thread once per event-loop turn, after the turn's writes are queued: they share one write
 * and one fdatasync (woken by the first, it would write that one alone and the rest after its fdatasync). With
 * `flush` ('kernel') the turn's writes are written here instead, by this thread, in one write; `failed` hears
 * why that write failed.
 */
function kicker(
  addon: LeaseJournal,
  handle: () => JournalHandle | undefined,
  flush: ((h: JournalHandle) => void) | undefined,
  failed: (why: string) => void,
): () => void {
  let due = false;
  const run = () => {
    due = false;
    const h = handle();
    if (h === undefined) return;
    if (!flush) return addon.journalKick(h);
    try {
      flush(h);
    } catch (err) {
      failed((err as Error).message);
    }
  };
  return () => {
    if (due) return;
    due = true;
    setImmediate(run);
  };
}

/** Appends the record; with the addon's journalAppendSend, `send` is queued with it and taken (sent by the thread). */
function append(addon: LeaseJournal, h: JournalHandle, item: BatchItem, send: DurableSend | undefined): number {
  if (!send || !addon.journalAppendSend) return addon.journalAppend(h, encodeItem(item));
  const seq = addon.journalAppendSend(h, encodeItem(item), send.fd, send.buf, send.address, send.port);
  send.taken = true;
  return seq;
}

/** A send the thread will make (journalAppendSend took it), to report once its record is durable. */
const taken = (send: DurableSend | undefined) => (send?.taken ? send : undefined);

/** [seq, errno, ...] from the thread as seq -> errno. */
function failures(pairs: number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (let i = 0; i + 1 < pairs.length; i += 2) m.set(pairs[i]!, pairs[i + 1]!);
  return m;
}

/** A write refused because `n` others wait for the disk or for SQLite (`maxBacklog`). */
const backlogFull = (n: number) =>
  Promise.reject(new BackendError(`storage backlog: ${n} writes wait for the disk or for SQLite; write refused`));

function removeAll(file: string) {
  for (const s of segments(file)) unlinkQuietly(s.path);
}

const hex8 = (n: number) => n.toString(16).padStart(8, '0');

function unlinkQuietly(p: string) {
  try {
    unlinkSync(p);
  } catch {
    // gone already; recovery skips what the applied mark covers anyway
  }
}
