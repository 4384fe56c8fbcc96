/**
 * putBatched's lease journal (a file store with the addon built): each write is appended to an append-only file by
 * native/journal.c, whose thread writes what is queued and fdatasyncs it, and the write resolves once that is
 * done: the DHCP server's ACK waits for one small write and one fdatasync, not for a SQLite transaction (its WAL
 * pages, its fsync, the checkpoints between transactions). The durable writes are then applied to SQLite in the
 * background, by the writer thread, in large batches (every `applyMs` or `applyItems`), each with the journal's
 * applied mark in the same transaction. A segment is removed once everything in it is applied; a crash leaves
 * the segments, and the next opener replays what is after the mark (journal-recovery.ts).
 *
 * Other store calls must see journaled writes: sqlite.ts asks `pending(kind)` and, when the kind has writes not
 * yet applied, waits for `drain()` (everything appended so far applied) before reading or writing SQLite, so a
 * later API delete is never undone by an earlier journaled upsert applied after it.
 */
import { closeSync, unlinkSync } from 'node:fs';
import type Database from 'better-sqlite3';
import { type JournalHandle, type LeaseJournal, native } from '../native/index.js';
import type { BatchItem, Prep } from './batch.mjs';
import { encodeItem, lockPath, type Recovered, recoverJournal, segmentPrefix, segments } from './journal-recovery.js';
import { BackendError } from './store.js';

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
};

/** Commits `items` with the applied mark `seq` (the writer thread, else inline); `done` once committed or failed. */
export type Apply = (items: BatchItem[], seq: number, done: (err?: Error) => void) => void;

export type Journal = {
  /** Appends the write; resolves once it is durable. Undefined when the journal is down: write it another way. */
  put(item: BatchItem): Promise<void> | undefined;
  /** Whether writes of `kind` are journaled and not yet applied to SQLite. */
  pending(kind: string): boolean;
  /** Resolves once every write appended so far is applied (rejects when applying fails). */
  drain(): Promise<void>;
  /** Applies everything, stops the thread and removes the segments. */
  close(): Promise<void>;
};

type Entry = { seq: number; item: BatchItem; resolve?: () => void; reject?: (e: Error) => void; at: number };
type Drain = { seq: number; resolve: () => void; reject: (e: Error) => void };
type BatchStats = { sizes: number[]; commits: number[]; tx: number[]; waits: number[] };
const STATS = (globalThis as Record<symbol, unknown>)[Symbol.for('plinth.store.batchStats')] as BatchStats | undefined;

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
  const addon = native.leaseJournal;
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
  // In sequence order: [head, sent) at the writer, [sent, dur) durable, [dur, end) waiting for their fdatasync.
  let log: Entry[] = [];
  let head = 0;
  let sent = 0;
  let dur = 0;
  let applied = recovered.lastSeq;
  let applying = false;
  let urgent = 0; // a drain waits for everything up to here: apply it without waiting for the timer
  let timer: NodeJS.Timeout | undefined;
  const drains: Drain[] = [];
  const kinds = new Map<string, number>();
  let gen = recovered.nextGen;
  let genFirst = 0;
  let removedBelow = recovered.nextGen;
  let closed = false;

  const count = (kind: string, d: number) => kinds.set(kind, (kinds.get(kind) ?? 0) + d);
  const lastSeq = () => (log.length > head ? log[log.length - 1]!.seq : applied);

  const onDurable = (seq: number, g: number, gFirst: number, error?: string) => {
    if (g >= gen) {
      gen = g;
      genFirst = gFirst;
    }
    const from = dur;
    while (dur < log.length && log[dur]!.seq <= seq) {
      const e = log[dur++]!;
      e.resolve?.();
      e.resolve = e.reject = undefined;
    }
    if (STATS && dur > from) record(STATS, log, from, dur);
    if (error !== undefined) return down(error);
    schedule();
  };

  const schedule = () => {
    if (applying || dur <= sent) return;
    if (urgent > log[sent]!.seq - 1 || dur - sent >= APPLY_ITEMS || down_) applyNow();
    else timer ??= setTimeout(applyNow, APPLY_MS);
  };

  const applyNow = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (applying || dur <= sent) return;
    const items = log.slice(sent, dur).map((e) => e.item);
    const seq = log[dur - 1]!.seq;
    sent = dur;
    applying = true;
    // Called synchronously by the writer's confirmation, so the next batch is sent before anything queued
    // behind this one (a write of the fallback path after the journal went down).
    apply(items, seq, (err) => {
      applying = false;
      if (err) {
        sent = head;
        for (const d of drains.splice(0)) d.reject(err);
        timer ??= setTimeout(applyNow, APPLY_MS);
        return;
      }
      onApplied(seq);
      schedule();
    });
  };

  const onApplied = (seq: number) => {
    applied = seq;
    while (head < sent && log[head]!.seq <= seq) count(log[head++]!.item.kind, -1);
    if (head > 4096 && head * 2 > log.length) {
      log = log.slice(head);
      sent -= head;
      dur -= head;
      head = 0;
    }
    for (let i = drains.length - 1; i >= 0; i--)
      if (drains[i]!.seq <= seq) {
        drains[i]!.resolve();
        drains.splice(i, 1);
      }
    // Every record of the segments before the one being written is applied: they go.
    if (genFirst > 0 && seq >= genFirst - 1) {
      for (; removedBelow < gen; removedBelow++) unlinkQuietly(`${segmentPrefix(file)}.${hex8(removedBelow)}`);
    }
    if (down_ && head === log.length) removeAll();
  };

  const removeAll = () => {
    for (const s of segments(file)) unlinkQuietly(s.path);
  };

  // The journal failed (a write or fdatasync error): what was not durable is refused, like a failed commit,
  // what was durable is still applied, and putBatched goes back to the writer thread's commits.
  const down = (why: string) => {
    if (down_) return;
    down_ = true;
    const hh = h;
    h = undefined;
    try {
      if (hh !== undefined) addon.journalClose(hh);
    } catch {
      // already stopped
    }
    const e = new BackendError(`storage failed: ${why}`);
    for (let i = dur; i < log.length; i++) {
      log[i]!.reject?.(e);
      count(log[i]!.item.kind, -1);
    }
    log.length = dur;
    if (!closed) process.emitWarning(`plinth store: the lease journal stopped (${why}); committing each batch`);
    onDown();
    schedule();
    if (head === log.length) removeAll();
  };

  // Opened with the first write: a store opened only to read (a CLI, the benchmark's check) starts no thread
  // and preallocates no segment.
  let h: JournalHandle | undefined;
  let down_ = false;
  const handle = () => {
    if (h === undefined && !down_ && !closed)
      h = addon.journalOpen(segmentPrefix(file), gen, recovered.lastSeq + 1, opts.segmentBytes ?? 8 << 20, onDurable);
    return h;
  };

  const drain = (): Promise<void> => {
    if (head === log.length) return Promise.resolve();
    const seq = lastSeq();
    urgent = Math.max(urgent, seq);
    schedule();
    return new Promise((resolve, reject) => drains.push({ seq, resolve, reject }));
  };

  return {
    put(item) {
      let seq: number;
      try {
        const jh = handle();
        if (jh === undefined) return undefined;
        seq = addon.journalAppend(jh, encodeItem(item));
      } catch (err) {
        down((err as Error).message);
        return undefined;
      }
      count(item.kind, 1);
      return new Promise<void>((resolve, reject) => {
        log.push({ seq, item, resolve, reject, at: STATS ? performance.now() : 0 });
      });
    },
    pending: (kind) => (kinds.get(kind) ?? 0) > 0,
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
      if (ok && head === log.length) removeAll();
      closeSync(lockFd);
    },
  };
}

const hex8 = (n: number) => n.toString(16).padStart(8, '0');

function unlinkQuietly(p: string) {
  try {
    unlinkSync(p);
  } catch {
    // gone already; recovery skips what the applied mark covers anyway
  }
}

/** For the benchmark's probe: per fdatasync its size and the oldest write's wait; per write put to durable. */
function record(stats: BatchStats, log: Entry[], from: number, to: number) {
  const t = performance.now();
  stats.sizes.push(to - from);
  stats.commits.push(t - log[from]!.at);
  for (let i = from; i < to; i++) stats.waits.push(t - log[i]!.at);
}
