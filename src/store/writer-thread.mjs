// The store's writer thread (sqlite.ts starts it for a file store): its own connection commits putBatched's
// batches, so the commit and its fsync (and WAL checkpoints) never block the daemon's event loop.
// Plain ES module, no TypeScript, so that it loads the same way under tsx, vitest and plain node.
//
// In:  { id, flat } (encodeBatch) | { close: true }
// Out: { ids, error? } once those batches are committed (or failed) | { closed: true }
// Every message that arrives while a transaction runs joins the next one (group commit).
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { batchTransaction, decodeBatch, durablePragmas, PendingBatch, statementCache } from './batch.mjs';

const db = new Database(workerData.file);
durablePragmas(db);
const tx = batchTransaction(db, statementCache(db));

// The waiters are the ids of the messages whose writes a transaction carries.
const pending = new PendingBatch();
let scheduled = false;
const flush = () => {
  scheduled = false;
  const { items, waiters: done } = pending.take();
  try {
    tx(items);
    parentPort.postMessage({ ids: done });
  } catch (err) {
    parentPort.postMessage({ ids: done, error: String(err?.message || err) });
  }
};
parentPort.on('message', (m) => {
  if (m.close) {
    if (pending.items.length) flush();
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
