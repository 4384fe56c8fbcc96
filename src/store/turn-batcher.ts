/**
 * The group-commit skeleton both PostgreSQL batchers share (pg-batch.ts: putBatched's writes; pg-lease-batch.ts:
 * claimLease's claims): what is queued during one event-loop turn leaves as one batch in the next (setImmediate),
 * at most `maxInFlight` batches run at once, what gathers meanwhile goes when one ends, and close() runs everything
 * queued before it. What a batch is (its statement, which queued items may join it) is the caller's.
 */
import { asStoreError, BackendError } from './store.js';

/** One queued item and its caller's promise; `at` is when it was queued (performance.now()). */
export type Queued<T, R> = { item: T; resolve: (r: R) => void; reject: (e: Error) => void; at: number };

export type TurnBatcherOptions<T, R> = {
  /**
   * Runs one batch and settles each of its items; `inFlight` counts the batches running with it. A throw (or
   * rejection) rejects every item of the batch with it as a StoreError; an item already settled ignores that.
   */
  run(batch: Queued<T, R>[], inFlight: number): Promise<void>;
  /**
   * Which queued items go in the next batch (in queue order); the others stay queued, in order. Default: all.
   * An empty batch waits for one in flight to end.
   */
  take?(queue: Queued<T, R>[]): { batch: Queued<T, R>[]; rest: Queued<T, R>[] };
  /** Called when a batch has ended, before the next is scheduled (to free what `take` held for it). */
  ended?(batch: Queued<T, R>[]): void;
  /** Batches running at once (default 1: items commit in the order they were queued). */
  maxInFlight?: number;
};

export type TurnBatcher<T, R> = {
  /** Queues the item `build()` makes (a throw rejects this item only); resolves or rejects as its batch settles it. Refused once closed. */
  add(build: () => T): Promise<R>;
  /** Runs what is queued and waits for every batch in flight; later adds are refused. */
  close(): Promise<void>;
};

export function turnBatcher<T, R>(o: TurnBatcherOptions<T, R>): TurnBatcher<T, R> {
  const maxInFlight = o.maxInFlight ?? 1;
  let queue: Queued<T, R>[] = [];
  let scheduled = false;
  // Never rejects: run's errors are fanned out to the batch's items.
  const running = new Set<Promise<void>>();
  let closed = false;

  const runSafely = async (batch: Queued<T, R>[]) => {
    try {
      await o.run(batch, running.size + 1);
    } catch (err) {
      const e = asStoreError(err);
      for (const q of batch) q.reject(e);
    }
  };
  const flush = () => {
    scheduled = false;
    if (running.size >= maxInFlight || queue.length === 0) return;
    let batch = queue;
    if (o.take) ({ batch, rest: queue } = o.take(queue));
    else queue = [];
    if (batch.length === 0) return; // each waits for a batch in flight, which schedules again when it ends
    const done = runSafely(batch).finally(() => {
      o.ended?.(batch);
      running.delete(done);
      if (queue.length) schedule();
    });
    running.add(done);
  };
  const schedule = () => {
    if (scheduled || running.size >= maxInFlight) return;
    scheduled = true;
    setImmediate(flush);
  };

  return {
    add: (build) =>
      new Promise<R>((resolve, reject) => {
        if (closed) return reject(new BackendError('store is closed'));
        let item: T;
        try {
          item = build();
        } catch (err) {
          return reject(asStoreError(err));
        }
        queue.push({ item, resolve, reject, at: performance.now() });
        schedule();
      }),
    async close() {
      closed = true;
      // Everything queued before close() is run (or rejected) before it resolves.
      while (running.size || queue.length) {
        if (running.size) await Promise.race(running);
        else flush();
      }
    },
  };
}
