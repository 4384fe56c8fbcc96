/**
 * putBatched's group commit for the SQLite store: everything queued during one event-loop turn is committed in
 * one transaction, by the writer thread (writer-thread.mjs, which also joins the batches that arrive while it
 * commits) or inline on the main thread. The transaction itself is batch.mjs's, shared with the writer thread.
 * With the addon built, a file store's writes go to the lease journal instead (journal.ts) and resolve once it
 * has them on disk; the writer thread then applies them in large batches.
 */
import { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import {
  type BatchItem,
  batchTransaction,
  encodeBatch,
  journalApplyTransaction,
  PendingBatch,
  type Prep,
} from './batch.mjs';
import { type Apply, type Journal, type JournalOptions, prepareJournal } from './journal.js';
import { asStoreError, BackendError, type DurableSend } from './store.js';

export type BatchOptions = JournalOptions & {
  /**
   * Where putBatched's transactions run. 'thread' (default for a file): a worker thread with its own
   * connection commits them, so the commit and its fsync (and WAL checkpoints) never block the event loop:
   * DHCP keeps reading packets while a batch is made durable. 'inline' (':memory:', which one connection
   * only can see): on the main thread, at most one commit per `groupCommitMs`.
   */
  writer?: 'thread' | 'inline';
  /** Inline writer only: at most one commit per this many ms under load (default 4; 0 = every turn). */
  groupCommitMs?: number;
};

export type BatchWriter = {
  /**
   * Queues the write `item()` builds (a throw rejects this write only); resolves once it is durable. `send`: a
   * datagram the journal's thread sends when the write is durable (DurableSend; left to the caller without one).
   */
  put(item: () => BatchItem, send?: DurableSend): Promise<void>;
  /** Commits what is queued and stops the writer thread; later puts are refused. */
  close(): Promise<void>;
  /** Whether writes of `kind` are journaled and not yet in SQLite: other calls on the kind drain() first. */
  pending(kind: string): boolean;
  /** Resolves once every journaled write so far is in SQLite. */
  drain(): Promise<void>;
};

type Waiter = { resolve: () => void; reject: (e: Error) => void; at?: number };

/**
 * Where the group commit's timings go when a benchmark asks for them (bench/dhcp-probe.mjs installs this sink
 * before the daemon loads): per batch its size, the time from sending it to the writer to its confirmation and the
 * transaction's own time in the writer (statements, COMMIT, fsync); per write the time from put() to durable. Unset,
 * nothing is recorded.
 */
type BatchStats = { sizes: number[]; commits: number[]; tx: number[]; waits: number[] };
const STATS = (globalThis as Record<symbol, unknown>)[Symbol.for('plinth.store.batchStats')] as BatchStats | undefined;

// The writer thread's module: plain JavaScript, so it needs no loader (tsx's is not registered in workers).
const WRITER = new URL('./writer-thread.mjs', import.meta.url);

export function batchWriter(db: Database.Database, prep: Prep, file: string, opts: BatchOptions = {}): BatchWriter {
  const pending = new PendingBatch<BatchItem, Waiter>();
  let scheduled = false;
  let closed = false;
  const flushTx = batchTransaction(db, prep);
  const applyTx = journalApplyTransaction(db, prep);
  const commitInline = (items: BatchItem[], ws: Waiter[], seq?: number) => {
    try {
      if (seq === undefined) flushTx(items);
      else applyTx(items, seq);
      for (const w of ws) w.resolve();
    } catch (err) {
      const e = new BackendError(`storage failed: ${(err as Error).message}`);
      for (const w of ws) w.reject(e);
    }
  };

  // Started with the first batch: a store opened only to read (a CLI, a test, the benchmark's check) has no thread.
  const thread = writerThread(file, {
    replay: commitInline,
    confirmed: () => {
      if (pending.items.length === 0) return true;
      // The batch that gathered while this one committed goes now.
      flush();
      return false;
    },
    down: () => {
      useThread = false;
      if (pending.items.length) schedule();
    },
    closing: () => closed,
  });
  let useThread = (opts.writer ?? 'thread') === 'thread' && file !== ':memory:';
  // Every opener of a file replays what a crash left in the journal; a thread writer also journals.
  const startJournal =
    file === ':memory:' ? undefined : prepareJournal(file, db, prep, useThread ? opts : { ...opts, journal: 'off' });
  const apply: Apply = (items, seq, done) => {
    const w = { resolve: () => done(), reject: (e: Error) => done(e) };
    if (useThread && thread.send(items, [w], seq)) return;
    commitInline(items, [w], seq);
  };
  const journal: Journal | undefined = startJournal?.(apply, () => {});

  // Inline pacing: the first write of a quiet period commits in the current turn; under load at most one
  // commit per groupCommitMs, the writes that arrive meanwhile sharing it.
  const GROUP_MS = opts.groupCommitMs ?? 4;
  let lastFlush = 0;
  const flush = () => {
    scheduled = false;
    const { items, waiters: ws } = pending.take();
    if (items.length === 0) return;
    if (useThread && !closed && thread.send(items, ws)) return;
    useThread = false;
    lastFlush = performance.now();
    commitInline(items, ws);
  };
  const schedule = () => {
    // One batch at the writer at a time (a message per event-loop turn costs more than the writes): the next
    // one is sent when the writer confirms the current one.
    if (scheduled || thread.busy()) return;
    scheduled = true;
    const wait = useThread ? 0 : lastFlush + GROUP_MS - performance.now();
    if (wait <= 0) setImmediate(flush);
    else setTimeout(flush, wait);
  };

  const enqueue = (it: BatchItem) =>
    new Promise<void>((resolve, reject) => {
      pending.items.push(it);
      pending.waiters.push({ resolve, reject, at: STATS ? performance.now() : undefined });
      schedule();
    });

  return {
    put: (item, send) => {
      if (closed) return Promise.reject(new BackendError('store is closed'));
      let it: BatchItem;
      try {
        it = item();
      } catch (err) {
        return Promise.reject(asStoreError(err));
      }
      if (!journal) return enqueue(it);
      // The writer thread starts with the first write, as without the journal: its start (loading SQLite, a
      // connection) is CPU the event loop's core would otherwise pay in the middle of the first apply's load.
      if (useThread) thread.warm();
      // A journal that went down: its durable writes are applied before this one commits.
      const after = () => enqueue(it);
      return journal.put(it, send) ?? journal.drain().then(after, after);
    },
    pending: (kind) => journal?.pending(kind) ?? false,
    drain: () => journal?.drain() ?? Promise.resolve(),
    close: async () => {
      if (closed) return;
      closed = true;
      await journal?.close();
      if (pending.items.length) flush();
      await thread.stop();
    },
  };
}

type ThreadHooks = {
  /** Commits on the main thread what a writer that died had not confirmed (`seq`: a journal apply's mark). */
  replay(items: BatchItem[], ws: Waiter[], seq?: number): void;
  /** All sent batches are confirmed; true when nothing waits, so the thread may stop holding the process. */
  confirmed(): boolean;
  /** The writer thread stopped: the queued writes go inline. */
  down(): void;
  closing(): boolean;
};

/** The writer thread, started with the first batch it is sent and replaced by inline commits if it dies. */
function writerThread(file: string, hooks: ThreadHooks) {
  let worker: Worker | undefined;
  let failed = false;
  let nextId = 1;
  // Sent to the writer, not yet confirmed: kept so that a writer that dies can be replayed inline (the writes
  // are idempotent upserts and deletes, replayed in order).
  const inFlight = new Map<number, { items: BatchItem[]; ws: Waiter[]; at: number; seq?: number }>();
  let onClosed: (() => void) | undefined;
  const down = (why: string) => {
    if (!worker) return;
    worker = undefined;
    failed = true;
    const left = [...inFlight.values()];
    inFlight.clear();
    for (const b of left) hooks.replay(b.items, b.ws, b.seq);
    hooks.down();
    onClosed?.();
    if (!hooks.closing())
      process.emitWarning(`plinth store: the writer thread stopped (${why}); writing on the main thread`);
  };
  const start = () => {
    // Not the daemon's loader flags (tsx): the writer is plain JavaScript.
    const w = new Worker(WRITER, { workerData: { file }, execArgv: [] });
    w.unref(); // referenced only while a batch is in flight, so an idle store never keeps a process alive
    w.on('message', (m: { ids?: number[]; error?: string; closed?: boolean; ms?: number }) => {
      if (m.closed) return onClosed?.();
      const e = m.error === undefined ? undefined : new BackendError(`storage failed: ${m.error}`);
      if (STATS && m.ms !== undefined) STATS.tx.push(m.ms);
      for (const id of m.ids ?? []) {
        const b = inFlight.get(id);
        inFlight.delete(id);
        if (STATS && b && b.seq === undefined) record(STATS, b);
        for (const x of b?.ws ?? []) e ? x.reject(e) : x.resolve();
      }
      if (inFlight.size === 0 && hooks.confirmed()) w.unref();
    });
    w.on('error', (err) => down(err.message));
    w.on('exit', (code) => down(`exit code ${code}`));
    worker = w;
  };
  return {
    /** False when there is no writer thread (any more): the caller commits inline. */
    send(items: BatchItem[], ws: Waiter[], seq?: number): boolean {
      if (!worker && !failed) start();
      if (!worker) return false;
      const id = nextId++;
      inFlight.set(id, { items, ws, at: STATS ? performance.now() : 0, seq });
      worker.ref();
      worker.postMessage({ id, flat: encodeBatch(items), seq });
      return true;
    },
    busy: () => worker !== undefined && inFlight.size > 0,
    /** Starts the thread if it is not running (nor failed). */
    warm() {
      if (!worker && !failed) start();
    },
    async stop() {
      const w = worker;
      if (!w) return;
      // The writer answers every batch before { closed }: all confirmed (or replayed inline) after this.
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 10_000);
        onClosed = () => {
          clearTimeout(t);
          resolve();
        };
        w.ref();
        w.postMessage({ close: true });
      });
      worker = undefined;
      await w.terminate();
    },
  };
}

function record(stats: BatchStats, b: { items: BatchItem[]; ws: Waiter[]; at: number }): void {
  const t = performance.now();
  stats.sizes.push(b.items.length);
  stats.commits.push(t - b.at);
  for (const w of b.ws) if (w.at !== undefined) stats.waits.push(t - w.at);
}
