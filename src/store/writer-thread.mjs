// The store's writer thread (sqlite.ts starts it for a file store): its own connection commits putBatched's
// batches, so the commit and its fsync never block the daemon's event loop.
// Plain ES module, no TypeScript, so that it loads the same way under tsx, vitest and plain node.
//
// In:  { id, flat } (encodeBatch) | { close: true }
// Out: { ids, ms, error? } once those batches are committed (or failed; ms: the transaction's time) | { closed: true }
// Every message that arrives while a transaction runs joins the next one (group commit).
//
// WAL checkpoints run on a third thread (this module again, role 'checkpoint', with its own connection), not
// inside the commits: SQLite's automatic checkpoint runs in the COMMIT that crosses 1,000 WAL frames (every few
// hundred DHCP leases), copies those pages into the database and fsyncs it, so the ACKs of that batch and of the
// batches queued behind it waited several ms more (the REQUEST->ACK tail; why synchronous=NORMAL did not help:
// it keeps the checkpoints). A PASSIVE checkpoint on another connection runs while this one goes on committing;
// the writer asks for one at about SQLite's cadence.
import { parentPort, Worker, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { batchTransaction, decodeBatch, durablePragmas, PendingBatch, statementCache } from './batch.mjs';

/**
 * The writer asks for a checkpoint after this many written items (about 2 WAL frames each for leases: about the
 * 1,000 frames of SQLite's own cadence), and at the latest a second after a write.
 */
const CHECKPOINT_ITEMS = 500;
const CHECKPOINT_IDLE_MS = 1000;
/**
 * WAL frames (4 KiB pages) past which the checkpointer waits for the writer (RESTART) so the WAL starts over: under
 * a flood that never pauses, PASSIVE checkpoints keep up but never catch the writer between two commits, and SQLite
 * only rewinds the WAL once every frame is copied.
 */
const WAL_RESTART_FRAMES = 16_384;

if (workerData.role === 'checkpoint') checkpointer();
else writer();

function writer() {
  const db = new Database(workerData.file);
  durablePragmas(db);
  db.pragma('wal_autocheckpoint = 0');
  const tx = batchTransaction(db, statementCache(db));
  const cp = new Worker(new URL(import.meta.url), { workerData: { file: workerData.file, role: 'checkpoint' } });
  // A checkpointer that fails leaves the commits to checkpoint as SQLite does by default.
  cp.on('error', () => db.pragma('wal_autocheckpoint = 1000'));

  let written = 0;
  let idle;
  const checkpoint = () => {
    written = 0;
    clearTimeout(idle);
    idle = undefined;
    cp.postMessage({ checkpoint: true });
  };

  // The waiters are the ids of the messages whose writes a transaction carries.
  const pending = new PendingBatch();
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    const { items, waiters: done } = pending.take();
    try {
      const t0 = performance.now();
      tx(items);
      parentPort.postMessage({ ids: done, ms: performance.now() - t0 });
    } catch (err) {
      parentPort.postMessage({ ids: done, error: String(err?.message || err) });
    }
    written += items.length;
    if (written >= CHECKPOINT_ITEMS) checkpoint();
    else idle ??= setTimeout(checkpoint, CHECKPOINT_IDLE_MS);
  };
  parentPort.on('message', async (m) => {
    if (m.close) {
      if (pending.items.length) flush();
      clearTimeout(idle);
      cp.postMessage({ close: true });
      await new Promise((r) => (cp.threadId === -1 ? r() : cp.once('exit', r)));
      db.close();
      parentPort.postMessage({ closed: true });
      return;
    }
    decodeBatch(m.flat, pending.items);
    pending.waiters.push(m.id);
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  });
}

function checkpointer() {
  const db = new Database(workerData.file);
  db.pragma('busy_timeout = 5000');
  const run = () => {
    try {
      const [r] = db.pragma('wal_checkpoint(PASSIVE)');
      if (r && r.log > WAL_RESTART_FRAMES) db.pragma('wal_checkpoint(RESTART)');
    } catch {
      // SQLITE_BUSY (another checkpoint, a writer holding RESTART off past busy_timeout): the next turn retries.
    }
  };
  parentPort.on('message', (m) => {
    if (m.checkpoint) return run();
    if (!m.close) return;
    db.close();
    parentPort.close();
  });
}
