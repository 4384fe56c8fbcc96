// The store's writer thread (sqlite.ts starts it for a file store): its own connection commits putBatched's
// batches, so the commit and its fsync never block the daemon's event loop. Its checkpoints are another
// thread's (checkpoint-thread.mjs), so a commit never carries one either.
// Plain ES module, no TypeScript, so that it loads the same way under tsx, vitest and plain node.
//
// In:  { id, flat } (encodeBatch) | { close: true }
// Out: { ids, error? } once those batches are committed (or failed) | { closed: true }
// Every message that arrives while a transaction runs joins the next one (group commit).
import { parentPort, Worker, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { batchTransaction, decodeBatch, durablePragmas, PendingBatch, statementCache } from './batch.mjs';

const db = new Database(workerData.file);
durablePragmas(db);
db.pragma('wal_autocheckpoint = 0');
let checkpointer = new Worker(new URL('./checkpoint-thread.mjs', import.meta.url), {
  workerData: { file: workerData.file },
  execArgv: [],
});
// Asked by the checkpointer when the WAL is long: one checkpoint here, after a commit, lets the next commit
// start the WAL over (checkpoint-thread.mjs, RESTART_FRAMES).
let restartDue = false;
checkpointer.on('message', (m) => {
  if (m === 'restart') restartDue = true;
});
// A checkpointer that dies costs nothing committed: this connection takes SQLite's automatic checkpoints back.
checkpointer.on('error', () => {
  checkpointer = undefined;
  db.pragma('wal_autocheckpoint = 1000');
});
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
  checkpointer?.postMessage({ wrote: items.length });
  if (restartDue) {
    restartDue = false;
    try {
      db.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      // The WAL goes on growing until the next request; nothing committed is at stake.
    }
  }
};
const close = async () => {
  if (pending.items.length) flush();
  const c = checkpointer;
  checkpointer = undefined;
  if (c) {
    await new Promise((resolve) => {
      c.on('message', (m) => m === 'closed' && resolve());
      c.once('exit', resolve);
      c.postMessage('close');
    });
    await c.terminate();
  }
  db.close();
  parentPort.postMessage({ closed: true });
};
parentPort.on('message', (m) => {
  if (m.close) return void close();
  decodeBatch(m.flat, pending.items);
  pending.waiters.push(m.id);
  if (!scheduled) {
    scheduled = true;
    setImmediate(flush);
  }
});
