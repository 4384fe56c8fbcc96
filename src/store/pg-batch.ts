/**
 * putBatched's group commit for the PostgreSQL store: everything queued during one event-loop turn is written by
 * one statement (one transaction, one WAL flush on the server), and each caller's promise resolves only after
 * the server acknowledged its COMMIT, so the DHCP server still sends an ACK only for a durable lease. One batch
 * is in flight at a time, so writes to one key commit in the order they were made; what gathers meanwhile goes
 * next, in one statement again (the queueing and flushing: turn-batcher.ts).
 */
import { etagOf } from './batch.mjs';
import type { PgConn } from './pg-conn.js';
import { jsonbCopy } from './pg-docs.js';
import { turnBatcher } from './turn-batcher.js';

/** One putBatched write: an upsert of `json`, or a delete when it is null. */
export type PgBatchItem = { kind: string; key: string; json: string | null };

/**
 * The batch as one statement: per kind, one upsert of every key written and one delete of every key removed,
 * as data-modifying CTEs of one statement (atomic in autocommit, one round trip). Only the last write of a key
 * counts (the writes are idempotent upserts and deletes), which also keeps an upsert from touching a row twice.
 */
export function batchStatement(items: readonly PgBatchItem[]): { name: string; text: string; values: unknown[] } {
  const last = new Map<string, Map<string, string | null>>();
  for (const it of items) {
    let byKey = last.get(it.kind);
    if (!byKey) {
      byKey = new Map();
      last.set(it.kind, byKey);
    }
    byKey.set(it.key, it.json);
  }
  const parts: string[] = [];
  const values: unknown[] = [];
  const shape: string[] = [];
  for (const [kind, byKey] of last) {
    const keys: string[] = [];
    const bodies: string[] = [];
    const copies: (string | null)[] = [];
    const etags: string[] = [];
    const gone: string[] = [];
    for (const [key, json] of byKey) {
      if (json === null) gone.push(key);
      else {
        keys.push(key);
        bodies.push(json);
        copies.push(jsonbCopy(json));
        etags.push(etagOf(json));
      }
    }
    if (keys.length) {
      const n = values.push(keys, bodies, copies, etags);
      parts.push(`INSERT INTO ${kind} (key, doc, body, etag)
        SELECT k, coalesce(j, b)::jsonb, b, e FROM unnest($${n - 3}::text[], $${n - 2}::text[], $${n - 1}::text[], $${n}::text[]) AS u(k, b, j, e)
        ON CONFLICT (key) DO UPDATE SET doc = excluded.doc, body = excluded.body, etag = excluded.etag`);
      shape.push(`${kind}+`);
    }
    if (gone.length) {
      const n = values.push(gone);
      parts.push(`DELETE FROM ${kind} WHERE key = ANY($${n}::text[])`);
      shape.push(`${kind}-`);
    }
  }
  const text = parts.length === 1 ? parts[0]! : `WITH ${parts.map((p, i) => `w${i} AS (${p})`).join(', ')} SELECT 1`;
  // Named by shape: a connection prepares each shape once (the lease upsert nearly always).
  return { name: `plinth-batch-${shape.join(',')}`, text, values };
}

export type PgBatchWriter = {
  /** Queues the write `item()` builds (a throw rejects this write only); resolves once it is committed. */
  put(item: () => PgBatchItem): Promise<void>;
  /** Commits what is queued and waits for the batch in flight; later puts are refused. */
  close(): Promise<void>;
};

/** The writer on `conn`, a connection it holds (pg-conn.ts: no pool checkout per batch); close() ends it. */
export function pgBatchWriter(conn: PgConn): PgBatchWriter {
  const batches = turnBatcher<PgBatchItem, void>({
    // A failed batch rejects each of its writes (turn-batcher.ts): the outcome of a batch whose connection broke
    // is unknown, so nothing is acknowledged that may not be durable. The next batch reconnects.
    run: async (batch) => {
      await conn.query(batchStatement(batch.map((q) => q.item)));
      for (const q of batch) q.resolve();
    },
  });
  let closed: Promise<void> | undefined;
  return {
    put: (item) => batches.add(item),
    close() {
      closed ??= batches.close().then(() => conn.close());
      return closed;
    },
  };
}
