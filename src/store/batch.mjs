// What the main thread and the writer thread (writer-thread.mjs) both do to the database: connection pragmas,
// the statement cache, the etag, the upsert/delete transaction of putBatched and the batch's wire form.
// Plain ES module, no TypeScript: the writer thread loads it with no loader under tsx, vitest and plain node.
// Types: batch.d.mts.
import crypto from 'node:crypto';

/**
 * WAL (readers never wait for the writer), synchronous=FULL (an acknowledged write survives kill -9 and power
 * loss), and a wait instead of SQLITE_BUSY while the other connection (main or writer thread) commits.
 */
export function durablePragmas(db) {
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
}

// crypto.hash (Node 20.12; older ones make a Hash object): one call instead of a Hash object per document, a third of the time for a lease's
// JSON; the writer thread computes one per lease it writes.
const sha256 =
  typeof crypto.hash === 'function'
    ? (s) => crypto.hash('sha256', s, 'base64url')
    : (s) => crypto.createHash('sha256').update(s).digest('base64url');

/** The document's etag: the first 22 characters of its JSON's SHA-256 (base64url), 132 bits. */
export function etagOf(json) {
  return sha256(json).slice(0, 22);
}

/** Prepares each SQL text once per connection. */
export function statementCache(db) {
  const stmts = new Map();
  return (sql) => {
    let s = stmts.get(sql);
    if (!s) {
      s = db.prepare(sql);
      stmts.set(sql, s);
    }
    return s;
  };
}

/**
 * putBatched's transaction: each item an idempotent upsert (json) or delete (null), in order, so that a batch a
 * dead writer thread left unconfirmed can be replayed on the main thread. `kind` is checked by the caller.
 */
export function batchTransaction(db, prep) {
  // By kind, not by SQL text: no statement text built and hashed per lease.
  const byKind = new Map();
  const statements = (kind) => {
    let s = byKind.get(kind);
    if (!s) {
      s = {
        del: prep(`DELETE FROM ${kind} WHERE key = ?`),
        put: prep(
          `INSERT INTO ${kind} (key, doc, etag) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET doc = excluded.doc, etag = excluded.etag`,
        ),
      };
      byKind.set(kind, s);
    }
    return s;
  };
  return db.transaction((items) => {
    for (const it of items) {
      const s = statements(it.kind);
      if (it.json === null) s.del.run(it.key);
      else s.put.run(it.key, it.json, etagOf(it.json));
    }
  });
}

/** A batch as flat strings [kind, key, json | null, ...]: far cheaper to clone to the writer than one object each. */
export function encodeBatch(items) {
  const flat = [];
  for (const it of items) flat.push(it.kind, it.key, it.json);
  return flat;
}

/** Appends the items of an encoded batch to `into`. */
export function decodeBatch(flat, into) {
  for (let i = 0; i < flat.length; i += 3) into.push({ kind: flat[i], key: flat[i + 1], json: flat[i + 2] });
  return into;
}

/**
 * The writes gathered for the next transaction and who waits for them: whatever is queued while a transaction
 * runs joins the next one (group commit). take() hands over what was gathered and starts a new batch.
 */
export class PendingBatch {
  items = [];
  waiters = [];

  take() {
    const taken = { items: this.items, waiters: this.waiters };
    this.items = [];
    this.waiters = [];
    return taken;
  }
}

/**
 * The writer thread's loop, without the thread: writes added during one turn are committed together in the next
 * (setImmediate), each transaction confirmed as soon as it is committed, and every `checkpointEvery` items a WAL
 * checkpoint, run after the confirmation (the ACKs of that batch leave first) and after whatever batches are
 * queued by then (committed and confirmed first). SQLite's own checkpoint runs inside the COMMIT that crosses
 * 1,000 WAL frames, so that batch's ACKs waited for the copy and the database's fsync.
 *
 * commit(items) throws on failure; confirm(waiters, error?) answers them; checkpoint() copies the WAL.
 */
export function groupCommitter({ commit, confirm, checkpoint, checkpointEvery, defer = setImmediate }) {
  const pending = new PendingBatch();
  let scheduled = false;
  let written = 0;
  let checkpointDue = false;
  const flush = () => {
    scheduled = false;
    const { items, waiters } = pending.take();
    if (items.length === 0) return;
    try {
      commit(items);
      confirm(waiters);
    } catch (err) {
      confirm(waiters, String(err?.message || err));
    }
    written += items.length;
    if (written >= checkpointEvery && !checkpointDue) {
      checkpointDue = true;
      defer(runCheckpoint);
    }
  };
  const runCheckpoint = () => {
    flush();
    checkpointDue = false;
    written = 0;
    try {
      checkpoint();
    } catch {
      // SQLITE_BUSY (a reader holds the WAL): the next one copies it.
    }
  };
  return {
    /** Queues writes (their waiter: whatever confirm gets back); committed in the next turn with the others. */
    add(items, waiter) {
      for (const it of items) pending.items.push(it);
      pending.waiters.push(waiter);
      if (!scheduled) {
        scheduled = true;
        defer(flush);
      }
    },
    /** Commits what is queued now. */
    flush,
  };
}

/**
 * The lease journal's apply (journal.ts): durable journal records up to sequence number `seq`, then `seq` as the
 * applied mark, in one transaction, so a recovery replays only what is after it.
 */
export function journalApplyTransaction(db, prep) {
  const tx = batchTransaction(db, prep);
  const mark = prep('UPDATE journal_applied SET seq = ? WHERE id = 1');
  return db.transaction((items, seq) => {
    tx(items);
    mark.run(seq);
  });
}

/** The last journal record applied to this database (0: none). */
export function journalApplied(db) {
  return db.prepare('SELECT seq FROM journal_applied WHERE id = 1').pluck().get() ?? 0;
}
